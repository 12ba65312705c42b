package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.yaml.in/yaml/v3"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/tracing"
	"github.com/trackops/trackops/internal/tracing/tracingtest"
)

// syncBuffer is a log sink safe for the concurrent writers of a running app.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (b *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestObservabilityEndToEnd runs the orders and relay roles of a real App
// against PostgreSQL, Redis and a private broker, with tracing exported to an
// in-process OTLP/HTTP collector and a consumer like the inventory
// service's, then checks that one order's correlation id and trace reach the
// consumer's log line, that the collector received the spans of the order's
// path (HTTP → SQL → outbox → relay publish → consumer) as one trace, that
// /metrics has every series the dashboards and alerts use, and that /health
// lists all six components (and the orders role's sweeper).
func TestObservabilityEndToEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	col := tracingtest.NewCollector(t)
	cfg, err := config.LoadFrom(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database.URL = db.URL
	cfg.Redis.URL = cachetest.URL()
	cfg.Kafka.Brokers = []string{broker.Addr()}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Relay.PollInterval = 50 * time.Millisecond
	cfg.Log.Format, cfg.Log.Level = "json", "info"
	appLog := &syncBuffer{}
	a, err := New(ctx, cfg, Roles{RoleOrders: true, RoleRelay: true}, logging.New(appLog, "json", "info"))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runDone })
	base := "http://" + addr.String()
	token, err := a.security.auth.CreateAPIKey(ctx, "observability-test", httpapi.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}

	// A consumer as the inventory service will have: its own logger, the
	// app's Kafka options (whose tracing wraps every consumer's handler).
	consumerLog := &syncBuffer{}
	clog := slog.New(tracing.LogHandler(logging.New(consumerLog, "json", "info").Handler()))
	handled := make(chan string, 16)
	group := "inventory-service-" + uuid.NewString()[:8]
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: a.kafkaOptions("test-inventory"),
		Group:   group,
		Topics:  []string{events.OrderCreated},
		Logger:  clog,
		Events: func(ctx context.Context, env events.Envelope) error {
			clog.InfoContext(ctx, "reserving stock", "order_id", env.Subject)
			handled <- env.Subject
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- consumer.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-consumerDone })

	// Load: a few orders, one with the caller's correlation id and trace.
	correlationID := "corr-" + uuid.NewString()
	callerTrace := "00-" + strings.ReplaceAll(uuid.NewString(), "-", "") + "-00f067aa0ba902b7-01"
	var orderID string
	for i := range 5 {
		body := fmt.Sprintf(`{"customer_id":"c-%d","items":[{"sku":"SKU-1","quantity":1,"unit_price":"9.99"}]}`, i)
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		if i == 0 {
			req.Header.Set("X-Correlation-Id", correlationID)
			req.Header.Set("traceparent", callerTrace)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create order: %d %s", resp.StatusCode, b)
		}
		if i == 0 {
			var o struct{ ID string }
			_ = json.Unmarshal(b, &o)
			orderID = o.ID
		}
	}
	// And one malformed record, which the consumer dead-letters.
	if err := a.producer.ProduceSync(ctx, &kgo.Record{Topic: events.OrderCreated, Value: []byte("not an event")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for !seen[orderID] || len(seen) < 5 {
		select {
		case id := <-handled:
			seen[id] = true
		case <-deadline:
			t.Fatalf("consumer handled %d orders, not the 5 created", len(seen))
		}
	}

	t.Run("correlation id and trace from HTTP log to consumer log", func(t *testing.T) {
		traceID := callerTrace[3:35]
		var httpLine, consumerLine map[string]any
		for _, l := range appLog.lines(t, "http request") {
			if l["route"] == "/api/v1/orders" && l["correlation_id"] == correlationID {
				httpLine = l
			}
		}
		for _, l := range consumerLog.lines(t, "reserving stock") {
			if l["order_id"] == orderID {
				consumerLine = l
			}
		}
		if httpLine == nil || consumerLine == nil {
			t.Fatalf("http line %v, consumer line %v", httpLine, consumerLine)
		}
		if consumerLine["correlation_id"] != correlationID {
			t.Errorf("consumer line correlation_id %v, want %s", consumerLine["correlation_id"], correlationID)
		}
		if httpLine["trace_id"] != traceID || consumerLine["trace_id"] != traceID {
			t.Errorf("trace ids: http %v, consumer %v, want %s", httpLine["trace_id"], consumerLine["trace_id"], traceID)
		}
		if httpLine["request_id"] == nil {
			t.Errorf("http line without request_id: %v", httpLine)
		}
	})

	t.Run("spans of the order's path form one trace", func(t *testing.T) {
		// The relay's produce span ends with Kafka's acknowledgement, which
		// can reach the relay after the consumer has already read the
		// record: flush until the trace holds it (or give up and report).
		var spans []tracingtest.Span
		for wait := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err := a.obs.tracing.ForceFlush(ctx); err != nil {
				t.Fatal(err)
			}
			spans = col.Trace(callerTrace[3:35])
			if slices.ContainsFunc(spans, func(s tracingtest.Span) bool { return s.Kind == tracepb.Span_SPAN_KIND_PRODUCER }) ||
				time.Now().After(wait) {
				break
			}
		}
		find := func(kind tracepb.Span_SpanKind, match func(tracingtest.Span) bool) tracingtest.Span {
			t.Helper()
			for _, s := range spans {
				if s.Kind == kind && match(s) {
					return s
				}
			}
			t.Fatalf("no %v span among the trace's %+v", kind, spans)
			return tracingtest.Span{}
		}
		anySpan := func(tracingtest.Span) bool { return true }
		server := find(tracepb.Span_SPAN_KIND_SERVER, func(s tracingtest.Span) bool { return s.Attributes["url.path"] == "/api/v1/orders" })
		insert := find(tracepb.Span_SPAN_KIND_CLIENT, func(s tracingtest.Span) bool {
			return strings.Contains(s.Attributes["db.query.text"], "INSERT INTO outbox_events")
		})
		publish := find(tracepb.Span_SPAN_KIND_PRODUCER, anySpan)
		process := find(tracepb.Span_SPAN_KIND_CONSUMER, func(s tracingtest.Span) bool {
			return s.Attributes["messaging.kafka.consumer.group"] == group
		})
		receive := find(tracepb.Span_SPAN_KIND_CONSUMER, func(s tracingtest.Span) bool { return s.SpanID == process.ParentSpanID })
		// The insert runs in the outbox's batch span, inside the request's.
		parent := map[string]string{}
		for _, s := range spans {
			parent[s.SpanID] = s.ParentSpanID
		}
		ancestor := insert.ParentSpanID
		for ancestor != "" && ancestor != server.SpanID {
			ancestor = parent[ancestor]
		}
		if server.ParentSpanID != callerTrace[36:52] || ancestor != server.SpanID {
			t.Errorf("request: server %+v, outbox insert %+v", server, insert)
		}
		// The relay publishes from the traceparent the outbox stored.
		if publish.ParentSpanID != server.SpanID || receive.ParentSpanID != publish.SpanID || publish.Name != events.OrderCreated+" publish" {
			t.Errorf("server %s, publish %+v, receive %+v", server.SpanID, publish, receive)
		}
		if server.Service != "trackops" {
			t.Errorf("service.name %q", server.Service)
		}
	})

	// The consumer commits after handling; lag is read from commits.
	adm := kadm.NewClient(a.producer)
	for {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil && len(offs) > 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("consumer group never committed")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := kafkatest.Read(t, broker, events.OrderCreated+events.DLQSuffix, 1, 30*time.Second); len(got) != 1 {
		t.Fatalf("malformed record not dead-lettered")
	}
	get(t, base+"/health") // a health request, so its route is counted too

	families := scrape(t, base+"/metrics")
	t.Run("metrics after load", func(t *testing.T) {
		for _, name := range seriesAfterLoad {
			if _, ok := families[name]; !ok {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		if !hasSample(families["trackops_kafka_consumer_lag"], "group", group) {
			t.Errorf("no consumer lag series for group %s", group)
		}
		if !hasSample(families["trackops_http_requests_total"], "route", "/api/v1/orders") {
			t.Errorf("no request count for route /api/v1/orders")
		}
	})

	t.Run("metric names follow Prometheus conventions", func(t *testing.T) {
		// client_golang's promlint applies promtool check metrics' rules:
		// base units, _total on counters only, help on every family.
		problems, err := testutil.GatherAndLint(a.metrics.registry)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			// kprom (franz-go's plugin) names its buffered-records gauges
			// *_records_total; they are the library's, not ours to rename.
			if !strings.HasPrefix(p.Metric, "trackops_kafka_client_buffered_") {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
		}
	})

	t.Run("anonymous health is the status alone", func(t *testing.T) {
		code, body := get(t, base+"/health")
		if code != 200 || strings.TrimSpace(string(body)) != `{"status":"UP"}` {
			t.Fatalf("anonymous /health %d %s, want 200 {\"status\":\"UP\"}", code, body)
		}
	})

	t.Run("health lists the six components, the sweeper and the singletons to a signed-in caller", func(t *testing.T) {
		code, body := getAs(t, base+"/health", token)
		var rep struct {
			Status     string
			Components map[string]struct{ Status string }
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		if code != 200 || len(rep.Components) != 8 {
			t.Fatalf("/health %d %s", code, body)
		}
		for _, n := range []string{"application", "db", "redis", "kafka", "cdc", "dlq", "sweeper", "singletons"} {
			if rep.Components[n].Status != "UP" {
				t.Errorf("%s: %q", n, rep.Components[n].Status)
			}
		}
	})

	t.Run("dashboard and alert rules name only existing metrics", func(t *testing.T) {
		known := map[string]bool{"up": true} // Prometheus' own
		for name := range families {
			known[name] = true
		}
		for _, name := range metricsOnlyUnderCDC {
			known[name] = true
		}
		for _, file := range []string{"grafana/trackops-dashboard.json", "prometheus/alerts.yml"} {
			exprs := deployExpressions(t, filepath.Join("..", "..", "deploy", file))
			if len(exprs) < 10 {
				t.Fatalf("%s: only %d expressions", file, len(exprs))
			}
			for _, e := range exprs {
				for _, name := range metricNames(e) {
					if !known[name] {
						t.Errorf("%s names unknown metric %s in %q", file, name, e)
					}
				}
			}
		}
	})
}

// seriesAfterLoad are the series issue 8 names that exist on this branch
// after the load above: HTTP rate, errors and duration by route; DB pool;
// outbox backlog; relay latency; produce and consume; consumer lag; DLQ
// counting; Go runtime.
var seriesAfterLoad = []string{
	"trackops_http_requests_total", "trackops_http_request_duration_seconds",
	"trackops_db_pool_connections", "trackops_db_pool_max_connections", "trackops_db_pool_acquires_total",
	"trackops_db_pool_empty_acquire_wait_seconds_total",
	"trackops_outbox_pending", "trackops_outbox_failed", "trackops_outbox_oldest_pending_age_seconds",
	"trackops_outbox_published_total", "trackops_relay_publish_latency_seconds", "trackops_relay_batch_seconds",
	"trackops_kafka_client_produce_records_total", "trackops_kafka_client_fetch_records_total",
	"trackops_kafka_client_connects_total", "trackops_kafka_consumed_total", "trackops_kafka_handle_seconds",
	"trackops_kafka_consumer_lag", "trackops_kafka_dead_lettered_total", "trackops_build_info",
	"go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds", "process_resident_memory_bytes",
}

// metricsOnlyUnderCDC are series the dashboard and alerts use that have no
// sample until a CDC connector runs, which this outbox-strategy app does
// not: a labelled series appears on /metrics with its first sample.
var metricsOnlyUnderCDC = []string{
	"trackops_cdc_events_total", "trackops_cdc_lag_bytes", "trackops_cdc_flush_lag_bytes",
	"trackops_cdc_source_lag_milliseconds",
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	return getAs(t, url, "")
}

// getAs sends a GET with token as the bearer token ("" sends none).
func getAs(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func scrape(t *testing.T, url string) map[string]*familySamples {
	t.Helper()
	code, body := get(t, url)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]*familySamples{}
	for name, mf := range mfs {
		fs := &familySamples{}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			fs.labels = append(fs.labels, labels)
		}
		out[name] = fs
	}
	return out
}

type familySamples struct{ labels []map[string]string }

func hasSample(fs *familySamples, label, value string) bool {
	if fs == nil {
		return false
	}
	for _, l := range fs.labels {
		if l[label] == value {
			return true
		}
	}
	return false
}

// deployExpressions reads the PromQL expressions of a Grafana dashboard
// (targets[].expr) or a Prometheus rules file (rules[].expr).
func deployExpressions(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	if strings.HasSuffix(path, ".json") {
		var dash struct {
			Title  string
			Panels []struct {
				Type    string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
		return exprs
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr string
				For         string
				Labels      map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" {
				t.Errorf("%s: rule %+v lacks alert, expr or severity", path, r)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: %s: for %q: %v", path, r.Alert, r.For, err)
				}
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

var metricToken = regexp.MustCompile(`\b(?:trackops|go|process)_[a-zA-Z0-9_]+|\bup\b`)

// metricNames are the metric families an expression reads; a histogram's
// _bucket/_sum/_count series belong to its family.
func metricNames(expr string) []string {
	seen := map[string]bool{}
	for _, m := range metricToken.FindAllString(expr, -1) {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, suf) && !strings.HasSuffix(m, "_total") {
				m = strings.TrimSuffix(m, suf)
				break
			}
		}
		seen[m] = true
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
