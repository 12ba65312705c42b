package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cpusteal"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
)

// SweepScenarios are the paths `bench --sweep` steps the offered rate of.
var SweepScenarios = []string{"saga", "relay", "cdc"}

// DefaultSweepRates are the offered rates a sweep steps through, per second.
var DefaultSweepRates = []int{100, 200, 500, 1000, 2000, 5000}

// Saturation: a step whose delivered rate falls below saturationShare of the
// offered one, that leaves events undelivered after the drain, or whose p99
// passes saturationP99 has saturated the path; the sweep stops after it.
const (
	saturationShare = 0.9
	saturationP99   = time.Second
	// maxInFlight bounds the load's own concurrency; an arrival finding it
	// full is counted as an error instead of waiting (which would be
	// coordinated omission).
	maxInFlight = 4096
	// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat times.
	clockTicks = 100
)

// SweepDocument is what `bench --sweep --out` writes.
type SweepDocument struct {
	GeneratedAt time.Time `json:"generated_at"`
	Machine     Machine   `json:"machine"`
	Sweeps      []Sweep   `json:"sweeps"`
}

// Sweep is one path measured at increasing offered rates.
type Sweep struct {
	Scenario    string  `json:"scenario"`
	Description string  `json:"description"`
	Status      string  `json:"status"`
	Error       string  `json:"error,omitempty"`
	StepSeconds float64 `json:"step_s"`
	// WarmUpSeconds is how long the first rate ran, unmeasured, before
	// the first step (0 in sweeps made before there was a warm-up).
	WarmUpSeconds float64     `json:"warm_up_s,omitempty"`
	Steps         []SweepStep `json:"steps"`
	// SaturatedAt is the offered rate of the first saturated step; 0 when
	// the path kept up with every rate offered.
	SaturatedAt float64  `json:"saturated_at_per_s"`
	Notes       []string `json:"notes,omitempty"`
}

// SweepStep is one offered rate, held for the step's length on a fixed
// schedule; every latency runs from the event's scheduled time.
type SweepStep struct {
	Offered   float64 `json:"offered_per_s"`
	Delivered float64 `json:"delivered_per_s"`
	Sent      int     `json:"sent"`
	Arrived   int     `json:"arrived"`
	Errors    int     `json:"errors"`
	Latency   Latency `json:"latency"`
	// CPU time per delivered event, in microseconds, of the TrackOps
	// process (embedded broker included) and of the PostgreSQL backends
	// serving the scenario's database (the load's own inserts included).
	TrackOpsCPUus float64 `json:"trackops_cpu_us_per_event"`
	PostgresCPUus float64 `json:"postgres_cpu_us_per_event"`
	Saturated     bool    `json:"saturated"`
	LoadAverage   string  `json:"load_average"`
	// StealPercent is the share of the machine's CPU time the hypervisor
	// gave to other guests during the step; absent where unknown.
	StealPercent *float64 `json:"cpu_steal_percent,omitempty"`
}

// sweepPath is what a sweep needs of one scenario: fire sends one event
// scheduled at the given time, and the tracker learns when it arrived.
type sweepPath struct {
	rig *rig
	// fire sends event i, registering its key with the tracker.
	fire func(ctx context.Context, i int64, scheduled time.Time) error
	// stop ends the path's arrival reader.
	stop func()
	// confirm, when set, fills arrivals the path cannot observe as they
	// happen (the saga's confirmations are read from the database).
	confirm func(ctx context.Context, t *tracker, keys []string) error
}

// RunSweep measures scenario at each rate for step, until it saturates.
func RunSweep(ctx context.Context, cfg Config, scenario string, rates []int, step time.Duration) Sweep {
	cfg.defaults()
	sw := Sweep{Scenario: scenario, StepSeconds: step.Seconds(), Steps: []SweepStep{}}
	var path *sweepPath
	var err error
	t := newTracker()
	switch scenario {
	case "saga":
		sw.Description = "orders created over HTTP: scheduled time -> CONFIRMED history entry (relay, inventory reservation, relay, saga)"
		path, err = sagaSweep(ctx, cfg, t)
	case "relay":
		sw.Description = "ORDER_CREATED outbox rows committed one per transaction (--roles relay): scheduled time -> record consumed from Kafka"
		path, err = relaySweep(ctx, cfg, t)
	case "cdc":
		sw.Description = "orders rows inserted one per transaction under TRACKOPS_EVENT_STRATEGY=cdc (--roles cdc,orders): scheduled time -> change record consumed from " + cdcTopic
		path, err = cdcSweep(ctx, cfg, t)
	default:
		err = fmt.Errorf("unknown sweep scenario %q: want %s or all", scenario, strings.Join(SweepScenarios, ", "))
	}
	if path != nil {
		defer func() {
			if path.stop != nil {
				path.stop()
			}
			path.rig.tearDown()
		}()
		sw.Notes = append(sw.Notes, path.rig.notes...)
	}
	if err != nil {
		sw.Status, sw.Error = StatusError, err.Error()
		return sw
	}
	var seq atomic.Int64
	if len(rates) > 0 && ctx.Err() == nil {
		// The process's first events pay for its start (consumer groups
		// joining, pools growing, a change stream starting), which is no
		// step's cost: a warm-up at the first rate, not reported.
		cfg.logf(scenario, "sweep: warm-up at %d/s for %s, not measured", rates[0], warmUp)
		runStep(ctx, cfg, path, t, &seq, rates[0], warmUp)
		sw.WarmUpSeconds = warmUp.Seconds()
	}
	for _, rate := range rates {
		if ctx.Err() != nil {
			break
		}
		cfg.logf(scenario, "sweep: %d/s for %s", rate, step)
		st := runStep(ctx, cfg, path, t, &seq, rate, step)
		sw.Steps = append(sw.Steps, st)
		cfg.logf(scenario, "sweep: %d/s offered, %.0f/s delivered, p50 %.1fms p99 %.1fms, %.0f µs CPU/event (TrackOps), %.0f µs (PostgreSQL)%s%s",
			rate, st.Delivered, st.Latency.P50, st.Latency.P99, st.TrackOpsCPUus, st.PostgresCPUus, stealNote(st.StealPercent), map[bool]string{true: ": saturated"}[st.Saturated])
		if st.Saturated {
			sw.SaturatedAt = st.Offered
			break
		}
	}
	sw.Status = StatusOK
	return sw
}

func runStep(ctx context.Context, cfg Config, path *sweepPath, t *tracker, seq *atomic.Int64, rate int, step time.Duration) SweepStep {
	st := SweepStep{Offered: float64(rate)}
	pid := path.rig.proc.Pid()
	cpu0, pg0, machine0 := processCPU(pid), postgresCPU(ctx, path.rig.db), cpusteal.Read()
	keys, errs := openLoop(ctx, rate, step, func(ctx context.Context, scheduled time.Time) error {
		return path.fire(ctx, seq.Add(1), scheduled)
	}, t)
	st.Sent, st.Errors = len(keys)+errs, errs
	// Drain: every event sent in the step arrives, or the limit passes.
	limit := time.Now().Add(max(15*time.Second, 2*step))
	for ctx.Err() == nil {
		if path.confirm != nil {
			if err := path.confirm(ctx, t, keys); err != nil {
				st.Errors++
				break
			}
		}
		if t.arrivedOf(keys) == len(keys) || time.Now().After(limit) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	lat, first, last := t.latencies(keys)
	st.Arrived = len(lat)
	st.Latency = summarize(lat)
	// Arrivals per second over the span they took: the offered rate when
	// the path keeps up, less when a queue builds.
	if len(lat) > 1 && last.After(first) {
		st.Delivered = round3(float64(len(lat)-1) / last.Sub(first).Seconds())
	}
	if n := len(lat); n > 0 {
		cpu1, pg1 := processCPU(pid), postgresCPU(ctx, path.rig.db)
		st.TrackOpsCPUus = round3(usPerEvent(float64(cpu1-cpu0), n))
		st.PostgresCPUus = round3(usPerEvent(cpuDelta(pg0, pg1), n))
	}
	st.LoadAverage = LoadAverage()
	st.StealPercent = cpusteal.Since(machine0)
	st.Saturated = st.Delivered < saturationShare*st.Offered || st.Arrived < len(keys) ||
		st.Latency.P99 > float64(saturationP99.Milliseconds()) || st.Errors > 0
	return st
}

// openLoop fires events at rate a second for d on a fixed schedule (the
// schedule vegeta's ConstantPacer keeps): the i-th is due at start + i/rate
// whatever became of the ones before, and fire gets that scheduled time, so
// a slow system shows up as latency rather than as fewer arrivals
// (no coordinated omission). It returns the keys fire registered with the
// tracker and how many events failed or found no room.
func openLoop(ctx context.Context, rate int, d time.Duration, fire func(ctx context.Context, scheduled time.Time) error, t *tracker) ([]string, int) {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	var errs atomic.Int64
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxInFlight)
	mark := t.mark()
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(scheduled))
		select {
		case slots <- struct{}{}:
		default:
			errs.Add(1)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := fire(ctx, scheduled); err != nil {
				errs.Add(1)
			}
		})
	}
	wg.Wait()
	return t.since(mark), int(errs.Load())
}

// tracker holds each event's scheduled and arrival times by key.
type tracker struct {
	mu        sync.Mutex
	order     []string
	scheduled map[string]time.Time
	arrived   map[string]time.Time
}

func newTracker() *tracker {
	return &tracker{scheduled: map[string]time.Time{}, arrived: map[string]time.Time{}}
}

func (t *tracker) schedule(key string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scheduled[key] = at
	t.order = append(t.order, key)
}

// arrive records key's first arrival.
func (t *tracker) arrive(key string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.arrived[key]; !ok {
		t.arrived[key] = at
	}
}

func (t *tracker) mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.order)
}

func (t *tracker) since(mark int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.order[mark:]...)
}

func (t *tracker) arrivedOf(keys []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, k := range keys {
		if _, ok := t.arrived[k]; ok {
			n++
		}
	}
	return n
}

// latencies are arrival - scheduled of the keys that arrived, and the first
// and last arrival.
func (t *tracker) latencies(keys []string) (out []time.Duration, first, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		a, ok := t.arrived[k]
		if !ok {
			continue
		}
		out = append(out, max(0, a.Sub(t.scheduled[k])))
		if first.IsZero() || a.Before(first) {
			first = a
		}
		if a.After(last) {
			last = a
		}
	}
	return out, first, last
}

// consumeArrivals records, until ctx ends, the arrival of every record of
// topic under the key keyOf reads from it.
func consumeArrivals(ctx context.Context, broker, topic string, t *tracker, keyOf func(*kgo.Record) string) (func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kafka.FreshMetadata(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() || ctx.Err() != nil {
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) { t.arrive(keyOf(r), now) })
		}
	}()
	return func() { cl.Close(); <-done }, nil
}

func relaySweep(ctx context.Context, cfg Config, t *tracker) (*sweepPath, error) {
	// Only the relay role: nothing else writes to the outbox or reads Kafka.
	r, err := setUp(ctx, cfg, "sweep-relay", nil, "--roles", "relay")
	if err != nil {
		return nil, err
	}
	p := &sweepPath{rig: r}
	if p.stop, err = consumeArrivals(ctx, r.proc.KafkaAddr, events.OrderCreated, t, func(rec *kgo.Record) string { return string(rec.Key) }); err != nil {
		return p, err
	}
	p.fire = func(ctx context.Context, i int64, scheduled time.Time) error {
		o := placeOrder(i)
		ev, err := order.CreatedEvent(ctx, o)
		if err != nil {
			return err
		}
		t.schedule(o.ID.String(), scheduled)
		return postgres.WithTx(ctx, r.db.Pool, func(tx pgx.Tx) error {
			// The load's commits need not wait for a WAL flush (a busy disk
			// would cap the offered rate); the relay sees each at its commit.
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
			return outbox.Write(ctx, tx, ev)
		})
	}
	return p, nil
}

func cdcSweep(ctx context.Context, cfg Config, t *tracker) (*sweepPath, error) {
	// Slot names are cluster-wide: a slot of its own keeps the sweep clear
	// of any other TrackOps database on the server.
	slot := fmt.Sprintf("trackops_sweep_%d", time.Now().UnixNano())
	r, err := setUp(ctx, cfg, "sweep-cdc", []string{"TRACKOPS_EVENT_STRATEGY=cdc", "TRACKOPS_CDC_SLOT_NAME=" + slot}, cdcRoles...)
	if err != nil {
		return nil, err
	}
	p := &sweepPath{rig: r}
	if missing := connectorMissing(ctx, r); missing != "" {
		return p, fmt.Errorf("cdc connector: %s", missing)
	}
	if p.stop, err = consumeArrivals(ctx, r.proc.KafkaAddr, cdcTopic, t, func(rec *kgo.Record) string { return changeKeyID(rec.Key) }); err != nil {
		return p, err
	}
	p.fire = func(ctx context.Context, _ int64, scheduled time.Time) error {
		id := uuid.NewString()
		t.schedule(id, scheduled)
		_, err := r.db.Pool.Exec(ctx, `INSERT INTO orders (id, customer_id, status, currency, total_amount) VALUES ($1, 'bench-sweep', 'PENDING', 'USD', 19.99)`, id)
		return err
	}
	return p, nil
}

func sagaSweep(ctx context.Context, cfg Config, t *tracker) (*sweepPath, error) {
	r, err := setUp(ctx, cfg, "sweep-saga", nil)
	if err != nil {
		return nil, err
	}
	p := &sweepPath{rig: r}
	if inv := r.api.seedInventory(ctx, sagaSKUs, 100_000_000); strings.HasPrefix(inv, "unavailable:") {
		return p, fmt.Errorf("inventory: %s", inv)
	}
	p.fire = func(ctx context.Context, i int64, scheduled time.Time) error {
		body, _ := orderRequest(i, sagaSKUs)
		id, _, err := r.createOrder(ctx, body)
		if err != nil {
			return err
		}
		t.schedule(id, scheduled)
		return nil
	}
	// Confirmations are read from the order histories (the TrackOps
	// process's clock, the same host's as the schedule).
	p.confirm = func(ctx context.Context, t *tracker, keys []string) error {
		rows, err := r.db.Pool.Query(ctx, `SELECT order_id::text, changed_at FROM order_status_history
			WHERE to_status = 'CONFIRMED' AND order_id = ANY($1::uuid[])`, keys)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				return err
			}
			t.arrive(id, at)
		}
		return rows.Err()
	}
	return p, nil
}

// processCPU is the user+system CPU of pid in clock ticks.
func processCPU(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14 and stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// postgresCPU is the CPU, in clock ticks, of each backend of db (its
// sessions and walsenders) by pid.
func postgresCPU(ctx context.Context, db *Database) map[int]int64 {
	return postgresCPUExcept(ctx, db, "")
}

// postgresCPUExcept is postgresCPU without the sessions named app (the
// harness's own, harnessApp); an empty app leaves none out.
func postgresCPUExcept(ctx context.Context, db *Database, app string) map[int]int64 {
	rows, err := db.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
		AND ($1 = '' OR coalesce(application_name, '') <> $1)`, app)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make(map[int]int64, len(pids))
	for _, pid := range pids {
		out[int(pid)] = processCPU(int(pid))
	}
	return out
}

// usPerEvent is ticks of CPU spread over events, in microseconds each.
func usPerEvent(ticks float64, events int) float64 {
	return ticks * 1e6 / clockTicks / float64(max(events, 1))
}

// cpuDelta adds the CPU each backend spent between two readings; a backend
// that started in between counts from zero, one that ended is lost.
func cpuDelta(before, after map[int]int64) float64 {
	var total int64
	for pid, t := range after {
		total += t - before[pid]
	}
	return math.Max(0, float64(total))
}
