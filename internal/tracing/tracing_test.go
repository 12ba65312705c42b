package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/tracing"
	"github.com/trackops/trackops/internal/tracing/tracingtest"
)

const callerTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func setup(t *testing.T, opts tracing.Options) *tracing.Provider {
	t.Helper()
	p, err := tracing.Setup(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

func TestSampler(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"":                         "ParentBased{root:AlwaysOnSampler",
		"parentbased_always_on":    "ParentBased{root:AlwaysOnSampler",
		"parentbased_traceidratio": "ParentBased{root:TraceIDRatioBased{0.25}",
		"traceidratio":             "TraceIDRatioBased{0.25}",
		"always_off":               "AlwaysOffSampler",
	} {
		s, err := tracing.Sampler(name, 0.25)
		if err != nil || !strings.HasPrefix(s.Description(), want) {
			t.Errorf("Sampler(%q) = %v, %v; want %s...", name, s, err, want)
		}
	}
	if _, err := tracing.Sampler("jaeger_remote", 1); err == nil {
		t.Error("an unsupported sampler was accepted")
	}
}

type plainHandler struct{ served int }

func (h *plainHandler) ServeHTTP(http.ResponseWriter, *http.Request) { h.served++ }

// TestOffDoesNoWork: without an endpoint tracing installs nothing — the
// router, record handlers and pool are the very ones given, Kafka clients
// get no hook, and records cross Kafka without a traceparent even when the
// caller sent one.
func TestOffDoesNoWork(t *testing.T) {
	t.Parallel()
	for _, p := range []*tracing.Provider{nil, setup(t, tracing.Options{})} {
		if p.Enabled() || p.KafkaOpts() != nil || p.QueryTracer() != nil || p.TracerProvider() != nil {
			t.Fatalf("disabled provider %v installs something", p)
		}
		h := &plainHandler{}
		if got := p.Middleware(h); got != http.Handler(h) {
			t.Fatalf("Middleware wrapped the router: %T", got)
		}
		rh := func(context.Context, *kgo.Record) error { return nil }
		if got := p.Handler("g", rh); reflect.ValueOf(got).Pointer() != reflect.ValueOf(rh).Pointer() {
			t.Fatal("Handler wrapped the record handler")
		}
	}
	if tp := tracing.TraceParent(context.Background()); tp != "" {
		t.Fatalf("TraceParent of an untraced context: %q", tp)
	}

	off := setup(t, tracing.Options{})
	b := kafkatest.New(t)
	producer, err := kafka.NewProducer(kafkatest.Options(b), off.KafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	var seen string
	srv := off.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = tracing.TraceParent(r.Context())
		rec := &kgo.Record{Topic: "untraced", Value: []byte("v")}
		if err := producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	if err := kafka.EnsureTopics(context.Background(), producer, 1, "untraced"); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", nil)
	req.Header.Set("traceparent", callerTrace)
	resp := httptest.NewRecorder()
	srv.ServeHTTP(resp, req)
	if resp.Code != http.StatusOK || seen != "" || resp.Header().Get("traceparent") != "" {
		t.Fatalf("off: status %d, handler saw %q, response traceparent %q", resp.Code, seen, resp.Header().Get("traceparent"))
	}
	got := kafkatest.Read(t, b, "untraced", 1, 10*time.Second)
	if len(got) != 1 || len(got[0].Headers) != 0 {
		t.Fatalf("off: record %v carries headers", got)
	}
}

// TestSpansAcrossHTTPAndKafka follows one request through a real broker: the
// HTTP server span, the publish span of the record the handler stored its
// traceparent in (as the outbox does), the receive span of a traced consumer
// client and the process span of its handler form one trace, each the child
// of the one before, and reach an OTLP/HTTP collector as protobuf.
func TestSpansAcrossHTTPAndKafka(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	col := tracingtest.NewCollector(t)
	p := setup(t, tracing.Options{Endpoint: col.URL + "/v1/traces", ServiceVersion: "test"})

	b := kafkatest.New(t)
	producer, err := kafka.NewProducer(kafkatest.Options(b), p.KafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const topic = "traced"
	if err := kafka.EnsureTopics(ctx, producer, 1, topic); err != nil {
		t.Fatal(err)
	}
	// The handler stores the request's traceparent with the record; the
	// record is published later from a context without a span, as the
	// relay publishes outbox rows.
	var stored string
	h := p.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stored = tracing.TraceParent(r.Context())
	}))
	resp := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", nil)
	req.Header.Set("traceparent", callerTrace)
	h.ServeHTTP(resp, req)
	if stored == "" || resp.Header().Get("traceparent") != stored {
		t.Fatalf("stored %q, response traceparent %q", stored, resp.Header().Get("traceparent"))
	}
	rec := &kgo.Record{Topic: topic, Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(stored)}}}
	if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	consumer, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, p.KafkaOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var handledTP string
	handler := p.Handler("g", func(ctx context.Context, r *kgo.Record) error {
		handledTP = tracing.TraceParent(ctx)
		return nil
	})
	pollCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for handledTP == "" && pollCtx.Err() == nil {
		consumer.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) { _ = handler(ctx, r) })
	}
	consumer.Close() // ends the receive span
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	spans := map[tracepb.Span_SpanKind][]tracingtest.Span{}
	for _, s := range col.Trace(callerTrace[3:35]) {
		spans[s.Kind] = append(spans[s.Kind], s)
	}
	server, publish, consumed := spans[tracepb.Span_SPAN_KIND_SERVER], spans[tracepb.Span_SPAN_KIND_PRODUCER], spans[tracepb.Span_SPAN_KIND_CONSUMER]
	if len(server) != 1 || len(publish) != 1 || len(consumed) != 2 {
		t.Fatalf("spans of the caller's trace: %+v", col.Spans())
	}
	receive, process := consumed[0], consumed[1]
	if receive.Name != topic+" receive" {
		receive, process = process, receive
	}
	if server[0].ParentSpanID != callerTrace[36:52] || publish[0].ParentSpanID != server[0].SpanID ||
		receive.ParentSpanID != publish[0].SpanID || process.ParentSpanID != receive.SpanID {
		t.Fatalf("parentage: server %+v, publish %+v, receive %+v, process %+v", server[0], publish[0], receive, process)
	}
	if handledTP != "00-"+process.TraceID+"-"+process.SpanID+"-01" {
		t.Fatalf("handler context %q is not the process span %s", handledTP, process.SpanID)
	}
	if server[0].Service != "trackops" || process.Attributes["messaging.kafka.consumer.group"] != "g" {
		t.Fatalf("service %q, process attributes %v", server[0].Service, process.Attributes)
	}
}

// TestHeadSampling: with a ratio of 0 new traces are dropped at their head —
// nothing is exported and the record says so (flags 00), so consumers drop
// them too — while a caller's sampled trace is followed (parent-based).
func TestHeadSampling(t *testing.T) {
	t.Parallel()
	col := tracingtest.NewCollector(t)
	p := setup(t, tracing.Options{Endpoint: col.URL + "/v1/traces", Sampler: "parentbased_traceidratio", SamplerArg: 0})
	var seen []string
	h := p.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, tracing.TraceParent(r.Context()))
	}))
	for range 20 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	}
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := col.Requests(); n != 0 {
		t.Fatalf("%d export requests for unsampled traces", n)
	}
	for _, tp := range seen {
		if !strings.HasSuffix(tp, "-00") {
			t.Fatalf("unsampled request propagated %q", tp)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("traceparent", callerTrace)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := col.Trace(callerTrace[3:35]); len(got) != 1 {
		t.Fatalf("the caller's sampled trace: %+v", col.Spans())
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	tid, _ := trace.TraceIDFromHex(callerTrace[3:35])
	sid, _ := trace.SpanIDFromHex(callerTrace[36:52])
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.InfoContext(ctx, "hello")
	log.Info("untraced")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var traced, untraced map[string]any
	if len(lines) != 2 || json.Unmarshal(lines[0], &traced) != nil || json.Unmarshal(lines[1], &untraced) != nil {
		t.Fatalf("log: %s", buf.Bytes())
	}
	if traced["trace_id"] != callerTrace[3:35] || traced["span_id"] != callerTrace[36:52] || traced["component"] != "x" {
		t.Fatalf("traced line %v", traced)
	}
	if _, ok := untraced["trace_id"]; ok {
		t.Fatalf("untraced line %v", untraced)
	}
}
