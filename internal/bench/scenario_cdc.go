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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

const (
	cdcRate        = 500
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

// runCDC: WAL -> Kafka acked under TRACKOPS_EVENT_STRATEGY=cdc, at a fixed
// rate of inserted orders, vs pg_recvlogical (test_decoding) reading the
// same changes from its own slot at the same time.
func runCDC(ctx context.Context, cfg Config) Result {
	res := Result{Description: fmt.Sprintf("orders rows inserted at %d/s (one per transaction; --roles cdc,orders): commit -> change record consumed from %s, vs pg_recvlogical (test_decoding, own slot) receiving the same changes", cdcRate, cdcTopic)}
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

	// Commit stamps, taken just before each commit, by order id.
	var mu sync.Mutex
	committed := map[string]time.Time{}
	stamp := func(id string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		t, ok := committed[id]
		return t, ok
	}

	recv, err := startRecvlogical(ctx, r.db)
	if err != nil {
		return failed(res, err)
	}
	defer recv.stop()
	recvLat := map[string]time.Duration{}
	recvDone := make(chan struct{})
	var recvLast time.Time
	go func() {
		defer close(recvDone)
		for line := range recv.lines {
			if id, ok := recv.orderID(line.text); ok {
				if at, ok := stamp(id); ok {
					recvLat[id] = line.at.Sub(at)
					recvLast = line.at
				}
			}
		}
	}()

	var cdcMu sync.Mutex
	var cdcLat map[string]time.Duration
	var cdcLast time.Time
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
		cdcLat = map[string]time.Duration{}
		go func() {
			defer close(consumed)
			for ctx.Err() == nil {
				fs := consumer.PollFetches(ctx)
				if fs.IsClientClosed() {
					return
				}
				now := time.Now()
				fs.EachRecord(func(rec *kgo.Record) {
					id := changeKeyID(rec.Key)
					if at, ok := stamp(id); ok {
						cdcMu.Lock()
						if _, seen := cdcLat[id]; !seen {
							cdcLat[id] = now.Sub(at)
							cdcLast = now
						}
						cdcMu.Unlock()
					}
				})
			}
		}()
	} else {
		close(consumed)
	}

	cfg.logf("cdc", "inserting orders at %d/s for %s", cdcRate, cfg.Phase)
	start := time.Now()
	var insertErrs atomic.Int64
	paced(ctx, cdcRate, cfg.Phase, func(ctx context.Context, _ int) {
		conn, err := r.db.Pool.Acquire(ctx)
		if err != nil {
			insertErrs.Add(1)
			return
		}
		defer conn.Release()
		id := uuid.NewString()
		mu.Lock()
		committed[id] = time.Now() // with a connection in hand: no pool wait in the figure
		mu.Unlock()
		if _, err := conn.Exec(ctx, `INSERT INTO orders (id, customer_id, status, currency, total_amount) VALUES ($1, 'bench-cdc', 'PENDING', 'USD', 19.99)`, id); err != nil {
			insertErrs.Add(1)
		}
	})
	offered := float64(len(committed)) / time.Since(start).Seconds()
	n := len(committed)
	// Give both readers time to see every change.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		recv.mu.Lock()
		got := recv.matched
		recv.mu.Unlock()
		if got >= n && (missing != "" || countSafe(&cdcMu, cdcLat) >= n) {
			break
		}
	}
	if consumer != nil {
		consumer.Close()
		<-consumed
	}
	recv.stop()
	<-recvDone

	ceiling := latencyMeasure("pg_recvlogical --start (test_decoding) on its own slot: commit -> change line received", recvLat, start, recvLast)
	ceiling.Errors = n - len(recvLat)
	var trackops Measure
	if missing != "" {
		trackops = unavailable(missing)
	} else {
		trackops = latencyMeasure(fmt.Sprintf("trackops cdc connector: commit -> record consumed from %s", cdcTopic), cdcLat, start, cdcLast)
		trackops.Errors = n - len(cdcLat)
	}
	res.Comparisons = append(res.Comparisons,
		latencyComparison(fmt.Sprintf("latency at %d changes/s", cdcRate), trackops, ceiling),
		throughputComparison(fmt.Sprintf("delivered changes/s at an offered %d/s", cdcRate), trackops, ceiling))
	res.PeakRSSBytes = r.peakRSS()
	res.Notes = append(r.notes, fmt.Sprintf("%d orders inserted (%.0f/s achieved of %d/s offered), %d insert errors", n, offered, cdcRate, insertErrs.Load()),
		"trackops latency is measured at a consumer (commit -> consumed), an upper bound of commit -> Kafka ack")
	return res
}

func countSafe(mu *sync.Mutex, m map[string]time.Duration) int {
	mu.Lock()
	defer mu.Unlock()
	return len(m)
}

func latencyMeasure(what string, lat map[string]time.Duration, start, last time.Time) Measure {
	l := summarize(sortedDurations(lat))
	m := Measure{What: what, Count: l.Count, Latency: &l}
	if !last.IsZero() {
		m.Throughput = round3(float64(l.Count) / last.Sub(start).Seconds())
	}
	return m
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
	cmd     *exec.Cmd
	db      *Database
	lines   chan timedLine
	once    sync.Once
	mu      sync.Mutex
	matched int
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
	r.mu.Lock()
	r.matched++
	r.mu.Unlock()
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
