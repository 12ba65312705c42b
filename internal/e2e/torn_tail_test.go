package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// largestSegment is the biggest segment file of topic in a TrackOps data dir.
func largestSegment(t testing.TB, dataDir, topic string) (string, int64) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dataDir, "kafka", "partitions", topic+"-*", "*.dat"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no %s segments under %s: %v", topic, dataDir, err)
	}
	var path string
	var size int64
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Size() > size {
			path, size = m, fi.Size()
		}
	}
	return path, size
}

// TestTornBrokerTailAfterKillIsPublishedAgain is issue 12's point 7 on the
// real binary: orders published, kill -9, the last 13 bytes of the largest
// ORDER_CREATED segment cut off (a power loss's torn tail), start. The
// damage is logged and shown in health, the lost event is published again
// with its event id, and `trackops verify --kafka` passes.
func TestTornBrokerTailAfterKillIsPublishedAgain(t *testing.T) {
	endToEnd(t)
	db := postgrestest.New(t)
	cfg := newConfig(t, db)
	p := Start(t, cfg)
	const n = 40
	for i := range n {
		if _, code, err := createOrder(p, i); err != nil || code != http.StatusCreated {
			t.Fatalf("create order %d: %d %v", i, code, err)
		}
	}
	waitOutboxDrained(t, db, 60*time.Second)
	p.Kill()

	seg, size := largestSegment(t, cfg.DataDir, events.OrderCreated)
	if err := os.Truncate(seg, size-13); err != nil {
		t.Fatal(err)
	}
	p = Start(t, cfg)
	if !strings.Contains(p.Log.String(), "the log lost records on the last stop") {
		t.Fatalf("the damage was not logged:\n%s", p.Log.String())
	}
	waitOutboxDrained(t, db, 60*time.Second)

	ids := orderCreatedIDs(t, cfg.KafkaAddr, n)
	var missing []string
	rows, err := db.Pool.Query(t.Context(), `SELECT id::text FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		if ids[id] == 0 {
			missing = append(missing, id)
		}
	}
	rows.Close()
	if len(missing) > 0 {
		t.Fatalf("%d orders have no ORDER_CREATED after recovery: %v\n%s", len(missing), missing, p.Log.String())
	}
	var requeued int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox_events WHERE last_error LIKE 'requeued:%'`).Scan(&requeued); err != nil {
		t.Fatal(err)
	}
	if requeued == 0 {
		t.Fatal("no outbox row was queued again although the log lost its tail")
	}

	resp, err := p.Do(http.MethodGet, "/health", "")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Components map[string]struct {
			Status  string         `json:"status"`
			Details map[string]any `json:"details"`
		} `json:"components"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	k := h.Components["kafka"]
	if k.Status != "DEGRADED" || k.Details["durability"] == nil {
		t.Fatalf("kafka health after a damaged log: %s %v; want DEGRADED with durability details", k.Status, k.Details)
	}

	// The saga settles every order (no stock: each is cancelled), then
	// the last status events go out; only then is everything in Kafka.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var pending int
		if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM orders WHERE status = 'PENDING'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orders still PENDING", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitOutboxDrained(t, db, 60*time.Second)
	out, err := Command(t, p.Env, "", "verify", "--kafka", "--outbox-bound", "1ns", "--pending-bound", "1h")
	if err != nil {
		t.Fatalf("verify --kafka after recovery: %v\n%s", err, out)
	}
}
