package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestWakeStateFollowsTheRateNotItsBursts drives the relay's listening
// switch with windows of events on a synthetic clock: a busy pipeline's
// bursts (full windows, then empty ones) keep writers quiet; only a rate
// that stays low for calmAfter turns their notifications back on.
func TestWakeStateFollowsTheRateNotItsBursts(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	tests := []struct {
		name string
		// rows read in each rateWindow, in turn
		windows       []int
		wantListening bool
		wantSwitches  int // times listening changed
	}{
		{"steady high rate", repeat([]int{80}, 30), false, 0},
		{"bursts averaging 600/s", repeat([]int{150, 0, 0, 90}, 10), false, 0},
		{"bursts averaging 300/s with quiet windows", repeat([]int{90, 0, 0}, 15), false, 0},
		{"calm for a second", append(repeat([]int{80}, 5), repeat([]int{10}, 12)...), true, 1},
		{"nothing at all for a second", append(repeat([]int{80}, 5), repeat([]int{0}, 12)...), true, 1},
		{"calm but shorter than a second", append(repeat([]int{80}, 5), repeat([]int{0}, 8)...), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := wakeState{}
			switches := driveWindows(t, db.Pool, &w, false, tt.windows)
			if w.listening != tt.wantListening || switches != tt.wantSwitches {
				t.Errorf("listening %v after %d switches, want %v after %d", w.listening, switches, tt.wantListening, tt.wantSwitches)
			}
			var stored bool
			if err := db.Pool.QueryRow(ctx, `SELECT listening FROM outbox_relay`).Scan(&stored); err != nil || stored != w.listening {
				t.Errorf("outbox_relay.listening = %v (%v), relay thinks %v", stored, err, w.listening)
			}
		})
	}
}

// driveWindows starts w listening or not on a synthetic clock, reads
// windows[i] rows in the i-th rateWindow after, and returns how many times
// listening changed.
func driveWindows(t *testing.T, db postgres.Querier, w *wakeState, listening bool, windows []int) (switches int) {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := w.setListening(ctx, db, listening, now); err != nil {
		t.Fatal(err)
	}
	if _, err := w.roll(ctx, db, now); err != nil { // opens the first window
		t.Fatal(err)
	}
	was := w.listening
	for _, n := range windows {
		w.windowRows += n
		now = now.Add(rateWindow)
		if _, err := w.roll(ctx, db, now); err != nil {
			t.Fatal(err)
		}
		if w.listening != was {
			switches, was = switches+1, w.listening
		}
	}
	return switches
}

func repeat(pattern []int, times int) []int {
	var out []int
	for range times {
		out = append(out, pattern...)
	}
	return out
}

// TestPollDeadlineKeepsTheEarlierPoll: what happens while the relay waits
// (a batch acknowledged, a commit recorded) arms the poll again; the poll
// armed first must stand, or a busy relay polls at the pace of its commits.
func TestPollDeadlineKeepsTheEarlierPoll(t *testing.T) {
	t0 := time.Unix(1_000, 0)
	ms := time.Millisecond
	type arming struct {
		after time.Duration // since t0
		d     time.Duration
		busy  bool
	}
	tests := []struct {
		name     string
		armings  []arming
		wantWait time.Duration // after the last arming
		wantBusy bool
	}{
		{"one busy poll", []arming{{0, 5 * ms, true}}, 5 * ms, true},
		{"a commit 4 ms later does not push it back", []arming{{0, 5 * ms, true}, {4 * ms, 5 * ms, true}}, 1 * ms, true},
		{"a sooner retry moves it forward", []arming{{0, 5 * ms, true}, {1 * ms, 2 * ms, false}}, 2 * ms, false},
		{"a full poll armed after a busy one waits for the busy one", []arming{{0, 5 * ms, true}, {1 * ms, time.Second, false}}, 4 * ms, true},
		{"an overdue poll fires at once", []arming{{0, 5 * ms, true}, {7 * ms, 5 * ms, true}}, -2 * ms, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pollDeadline
			var wait time.Duration
			for _, a := range tt.armings {
				wait = p.arm(t0.Add(a.after), a.d, a.busy)
			}
			if wait != tt.wantWait || p.busy != tt.wantBusy {
				t.Fatalf("wait %v busy %v, want %v busy %v", wait, p.busy, tt.wantWait, tt.wantBusy)
			}
			p.clear()
			last := tt.armings[len(tt.armings)-1].after
			if got := p.arm(t0.Add(last), 5*ms, true); got != 5*ms {
				t.Fatalf("after clear: wait %v, want a fresh 5ms", got)
			}
		})
	}
}

// TestWakeStateLearnsTheRateTheNotifyLockAllows: on a disk whose flushes
// let fewer notifying commits through than busyRate, writers queue for the
// NOTIFY lock and the relay never reads at busyRate. It must see the queue
// (lock waiters in most windows), stop listening at the rate it reads, and
// keep that rate as its busy rate; an occasional waiter is not a queue.
func TestWakeStateLearnsTheRateTheNotifyLockAllows(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	const perWindow = 30 // 300 events/s, below busyRate
	tests := []struct {
		name          string
		windows       []int
		waiters       []int // per check, in turn (repeated)
		wantListening bool
		wantSwitches  int
		wantBusyAt    float64
		wantChecks    int // -1: any
	}{
		{"queued for the lock", repeat([]int{perWindow}, 20), []int{1}, false, 1, 300, 5},
		{"queued in most windows", repeat([]int{perWindow}, 20), []int{2, 0, 1, 1, 0, 3, 1}, false, 1, 300, -1},
		{"a waiter now and then", repeat([]int{perWindow}, 40), []int{1, 0, 0, 0}, true, 0, 0, 40},
		{"no waiters", repeat([]int{perWindow}, 20), []int{0}, true, 0, 0, 20},
		{"too few events to look", repeat([]int{1}, 20), []int{1}, true, 0, 0, 0},
		{"queued, then calm below half the learned rate", append(repeat([]int{perWindow}, 5), repeat([]int{1}, 12)...), []int{1}, true, 2, 300, 5},
		{"queued, then still above half the learned rate", append(repeat([]int{perWindow}, 5), repeat([]int{20}, 12)...), []int{1}, false, 1, 300, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := 0
			var logged strings.Builder
			w := wakeState{lockWaiters: func(context.Context, postgres.Querier) (int, error) {
				n := tt.waiters[checks%len(tt.waiters)]
				checks++
				return n, nil
			}, log: slog.New(slog.NewTextHandler(&logged, nil))}
			switches := driveWindows(t, db.Pool, &w, true, tt.windows)
			if w.listening != tt.wantListening || switches != tt.wantSwitches {
				t.Errorf("listening %v after %d switches, want %v after %d", w.listening, switches, tt.wantListening, tt.wantSwitches)
			}
			if w.busyAt != tt.wantBusyAt {
				t.Errorf("learned busy rate %v, want %v", w.busyAt, tt.wantBusyAt)
			}
			if warned := strings.Contains(logged.String(), "NOTIFY lock"); warned != (tt.wantBusyAt > 0) {
				t.Errorf("warned of the NOTIFY lock: %v, want %v; log:\n%s", warned, tt.wantBusyAt > 0, logged.String())
			}
			if tt.wantChecks >= 0 && checks != tt.wantChecks {
				t.Errorf("looked for lock waiters %d times, want %d", checks, tt.wantChecks)
			}
		})
	}
}

// connectWithSlowCommits opens a session whose commits wait delay before
// their WAL flush (commit_delay, at most 100 ms): a slow disk, as the
// NOTIFY lock sees it, on a fast one.
func connectWithSlowCommits(ctx context.Context, url string, delay time.Duration) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`SET commit_delay = %d; SET commit_siblings = 0`, delay.Microseconds())); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("slow commits: %w", err)
	}
	return conn, nil
}

// TestNotifyLockWaitersCountsCommitsQueuedForTheLock makes notifying
// commits hold the NOTIFY lock for 100 ms each (commit_delay stands in for
// a slow disk's flush) and checks that the relay's query sees the ones
// queued behind, and none once they are through.
func TestNotifyLockWaitersCountsCommitsQueuedForTheLock(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE slow_writes (x int)`); err != nil {
		t.Fatal(err)
	}
	// The lock is the cluster's, so other tests' notifying commits may be
	// counted too; they hold it for a flush, not for 100 ms, so they are
	// unlikely to make up the waiters this test asks for on their own.
	const writers = 3
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			conn, err := connectWithSlowCommits(ctx, db.URL, 100*time.Millisecond)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, `BEGIN; INSERT INTO slow_writes VALUES (1); SELECT pg_notify('slow_writes', ''); COMMIT`)
			errs <- err
		})
	}
	most := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		n, err := notifyLockWaiters(ctx, db.Pool)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, n)
		if most >= writers-1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if most < writers-1 {
		t.Fatalf("saw at most %d commits waiting for the NOTIFY lock, want %d", most, writers-1)
	}
}
