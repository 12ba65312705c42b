package connect

import (
	"bytes"
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
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// seedConnectorJSON is the seed's trackops-orders-connector definition.
const seedConnectorJSON = `{"name":"trackops-orders-connector","config":{"connector.class":"io.debezium.connector.postgresql.PostgresConnector","database.hostname":"postgres-server","database.port":"5432","database.user":"postgres","database.password":"password","database.dbname":"trackops_orders","database.server.name":"trackops_orders","topic.prefix":"trackops_orders","table.include.list":"public.orders,public.order_items","plugin.name":"pgoutput","slot.name":"debezium_orders","publication.name":"debezium_publication","transforms":"route","transforms.route.type":"org.apache.kafka.connect.transforms.RegexRouter","transforms.route.regex":"trackops_orders.public.(.*)","transforms.route.replacement":"orders.$1"}}`

// seedPointedAt is the seed's JSON with only database.* pointed at db — and
// a slot name of the test's own, because slot names are cluster-wide and
// tests run in parallel.
func seedPointedAt(t *testing.T, db *postgrestest.Database) (body []byte, slot string) {
	t.Helper()
	var req struct {
		Name   string            `json:"name"`
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal([]byte(seedConnectorJSON), &req); err != nil {
		t.Fatal(err)
	}
	keys, err := cdc.DatabaseKeys(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	for k := range req.Config {
		if strings.HasPrefix(k, "database.") && k != "database.server.name" {
			delete(req.Config, k)
		}
	}
	for k, v := range keys {
		req.Config[k] = v
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	slot = "cdctest_" + hex.EncodeToString(b)
	req.Config["slot.name"] = slot
	req.Config["status.update.interval.ms"] = "100"
	body, _ = json.Marshal(req)
	return body, slot
}

type client struct {
	t   *testing.T
	url string
}

func (c client) do(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (c client) expect(method, path string, body []byte, want int) []byte {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, code, out, want)
	}
	return out
}

func (c client) state(name string) (string, string) {
	c.t.Helper()
	var st struct {
		Connector struct{ State, Trace string }
		Tasks     []struct{ State, Trace string }
	}
	out := c.expect("GET", "/connectors/"+name+"/status", nil, 200)
	if err := json.Unmarshal(out, &st); err != nil || len(st.Tasks) != 1 {
		c.t.Fatalf("status body %s", out)
	}
	return st.Connector.State, st.Tasks[0].Trace
}

// waitState polls the status until it is want (a connector reports
// UNASSIGNED until its slot is set up) or 20 s passed, and returns the last.
func (c client) waitState(name, want string) (string, string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		state, trace := c.state(name)
		if state == want || time.Now().After(deadline) {
			return state, trace
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRESTLifecycleWithSeedConnector(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	opts := cdc.ManagerOptions{Kafka: kafkatest.Options(b), Logger: quietLogger(), WorkerID: "127.0.0.1:8083", RetryMin: 50 * time.Millisecond}
	m := cdc.NewManager(db.Pool, opts)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(m, "test", quietLogger()))
	defer srv.Close()
	defer m.Close()
	c := client{t: t, url: srv.URL}

	var root map[string]string
	_ = json.Unmarshal(c.expect("GET", "/", nil, 200), &root)
	if root["version"] == "" {
		t.Errorf("GET / = %v", root)
	}
	if out := c.expect("GET", "/connectors", nil, 200); strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("GET /connectors = %s", out)
	}
	body, slot := seedPointedAt(t, db)
	out := c.expect("POST", "/connectors", body, 201)
	var info cdc.Info
	if err := json.Unmarshal(out, &info); err != nil || info.Name != "trackops-orders-connector" || info.Type != "source" ||
		len(info.Tasks) != 1 || info.Config["slot.name"] != slot || info.Config["name"] != "trackops-orders-connector" {
		t.Fatalf("POST /connectors body %s", out)
	}
	var conflict struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal(c.expect("POST", "/connectors", body, 409), &conflict)
	if conflict.ErrorCode != 409 || !strings.Contains(conflict.Message, "already exists") {
		t.Errorf("409 body %+v", conflict)
	}
	if state, trace := c.waitState("trackops-orders-connector", "RUNNING"); state != "RUNNING" {
		t.Fatalf("state %s %s", state, trace)
	}

	// Capture starts: an order and its item reach the routed topics.
	ctx := context.Background()
	waitSlotActive(t, db, slot)
	if _, err := db.Pool.Exec(ctx, `WITH o AS (INSERT INTO orders (id, customer_id, status, total_amount) VALUES (gen_random_uuid(), 'c', 'PENDING', 10) RETURNING id)
		INSERT INTO order_items (id, order_id, line_no, sku, quantity, unit_price, line_total) SELECT gen_random_uuid(), id, 1, 'SKU-1', 1, 10, 10 FROM o`); err != nil {
		t.Fatal(err)
	}
	if recs := kafkatest.Read(t, b, "orders.orders", 1, 20*time.Second); len(recs) != 1 {
		t.Fatalf("orders.orders got %d records", len(recs))
	}
	if recs := kafkatest.Read(t, b, "orders.order_items", 1, 20*time.Second); len(recs) != 1 {
		t.Fatalf("orders.order_items got %d records", len(recs))
	}

	c.expect("GET", "/connectors/trackops-orders-connector", nil, 200)
	var cfg map[string]string
	_ = json.Unmarshal(c.expect("GET", "/connectors/trackops-orders-connector/config", nil, 200), &cfg)
	if cfg["topic.prefix"] != "trackops_orders" {
		t.Errorf("config %v", cfg)
	}
	c.expect("PUT", "/connectors/trackops-orders-connector/pause", nil, 202)
	if state, _ := c.state("trackops-orders-connector"); state != "PAUSED" {
		t.Errorf("after pause: %s", state)
	}
	c.expect("PUT", "/connectors/trackops-orders-connector/resume", nil, 202)
	if state, _ := c.waitState("trackops-orders-connector", "RUNNING"); state != "RUNNING" {
		t.Errorf("after resume: %s", state)
	}
	c.expect("POST", "/connectors/trackops-orders-connector/restart", nil, 204)

	// A bad reconfiguration is refused; a good one is applied (200).
	cfg["plugin.name"] = "wal2json"
	bad, _ := json.Marshal(cfg)
	c.expect("PUT", "/connectors/trackops-orders-connector/config", bad, 400)
	cfg["plugin.name"] = "pgoutput"
	cfg["tombstones.on.delete"] = "false"
	good, _ := json.Marshal(cfg)
	c.expect("PUT", "/connectors/trackops-orders-connector/config", good, 200)
	c.expect("PUT", "/connectors/trackops-orders-connector/pause", nil, 202)

	// A second manager on the same database (a restarted process) finds the
	// definition, its new configuration and its paused state.
	m.Close()
	m2 := cdc.NewManager(db.Pool, opts)
	if err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	srv2 := httptest.NewServer(NewHandler(m2, "test", quietLogger()))
	defer srv2.Close()
	c2 := client{t: t, url: srv2.URL}
	if out := c2.expect("GET", "/connectors", nil, 200); strings.TrimSpace(string(out)) != `["trackops-orders-connector"]` {
		t.Fatalf("after restart GET /connectors = %s", out)
	}
	if state, _ := c2.state("trackops-orders-connector"); state != "PAUSED" {
		t.Errorf("persisted state %s, want PAUSED", state)
	}
	var cfg2 map[string]string
	_ = json.Unmarshal(c2.expect("GET", "/connectors/trackops-orders-connector/config", nil, 200), &cfg2)
	if cfg2["tombstones.on.delete"] != "false" {
		t.Errorf("persisted config lost the update: %v", cfg2)
	}
	c2.expect("DELETE", "/connectors/trackops-orders-connector", nil, 204)
	c2.expect("GET", "/connectors/trackops-orders-connector", nil, 404)
	c2.expect("DELETE", "/connectors/trackops-orders-connector", nil, 404)
	c2.expect("POST", "/connectors", []byte(`{"name":"x","config":{"connector.class":"io.debezium.connector.postgresql.PostgresConnector"}}`), 400)
}

func TestFailedConnectorReportsTrace(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	m := cdc.NewManager(db.Pool, cdc.ManagerOptions{Kafka: kafkatest.Options(b), Logger: quietLogger(), RetryMin: time.Hour})
	defer m.Close()
	srv := httptest.NewServer(NewHandler(m, "test", quietLogger()))
	defer srv.Close()
	c := client{t: t, url: srv.URL}
	body, _ := seedPointedAt(t, db)
	// publication.autocreate.mode=disabled and no such publication: the run fails.
	body = bytes.Replace(body, []byte(`"plugin.name"`), []byte(`"publication.autocreate.mode":"disabled","plugin.name"`), 1)
	c.expect("POST", "/connectors", body, 201)
	deadline := time.Now().Add(20 * time.Second)
	for {
		state, trace := c.state("trackops-orders-connector")
		if state == "FAILED" {
			if !strings.Contains(trace, "publication") {
				t.Errorf("trace %q does not explain the failure", trace)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connector never failed (state %s)", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSlotActive(t *testing.T, db *postgrestest.Database, slot string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var active bool
		err := db.Pool.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		if err == nil && active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s never became active", slot)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refuseAll is a rate limiter whose budget is spent.
type refuseAll struct{}

func (refuseAll) Allow(context.Context, string) (bool, time.Duration, error) {
	return false, 2 * time.Second, nil
}

// anyone authenticates every request as an admin.
type anyone struct{}

func (anyone) Authenticate(*http.Request) (httpapi.Principal, error) {
	return httpapi.Principal{ID: "k", Name: "k", Kind: "apikey", Role: httpapi.RoleAdmin}, nil
}

// TestRateLimitUsesConnectErrorShape checks the router's 429 on the Connect
// port: Kafka Connect's {"error_code","message"} with Retry-After.
func TestRateLimitUsesConnectErrorShape(t *testing.T) {
	t.Parallel()
	h := httpapi.NewRouter(httpapi.RouterConfig{Logger: quietLogger(), Auth: BasicAuth(anyone{}), Limiter: refuseAll{},
		Errors: WriteError, Challenges: Challenges},
		[]httpapi.Route{{Method: http.MethodGet, Pattern: "/connectors", Role: httpapi.RoleOperator, Handler: func(w http.ResponseWriter, _ *http.Request) {}}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/connectors", nil)
	req.SetBasicAuth("user", "tok_whatever")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusTooManyRequests ||
		body.ErrorCode != http.StatusTooManyRequests || body.Message == "" || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("429: %d %+v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
}
