package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

const waitLimit = 30 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNormaliseAndFingerprint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"order 5b3c4a52-8f6e-4c8e-9d4b-1f2a3b4c5d6e not found", "order <uuid> not found"},
		{`sku "ABC-1" has 3 left, wanted 5`, "sku <value> has <n> left, wanted <n>"},
		{"sku 'X' timed out after 1.5s", "sku <value> timed out after <n>s"},
		{"trace 0x7f3a9b2c1d, id deadbeef12", "trace <hex>, id <hex>"},
		{"malformed event: invalid character 'b' looking for beginning of value", "malformed event: invalid character <value> looking for beginning of value"},
		{"  many   spaces\n here ", "many spaces here"},
		{"offset 12345678 and 1234567", "offset <n> and <n>"},
		{"cafebabe is a word", "cafebabe is a word"},
	} {
		if got := Normalise(tc.in); got != tc.want {
			t.Errorf("Normalise(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a, pa := Fingerprint("trackops.Error", "reserve order 5b3c4a52-8f6e-4c8e-9d4b-1f2a3b4c5d6e: 3 units short")
	b, _ := Fingerprint("trackops.Error", "reserve order 0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b: 12 units short")
	c, _ := Fingerprint("trackops.PermanentError", "reserve order 0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b: 12 units short")
	if a != b || a == c || len(a) != 16 {
		t.Errorf("fingerprints %s %s %s: same error must match, another class must not", a, b, c)
	}
	if pa != "trackops.Error: reserve order <uuid>: <n> units short" {
		t.Errorf("pattern %q", pa)
	}
}

func TestFromRecordReadsSpringHeaders(t *testing.T) {
	t.Parallel()
	orig := &kgo.Record{Topic: "ORDER_CREATED", Partition: 2, Offset: 41, Timestamp: time.UnixMilli(1_700_000_000_000),
		Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: HeaderReplayCount, Value: []byte("2")}}}
	dl := kafka.DeadLetterRecord(orig, "inventory", errors.New("boom 7"), 3)
	dl.Partition, dl.Offset = 1, 9
	m := FromRecord(dl)
	if m.OriginalTopic != "ORDER_CREATED" || *m.OriginalPartition != 2 || *m.OriginalOffset != 41 ||
		m.OriginalTimestamp.UnixMilli() != 1_700_000_000_000 || m.ConsumerGroup != "inventory" || *m.Attempts != 3 ||
		m.ReplayCount != 2 || m.ExceptionClass != "trackops.Error" || m.ExceptionMessage != "boom 7" ||
		m.ErrorPattern != "trackops.Error: boom <n>" || m.Topic != "ORDER_CREATED.dlq" || m.Offset != 9 {
		t.Errorf("FromRecord = %+v", m)
	}
	// A record some other tool put on a .dlq topic, with text headers or none.
	bare := FromRecord(&kgo.Record{Topic: "payments.dlq", Value: []byte("?"), Headers: []kgo.RecordHeader{
		{Key: kafka.HeaderDLTOriginalOffset, Value: []byte("17")}}})
	if bare.OriginalTopic != "payments" || *bare.OriginalOffset != 17 || bare.ExceptionClass != "unknown" || bare.Fingerprint == "" {
		t.Errorf("FromRecord(bare) = %+v", bare)
	}
	rr := ReplayRecord(m)
	if rr.Topic != "ORDER_CREATED" || string(rr.Key) != "k" || string(rr.Value) != "v" {
		t.Errorf("replay record %+v", rr)
	}
	for _, h := range rr.Headers {
		if h.Key == HeaderReplayCount && string(h.Value) != "3" {
			t.Errorf("replay count header %q, want 3", h.Value)
		}
		if h.Key != HeaderReplayCount && (len(h.Key) > 10 && h.Key[:10] == "kafka_dlt-" || h.Key == kafka.HeaderDLTAttempts) {
			t.Errorf("replay record carries dead-letter header %s", h.Key)
		}
	}
}

func TestReplayRequestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		req ReplayRequest
		ok  bool
	}{
		{ReplayRequest{ID: 1}, true},
		{ReplayRequest{Topic: "ORDER_CREATED"}, true},
		{ReplayRequest{Topic: "ORDER_CREATED", All: true, DryRun: true}, true},
		{ReplayRequest{Fingerprint: "abc", All: true}, true},
		{ReplayRequest{}, false},
		{ReplayRequest{All: true}, false},
		{ReplayRequest{ID: 1, Topic: "x"}, false},
		{ReplayRequest{ID: -4}, false},
	} {
		if err := tc.req.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v", tc.req, err)
		}
	}
}

// webhook is a loopback alert receiver.
type webhook struct {
	mu     sync.Mutex
	alerts []Alert
	srv    *httptest.Server
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var a Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		w.mu.Lock()
		w.alerts = append(w.alerts, a)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) got() []Alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Alert(nil), w.alerts...)
}

func TestAlerterRateLimitsPerFingerprint(t *testing.T) {
	t.Parallel()
	hook := newWebhook(t)
	a := NewAlerter(AlertConfig{WebhookURL: hook.srv.URL, Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	same := Message{Topic: "ORDER_CREATED.dlq", ExceptionClass: "trackops.Error", Fingerprint: "aaaa"}
	other := Message{Topic: "ORDER_CREATED.dlq", ExceptionClass: "trackops.MalformedEventError", Fingerprint: "bbbb"}
	for range 5 {
		a.Notify(same)
	}
	a.Notify(other)
	eventually(t, "two webhook alerts", func() bool { return len(hook.got()) == 2 })
	first := hook.got()[0]
	if first.Fingerprint != "aaaa" || !first.FirstOfPattern || first.Suppressed != 0 || first.Text == "" {
		t.Errorf("first alert %+v", first)
	}
	// Once the interval has passed, the next alert reports what was held back.
	a.mu.Lock()
	a.last["aaaa"] = time.Now().Add(-2 * time.Hour)
	a.mu.Unlock()
	a.Notify(same)
	eventually(t, "a third webhook alert", func() bool { return len(hook.got()) == 3 })
	if third := hook.got()[2]; third.Suppressed != 4 || third.FirstOfPattern {
		t.Errorf("alert after the interval: %+v, want 4 suppressed reported", third)
	}
}

// TestDeadLetterLifecycle is the walk-through on the real database
// and broker: a kcat-style malformed record and a record whose handler keeps
// failing end on ORDER_CREATED.dlq (at once, and after 3 attempts) while the
// consumer goes on; the monitor records both once each with fingerprints,
// counts and alerts; a dry run changes nothing; a replay after the cause is
// fixed is processed once; and the loop guard stops a record going round.
func TestDeadLetterLifecycle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	opts := kafkatest.Options(broker)
	producer, err := kafka.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	topic, dlqTopic := events.OrderCreated, events.OrderCreated+events.DLQSuffix
	if err := kafka.EnsureTopics(ctx, producer, 1, topic, dlqTopic); err != nil {
		t.Fatal(err)
	}

	// The application consumer: inventory reserving stock for new orders,
	// with its database "down" until the cause is fixed.
	var (
		broken    atomic.Bool
		mu        sync.Mutex
		processed = map[string]int{}
		attempts  = map[string]int{}
		replayHdr = map[string]string{}
	)
	broken.Store(true)
	app, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: opts, Group: "inventory", Topics: []string{topic},
		Retry: kafka.RetryPolicy{Attempts: 3, Initial: time.Millisecond, Multiplier: 2, Max: 5 * time.Millisecond},
		Handler: func(_ context.Context, rec *kgo.Record) error {
			env, err := events.Decode(rec.Value)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			attempts[env.ID]++
			if broken.Load() && env.Subject != "healthy" {
				return fmt.Errorf("reserve stock for order %s: inventory database unavailable after 5000 ms", env.Subject)
			}
			processed[env.ID]++
			replayHdr[env.ID] = kafka.Header(rec, HeaderReplayCount)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	go app.Run(ctx)

	hook := newWebhook(t)
	store := NewStore(db.Pool)
	dm := NewMetrics(prometheus.NewRegistry())
	monitor, err := NewMonitor(store, MonitorConfig{Kafka: opts, MetadataRefresh: time.Second, Metrics: dm,
		Alerter: NewAlerter(AlertConfig{WebhookURL: hook.srv.URL, Interval: time.Hour, Metrics: dm})})
	if err != nil {
		t.Fatal(err)
	}
	go monitor.Run(ctx)
	errClassBefore := testutil.ToFloat64(dm.messages.WithLabelValues(dlqTopic, "trackops.Error"))
	malformedBefore := testutil.ToFloat64(dm.messages.WithLabelValues(dlqTopic, "trackops.MalformedEventError"))
	suppressedBefore := testutil.ToFloat64(dm.alerts.WithLabelValues("suppressed"))

	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	newEvent := func(subject string) (events.Event, *kgo.Record) {
		ev, err := events.New(events.OrderCreated, events.AggregateOrder, subject, map[string]int{"items": 1}, "")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := ev.Marshal()
		rec := &kgo.Record{Topic: topic, Key: []byte(subject), Value: v}
		for k, val := range ev.Headers() {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(val)})
		}
		return ev, rec
	}
	failing, failingRec := newEvent("8d1c7a2e-3b4f-4c5d-9e6f-7a8b9c0d1e2f")
	failing2, failing2Rec := newEvent("1f2e3d4c-5b6a-4978-8f7e-6d5c4b3a2918")
	healthy, healthyRec := newEvent("healthy")
	produce(&kgo.Record{Topic: topic, Value: []byte(`{"orderId": 42, "broken`)}) // kcat -P
	produce(failingRec, failing2Rec, healthyRec)

	eventually(t, "the record after the failures to be processed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return processed[healthy.ID] == 1
	})
	// Other orders' records are handled beside the failing ones, so the
	// attempts are counted once all three dead letters are recorded.
	eventually(t, "the monitor to record 3 dead letters", func() bool {
		c, err := store.Count(ctx, Filter{})
		return err == nil && c.Total == 3
	})
	mu.Lock()
	if attempts[failing.ID] != 3 || attempts[failing2.ID] != 3 {
		t.Errorf("failing records tried %d and %d times, want 3", attempts[failing.ID], attempts[failing2.ID])
	}
	mu.Unlock()
	msgs, err := store.List(ctx, Filter{Topic: topic})
	if err != nil || len(msgs) != 3 {
		t.Fatalf("List by original topic: %d messages, err %v", len(msgs), err)
	}
	byClass := map[string][]Message{}
	for _, m := range msgs {
		byClass[m.ExceptionClass] = append(byClass[m.ExceptionClass], m)
	}
	malformed := byClass["trackops.MalformedEventError"]
	retried := byClass["trackops.Error"]
	if len(malformed) != 1 || len(retried) != 2 {
		t.Fatalf("dead letters by class: %v", byClass)
	}
	if m := malformed[0]; *m.Attempts != 1 || m.OriginalTopic != topic || *m.OriginalOffset != 0 || m.ConsumerGroup != "inventory" || m.Status != StatusNew {
		t.Errorf("malformed dead letter %+v", m)
	}
	if retried[0].Fingerprint != retried[1].Fingerprint || *retried[0].Attempts != 3 ||
		retried[0].ErrorPattern != "trackops.Error: reserve stock for order <uuid>: inventory database unavailable after <n> ms" {
		t.Errorf("retried dead letters: %q %q (%s)", retried[0].Fingerprint, retried[1].Fingerprint, retried[0].ErrorPattern)
	}
	if got := testutil.ToFloat64(dm.messages.WithLabelValues(dlqTopic, "trackops.Error")) - errClassBefore; got != 2 {
		t.Errorf("trackops_dlq_messages_total{topic=%q,error_class=trackops.Error} grew by %v, want 2", dlqTopic, got)
	}
	if got := testutil.ToFloat64(dm.messages.WithLabelValues(dlqTopic, "trackops.MalformedEventError")) - malformedBefore; got != 1 {
		t.Errorf("malformed counter grew by %v, want 1", got)
	}
	// One webhook per fingerprint; the second record of the same failure is held back.
	eventually(t, "one suppressed alert", func() bool {
		return testutil.ToFloat64(dm.alerts.WithLabelValues("suppressed"))-suppressedBefore >= 1
	})
	eventually(t, "two webhook alerts", func() bool { return len(hook.got()) == 2 })

	// Redelivery of a dead letter to the monitor records nothing new.
	redelivered := kafkatest.Read(t, broker, dlqTopic, 3, waitLimit)
	if len(redelivered) != 3 {
		t.Fatalf("read %d dead letters back", len(redelivered))
	}
	for _, rec := range redelivered {
		if err := monitor.Handle(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := store.Count(ctx, Filter{}); c.Total != 3 {
		t.Errorf("redelivery made %d rows, want 3", c.Total)
	}
	if got := testutil.ToFloat64(dm.messages.WithLabelValues(dlqTopic, "trackops.Error")) - errClassBefore; got != 2 {
		t.Errorf("redelivery counted again: counter grew by %v", got)
	}

	// The ops API, with the replayer behind it.
	replayer := NewReplayer(db.Pool, producer, ReplayerConfig{})
	auditor := &recordingAuditor{}
	replayer.auditor = auditor
	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{}, NewHandlers(store, replayer).Routes()))
	defer srv.Close()

	// A dry run over everything reports and changes nothing.
	endBefore := endOffset(t, producer, topic)
	var dry ReplayResult
	postJSON(t, srv.URL+"/api/v1/ops/dlq/replay", `{"topic": "ORDER_CREATED", "all": true, "dry_run": true}`, http.StatusOK, &dry)
	if !dry.DryRun || dry.Matched != 3 || dry.Replayed != 3 || dry.Items[0].Outcome != OutcomeWouldReplay {
		t.Errorf("dry run result %+v", dry)
	}
	if c, _ := store.Count(ctx, Filter{}); c.New != 3 || c.Replayed != 0 {
		t.Errorf("dry run changed statuses: %+v", c)
	}
	if n := countActions(t, db, 0); n != 0 {
		t.Errorf("dry run wrote %d audit rows", n)
	}
	if got := endOffset(t, producer, topic); got != endBefore {
		t.Errorf("dry run produced %d records", got-endBefore)
	}

	// The cause is fixed: replaying one record processes it once.
	broken.Store(false)
	var res ReplayResult
	replay := func(body string) (out ReplayResult) {
		t.Helper()
		postJSON(t, srv.URL+"/api/v1/ops/dlq/replay", body, http.StatusOK, &out)
		return out
	}
	res = replay(fmt.Sprintf(`{"id": %d}`, retried[0].ID))
	if res.Replayed != 1 || res.Items[0].Outcome != OutcomeReplayed || res.Items[0].ReplayCount != 1 {
		t.Fatalf("replay result %+v", res)
	}
	replayedEventID := eventID(t, retried[0].Value)
	eventually(t, "the replayed record to be processed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return processed[replayedEventID] == 1
	})
	mu.Lock()
	if replayHdr[replayedEventID] != "1" {
		t.Errorf("replayed record carried %s=%q, want 1", HeaderReplayCount, replayHdr[replayedEventID])
	}
	mu.Unlock()
	if m, _ := store.Get(ctx, retried[0].ID); m.Status != StatusReplayed || m.ReplayCount != 1 || m.ReplayedAt == nil {
		t.Errorf("replayed dead letter %+v", m)
	}
	if n := countActions(t, db, retried[0].ID); n != 1 {
		t.Errorf("%d audit rows for the replay, want 1", n)
	}
	res = replay(fmt.Sprintf(`{"id": %d}`, retried[0].ID))
	if res.Skipped != 1 || res.Replayed != 0 {
		t.Errorf("second replay of the same dead letter: %+v, want skipped", res)
	}

	// The loop guard: the malformed record comes back to the DLQ after each
	// replay; after 3 replays it stays there, marked.
	current := malformed[0]
	for round := 1; round <= 3; round++ {
		res = replay(fmt.Sprintf(`{"id": %d}`, current.ID))
		if res.Replayed != 1 {
			t.Fatalf("round %d: %+v", round, res)
		}
		eventually(t, fmt.Sprintf("the malformed record's dead letter #%d", round+1), func() bool {
			ms, err := store.List(ctx, Filter{Fingerprint: current.Fingerprint, Status: StatusNew})
			if err != nil || len(ms) != 1 {
				return false
			}
			current = ms[0]
			return current.ReplayCount == round
		})
	}
	res = replay(fmt.Sprintf(`{"id": %d}`, current.ID))
	if res.Blocked != 1 || res.Replayed != 0 || res.Items[0].Outcome != OutcomeBlocked {
		t.Fatalf("fourth replay: %+v, want blocked by the loop guard", res)
	}
	if m, _ := store.Get(ctx, current.ID); m.Status != StatusNew || !m.ReplayBlocked {
		t.Errorf("blocked dead letter %+v, want still new and marked", m)
	}
	if !auditor.has("dlq.replay.blocked") || !auditor.has("dlq.replay") || !auditor.has("dlq.replay.dry_run") {
		t.Errorf("audit hook saw %v", auditor.actions())
	}

	// Listing with filters and fingerprint groups.
	var list ListJSON
	getJSON(t, srv.URL+"/api/v1/ops/dlq?topic=ORDER_CREATED.dlq&since=1h", &list)
	if list.Counts.Total != 6 || list.Counts.Blocked != 1 || len(list.Messages) != 6 {
		t.Errorf("listing counts %+v with %d messages", list.Counts, len(list.Messages))
	}
	groups := map[string]Group{}
	for _, g := range list.Groups {
		groups[g.Fingerprint] = g
	}
	if g := groups[malformed[0].Fingerprint]; g.Count != 4 || g.New != 1 {
		t.Errorf("malformed group %+v, want 4 dead letters, 1 new", g)
	}
	if g := groups[retried[0].Fingerprint]; g.Count != 2 || g.New != 1 {
		t.Errorf("retried group %+v, want 2 dead letters, 1 new", g)
	}
	getJSON(t, srv.URL+"/api/v1/ops/dlq?fingerprint="+retried[0].Fingerprint+"&status=new", &list)
	if len(list.Messages) != 1 || list.Messages[0].ID != retried[1].ID {
		t.Errorf("filtered listing %+v", list.Messages)
	}
	var one MessageJSON
	getJSON(t, fmt.Sprintf("%s/api/v1/ops/dlq/%d", srv.URL, retried[0].ID), &one)
	if one.Headers[kafka.HeaderDLTOriginalPartition] != "0" || one.Value == nil || len(one.Actions) != 1 {
		t.Errorf("dead letter detail %+v", one)
	}
	postJSON(t, srv.URL+"/api/v1/ops/dlq/replay", `{"id": 1, "topic": "x"}`, http.StatusUnprocessableEntity, nil)
	postJSON(t, srv.URL+"/api/v1/ops/dlq/replay", `{"id": 999999}`, http.StatusNotFound, nil)
	postJSON(t, srv.URL+"/api/v1/ops/dlq/replay", `{"ids": [1]}`, http.StatusBadRequest, nil)
	resp, err := http.Get(srv.URL + "/api/v1/ops/dlq?status=lost")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("bad status filter answered %d", resp.StatusCode)
		}
	}
	postJSON(t, fmt.Sprintf("%s/api/v1/ops/dlq/%d/discard", srv.URL, retried[1].ID), `{"reason": "order was cancelled"}`, http.StatusOK, nil)
	postJSON(t, fmt.Sprintf("%s/api/v1/ops/dlq/%d/discard", srv.URL, retried[1].ID), `{}`, http.StatusConflict, nil)
}

type recordingAuditor struct {
	mu  sync.Mutex
	evs []AuditEvent
}

func (a *recordingAuditor) Audit(_ context.Context, e AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, e)
}

func (a *recordingAuditor) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.evs {
		out = append(out, e.Action)
	}
	return out
}

func (a *recordingAuditor) has(action string) bool {
	for _, x := range a.actions() {
		if x == action {
			return true
		}
	}
	return false
}

func eventID(t *testing.T, value []byte) string {
	t.Helper()
	env, err := events.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	return env.ID
}

func countActions(t *testing.T, db *postgrestest.Database, messageID int64) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dlq_actions WHERE $1 = 0 OR message_id = $1`, messageID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func endOffset(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	return total
}

func postJSON(t *testing.T, url, body string, want int, v any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var p bytes.Buffer
		_, _ = p.ReadFrom(resp.Body)
		t.Fatalf("POST %s %s: status %d, want %d: %s", url, body, resp.StatusCode, want, p.String())
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
