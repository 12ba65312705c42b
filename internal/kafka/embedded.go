package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Embedded is the single-node Kafka-protocol broker TrackOps starts when no
// external brokers are configured. It persists its log under a data
// directory; how acknowledged records become durable is its Durability
// (group commit by default: see Barrier). On start after an unclean stop it
// checks the log against the end offsets it last knew to be durable and
// reports what was lost (Recovery). It has no replication: it is for
// development and single-node installs; production points
// TRACKOPS_KAFKA_BROKERS at a cluster.
type Embedded struct {
	cluster *kfake.Cluster
	addr    string
	// configuredAddr is the address StartEmbedded was given, which
	// clients may bootstrap from; addr is the one the broker advertises.
	configuredAddr string
	listener       *inProcessListener
	dir            string
	durability     Durability
	syncer         *syncer
	state          *stateLog
	metrics        *durabilityMetrics
	log            *slog.Logger
	recovery       Recovery
	closeOnce      sync.Once

	mu          sync.Mutex
	republished map[string]int64
}

// EmbeddedOption configures StartEmbedded.
type EmbeddedOption func(*embeddedConfig)

type embeddedConfig struct {
	durability Durability
	interval   time.Duration
	log        *slog.Logger
	reg        prometheus.Registerer
}

// WithDurability sets how acknowledged records become durable, and the
// group-commit flush interval (0: DefaultFlushInterval).
func WithDurability(d Durability, flushInterval time.Duration) EmbeddedOption {
	return func(c *embeddedConfig) { c.durability, c.interval = d, flushInterval }
}

// EmbeddedLogger sends the embedded broker's own log lines, and TrackOps'
// reports on its log, to log.
func EmbeddedLogger(log *slog.Logger) EmbeddedOption {
	return func(c *embeddedConfig) { c.log = log }
}

// EmbeddedMetrics registers the broker's durability metrics
// (trackops_kafka_embedded_*) on reg; without it they are counted only.
func EmbeddedMetrics(reg prometheus.Registerer) EmbeddedOption {
	return func(c *embeddedConfig) { c.reg = reg }
}

// Recovery is what the embedded broker found in its log on start.
type Recovery struct {
	// Checked is set when the log existed before this start.
	Checked bool `json:"checked"`
	// CleanStop is set when the previous run shut down cleanly.
	CleanStop bool `json:"clean_stop"`
	// DurableAt is when the recorded durable end offsets were synced.
	DurableAt *time.Time `json:"durable_at,omitempty"`
	// Truncated lists the torn segment tails the broker cut off on load.
	Truncated []Truncation `json:"truncated,omitempty"`
	// Lost lists the partitions whose recovered end is below the end
	// offset TrackOps last knew to be durable.
	Lost []PartitionLoss `json:"lost,omitempty"`
	// RewindError is set when consumer groups could not be moved back to
	// the recovered ends.
	RewindError string `json:"rewind_error,omitempty"`
	// Ends are the recovered end offsets (high watermarks) per topic and
	// partition: records at or beyond them are not in the log.
	Ends map[string][]int64 `json:"-"`
}

// Truncation is one segment tail kfake discarded on load.
type Truncation struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Segment   int64  `json:"segment"`
	Bytes     int64  `json:"bytes"`
}

// PartitionLoss is a partition that lost acknowledged, durable records.
type PartitionLoss struct {
	Topic        string `json:"topic"`
	Partition    int32  `json:"partition"`
	DurableEnd   int64  `json:"durable_end"`
	RecoveredEnd int64  `json:"recovered_end"`
}

// Damaged reports whether the log lost anything on the last stop.
func (r Recovery) Damaged() bool { return len(r.Truncated) > 0 || len(r.Lost) > 0 }

// NeedsRepublish reports whether records acknowledged before this start may
// be missing from the log: the previous run did not stop cleanly (its last
// acknowledged records may not have been synced), or the log was damaged.
func (r Recovery) NeedsRepublish() bool { return r.Checked && (!r.CleanStop || r.Damaged()) }

// EndOffset is the recovered end offset of a partition: records at or
// beyond it are not in the log. A topic the broker does not hold at all
// has end 0.
func (r Recovery) EndOffset(topic string, partition int32) int64 {
	ends := r.Ends[topic]
	if int(partition) < len(ends) {
		return ends[partition]
	}
	return 0
}

// StartEmbedded starts the broker on addr ("host:port"), keeping its log in
// dataDir (no persistence when dataDir is empty). Durability defaults to
// group commit.
func StartEmbedded(addr, dataDir string, partitions int32, opts ...EmbeddedOption) (*Embedded, error) {
	cfg := embeddedConfig{durability: DurabilityGroup, log: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka port %q: %w", portStr, err)
	}
	e := &Embedded{configuredAddr: addr, dir: dataDir, durability: cfg.durability, log: cfg.log, metrics: newDurabilityMetrics()}
	if cfg.reg != nil {
		if err := registerAll(cfg.reg, e.metrics.collectors()...); err != nil {
			return nil, fmt.Errorf("embedded kafka metrics: %w", err)
		}
	}
	if dataDir == "" {
		e.durability = DurabilityNone
	}
	catcher := &loadLogger{log: cfg.log}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DefaultNumPartitions(int(partitions)),
		kfake.AllowAutoTopicCreation(),
		kfake.WithLogger(catcher),
		kfake.ListenFn(func(network, a string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(a)
			tcp, err := net.Listen(network, net.JoinHostPort(host, p))
			if err != nil {
				return nil, err
			}
			e.listener = newInProcessListener(tcp)
			return e.listener, nil
		}),
	}
	var prior stateRecord
	var havePrior bool
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded kafka data dir: %w", err)
		}
		_, statErr := os.Stat(filepath.Join(dataDir, "meta.json"))
		e.recovery.Checked = statErr == nil
		_, markErr := os.Stat(filepath.Join(dataDir, cleanMarkerName))
		e.recovery.CleanStop = markErr == nil
		prior, havePrior = readStateLog(dataDir)
		// From here on a crash is an unclean stop.
		if markErr == nil {
			if err := os.Remove(filepath.Join(dataDir, cleanMarkerName)); err != nil {
				return nil, fmt.Errorf("embedded kafka: remove clean-shutdown marker: %w", err)
			}
			if err := syncPath(dataDir); err != nil {
				return nil, err
			}
		}
		kopts = append(kopts, kfake.DataDir(dataDir))
		if e.durability == DurabilitySync {
			kopts = append(kopts, kfake.SyncWrites())
		}
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w", addr, err)
	}
	catcher.stopCatching()
	e.cluster = c
	e.addr = c.ListenAddrs()[0]
	if dataDir == "" {
		return e, nil
	}
	e.recovery.Truncated = catcher.truncations()
	if havePrior {
		at := prior.At
		e.recovery.DurableAt = &at
	}
	if err := e.recover(prior.Ends); err != nil {
		c.Close()
		return nil, err
	}
	if e.durability != DurabilityNone {
		if e.state, err = openStateLog(dataDir); err != nil {
			c.Close()
			return nil, err
		}
		e.syncer = newSyncer(dataDir, c, cfg.interval, e.state, e.metrics, cfg.log)
		e.syncer.startWatch("start")
		// Whatever kfake loaded (and truncated) is synced before anyone
		// produces, so the first round's ends are a true baseline.
		if _, err := e.syncer.syncChanged(); err != nil {
			e.syncer.closeWatch()
			e.state.close()
			c.Close()
			return nil, fmt.Errorf("embedded kafka: sync the log on start: %w", err)
		}
		go e.syncer.run()
	}
	return e, nil
}

// recover compares the loaded log with the durable ends recorded before the
// stop, reports losses, and moves consumer groups' committed offsets back
// to the recovered ends: a group that had committed past records the log
// lost would otherwise skip the records published again in their place.
func (e *Embedded) recover(durable map[string][]int64) error {
	ends := map[string][]int64{}
	topics := map[string]bool{}
	for t := range durable {
		topics[t] = true
	}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "partitions"))
	for _, en := range entries {
		if t, _, ok := splitPartitionDir(en.Name()); ok {
			topics[t] = true
		}
	}
	for t := range topics {
		infos := e.cluster.PartitionInfos(t)
		if infos == nil {
			continue
		}
		es := make([]int64, len(infos))
		for i, p := range infos {
			es[i] = p.HighWatermark
		}
		ends[t] = es
	}
	e.recovery.Ends = ends
	for t, des := range durable {
		for p, d := range des {
			got := e.recovery.EndOffset(t, int32(p))
			if got < d {
				e.recovery.Lost = append(e.recovery.Lost, PartitionLoss{Topic: t, Partition: int32(p), DurableEnd: d, RecoveredEnd: got})
				e.metrics.lostRecords.WithLabelValues(t).Add(float64(d - got))
			}
		}
	}
	sort.Slice(e.recovery.Lost, func(i, j int) bool {
		a, b := e.recovery.Lost[i], e.recovery.Lost[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	for _, tr := range e.recovery.Truncated {
		e.metrics.truncatedBytes.WithLabelValues(tr.Topic).Add(float64(tr.Bytes))
	}
	switch {
	case !e.recovery.Checked:
	case e.recovery.Damaged():
		e.metrics.recoveries.WithLabelValues("damaged").Inc()
		e.log.Error("embedded broker: the log lost records on the last stop; events TrackOps published are published again",
			"clean_stop", e.recovery.CleanStop, "truncated", e.recovery.Truncated, "lost", e.recovery.Lost)
	case !e.recovery.CleanStop:
		e.metrics.recoveries.WithLabelValues("unclean").Inc()
		e.log.Warn("embedded broker: the previous run did not stop cleanly; the log is intact up to what was durable")
	default:
		e.metrics.recoveries.WithLabelValues("clean").Inc()
	}
	if !e.recovery.NeedsRepublish() {
		return nil
	}
	if err := e.rewindGroups(ends); err != nil {
		// Not fatal: the broker still serves; a group that stays past the
		// recovered end skips what is published again in its place, which
		// `trackops verify --kafka` reports.
		e.recovery.RewindError = err.Error()
		e.log.Error("embedded broker: could not move consumer groups back to the recovered end of the log", "err", err)
	}
	return nil
}

func (e *Embedded) rewindGroups(ends map[string][]int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addr), kgo.ClientID("trackops-recovery"), e.InProcessDialer())
	if err != nil {
		return fmt.Errorf("embedded kafka recovery: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("embedded kafka recovery: list groups: %w", err)
	}
	for _, g := range groups.Groups() {
		committed, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return fmt.Errorf("embedded kafka recovery: offsets of group %s: %w", g, err)
		}
		rewind := kadm.Offsets{}
		committed.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil {
				return
			}
			end := int64(0)
			if es := ends[o.Topic]; int(o.Partition) < len(es) {
				end = es[o.Partition]
			}
			if o.At > end {
				rewind.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: end, LeaderEpoch: -1})
			}
		})
		if len(rewind) == 0 {
			continue
		}
		resp, err := adm.CommitOffsets(ctx, g, rewind)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("embedded kafka recovery: rewind group %s: %w", g, err)
		}
		e.log.Warn("embedded broker: consumer group rewound to the recovered end of the log", "group", g, "offsets", rewind)
	}
	return nil
}

// Addr is the address clients bootstrap from.
func (e *Embedded) Addr() string { return e.addr }

// Cluster exposes the underlying broker for tests and fault injection.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Durability is the broker's durability mode.
func (e *Embedded) Durability() Durability { return e.durability }

// Recovery is what the broker found in its log on start.
func (e *Embedded) Recovery() Recovery { return e.recovery }

// WaitDurable implements Barrier: it returns once everything the broker
// acknowledged before the call is on disk. Under DurabilityNone, or without
// a data directory, it returns at once.
func (e *Embedded) WaitDurable(ctx context.Context) error {
	if e.syncer == nil {
		return nil
	}
	return e.syncer.WaitDurable(ctx)
}

// Barrier is the broker's durability barrier, or nil when it has none to
// wait for (DurabilityNone, no data directory).
func (e *Embedded) Barrier() Barrier {
	if e.syncer == nil {
		return nil
	}
	return e
}

// NoteRepublished records, for health, how many events per topic were
// queued to be published again after the log lost them.
func (e *Embedded) NoteRepublished(byTopic map[string]int64) {
	e.mu.Lock()
	e.republished = byTopic
	e.mu.Unlock()
}

// Status summarises durability and the last recovery, for health.
func (e *Embedded) Status() map[string]any {
	st := map[string]any{"durability": string(e.durability)}
	e.mu.Lock()
	if e.republished != nil {
		st["republished"] = e.republished
	}
	e.mu.Unlock()
	if e.syncer != nil {
		e.syncer.mu.Lock()
		st["fsyncRounds"] = e.syncer.roundsOK
		if !e.syncer.lastSync.IsZero() {
			st["lastFsync"] = e.syncer.lastSync.UTC().Format(time.RFC3339Nano)
		}
		if e.syncer.broken != nil {
			st["fsyncError"] = e.syncer.broken.Error()
		}
		e.syncer.mu.Unlock()
	}
	if e.recovery.Checked {
		st["lastStop"] = map[string]any{"clean": e.recovery.CleanStop, "truncated": e.recovery.Truncated, "lost": e.recovery.Lost}
	}
	return st
}

// Healthy reports an error when durability cannot be guaranteed (a failed
// fsync), and whether the last start found damage in the log.
func (e *Embedded) Healthy() (damaged bool, err error) {
	if e.syncer != nil {
		e.syncer.mu.Lock()
		err = e.syncer.broken
		e.syncer.mu.Unlock()
	}
	return e.recovery.Damaged(), err
}

// Close stops the broker: kfake writes its state, TrackOps syncs the whole
// log and leaves a clean-shutdown marker, so the next start knows nothing
// acknowledged can be missing.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		if e.syncer != nil {
			e.syncer.stopLoop()
			// One last round while kfake still answers, and its ends on
			// record: the next start compares the log with them.
			e.syncer.round()
			if ends := e.syncer.durableEnds(); ends != nil && e.state != nil {
				if err := e.state.appendEnds(ends); err != nil {
					e.log.Warn("embedded broker: durable end offsets not recorded", "err", err)
				}
			}
		}
		e.cluster.Close()
		if e.dir == "" {
			return
		}
		var err error
		if e.syncer != nil {
			err = e.syncer.finalSync()
		} else {
			// DurabilityNone syncs once, at a clean stop.
			_, err = newSyncer(e.dir, e.cluster, 0, nil, e.metrics, e.log).syncWalked()
		}
		if e.state != nil {
			err = errors.Join(err, e.state.close())
		}
		if err != nil {
			e.log.Error("embedded broker: final sync of the log failed; the next start will check it", "err", err)
			return
		}
		marker := filepath.Join(e.dir, cleanMarkerName)
		if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o644); err == nil {
			err = errors.Join(syncPath(marker), syncPath(e.dir))
			if err != nil {
				e.log.Warn("embedded broker: clean-shutdown marker not synced", "err", err)
			}
		}
	})
}

// loadLogger passes kfake's log lines on to slog and, while the log loads,
// catches the torn tails kfake cuts off.
type loadLogger struct {
	log *slog.Logger

	mu       sync.Mutex
	done     bool
	truncs   []Truncation
	catching bool
}

// kfake: "partition %s-%d segment %d: truncating %d corrupt bytes".
var truncateRe = regexp.MustCompile(`^partition (.+)-(\d+) segment (\d+): truncating (\d+) corrupt bytes$`)

func (l *loadLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	if !l.done {
		if m := truncateRe.FindStringSubmatch(msg); m != nil {
			p, _ := strconv.ParseInt(m[2], 10, 32)
			seg, _ := strconv.ParseInt(m[3], 10, 64)
			n, _ := strconv.ParseInt(m[4], 10, 64)
			l.truncs = append(l.truncs, Truncation{Topic: m[1], Partition: int32(p), Segment: seg, Bytes: n})
		}
	}
	l.mu.Unlock()
	brokerLogger{l.log}.Logf(level, "%s", msg)
}

func (l *loadLogger) stopCatching() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

func (l *loadLogger) truncations() []Truncation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Truncation(nil), l.truncs...)
}

// durabilityMetrics are the embedded broker's durability figures.
type durabilityMetrics struct {
	rounds         prometheus.Counter
	roundSeconds   prometheus.Histogram
	waitSeconds    prometheus.Histogram
	waitersPer     prometheus.Histogram
	fsyncFailures  prometheus.Counter
	lostRecords    *prometheus.CounterVec
	truncatedBytes *prometheus.CounterVec
	recoveries     *prometheus.CounterVec
	walks          *prometheus.CounterVec
}

func newDurabilityMetrics() *durabilityMetrics {
	const ns, sub = "trackops", "kafka_embedded"
	return &durabilityMetrics{
		rounds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "fsync_rounds_total",
			Help: "Group-commit rounds of the embedded broker that synced something or had waiters."}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "fsync_round_seconds",
			Help: "Duration of one group-commit round (end offsets, fsyncs of changed files and directories).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		waitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "durable_wait_seconds",
			Help: "Time a caller of the durability barrier waited.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		waitersPer: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "fsync_round_waiters",
			Help: "Barrier callers one group-commit round answered.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		fsyncFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "fsync_failures_total",
			Help: "Failed fsyncs of the embedded broker's log (durability is lost until restart)."}),
		lostRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "lost_records_total",
			Help: "Records below the last recorded durable end offset that the log did not hold on start, by topic."}, []string{"topic"}),
		truncatedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "truncated_bytes_total",
			Help: "Bytes of torn segment tails cut off when the log was loaded, by topic."}, []string{"topic"}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "log_checks_total",
			Help: "Checks of the log on start, by outcome (clean, unclean, damaged)."}, []string{"outcome"}),
		walks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "log_walks_total",
			Help: "Group-commit rounds that walked the whole log instead of syncing what change notifications named, by reason (start, events_lost, no_notifications)."}, []string{"reason"}),
	}
}

// registerAll registers cs on reg, all or none.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

func (m *durabilityMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.rounds, m.roundSeconds, m.waitSeconds, m.waitersPer, m.fsyncFailures, m.lostRecords, m.truncatedBytes, m.recoveries, m.walks}
}

// walked counts a round that walked the whole log, for reason.
func (m *durabilityMetrics) walked(reason string) {
	if m != nil {
		m.walks.WithLabelValues(reason).Inc()
	}
}

func (m *durabilityMetrics) observeRound(d time.Duration, synced, waiters int) {
	m.rounds.Inc()
	m.roundSeconds.Observe(d.Seconds())
	if waiters > 0 {
		m.waitersPer.Observe(float64(waiters))
	}
}

func (m *durabilityMetrics) observeWait(d time.Duration) { m.waitSeconds.Observe(d.Seconds()) }
