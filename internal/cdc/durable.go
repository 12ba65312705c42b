package cdc

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/trackops/trackops/internal/kafka"
)

// durableWaiter waits for the broker's durability barrier on a goroutine of
// its own, so the stream goroutine never blocks on an fsync round. The
// stream asks for a position whose events Kafka has acknowledged
// (request); the waiter starts a wait on the barrier after that, and once
// the round has finished the position is covered: everything acknowledged
// before the wait began is on disk. Requests made while a wait runs are
// merged into the next one.
type durableWaiter struct {
	barrier kafka.Barrier
	log     *slog.Logger

	wanted  atomic.Uint64 // highest position asked for
	covered atomic.Uint64 // highest position a finished round covers

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func startDurableWaiter(ctx context.Context, b kafka.Barrier, from uint64, log *slog.Logger) *durableWaiter {
	ctx, cancel := context.WithCancel(ctx)
	w := &durableWaiter{barrier: b, log: log, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	w.wanted.Store(from)
	w.covered.Store(from)
	go w.run(ctx)
	return w
}

// request asks for lsn to be made durable. Every event up to lsn must have
// been acknowledged by Kafka before the call. Asking again for a position
// not covered yet retries a wait that failed.
func (w *durableWaiter) request(lsn uint64) {
	if lsn <= w.covered.Load() {
		return
	}
	if lsn > w.wanted.Load() {
		w.wanted.Store(lsn) // only the stream goroutine stores: no lost update
	}
	select {
	case w.kick <- struct{}{}:
	default: // a wait is pending; it reads wanted when it starts
	}
}

func (w *durableWaiter) run(ctx context.Context) {
	defer close(w.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		// Read before the wait starts: the round covers what was
		// acknowledged before this point.
		lsn := w.wanted.Load()
		if lsn <= w.covered.Load() {
			continue
		}
		if err := w.barrier.WaitDurable(ctx); err != nil {
			if ctx.Err() == nil {
				w.log.Warn("broker did not make change events durable; slot not advanced", "err", err)
			}
			continue // the next request tries again
		}
		w.covered.Store(lsn)
	}
}

// stop ends the waiter (and a wait in progress) and waits for it to return.
func (w *durableWaiter) stop() {
	w.cancel()
	<-w.done
}
