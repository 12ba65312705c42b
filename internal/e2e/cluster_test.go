package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/bench"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// clusterRoles are the roles split over two processes each; a ninth
// process (role console) runs the embedded broker the others point at.
var clusterRoles = []string{"orders", "relay", "inventory", "cdc"}

// clusterNode is one process of the cluster; a restart replaces its
// process (same configuration, same ports).
type clusterNode struct {
	role string
	cfg  Config
	mu   sync.Mutex
	p    *Process
}

func (n *clusterNode) proc() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.p
}

// cluster is TrackOps split by role over separate processes on loopback,
// against one PostgreSQL database and one private redis-server, with a
// test load balancer in front of the orders and inventory processes.
type cluster struct {
	t        *testing.T
	db       *postgrestest.Database
	strategy string
	slot     string
	broker   *clusterNode
	byRole   map[string][]*clusterNode
	// lb routes /api/v1/orders… to the orders processes and
	// /api/v1/inventory… to the inventory processes, round robin, moving
	// on to the next process when one refuses the connection (down).
	lb *httptest.Server
	rr atomic.Uint64
}

// startCluster starts the nine processes side by side and waits until each
// is ready.
func startCluster(t *testing.T, strategy string, pendingTimeout time.Duration) *cluster {
	t.Helper()
	db := postgrestest.New(t)
	redis := cachetest.StartServer(t)
	base, slot := strategyConfig(t, db, strategy)
	base.Extra = append(base.Extra,
		"TRACKOPS_REDIS_URL="+redis.URL(),
		"TRACKOPS_LOG_LEVEL=error",
		"TRACKOPS_SAGA_PENDING_TIMEOUT="+pendingTimeout.String())
	c := &cluster{t: t, db: db, strategy: strategy, slot: slot, byRole: map[string][]*clusterNode{}}
	c.broker = &clusterNode{role: "console", cfg: base}
	c.broker.p = Launch(t, base, "--roles", "console")
	for _, role := range clusterRoles {
		for range 2 {
			cfg := base
			cfg.DataDir, cfg.HTTPAddr, cfg.ConnectAddr = t.TempDir(), FreeAddr(t), FreeAddr(t)
			cfg.Extra = append(append([]string{}, base.Extra...),
				"TRACKOPS_KAFKA_BROKERS="+base.KafkaAddr, "TRACKOPS_KAFKA_REPLICATION_FACTOR=1")
			n := &clusterNode{role: role, cfg: cfg, p: Launch(t, cfg, "--roles", role)}
			c.byRole[role] = append(c.byRole[role], n)
		}
	}
	c.broker.p.WaitReady()
	for _, role := range clusterRoles {
		for _, n := range c.byRole[role] {
			n.p.WaitReady()
		}
	}
	c.lb = httptest.NewServer(http.HandlerFunc(c.balance))
	t.Cleanup(c.lb.Close)
	return c
}

var lbClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (c *cluster) balance(w http.ResponseWriter, r *http.Request) {
	var backends []*clusterNode
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/v1/orders"):
		backends = c.byRole["orders"]
	case strings.HasPrefix(r.URL.Path, "/api/v1/inventory"):
		backends = c.byRole["inventory"]
	default:
		backends = []*clusterNode{c.broker}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first := int(c.rr.Add(1))
	for i := range backends {
		p := backends[(first+i)%len(backends)].proc()
		req, err := http.NewRequestWithContext(r.Context(), r.Method, p.HTTP+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := lbClient.Do(req)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // that process is down: the next one
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "every backend is down", http.StatusServiceUnavailable)
}

// restart kills n's process with SIGKILL and starts it again.
func (c *cluster) restart(n *clusterNode) {
	c.t.Helper()
	old := n.proc()
	old.Kill()
	p := Start(c.t, n.cfg, "--roles", n.role)
	n.mu.Lock()
	n.p = p
	n.mu.Unlock()
}

// activeCDC is the cdc process streaming the built-in connector, as the
// Connect API of each cdc process reports it.
func (c *cluster) activeCDC() *clusterNode {
	c.t.Helper()
	var nodes []*cdcNode
	for _, n := range c.byRole["cdc"] {
		nodes = append(nodes, &cdcNode{p: n.proc(), cfg: n.cfg, connect: n.cfg.ConnectAddr})
	}
	return c.byRole["cdc"][waitActive(c.t, nodes)]
}

// clusterRun is one load-and-faults run over a cluster.
type clusterRun struct {
	load   time.Duration
	rate   int
	rounds int // how often each role gets its kill
}

// run puts loadgen over scarce stock through the load balancer and kills
// one process of each role in turn (the active one for cdc), restarting
// it; it returns the load's summary once the load has ended.
func (c *cluster) run(r clusterRun) bench.LoadSummary {
	c.t.Helper()
	token := c.broker.proc().Token
	type result struct {
		sum bench.LoadSummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := bench.RunLoad(context.Background(), bench.LoadConfig{Target: c.lb.URL, Token: token, Rate: r.rate,
			Duration: r.load, SKUs: 6, Stock: 40, Mix: bench.Mix{Create: 70, Read: 20, Status: 5, Cancel: 5}, Timeout: 10 * time.Second})
		done <- result{sum, err}
	}()
	start := time.Now()
	kills := r.rounds * len(clusterRoles)
	for i := range kills {
		// The fault schedule: kills spread evenly over the load.
		if d := time.Until(start.Add(r.load * time.Duration(i+1) / time.Duration(kills+1))); d > 0 {
			time.Sleep(d)
		}
		role := clusterRoles[i%len(clusterRoles)]
		victim := c.byRole[role][(i/len(clusterRoles))%2]
		if role == "cdc" && c.strategy == "cdc" {
			victim = c.activeCDC() // the one streaming the built-in connector
		}
		pid := victim.proc().Pid()
		c.restart(victim)
		c.t.Logf("%s: killed %s process %d, restarted as %d", time.Since(start).Round(time.Second), role, pid, victim.proc().Pid())
	}
	res := <-done
	if res.err != nil {
		c.t.Fatalf("loadgen: %v", res.err)
	}
	return res.sum
}

// settle waits until everything in flight has landed: the outbox drained,
// no order PENDING (the saga or the sweeper decided each), and under the
// cdc strategy the slot confirmed past every commit.
func (c *cluster) settle(limit time.Duration) {
	c.t.Helper()
	waitUntil(c.t, "the outbox drained and no order pending", limit, func(ctx context.Context) (bool, error) {
		var unpublished, pending int
		err := c.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox_events WHERE NOT processed),
			(SELECT count(*) FROM orders WHERE status = 'PENDING')`).Scan(&unpublished, &pending)
		if err == nil && (unpublished > 0 || pending > 0) {
			err = fmt.Errorf("%d outbox rows unpublished, %d orders pending", unpublished, pending)
		}
		return err == nil, err
	})
	if c.strategy != "cdc" {
		return
	}
	var endText string
	if err := c.db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&endText); err != nil {
		c.t.Fatal(err)
	}
	end := parseLSN(c.t, endText)
	waitUntil(c.t, "slot confirmed past "+endText, limit, func(ctx context.Context) (bool, error) {
		f, err := slotFlushed(ctx, c.db, c.slot)
		return f >= end, err
	})
}

// verify runs `trackops verify --kafka` and fails on any failed check.
func (c *cluster) verify(pendingTimeout time.Duration) {
	c.t.Helper()
	env := c.byRole["relay"][0].proc().Env
	out, err := Command(c.t, env, "", "verify", "--kafka", "--json", "--outbox-bound", "30s",
		"--pending-bound", (pendingTimeout + 10*time.Second).String())
	var rep bench.Report
	if i := strings.Index(out, "{"); i < 0 || json.NewDecoder(strings.NewReader(out[i:])).Decode(&rep) != nil {
		c.t.Fatalf("verify --kafka printed no report (%v):\n%s", err, out)
	}
	statuses := map[string][]string{}
	for _, ch := range rep.Checks {
		statuses[ch.Status] = append(statuses[ch.Status], ch.Name)
		if ch.Status == bench.CheckFail {
			c.t.Errorf("verify: %s failed: %d violations, e.g. %v", ch.Name, ch.Violations, ch.Offenders[:min(3, len(ch.Offenders))])
		}
	}
	c.t.Logf("verify --kafka: %v", statuses)
	if len(statuses[bench.CheckPass]) == 0 {
		c.t.Errorf("verify --kafka passed no check: %v", statuses)
	}
	if err != nil && !c.t.Failed() {
		c.t.Errorf("verify --kafka exited with %v:\n%s", err, out)
	}
}

// checkEventOrder reads every event topic and the orders change topic and
// checks, per order (the record key), that the events appear in the order
// of the order's versions: a record of an event not seen before never
// carries an older version than one already seen. Copies of an event
// already seen (at-least-once redelivery) are skipped. It returns how many
// pairs it compared, so the check cannot pass vacuously.
func (c *cluster) checkEventOrder() int {
	c.t.Helper()
	brokers := c.broker.cfg.KafkaAddr
	adm := newAdmin(c.t, brokers)
	compared := 0
	check := func(topic string, version func(*kgo.Record) (id string, v int, ok bool)) {
		last := map[string]int{}
		seen := map[string]bool{}
		for _, r := range readTopicToEnd(c.t, brokers, adm, topic) {
			id, v, ok := version(r)
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			key := string(r.Key)
			if prev, had := last[key]; had {
				compared++
				if v < prev {
					c.t.Errorf("%s: order %s: event %s of version %d after version %d", topic, key, id, v, prev)
				}
			}
			last[key] = max(last[key], v)
		}
	}
	for _, topic := range events.AllTypes {
		check(topic, func(r *kgo.Record) (string, int, bool) {
			var ev struct {
				ID   string `json:"id"`
				Data struct {
					Version *int `json:"version"`
				} `json:"data"`
			}
			if json.Unmarshal(r.Value, &ev) != nil || ev.Data.Version == nil {
				return "", 0, false
			}
			return ev.ID, *ev.Data.Version, true
		})
	}
	if c.strategy == "cdc" {
		check(ordersTopic, func(r *kgo.Record) (string, int, bool) {
			var ev struct {
				After *struct {
					Version int `json:"version"`
				} `json:"after"`
				Source struct {
					LSN uint64 `json:"lsn"`
				} `json:"source"`
			}
			if len(r.Value) == 0 || json.Unmarshal(r.Value, &ev) != nil || ev.After == nil {
				return "", 0, false
			}
			return strconv.FormatUint(ev.Source.LSN, 10) + "/" + string(r.Key), ev.After.Version, true
		})
	}
	return compared
}

// checkSingletons: each singleton lease is held by exactly one live
// process of its role (advisory locks admit one holder; the point is that
// after the kills each job still runs somewhere).
func (c *cluster) checkSingletons() {
	c.t.Helper()
	want := map[string]string{order.SweeperLease: "orders", outbox.PruningLease: "relay", inbox.PruningLease: "relay",
		dlq.AlertsLease: "relay"}
	if c.strategy == "cdc" {
		want[cdc.LeaseName(order.ConnectorName)] = "cdc"
	}
	for name, role := range want {
		waitUntil(c.t, "a live "+role+" process holding "+name, 60*time.Second, func(ctx context.Context) (bool, error) {
			identity, _, ok, err := lease.Holder(ctx, c.db.Pool, name)
			if err != nil || !ok {
				return false, err
			}
			for _, n := range c.byRole[role] {
				p := n.proc()
				if p.Alive() && (strings.HasSuffix(identity, ":"+strconv.Itoa(p.Pid())) || identity == cdc.WorkerIDFor(n.cfg.ConnectAddr)) {
					return true, nil
				}
			}
			return false, fmt.Errorf("held by %q, no live %s process", identity, role)
		})
	}
}

// TestClusterOnLoopback: TrackOps split by role over nine processes on one
// machine — the embedded broker in one, orders, relay, inventory and cdc
// two processes each — under the cdc strategy, with loadgen over scarce
// stock through a load balancer, while one process of each role in turn is
// killed with SIGKILL and restarted (for cdc, the active one). Afterwards:
// nothing lost, nothing oversold, no order stuck (`trackops verify --kafka`
// clean), each order's events in version order on every topic, and every
// singleton job held by a live process of its role. `make chaos` runs a
// longer variant under both strategies (TestClusterChaos).
func TestClusterOnLoopback(t *testing.T) {
	endToEnd(t)
	const pending = 15 * time.Second
	c := startCluster(t, "cdc", pending)
	sum := c.run(clusterRun{load: 24 * time.Second, rate: 20, rounds: 1})
	t.Logf("load: %d requests, status codes %v", sum.Requests, sum.StatusCodes)
	if sum.StatusCodes["201"] == 0 {
		t.Fatalf("no order was created: %v", sum.StatusCodes)
	}
	c.settle(2 * time.Minute)
	c.verify(pending)
	if n := c.checkEventOrder(); n == 0 {
		t.Error("no two events of one order were compared: the order check proved nothing")
	} else {
		t.Logf("%d pairs of one order's events compared", n)
	}
	c.checkSingletons()
}
