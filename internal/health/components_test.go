package health_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// platform is one test's real dependencies.
type platform struct {
	pool     *pgxpool.Pool
	stores   *cache.Stores
	producer *kgo.Client
}

func newPlatform(t *testing.T, pool *pgxpool.Pool, stores *cache.Stores) platform {
	return newPlatformTB(t, pool, stores)
}

func newPlatformB(b *testing.B) platform { return newPlatformTB(b, nil, nil) }

func newPlatformTB(t testing.TB, pool *pgxpool.Pool, stores *cache.Stores) platform {
	t.Helper()
	if pool == nil {
		pool = postgrestest.New(t).Pool
	}
	if stores == nil {
		stores = cachetest.New(t)
	}
	b := kafkatest.New(t)
	producer := kafkatest.NewProducer(t, b)
	topics := append([]string{}, events.AllTypes...)
	for _, tp := range events.AllTypes {
		topics = append(topics, tp+events.DLQSuffix)
	}
	if err := kafka.EnsureTopics(context.Background(), producer, 3, topics...); err != nil {
		t.Fatal(err)
	}
	return platform{pool: pool, stores: stores, producer: producer}
}

func (p platform) checker(strategy string) *health.Checker {
	c := health.NewChecker(
		health.Application("test", time.Now().Add(-time.Minute)),
		health.Database(p.pool),
		health.Redis(p.stores, health.CacheStatsFunc(func() health.CacheCounters {
			return health.CacheCounters{Hits: 3, Misses: 1}
		})),
		health.Kafka(p.producer, true),
		health.CDC(p.pool, health.CDCConfig{Strategy: strategy}),
		health.DLQ(health.KafkaDLQCounter(p.producer)),
	)
	c.CacheFor = -1 // every check in these tests must see the present
	return c
}

func TestAllSixComponentsWithDetails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPlatform(t, nil, nil)

	// Some state for the details to show: a consumer group 2 records
	// behind, 2 dead letters, a cached key.
	recs := []*kgo.Record{
		{Topic: events.OrderCreated, Key: []byte("a"), Value: []byte("1"), Partition: 0},
		{Topic: events.OrderCreated, Key: []byte("a"), Value: []byte("2"), Partition: 0},
		{Topic: events.OrderCreated, Key: []byte("a"), Value: []byte("3"), Partition: 0},
		{Topic: events.OrderCreated + events.DLQSuffix, Key: []byte("a"), Value: []byte("x")},
		{Topic: events.OrderCreated + events.DLQSuffix, Key: []byte("b"), Value: []byte("y")},
	}
	res := p.producer.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Results come back per partition, not in input order.
	var first *kgo.Record
	for _, r := range res {
		if r.Record.Topic == events.OrderCreated && (first == nil || r.Record.Offset < first.Offset) {
			first = r.Record
		}
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: first.Topic, Partition: first.Partition, At: first.Offset + 1, LeaderEpoch: -1})
	if _, err := kadm.NewClient(p.producer).CommitOffsets(ctx, "inventory-service", offs); err != nil {
		t.Fatal(err)
	}
	if err := p.stores.Orders.Client().Set(ctx, p.stores.Orders.Key("order", "1"), "{}", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	// Redis is shared with the other tests: a read that ran past its
	// budget shows as an error in the keys detail, and is asked again.
	var (
		code int
		body map[string]any
	)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body = get(t, router(p.checker("outbox")), "/health")
		if !redisKeysFailed(body) || time.Now().After(deadline) {
			break
		}
	}
	if code != 200 || body["status"] != "UP" {
		t.Fatalf("/health %d %v", code, body)
	}
	comps := body["components"].(map[string]any)
	want := map[string][]string{
		"application": {"version", "uptime", "goVersion", "goroutines", "memory", "gc"},
		"db":          {"database", "queryTime", "totalOrders", "pool"},
		"redis":       {"memory", "hitRate", "keys", "server"},
		"kafka":       {"brokers", "topics", "consumerGroups", "totalLag"},
		"cdc":         {"strategy", "outbox", "applicationTopics"},
		"dlq":         {"total", "topics"},
	}
	for name, keys := range want {
		c, ok := comps[name].(map[string]any)
		if !ok {
			t.Fatalf("component %s missing: %v", name, comps)
		}
		if c["status"] != "UP" {
			t.Errorf("%s: status %v: %v", name, c["status"], c["details"])
		}
		d, _ := c["details"].(map[string]any)
		for _, k := range keys {
			if _, ok := d[k]; !ok {
				t.Errorf("%s: detail %q missing: %v", name, k, d)
			}
		}
	}
	details := func(name string) map[string]any { return comps[name].(map[string]any)["details"].(map[string]any) }
	if g := details("kafka")["consumerGroups"].(map[string]any)["inventory-service"].(map[string]any); g["lag"] != 2.0 {
		t.Errorf("inventory-service lag %v, want 2", g["lag"])
	}
	if n := details("dlq")["topics"].(map[string]any)[events.OrderCreated+events.DLQSuffix]; n != 2.0 {
		t.Errorf("ORDER_CREATED.dlq count %v, want 2", n)
	}
	if n := details("redis")["keys"].(map[string]any)["orders"]; n != 1.0 {
		t.Errorf("orders store keys %v, want 1", n)
	}
	if r := details("redis")["hitRate"]; r != 0.75 {
		t.Errorf("hit rate %v, want 0.75", r)
	}
	if s := details("cdc")["strategy"]; s != "outbox" {
		t.Errorf("cdc strategy %v", s)
	}
}

func TestCDCStrategyReportsSlotAndConnector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	slot := "health_" + strings.TrimPrefix(db.Name, "trackops_test_")
	if _, err := db.Pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, slot) })
	running := health.CDCStatusFunc(func(context.Context) (health.CDCStatus, error) {
		return health.CDCStatus{Connector: "trackops-orders-connector", State: "RUNNING", Topics: []string{"orders.orders"}}, nil
	})
	failed := health.CDCStatusFunc(func(context.Context) (health.CDCStatus, error) {
		return health.CDCStatus{Connector: "trackops-orders-connector", State: "FAILED", Error: "boom"}, nil
	})
	tests := []struct {
		name   string
		cfg    health.CDCConfig
		want   health.Status
		exists bool
	}{
		{"outbox strategy", health.CDCConfig{Strategy: "outbox"}, health.Up, false},
		{"running connector", health.CDCConfig{Strategy: "cdc", SlotName: slot, Source: running}, health.Up, true},
		{"failed connector", health.CDCConfig{Strategy: "cdc", SlotName: slot, Source: failed}, health.Down, true},
		{"missing slot", health.CDCConfig{Strategy: "cdc", SlotName: slot + "_missing", Source: running}, health.Down, false},
		{"connector elsewhere", health.CDCConfig{Strategy: "cdc", SlotName: slot}, health.Unknown, true},
	}
	for _, tt := range tests {
		comp := health.CDC(db.Pool, tt.cfg).Check(ctx)
		if comp.Status != tt.want {
			t.Errorf("%s: status %s, want %s: %v", tt.name, comp.Status, tt.want, comp.Details)
			continue
		}
		if tt.cfg.Strategy != "cdc" {
			continue
		}
		s := comp.Details["slot"].(map[string]any)
		if s["exists"] != tt.exists {
			t.Errorf("%s: slot %v", tt.name, s)
		}
		if tt.exists {
			if _, ok := s["lagBytes"].(int64); !ok || s["active"] != false {
				t.Errorf("%s: slot details %v", tt.name, s)
			}
		}
	}
}

// TestRedisDownDegradesAndRecovers kills a private redis-server under a
// running checker: DEGRADED with 200, then UP again once it is back, with
// nothing restarted on TrackOps' side.
func TestRedisDownDegradesAndRecovers(t *testing.T) {
	t.Parallel()
	srv := startRedisServer(t)
	stores, err := cache.Open(srv.URL(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stores.Close() })
	h := router(newPlatform(t, nil, stores).checker("outbox"))

	if code, body := get(t, h, "/health"); code != 200 || body["status"] != "UP" {
		t.Fatalf("before: %d %v", code, body)
	}
	srv.Kill()
	code, body := get(t, h, "/health")
	if code != 200 || body["status"] != "DEGRADED" || component(body, "redis") != "DOWN" || component(body, "db") != "UP" {
		t.Fatalf("redis stopped: %d %v", code, body)
	}
	if code, _ := get(t, h, "/health/ready"); code != 200 {
		t.Fatalf("ready with redis stopped: %d, want 200", code)
	}
	srv.Start()
	waitFor(t, "redis recovery", func() bool {
		code, body := get(t, h, "/health")
		return code == 200 && body["status"] == "UP"
	})
}

// TestPostgresDownIsDownAndRecovers cuts a TCP proxy between the pool and
// PostgreSQL: DOWN with 503, then UP once the path is back.
func TestPostgresDownIsDownAndRecovers(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.Addr()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := router(newPlatform(t, pool, nil).checker("outbox"))

	if code, body := get(t, h, "/health"); code != 200 || body["status"] != "UP" {
		t.Fatalf("before: %d %v", code, body)
	}
	proxy.Cut()
	code, body := get(t, h, "/health")
	if code != 503 || body["status"] != "DOWN" || component(body, "db") != "DOWN" || component(body, "redis") != "UP" {
		t.Fatalf("postgres cut: %d %v", code, body)
	}
	if code, _ := get(t, h, "/health/ready"); code != 503 {
		t.Fatalf("ready with postgres cut: %d, want 503", code)
	}
	if code, _ := get(t, h, "/health/live"); code != 200 {
		t.Fatalf("live with postgres cut: %d, want 200", code)
	}
	proxy.Restore()
	waitFor(t, "postgres recovery", func() bool {
		code, body := get(t, h, "/health")
		return code == 200 && body["status"] == "UP"
	})
}

func component(body map[string]any, name string) any {
	c, _ := body["components"].(map[string]any)[name].(map[string]any)
	return c["status"]
}

// waitFor polls cond until it holds; recovery is asynchronous (reconnects),
// so the test waits for the state, not for a time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition not reached", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redisKeysFailed reports whether /health's redis component could not
// count the stores' keys.
func redisKeysFailed(body map[string]any) bool {
	comps, _ := body["components"].(map[string]any)
	redis, _ := comps["redis"].(map[string]any)
	details, _ := redis["details"].(map[string]any)
	keys, _ := details["keys"].(map[string]any)
	_, failed := keys["error"]
	return failed
}
