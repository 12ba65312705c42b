package ops_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/ops"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/validation"
)

func TestCreateAndDescribeTopic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	k := ops.NewKafka(p, kafkatest.Options(b))
	if err := k.CreateTopic(ctx, ops.NewTopic{Name: "audit.events", Partitions: 4, Config: map[string]string{"retention.ms": "3600000"}}); err != nil {
		t.Fatal(err)
	}
	if err := k.CreateTopic(ctx, ops.NewTopic{Name: "audit.events", Partitions: 1}); !errors.Is(err, ops.ErrTopicExists) {
		t.Errorf("second create: %v, want ErrTopicExists", err)
	}
	var verrs validation.Errors
	if err := k.CreateTopic(ctx, ops.NewTopic{Name: "bad name!", Partitions: 0}); !errors.As(err, &verrs) || len(verrs) != 2 {
		t.Errorf("bad topic: %v, want two field errors", err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "audit.events", Key: []byte("k"), Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tp, err := k.Topic(ctx, "audit.events")
	if err != nil {
		t.Fatal(err)
	}
	if len(tp.Partitions) != 4 || tp.Messages != 1 || tp.Config["retention.ms"] != "3600000" || tp.SizeBytes <= 0 {
		t.Errorf("topic = %+v", tp)
	}
	if _, err := k.Topic(ctx, "nope"); !errors.Is(err, ops.ErrNoSuchTopic) {
		t.Errorf("unknown topic: %v", err)
	}
}

// TestGroupDetailAndOffsetReset: a group with a member shows it and its
// assignment and refuses a reset; once its consumer has left, a reset to
// the earliest offsets (after a dry run that changes nothing) makes its lag
// the whole topic.
func TestGroupDetailAndOffsetReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	kafkatest.CreateTopics(t, p, 2, "T")
	for i := range 8 {
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: "T", Key: []byte{byte(i)}, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("T"), kgo.ClientID("member-1"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	deadline := time.Now().Add(30 * time.Second)
	for got < 8 && time.Now().Before(deadline) {
		c.PollFetches(ctx).EachRecord(func(*kgo.Record) { got++ })
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	k := ops.NewKafka(p, kafkatest.Options(b))
	g, err := k.Group(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if g.Members != 1 || len(g.MemberList) != 1 || g.MemberList[0].ClientID != "member-1" || len(g.MemberList[0].Assignments) != 1 ||
		len(g.MemberList[0].Assignments[0].Partitions) != 2 || g.TotalLag != 0 {
		t.Fatalf("group = %+v", g)
	}
	if _, err := k.ResetOffsets(ctx, "g", ops.ResetRequest{To: ops.ResetEarliest}); !errors.Is(err, ops.ErrGroupActive) {
		t.Fatalf("reset with a member: %v, want ErrGroupActive", err)
	}
	c.Close() // leaves the group

	dry, err := k.ResetOffsets(ctx, "g", ops.ResetRequest{To: ops.ResetEarliest, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Moves) != 2 || dry.Moves[0].To != 0 || dry.Moves[0].From == 0 {
		t.Fatalf("dry run = %+v", dry)
	}
	if g, _ := k.Group(ctx, "g"); g.TotalLag != 0 {
		t.Fatalf("a dry run changed offsets: lag %d", g.TotalLag)
	}
	if _, err := k.ResetOffsets(ctx, "g", ops.ResetRequest{To: ops.ResetEarliest}); err != nil {
		t.Fatal(err)
	}
	if g, _ := k.Group(ctx, "g"); g.TotalLag != 8 || g.Members != 0 {
		t.Fatalf("after reset to earliest: %+v", g)
	}
	ts := time.Now().Add(time.Hour)
	res, err := k.ResetOffsets(ctx, "g", ops.ResetRequest{To: ops.ResetTimestamp, Timestamp: &ts})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := k.Group(ctx, "g"); g.TotalLag != 0 || len(res.Moves) != 2 {
		t.Fatalf("after reset to a future time (= latest): %+v", g)
	}
	if _, err := k.Group(ctx, "no-such-group"); !errors.Is(err, ops.ErrNoSuchGroup) {
		t.Errorf("unknown group: %v", err)
	}
	var verrs validation.Errors
	if _, err := k.ResetOffsets(ctx, "g", ops.ResetRequest{To: ops.ResetTimestamp}); !errors.As(err, &verrs) {
		t.Errorf("timestamp reset without a time: %v", err)
	}
}

func TestOrderAndStockSearch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	svc := order.NewService(db.Pool)
	var ids []string
	for i := range 5 {
		cust := "alice"
		if i%2 == 1 {
			cust = "bob"
		}
		res, err := svc.Create(ctx, order.CreateRequest{Actor: "test", Order: order.NewOrder{CustomerID: cust,
			Items: []order.NewItem{{SKU: "SKU-" + string(rune('A'+i)), Quantity: 1, UnitPrice: 100}}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Order.ID.String())
	}
	// Spread them over five days, oldest first.
	for i, id := range ids {
		if _, err := db.Pool.Exec(ctx, `UPDATE orders SET created_at = now() - make_interval(days => $2) WHERE id = $1`, id, 5-i); err != nil {
			t.Fatal(err)
		}
	}
	s := ops.NewSearch(db.Pool)
	rows, next, err := s.Orders(ctx, ops.OrderQuery{CustomerID: "alice", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].ID.String() != ids[4] || rows[1].ID.String() != ids[2] || next == "" || rows[0].Lines != 1 {
		t.Fatalf("alice page 1 = %+v next %q", rows, next)
	}
	rows, next, err = s.Orders(ctx, ops.OrderQuery{CustomerID: "alice", Limit: 2, Cursor: next})
	if err != nil || len(rows) != 1 || rows[0].ID.String() != ids[0] || next != "" {
		t.Fatalf("alice page 2 = %+v next %q (%v)", rows, next, err)
	}
	q, err := ops.ParseOrderQuery(map[string][]string{
		"created_from": {time.Now().Add(-4*24*time.Hour - time.Hour).Format(time.RFC3339)},
		"created_to":   {time.Now().Add(-2*24*time.Hour + time.Hour).Format(time.RFC3339)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows, _, err = s.Orders(ctx, q); err != nil || len(rows) != 3 || rows[0].ID.String() != ids[3] || rows[2].ID.String() != ids[1] {
		t.Fatalf("time range = %+v (%v)", rows, err)
	}
	if rows, _, err = s.Orders(ctx, ops.OrderQuery{SKU: "SKU-C", Limit: 10}); err != nil || len(rows) != 1 || rows[0].ID.String() != ids[2] {
		t.Fatalf("by SKU = %+v (%v)", rows, err)
	}
	if _, err := ops.ParseOrderQuery(map[string][]string{"status": {"LOST"}, "created_from": {"yesterday"}}); err == nil {
		t.Error("bad status and time were accepted")
	}

	for _, sku := range []string{"WIDGET-1", "WIDGET-2", "GADGET-9"} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO inventory_items (sku, name, on_hand, reserved) VALUES ($1, $2, 10, 3)`,
			sku, "The "+strings.ToLower(sku)); err != nil {
			t.Fatal(err)
		}
	}
	items, next, err := s.Stock(ctx, "widget", 1, "")
	if err != nil || len(items) != 1 || items[0].SKU != "WIDGET-1" || items[0].Available != 7 || next == "" {
		t.Fatalf("stock page 1 = %+v %q %v", items, next, err)
	}
	if items, next, err = s.Stock(ctx, "widget", 1, next); err != nil || len(items) != 1 || items[0].SKU != "WIDGET-2" {
		t.Fatalf("stock page 2 = %+v %q %v", items, next, err)
	}
	if items, _, err = s.Stock(ctx, "%", 10, ""); err != nil || len(items) != 0 {
		t.Fatalf("a %% in the text is a character, not a wildcard: %+v %v", items, err)
	}
}

func TestSnapshotRouteNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{}, ops.SnapshotRoutes(nil)))
	defer srv.Close()
	for body, want := range map[string]int{
		`{"tables":["public.orders"]}`: http.StatusNotImplemented,
		`{"tables":[]}`:                http.StatusUnprocessableEntity,
		`{"tables":["orders; drop"]}`:  http.StatusUnprocessableEntity,
	} {
		resp, err := http.Post(srv.URL+"/api/v1/ops/cdc/connectors/c1/snapshots", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST %s = %d, want %d", body, resp.StatusCode, want)
		}
	}
}

func TestConnectRoutesStripThePrefix(t *testing.T) {
	t.Parallel()
	var got []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = append(got, r.Method+" "+r.URL.Path) })
	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{}, ops.ConnectRoutes(h)))
	defer srv.Close()
	for _, rq := range []struct{ method, path string }{
		{"GET", "/api/v1/ops/connect/connectors"},
		{"PUT", "/api/v1/ops/connect/connector-plugins/io.debezium.connector.postgresql.PostgresConnector/config/validate"},
		{"DELETE", "/api/v1/ops/connect/connectors/c1"},
	} {
		req, _ := http.NewRequest(rq.method, srv.URL+rq.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []string{"GET /connectors", "PUT /connector-plugins/io.debezium.connector.postgresql.PostgresConnector/config/validate", "DELETE /connectors/c1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Connect handler saw %q, want %q", got, want)
	}
}

func TestPulseSamplesRates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	kafkatest.CreateTopics(t, p, 1, "ORDER_CREATED")
	pulse := ops.NewPulse(db.Pool, p, ops.PulseOptions{Interval: time.Second, Window: 3 * time.Second})
	first := pulse.Sample(ctx)
	if len(first.Errors) != 0 || first.EventsPerSecond != 0 {
		t.Fatalf("first sample = %+v", first)
	}
	svc := order.NewService(db.Pool)
	if _, err := svc.Create(ctx, order.CreateRequest{Actor: "test", Order: order.NewOrder{CustomerID: "c",
		Items: []order.NewItem{{SKU: "S", Quantity: 1, UnitPrice: 1}}}}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: "ORDER_CREATED", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	second := pulse.Sample(ctx)
	if second.OrdersPerMinute != 1 || second.EventsPerSecond <= 0 || second.OutboxBacklog != 1 || second.OutboxOldestAgeSeconds < 0 ||
		second.CDCLagBytes != nil {
		t.Errorf("second sample = %+v", second)
	}
	for range 5 {
		pulse.Sample(ctx)
	}
	if n := len(pulse.Samples()); n != 3 {
		t.Errorf("%d samples kept, want the window's 3", n)
	}
}

// TestChangeFinderLocatesAnOrdersChanges: the journey's view of the CDC
// change records of one order — op, LSN, version and position — read from
// the change topic near the commit times.
func TestChangeFinderLocatesAnOrdersChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	kafkatest.CreateTopics(t, p, 3, "orders.orders")
	const id = "0b6f3c8e-1111-4222-8333-444455556666"
	start := time.Now()
	change := func(order, op string, version int, lsn int64) *kgo.Record {
		return &kgo.Record{Topic: "orders.orders", Key: []byte(`{"id":"` + order + `"}`), Value: []byte(fmt.Sprintf(
			`{"before":null,"after":{"id":%q,"status":"PENDING","version":%d},"source":{"connector":"postgresql","lsn":%d},"op":%q}`,
			order, version, lsn, op))}
	}
	for i := range 40 {
		if err := p.ProduceSync(ctx, change(fmt.Sprintf("other-%d", i), "c", 1, int64(1000+i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.ProduceSync(ctx, change(id, "c", 1, 0x1_0000_00A0), change(id, "u", 2, 0x1_0000_0F00)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	k := ops.NewKafka(p, kafkatest.Options(b))
	changes, err := k.NewChangeFinder("orders.orders").FindChanges(ctx, id, []time.Time{start, start.Add(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 {
		t.Fatalf("changes = %+v, want the order's two", changes)
	}
	if c := changes[0]; c.Op != "c" || c.Version != 1 || c.LSN != "1/A0" || c.Topic != "orders.orders" || c.Timestamp.IsZero() {
		t.Errorf("first change = %+v", c)
	}
	if c := changes[1]; c.Op != "u" || c.Version != 2 || c.LSN != "1/F00" || c.Offset <= changes[0].Offset {
		t.Errorf("second change = %+v", c)
	}
}
