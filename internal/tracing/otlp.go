package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ExporterConfig configures the OTLP/HTTP exporter.
type ExporterConfig struct {
	// Endpoint is the full traces URL, e.g. http://collector:4318/v1/traces.
	Endpoint string
	// Headers are sent with every export (e.g. an authorization token).
	Headers map[string]string
	// ServiceName is the service.name resource attribute.
	ServiceName string
	// ServiceVersion is the service.version resource attribute.
	ServiceVersion string
	// BatchSize is the most spans per request; FlushInterval the longest a
	// span waits; QueueSize the spans held before new ones are dropped.
	BatchSize     int
	FlushInterval time.Duration
	QueueSize     int
	Logger        *slog.Logger
}

// ConfigFromEnv reads OpenTelemetry's standard variables:
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), OTEL_EXPORTER_OTLP_HEADERS
// (k=v,k2=v2), OTEL_SERVICE_NAME and OTEL_TRACES_EXPORTER (none turns
// exporting off). ok is false when no endpoint is set: tracing export is off
// by default.
func ConfigFromEnv(getenv func(string) string) (cfg ExporterConfig, ok bool) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if getenv("OTEL_TRACES_EXPORTER") == "none" || getenv("OTEL_SDK_DISABLED") == "true" {
		return cfg, false
	}
	cfg.Endpoint = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if cfg.Endpoint == "" {
		if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); base != "" {
			cfg.Endpoint = strings.TrimRight(base, "/") + "/v1/traces"
		}
	}
	if cfg.Endpoint == "" {
		return cfg, false
	}
	cfg.ServiceName = getenv("OTEL_SERVICE_NAME")
	if h := getenv("OTEL_EXPORTER_OTLP_HEADERS"); h != "" {
		cfg.Headers = map[string]string{}
		for _, kv := range strings.Split(h, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				cfg.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return cfg, true
}

// Exporter batches finished spans and posts them as OTLP/HTTP JSON. When
// the collector is slow or gone, spans beyond the queue are dropped and
// counted: tracing never holds up the work it observes.
type Exporter struct {
	cfg    ExporterConfig
	client *http.Client
	queue  chan SpanData
	done   chan struct{}
	flush  chan chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	dropped  atomic.Int64
	exported atomic.Int64
	failures atomic.Int64
}

// NewExporter starts an exporter; Shutdown flushes and stops it.
func NewExporter(cfg ExporterConfig) *Exporter {
	if cfg.ServiceName == "" {
		cfg.ServiceName = "trackops"
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Exporter{
		cfg: cfg, client: &http.Client{Timeout: 10 * time.Second},
		queue: make(chan SpanData, cfg.QueueSize), done: make(chan struct{}), flush: make(chan chan struct{}),
	}
	e.wg.Go(e.loop)
	return e
}

// Stats are the exporter's counts since start.
func (e *Exporter) Stats() (exported, dropped, failedRequests int64) {
	return e.exported.Load(), e.dropped.Load(), e.failures.Load()
}

func (e *Exporter) enqueue(s SpanData) {
	select {
	case e.queue <- s:
	default:
		e.dropped.Add(1)
	}
}

// Flush exports every queued span now and waits until it has been sent.
func (e *Exporter) Flush(ctx context.Context) {
	ack := make(chan struct{})
	select {
	case e.flush <- ack:
	case <-e.done:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-ack:
	case <-ctx.Done():
	}
}

// Shutdown exports what is queued and stops the exporter.
func (e *Exporter) Shutdown(ctx context.Context) {
	e.Flush(ctx)
	e.once.Do(func() { close(e.done) })
	e.wg.Wait()
}

func (e *Exporter) loop() {
	t := time.NewTicker(e.cfg.FlushInterval)
	defer t.Stop()
	batch := make([]SpanData, 0, e.cfg.BatchSize)
	send := func() {
		if len(batch) > 0 {
			e.send(batch)
			batch = batch[:0]
		}
	}
	drain := func() {
		for {
			select {
			case s := <-e.queue:
				batch = append(batch, s)
				if len(batch) >= e.cfg.BatchSize {
					send()
				}
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case s := <-e.queue:
			batch = append(batch, s)
			if len(batch) >= e.cfg.BatchSize {
				send()
			}
		case <-t.C:
			send()
		case ack := <-e.flush:
			drain()
			close(ack)
		case <-e.done:
			drain()
			return
		}
	}
}

func (e *Exporter) send(spans []SpanData) {
	body, err := json.Marshal(e.encode(spans))
	if err != nil {
		e.failures.Add(1)
		return
	}
	req, err := http.NewRequest(http.MethodPost, e.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		e.failures.Add(1)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range e.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("collector answered %s", resp.Status)
		}
	}
	if err != nil {
		// One warning per failure streak would be nicer; a count is enough.
		if e.failures.Add(1) == 1 {
			e.cfg.Logger.Warn("OTLP trace export failed; spans dropped", "endpoint", e.cfg.Endpoint, "err", err)
		}
		e.dropped.Add(int64(len(spans)))
		return
	}
	e.exported.Add(int64(len(spans)))
}

// OTLP/JSON shapes (opentelemetry-proto's JSON mapping: ids in hex, 64-bit
// integers as strings, enums as numbers).
type (
	otlpRequest struct {
		ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
	}
	otlpResourceSpans struct {
		Resource   otlpResource     `json:"resource"`
		ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
	}
	otlpResource struct {
		Attributes []otlpKeyValue `json:"attributes"`
	}
	otlpScopeSpans struct {
		Scope otlpScope  `json:"scope"`
		Spans []otlpSpan `json:"spans"`
	}
	otlpScope struct {
		Name string `json:"name"`
	}
	otlpSpan struct {
		TraceID           string         `json:"traceId"`
		SpanID            string         `json:"spanId"`
		ParentSpanID      string         `json:"parentSpanId,omitempty"`
		Name              string         `json:"name"`
		Kind              Kind           `json:"kind"`
		StartTimeUnixNano string         `json:"startTimeUnixNano"`
		EndTimeUnixNano   string         `json:"endTimeUnixNano"`
		Attributes        []otlpKeyValue `json:"attributes,omitempty"`
		Status            otlpStatus     `json:"status"`
	}
	otlpStatus struct {
		Code    int    `json:"code,omitempty"`
		Message string `json:"message,omitempty"`
	}
	otlpKeyValue struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpValue struct {
		StringValue *string  `json:"stringValue,omitempty"`
		BoolValue   *bool    `json:"boolValue,omitempty"`
		IntValue    *string  `json:"intValue,omitempty"`
		DoubleValue *float64 `json:"doubleValue,omitempty"`
	}
)

func (e *Exporter) encode(spans []SpanData) otlpRequest {
	out := make([]otlpSpan, len(spans))
	for i, s := range spans {
		o := otlpSpan{
			TraceID: s.TraceID.String(), SpanID: s.SpanID.String(), Name: s.Name, Kind: s.Kind,
			StartTimeUnixNano: strconv.FormatInt(s.Start.UnixNano(), 10),
			EndTimeUnixNano:   strconv.FormatInt(s.End.UnixNano(), 10),
			Attributes:        attributes(s.Attributes),
		}
		if s.ParentSpanID != (SpanID{}) {
			o.ParentSpanID = s.ParentSpanID.String()
		}
		if s.Failed {
			o.Status = otlpStatus{Code: 2, Message: s.Error}
		}
		out[i] = o
	}
	res := attributes(map[string]any{"service.name": e.cfg.ServiceName})
	if e.cfg.ServiceVersion != "" {
		res = append(res, attributes(map[string]any{"service.version": e.cfg.ServiceVersion})...)
	}
	return otlpRequest{ResourceSpans: []otlpResourceSpans{{
		Resource:   otlpResource{Attributes: res},
		ScopeSpans: []otlpScopeSpans{{Scope: otlpScope{Name: "github.com/trackops/trackops"}, Spans: out}},
	}}}
}

func attributes(m map[string]any) []otlpKeyValue {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]otlpKeyValue, 0, len(m))
	for _, k := range keys {
		var v otlpValue
		switch x := m[k].(type) {
		case string:
			v.StringValue = &x
		case bool:
			v.BoolValue = &x
		case int:
			s := strconv.Itoa(x)
			v.IntValue = &s
		case int32:
			s := strconv.FormatInt(int64(x), 10)
			v.IntValue = &s
		case int64:
			s := strconv.FormatInt(x, 10)
			v.IntValue = &s
		case float64:
			v.DoubleValue = &x
		default:
			s := fmt.Sprint(x)
			v.StringValue = &s
		}
		out = append(out, otlpKeyValue{Key: k, Value: v})
	}
	return out
}
