package tracing

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/tracing/tracingtest"
)

// recordPath is what one Kafka record meets of tracing on its way through
// TrackOps: the producer's hooks (publish span, traceparent header), the
// consumer's hooks (receive span), the handler wrapper (process span) and
// the outbox's TraceParent of the handler's context.
type recordPath struct {
	hooks    []kgo.Hook
	handler  func(context.Context, *kgo.Record) error
	rec, got kgo.Record
	headers  []kgo.RecordHeader
	key, val []byte
}

func newRecordPath(p *Provider) *recordPath {
	rp := &recordPath{key: []byte("k"), val: []byte("v")}
	if p.KafkaOpts() != nil {
		rp.hooks = p.kafkaHooks() // the hooks KafkaOpts installs
	}
	rp.handler = p.Handler("bench", func(ctx context.Context, _ *kgo.Record) error {
		if TraceParent(ctx) == "x" {
			panic("impossible traceparent")
		}
		return nil
	})
	return rp
}

// pass sends one record along the path; the records and their header slice
// are reused, so whatever it allocates is tracing's.
func (rp *recordPath) pass(ctx context.Context) {
	rp.rec = kgo.Record{Topic: "orders.orders", Key: rp.key, Value: rp.val, Context: ctx, Headers: rp.headers[:0]}
	for _, h := range rp.hooks {
		if h, ok := h.(kgo.HookProduceRecordBuffered); ok {
			h.OnProduceRecordBuffered(&rp.rec)
		}
	}
	for _, h := range rp.hooks {
		if h, ok := h.(kgo.HookProduceRecordUnbuffered); ok {
			h.OnProduceRecordUnbuffered(&rp.rec, nil)
		}
	}
	rp.headers = rp.rec.Headers
	rp.got = kgo.Record{Topic: rp.rec.Topic, Key: rp.key, Value: rp.val, Headers: rp.rec.Headers}
	for _, h := range rp.hooks {
		if h, ok := h.(kgo.HookFetchRecordBuffered); ok {
			h.OnFetchRecordBuffered(&rp.got)
		}
	}
	_ = rp.handler(ctx, &rp.got)
	for _, h := range rp.hooks {
		if h, ok := h.(kgo.HookFetchRecordUnbuffered); ok {
			h.OnFetchRecordUnbuffered(&rp.got, true)
		}
	}
}

// TestOffAllocatesNothingPerRecord: with tracing off a record's way through
// the producer, the consumer and its handler allocates nothing for tracing
// — no span, no id, no header — while on, the same way does.
func TestOffAllocatesNothingPerRecord(t *testing.T) {
	col := tracingtest.NewCollector(t)
	ctx := context.Background()
	off, _ := Setup(ctx, Options{})
	rp := newRecordPath(off)
	if n := testing.AllocsPerRun(100, func() { rp.pass(ctx) }); n != 0 {
		t.Fatalf("tracing off: %v allocations per record", n)
	}
	if len(rp.got.Headers) != 0 {
		t.Fatalf("tracing off: headers %v", rp.got.Headers)
	}
	on, err := Setup(ctx, Options{Endpoint: col.URL + "/v1/traces", Sampler: "always_off"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = on.Shutdown(ctx) }()
	rp = newRecordPath(on)
	if n := testing.AllocsPerRun(100, func() { rp.pass(ctx) }); n == 0 {
		t.Fatal("tracing on: no allocation per record; the path under test traces nothing")
	}
	if len(rp.got.Headers) != 1 || rp.got.Headers[0].Key != HeaderTraceParent {
		t.Fatalf("tracing on: headers %v", rp.got.Headers)
	}
}

// BenchmarkPerRecord is tracing's cost per Kafka record (recordPath): off
// installs no hook and no wrapper, so only TraceParent's context lookup is
// left; on-unsampled (ratio 0) makes ids and a traceparent header but
// records nothing; on-sampled also records and exports every span, to an
// in-process collector.
//
//	go test ./internal/tracing -run '^$' -bench PerRecord -benchmem
func BenchmarkPerRecord(b *testing.B) {
	col := tracingtest.NewCollector(b)
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"off", Options{}},
		{"on-unsampled", Options{Endpoint: col.URL + "/v1/traces", Sampler: "parentbased_traceidratio", SamplerArg: 0}},
		{"on-sampled", Options{Endpoint: col.URL + "/v1/traces"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			p, err := Setup(ctx, c.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = p.Shutdown(ctx) }()
			rp := newRecordPath(p)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rp.pass(ctx)
			}
		})
	}
}
