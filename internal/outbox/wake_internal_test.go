package outbox

import (
	"context"
	"testing"
	"time"

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
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			w := wakeState{}
			if err := w.setListening(ctx, db.Pool, false, start); err != nil {
				t.Fatal(err)
			}
			if _, err := w.roll(ctx, db.Pool, start); err != nil { // opens the first window
				t.Fatal(err)
			}
			switches, was := 0, w.listening
			now := start
			for _, n := range tt.windows {
				w.windowRows += n
				now = now.Add(rateWindow)
				if _, err := w.roll(ctx, db.Pool, now); err != nil {
					t.Fatal(err)
				}
				if w.listening != was {
					switches, was = switches+1, w.listening
				}
			}
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
