// Package config turns the process environment into one typed Config.
//
// Every setting has a default that works on a developer machine with the
// local PostgreSQL and Redis; production overrides them with TRACKOPS_*
// variables. A variable NAME may instead be given as NAME_FILE, the path of a
// file holding the value, so secrets can come from mounted files.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"golang.org/x/term"
)

// Event publishing strategies.
const (
	StrategyOutbox = "outbox"
	StrategyCDC    = "cdc"
)

// DefaultCDCSlotName is the built-in connector's slot, the seed's.
const DefaultCDCSlotName = "debezium_orders"

// Config is the whole runtime configuration of a TrackOps process.
type Config struct {
	DatabaseURL       string
	RedisURL          string
	KafkaBrokers      []string
	EmbeddedKafkaAddr string
	DataDir           string
	HTTPAddr          string
	ConnectAddr       string
	EventStrategy     string
	LogFormat         string
	LogLevel          string
	KafkaPartitions   int32
	// KafkaCompression is the codec of produced record batches: none (the
	// Java producer's default, readable by every client), gzip, snappy, lz4
	// or zstd.
	KafkaCompression   string
	RelayBatchSize     int
	RelayWorkers       int
	RelayPollInterval  time.Duration
	OutboxRetention    time.Duration
	InboxRetention     time.Duration
	ShutdownTimeout    time.Duration
	HTTPMaxBodyBytes   int64
	TLSCertFile        string
	TLSKeyFile         string
	SagaPendingTimeout time.Duration

	// KafkaDurability is how the embedded broker makes acknowledged
	// records durable: fsync (every batch), group (group commit, the
	// default) or none (left to the operating system, Kafka's default).
	KafkaDurability string
	// KafkaFlushInterval bounds, under group commit, how long an
	// acknowledged record nobody waits for stays in the page cache only.
	KafkaFlushInterval time.Duration

	// CDCSlotName is the replication slot of the built-in orders connector
	// under the cdc strategy. Slot names are cluster-wide, so two TrackOps
	// databases on one PostgreSQL server (or parallel tests) need their own.
	CDCSlotName string

	// Consumer retries before dead-lettering (the seed's: 3 attempts, 1 s, x2, at most 10 s).
	ConsumerRetryAttempts   int
	ConsumerRetryBackoff    time.Duration
	ConsumerRetryMultiplier float64
	ConsumerRetryMaxBackoff time.Duration
	// DLQAlertWebhook receives DLQ alerts as JSON POSTs; empty logs only.
	DLQAlertWebhook  string
	DLQAlertInterval time.Duration
	DLQMaxReplays    int

	// Scale-out settings: connection pooling, Kafka replication and the
	// first admin key of a fresh deployment.

	// DatabaseDirectURL reaches PostgreSQL without a transaction pooler in
	// between. Everything that needs a session of its own uses it: schema
	// migrations (goose's advisory-lock session locker), the relay's
	// LISTEN, logical replication (CDC) and advisory-lock leases. Empty
	// means DatabaseURL (read it with DirectDatabaseURL); when it differs,
	// DatabaseURL is taken to go through a transaction pooler such as
	// PgBouncer (see DatabasePooled).
	DatabaseDirectURL string
	// KafkaReplicationFactor is the replication factor of the topics
	// TrackOps creates: 1 with the embedded broker, 3 with a real cluster;
	// -1 leaves it to the brokers' default.replication.factor.
	KafkaReplicationFactor int
	// KafkaMinInsyncReplicas is the min.insync.replicas of the topics
	// TrackOps creates (with acks=all, how many replicas must have a record
	// before it is acknowledged): 2 when the replication factor is 3 or
	// more, else 1; 0 leaves it to the brokers' default.
	KafkaMinInsyncReplicas int
	// BootstrapAdminKey, when set, is installed as an admin API key on start
	// if no admin key exists yet (usually given as
	// TRACKOPS_BOOTSTRAP_ADMIN_KEY_FILE, a mounted secret).
	BootstrapAdminKey string

	// Tracing is OpenTelemetry trace export (OTEL_* variables); off unless
	// an OTLP endpoint is set.
	Tracing Tracing

	// ---- Read replica (see replica.go) ----

	// DatabaseReadURL is a streaming replica of DatabaseURL's database that
	// takes read-only queries (order and stock reads, lists, history, audit,
	// journey); empty sends them to the primary.
	DatabaseReadURL string
	// DatabaseReadMaxLag is the replica lag past which reads go to the
	// primary until the replica catches up.
	DatabaseReadMaxLag time.Duration
}

// Load reads the configuration from the environment.
func Load() (Config, error) {
	return LoadFrom(os.Getenv)
}

// LoadFrom reads the configuration through getenv, so tests can supply their
// own environment without touching the process's.
func LoadFrom(getenv func(string) string) (Config, error) {
	e := env{getenv: getenv}
	c := Config{
		DatabaseURL:       e.str("TRACKOPS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/trackops?sslmode=disable"),
		RedisURL:          e.str("TRACKOPS_REDIS_URL", "redis://127.0.0.1:6379"),
		KafkaBrokers:      splitList(e.str("TRACKOPS_KAFKA_BROKERS", "")),
		EmbeddedKafkaAddr: e.str("TRACKOPS_EMBEDDED_KAFKA_ADDR", "127.0.0.1:9092"),
		DataDir:           e.str("TRACKOPS_DATA_DIR", "./data"),
		HTTPAddr:          e.str("TRACKOPS_HTTP_ADDR", "127.0.0.1:8080"),
		ConnectAddr:       e.str("TRACKOPS_CONNECT_ADDR", "127.0.0.1:8083"),
		EventStrategy:     strings.ToLower(e.str("TRACKOPS_EVENT_STRATEGY", StrategyOutbox)),
		LogFormat:         strings.ToLower(e.str("TRACKOPS_LOG_FORMAT", defaultLogFormat())),
		LogLevel:          strings.ToLower(e.str("TRACKOPS_LOG_LEVEL", "info")),
		KafkaPartitions:   int32(e.int("TRACKOPS_KAFKA_PARTITIONS", 3)),
		KafkaCompression:  strings.ToLower(e.str("TRACKOPS_KAFKA_COMPRESSION", "none")),
		RelayBatchSize:    e.int("TRACKOPS_RELAY_BATCH_SIZE", 1000),
		RelayWorkers:      e.int("TRACKOPS_RELAY_WORKERS", 2),
		RelayPollInterval: e.duration("TRACKOPS_RELAY_POLL_INTERVAL", time.Second),
		OutboxRetention:   e.duration("TRACKOPS_OUTBOX_RETENTION", 24*time.Hour),
		// Longer than Kafka's default 7-day retention, so no event can be
		// redelivered after its inbox row is gone.
		InboxRetention:     e.duration("TRACKOPS_INBOX_RETENTION", 14*24*time.Hour),
		ShutdownTimeout:    e.duration("TRACKOPS_SHUTDOWN_TIMEOUT", 20*time.Second),
		HTTPMaxBodyBytes:   int64(e.int("TRACKOPS_HTTP_MAX_BODY_BYTES", 1<<20)),
		TLSCertFile:        e.str("TRACKOPS_TLS_CERT_FILE", ""),
		TLSKeyFile:         e.str("TRACKOPS_TLS_KEY_FILE", ""),
		SagaPendingTimeout: e.duration("TRACKOPS_SAGA_PENDING_TIMEOUT", 5*time.Minute),
		CDCSlotName:        e.str("TRACKOPS_CDC_SLOT_NAME", DefaultCDCSlotName),
		KafkaDurability:    strings.ToLower(e.str("TRACKOPS_KAFKA_DURABILITY", "group")),
		KafkaFlushInterval: e.duration("TRACKOPS_KAFKA_FLUSH_INTERVAL", 50*time.Millisecond),

		ConsumerRetryAttempts:   e.int("TRACKOPS_CONSUMER_RETRY_ATTEMPTS", 3),
		ConsumerRetryBackoff:    e.duration("TRACKOPS_CONSUMER_RETRY_BACKOFF", time.Second),
		ConsumerRetryMultiplier: e.float("TRACKOPS_CONSUMER_RETRY_MULTIPLIER", 2),
		ConsumerRetryMaxBackoff: e.duration("TRACKOPS_CONSUMER_RETRY_MAX_BACKOFF", 10*time.Second),
		DLQAlertWebhook:         e.str("TRACKOPS_DLQ_ALERT_WEBHOOK", ""),
		DLQAlertInterval:        e.duration("TRACKOPS_DLQ_ALERT_INTERVAL", 5*time.Minute),
		DLQMaxReplays:           e.int("TRACKOPS_DLQ_MAX_REPLAYS", 3),
	}
	if c.EventStrategy == "debezium" {
		c.EventStrategy = StrategyCDC
	}
	c.loadScaleOut(&e)
	c.loadReplica(&e)
	var err error
	if c.Tracing, err = loadTracing(&e); err != nil {
		e.errs = append(e.errs, err)
	}
	if err := errors.Join(e.errs...); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Validate reports every setting that cannot work, each phrased so the
// operator knows what to change; errors.Join keeps them apart.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		errs = append(errs, err)
	}
	if err := checkRedisURL(c.RedisURL); err != nil {
		errs = append(errs, err)
	}
	switch c.EventStrategy {
	case StrategyOutbox, StrategyCDC:
	default:
		bad("TRACKOPS_EVENT_STRATEGY=%q: want outbox or cdc (debezium is an alias of cdc)", c.EventStrategy)
	}
	if !slotNameRe.MatchString(c.CDCSlotName) {
		bad("TRACKOPS_CDC_SLOT_NAME=%q: use lower-case letters, digits and underscores (at most 63)", c.CDCSlotName)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("TRACKOPS_LOG_FORMAT=%q: want text or json", c.LogFormat)
	}
	if !contains(Compressions, c.KafkaCompression) {
		bad("TRACKOPS_KAFKA_COMPRESSION=%q: want one of %s", c.KafkaCompression, strings.Join(Compressions, ", "))
	}
	switch c.KafkaDurability {
	case "fsync", "group", "none":
	default:
		return fmt.Errorf("TRACKOPS_KAFKA_DURABILITY=%q: want fsync (every batch), group (group commit) or none", c.KafkaDurability)
	}
	if c.KafkaFlushInterval <= 0 {
		return fmt.Errorf("TRACKOPS_KAFKA_FLUSH_INTERVAL must be positive, such as 50ms")
	}
	if c.KafkaPartitions < 1 {
		bad("TRACKOPS_KAFKA_PARTITIONS must be at least 1")
	}
	if c.RelayBatchSize < 1 {
		bad("TRACKOPS_RELAY_BATCH_SIZE must be at least 1")
	}
	if c.ConsumerRetryAttempts < 1 {
		bad("TRACKOPS_CONSUMER_RETRY_ATTEMPTS must be at least 1 (1 means no retry)")
	}
	if c.ConsumerRetryMultiplier < 1 {
		bad("TRACKOPS_CONSUMER_RETRY_MULTIPLIER must be at least 1")
	}
	if c.DLQMaxReplays < 1 {
		bad("TRACKOPS_DLQ_MAX_REPLAYS must be at least 1")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TRACKOPS_TLS_CERT_FILE and TRACKOPS_TLS_KEY_FILE must be set together")
	}
	if err := c.validateScaleOut(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateReplica()...)
	if err := c.Tracing.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Compressions are the accepted values of TRACKOPS_KAFKA_COMPRESSION.
var Compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// DatabaseURLForm is the shape TRACKOPS_DATABASE_URL takes, for messages.
const DatabaseURLForm = "postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=disable"

// checkDatabaseURL parses the URL as pgx will, so a typo is reported before
// anything connects, with the form it should take. pgx's own message may
// quote the URL, password included, so only its last part is kept.
func checkDatabaseURL(raw string) error {
	if _, err := pgconn.ParseConfig(raw); err != nil {
		reason := err.Error()
		if i := strings.LastIndex(reason, ": "); i >= 0 {
			reason = reason[i+2:]
		}
		return fmt.Errorf("TRACKOPS_DATABASE_URL is not a PostgreSQL URL (%s); want the form %s", reason, DatabaseURLForm)
	}
	return nil
}

// loadScaleOut reads the scale-out settings, whose defaults depend on
// others (the direct URL on the database URL, replication on whether the
// broker is embedded).
func (c *Config) loadScaleOut(e *env) {
	c.DatabaseDirectURL = e.str("TRACKOPS_DATABASE_DIRECT_URL", "")
	defRF := 3
	if c.EmbeddedKafka() {
		defRF = 1
	}
	c.KafkaReplicationFactor = e.int("TRACKOPS_KAFKA_REPLICATION_FACTOR", defRF)
	defISR := 1
	switch {
	case c.KafkaReplicationFactor >= 3:
		defISR = 2
	case c.KafkaReplicationFactor < 1:
		defISR = 0 // the brokers' default, like the replication factor
	}
	c.KafkaMinInsyncReplicas = e.int("TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS", defISR)
	c.BootstrapAdminKey = e.str("TRACKOPS_BOOTSTRAP_ADMIN_KEY", "")
}

func (c Config) validateScaleOut() error {
	rf, isr := c.KafkaReplicationFactor, c.KafkaMinInsyncReplicas
	switch {
	case rf == 0 || rf < -1 || rf > 32767:
		return fmt.Errorf("TRACKOPS_KAFKA_REPLICATION_FACTOR=%d: want a number of replicas (1, 3, ...) or -1 for the brokers' default", rf)
	case c.EmbeddedKafka() && rf > 1:
		return fmt.Errorf("TRACKOPS_KAFKA_REPLICATION_FACTOR=%d: the embedded broker is a single node; set TRACKOPS_KAFKA_BROKERS to a cluster of at least %d brokers", rf, rf)
	case isr < 0:
		return fmt.Errorf("TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS=%d: want 0 (the brokers' default) or more", isr)
	case rf > 0 && isr > rf:
		return fmt.Errorf("TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS=%d is more than TRACKOPS_KAFKA_REPLICATION_FACTOR=%d: no write could ever be acknowledged", isr, rf)
	}
	return nil
}

// DirectDatabaseURL is the URL of session-bound work: the direct URL, or
// the database URL when none is set.
func (c Config) DirectDatabaseURL() string {
	if c.DatabaseDirectURL == "" {
		return c.DatabaseURL
	}
	return c.DatabaseDirectURL
}

// DatabasePooled reports whether TRACKOPS_DATABASE_URL goes through a
// transaction pooler: it does when a different direct URL is configured.
// Pools on it then use an exec mode without named prepared statements.
func (c Config) DatabasePooled() bool { return c.DirectDatabaseURL() != c.DatabaseURL }

// checkRedisURL accepts what cache.Open accepts: a redis:// or rediss://
// URL, redis+cluster://h1:p,h2:p, or a comma list of cluster nodes.
func checkRedisURL(raw string) error {
	if strings.HasPrefix(raw, "redis+cluster://") || (!strings.Contains(raw, "://") && strings.Contains(raw, ",")) {
		return nil
	}
	if _, err := redis.ParseURL(raw); err != nil {
		return fmt.Errorf("TRACKOPS_REDIS_URL=%q: %v; want redis://HOST:6379 (rediss:// for TLS), or redis+cluster://H1:P,H2:P for Redis Cluster",
			redactURL(raw), strings.TrimPrefix(err.Error(), "redis: "))
	}
	return nil
}

// redactURL hides a password in a URL that is quoted in a message.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw {
			return scheme + "://" + user + ":***@" + rest[at+1:]
		}
	}
	return raw
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// EmbeddedKafka reports whether the process should start its own broker.
func (c Config) EmbeddedKafka() bool { return len(c.KafkaBrokers) == 0 }

// Brokers returns the bootstrap brokers to dial: the configured ones, or the
// embedded broker's address.
func (c Config) Brokers() []string {
	if c.EmbeddedKafka() {
		return []string{c.EmbeddedKafkaAddr}
	}
	return c.KafkaBrokers
}

// slotNameRe is PostgreSQL's rule for replication slot names.
var slotNameRe = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

type env struct {
	getenv func(string) string
	errs   []error
}

// str returns NAME, or the contents of the file named by NAME_FILE.
func (e *env) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	if path := e.getenv(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s_FILE: %w", name, err))
			return def
		}
		return strings.TrimSpace(string(b))
	}
	return def
}

func (e *env) int(name string, def int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a whole number", name, v))
		return def
	}
	return n
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a duration such as 500ms or 2s", name, v))
		return def
	}
	return d
}

func (e *env) float(name string, def float64) float64 {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a number", name, v))
		return def
	}
	return f
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func defaultLogFormat() string {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return "text"
	}
	return "json"
}
