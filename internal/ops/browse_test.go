package ops_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/ops"
	"github.com/trackops/trackops/internal/validation"
)

// browseRig is a private broker with one topic of 3 partitions holding 300
// CloudEvents-like records: customer c-<i%10>, record 137 the only one of
// customer "needle".
type browseRig struct {
	k      *ops.Kafka
	client *kgo.Client
	base   time.Time // timestamp of record 0, one record a second
	mid    time.Time // timestamp of record 150
}

func newBrowseRig(t *testing.T) *browseRig {
	t.Helper()
	ctx := context.Background()
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	kafkatest.CreateTopics(t, p, 3, "EVENTS")
	// Timestamps from now on: the producer's delivery timeout counts from
	// a record's timestamp, so they must not lie in the past.
	base := time.Now().UTC().Truncate(time.Second)
	var recs []*kgo.Record
	for i := range 300 {
		cust := fmt.Sprintf("c-%d", i%10)
		if i == 137 {
			cust = "needle"
		}
		recs = append(recs, &kgo.Record{Topic: "EVENTS", Key: []byte(fmt.Sprintf("order-%03d", i)),
			Value:     []byte(fmt.Sprintf(`{"type":"ORDER_CREATED","data":{"customer_id":%q,"n":%d,"items":[{"sku":"SKU-%d"}]}}`, cust, i, i%4)),
			Headers:   []kgo.RecordHeader{{Key: "event_type", Value: []byte("ORDER_CREATED")}, {Key: "seq", Value: []byte(fmt.Sprint(i))}},
			Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return &browseRig{k: ops.NewKafka(p, kafkatest.Options(b)), client: p, base: base, mid: base.Add(150 * time.Second)}
}

// scanAll runs a browse to the end, step by step, and returns every match
// and the number of steps.
func scanAll(t *testing.T, k *ops.Kafka, req ops.BrowseRequest) ([]ops.Message, int, ops.Progress) {
	t.Helper()
	var all []ops.Message
	steps := 0
	for {
		res, err := k.Browse(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		steps++
		all = append(all, res.Messages...)
		if res.Progress.Scanned > res.Progress.Total {
			t.Fatalf("progress %d of %d", res.Progress.Scanned, res.Progress.Total)
		}
		if res.Done {
			if res.Progress.Scanned != res.Progress.Total || res.Cursor != "" {
				t.Fatalf("done with progress %d of %d, cursor %q", res.Progress.Scanned, res.Progress.Total, res.Cursor)
			}
			return all, steps, res.Progress
		}
		if steps > 1000 {
			t.Fatal("scan does not end")
		}
		req.Cursor = res.Cursor
	}
}

func TestBrowseFindsTheRecordByJSONField(t *testing.T) {
	t.Parallel()
	r := newBrowseRig(t)
	// A small budget makes the scan take several steps, as a large topic would.
	msgs, steps, prog := scanAll(t, r.k, ops.BrowseRequest{Topic: "EVENTS", From: ops.FromOldest, Budget: 40,
		Filter: ops.Filter{JSONPath: "$.data.customer_id", JSONValue: "needle"}})
	if len(msgs) != 1 || *msgs[0].Key != "order-137" || !msgs[0].JSON || len(msgs[0].Headers) != 2 {
		t.Fatalf("matches = %+v", msgs)
	}
	if steps < 300/40 || prog.Total != 300 || prog.Direction != "forward" {
		t.Errorf("steps %d, progress %+v", steps, prog)
	}
	if want := r.base.Add(137 * time.Second).Format("2006-01-02T15:04:05.000Z"); msgs[0].Timestamp != want {
		t.Errorf("timestamp %q", msgs[0].Timestamp)
	}
}

func TestBrowseFilters(t *testing.T) {
	t.Parallel()
	r := newBrowseRig(t)
	count := func(req ops.BrowseRequest) int {
		t.Helper()
		req.Topic, req.Limit = "EVENTS", 500
		msgs, _, _ := scanAll(t, r.k, req)
		return len(msgs)
	}
	for name, tc := range map[string]struct {
		req  ops.BrowseRequest
		want int
	}{
		"everything":            {ops.BrowseRequest{}, 300},
		"key substring":         {ops.BrowseRequest{Filter: ops.Filter{Key: "order-01"}}, 10},
		"header present":        {ops.BrowseRequest{Filter: ops.Filter{Header: "seq"}}, 300},
		"header value":          {ops.BrowseRequest{Filter: ops.Filter{Header: "seq=42"}}, 1},
		"array path":            {ops.BrowseRequest{Filter: ops.Filter{JSONPath: "data.items[0].sku", JSONValue: "SKU-3"}}, 75},
		"number path":           {ops.BrowseRequest{Filter: ops.Filter{JSONPath: "data.n", JSONValue: "299"}}, 1},
		"text, any case":        {ops.BrowseRequest{Filter: ops.Filter{Text: "NEEDLE"}}, 1},
		"filters combine":       {ops.BrowseRequest{Filter: ops.Filter{Text: "c-3", JSONPath: "data.items[0].sku", JSONValue: "SKU-1"}}, 15},
		"from offset":           {ops.BrowseRequest{From: ops.FromOffset, Offset: 90}, -2},
		"from timestamp":        {ops.BrowseRequest{From: ops.FromTimestamp, Timestamp: r.mid}, 150},
		"chosen partitions":     {ops.BrowseRequest{Partitions: []int32{0, 2}, Filter: ops.Filter{Header: "event_type=ORDER_CREATED"}}, -1},
		"no match":              {ops.BrowseRequest{Filter: ops.Filter{JSONPath: "data.missing", JSONValue: "x"}}, 0},
		"newest, small budgets": {ops.BrowseRequest{From: ops.FromNewest, Budget: 30, Filter: ops.Filter{Key: "order-2"}}, 100},
	} {
		t.Run(name, func(t *testing.T) {
			got := count(tc.req)
			if tc.want == -2 {
				// Records at offset 90 and beyond, in every partition.
				topic, err := r.k.Topic(context.Background(), "EVENTS")
				if err != nil {
					t.Fatal(err)
				}
				tc.want = 0
				for _, p := range topic.Partitions {
					tc.want += int(max(0, p.EndOffset-90))
				}
			}
			if tc.want == -1 {
				// Two of the three partitions: fewer than all, more than none.
				if got == 0 || got >= 300 {
					t.Errorf("%d matches in partitions 0 and 2", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("%d matches, want %d", got, tc.want)
			}
		})
	}
}

func TestBrowseNewestFirstWithLimitAndContinuation(t *testing.T) {
	t.Parallel()
	r := newBrowseRig(t)
	req := ops.BrowseRequest{Topic: "EVENTS", From: ops.FromNewest, Limit: 7, Budget: 1000}
	res, err := r.k.Browse(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 7 || *res.Messages[0].Key != "order-299" || res.Done {
		t.Fatalf("first page: %d messages, first %v, done %v", len(res.Messages), *res.Messages[0].Key, res.Done)
	}
	for i := 1; i < len(res.Messages); i++ {
		if res.Messages[i].Timestamp > res.Messages[i-1].Timestamp {
			t.Fatalf("not newest first: %s after %s", res.Messages[i].Timestamp, res.Messages[i-1].Timestamp)
		}
	}
	// Paging on returns every record exactly once.
	seen := map[string]bool{}
	for _, m := range res.Messages {
		seen[*m.Key] = true
	}
	req.Cursor = res.Cursor
	for !res.Done {
		if res, err = r.k.Browse(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Messages {
			if seen[*m.Key] {
				t.Fatalf("%s returned twice", *m.Key)
			}
			seen[*m.Key] = true
		}
		req.Cursor = res.Cursor
	}
	if len(seen) != 300 {
		t.Errorf("%d distinct records over all pages, want 300", len(seen))
	}
}

func TestBrowseRefusesBadRequests(t *testing.T) {
	t.Parallel()
	r := newBrowseRig(t)
	for name, req := range map[string]ops.BrowseRequest{
		"bad from":         {Topic: "EVENTS", From: "middle"},
		"bad path":         {Topic: "EVENTS", Filter: ops.Filter{JSONPath: "data.items[x]", JSONValue: "1"}},
		"value, no path":   {Topic: "EVENTS", Filter: ops.Filter{JSONValue: "1"}},
		"bad partition":    {Topic: "EVENTS", Partitions: []int32{7}},
		"foreign cursor":   {Topic: "EVENTS", Cursor: "eyJ0IjoiT1RIRVIiLCJkIjoiZm9yd2FyZCJ9"},
		"budget too large": {Topic: "EVENTS", Budget: 1 << 30},
	} {
		var verrs validation.Errors
		if _, err := r.k.Browse(context.Background(), req); !errors.As(err, &verrs) {
			t.Errorf("%s: err %v, want validation errors", name, err)
		}
	}
	if _, err := r.k.Browse(context.Background(), ops.BrowseRequest{Topic: "NOPE"}); !errors.Is(err, ops.ErrNoSuchTopic) {
		t.Errorf("unknown topic: %v", err)
	}
}

func TestProduceAndFindIt(t *testing.T) {
	t.Parallel()
	r := newBrowseRig(t)
	ctx := context.Background()
	key, value := "hand-1", `{"note":"produced by hand"}`
	p := int32(2)
	out, err := r.k.Produce(ctx, "EVENTS", ops.ProduceRequest{Key: &key, Value: &value, Headers: map[string]string{"source": "console"}, Partition: &p})
	if err != nil {
		t.Fatal(err)
	}
	if out.Partition != 2 || out.Offset < 0 {
		t.Errorf("produced at %+v", out)
	}
	msgs, _, _ := scanAll(t, r.k, ops.BrowseRequest{Topic: "EVENTS", Partitions: []int32{2}, Filter: ops.Filter{Header: "source=console"}})
	if len(msgs) != 1 || *msgs[0].Value != value || msgs[0].Offset != out.Offset {
		t.Errorf("found %+v", msgs)
	}
	bad := int32(9)
	var verrs validation.Errors
	if _, err := r.k.Produce(ctx, "EVENTS", ops.ProduceRequest{Value: &value, Partition: &bad}); !errors.As(err, &verrs) {
		t.Errorf("partition 9: %v", err)
	}
}
