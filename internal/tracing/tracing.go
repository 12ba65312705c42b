// Package tracing is the one place TrackOps configures OpenTelemetry
// tracing: the SDK's tracer provider with an OTLP/HTTP exporter, a batch span
// processor and a head sampler, and the instrumentation of each hop of an
// order's path — HTTP requests (Middleware), Kafka records produced and
// consumed (KafkaOpts and Handler, on franz-go's kotel plugin), SQL queries
// (QueryTracer, on otelpgx) — with W3C traceparent carried across Kafka and
// through the outbox (TraceParent).
//
// Off is the default and costs nothing: a Provider without an endpoint
// installs no hook, wraps no handler and makes no span, trace id or header;
// every hot path pays at most one context lookup (TraceParent, LogHandler).
package tracing

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// HeaderTraceParent is the W3C header name, in HTTP and in Kafka records.
const HeaderTraceParent = "traceparent"

// instrumentationName names the spans TrackOps makes itself (HTTP server).
const instrumentationName = "github.com/trackops/trackops/internal/tracing"

// Options configure tracing; config.Tracing supplies them from OTEL_*.
type Options struct {
	// Endpoint is the OTLP/HTTP traces URL; empty turns tracing off.
	Endpoint string
	// Sampler is an OTEL_TRACES_SAMPLER value ("" = parentbased_always_on);
	// SamplerArg the ratio of the traceidratio samplers.
	Sampler    string
	SamplerArg float64
	// ServiceVersion is the service.version resource attribute.
	ServiceVersion string
	// Logger receives export failures; nil is slog.Default().
	Logger *slog.Logger
}

// Provider is the process's tracing. A nil or disabled Provider is valid
// and does nothing.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// Setup builds the tracer provider when opts has an endpoint, and a
// disabled Provider otherwise. Shutdown flushes and stops it.
func Setup(ctx context.Context, opts Options) (*Provider, error) {
	if opts.Endpoint == "" {
		return &Provider{}, nil
	}
	sampler, err := Sampler(opts.Sampler, opts.SamplerArg)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	// The exporter reads headers, TLS files, compression and timeout from
	// the standard OTEL_EXPORTER_OTLP_* variables; the endpoint comes from
	// the validated configuration so it wins over them. It retries
	// retryable failures with back-off before a batch is given up.
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(opts.Endpoint))
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter for %s: %w", opts.Endpoint, err)
	}
	// Later sources win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override TrackOps' own service name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "trackops"), attribute.String("service.version", opts.ServiceVersion)),
		resource.WithFromEnv())
	if err != nil {
		log.Warn("tracing resource attributes incomplete", "err", err)
	}
	if res == nil {
		res = resource.Default()
	}
	// Export errors reach the SDK's global handler; route them to the log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "err", err) }))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
		// Spans queue in memory and leave in batches off the hot path; a
		// full queue drops spans rather than slowing the work it observes.
		sdktrace.WithBatcher(exp),
	)
	return &Provider{tp: tp, tracer: tp.Tracer(instrumentationName), prop: propagation.TraceContext{}}, nil
}

// Sampler builds the head sampler an OTEL_TRACES_SAMPLER value names: the
// parent-based ones follow the caller's sampled flag and decide only for new
// traces, so one order's trace is kept or dropped as a whole.
func Sampler(name string, ratio float64) (sdktrace.Sampler, error) {
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	}
	return nil, fmt.Errorf("unknown trace sampler %q", name)
}

// Enabled reports whether spans are made and exported.
func (p *Provider) Enabled() bool { return p != nil && p.tp != nil }

// TracerProvider is the SDK provider, nil when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if !p.Enabled() {
		return nil
	}
	return p.tp
}

// ForceFlush exports every finished span now.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	return p.tp.ForceFlush(ctx)
}

// Shutdown exports what is queued and stops the provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// TraceParent is the W3C traceparent of ctx's current span, or "" when
// there is none (always so with tracing off), for carriers that are not
// headers: the outbox stores it with each event.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	flags := "-00"
	if sc.IsSampled() {
		flags = "-01"
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + flags
}

// LogHandler adds trace_id and span_id to every record logged with a traced
// context, so logs and traces of one request can be joined.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(as)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
