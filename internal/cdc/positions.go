package cdc

import (
	"sync"
	"sync/atomic"
)

// txTrack counts one transaction's records still waiting for Kafka's ack.
type txTrack struct {
	endLSN  uint64
	pending atomic.Int64
	closed  atomic.Bool
}

// ackTracker knows which transactions Kafka holds completely. The stream
// goroutine opens and closes transactions in commit order; producer
// callbacks count acks down from any goroutine. The flushable position is
// the end LSN of the last transaction of the longest fully acknowledged
// prefix, so the slot never confirms a transaction with an event Kafka
// does not hold, even when acks arrive out of order across partitions.
type ackTracker struct {
	mu    sync.Mutex
	queue []*txTrack
	err   atomic.Pointer[error]
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

// done is the producer callback for one record of t.
func (a *ackTracker) done(t *txTrack, err error) {
	if err != nil {
		a.err.CompareAndSwap(nil, &err)
	}
	t.pending.Add(-1)
}

// fail records a failure that must stop the run (like a produce error).
func (a *ackTracker) fail(err error) { a.err.CompareAndSwap(nil, &err) }

// commit closes t: its records are all produced, ending at endLSN.
func (a *ackTracker) commit(t *txTrack, endLSN uint64) {
	t.endLSN = endLSN
	t.closed.Store(true)
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
		if !t.closed.Load() || t.pending.Load() != 0 {
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
