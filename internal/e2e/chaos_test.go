//go:build chaos

package e2e

// The chaos suite (`make chaos`; not part of `make test`): for each event
// strategy and each fault, a TrackOps process on loopback ports, under
// loadgen over SKUs with scarce stock, with a private PostgreSQL cluster
// (pg_createcluster) and a private redis-server, then `trackops verify
// --kafka`. It prints one table. Bounded by CHAOS_LOAD (load per run,
// default 60s) and stops by itself; CHAOS_STRATEGIES and CHAOS_FAULTS
// choose a subset; CHAOS_OUT names a file for the table (markdown).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/bench"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/events"
)

// chaosFaults are the faults, in the order they run.
var chaosFaults = []string{"sigkill", "redis-kill", "redis-freeze", "pg-restart", "torn-tail"}

type chaosSettings struct {
	load    time.Duration
	rate    int
	skus    int
	stock   int64
	pending time.Duration
}

// chaosRow is one run's line of the table.
type chaosRow struct {
	Strategy, Fault string
	Requests        uint64
	Status5xx       int // other than 503
	Unavailable     int // 503: the database could not be reached (with Retry-After)
	Refused         int
	Lost            int
	Duplicates      int
	Oversold        int
	Stuck           int
	OtherFailures   []string
	Note            string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestChaos(t *testing.T) {
	load, err := time.ParseDuration(envOr("CHAOS_LOAD", "60s"))
	if err != nil {
		t.Fatalf("CHAOS_LOAD: %v", err)
	}
	rate, _ := strconv.Atoi(envOr("CHAOS_RATE", "60"))
	set := chaosSettings{load: load, rate: rate, skus: 10, stock: 40, pending: 20 * time.Second}
	pg := newPrivateCluster(t)
	var rows []chaosRow
	for _, strategy := range strings.Split(envOr("CHAOS_STRATEGIES", "outbox,cdc"), ",") {
		for _, fault := range strings.Split(envOr("CHAOS_FAULTS", strings.Join(chaosFaults, ",")), ",") {
			t.Logf("chaos: %s / %s", strategy, fault)
			rows = append(rows, runChaos(t, pg, strings.TrimSpace(strategy), strings.TrimSpace(fault), set))
		}
	}
	table := chaosTable(rows, set)
	fmt.Println(table)
	if out := os.Getenv("CHAOS_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func chaosTable(rows []chaosRow, set chaosSettings) string {
	var b strings.Builder
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "Chaos run of %s (load per run %s at %d req/s over %d SKUs of %d units; load average at the end %s)\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), set.load, set.rate, set.skus, set.stock, strings.Join(strings.Fields(string(load))[:3], " "))
	b.WriteString("| strategy | fault | runs | requests | 503 unavailable | other 5xx | refused (process down) | lost | duplicates absorbed | oversold | stuck | other failed checks |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		other := strings.Join(r.OtherFailures, ", ")
		if r.Note != "" {
			other = strings.TrimPrefix(other+"; "+r.Note, "; ")
		}
		fmt.Fprintf(&b, "| %s | %s | 1 | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n",
			r.Strategy, r.Fault, r.Requests, r.Unavailable, r.Status5xx, r.Refused, r.Lost, r.Duplicates, r.Oversold, r.Stuck, other)
	}
	return b.String()
}

// privateCluster is a PostgreSQL cluster of the suite's own, made with
// Debian's pg_createcluster on a free port and dropped at the end.
type privateCluster struct {
	version, name, url string
}

func newPrivateCluster(t *testing.T) *privateCluster {
	t.Helper()
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) == 0 {
		t.Fatalf("no PostgreSQL installation under /etc/postgresql (run `make services`): %v", err)
	}
	ver := versions[len(versions)-1].Name()
	port := freePort(t)
	c := &privateCluster{version: ver, name: fmt.Sprintf("trackops_chaos_%d", port), url: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/trackops?sslmode=disable", port)}
	// fsync=off: the suite restarts this cluster only cleanly (-m fast),
	// and it shares the machine's disk with everyone else.
	out, err := exec.Command("pg_createcluster", ver, c.name, "-p", strconv.Itoa(port),
		"-o", "wal_level=logical", "-o", "max_replication_slots=20", "-o", "max_wal_senders=20",
		"-o", "max_connections=200", "-o", "fsync=off", "--start", "--", "--auth-host=trust", "--auth-local=trust").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_createcluster: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("pg_dropcluster", "--stop", ver, c.name).CombinedOutput(); err != nil {
			t.Errorf("pg_dropcluster: %v\n%s", err, out)
		}
	})
	return c
}

func (c *privateCluster) restart() error {
	out, err := exec.Command("pg_ctlcluster", c.version, c.name, "restart", "-m", "fast").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctlcluster restart: %v: %s", err, out)
	}
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

func runChaos(t *testing.T, pg *privateCluster, strategy, fault string, set chaosSettings) chaosRow {
	row := chaosRow{Strategy: strategy, Fault: fault}
	ctx := context.Background()
	db, err := bench.CreateDatabase(ctx, pg.url, "trackops_chaos")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Drop(context.Background())
	redis := cachetest.StartServer(t)
	cfg := Config{DatabaseURL: db.URL, DataDir: t.TempDir(), HTTPAddr: FreeAddr(t), KafkaAddr: FreeAddr(t), ConnectAddr: FreeAddr(t),
		Extra: []string{
			"TRACKOPS_REDIS_URL=" + redis.URL(),
			"TRACKOPS_EVENT_STRATEGY=" + strategy,
			"TRACKOPS_CDC_SLOT_NAME=" + strings.ReplaceAll(db.Name, "-", "_"),
			"TRACKOPS_SAGA_PENDING_TIMEOUT=" + set.pending.String(),
			"TRACKOPS_RATE_LIMIT_PRINCIPAL=off", "TRACKOPS_RATE_LIMIT_IP=off",
			"TRACKOPS_LOG_LEVEL=warn",
		}}
	p := Start(t, cfg)
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	type loadResult struct {
		sum bench.LoadSummary
		err error
	}
	done := make(chan loadResult, 1)
	go func() {
		sum, err := bench.RunLoad(loadCtx, bench.LoadConfig{Target: p.HTTP, Token: p.Token, Rate: set.rate, Duration: set.load,
			SKUs: set.skus, Stock: set.stock, Mix: bench.Mix{Create: 70, Read: 20, Status: 5, Cancel: 5}, Timeout: 5 * time.Second})
		done <- loadResult{sum, err}
	}()
	// The fault schedule: faults at fixed points of the load.
	at := func(frac float64) { time.Sleep(time.Duration(float64(set.load) * frac)) }
	switch fault {
	case "sigkill":
		for range 5 {
			at(1.0 / 6)
			p.Kill()
			p = Start(t, cfg)
		}
	case "redis-kill":
		at(1.0 / 3)
		if err := redis.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if err := redis.Restart(); err != nil {
			t.Fatal(err)
		}
	case "redis-freeze":
		at(1.0 / 3)
		if err := redis.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		if err := redis.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	case "pg-restart":
		at(1.0 / 2)
		if err := pg.restart(); err != nil {
			t.Fatal(err)
		}
	case "torn-tail":
		at(1.0 / 2)
		p.Kill()
		seg, size := largestSegment(t, cfg.DataDir, events.OrderCreated)
		if err := os.Truncate(seg, max(size-13, 0)); err != nil {
			t.Fatal(err)
		}
		p = Start(t, cfg)
	default:
		t.Fatalf("unknown fault %q (want one of %v)", fault, chaosFaults)
	}
	res := <-done
	if res.err != nil {
		row.Note = "loadgen: " + res.err.Error()
	}
	row.Requests = res.sum.Requests
	for code, n := range res.sum.StatusCodes {
		c, _ := strconv.Atoi(code)
		switch {
		case c == 503:
			row.Unavailable += n
		case c >= 500:
			row.Status5xx += n
		case c == 0:
			row.Refused += n
		}
	}

	// Settle: the pending timeout (and the sweeper, where the build has
	// one) has its chance, the outbox drains.
	time.Sleep(set.pending + 10*time.Second)
	out, _ := Command(t, p.Env, "", "verify", "--kafka", "--json", "--outbox-bound", "10s",
		"--pending-bound", (set.pending + 5*time.Second).String())
	var rep bench.Report
	if i := strings.Index(out, "{"); i < 0 || json.NewDecoder(strings.NewReader(out[i:])).Decode(&rep) != nil {
		t.Fatalf("%s/%s: verify --kafka printed no report:\n%s", strategy, fault, out)
	}
	for _, c := range rep.Checks {
		if c.Status != bench.CheckFail {
			continue
		}
		switch c.Name {
		case "kafka-order-events", "kafka-change-records":
			row.Lost += c.Violations
		case "stock-bounds", "reservation-sums":
			row.Oversold += c.Violations
		case "pending-orders":
			row.Stuck += c.Violations
		default:
			row.OtherFailures = append(row.OtherFailures, fmt.Sprintf("%s (%d)", c.Name, c.Violations))
		}
		for _, o := range c.Offenders[:min(3, len(c.Offenders))] {
			t.Logf("%s/%s %s: %s", strategy, fault, c.Name, o)
		}
	}
	row.Duplicates = duplicateEvents(t, cfg.KafkaAddr)
	if _, err := p.Stop(ctx); err != nil {
		t.Log(err)
	}
	return row
}

// duplicateEvents counts records of the order and inventory topics whose
// event id was already seen: deliveries consumers absorbed by event id.
func duplicateEvents(t *testing.T, addr string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, events.AllTypes...)
	if err != nil {
		t.Fatal(err)
	}
	assign := map[string]map[int32]kgo.Offset{}
	want := map[string]map[int32]int64{}
	remaining := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset == 0 {
			return
		}
		if assign[o.Topic] == nil {
			assign[o.Topic], want[o.Topic] = map[int32]kgo.Offset{}, map[int32]int64{}
		}
		assign[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
		want[o.Topic][o.Partition] = o.Offset
		remaining++
	})
	if remaining == 0 {
		return 0
	}
	reader, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(assign), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	seen := map[string]bool{}
	dups := 0
	for remaining > 0 && ctx.Err() == nil {
		reader.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			end := want[r.Topic][r.Partition]
			if r.Offset >= end {
				return
			}
			for _, h := range r.Headers {
				if h.Key == events.HeaderEventID {
					if seen[string(h.Value)] {
						dups++
					}
					seen[string(h.Value)] = true
				}
			}
			if r.Offset == end-1 {
				remaining--
			}
		})
	}
	return dups
}
