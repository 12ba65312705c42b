package cdc

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// failoverOptions are fast fail-over settings for a manager standing for
// one process, and a reconcile interval long enough that only NOTIFY can
// carry a definition change within a test.
func failoverOptions(b *kafka.Embedded, worker string) ManagerOptions {
	return ManagerOptions{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1, WorkerID: worker,
		RetryMin: 100 * time.Millisecond, LeaseRetry: 200 * time.Millisecond, LeaseCheck: 200 * time.Millisecond,
		SlotReleaseGrace: time.Second, ReconcileInterval: time.Hour}
}

// startManagers starts one manager per worker id on db, as separate
// processes would.
func startManagers(t *testing.T, db *postgrestest.Database, b *kafka.Embedded, workers ...string) []*Manager {
	t.Helper()
	var out []*Manager
	for _, w := range workers {
		m := NewManager(db.Pool, failoverOptions(b, w))
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		out = append(out, m)
	}
	return out
}

// activeOf waits until every manager reports the connector RUNNING on one
// and the same worker, which itself says it is active and the others that
// they stand by; it returns that manager's index.
func activeOf(t *testing.T, name string, ms []*Manager) int {
	t.Helper()
	active := -1
	eventually(t, "one manager streams "+name+" and the others stand by", 30*time.Second, func() bool {
		active = -1
		var worker string
		for i, m := range ms {
			cs, err := m.ClusterState(context.Background(), name)
			if err != nil || cs.State != StateRunning {
				return false
			}
			if worker == "" {
				worker = cs.ActiveWorkerID
			}
			if cs.ActiveWorkerID != worker {
				return false
			}
			local, _, _ := m.ConnectorState(name)
			switch {
			case cs.Role == RoleActive && local == StateRunning && active < 0:
				active = i
			case cs.Role == RoleStandby && local == StateStandby:
			default:
				return false
			}
		}
		return active >= 0 && ms[active].WorkerID() == worker
	})
	return active
}

// TestConnectorFailsOverWhenTheActiveProcessLosesItsDatabase: two managers
// (two processes) run one connector; one streams, the other stands by and
// says which process is active. The active one's sessions to the TrackOps
// database are cut (as when it loses its connection); the standby takes
// the connector over within a bound derived from the lease settings,
// resumes from the slot's confirmed position, and every order committed
// before, during and after the take-over is on the change topic.
func TestConnectorFailsOverWhenTheActiveProcessLosesItsDatabase(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ms := startManagers(t, db, b, "worker-a:8083", "worker-b:8083")
	ctx := context.Background()
	raw := rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"})
	if _, _, err := ms[0].Create(ctx, "fo", raw); err != nil {
		t.Fatal(err)
	}
	first := activeOf(t, "fo", ms)
	standby := 1 - first

	// Orders are written throughout.
	var (
		mu       sync.Mutex
		ids      []string
		stop     = make(chan struct{})
		writerWG sync.WaitGroup
	)
	writerWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			id := newOrderID()
			if _, err := db.Pool.Exec(ctx, insertOrder, id); err != nil {
				t.Errorf("insert: %v", err)
				return
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	})
	written := func() int { mu.Lock(); defer mu.Unlock(); return len(ids) }
	eventually(t, "orders flowing", 20*time.Second, func() bool { return written() >= 20 })

	// Cut the active process off: its lease and listening sessions end.
	cut := time.Now()
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, ms[first].WorkerID()).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminate the active process's sessions: %d, %v", n, err)
	}
	var took time.Duration
	eventually(t, "the standby takes over", 60*time.Second, func() bool {
		cs, err := ms[standby].ClusterState(ctx, "fo")
		if err == nil && cs.Role == RoleActive && cs.State == StateRunning {
			took = time.Since(cut)
			return true
		}
		return false
	})
	// The protocol bound: the server ends the lost lease session at once
	// (terminated), the standby tries every LeaseRetry, the old holder
	// notices within LeaseCheck plus its 1 s check timeout, the new holder
	// waits SlotReleaseGrace at most for the slot; plus a generous
	// allowance for starting a connector on a loaded machine.
	o := failoverOptions(b, "")
	bound := o.LeaseRetry + o.LeaseCheck + time.Second + o.SlotReleaseGrace + 15*time.Second
	t.Logf("take-over after %s (bound %s)", took.Round(time.Millisecond), bound)
	if took > bound {
		t.Errorf("take-over took %s, more than the protocol bound %s", took, bound)
	}
	if got := activeOf(t, "fo", ms); got != standby {
		t.Fatalf("active is manager %d, want the former standby %d", got, standby)
	}
	// Writes go on after the take-over, then stop.
	after := written()
	eventually(t, "orders written after the take-over", 20*time.Second, func() bool { return written() >= after+20 })
	close(stop)
	writerWG.Wait()

	mu.Lock()
	want := append([]string(nil), ids...)
	mu.Unlock()
	missing := readOrderIDs(t, b, "orders.orders", want, 60*time.Second)
	if len(missing) > 0 {
		t.Fatalf("%d of %d committed orders are not on orders.orders, e.g. %v", len(missing), len(want), missing[:min(3, len(missing))])
	}
}

// readOrderIDs reads topic until every id in want was seen in an insert's
// after image or timeout passed; it returns the ids not seen.
func readOrderIDs(t *testing.T, b *kafka.Embedded, topic string, want []string, timeout time.Duration) []string {
	t.Helper()
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for len(missing) > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev struct {
				Op    string `json:"op"`
				After struct {
					ID string `json:"id"`
				} `json:"after"`
			}
			if json.Unmarshal(r.Value, &ev) == nil && ev.Op == "c" {
				delete(missing, ev.After.ID)
			}
		})
	}
	out := make([]string, 0, len(missing))
	for id := range missing {
		out = append(out, id)
	}
	return out
}

// TestDefinitionChangesReachEveryProcess: a connector created, reconfigured,
// paused, resumed, restarted and deleted through one manager is so on the
// other at once — the reconcile interval is an hour, so only NOTIFY can
// carry it — and the standby's cluster view names the active worker.
func TestDefinitionChangesReachEveryProcess(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ms := startManagers(t, db, b, "worker-a:8083", "worker-b:8083")
	a, other := ms[0], ms[1]
	ctx := context.Background()
	raw := rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"})
	if _, _, err := a.Create(ctx, "defs", raw); err != nil {
		t.Fatal(err)
	}
	eventually(t, "created on the other process", 10*time.Second, func() bool {
		_, err := other.Get("defs")
		return err == nil
	})
	if _, _, err := other.Create(ctx, "defs", raw); err != ErrExists {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	active := activeOf(t, "defs", ms)

	// A new configuration through the other process reaches the first.
	raw2 := copyMap(raw)
	raw2["heartbeat.interval.ms"] = "60000"
	if _, created, _, err := other.Put(ctx, "defs", raw2); err != nil || created {
		t.Fatalf("put: %v (created %v)", err, created)
	}
	eventually(t, "new configuration on the first process", 10*time.Second, func() bool {
		info, err := a.Get("defs")
		return err == nil && info.Config["heartbeat.interval.ms"] == "60000"
	})
	active = activeOf(t, "defs", ms)

	// Pause through the standby: both report PAUSED, nobody streams.
	if err := ms[1-active].Pause(ctx, "defs"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "paused everywhere", 10*time.Second, func() bool {
		for _, m := range ms {
			cs, err := m.ClusterState(ctx, "defs")
			if err != nil || cs.State != StatePaused {
				return false
			}
			if local, _, _ := m.ConnectorState("defs"); local != StatePaused {
				return false
			}
		}
		return true
	})
	eventually(t, "the slot released", 10*time.Second, func() bool {
		var active bool
		err := db.Pool.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, raw["slot.name"]).Scan(&active)
		return err == nil && !active
	})
	if err := a.Resume(ctx, "defs"); err != nil {
		t.Fatal(err)
	}
	activeOf(t, "defs", ms)
	if err := other.Restart("defs"); err != nil {
		t.Fatal(err)
	}
	activeOf(t, "defs", ms)

	// Deleted through one process: gone from both.
	if err := a.Delete(ctx, "defs"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted on the other process", 10*time.Second, func() bool {
		_, err := other.Get("defs")
		return err == ErrNotFound
	})
}

// TestBuiltinConnectorFailsOverWithItsTransform: two processes run the
// built-in connector with their own TxTransform; one streams, and when it
// stops (a process shutting down) the other takes over, its transform
// seeing the transactions committed from then on. A pause through one
// process holds on both; a process starting again does not resume it.
func TestBuiltinConnectorFailsOverWithItsTransform(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	raw := rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"})
	var ms []*Manager
	var trs []*recordingTransform
	for _, w := range []string{"worker-a:8083", "worker-b:8083"} {
		m := NewManager(db.Pool, failoverOptions(b, w))
		tr := &recordingTransform{tables: map[string]bool{"public.orders": true}}
		if err := m.RunBuiltin("builtin", raw, WithTransform(tr)); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		ms, trs = append(ms, m), append(trs, tr)
	}
	ctx := context.Background()
	first := activeOf(t, "builtin", ms)
	ms[first].Close()
	next := 1 - first
	eventually(t, "the other process streams the built-in connector", 30*time.Second, func() bool {
		cs, err := ms[next].ClusterState(ctx, "builtin")
		return err == nil && cs.Role == RoleActive && cs.State == StateRunning
	})
	eventually(t, "streaming", 20*time.Second, func() bool {
		ms[next].mu.Lock()
		e := ms[next].entries["builtin"]
		ms[next].mu.Unlock()
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.connector != nil && e.connector.stats.phase.Load() == "streaming"
	})
	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new holder's transform saw the insert", 20*time.Second, func() bool { return len(trs[next].transactions()) == 1 })

	// Paused through the running process; a process starting again
	// (RunBuiltin) keeps it paused.
	if err := ms[next].Pause(ctx, "builtin"); err != nil {
		t.Fatal(err)
	}
	again := NewManager(db.Pool, failoverOptions(b, "worker-c:8083"))
	t.Cleanup(again.Close)
	if err := again.RunBuiltin("builtin", raw, WithTransform(&recordingTransform{})); err != nil {
		t.Fatal(err)
	}
	if state, _, _ := again.ConnectorState("builtin"); state != StatePaused {
		t.Fatalf("a process started while the built-in connector is paused runs it %s, want PAUSED", state)
	}
}
