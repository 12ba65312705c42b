package journey_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/journey"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// hopsOf returns the hops of kind, in timeline order.
func hopsOf(j *journey.Journey, kind string) []journey.Hop {
	var out []journey.Hop
	for _, h := range j.Hops {
		if h.Kind == kind {
			out = append(out, h)
		}
	}
	return out
}

func eventOf(t *testing.T, j *journey.Journey, typ string) journey.Event {
	t.Helper()
	for _, ev := range j.Events {
		if ev.Type == typ {
			return ev
		}
	}
	t.Fatalf("journey has no %s event: %+v", typ, j.Events)
	return journey.Event{}
}

// TestJourneyOfAnOrderThroughTheSaga places an order through the real
// outbox, relay, inventory consumer and saga, ships it, and checks that the
// journey lays out every hop in time order with where each event went and
// who handled it.
func TestJourneyOfAnOrderThroughTheSaga(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	p.SetStock(t, "SKU-J", 10)
	ctx := logging.WithCorrelationID(context.Background(), "corr-journey-1")
	res, err := p.Orders.Create(ctx, order.CreateRequest{Actor: "user:alice", Order: order.NewOrder{
		CustomerID: "c-journey", Items: []order.NewItem{{SKU: "SKU-J", Quantity: 2, UnitPrice: 1999}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	p.WaitForStatus(t, id, order.StatusConfirmed)
	if _, err := p.Orders.ChangeStatus(ctx, id, order.StatusProcessing, "picking", "user:bob", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Orders.ChangeStatus(ctx, id, order.StatusShipped, "", "user:bob", nil); err != nil {
		t.Fatal(err)
	}
	p.WaitSettled(t)
	p.WaitCaughtUp(t, inventory.ConsumerGroup, inventory.ConsumedTopics...)

	// The API request that placed it, as the audit log recorded it.
	if _, err := p.DB.Pool.Exec(context.Background(), `INSERT INTO audit_log (at, actor, principal_id, principal_kind,
		action, method, route, target, status, outcome, request_id, duration_ms)
		VALUES ($1, 'user:alice', 'u1', 'user', 'POST /api/v1/orders', 'POST', '/api/v1/orders', '/api/v1/orders', 201,
		'success', 'corr-journey-1', 4.5)`, res.Order.CreatedAt.Add(5*time.Millisecond)); err != nil {
		t.Fatal(err)
	}

	b := journey.NewBuilder(p.DB.Pool, journey.Options{Strategy: "outbox"})
	j, err := b.Build(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Order.Status != "SHIPPED" || j.Order.CustomerID != "c-journey" {
		t.Errorf("order = %+v", j.Order)
	}

	// Request, commit and status changes.
	req := hopsOf(j, journey.KindRequest)
	if len(req) != 1 || req[0].CorrelationID != "corr-journey-1" || req[0].Actor != "user:alice" || req[0].HTTPStatus != 201 {
		t.Errorf("request hops = %+v", req)
	}
	if c := hopsOf(j, journey.KindCommit); len(c) != 1 || c[0].ToStatus != "PENDING" || c[0].Actor != "user:alice" {
		t.Errorf("commit hops = %+v", c)
	}
	st := hopsOf(j, journey.KindStatus)
	if len(st) != 3 || st[0].ToStatus != "CONFIRMED" || st[0].Actor != order.SagaActor || st[1].ToStatus != "PROCESSING" ||
		st[1].Reason != "picking" || st[2].ToStatus != "SHIPPED" {
		t.Errorf("status hops = %+v", st)
	}

	// Every event the order caused, each published and handled by the
	// consumer that reacts to it, at a known partition and offset. Inventory
	// ignores status updates other than SHIPPED and records none of them.
	wantHandler := map[string]string{
		events.OrderCreated:       inventory.ConsumerGroup,
		events.InventoryReserved:  order.SagaGroup,
		events.OrderStatusUpdated: inventory.ConsumerGroup,
	}
	if len(j.Events) != 5 { // created, reserved, 3 × status updated
		t.Fatalf("events = %+v", j.Events)
	}
	ignored := 0
	for _, ev := range j.Events {
		if ev.Source != "outbox" || ev.OutboxState != "published" || ev.PublishedAt == nil || ev.Topic != ev.Type {
			t.Errorf("event %s: %+v", ev.Type, ev)
		}
		if ev.CorrelationID != "corr-journey-1" {
			t.Errorf("event %s correlation %q, want the request's", ev.Type, ev.CorrelationID)
		}
		if ev.Type == events.OrderStatusUpdated && len(ev.Handlings) == 0 {
			ignored++
			continue
		}
		if len(ev.Handlings) != 1 {
			t.Errorf("event %s handled %d times: %+v", ev.Type, len(ev.Handlings), ev.Handlings)
			continue
		}
		h := ev.Handlings[0]
		if h.Consumer != wantHandler[ev.Type] || h.Group == nil || *h.Group != wantHandler[ev.Type] || h.Topic == nil ||
			*h.Topic != ev.Type || h.Offset == nil || h.Attempts == nil || *h.Attempts != 1 || h.RecordTimestamp == nil {
			t.Errorf("event %s handling = %+v", ev.Type, h)
		}
		// The relay records where Kafka put each event; the consumer read it there.
		if ev.Partition == nil || ev.Offset == nil || ev.PositionFrom != "outbox" || *ev.Offset != *h.Offset || *ev.Partition != *h.Partition {
			t.Errorf("event %s position %v/%v from %q", ev.Type, ev.Partition, ev.Offset, ev.PositionFrom)
		}
	}
	if ignored != 2 {
		t.Errorf("%d status updates without a handling, want the 2 inventory ignores", ignored)
	}
	if n := len(hopsOf(j, journey.KindHandled)); n != 3 {
		t.Errorf("%d handled hops, want 3", n)
	}
	if n := len(hopsOf(j, journey.KindPublished)); n != 5 {
		t.Errorf("%d published hops, want 5", n)
	}
	if r := hopsOf(j, journey.KindReservation); len(r) != 2 || r[0].SKU != "SKU-J" || r[0].Quantity != 2 || r[1].Outcome != "committed" {
		t.Errorf("reservation hops = %+v", r)
	}
	if len(j.Reservations) != 1 || j.Reservations[0].Status != "committed" {
		t.Errorf("reservations = %+v", j.Reservations)
	}

	// One timeline: sorted, with the time between hops.
	for i, h := range j.Hops {
		if i == 0 {
			if h.SincePreviousMS != nil {
				t.Errorf("first hop has a previous: %+v", h)
			}
			continue
		}
		if h.At.Before(j.Hops[i-1].At) || h.SincePreviousMS == nil || *h.SincePreviousMS < 0 {
			t.Errorf("hop %d (%s) out of order or without its gap: %+v", i, h.Kind, h)
		}
	}
	// Causality holds on the timeline: the order event is written before it
	// is handled, and the reservation's event is handled after it.
	pos := map[string]int{}
	for i, h := range j.Hops {
		key := h.Kind + "/" + h.EventType
		if _, ok := pos[key]; !ok {
			pos[key] = i
		}
	}
	if !(pos["outbox/ORDER_CREATED"] < pos["handled/ORDER_CREATED"] && pos["handled/ORDER_CREATED"] < pos["handled/INVENTORY_RESERVED"]) {
		t.Errorf("hops out of causal order: %v", pos)
	}
}

// TestJourneyShowsDeadLettersRedrivesAndAcknowledgedPositions: a dead letter
// of one of the order's events and its redrive appear on the timeline, and
// once the outbox records Kafka's acknowledgement the position comes from it.
func TestJourneyShowsDeadLettersRedrivesAndAcknowledgedPositions(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoRelay: true, NoConsumers: true})
	ctx := context.Background()
	res, err := p.Orders.Create(ctx, order.CreateRequest{Actor: "test", Order: order.NewOrder{
		CustomerID: "c-dl", Items: []order.NewItem{{SKU: "SKU-D", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID.String()
	var eventID string
	if err := p.DB.Pool.QueryRow(ctx, `SELECT id::text FROM outbox_events WHERE aggregate_id = $1`, id).Scan(&eventID); err != nil {
		t.Fatal(err)
	}
	// The relay's record of Kafka's acknowledgement.
	acked := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := p.DB.Pool.Exec(ctx, `INSERT INTO outbox_published (seq, kafka_partition, kafka_offset, acked_at, published_at)
		SELECT seq, 2, 17, $2, $2 FROM outbox_events WHERE id = $1`, eventID, acked); err != nil {
		t.Fatal(err)
	}
	store := dlq.NewStore(p.DB.Pool)
	part, off := int32(2), int64(17)
	attempts := 3
	dlID, _, err := store.Insert(ctx, dlq.Message{Topic: "ORDER_CREATED.dlq", Partition: 0, Offset: 0, Key: []byte(id),
		Value: []byte("{}"), Headers: []dlq.Header{{Key: events.HeaderEventID, Value: []byte(eventID)}},
		OriginalTopic: "ORDER_CREATED", OriginalPartition: &part, OriginalOffset: &off, ConsumerGroup: "trackops-inventory",
		ExceptionClass: "trackops.Error", ExceptionMessage: "database unavailable", Attempts: &attempts,
		Fingerprint: "f", ErrorPattern: "database unavailable"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DB.Pool.Exec(ctx, `INSERT INTO dlq_actions (message_id, action, actor) VALUES ($1, 'replay', 'user:root'),
		($1, 'replay.dry_run', 'user:root')`, dlID); err != nil {
		t.Fatal(err)
	}
	// The redriven record is then handled on its second delivery.
	dctx := events.WithDelivery(ctx, events.Delivery{Group: "trackops-inventory", Topic: "ORDER_CREATED", Partition: 2, Offset: 30, Attempt: 1})
	if _, err := inbox.Claim(dctx, p.DB.Pool, "trackops-inventory", eventID); err != nil {
		t.Fatal(err)
	}

	j, err := journey.NewBuilder(p.DB.Pool, journey.Options{}).Build(ctx, res.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	ev := eventOf(t, j, events.OrderCreated)
	if ev.PositionFrom != "outbox" || *ev.Partition != 2 || *ev.Offset != 17 || ev.PublishedAt == nil || !ev.PublishedAt.Equal(acked) {
		t.Errorf("event position = %v/%v from %q, published %v", ev.Partition, ev.Offset, ev.PositionFrom, ev.PublishedAt)
	}
	if len(ev.DeadLetters) != 1 || ev.DeadLetters[0].ExceptionMessage != "database unavailable" || len(ev.DeadLetters[0].Actions) != 2 {
		t.Errorf("dead letters = %+v", ev.DeadLetters)
	}
	if d := hopsOf(j, journey.KindDeadLetter); len(d) != 1 || d[0].DeadLetterID != dlID || d[0].Group != "trackops-inventory" {
		t.Errorf("dead-letter hops = %+v", d)
	}
	if r := hopsOf(j, journey.KindRedrive); len(r) != 1 || r[0].Actor != "user:root" {
		t.Errorf("redrive hops (the dry run is not one) = %+v", r)
	}
	if h := hopsOf(j, journey.KindHandled); len(h) != 1 || *h[0].Offset != 30 {
		t.Errorf("handled hops = %+v", h)
	}
}

// TestJourneyUnderCDCFindsTheTransformersEvents: under the cdc strategy the
// order's events have ids derived from its changes; the journey finds the
// consumers that handled them by those ids.
func TestJourneyUnderCDCFindsTheTransformersEvents(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	svc := order.NewService(db.Pool, order.WithChangeStream())
	res, err := svc.Create(ctx, order.CreateRequest{Actor: "test", Order: order.NewOrder{
		CustomerID: "c-cdc", Items: []order.NewItem{{SKU: "SKU-C", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	created := order.EventID(res.Order.ID, events.OrderCreated, 1)
	dctx := events.WithDelivery(ctx, events.Delivery{Group: "trackops-inventory", Topic: events.OrderCreated, Partition: 1, Offset: 5, Attempt: 2})
	if _, err := inbox.Claim(dctx, db.Pool, "trackops-inventory", created); err != nil {
		t.Fatal(err)
	}
	j, err := journey.NewBuilder(db.Pool, journey.Options{Strategy: "cdc"}).Build(ctx, res.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	ev := eventOf(t, j, events.OrderCreated)
	if ev.ID != created || ev.Source != "cdc" || len(ev.Handlings) != 1 || *ev.Handlings[0].Attempts != 2 || *ev.Offset != 5 {
		t.Errorf("ORDER_CREATED = %+v", ev)
	}
	gap := false
	for _, g := range j.Gaps {
		gap = gap || strings.Contains(g, "CDC change positions")
	}
	if !gap {
		t.Errorf("gaps = %q, want the missing change positions named", j.Gaps)
	}
}

func TestJourneyEndpoint(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := journey.NewBuilder(db.Pool, journey.Options{})
	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{}, b.Routes()))
	defer srv.Close()
	svc := order.NewService(db.Pool)
	res, err := svc.Create(context.Background(), order.CreateRequest{Actor: "test", Order: order.NewOrder{
		CustomerID: "c-http", Items: []order.NewItem{{SKU: "SKU-H", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/api/v1/orders/" + res.Order.ID.String() + "/journey": http.StatusOK,
		"/api/v1/orders/" + uuid.NewString() + "/journey":      http.StatusNotFound,
		"/api/v1/orders/not-a-uuid/journey":                    http.StatusBadRequest,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d (%v)", path, resp.StatusCode, want, body)
		}
		if want == http.StatusOK {
			if hops, _ := body["hops"].([]any); len(hops) < 2 {
				t.Errorf("GET %s: hops = %v", path, body["hops"])
			}
		}
	}
}
