package ops_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/ops"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestAdhocSnapshotThroughTheAPI is the console's "Snapshot tables…" button:
// POST /api/v1/ops/cdc/connectors/{name}/snapshots writes Debezium's
// execute-snapshot signal ({"data-collections": [...], "type":
// "incremental"}, the signalling page of Debezium's documentation) to the
// connector's signaling table; the running connector reads the table
// incrementally and the reads (op "r", source.snapshot "incremental") reach
// the topic. DELETE writes stop-snapshot.
func TestAdhocSnapshotThroughTheAPI(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO orders (id, customer_id, status, total_amount)
		SELECT gen_random_uuid(), 'c-' || g, 'PENDING', g FROM generate_series(1, 25) g`); err != nil {
		t.Fatal(err)
	}
	m := cdc.NewManager(db.Pool, cdc.ManagerOptions{Kafka: kafkatest.Options(b), TopicPartitions: 1,
		RetryMin: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(m.Close)
	keys, err := cdc.DatabaseKeys(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	slot := make([]byte, 6)
	_, _ = rand.Read(slot)
	raw := map[string]string{
		"connector.class": cdc.ConnectorClass, "topic.prefix": "shop", "table.include.list": "public.orders",
		"slot.name": "cdctest_" + hex.EncodeToString(slot), "publication.name": "snap_api_pub", "snapshot.mode": "no_data",
		"status.update.interval.ms": "50", "signal.data.collection": "public.debezium_signal",
		"incremental.snapshot.chunk.size": "10", "database.user": "postgres",
	}
	for k, v := range keys {
		raw[k] = v
	}
	if _, _, err := m.Create(ctx, "shop", raw); err != nil {
		t.Fatal(err)
	}
	// A connector without a signaling table (it never reaches a database).
	noSignals := map[string]string{"connector.class": cdc.ConnectorClass, "topic.prefix": "x", "database.hostname": "127.0.0.1",
		"database.port": "1", "database.user": "u", "database.dbname": "d"}
	if _, _, err := m.Create(ctx, "no-signals", noSignals); err != nil {
		t.Fatal(err)
	}
	waitPhase := func(phase string) cdc.Status {
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := m.StatusOf(ctx, "shop")
			if err == nil && s.Phase == phase {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("connector phase %q, want %s", s.Phase, phase)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitPhase("streaming")

	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		ops.SnapshotRoutes(ops.ManagerSnapshots(m))))
	defer srv.Close()
	call := func(method, name, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+"/api/v1/ops/cdc/connectors/"+name+"/snapshots", strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"nobody", `{"tables":["public.orders"]}`, http.StatusNotFound},
		{"no-signals", `{"tables":["public.orders"]}`, http.StatusConflict},
		{"shop", `{"tables":["public.inventory_items"]}`, http.StatusUnprocessableEntity}, // not captured
		{"shop", `{"tables":["public.orders"],"type":"sometimes"}`, http.StatusUnprocessableEntity},
	} {
		if code, body := call(http.MethodPost, tc.name, tc.body); code != tc.want {
			t.Errorf("POST %s %s = %d %v, want %d", tc.name, tc.body, code, body, tc.want)
		}
	}

	code, body := call(http.MethodPost, "shop", `{"tables":["public.orders"]}`)
	if code != http.StatusAccepted || body["signal"] != cdc.SignalExecuteSnapshot || body["type"] != cdc.SnapshotIncremental {
		t.Fatalf("POST = %d %v", code, body)
	}
	var typ, data string
	if err := db.Pool.QueryRow(ctx, `SELECT type, data FROM debezium_signal WHERE id = $1`, body["id"]).Scan(&typ, &data); err != nil {
		t.Fatalf("signal %v not in the signaling table: %v", body["id"], err)
	}
	if typ != "execute-snapshot" || data != `{"data-collections":["public\\.orders"],"type":"incremental"}` {
		t.Errorf("signal row: %s %s", typ, data)
	}
	var st cdc.Status
	deadline := time.Now().Add(time.Minute)
	for {
		st, _ = m.StatusOf(ctx, "shop")
		if st.Snapshot != nil && st.Snapshot.State == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot progress %+v", st.Snapshot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := st.Snapshot; p.SignalID != body["id"] || p.RowsRead != 25 || p.Chunks != 3 || p.ChunkSize != 10 || p.TablesDone != 1 {
		t.Errorf("progress %+v", p)
	}
	recs := kafkatest.Read(t, b, "shop.public.orders", 25, 30*time.Second)
	for _, r := range recs {
		var ev struct {
			Op     string `json:"op"`
			Source struct {
				Snapshot string `json:"snapshot"`
			} `json:"source"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil || ev.Op != "r" || ev.Source.Snapshot != "incremental" {
			t.Fatalf("record %s: want op r, source.snapshot incremental", r.Value)
		}
	}
	if len(recs) != 25 {
		t.Fatalf("%d reads on the topic, want 25", len(recs))
	}

	code, body = call(http.MethodDelete, "shop", "")
	if code != http.StatusAccepted || body["signal"] != cdc.SignalStopSnapshot {
		t.Fatalf("DELETE = %d %v", code, body)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT type, data FROM debezium_signal WHERE id = $1`, body["id"]).Scan(&typ, &data); err != nil ||
		typ != "stop-snapshot" || data != `{"type":"incremental"}` {
		t.Errorf("stop signal row: %s %s %v", typ, data, err)
	}
}
