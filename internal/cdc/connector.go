package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// WalLevelError is returned when the server cannot do logical decoding;
// its message is the one-line fix.
type WalLevelError struct {
	// Level is the server's wal_level.
	Level string
}

func (e *WalLevelError) Error() string {
	return "wal_level is " + e.Level + "; the cdc strategy needs wal_level=logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
}

// Options are the collaborators of a Connector.
type Options struct {
	// Kafka configures the producer.
	Kafka kafka.Options
	// Offsets persists snapshot completion; nil keeps it in memory.
	Offsets OffsetStore
	// Logger receives progress and warnings.
	Logger *slog.Logger
	// TopicPartitions is the partition count of topics the connector
	// creates; 0 or less lets the broker choose.
	TopicPartitions int32
	// ProducerOpts are appended to the producer's options.
	ProducerOpts []kgo.Opt
	// Transform, when set, derives records from each committed transaction
	// (see TxTransform).
	Transform TxTransform
	// Metrics count the connector's events, lag and snapshots; nil counts
	// without exporting.
	Metrics *Metrics
}

// Connector streams one database's changes to Kafka. Run it with Run; a
// Connector is used for one run at a time.
type Connector struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	metrics *Metrics

	stats connectorStats
	runRefs
	// reads paces the replication connection's reads (set by Run).
	reads *readahead

	// chunkHook, set by tests, runs after an incremental snapshot reads a
	// chunk and before its high watermark is written.
	chunkHook func(ctx context.Context, table string, keys [][]string)
}

// connectorStats are updated by the stream and read by Status.
type connectorStats struct {
	phase             atomic.Value // string
	events            atomic.Uint64
	lastEventNanos    atomic.Int64
	lastCommitNanos   atomic.Int64 // commit time of the last event's transaction
	receivedLSN       atomic.Uint64
	flushedLSN        atomic.Uint64
	snapshotCompleted atomic.Bool

	rateMu      sync.Mutex
	rateAt      time.Time
	rateEvents  uint64
	ratePerSecs float64

	derived    atomic.Uint64 // records a Transform derived
	statusSent atomic.Uint64 // standby status updates sent
	// maxBuffered is the most changes held for a Transform at once.
	maxBuffered atomic.Int64
	// snapshot is the progress of the last ad-hoc snapshot (nil: none);
	// maxWindow the most rows an incremental snapshot held at once.
	snapshot  atomic.Pointer[SnapshotProgress]
	maxWindow atomic.Int64
}

// NewConnector prepares a connector for cfg.
func NewConnector(cfg Config, opts Options) *Connector {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Offsets == nil {
		opts.Offsets = &MemoryOffsets{}
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	c := &Connector{cfg: cfg, opts: opts, log: opts.Logger.With("connector", cfg.Name), metrics: opts.Metrics}
	c.stats.phase.Store("starting")
	return c
}

// Config returns the connector's configuration.
func (c *Connector) Config() Config { return c.cfg }

// runtimeParams make the server's text output predictable for the encoders.
var runtimeParams = map[string]string{
	"TimeZone":           "UTC",
	"DateStyle":          "ISO, YMD",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// Run captures changes until ctx ends (returning nil) or a failure stops it.
func (c *Connector) Run(ctx context.Context) error {
	poolCfg, err := pgxpool.ParseConfig(c.cfg.ConnString(false))
	if err != nil {
		return fmt.Errorf("database connection settings: %w", err)
	}
	poolCfg.MaxConns = 3
	for k, v := range runtimeParams {
		poolCfg.ConnConfig.RuntimeParams[k] = v
	}
	// The connector's own writes (signals, snapshot watermarks) are made on
	// the stream's goroutine and wait for their commit: were its own slot a
	// synchronous standby, waiting for it would wait for itself.
	poolCfg.ConnConfig.RuntimeParams["synchronous_commit"] = "local"
	meta, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("connect to %s:%d/%s: %w", c.cfg.Host, c.cfg.Port, c.cfg.DBName, err)
	}
	defer meta.Close()
	c.pool.Store(meta)
	defer c.pool.Store(nil)
	if err := CheckWalLevel(ctx, meta); err != nil {
		return err
	}
	tables, err := c.capturedTables(ctx, meta)
	if err != nil {
		return err
	}
	if err := c.ensurePublication(ctx, meta, tables); err != nil {
		return err
	}
	c.checkSignalTable(ctx, meta)
	if c.cfg.SignalChannels["kafka"] {
		signalsCtx, stopSignals := context.WithCancel(ctx)
		var signals sync.WaitGroup
		signals.Go(func() { c.kafkaSignals(signalsCtx, meta) })
		defer signals.Wait() // before the pool closes
		defer stopSignals()
	}

	// Batches stay under the 1 MB message.max.bytes brokers default to.
	// Records linger (ProducerLinger) until their transaction commits
	// (emitter.send), so a large transaction goes out in full batches
	// instead of in requests of a few records each time the broker
	// answered faster than changes arrived.
	popts := []kgo.Opt{kgo.MaxBufferedRecords(20_000), kgo.ProducerBatchMaxBytes(1_000_000), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(producerLinger)}
	popts = append(popts, c.opts.ProducerOpts...)
	producer, err := kafka.NewProducer(c.opts.Kafka, popts...)
	if err != nil {
		return err
	}
	defer producer.Close()

	replCfg, err := pgconn.ParseConfig(c.cfg.ConnString(true))
	if err != nil {
		return fmt.Errorf("replication connection settings: %w", err)
	}
	for k, v := range runtimeParams {
		replCfg.RuntimeParams[k] = v
	}
	c.reads = &readahead{}
	replCfg.DialFunc = c.reads.dialer(replCfg.DialFunc)
	replCfg.BuildFrontend = bufferedFrontend
	repl, err := pgconn.ConnectConfig(ctx, replCfg)
	if err != nil {
		return fmt.Errorf("open replication connection: %w", err)
	}
	defer repl.Close(context.WithoutCancel(ctx))

	slot, err := c.lookupSlot(ctx, meta)
	if err != nil {
		return err
	}
	off, found, err := c.opts.Offsets.LoadOffsets(ctx, c.cfg.Name)
	if err != nil {
		return err
	}
	if found && off.Slot != c.cfg.SlotName {
		found, off = false, Offsets{}
	}
	c.stats.snapshotCompleted.Store(off.SnapshotCompleted)
	snapshot := c.needSnapshot(found, off, slot.exists)

	em := newEmitter(c, producer, meta)
	c.em.Store(em)
	monitorCtx, stopMonitor := context.WithCancel(ctx)
	defer stopMonitor()
	go c.monitor(monitorCtx, 10*time.Second)
	if snapshot {
		if slot.exists {
			c.log.Info("dropping replication slot to take a consistent snapshot", "slot", c.cfg.SlotName)
			if err := pglogrepl.DropReplicationSlot(ctx, repl, c.cfg.SlotName, pglogrepl.DropReplicationSlotOptions{Wait: true}); err != nil {
				return fmt.Errorf("drop replication slot %s: %w", c.cfg.SlotName, err)
			}
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, repl, c.cfg.SlotName, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
		if err != nil {
			return fmt.Errorf("create replication slot %s: %w", c.cfg.SlotName, err)
		}
		c.log.Info("replication slot created", "slot", c.cfg.SlotName, "consistent_point", res.ConsistentPoint)
		if err := c.snapshot(ctx, meta, em, res, tables); err != nil {
			return err
		}
		// Completed only once the broker holds the snapshot durably.
		if err := kafka.WaitDurable(ctx, c.opts.Kafka.Durability); err != nil {
			return fmt.Errorf("snapshot records not durable: %w", err)
		}
		off = Offsets{Slot: c.cfg.SlotName, SnapshotCompleted: true}
		if err := c.opts.Offsets.SaveOffsets(ctx, c.cfg.Name, off); err != nil {
			return err
		}
		c.stats.snapshotCompleted.Store(true)
		if c.cfg.SnapshotMode == SnapshotInitialOnly {
			c.stats.phase.Store("snapshot completed")
			c.log.Info("initial_only snapshot completed; not streaming")
			<-ctx.Done()
			return nil
		}
	} else if !slot.exists {
		if found {
			c.log.Warn("replication slot is gone; changes made while it was missing are not captured (snapshot.mode=when_needed would snapshot again)", "slot", c.cfg.SlotName)
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, repl, c.cfg.SlotName, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
		if err != nil {
			return fmt.Errorf("create replication slot %s: %w", c.cfg.SlotName, err)
		}
		c.log.Info("replication slot created", "slot", c.cfg.SlotName, "consistent_point", res.ConsistentPoint)
		if !found {
			off = Offsets{Slot: c.cfg.SlotName, SnapshotCompleted: c.cfg.SnapshotMode == SnapshotNoData}
			if err := c.opts.Offsets.SaveOffsets(ctx, c.cfg.Name, off); err != nil {
				return err
			}
		}
	}
	if c.cfg.SnapshotMode == SnapshotInitialOnly {
		c.stats.phase.Store("snapshot completed")
		<-ctx.Done()
		return nil
	}

	start, err := c.lookupSlot(ctx, meta)
	if err != nil {
		return err
	}
	err = c.stream(ctx, repl, em, start.confirmedFlush, off)
	if ctx.Err() != nil && c.cfg.SlotDropOnStop {
		repl.Close(context.WithoutCancel(ctx))
		c.dropSlot(meta)
	}
	return err
}

// needSnapshot applies snapshot.mode the way Debezium does.
func (c *Connector) needSnapshot(found bool, off Offsets, slotExists bool) bool {
	switch c.cfg.SnapshotMode {
	case SnapshotNoData:
		return false
	case SnapshotWhenNeeded:
		return !found || !off.SnapshotCompleted || !slotExists
	case SnapshotAlways:
		return true
	default: // initial, initial_only
		return !found || !off.SnapshotCompleted
	}
}

// CheckWalLevel fails with an actionable message unless wal_level=logical.
func CheckWalLevel(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	var level string
	if err := db.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if level != "logical" {
		return &WalLevelError{Level: level}
	}
	return nil
}

type tableName struct{ schema, name string }

func (t tableName) String() string {
	return pgx.Identifier{t.schema, t.name}.Sanitize()
}

// capturedTables lists the ordinary and partitioned tables the filters include.
func (c *Connector) capturedTables(ctx context.Context, db *pgxpool.Pool) ([]tableName, error) {
	rows, err := db.Query(ctx, `
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []tableName
	for rows.Next() {
		var t tableName
		if err := rows.Scan(&t.schema, &t.name); err != nil {
			return nil, err
		}
		if c.cfg.captures(t.schema, t.name) {
			out = append(out, t)
		}
	}
	return out, rows.Err()
}

// ensurePublication applies publication.autocreate.mode.
func (c *Connector) ensurePublication(ctx context.Context, db *pgxpool.Pool, tables []tableName) error {
	var exists, allTables bool
	err := db.QueryRow(ctx, `SELECT true, puballtables FROM pg_publication WHERE pubname = $1`, c.cfg.PublicationName).Scan(&exists, &allTables)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look up publication %s: %w", c.cfg.PublicationName, err)
	}
	pub := pgx.Identifier{c.cfg.PublicationName}.Sanitize()
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = t.String()
	}
	switch c.cfg.PublicationAutocreate {
	case PublicationDisabled:
		if !exists {
			return fmt.Errorf("publication %s does not exist and publication.autocreate.mode=disabled: create it (CREATE PUBLICATION %s FOR TABLE ...) or choose all_tables or filtered", c.cfg.PublicationName, pub)
		}
	case PublicationAllTables:
		if !exists {
			if _, err := db.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR ALL TABLES"); err != nil && !isDuplicate(err) {
				return fmt.Errorf("create publication %s: %w", c.cfg.PublicationName, err)
			}
			c.log.Info("publication created for all tables", "publication", c.cfg.PublicationName)
		}
	case PublicationFiltered:
		if len(tables) == 0 {
			return fmt.Errorf("publication.autocreate.mode=filtered but table.include.list/table.exclude.list match no table in %s", c.cfg.DBName)
		}
		switch {
		case !exists:
			if _, err := db.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR TABLE "+strings.Join(list, ", ")); err != nil && !isDuplicate(err) {
				return fmt.Errorf("create publication %s: %w", c.cfg.PublicationName, err)
			}
			c.log.Info("publication created", "publication", c.cfg.PublicationName, "tables", list)
		case allTables:
			// Already covers every table; the filters apply on our side.
		default:
			if _, err := db.Exec(ctx, "ALTER PUBLICATION "+pub+" SET TABLE "+strings.Join(list, ", ")); err != nil {
				return fmt.Errorf("update publication %s: %w", c.cfg.PublicationName, err)
			}
		}
	}
	return nil
}

// checkSignalTable warns when signals cannot arrive: the signaling table is
// missing or not in the publication (publication.autocreate.mode=disabled),
// so signals and an incremental snapshot's watermarks would never be seen.
func (c *Connector) checkSignalTable(ctx context.Context, db *pgxpool.Pool) {
	if c.cfg.SignalTable == "" {
		return
	}
	var exists, published bool
	err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $2 AND schemaname = $3 AND tablename = $4)`,
		c.cfg.signalTableSQL(), c.cfg.PublicationName, c.cfg.SignalSchema, c.cfg.SignalTable).Scan(&exists, &published)
	switch {
	case err != nil:
		c.log.Warn("cannot check the signaling table", "err", err)
	case !exists:
		c.log.Warn("signal.data.collection names a table that does not exist: create it (CREATE TABLE "+c.cfg.signalTableSQL()+
			" (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048) NULL)); until then no signal is read",
			"table", c.cfg.SignalSchema+"."+c.cfg.SignalTable)
	case !published:
		c.log.Warn("the signaling table is not in the publication: no signal is read and incremental snapshots cannot run; add it (ALTER PUBLICATION ... ADD TABLE)",
			"table", c.cfg.SignalSchema+"."+c.cfg.SignalTable, "publication", c.cfg.PublicationName)
	}
}

func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42710"
}

type slotInfo struct {
	exists         bool
	active         bool
	confirmedFlush uint64
	restartLSN     uint64
}

func (c *Connector) lookupSlot(ctx context.Context, db *pgxpool.Pool) (slotInfo, error) {
	var (
		s        slotInfo
		database *string
		plugin   *string
		flush    *string
		restart  *string
	)
	err := db.QueryRow(ctx, `SELECT database, plugin, active, confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
		c.cfg.SlotName).Scan(&database, &plugin, &s.active, &flush, &restart)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotInfo{}, nil
	}
	if err != nil {
		return slotInfo{}, fmt.Errorf("look up replication slot %s: %w", c.cfg.SlotName, err)
	}
	s.exists = true
	if database == nil || *database != c.cfg.DBName {
		return slotInfo{}, fmt.Errorf("replication slot %s belongs to another database; slot names are cluster-wide: choose another slot.name", c.cfg.SlotName)
	}
	if plugin == nil || *plugin != "pgoutput" {
		return slotInfo{}, fmt.Errorf("replication slot %s uses plugin %v, not pgoutput: drop it or choose another slot.name", c.cfg.SlotName, deref(plugin))
	}
	if flush != nil {
		lsn, err := pglogrepl.ParseLSN(*flush)
		if err == nil {
			s.confirmedFlush = uint64(lsn)
		}
	}
	if restart != nil {
		lsn, err := pglogrepl.ParseLSN(*restart)
		if err == nil {
			s.restartLSN = uint64(lsn)
		}
	}
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// dropSlot removes the slot after a stop (slot.drop.on.stop=true); the
// walsender may take a moment to release it.
func (c *Connector) dropSlot(db *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, c.cfg.SlotName)
		if err == nil {
			c.log.Info("replication slot dropped (slot.drop.on.stop)", "slot", c.cfg.SlotName)
			return
		}
		if ctx.Err() != nil {
			c.log.Warn("could not drop replication slot", "slot", c.cfg.SlotName, "err", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
