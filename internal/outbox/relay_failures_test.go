package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

func writeEvent(t *testing.T, db postgres.Querier, typ, aggregate string, data any) events.Event {
	t.Helper()
	ev, err := events.New(typ, events.AggregateOrder, aggregate, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(context.Background(), db, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

type rowState struct {
	processed, failed bool
	attempts          int
	lastError         string
	nextAttemptIn     time.Duration
}

func readRow(t *testing.T, db postgres.Querier, id string) rowState {
	t.Helper()
	var s rowState
	var next *time.Time
	var now time.Time
	err := db.QueryRow(context.Background(), `SELECT processed, failed, attempts, coalesce(last_error, ''), next_attempt_at, now()
		FROM outbox_status WHERE id = $1`, id).Scan(&s.processed, &s.failed, &s.attempts, &s.lastError, &next, &now)
	if err != nil {
		t.Fatal(err)
	}
	if next != nil {
		s.nextAttemptIn = next.Sub(now)
	}
	return s
}

// incompressible returns n bytes of random hex, which no codec shrinks much.
func incompressible(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestOversizedEventIsMarkedFailedCountedListedAndRequeued: an event larger
// than the broker accepts is given up (not retried forever, not dropped),
// counted, listed by the ops endpoint, and published once an admin requeues
// it after the broker's limit was raised. Its neighbours go out meanwhile.
func TestOversizedEventIsMarkedFailedCountedListedAndRequeued(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	// Batches as large as the client allows, so the broker's limit (1 MB by
	// default) is what refuses the record, and refuses its whole batch.
	producer, err := kafka.NewProducer(kafkatest.Options(b), kgo.ProducerBatchMaxBytes(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	topic := events.OrderStatusUpdated
	if err := kafka.EnsureTopics(ctx, producer, 1, topic); err != nil {
		t.Fatal(err)
	}

	huge := writeEvent(t, db.Pool, topic, uuid.NewString(), map[string]string{"blob": incompressible(2 << 20)})
	small := writeEvent(t, db.Pool, topic, uuid.NewString(), map[string]string{"status": "CONFIRMED"})
	m := NewMetrics(prometheus.NewRegistry())
	relay := NewRelay(db.Pool, producer, RelayConfig{RetryInitial: time.Hour, Metrics: m})
	if _, err := relay.PublishBatch(ctx); err != nil {
		t.Fatal(err)
	}

	if s := readRow(t, db.Pool, huge.ID); !s.failed || s.processed || s.attempts != 1 || !strings.Contains(s.lastError, "MESSAGE_TOO_LARGE") {
		t.Fatalf("oversized event: %+v, want failed after 1 attempt with MESSAGE_TOO_LARGE", s)
	}
	if s := readRow(t, db.Pool, small.ID); !s.processed {
		t.Fatalf("the small event was held back by the oversized one: %+v", s)
	}
	if got := testutil.ToFloat64(m.failures.WithLabelValues(topic, "true")); got != 1 {
		t.Errorf("trackops_outbox_publish_failures_total{permanent=true} = %v, want 1", got)
	}
	// A failed row is not claimed again: the relay does not spin on it.
	if n, err := relay.PublishBatch(ctx); err != nil || n != 0 {
		t.Fatalf("second batch claimed %d (err %v), want 0", n, err)
	}

	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{}, NewHandlers(db.Pool, relay).Routes()))
	defer srv.Close()
	var listed ListJSON
	getJSON(t, srv.URL+"/api/v1/ops/outbox?state=failed", http.StatusOK, &listed)
	if listed.Stats.Failed != 1 || listed.Stats.Published != 1 || len(listed.Events) != 1 || listed.Events[0].ID.String() != huge.ID ||
		listed.Events[0].State != StateFailed || listed.Events[0].SizeBytes < 2<<20 || listed.Events[0].LastError == "" {
		t.Fatalf("GET /api/v1/ops/outbox?state=failed = %+v", listed)
	}
	getJSON(t, srv.URL+"/api/v1/ops/outbox?state=pending", http.StatusOK, &listed)
	if len(listed.Events) != 0 {
		t.Fatalf("pending listing holds %d events, want 0", len(listed.Events))
	}
	getJSON(t, srv.URL+"/api/v1/ops/outbox?state=lost", http.StatusUnprocessableEntity, nil)
	post(t, srv.URL+"/api/v1/ops/outbox/"+small.ID+"/retry", http.StatusConflict)
	post(t, srv.URL+"/api/v1/ops/outbox/"+uuid.NewString()+"/retry", http.StatusNotFound)
	post(t, srv.URL+"/api/v1/ops/outbox/not-a-uuid/retry", http.StatusBadRequest)

	// Fix the cause, then requeue.
	adm := kadm.NewClient(producer)
	v := "8388608"
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &v}}, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("raise max.message.bytes: %v", err)
	}
	post(t, srv.URL+"/api/v1/ops/outbox/"+huge.ID+"/retry", http.StatusAccepted)
	getJSON(t, srv.URL+"/api/v1/ops/outbox", http.StatusOK, &listed)
	if len(listed.Events) != 1 || listed.Events[0].State != StatePending || listed.Stats.Failed != 0 {
		t.Fatalf("after requeue: %+v", listed)
	}
	if _, err := relay.PublishBatch(ctx); err != nil {
		t.Fatal(err)
	}
	if s := readRow(t, db.Pool, huge.ID); !s.processed || s.failed {
		t.Fatalf("requeued event after the fix: %+v, want published", s)
	}
	if recs := kafkatest.Read(t, b, topic, 2, 20*time.Second); len(recs) != 2 {
		t.Fatalf("topic holds %d records, want 2", len(recs))
	}
}

// TestBrokerOutageKeepsRowsAndBacksOff: with the broker gone a batch fails,
// every row is kept unpublished with its attempt, error and a back-off, and
// is not claimed again before the back-off ends; after it ends the rows go out.
func TestBrokerOutageKeepsRowsAndBacksOff(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	addr, dir := freeAddr(t), t.TempDir()
	b, err := kafka.StartEmbedded(addr, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafka.NewProducer(kafka.Options{Brokers: []string{addr}}, kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	topic := events.OrderCreated
	if err := kafka.EnsureTopics(ctx, producer, 1, topic); err != nil {
		t.Fatal(err)
	}
	b.Close()

	ev := writeEvent(t, db.Pool, topic, uuid.NewString(), map[string]string{"id": "1"})
	relay := NewRelay(db.Pool, producer, RelayConfig{RetryInitial: time.Hour, RetryMax: 2 * time.Hour})
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("batch with the broker down: n=%d err=%v", n, err)
	}
	s := readRow(t, db.Pool, ev.ID)
	if s.processed || s.failed || s.attempts != 1 || s.lastError == "" || s.nextAttemptIn < 59*time.Minute {
		t.Fatalf("row after a failed publish: %+v, want kept, 1 attempt, error recorded, retry in about 1 h", s)
	}

	b, err = kafka.StartEmbedded(addr, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n, err := relay.PublishBatch(ctx); err != nil || n != 0 {
		t.Fatalf("row claimed during its back-off: n=%d err=%v", n, err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_retries SET next_attempt_at = now()`); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("batch after the back-off: n=%d err=%v", n, err)
	}
	if s := readRow(t, db.Pool, ev.ID); !s.processed || s.attempts != 2 {
		t.Fatalf("row after the broker came back: %+v, want published on attempt 2", s)
	}
	if got := relay.backoff(3); got != 2*time.Hour {
		t.Errorf("third back-off %v, want capped at 2h", got)
	}
}

func TestRelayBackoffDoubles(t *testing.T) {
	t.Parallel()
	r := NewRelay(nil, nil, RelayConfig{RetryInitial: time.Second, RetryMax: 10 * time.Second})
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 40: 10 * time.Second} {
		if got := r.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %v, want %v", attempt, got, want)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func getJSON(t *testing.T, url string, want int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
}

func post(t *testing.T, url string, want int) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: status %d, want %d", url, resp.StatusCode, want)
	}
}

// TestFailingAggregateHoldsOnlyItsOwnLaterEvents: an event that fails for a
// while (its topic does not exist yet) goes to the retry queue with its
// back-off; the later events of its order follow it there, untried, instead
// of overtaking it; other orders' events go out meanwhile; and once the
// cause is gone the order's events go out in the order they were written.
func TestFailingAggregateHoldsOnlyItsOwnLaterEvents(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	producer, err := kafka.NewProducer(kafkatest.Options(b), kgo.RecordDeliveryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const missing = "RELAY_TEST_NOT_YET"
	if err := kafka.EnsureTopics(ctx, producer, 1, events.OrderStatusUpdated); err != nil {
		t.Fatal(err)
	}
	relay := NewRelay(db.Pool, producer, RelayConfig{RetryInitial: time.Hour, RetryMax: 2 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
	publish := func(want int) {
		t.Helper()
		if n, err := relay.PublishBatch(ctx); err != nil || n != want {
			t.Fatalf("batch: n=%d err=%v, want %d events read", n, err, want)
		}
	}

	x1 := writeEvent(t, db.Pool, missing, "order-x", map[string]int{"n": 1})
	y1 := writeEvent(t, db.Pool, events.OrderStatusUpdated, "order-y", map[string]int{"n": 1})
	publish(2)
	if s := readRow(t, db.Pool, x1.ID); s.processed || s.failed || s.attempts != 1 || s.nextAttemptIn < 59*time.Minute {
		t.Fatalf("x1 after its topic failed: %+v, want retrying in about 1 h after 1 attempt", s)
	}
	if s := readRow(t, db.Pool, y1.ID); !s.processed {
		t.Fatalf("y1 held up by another order's failure: %+v", s)
	}

	x2 := writeEvent(t, db.Pool, missing, "order-x", map[string]int{"n": 2})
	y2 := writeEvent(t, db.Pool, events.OrderStatusUpdated, "order-y", map[string]int{"n": 2})
	publish(2)
	if s := readRow(t, db.Pool, x2.ID); s.processed || s.failed || s.attempts != 0 || s.nextAttemptIn > time.Second {
		t.Fatalf("x2 behind the failed x1: %+v, want queued behind it, never tried", s)
	}
	if s := readRow(t, db.Pool, y2.ID); !s.processed {
		t.Fatalf("y2 held up by another order's failure: %+v", s)
	}
	publish(0) // x1 backs off; x2 waits behind it

	if err := kafka.EnsureTopics(ctx, producer, 1, missing); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_retries SET next_attempt_at = now()
		WHERE seq = (SELECT seq FROM outbox_events WHERE id = $1)`, x1.ID); err != nil {
		t.Fatal(err)
	}
	publish(2)
	for _, id := range []string{x1.ID, x2.ID} {
		if s := readRow(t, db.Pool, id); !s.processed || s.failed {
			t.Fatalf("%s after the fix: %+v, want published", id, s)
		}
	}
	var order []string
	rows, _ := db.Pool.Query(ctx, `SELECT id::text FROM outbox_status WHERE aggregate_id = 'order-x' ORDER BY kafka_acked_at, seq`)
	order, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(order) != 2 || order[0] != x1.ID {
		t.Fatalf("order-x acknowledged as %v (%v), want x1 then x2", order, err)
	}
	var queued int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_retries`).Scan(&queued)
	st, _ := ReadStats(ctx, db.Pool)
	if queued != 0 || st.Pending != 0 || st.Published != 4 {
		t.Fatalf("retry queue %d, stats %+v; want empty, 4 published", queued, st)
	}
	if recs := kafkatest.Read(t, b, events.OrderStatusUpdated, 2, 20*time.Second); len(recs) != 2 {
		t.Fatalf("%s holds %d records, want 2 (y1, y2)", events.OrderStatusUpdated, len(recs))
	}
	recs := kafkatest.Read(t, b, missing, 2, 20*time.Second)
	if len(recs) != 2 || kafka.Header(recs[0], events.HeaderEventID) != x1.ID || kafka.Header(recs[1], events.HeaderEventID) != x2.ID {
		t.Fatalf("%s holds %d records, want x1 then x2", missing, len(recs))
	}
}
