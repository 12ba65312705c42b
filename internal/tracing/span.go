package tracing

import (
	"context"
	"sync"
	"time"
)

// Kind is a span's role, numbered as OTLP numbers them.
type Kind int

// Span kinds.
const (
	KindInternal Kind = 1
	KindServer   Kind = 2
	KindClient   Kind = 3
	KindProducer Kind = 4
	KindConsumer Kind = 5
)

// Tracer starts spans and hands finished sampled ones to its exporter. A nil
// *Tracer, like a tracer without exporter, still propagates trace context:
// ids are made and passed on, nothing is recorded.
type Tracer struct {
	exporter *Exporter
}

// New returns a tracer exporting to exp; exp may be nil (propagation only).
func New(exp *Exporter) *Tracer { return &Tracer{exporter: exp} }

// Exporting reports whether spans are recorded and exported.
func (t *Tracer) Exporting() bool { return t != nil && t.exporter != nil }

// Span is one timed operation. Its methods are safe on a nil *Span and for
// concurrent use.
type Span struct {
	tracer *Tracer
	name   string
	kind   Kind
	sc     SpanContext
	parent SpanID
	start  time.Time

	mu     sync.Mutex
	attrs  map[string]any
	err    string
	failed bool
	ended  bool
}

// Start begins a span of kind, a child of the span context in ctx (or the
// root of a new trace), and returns ctx carrying it.
func (t *Tracer) Start(ctx context.Context, name string, kind Kind) (context.Context, *Span) {
	return t.StartWithParent(ctx, FromContext(ctx), name, kind)
}

// StartWithParent is Start with an explicit parent, e.g. read from a Kafka
// record's traceparent header rather than from ctx.
func (t *Tracer) StartWithParent(ctx context.Context, parent SpanContext, name string, kind Kind) (context.Context, *Span) {
	sc := SpanContext{SpanID: newSpanID()}
	var parentID SpanID
	if parent.IsValid() {
		sc.TraceID, sc.Sampled, parentID = parent.TraceID, parent.Sampled, parent.SpanID
	} else {
		sc.TraceID, sc.Sampled = newTraceID(), t.Exporting()
	}
	s := &Span{tracer: t, name: name, kind: kind, sc: sc, parent: parentID, start: time.Now()}
	ctx = ContextWith(ctx, sc)
	return context.WithValue(ctx, keySpan, s), s
}

// SpanFromContext returns the span ctx carries, or nil.
func SpanFromContext(ctx context.Context) *Span {
	s, _ := ctx.Value(keySpan).(*Span)
	return s
}

// Context is the span's context, to propagate.
func (s *Span) Context() SpanContext {
	if s == nil {
		return SpanContext{}
	}
	return s.sc
}

// SetAttr records an attribute (string, bool, integer or float).
func (s *Span) SetAttr(key string, value any) {
	if s == nil || !s.recording() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attrs == nil {
		s.attrs = map[string]any{}
	}
	s.attrs[key] = value
}

// SetName renames the span, e.g. once the route of a request is known.
func (s *Span) SetName(name string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name = name
}

// Fail marks the span as failed with err's message.
func (s *Span) Fail(err error) {
	if s == nil || err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed, s.err = true, err.Error()
}

// End finishes the span, failed when err is not nil, and exports it if the
// trace is sampled. Only the first End counts.
func (s *Span) End(err error) {
	if s == nil {
		return
	}
	s.Fail(err)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	rec := SpanData{
		Name: s.name, Kind: s.kind, TraceID: s.sc.TraceID, SpanID: s.sc.SpanID, ParentSpanID: s.parent,
		Start: s.start, End: time.Now(), Attributes: s.attrs, Failed: s.failed, Error: s.err,
	}
	s.mu.Unlock()
	if s.recording() {
		s.tracer.exporter.enqueue(rec)
	}
}

func (s *Span) recording() bool { return s.sc.Sampled && s.tracer.Exporting() }

// SpanData is a finished span as exporters see it.
type SpanData struct {
	Name         string
	Kind         Kind
	TraceID      TraceID
	SpanID       SpanID
	ParentSpanID SpanID
	Start, End   time.Time
	Attributes   map[string]any
	Failed       bool
	Error        string
}
