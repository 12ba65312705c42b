package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/tracing"
)

func TestParseTraceParent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", true, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false, false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false, false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		sc, ok := tracing.ParseTraceParent(tt.in)
		if ok != tt.ok || sc.Sampled != tt.sampled {
			t.Errorf("%q: ok=%v sampled=%v, want %v %v", tt.in, ok, sc.Sampled, tt.ok, tt.sampled)
		}
		if ok && strings.HasPrefix(tt.in, "00-") && sc.TraceParent()[:53] != tt.in[:53] {
			t.Errorf("%q: round trip %q", tt.in, sc.TraceParent())
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env      map[string]string
		ok       bool
		endpoint string
	}{
		{map[string]string{}, false, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, true, "http://c:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x"}, true, "http://c:4318/x"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false, ""},
	}
	for _, tt := range tests {
		cfg, ok := tracing.ConfigFromEnv(func(k string) string { return tt.env[k] })
		if ok != tt.ok || cfg.Endpoint != tt.endpoint {
			t.Errorf("%v: %v %q, want %v %q", tt.env, ok, cfg.Endpoint, tt.ok, tt.endpoint)
		}
	}
}

func TestPropagationWithoutExporter(t *testing.T) {
	t.Parallel()
	var tr *tracing.Tracer // nil: propagation only
	var seen string
	h := tr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = tracing.TraceParent(r.Context())
	}))
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	sc, ok := tracing.ParseTraceParent(seen)
	if !ok || sc.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID.String() == "00f067aa0ba902b7" {
		t.Fatalf("handler saw %q: want the caller's trace with a new span", seen)
	}
	if rec.Header().Get("traceparent") != seen {
		t.Fatalf("response traceparent %q, want %q", rec.Header().Get("traceparent"), seen)
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	ctx := tracing.WithTraceParent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	log.InfoContext(ctx, "hello")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || line["span_id"] != "00f067aa0ba902b7" || line["component"] != "x" {
		t.Fatalf("log line %v", line)
	}
}

// collector is an OTLP/HTTP JSON receiver.
type collector struct {
	mu    sync.Mutex
	spans []map[string]any
	srv   *httptest.Server
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var req struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []map[string]any `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) byKind(kind float64) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s["kind"] == kind {
			return s
		}
	}
	return nil
}

// TestSpansAcrossHTTPAndKafka follows one request: an HTTP server span, the
// producer span of the record it publishes and the consumer span of its
// handling form one trace, each the child of the one before, and reach an
// OTLP collector.
func TestSpansAcrossHTTPAndKafka(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	col := newCollector(t)
	cfg, ok := tracing.ConfigFromEnv(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.srv.URL, "OTEL_SERVICE_NAME": "trackops-test"}[k]
	})
	if !ok {
		t.Fatal("exporter not configured")
	}
	exp := tracing.NewExporter(cfg)
	tr := tracing.New(exp)

	b := kafkatest.New(t)
	producer, err := kafka.NewProducer(kafkatest.Options(b), tr.KafkaHooks())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const topic = "traced"
	if err := kafka.EnsureTopics(ctx, producer, 1, topic); err != nil {
		t.Fatal(err)
	}

	// The handler publishes as the relay does: the stored traceparent of
	// the request travels as a header.
	h := tr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &kgo.Record{Topic: topic, Value: []byte("v"), Headers: []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte(tracing.TraceParent(r.Context()))},
		}}
		if err := producer.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/orders", nil))
	if rec.Code != 200 {
		t.Fatalf("handler: %d %s", rec.Code, rec.Body)
	}

	got := kafkatest.Read(t, b, topic, 1, 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("read %d records", len(got))
	}
	handled := make(chan string, 1)
	handler := tr.Handler("g", func(ctx context.Context, r *kgo.Record) error {
		handled <- tracing.TraceParent(ctx)
		return nil
	})
	if err := handler(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	consumerTP := <-handled
	exp.Shutdown(ctx)

	server, producerSpan, consumer := col.byKind(2), col.byKind(4), col.byKind(5)
	if server == nil || producerSpan == nil || consumer == nil {
		t.Fatalf("spans: %v", col.spans)
	}
	if producerSpan["traceId"] != server["traceId"] || consumer["traceId"] != server["traceId"] {
		t.Fatalf("trace ids differ: %v %v %v", server["traceId"], producerSpan["traceId"], consumer["traceId"])
	}
	if producerSpan["parentSpanId"] != server["spanId"] || consumer["parentSpanId"] != producerSpan["spanId"] {
		t.Fatalf("parentage: server %v, producer %v<-%v, consumer %v<-%v", server["spanId"],
			producerSpan["spanId"], producerSpan["parentSpanId"], consumer["spanId"], consumer["parentSpanId"])
	}
	if sc, _ := tracing.ParseTraceParent(consumerTP); sc.SpanID.String() != consumer["spanId"] {
		t.Fatalf("handler context %q is not the consumer span %v", consumerTP, consumer["spanId"])
	}
	if _, ok := server["parentSpanId"]; ok {
		t.Fatalf("server span has a parent: %v", server)
	}
}
