package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderTraceParent is the W3C header name, in HTTP and in Kafka records.
const HeaderTraceParent = "traceparent"

// Middleware starts a server span for each request, a child of the
// caller's traceparent when it sends one, so the request's context carries
// the trace into the order service, the outbox row and the Kafka record. It
// answers with the trace's traceparent so callers can find their trace.
// Span names are "HTTP <method>": the route pattern is resolved inside the
// router, below this middleware; url.path is an attribute.
func (t *Tracer) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parent, _ := ParseTraceParent(r.Header.Get(HeaderTraceParent))
		ctx, span := t.StartWithParent(r.Context(), parent, "HTTP "+r.Method, KindServer)
		w.Header().Set(HeaderTraceParent, span.Context().TraceParent())
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(ctx)
		defer func() {
			span.SetAttr("http.request.method", r.Method)
			span.SetAttr("url.path", r.URL.Path)
			span.SetAttr("http.response.status_code", rec.status)
			var err error
			if rec.status >= 500 {
				err = fmt.Errorf("HTTP %d", rec.status)
			}
			span.End(err)
		}()
		next.ServeHTTP(rec, r)
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

// KafkaHooks is the client option that traces produced records: each gets a
// producer span, a child of the traceparent it already carries (the one the
// outbox stored from the request) or of the record's Context, and its
// traceparent header is rewritten to that span so consumers continue the
// trace from the publish.
func (t *Tracer) KafkaHooks() kgo.Opt { return kgo.WithHooks(produceTracer{t}) }

type produceTracer struct{ t *Tracer }

// OnProduceRecordBuffered implements kgo.HookProduceRecordBuffered.
func (p produceTracer) OnProduceRecordBuffered(r *kgo.Record) {
	parent, ok := ParseTraceParent(header(r, HeaderTraceParent))
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if !ok {
		parent = FromContext(ctx)
	}
	ctx, span := p.t.StartWithParent(ctx, parent, r.Topic+" publish", KindProducer)
	span.SetAttr("messaging.system", "kafka")
	span.SetAttr("messaging.destination.name", r.Topic)
	setHeader(r, HeaderTraceParent, span.Context().TraceParent())
	r.Context = ctx
}

// OnProduceRecordUnbuffered implements kgo.HookProduceRecordUnbuffered.
func (p produceTracer) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if r.Context == nil {
		return
	}
	span := SpanFromContext(r.Context)
	span.SetAttr("messaging.destination.partition.id", fmt.Sprint(r.Partition))
	if err == nil {
		span.SetAttr("messaging.kafka.offset", r.Offset)
	}
	span.End(err)
}

// Handler wraps a Kafka record handler (kafka.Handler) so each attempt at a
// record runs in a consumer span, a child of the record's traceparent; the
// handler's context then carries the trace into the events it writes.
func (t *Tracer) Handler(group string, h func(context.Context, *kgo.Record) error) func(context.Context, *kgo.Record) error {
	return func(ctx context.Context, rec *kgo.Record) error {
		parent, _ := ParseTraceParent(header(rec, HeaderTraceParent))
		ctx, span := t.StartWithParent(ctx, parent, rec.Topic+" process", KindConsumer)
		span.SetAttr("messaging.system", "kafka")
		span.SetAttr("messaging.destination.name", rec.Topic)
		span.SetAttr("messaging.consumer.group.name", group)
		span.SetAttr("messaging.destination.partition.id", fmt.Sprint(rec.Partition))
		span.SetAttr("messaging.kafka.offset", rec.Offset)
		err := h(ctx, rec)
		span.End(err)
		return err
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func setHeader(r *kgo.Record, key, value string) {
	for i, h := range r.Headers {
		if h.Key == key {
			r.Headers[i].Value = []byte(value)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// QueryTracer returns a pgx tracer (pgx.ConnConfig.Tracer) that records a
// client span for each query run inside a traced request or record. Queries
// without a trace in their context (background polling) are not traced.
func (t *Tracer) QueryTracer() pgx.QueryTracer { return queryTracer{t} }

type queryTracer struct{ t *Tracer }

type querySpanKey struct{}

// TraceQueryStart implements pgx.QueryTracer.
func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	parent := FromContext(ctx)
	if !parent.Sampled || !q.t.Exporting() {
		return ctx
	}
	sql := strings.Join(strings.Fields(data.SQL), " ")
	if len(sql) > 512 {
		sql = sql[:512]
	}
	verb, _, _ := strings.Cut(sql, " ")
	_, span := q.t.StartWithParent(ctx, parent, "postgresql "+strings.ToUpper(verb), KindClient)
	span.SetAttr("db.system", "postgresql")
	span.SetAttr("db.query.text", sql)
	return context.WithValue(ctx, querySpanKey{}, span)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if span, ok := ctx.Value(querySpanKey{}).(*Span); ok {
		span.End(data.Err)
	}
}

// LogHandler adds trace_id and span_id to every record logged with a traced
// context, so logs and traces of one request can be joined.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := FromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID.String()), slog.String("span_id", sc.SpanID.String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(as)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
