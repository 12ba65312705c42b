package lease_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// deadline guards every wait: a hang fails the test; it asserts no speed.
const deadline = 60 * time.Second

func opts(identity string) lease.Options {
	return lease.Options{Identity: identity, RetryInterval: 50 * time.Millisecond, CheckInterval: 50 * time.Millisecond, RejoinDelay: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler)}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// TestTwoHoldersCompeteAndOneHolds: two processes' leases of one name; at
// every sample exactly one holds, the jobs never run at once on a good
// connection, and giving the lease up hands it over.
func TestTwoHoldersCompeteAndOneHolds(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	name := "test-" + db.Name
	var running atomic.Int32
	var overlap atomic.Bool
	job := func(ctx context.Context) error {
		if running.Add(1) > 1 {
			overlap.Store(true)
		}
		<-ctx.Done()
		running.Add(-1)
		return nil
	}
	a, b := lease.New(db.URL, name, opts("a")), lease.New(db.URL, name, opts("b"))
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctxA, job) })
	wg.Go(func() { _ = b.Run(ctxB, job) })
	t.Cleanup(func() { stopA(); stopB(); wg.Wait() })

	ctx := waitCtx(t)
	first, second, stopFirst := a, b, stopA
	for !a.Held() && !b.Held() {
		if ctx.Err() != nil {
			t.Fatal("nobody took the lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b.Held() {
		first, second, stopFirst = b, a, stopB
	}
	// Sample for a while: never both.
	for range 40 {
		if a.Held() && b.Held() {
			t.Fatal("both processes hold the lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	identity, _, ok, err := lease.Holder(ctx, db.Pool, name)
	if err != nil || !ok || identity != map[*lease.Lease]string{a: "a", b: "b"}[first] {
		t.Fatalf("Holder = %q, %v, %v; want %q", identity, ok, err, map[*lease.Lease]string{a: "a", b: "b"}[first])
	}
	stopFirst() // gives the lease up
	if !second.WaitHeld(ctx) {
		t.Fatal("the standby did not take the lease after the holder gave it up")
	}
	if first.Held() {
		t.Fatal("the stopped process still says it holds the lease")
	}
	if overlap.Load() {
		t.Fatal("the two jobs ran at the same time")
	}
}

// TestKilledConnectionHandsTheLeaseOver: the holder's session is
// terminated by the server (pg_terminate_backend); the standby takes over,
// the old holder learns it lost the lease (Held false, the job's context
// cancelled, a loss counted), and later competes again as a standby.
func TestKilledConnectionHandsTheLeaseOver(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	name := "kill-" + db.Name
	cancelled := map[string]chan struct{}{"a": make(chan struct{}, 8), "b": make(chan struct{}, 8)}
	job := func(id string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			cancelled[id] <- struct{}{}
			return nil
		}
	}
	a := lease.New(db.URL, name, opts("a"))
	ctx := waitCtx(t)
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	wg.Go(func() { _ = a.Run(runCtx, job("a")) })
	if !a.WaitHeld(ctx) {
		t.Fatal("a did not take the free lease")
	}
	b := lease.New(db.URL, name, opts("b"))
	wg.Go(func() { _ = b.Run(runCtx, job("b")) })

	_, pid, ok, err := lease.Holder(ctx, db.Pool, name)
	if err != nil || !ok {
		t.Fatalf("holder: %v %v", ok, err)
	}
	var killed bool
	if err := db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate holder's backend %d: %v %v", pid, killed, err)
	}
	if !b.WaitHeld(ctx) {
		id, _, ok, err := lease.Holder(context.Background(), db.Pool, name)
		t.Fatalf("b did not take over after a's session was killed; holder %q %v %v; a %+v b %+v", id, ok, err, a.Status(), b.Status())
	}
	if !a.WaitLost(ctx) {
		t.Fatal("a never learned it lost the lease")
	}
	select {
	case <-cancelled["a"]:
	case <-ctx.Done():
		t.Fatal("a's job was not stopped when the lease was lost")
	}
	if st := a.Status(); st.Losses != 1 || st.Held || st.LastError == "" {
		t.Fatalf("a's status after the loss: %+v", st)
	}
	if a.Held() && b.Held() {
		t.Fatal("both hold the lease")
	}
	identity, _, _, _ := lease.Holder(ctx, db.Pool, name)
	if identity != "b" {
		t.Fatalf("holder is %q, want b", identity)
	}
}
