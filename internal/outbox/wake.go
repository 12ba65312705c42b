package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/trackops/trackops/internal/postgres"
)

// Writers notify the relay only while it listens (outbox_relay.listening,
// migration 00063): a notifying commit serialises with every other one,
// which at high rates queues commits behind each other's WAL flushes. The
// relay measures the rate of events it reads over windows of rateWindow:
// from busyRate on it clears listening and polls every busyPoll instead;
// below half that rate, or after idleAfter with nothing to read, it sets
// listening again, reads once more (a writer may have looked at the flag
// just before) and keeps polling for listenGrace before it sleeps until a
// notification. At low rates a notification wakes it at once, as before.
const (
	busyRate    = 500 // events/s
	rateWindow  = 100 * time.Millisecond
	busyPoll    = 5 * time.Millisecond
	idleAfter   = 250 * time.Millisecond
	listenGrace = 100 * time.Millisecond
)

// wakeState is whether writers notify the relay and the rate it reads at.
type wakeState struct {
	listening   bool
	idleSince   time.Time // zero while rows keep coming
	listenAt    time.Time // when listening was set again
	windowStart time.Time
	windowRows  int
}

// found counts n rows read; reread is true when listening was just set
// again (the rate fell) and the outbox must be read once more.
func (w *wakeState) found(ctx context.Context, db postgres.Querier, n int) (reread bool, err error) {
	now := time.Now()
	w.idleSince = time.Time{}
	reread, err = w.roll(ctx, db, now)
	w.windowRows += n
	return reread, err
}

// roll closes the rate window once it is over and switches listening by
// the rate it measured.
func (w *wakeState) roll(ctx context.Context, db postgres.Querier, now time.Time) (reread bool, err error) {
	if w.windowStart.IsZero() {
		w.windowStart = now
	}
	elapsed := now.Sub(w.windowStart)
	if elapsed < rateWindow {
		return false, nil
	}
	rate := float64(w.windowRows) / elapsed.Seconds()
	w.windowStart, w.windowRows = now, 0
	switch {
	case w.listening && rate >= busyRate:
		return false, w.setListening(ctx, db, false, now)
	case !w.listening && rate < busyRate/2:
		return true, w.setListening(ctx, db, true, now)
	}
	return false, nil
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
	if w.idleSince.IsZero() {
		w.idleSince = now
	}
	if reread, err := w.roll(ctx, db, now); err != nil || reread {
		return busyPoll, reread, err
	}
	if w.listening {
		if now.Sub(w.listenAt) < listenGrace {
			return busyPoll, false, nil
		}
		return 0, false, nil
	}
	if now.Sub(w.idleSince) < idleAfter {
		return busyPoll, false, nil
	}
	if err := w.setListening(ctx, db, true, now); err != nil {
		return 0, false, err
	}
	return busyPoll, true, nil
}
