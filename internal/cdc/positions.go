package cdc

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txTrack counts one transaction's records still waiting for Kafka's ack,
// and holds its confirmation while a transform's after-ack work runs.
type txTrack struct {
	endLSN  uint64
	pending atomic.Int64
	closed  atomic.Bool

	// produced is set once a record of the transaction went to the
	// producer: only then does its commit need to send (emitter.send).
	produced atomic.Bool

	// ctx is the Context of the transaction's records: the produce context
	// (base) carrying the transaction, so that one promise shared by every
	// record finds it (recordTx) instead of a closure allocated per record. Made
	// once per base by the goroutine that produces.
	ctx, base context.Context

	// after, set before closed, runs once every record of the transaction
	// is acknowledged; held keeps the transaction unconfirmed until it
	// returns, fired makes it run once.
	after func(context.Context)
	held  atomic.Bool
	fired atomic.Bool
}

// ackTracker knows which transactions Kafka holds completely. The stream
// goroutine opens and closes transactions in commit order; producer
// callbacks count acks down from any goroutine. The flushable position is
// the end LSN of the last transaction of the longest fully acknowledged
// prefix, so the slot never confirms a transaction with an event Kafka
// does not hold — change events and a transform's derived records alike,
// and not before the transform's after-ack work is done — even when acks
// arrive out of order across partitions.
type ackTracker struct {
	mu    sync.Mutex
	queue []*txTrack
	err   atomic.Pointer[error]
	// runAfter starts a transaction's after-ack work; done must be called
	// when it has finished.
	runAfter func(fn func(context.Context), done func())
}

func (a *ackTracker) begin() *txTrack {
	t := &txTrack{}
	a.mu.Lock()
	a.queue = append(a.queue, t)
	a.mu.Unlock()
	return t
}

// add counts one more record of t in flight.
func (a *ackTracker) add(t *txTrack) { t.pending.Add(1) }

// txKey is the context key under which a record's Context carries its txTrack.
type txKey struct{}

// recordContext is the Context for a record of t produced under base (the
// emitter's produce context, whose cancellation ends delivery): base with t
// attached, made once per transaction. A record that comes with a Context
// of its own (a transform's, carrying a trace) keeps it, with t added.
func (t *txTrack) recordContext(base, own context.Context) context.Context {
	if own != nil {
		return context.WithValue(own, txKey{}, t)
	}
	if t.base != base || t.ctx == nil {
		t.ctx, t.base = context.WithValue(base, txKey{}, t), base
	}
	return t.ctx
}

// recordTx is the transaction a produced record belongs to (nil if none).
func recordTx(r *kgo.Record) *txTrack {
	if r.Context == nil {
		return nil
	}
	t, _ := r.Context.Value(txKey{}).(*txTrack)
	return t
}

// done is the producer callback for one record of t.
func (a *ackTracker) done(t *txTrack, err error) {
	if err != nil {
		a.fail(err) // not inline: taking err's address here would allocate on every ack
	}
	if t.pending.Add(-1) == 0 {
		a.maybeRunAfter(t)
	}
}

// holdUntilAfter makes fn run once t's records are all acknowledged, and
// keeps t unconfirmed until it returns. Call it before commit.
func (a *ackTracker) holdUntilAfter(t *txTrack, fn func(context.Context)) {
	t.after = fn
	t.held.Store(true)
}

// fail records a failure that must stop the run (like a produce error).
func (a *ackTracker) fail(err error) { a.err.CompareAndSwap(nil, &err) }

// commit closes t: its records are all produced, ending at endLSN.
func (a *ackTracker) commit(t *txTrack, endLSN uint64) {
	t.endLSN = endLSN
	t.closed.Store(true)
	if t.pending.Load() == 0 {
		a.maybeRunAfter(t)
	}
}

// maybeRunAfter starts t's after-ack work once t is closed and acknowledged.
// Both the last ack and commit call it; fired lets only one start it. After
// a delivery failure nothing runs: the run stops and the transaction is
// streamed again.
func (a *ackTracker) maybeRunAfter(t *txTrack) {
	// closed is stored after after and held, so a closed transaction shows them.
	if !t.closed.Load() || t.after == nil || t.pending.Load() != 0 || a.failed() != nil {
		return
	}
	if !t.fired.CompareAndSwap(false, true) {
		return
	}
	a.runAfter(t.after, func() { t.held.Store(false) })
}

// failed returns the first produce error, if any.
func (a *ackTracker) failed() error {
	if p := a.err.Load(); p != nil {
		return *p
	}
	return nil
}

// advance drops fully acknowledged transactions from the front and returns
// the highest end LSN among them (0 if none), and whether nothing at all is
// in flight any more.
func (a *ackTracker) advance() (lsn uint64, drained bool) {
	if a.failed() != nil {
		return 0, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	for ; i < len(a.queue); i++ {
		t := a.queue[i]
		// closed is set after the last add, so a closed transaction with
		// nothing pending has every ack in.
		if !t.closed.Load() || t.pending.Load() != 0 || t.held.Load() {
			break
		}
		if t.endLSN > lsn {
			lsn = t.endLSN
		}
	}
	if i > 0 {
		n := copy(a.queue, a.queue[i:])
		clear(a.queue[n:])
		a.queue = a.queue[:n]
	}
	return lsn, len(a.queue) == 0
}

// maxConcurrentAfters bounds the after-ack work running at once; more
// waits, holding its transaction's confirmation meanwhile.
const maxConcurrentAfters = 16

// afterRunner runs after-ack work on goroutines of its own (never on the
// producer's callback goroutine), at most maxConcurrentAfters at a time.
type afterRunner struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

func (r *afterRunner) run(fn func(), done func()) {
	r.wg.Go(func() {
		r.sem <- struct{}{}
		defer func() { <-r.sem }()
		defer done()
		fn()
	})
}

// wait blocks until the running work has finished or ctx ends.
func (r *afterRunner) wait(ctx context.Context) {
	finished := make(chan struct{})
	go func() { r.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
	}
}
