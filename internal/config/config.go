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
	DatabaseURL        string
	RedisURL           string
	KafkaBrokers       []string
	EmbeddedKafkaAddr  string
	DataDir            string
	HTTPAddr           string
	ConnectAddr        string
	EventStrategy      string
	LogFormat          string
	LogLevel           string
	KafkaPartitions    int32
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
	if err := errors.Join(e.errs...); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Validate reports the first setting that cannot work, phrased so the
// operator knows what to change.
func (c Config) Validate() error {
	switch c.EventStrategy {
	case StrategyOutbox, StrategyCDC:
	default:
		return fmt.Errorf("TRACKOPS_EVENT_STRATEGY=%q: want outbox or cdc (debezium is an alias of cdc)", c.EventStrategy)
	}
	if !slotNameRe.MatchString(c.CDCSlotName) {
		return fmt.Errorf("TRACKOPS_CDC_SLOT_NAME=%q: use lower-case letters, digits and underscores (at most 63)", c.CDCSlotName)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("TRACKOPS_LOG_FORMAT=%q: want text or json", c.LogFormat)
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
		return fmt.Errorf("TRACKOPS_KAFKA_PARTITIONS must be at least 1")
	}
	if c.RelayBatchSize < 1 {
		return fmt.Errorf("TRACKOPS_RELAY_BATCH_SIZE must be at least 1")
	}
	if c.ConsumerRetryAttempts < 1 {
		return fmt.Errorf("TRACKOPS_CONSUMER_RETRY_ATTEMPTS must be at least 1 (1 means no retry)")
	}
	if c.ConsumerRetryMultiplier < 1 {
		return fmt.Errorf("TRACKOPS_CONSUMER_RETRY_MULTIPLIER must be at least 1")
	}
	if c.DLQMaxReplays < 1 {
		return fmt.Errorf("TRACKOPS_DLQ_MAX_REPLAYS must be at least 1")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("TRACKOPS_TLS_CERT_FILE and TRACKOPS_TLS_KEY_FILE must be set together")
	}
	return nil
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
