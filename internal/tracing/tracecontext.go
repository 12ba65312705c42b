// Package tracing carries W3C Trace Context (the traceparent header) through
// TrackOps — HTTP requests, outbox rows, Kafka records and their consumers —
// and, when an OTLP endpoint is configured, exports spans to it.
//
// It is deliberately small instead of the OpenTelemetry SDK: TrackOps needs
// four kinds of span (HTTP server, Kafka produce, Kafka consume, SQL query)
// and the wire formats (traceparent, OTLP/HTTP with JSON encoding) are
// standard, so any OpenTelemetry Collector, Jaeger or Tempo receives them,
// while the binary stays free of the SDK's and gRPC's dependencies.
//
// Propagation is always on: every request gets a trace id, which travels in
// Kafka headers and appears in log lines (LogHandler), exporter or not.
package tracing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// TraceID identifies a trace.
type TraceID [16]byte

// SpanID identifies a span within a trace.
type SpanID [8]byte

// String is the lowercase hex form used in traceparent and OTLP/JSON.
func (id TraceID) String() string { return hex.EncodeToString(id[:]) }

// String is the lowercase hex form used in traceparent and OTLP/JSON.
func (id SpanID) String() string { return hex.EncodeToString(id[:]) }

// SpanContext is what crosses process boundaries: trace, span and whether
// the trace is sampled (recorded and exported).
type SpanContext struct {
	TraceID TraceID
	SpanID  SpanID
	Sampled bool
}

// IsValid reports whether both ids are set (all-zero ids are invalid).
func (sc SpanContext) IsValid() bool { return sc.TraceID != TraceID{} && sc.SpanID != SpanID{} }

// TraceParent renders the W3C traceparent header value, version 00.
func (sc SpanContext) TraceParent() string {
	if !sc.IsValid() {
		return ""
	}
	flags := "00"
	if sc.Sampled {
		flags = "01"
	}
	return "00-" + sc.TraceID.String() + "-" + sc.SpanID.String() + "-" + flags
}

// ParseTraceParent reads a W3C traceparent header value. Per the
// specification, an unknown future version is read by its version-00 prefix,
// and version ff, malformed values and all-zero ids are rejected.
func ParseTraceParent(s string) (SpanContext, bool) {
	if len(s) < 55 || (len(s) > 55 && (s[:2] == "00" || s[55] != '-')) {
		return SpanContext{}, false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] == "ff" || !isLowerHex(s[:2]) {
		return SpanContext{}, false
	}
	var sc SpanContext
	if !decodeHex(sc.TraceID[:], s[3:35]) || !decodeHex(sc.SpanID[:], s[36:52]) {
		return SpanContext{}, false
	}
	var flags [1]byte
	if !decodeHex(flags[:], s[53:55]) {
		return SpanContext{}, false
	}
	sc.Sampled = flags[0]&1 == 1
	if !sc.IsValid() {
		return SpanContext{}, false
	}
	return sc, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func decodeHex(dst []byte, s string) bool {
	if !isLowerHex(s) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

func newTraceID() TraceID {
	var id TraceID
	for id == (TraceID{}) {
		_, _ = rand.Read(id[:])
	}
	return id
}

func newSpanID() SpanID {
	var id SpanID
	for id == (SpanID{}) {
		_, _ = rand.Read(id[:])
	}
	return id
}

type ctxKey int

const (
	keySpanContext ctxKey = iota
	keySpan
)

// ContextWith returns ctx carrying sc as the current span context.
func ContextWith(ctx context.Context, sc SpanContext) context.Context {
	return context.WithValue(ctx, keySpanContext, sc)
}

// FromContext returns the current span context, invalid when there is none.
func FromContext(ctx context.Context) SpanContext {
	sc, _ := ctx.Value(keySpanContext).(SpanContext)
	return sc
}

// TraceParent returns the traceparent of ctx's current span, or "".
func TraceParent(ctx context.Context) string { return FromContext(ctx).TraceParent() }

// WithTraceParent returns ctx carrying the span context of a traceparent
// value (from a header); ctx is returned as is when the value is not valid.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if sc, ok := ParseTraceParent(traceparent); ok {
		return ContextWith(ctx, sc)
	}
	return ctx
}
