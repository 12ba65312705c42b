package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// cdcRates are the cdc scenario's phases: a moderate rate, and the rate
// the CDC latency goal is set at, where pg_recvlogical beside TrackOps
// shows what the machine itself allows.
var cdcRates = []int{500, 5000}

const (
	cdcTopic       = "orders.orders"
	cdcConnector   = "trackops-orders-connector"
	recvlogicalOut = "bench_recvlogical"
)

// cdcRoles are the roles of the TrackOps process in the cdc scenario and
// sweep: the connector with the order change stream and its cache refresh
// (cdc), and the order service the refresh reads through (orders). The
// inserted rows are orders without lines, which the inventory role would
// dead-letter one by one (an order with no lines is a malformed
// ORDER_CREATED), so the path measured would be the dead-letter path's as
// much as the change stream's. The saga scenario measures the platform
// with every role.
var cdcRoles = []string{"--roles", "cdc,orders"}

// runCDC: WAL -> Kafka acked under TRACKOPS_EVENT_STRATEGY=cdc, at fixed
// rates of inserted orders (cdcRates, one phase each), vs pg_recvlogical
// (test_decoding) reading the same changes from its own slot at the same
// time.
func runCDC(ctx context.Context, cfg Config) Result {
	res := Result{Description: fmt.Sprintf("orders rows inserted at %s/s in turn (one per transaction; --roles cdc,orders): commit -> change record consumed from %s, vs pg_recvlogical (test_decoding, own slot) receiving the same changes", joinRates(cdcRates), cdcTopic)}
	// Slot names are cluster-wide: a slot of its own keeps the scenario clear
	// of any other TrackOps database on the same server.
	slot := fmt.Sprintf("trackops_bench_%d", time.Now().UnixNano())
	r, err := setUp(ctx, cfg, "cdc", []string{"TRACKOPS_EVENT_STRATEGY=cdc", "TRACKOPS_CDC_SLOT_NAME=" + slot}, cdcRoles...)
	if err != nil {
		return failed(res, err)
	}
	defer r.tearDown()
	missing := connectorMissing(ctx, r)
	if missing != "" {
		res.Status, res.Unavailable = StatusUnavailable, missing
		cfg.logf("cdc", "unavailable: %s; measuring the ceiling only", missing)
	}

	// Each reader's arrivals, from commit stamps taken just before each
	// commit, by order id.
	viaRecv, viaKafka := newTracker(), newTracker()

	recv, err := startRecvlogical(ctx, r.db)
	if err != nil {
		return failed(res, err)
	}
	defer recv.stop()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for line := range recv.lines {
			if id, ok := recv.orderID(line.text); ok {
				viaRecv.arrive(id, line.at)
			}
		}
	}()

	var consumer *kgo.Client
	consumed := make(chan struct{})
	if missing == "" {
		consumer, err = kgo.NewClient(kgo.SeedBrokers(r.proc.KafkaAddr), kgo.ConsumeTopics(cdcTopic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Millisecond), kgo.AllowAutoTopicCreation(),
			kafka.FreshMetadata())
		if err != nil {
			return failed(res, err)
		}
		defer consumer.Close()
		go func() {
			defer close(consumed)
			for ctx.Err() == nil {
				fs := consumer.PollFetches(ctx)
				if fs.IsClientClosed() {
					return
				}
				now := time.Now()
				fs.EachRecord(func(rec *kgo.Record) { viaKafka.arrive(changeKeyID(rec.Key), now) })
			}
		}()
	} else {
		close(consumed)
	}

	res.Notes = append(res.Notes, r.notes...)
	for _, rate := range cdcRates {
		if ctx.Err() != nil {
			break
		}
		cfg.logf("cdc", "inserting orders at %d/s for %s", rate, cfg.Phase)
		var insertErrs atomic.Int64
		mark, start := viaKafka.mark(), time.Now()
		paced(ctx, rate, cfg.Phase, func(ctx context.Context, _ int) {
			conn, err := r.db.Pool.Acquire(ctx)
			if err != nil {
				insertErrs.Add(1)
				return
			}
			defer conn.Release()
			id := uuid.NewString()
			now := time.Now() // with a connection in hand: no pool wait in the figure
			viaRecv.schedule(id, now)
			viaKafka.schedule(id, now)
			if _, err := conn.Exec(ctx, `INSERT INTO orders (id, customer_id, status, currency, total_amount) VALUES ($1, 'bench-cdc', 'PENDING', 'USD', 19.99)`, id); err != nil {
				insertErrs.Add(1)
			}
		})
		ids := viaKafka.since(mark) // the phase's changes, scheduled alike in both trackers
		offered := float64(len(ids)) / time.Since(start).Seconds()
		// Give both readers time to see every change of the phase.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if viaRecv.arrivedOf(ids) == len(ids) && (missing != "" || viaKafka.arrivedOf(ids) == len(ids)) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		ceiling := phaseMeasure("pg_recvlogical --start (test_decoding) on its own slot: commit -> change line received", ids, viaRecv, start)
		var trackops Measure
		if missing != "" {
			trackops = unavailable(missing)
		} else {
			trackops = phaseMeasure(fmt.Sprintf("trackops cdc connector: commit -> record consumed from %s", cdcTopic), ids, viaKafka, start)
		}
		res.Comparisons = append(res.Comparisons,
			latencyComparison(fmt.Sprintf("latency at %d changes/s", rate), trackops, ceiling),
			throughputComparison(fmt.Sprintf("delivered changes/s at an offered %d/s", rate), trackops, ceiling))
		res.Notes = append(res.Notes, fmt.Sprintf("%d orders inserted (%.0f/s achieved of %d/s offered), %d insert errors", len(ids), offered, rate, insertErrs.Load()))
	}
	if consumer != nil {
		consumer.Close()
		<-consumed
	}
	recv.stop()
	<-recvDone

	res.PeakRSSBytes = r.peakRSS()
	res.Notes = append(res.Notes, "trackops latency is measured at a consumer (commit -> consumed), an upper bound of commit -> Kafka ack")
	return res
}

// phaseMeasure is the latency from each id's commit to its arrival, the
// arrivals' rate from the phase's start to the last of them, and the ids
// that never arrived as errors.
func phaseMeasure(what string, ids []string, t *tracker, start time.Time) Measure {
	lat, _, last := t.latencies(ids)
	l := summarize(lat)
	m := Measure{What: what, Count: l.Count, Errors: len(ids) - len(lat), Latency: &l}
	if !last.IsZero() {
		m.Throughput = round3(float64(l.Count) / last.Sub(start).Seconds())
	}
	return m
}

func joinRates(rates []int) string {
	s := make([]string, len(rates))
	for i, r := range rates {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, " and ")
}

// connectorMissing says why the CDC connector cannot be measured, or "" if
// it runs.
func connectorMissing(ctx context.Context, r *rig) string {
	client := &http.Client{Timeout: 2 * time.Second}
	// The connector may start a moment after the API is ready.
	deadline := time.Now().Add(8 * time.Second)
	last := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.proc.ConnectAddr+"/connectors/"+cdcConnector+"/status", nil)
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token) // the Connect API needs the operator role
		}
		resp, err := client.Do(req)
		if err != nil {
			last = fmt.Sprintf("nothing answers on TRACKOPS_CONNECT_ADDR under TRACKOPS_EVENT_STRATEGY=cdc (%v): no CDC connector in this build", shortErr(err))
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), "RUNNING") {
				return ""
			}
			last = fmt.Sprintf("GET /connectors/%s/status answered %d: %s", cdcConnector, resp.StatusCode, truncate(string(b), 200))
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// changeKeyID reads the order id from a Debezium change record key, with
// or without the schema envelope.
func changeKeyID(key []byte) string {
	var k struct {
		ID      string `json:"id"`
		Payload struct {
			ID string `json:"id"`
		} `json:"payload"`
	}
	if json.Unmarshal(key, &k) != nil {
		return ""
	}
	if k.ID != "" {
		return k.ID
	}
	return k.Payload.ID
}

// recvlogical is a pg_recvlogical process streaming a slot to its stdout.
type recvlogical struct {
	cmd   *exec.Cmd
	db    *Database
	lines chan timedLine
	once  sync.Once
}

type timedLine struct {
	text string
	at   time.Time
}

var recvOrderInsert = regexp.MustCompile(`^table public\.orders: INSERT: id\[uuid\]:'([0-9a-f-]{36})'`)

func (r *recvlogical) orderID(line string) (string, bool) {
	m := recvOrderInsert.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// startRecvlogical creates a test_decoding slot on db and streams it.
func startRecvlogical(ctx context.Context, db *Database) (*recvlogical, error) {
	bin, err := exec.LookPath("pg_recvlogical")
	if err != nil {
		return nil, fmt.Errorf("pg_recvlogical not found on PATH (it comes with the PostgreSQL client tools): %w", err)
	}
	create := exec.CommandContext(ctx, bin, "-d", db.URL, "--slot", recvlogicalOut, "--create-slot", "-P", "test_decoding")
	if out, err := create.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pg_recvlogical --create-slot: %w: %s", err, out)
	}
	r := &recvlogical{db: db, lines: make(chan timedLine, 4096)}
	r.cmd = exec.Command(bin, "-d", db.URL, "--slot", recvlogicalOut, "--start", "-f", "-", "-s", "1")
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pg_recvlogical: %w", err)
	}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			r.lines <- timedLine{text: sc.Text(), at: time.Now()}
		}
	}()
	return r, nil
}

func (r *recvlogical) stop() {
	r.once.Do(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
}
