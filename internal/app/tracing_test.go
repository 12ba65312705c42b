package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/tracing/tracingtest"
)

// TestTracingOffTouchesNothing: with the SDK disabled (OTEL_SDK_DISABLED,
// endpoint still set) an order travels HTTP → outbox → relay → Kafka with
// no trace at all — even the caller's traceparent is not carried — and the
// collector receives no request.
func TestTracingOffTouchesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	col := tracingtest.NewCollector(t)
	cfg, err := config.LoadFrom(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_SDK_DISABLED": "true"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database.URL, cfg.Redis.URL, cfg.Kafka.Brokers = db.URL, cachetest.URL(), []string{broker.Addr()}
	cfg.HTTP.Addr, cfg.DataDir, cfg.Relay.PollInterval = "127.0.0.1:0", t.TempDir(), 50*time.Millisecond
	a, err := New(ctx, cfg, Roles{RoleOrders: true, RoleRelay: true}, logging.New(io.Discard, "json", "error"))
	if err != nil {
		t.Fatal(err)
	}
	if a.obs.tracing.Enabled() {
		t.Fatal("tracing enabled with OTEL_SDK_DISABLED=true")
	}
	addr, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- a.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	token, err := a.security.auth.CreateAPIKey(ctx, "tracing-off-test", httpapi.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr.String()+"/api/v1/orders",
		strings.NewReader(`{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":1,"unit_price":"9.99"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("traceparent") != "" {
		t.Fatalf("create order: %d, traceparent %q: %s", resp.StatusCode, resp.Header.Get("traceparent"), body)
	}
	var o struct{ ID string }
	_ = json.Unmarshal(body, &o)

	recs := kafkatest.Read(t, broker, events.OrderCreated, 1, 30*time.Second)
	if len(recs) != 1 || string(recs[0].Key) != o.ID {
		t.Fatalf("ORDER_CREATED records: %v", recs)
	}
	for _, h := range recs[0].Headers {
		if h.Key == "traceparent" {
			t.Fatalf("record carries traceparent %q with tracing off", h.Value)
		}
	}
	var stored map[string]string
	if err := db.Pool.QueryRow(ctx, `SELECT headers FROM outbox_events WHERE aggregate_id = $1`, o.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored["traceparent"]; ok || stored["correlation_id"] == "" {
		t.Fatalf("outbox headers %v: want a correlation id and no traceparent", stored)
	}
	if n := col.Requests(); n != 0 {
		t.Fatalf("%d export requests with tracing off", n)
	}
}
