package tracing

import (
	"context"
	"fmt"
	"net/http"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Middleware starts a server span for each request, a child of the caller's
// traceparent when it sends one, so the request's context carries the trace
// into the order service, the outbox row and the Kafka record. It answers
// with the span's traceparent so callers can find their trace. With tracing
// off it returns next itself.
func (p *Provider) Middleware(next http.Handler) http.Handler {
	if !p.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := p.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		// Span names are "HTTP <method>": the route pattern is resolved
		// inside the router, below this middleware; url.path is an attribute.
		ctx, span := p.tracer.Start(ctx, "HTTP "+r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		p.prop.Inject(ctx, propagation.HeaderCarrier(w.Header()))
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, fmt.Sprintf("HTTP %d", rec.status))
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// KafkaOpts are the client options that trace Kafka records, for every
// client TrackOps builds; nil with tracing off, so no hook runs per record.
//
// Produced records get a "publish" span (kotel) whose traceparent replaces
// the record's header, so consumers continue the trace from the publish.
// Its parent is the record's Context or, for records that carry a stored
// traceparent and no traced Context (the outbox relay's), that header.
// Fetched records get a "receive" span, the parent of Handler's "process"
// span.
func (p *Provider) KafkaOpts() []kgo.Opt {
	if !p.Enabled() {
		return nil
	}
	return []kgo.Opt{kgo.WithHooks(p.kafkaHooks()...)}
}

func (p *Provider) kafkaHooks() []kgo.Hook {
	k := kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(kotel.TracerProvider(p.tp), kotel.TracerPropagator(p.prop))))
	// Hooks run in order: the stored parent is in place before kotel
	// starts the publish span.
	return append([]kgo.Hook{parentFromHeader{p.prop}}, k.Hooks()...)
}

// parentFromHeader makes a record's traceparent header the parent of its
// publish span when its Context carries no span: the relay publishes rows
// written by requests long gone, whose trace lives only in the row.
type parentFromHeader struct{ prop propagation.TextMapPropagator }

// OnProduceRecordBuffered implements kgo.HookProduceRecordBuffered.
func (h parentFromHeader) OnProduceRecordBuffered(r *kgo.Record) {
	if r.Context == nil {
		r.Context = context.Background()
	}
	if trace.SpanContextFromContext(r.Context).IsValid() {
		return
	}
	for _, hd := range r.Headers {
		if hd.Key == HeaderTraceParent {
			r.Context = h.prop.Extract(r.Context, kotel.NewRecordCarrier(r))
			return
		}
	}
}

// Handler wraps a Kafka record handler (kafka.Handler) so each attempt at a
// record runs in a "process" span of the record's trace; the handler's
// context then carries the trace into the events it writes. With tracing
// off it returns h itself.
func (p *Provider) Handler(group string, h func(context.Context, *kgo.Record) error) func(context.Context, *kgo.Record) error {
	if !p.Enabled() {
		return h
	}
	kt := kotel.NewTracer(kotel.TracerProvider(p.tp), kotel.TracerPropagator(p.prop), kotel.ConsumerGroup(group))
	return func(ctx context.Context, rec *kgo.Record) error {
		if !trace.SpanContextFromContext(rec.Context).IsValid() {
			// A client without the receive hook: continue from the header.
			base := rec.Context
			if base == nil {
				base = context.Background()
			}
			rec.Context = p.prop.Extract(base, kotel.NewRecordCarrier(rec))
		}
		_, span := kt.WithProcessSpan(rec)
		err := h(trace.ContextWithSpan(ctx, span), rec)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return err
	}
}

// QueryTracer is the pgx tracer (otelpgx) that records a client span for
// each query run inside a sampled span; queries outside one (background
// polling) are not traced. nil with tracing off, so pgx calls no hook.
func (p *Provider) QueryTracer() pgx.QueryTracer {
	if !p.Enabled() {
		return nil
	}
	return otelpgx.NewTracer(otelpgx.WithTracerProvider(p.tp),
		// Query metrics come from TrackOps' own Prometheus collectors.
		otelpgx.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelpgx.WithDisableAcquireTracer())
}
