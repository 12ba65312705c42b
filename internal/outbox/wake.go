package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"time"

	"github.com/trackops/trackops/internal/postgres"
)

// Writers notify the relay only while it listens (outbox_relay.listening,
// migration 00063): a notifying commit serialises with every other one,
// which at high rates queues commits behind each other's WAL flushes. The
// relay measures the rate of events it reads over windows of rateWindow:
// from busyRate on it clears listening and polls every busyPoll instead.
// It sets listening again only once the rate has stayed below half of
// busyRate (nothing to read counts) for calmAfter: events of a busy
// pipeline come in bursts, with windows nearly empty between them, and
// switching on a single quiet window turned notifications back on several
// times a second under steady load. Then it reads once more (a writer may
// have looked at the flag just before) and keeps polling for listenGrace
// before it sleeps until a notification. At low rates a notification wakes
// it at once, as before.
//
// The lock's hold time is the commit's WAL flush, so how many notifying
// commits a second it allows is the disk's: about a thousand on a fast
// SSD, a few hundred where a flush takes a few milliseconds. Where that is
// below busyRate, writers queue for the lock and the rate the relay reads
// at can never reach busyRate: the notifications would cap the write rate
// for good. So while listening, and reading at contendedRate or more, the
// relay also looks for commits waiting for that lock (pg_locks). Seen in
// contendedWindows of the last lockWindows windows it looked in, the
// window's rate becomes the relay's busy rate for as long as it holds the
// cursor: it stops listening, and listens again only once the rate stays
// below half of that.
const (
	busyRate    = 500 // events/s
	rateWindow  = 100 * time.Millisecond
	busyPoll    = 5 * time.Millisecond
	calmAfter   = time.Second
	listenGrace = 100 * time.Millisecond

	contendedRate    = 20 // events/s
	lockWindows      = 10
	contendedWindows = 5
)

// wakeState is whether writers notify the relay and the rate it reads at.
type wakeState struct {
	listening   bool
	calmSince   time.Time // while polling: since when every window was below busyRate/2; zero otherwise
	listenAt    time.Time // when listening was set again
	windowStart time.Time
	windowRows  int

	// busyAt is the busy rate learned from lock waits; 0 is busyRate.
	busyAt float64
	// contended holds, bit i for the i-th last window checked while
	// listening, whether a notifying commit was waiting for the lock.
	contended uint16
	// lockWaiters counts commits waiting for the NOTIFY lock; nil is
	// notifyLockWaiters (tests replace it).
	lockWaiters func(context.Context, postgres.Querier) (int, error)
	// log says when the relay learns a busy rate; nil says nothing.
	log *slog.Logger
}

// busy is the rate from which the relay polls instead of listening.
func (w *wakeState) busy() float64 {
	if w.busyAt > 0 {
		return w.busyAt
	}
	return busyRate
}

// found counts n rows read; reread is true when listening was just set
// again (the rate fell) and the outbox must be read once more.
func (w *wakeState) found(ctx context.Context, db postgres.Querier, n int) (reread bool, err error) {
	reread, err = w.roll(ctx, db, time.Now())
	w.windowRows += n
	return reread, err
}

// roll closes the rate window once it is over and switches listening by
// the rate it measured.
func (w *wakeState) roll(ctx context.Context, db postgres.Querier, now time.Time) (reread bool, err error) {
	if w.windowStart.IsZero() {
		w.windowStart = now
	}
	start := w.windowStart
	elapsed := now.Sub(start)
	if elapsed < rateWindow {
		return false, nil
	}
	rate := float64(w.windowRows) / elapsed.Seconds()
	w.windowStart, w.windowRows = now, 0
	if w.listening {
		if rate >= w.busy() {
			return false, w.setListening(ctx, db, false, now)
		}
		if rate >= contendedRate && w.lockContended(ctx, db) {
			w.busyAt, w.contended = rate, 0
			if w.log != nil {
				// A sign of slow WAL flushes an operator may want to know of.
				w.log.Warn("outbox relay: commits queue for PostgreSQL's NOTIFY lock (slow WAL flushes?); writers stop notifying from this rate and the relay polls",
					"events_per_s", int(rate))
			}
			return false, w.setListening(ctx, db, false, now)
		}
		return false, nil
	}
	if rate >= w.busy()/2 {
		w.calmSince = time.Time{}
		return false, nil
	}
	if w.calmSince.IsZero() {
		w.calmSince = start
	}
	if now.Sub(w.calmSince) < calmAfter {
		return false, nil
	}
	w.calmSince = time.Time{}
	return true, w.setListening(ctx, db, true, now)
}

// lockContended records whether notifying commits wait for the NOTIFY
// lock now, and reports whether they did in contendedWindows of the last
// lockWindows windows checked. A failed check counts as no wait: it only
// keeps the relay listening, as it was.
func (w *wakeState) lockContended(ctx context.Context, db postgres.Querier) bool {
	count := w.lockWaiters
	if count == nil {
		count = notifyLockWaiters
	}
	n, err := count(ctx, db)
	w.contended = (w.contended << 1) & (1<<lockWindows - 1)
	if err == nil && n > 0 {
		w.contended |= 1
	}
	return bits.OnesCount16(w.contended) >= contendedWindows
}

// notifyLockWaiters counts the transactions waiting for the cluster-wide
// lock a notifying commit holds through its WAL flush: in pg_locks, the
// object lock on pg_database with no object id.
func notifyLockWaiters(ctx context.Context, db postgres.Querier) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'object' AND classid = 'pg_database'::regclass AND objid = 0 AND NOT granted`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count NOTIFY lock waiters: %w", err)
	}
	return n, nil
}

// setListening records in the database whether writers notify.
func (w *wakeState) setListening(ctx context.Context, db postgres.Querier, on bool, now time.Time) error {
	if _, err := db.Exec(ctx, `UPDATE outbox_relay SET listening = $1 WHERE id = 1`, on); err != nil {
		return fmt.Errorf("set outbox_relay.listening: %w", err)
	}
	w.listening = on
	if on {
		w.listenAt = now
	}
	return nil
}

// idle is called when a read found nothing: it returns how long to wait
// at most before polling again (0: the poll interval), and reread when
// listening was just set and the outbox must be read once more.
func (w *wakeState) idle(ctx context.Context, db postgres.Querier) (wait time.Duration, reread bool, err error) {
	now := time.Now()
	if reread, err := w.roll(ctx, db, now); err != nil || reread {
		return busyPoll, reread, err
	}
	if w.listening && now.Sub(w.listenAt) >= listenGrace {
		return 0, false, nil
	}
	// Polling: until the rate has been calm for calmAfter (roll), or
	// through the grace after listening was set again.
	return busyPoll, false, nil
}
