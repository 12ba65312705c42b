package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// connectStatus is Kafka Connect's GET /connectors/{name}/status, with the
// headers naming the answering process and its part.
type connectStatus struct {
	Connector struct {
		State    string `json:"state"`
		WorkerID string `json:"worker_id"`
	} `json:"connector"`
	Tasks []struct {
		State    string `json:"state"`
		WorkerID string `json:"worker_id"`
	} `json:"tasks"`
	worker, role string
}

// statusVia asks one process's Connect API for the built-in connector's status.
func statusVia(p *Process, connectAddr string) (connectStatus, error) {
	var st connectStatus
	req, err := http.NewRequest(http.MethodGet, "http://"+connectAddr+"/connectors/"+order.ConnectorName+"/status", nil)
	if err != nil {
		return st, err
	}
	req.SetBasicAuth("e2e", p.Token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %d", resp.StatusCode)
	}
	st.worker, st.role = resp.Header.Get("X-Trackops-Worker-Id"), resp.Header.Get("X-Trackops-Worker-Role")
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// cdcNode is one process of the cdc role and its Connect address.
type cdcNode struct {
	p       *Process
	cfg     Config
	connect string
}

// TestCDCFailsOverOnSIGKILL: two processes of the cdc role run the built-in
// orders connector under the cdc strategy beside a process taking orders
// (which also runs the embedded broker). Both Connect APIs name the same
// active worker, the other process standing by (its task is RUNNING on the
// active worker, its own part "standby"). Orders are written through the
// API and by multi-row SQL transactions while the active process is killed
// with SIGKILL; the standby takes over within a bound derived from the
// lease settings, and every committed row change reaches the change
// topics, with one ORDER_CREATED id per order (the unconfirmed tail is
// streamed again, with the same event ids).
func TestCDCFailsOverOnSIGKILL(t *testing.T) {
	endToEnd(t)
	ctx := context.Background()
	db := postgrestest.New(t)
	base, slot := strategyConfig(t, db, "cdc")
	base.Extra = append(base.Extra, "TRACKOPS_LOG_LEVEL=error")
	api := base
	apiProc := Launch(t, api, "--roles", "orders,inventory,relay")
	var nodes []*cdcNode
	for range 2 {
		c := base
		c.DataDir, c.HTTPAddr, c.ConnectAddr = t.TempDir(), FreeAddr(t), FreeAddr(t)
		c.Extra = append(append([]string{}, base.Extra...),
			"TRACKOPS_KAFKA_BROKERS="+api.KafkaAddr, "TRACKOPS_KAFKA_REPLICATION_FACTOR=1")
		nodes = append(nodes, &cdcNode{p: Launch(t, c, "--roles", "cdc"), cfg: c, connect: c.ConnectAddr})
	}
	for _, n := range nodes {
		n.p.WaitReady()
	}
	apiProc.WaitReady()

	// Both processes agree on the active worker; the other stands by.
	active := waitActive(t, nodes)
	standby := nodes[1-active]
	st, err := statusVia(standby.p, standby.connect)
	if err != nil || st.role != cdc.RoleStandby || st.worker != cdc.WorkerIDFor(standby.connect) ||
		st.Connector.WorkerID != cdc.WorkerIDFor(nodes[active].connect) || st.Tasks[0].State != cdc.StateRunning {
		t.Fatalf("the standby's status: %+v, %v", st, err)
	}

	sku := "FO-" + uniqueSuffix()
	mustCall(t, apiProc, http.MethodPut, "/api/v1/inventory/"+sku, `{"name":"plenty","on_hand":1000000}`, http.StatusCreated, nil)
	adm := newAdmin(t, api.KafkaAddr)
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		created atomic.Int64
		sqlTx   atomic.Int64
	)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for range 3 {
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				if _, code, _ := placeOrder(apiProc, sku, 1+i%3); code == http.StatusCreated {
					created.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; !stopped(); i++ {
			if err := sqlBatch(ctx, db, fmt.Sprintf("sql-fo-%d", i)); err != nil {
				t.Errorf("sql batch: %v", err)
				return
			}
			sqlTx.Add(1)
		}
	})
	waitUntil(t, "changes flowing to Kafka", 60*time.Second, func(ctx context.Context) (bool, error) {
		n, err := topicRecords(ctx, adm, ordersTopic)
		return n >= 500, err
	})

	nodes[active].p.Kill()
	killed := time.Now()
	var took time.Duration
	waitUntil(t, "the standby streams the connector", 90*time.Second, func(context.Context) (bool, error) {
		st, err := statusVia(standby.p, standby.connect)
		if err != nil {
			return false, err
		}
		if st.role == cdc.RoleActive && st.Connector.State == cdc.StateRunning && st.Connector.WorkerID == st.worker {
			took = time.Since(killed)
			return true, nil
		}
		return false, fmt.Errorf("status %+v", st)
	})
	// The protocol bound: the killed process's lease session ends with it,
	// the standby tries every DefaultLeaseRetry and waits at most
	// DefaultSlotReleaseGrace for the dead walsender's slot; the rest is an
	// allowance for starting a connector (connections, producer, slot) on
	// a loaded machine.
	bound := cdc.DefaultLeaseRetry + cdc.DefaultSlotReleaseGrace + 20*time.Second
	t.Logf("take-over %s after SIGKILL (bound %s)", took.Round(time.Millisecond), bound)
	if took > bound {
		t.Errorf("take-over took %s, more than the bound %s", took, bound)
	}
	// Writes go on against the new active process, then the killed one
	// comes back as a standby.
	before := sqlTx.Load()
	waitUntil(t, "writes after the take-over", 60*time.Second, func(context.Context) (bool, error) {
		return sqlTx.Load() >= before+5, nil
	})
	restarted := &cdcNode{p: Start(t, nodes[active].cfg, "--roles", "cdc"), cfg: nodes[active].cfg, connect: nodes[active].connect}
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	st, err = statusVia(restarted.p, restarted.connect)
	if err != nil || st.role != cdc.RoleStandby || st.Connector.WorkerID != cdc.WorkerIDFor(standby.connect) {
		t.Errorf("the restarted process's status: %+v, %v; want a standby naming %s", st, err, cdc.WorkerIDFor(standby.connect))
	}
	// `trackops cdc status`, from the database alone, names the active worker.
	out, err := Command(t, restarted.p.Env, "", "cdc", "status", "--json")
	var rep struct {
		Connectors []cdc.ConnectorSummary `json:"connectors"`
	}
	if i := strings.Index(out, "{"); err != nil || i < 0 || json.Unmarshal([]byte(out[i:]), &rep) != nil {
		t.Fatalf("cdc status --json: %v\n%s", err, out)
	}
	if len(rep.Connectors) != 1 || rep.Connectors[0].Name != order.ConnectorName || rep.Connectors[0].State != cdc.StateRunning ||
		rep.Connectors[0].ActiveWorkerID != cdc.WorkerIDFor(standby.connect) {
		t.Errorf("cdc status connectors %+v, want %s RUNNING on %s", rep.Connectors, order.ConnectorName, cdc.WorkerIDFor(standby.connect))
	}

	// Every committed change is on the change topics.
	committed := committedChanges(t, db)
	waitSlotPastNow(t, db, slot, 90*time.Second)
	onKafka := readChanges(t, api.KafkaAddr, adm)
	missing := 0
	for _, k := range committed {
		if _, ok := onKafka.first[k]; !ok {
			missing++
			if missing <= 5 {
				t.Errorf("committed change %s is not on Kafka", k)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d committed changes missing after the fail-over", missing, len(committed))
	}
	// One ORDER_CREATED id per order, however often it was produced.
	ids, _ := createdEventIDs(t, api.KafkaAddr, adm)
	for _, k := range committed {
		if k.table == "orders" && k.version == 1 && len(ids[k.id]) != 1 {
			t.Errorf("order %s: %d distinct ORDER_CREATED ids on Kafka, want 1", k.id, len(ids[k.id]))
		}
	}
	t.Logf("%d API orders, %d SQL transactions; %d committed changes, %d change records (%d sent again after the fail-over)",
		created.Load(), sqlTx.Load(), len(committed), onKafka.records, onKafka.records-len(onKafka.first))
}

// waitActive waits until every process's Connect API reports the built-in
// connector RUNNING on one and the same worker, one of the processes, and
// returns its index.
func waitActive(t *testing.T, nodes []*cdcNode) int {
	t.Helper()
	active := -1
	waitUntil(t, "one active cdc process", 90*time.Second, func(context.Context) (bool, error) {
		active = -1
		var worker string
		for i, n := range nodes {
			st, err := statusVia(n.p, n.connect)
			if err != nil {
				return false, err
			}
			if st.Connector.State != cdc.StateRunning || len(st.Tasks) != 1 || st.Tasks[0].State != cdc.StateRunning {
				return false, fmt.Errorf("%s: %+v", n.connect, st)
			}
			if worker == "" {
				worker = st.Connector.WorkerID
			}
			if st.Connector.WorkerID != worker || st.Tasks[0].WorkerID != worker {
				return false, fmt.Errorf("workers disagree: %s, %s", worker, st.Connector.WorkerID)
			}
			if st.role == cdc.RoleActive {
				if active >= 0 {
					return false, fmt.Errorf("two active processes")
				}
				active = i
			} else if st.role != cdc.RoleStandby {
				return false, fmt.Errorf("%s: role %q", n.connect, st.role)
			}
		}
		if active < 0 || !strings.EqualFold(worker, cdc.WorkerIDFor(nodes[active].connect)) {
			return false, fmt.Errorf("no process is the active worker %s", worker)
		}
		return true, nil
	})
	return active
}
