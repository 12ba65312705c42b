package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// seedConnector is the seed's trackops-orders-connector definition, as its
// users post it to Kafka Connect.
const seedConnector = `{
  "name": "trackops-orders-connector",
  "config": {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "database.hostname": "postgres-server",
    "database.port": "5432",
    "database.user": "postgres",
    "database.password": "password",
    "database.dbname": "trackops_orders",
    "database.server.name": "trackops_orders",
    "topic.prefix": "trackops_orders",
    "table.include.list": "public.orders,public.order_items",
    "plugin.name": "pgoutput",
    "slot.name": "debezium_orders",
    "publication.name": "debezium_publication",
    "transforms": "route",
    "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
    "transforms.route.regex": "trackops_orders.public.(.*)",
    "transforms.route.replacement": "orders.$1"
  }
}`

// TestSeedConnectorOverConnectREST is the contract's check: with the outbox
// strategy (no built-in connector), the seed's connector JSON — database.*
// pointed at the test database and a slot of the test's own, since slot
// names are server-wide — posted to the Connect address with an admin token
// answers 201, its status becomes RUNNING, and rows inserted into orders
// and order_items appear on orders.orders and orders.order_items.
func TestSeedConnectorOverConnectREST(t *testing.T) {
	endToEnd(t)
	ctx := context.Background()
	db := postgrestest.New(t)
	cfg, _ := strategyConfig(t, db, "outbox")
	p := Start(t, cfg)
	connect := "http://" + cfg.ConnectAddr

	body, slot := seedConnectorFor(t, db)
	if code, _ := connectCall(connect, "", http.MethodPost, "/connectors", body, nil); code != http.StatusUnauthorized {
		t.Fatalf("POST /connectors without a token: %d, want 401", code)
	}
	var created struct {
		Name   string            `json:"name"`
		Config map[string]string `json:"config"`
	}
	if code, raw := connectCall(connect, p.Token, http.MethodPost, "/connectors", body, &created); code != http.StatusCreated {
		t.Fatalf("POST /connectors: %d %s, want 201", code, raw)
	}
	if created.Name != "trackops-orders-connector" || created.Config["topic.prefix"] != "trackops_orders" {
		t.Fatalf("created connector %+v", created)
	}
	if code, raw := connectCall(connect, p.Token, http.MethodPost, "/connectors", body, nil); code != http.StatusConflict {
		t.Fatalf("POST /connectors again: %d %s, want 409", code, raw)
	}

	var status struct {
		Name      string `json:"name"`
		Connector struct {
			State string `json:"state"`
			Trace string `json:"trace"`
		} `json:"connector"`
		Tasks []struct {
			State string `json:"state"`
		} `json:"tasks"`
	}
	waitUntil(t, "connector RUNNING", 30*time.Second, func(ctx context.Context) (bool, error) {
		code, raw := connectCall(connect, p.Token, http.MethodGet, "/connectors/trackops-orders-connector/status", "", &status)
		if code != http.StatusOK {
			return false, fmt.Errorf("status %d %s", code, raw)
		}
		if status.Connector.State == "FAILED" {
			t.Fatalf("connector FAILED: %s", status.Connector.Trace)
		}
		return status.Connector.State == "RUNNING", nil
	})
	// RUNNING is reported as soon as the task is launched; changes are
	// streamed once the slot reached its consistent point and the initial
	// snapshot is done (rows committed before that come as snapshot reads,
	// op "r", not as the inserts this test looks for). GET /api/v1/ops/cdc
	// shows the phase.
	waitUntil(t, "connector streaming", 30*time.Second, func(ctx context.Context) (bool, error) {
		var rep struct {
			Connectors []struct {
				Name  string `json:"name"`
				Phase string `json:"phase"`
				Slot  string `json:"slot"`
			} `json:"connectors"`
		}
		if _, err := call(p, http.MethodGet, "/api/v1/ops/cdc", "", &rep); err != nil {
			return false, err
		}
		for _, c := range rep.Connectors {
			if c.Name == "trackops-orders-connector" && c.Slot == slot && c.Phase == "streaming" {
				return true, nil
			}
		}
		return false, fmt.Errorf("connectors %+v", rep.Connectors)
	})

	// A row written by psql, and an order taken through the API.
	sqlOrder := "6f1c2a4e-0000-4000-8000-" + fmt.Sprintf("%012d", time.Now().UnixNano()%1e12)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO orders (id, customer_id, status, total_amount) VALUES ($1, 'psql', 'PENDING', 12.50)`, sqlOrder); err != nil {
		t.Fatal(err)
	}
	apiOrder, code, err := placeOrder(p, "CONTRACT-"+uniqueSuffix(), 2)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/orders: %d %v", code, err)
	}

	want := map[string]string{sqlOrder: ordersTopic, apiOrder.ID: ordersTopic, "item of " + apiOrder.ID: itemsTopic}
	got := readCreates(t, cfg.KafkaAddr, len(want))
	for id, topic := range want {
		if got[id] != topic {
			t.Errorf("insert of %s: on %q, want a c record on %s", id, got[id], topic)
		}
	}
}

// seedConnectorFor points the seed JSON's database.* keys at db and gives it
// a slot of its own; every other key is the seed's.
func seedConnectorFor(t *testing.T, db *postgrestest.Database) (body, slot string) {
	t.Helper()
	var req struct {
		Name   string            `json:"name"`
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal([]byte(seedConnector), &req); err != nil {
		t.Fatal(err)
	}
	keys, err := cdc.DatabaseKeys(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if strings.HasPrefix(k, "database.") {
			req.Config[k] = v
		}
	}
	if _, ok := keys["database.password"]; !ok {
		delete(req.Config, "database.password")
	}
	slot = "e2e_connect_" + uniqueSuffix()
	req.Config["slot.name"] = slot
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), slot
}

// connectCall sends a request to the Connect REST API (token may be empty)
// and decodes a 2xx JSON answer into out.
func connectCall(base, token, method, path, body string, out any) (int, string) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Sprintf("undecodable %q: %v", raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// readCreates reads c records from both change topics until n distinct rows
// were seen (or the hang guard ends), keyed by order id: an orders row by
// its id, an order_items row as "item of <order id>".
func readCreates(t *testing.T, brokers string, n int) map[string]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(ordersTopic, itemsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]string{}
	for len(got) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev struct {
				Op     string         `json:"op"`
				After  map[string]any `json:"after"`
				Source struct {
					Table string `json:"table"`
				} `json:"source"`
			}
			if len(r.Value) == 0 || json.Unmarshal(r.Value, &ev) != nil {
				return
			}
			if ev.Op == "r" {
				t.Logf("snapshot read on %s of row %v", r.Topic, ev.After["id"])
			}
			if ev.Op != "c" {
				return // the saga's updates, snapshot reads
			}
			var key map[string]any
			if err := json.Unmarshal(r.Key, &key); err != nil || key["id"] != ev.After["id"] {
				t.Errorf("record key %s does not name row %v", r.Key, ev.After["id"])
			}
			switch ev.Source.Table {
			case "orders":
				got[fmt.Sprint(ev.After["id"])] = r.Topic
			case "order_items":
				got["item of "+fmt.Sprint(ev.After["order_id"])] = r.Topic
			}
		})
	}
	return got
}
