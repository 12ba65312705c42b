package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

// Database is PostgreSQL.
type Database struct {
	// URL is the libpq URL of ordinary queries (TRACKOPS_DATABASE_URL).
	URL string
	// DirectURL reaches PostgreSQL without a transaction pooler in
	// between. Everything that needs a session of its own uses it: schema
	// migrations (goose's advisory-lock session locker), the relay's
	// LISTEN, logical replication (CDC) and advisory-lock leases. Empty
	// means URL (read it with Direct); when it differs, URL is taken to go
	// through a transaction pooler such as PgBouncer (see Pooled).
	DirectURL string
	// ReadURL is a streaming replica of URL's database that takes read-only
	// queries (order and stock reads, lists, history, audit, journey); empty
	// sends them to the primary (TRACKOPS_DATABASE_READ_URL).
	ReadURL string
	// ReadMaxLag is the replica lag past which reads go to the primary until
	// the replica catches up (TRACKOPS_DATABASE_READ_MAX_LAG).
	ReadMaxLag time.Duration
}

// DatabaseURLForm is the shape TRACKOPS_DATABASE_URL takes, for messages.
const DatabaseURLForm = "postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=disable"

func (d *Database) load(e *env) {
	d.URL = e.str("TRACKOPS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/trackops?sslmode=disable")
	d.DirectURL = e.str("TRACKOPS_DATABASE_DIRECT_URL", "")
	d.loadReplica(e)
}

func (d Database) validate() []error {
	var errs []error
	if err := checkDatabaseURL("TRACKOPS_DATABASE_URL", d.URL); err != nil {
		errs = append(errs, err)
	}
	if d.DirectURL != "" {
		if err := checkDatabaseURL("TRACKOPS_DATABASE_DIRECT_URL", d.DirectURL); err != nil {
			errs = append(errs, err)
		}
	}
	return append(errs, d.validateReplica()...)
}

// Direct is the URL of session-bound work: the direct URL, or the database
// URL when none is set.
func (d Database) Direct() string {
	if d.DirectURL == "" {
		return d.URL
	}
	return d.DirectURL
}

// Pooled reports whether TRACKOPS_DATABASE_URL goes through a transaction
// pooler: it does when a different direct URL is configured. Pools on it
// then use an exec mode without named prepared statements.
func (d Database) Pooled() bool { return d.Direct() != d.URL }

// checkDatabaseURL parses the URL as pgx will, so a typo is reported before
// anything connects, with the form it should take. pgx's own message may
// quote the URL, password included, so only its last part is kept.
func checkDatabaseURL(variable, raw string) error {
	if _, err := pgconn.ParseConfig(raw); err != nil {
		reason := err.Error()
		if i := strings.LastIndex(reason, ": "); i >= 0 {
			reason = reason[i+2:]
		}
		return fmt.Errorf("%s is not a PostgreSQL URL (%s); want the form %s", variable, reason, DatabaseURLForm)
	}
	return nil
}

// Redis is the cache, sessions and rate-limit store.
type Redis struct {
	// URL is redis://HOST:PORT (rediss:// for TLS), or redis+cluster://H1:P,H2:P
	// or a comma list of nodes for Redis Cluster (TRACKOPS_REDIS_URL).
	URL string
	// NearCacheSize bounds the in-process near cache of order reads, kept
	// coherent by Redis client tracking; 0 turns it off
	// (TRACKOPS_REDIS_NEAR_CACHE_SIZE).
	NearCacheSize int
	// NearCacheTTL is the longest a near cache entry is served
	// (TRACKOPS_REDIS_NEAR_CACHE_TTL).
	NearCacheTTL time.Duration
}

func (r *Redis) load(e *env) {
	r.URL = e.str("TRACKOPS_REDIS_URL", "redis://127.0.0.1:6379")
	r.NearCacheSize = e.int("TRACKOPS_REDIS_NEAR_CACHE_SIZE", 10_000)
	r.NearCacheTTL = e.duration("TRACKOPS_REDIS_NEAR_CACHE_TTL", 10*time.Second)
}

// validate accepts what cache.Open accepts: a redis:// or rediss:// URL,
// redis+cluster://h1:p,h2:p, or a comma list of cluster nodes.
func (r Redis) validate() []error {
	var errs []error
	if r.NearCacheSize < 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_REDIS_NEAR_CACHE_SIZE=%d: want 0 (off) or a number of entries, such as 10000", r.NearCacheSize))
	}
	if r.NearCacheTTL < 100*time.Millisecond || r.NearCacheTTL > time.Hour {
		errs = append(errs, fmt.Errorf("TRACKOPS_REDIS_NEAR_CACHE_TTL=%s: want a duration from 100ms to 1h, such as 10s", r.NearCacheTTL))
	}
	raw := r.URL
	if strings.HasPrefix(raw, "redis+cluster://") || (!strings.Contains(raw, "://") && strings.Contains(raw, ",")) {
		return errs
	}
	if _, err := redis.ParseURL(raw); err != nil {
		errs = append(errs, fmt.Errorf("TRACKOPS_REDIS_URL=%q: %v; want redis://HOST:6379 (rediss:// for TLS), or redis+cluster://H1:P,H2:P for Redis Cluster",
			redactURL(raw), strings.TrimPrefix(err.Error(), "redis: ")))
	}
	return errs
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

// Kafka is the brokers, the embedded broker and the topics TrackOps creates.
type Kafka struct {
	// Brokers are the bootstrap brokers; none means the embedded broker.
	Brokers []string
	// EmbeddedAddr is where the embedded broker listens.
	EmbeddedAddr string
	// Partitions of the topics TrackOps creates.
	Partitions int32
	// Compression is the codec of produced record batches: none (the
	// Java producer's default, readable by every client), gzip, snappy, lz4
	// or zstd.
	Compression string
	// Durability is how the embedded broker makes acknowledged records
	// durable: fsync (every batch), group (group commit, the default) or
	// none (left to the operating system, Kafka's default).
	Durability string
	// FlushInterval bounds, under group commit, how long an acknowledged
	// record nobody waits for stays in the page cache only.
	FlushInterval time.Duration
	// ReplicationFactor of the topics TrackOps creates: 1 with the embedded
	// broker, 3 with a real cluster; -1 leaves it to the brokers'
	// default.replication.factor.
	ReplicationFactor int
	// MinInsyncReplicas is the min.insync.replicas of the topics TrackOps
	// creates (with acks=all, how many replicas must have a record before it
	// is acknowledged): 2 when the replication factor is 3 or more, else 1;
	// 0 leaves it to the brokers' default.
	MinInsyncReplicas int
	// Security is how clients reach the brokers: TLS and SASL.
	Security KafkaSecurity
}

// KafkaSecurity is TLS and SASL towards the brokers; the zero value is
// plaintext, as for the embedded broker. Files are read when the clients
// are built (internal/tlsconfig).
type KafkaSecurity struct {
	// TLS dials brokers over TLS (TRACKOPS_KAFKA_TLS).
	TLS bool
	// CAFile is a PEM CA bundle (default: the system roots).
	CAFile string
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile, KeyFile string
	// ServerName is the name verified, when not the broker host.
	ServerName string
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 ("" none).
	SASLMechanism string
	// SASLUsername and SASLPassword authenticate (give the password as _FILE).
	SASLUsername, SASLPassword string
}

// Compressions are the accepted values of TRACKOPS_KAFKA_COMPRESSION.
var Compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// SASLMechanisms are the accepted values of TRACKOPS_KAFKA_SASL_MECHANISM.
var SASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

func (k *Kafka) load(e *env) {
	k.Brokers = splitList(e.str("TRACKOPS_KAFKA_BROKERS", ""))
	k.EmbeddedAddr = e.str("TRACKOPS_EMBEDDED_KAFKA_ADDR", "127.0.0.1:9092")
	k.Partitions = int32(e.int("TRACKOPS_KAFKA_PARTITIONS", 3))
	k.Compression = strings.ToLower(e.str("TRACKOPS_KAFKA_COMPRESSION", "none"))
	k.Durability = strings.ToLower(e.str("TRACKOPS_KAFKA_DURABILITY", "group"))
	k.FlushInterval = e.duration("TRACKOPS_KAFKA_FLUSH_INTERVAL", 50*time.Millisecond)
	// The replication defaults depend on whether the broker is embedded.
	defRF := 3
	if k.Embedded() {
		defRF = 1
	}
	k.ReplicationFactor = e.int("TRACKOPS_KAFKA_REPLICATION_FACTOR", defRF)
	defISR := 1
	switch {
	case k.ReplicationFactor >= 3:
		defISR = 2
	case k.ReplicationFactor < 1:
		defISR = 0 // the brokers' default, like the replication factor
	}
	k.MinInsyncReplicas = e.int("TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS", defISR)
	s := &k.Security
	s.TLS = e.bool("TRACKOPS_KAFKA_TLS")
	s.CAFile = e.str("TRACKOPS_KAFKA_TLS_CA_FILE", "")
	s.CertFile = e.str("TRACKOPS_KAFKA_TLS_CERT_FILE", "")
	s.KeyFile = e.str("TRACKOPS_KAFKA_TLS_KEY_FILE", "")
	s.ServerName = e.str("TRACKOPS_KAFKA_TLS_SERVER_NAME", "")
	s.SASLMechanism = strings.ToUpper(e.str("TRACKOPS_KAFKA_SASL_MECHANISM", ""))
	s.SASLUsername = e.str("TRACKOPS_KAFKA_SASL_USERNAME", "")
	s.SASLPassword = e.str("TRACKOPS_KAFKA_SASL_PASSWORD", "")
}

func (k Kafka) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if k.Partitions < 1 {
		bad("TRACKOPS_KAFKA_PARTITIONS must be at least 1")
	}
	if !slices.Contains(Compressions, k.Compression) {
		bad("TRACKOPS_KAFKA_COMPRESSION=%q: want one of %s", k.Compression, strings.Join(Compressions, ", "))
	}
	switch k.Durability {
	case "fsync", "group", "none":
	default:
		bad("TRACKOPS_KAFKA_DURABILITY=%q: want fsync (every batch), group (group commit) or none", k.Durability)
	}
	if k.FlushInterval <= 0 {
		bad("TRACKOPS_KAFKA_FLUSH_INTERVAL must be positive, such as 50ms")
	}
	rf, isr := k.ReplicationFactor, k.MinInsyncReplicas
	switch {
	case rf == 0 || rf < -1 || rf > 32767:
		bad("TRACKOPS_KAFKA_REPLICATION_FACTOR=%d: want a number of replicas (1, 3, ...) or -1 for the brokers' default", rf)
	case k.Embedded() && rf > 1:
		bad("TRACKOPS_KAFKA_REPLICATION_FACTOR=%d: the embedded broker is a single node; set TRACKOPS_KAFKA_BROKERS to a cluster of at least %d brokers", rf, rf)
	case isr < 0:
		bad("TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS=%d: want 0 (the brokers' default) or more", isr)
	case rf > 0 && isr > rf:
		bad("TRACKOPS_KAFKA_MIN_INSYNC_REPLICAS=%d is more than TRACKOPS_KAFKA_REPLICATION_FACTOR=%d: no write could ever be acknowledged", isr, rf)
	}
	s := k.Security
	if !s.TLS && (s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.ServerName != "") {
		bad("TRACKOPS_KAFKA_TLS_* settings are given but TRACKOPS_KAFKA_TLS is not true")
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		bad("TRACKOPS_KAFKA_TLS_CERT_FILE and TRACKOPS_KAFKA_TLS_KEY_FILE must be set together")
	}
	switch {
	case s.SASLMechanism == "" && (s.SASLUsername != "" || s.SASLPassword != ""):
		bad("TRACKOPS_KAFKA_SASL_USERNAME/PASSWORD are set but TRACKOPS_KAFKA_SASL_MECHANISM is not (%s)", strings.Join(SASLMechanisms, ", "))
	case s.SASLMechanism != "" && !slices.Contains(SASLMechanisms, s.SASLMechanism):
		bad("TRACKOPS_KAFKA_SASL_MECHANISM=%q: want %s", s.SASLMechanism, strings.Join(SASLMechanisms, ", "))
	case s.SASLMechanism != "" && (s.SASLUsername == "" || s.SASLPassword == ""):
		bad("TRACKOPS_KAFKA_SASL_MECHANISM=%s needs TRACKOPS_KAFKA_SASL_USERNAME and TRACKOPS_KAFKA_SASL_PASSWORD (or _FILE)", s.SASLMechanism)
	}
	return errs
}

// Embedded reports whether the process should start its own broker.
func (k Kafka) Embedded() bool { return len(k.Brokers) == 0 }

// Bootstrap returns the brokers to dial: the configured ones, or the
// embedded broker's address.
func (k Kafka) Bootstrap() []string {
	if k.Embedded() {
		return []string{k.EmbeddedAddr}
	}
	return k.Brokers
}

// HTTP is the API's server.
type HTTP struct {
	// Addr serves the API, health, metrics and the console.
	Addr string
	// MaxBodyBytes limits request bodies.
	MaxBodyBytes int64
	// TLSCertFile and TLSKeyFile, when set, serve HTTPS (on the Kafka
	// Connect port too).
	TLSCertFile, TLSKeyFile string
}

func (h *HTTP) load(e *env) {
	h.Addr = e.str("TRACKOPS_HTTP_ADDR", "127.0.0.1:8080")
	h.MaxBodyBytes = int64(e.int("TRACKOPS_HTTP_MAX_BODY_BYTES", 1<<20))
	h.TLSCertFile = e.str("TRACKOPS_TLS_CERT_FILE", "")
	h.TLSKeyFile = e.str("TRACKOPS_TLS_KEY_FILE", "")
}

func (h HTTP) validate() []error {
	var errs []error
	if h.MaxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("TRACKOPS_HTTP_MAX_BODY_BYTES must be at least 1"))
	}
	if (h.TLSCertFile == "") != (h.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("TRACKOPS_TLS_CERT_FILE and TRACKOPS_TLS_KEY_FILE must be set together"))
	}
	return errs
}

// TLS reports whether the servers serve HTTPS.
func (h HTTP) TLS() bool { return h.TLSCertFile != "" }

// Relay is the outbox relay.
type Relay struct {
	// BatchSize is how many events one claim takes at most.
	BatchSize int
	// Workers are the batches one relay publishes at once.
	Workers int
	// PollInterval is the polling fallback when no NOTIFY arrives.
	PollInterval time.Duration
	// OutboxRetention is how long published outbox rows are kept.
	OutboxRetention time.Duration
}

func (r *Relay) load(e *env) {
	r.BatchSize = e.int("TRACKOPS_RELAY_BATCH_SIZE", 2000)
	r.Workers = e.int("TRACKOPS_RELAY_WORKERS", 4)
	r.PollInterval = e.duration("TRACKOPS_RELAY_POLL_INTERVAL", time.Second)
	r.OutboxRetention = e.duration("TRACKOPS_OUTBOX_RETENTION", 24*time.Hour)
}

func (r Relay) validate() []error {
	var errs []error
	if r.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("TRACKOPS_RELAY_BATCH_SIZE must be at least 1"))
	}
	if r.Workers < 1 {
		errs = append(errs, fmt.Errorf("TRACKOPS_RELAY_WORKERS must be at least 1"))
	}
	if r.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_RELAY_POLL_INTERVAL must be positive, such as 1s"))
	}
	if r.OutboxRetention <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_OUTBOX_RETENTION must be positive, such as 24h"))
	}
	return errs
}

// Consumer is how TrackOps' consumers retry and remember what they handled.
type Consumer struct {
	// RetryAttempts are the handling attempts of an event before it is
	// dead-lettered (1 = no retry); the back-off between them starts at
	// RetryBackoff and grows by RetryMultiplier up to RetryMaxBackoff (the
	// seed's: 3 attempts, 1 s, x2, at most 10 s).
	RetryAttempts   int
	RetryBackoff    time.Duration
	RetryMultiplier float64
	RetryMaxBackoff time.Duration
	// InboxRetention is how long processed event ids are remembered;
	// longer than Kafka's retention, so no event can be redelivered after
	// its inbox row is gone.
	InboxRetention time.Duration
}

func (c *Consumer) load(e *env) {
	c.RetryAttempts = e.int("TRACKOPS_CONSUMER_RETRY_ATTEMPTS", 3)
	c.RetryBackoff = e.duration("TRACKOPS_CONSUMER_RETRY_BACKOFF", time.Second)
	c.RetryMultiplier = e.float("TRACKOPS_CONSUMER_RETRY_MULTIPLIER", 2)
	c.RetryMaxBackoff = e.duration("TRACKOPS_CONSUMER_RETRY_MAX_BACKOFF", 10*time.Second)
	c.InboxRetention = e.duration("TRACKOPS_INBOX_RETENTION", 14*24*time.Hour)
}

func (c Consumer) validate() []error {
	var errs []error
	if c.RetryAttempts < 1 {
		errs = append(errs, fmt.Errorf("TRACKOPS_CONSUMER_RETRY_ATTEMPTS must be at least 1 (1 means no retry)"))
	}
	if c.RetryBackoff <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_CONSUMER_RETRY_BACKOFF must be positive, such as 1s"))
	}
	if c.RetryMultiplier < 1 {
		errs = append(errs, fmt.Errorf("TRACKOPS_CONSUMER_RETRY_MULTIPLIER must be at least 1"))
	}
	if c.RetryMaxBackoff <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_CONSUMER_RETRY_MAX_BACKOFF must be positive, such as 10s"))
	}
	if c.InboxRetention <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_INBOX_RETENTION must be positive, such as 336h"))
	}
	return errs
}

// DefaultCDCSlotName is the built-in connector's slot, the seed's.
const DefaultCDCSlotName = "debezium_orders"

// CDC is the built-in connector and the Kafka Connect REST API.
type CDC struct {
	// SlotName is the replication slot of the built-in orders connector
	// under the cdc strategy. Slot names are cluster-wide, so two TrackOps
	// databases on one PostgreSQL server (or parallel tests) need their own.
	SlotName string
	// ConnectAddr serves the Kafka Connect-compatible REST API.
	ConnectAddr string
}

// slotNameRe is PostgreSQL's rule for replication slot names.
var slotNameRe = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func (c *CDC) load(e *env) {
	c.SlotName = e.str("TRACKOPS_CDC_SLOT_NAME", DefaultCDCSlotName)
	c.ConnectAddr = e.str("TRACKOPS_CONNECT_ADDR", "127.0.0.1:8083")
}

func (c CDC) validate() []error {
	if !slotNameRe.MatchString(c.SlotName) {
		return []error{fmt.Errorf("TRACKOPS_CDC_SLOT_NAME=%q: use lower-case letters, digits and underscores (at most 63)", c.SlotName)}
	}
	return nil
}

// DLQ is the dead-letter monitor's alerts and the replay loop guard.
type DLQ struct {
	// AlertWebhook receives DLQ alerts as JSON POSTs; empty logs only.
	AlertWebhook string
	// AlertInterval is the least time between two alerts of one error
	// fingerprint.
	AlertInterval time.Duration
	// MaxReplays of one dead letter before the loop guard keeps it.
	MaxReplays int
}

func (d *DLQ) load(e *env) {
	d.AlertWebhook = e.str("TRACKOPS_DLQ_ALERT_WEBHOOK", "")
	d.AlertInterval = e.duration("TRACKOPS_DLQ_ALERT_INTERVAL", 5*time.Minute)
	d.MaxReplays = e.int("TRACKOPS_DLQ_MAX_REPLAYS", 3)
}

func (d DLQ) validate() []error {
	var errs []error
	if d.MaxReplays < 1 {
		errs = append(errs, fmt.Errorf("TRACKOPS_DLQ_MAX_REPLAYS must be at least 1"))
	}
	if d.AlertInterval <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_DLQ_ALERT_INTERVAL must be positive, such as 5m"))
	}
	if d.AlertWebhook != "" && !strings.HasPrefix(d.AlertWebhook, "http://") && !strings.HasPrefix(d.AlertWebhook, "https://") {
		errs = append(errs, fmt.Errorf("TRACKOPS_DLQ_ALERT_WEBHOOK: want an http:// or https:// URL"))
	}
	return errs
}

// Limits are the request budgets of the HTTP API (GCRA in Redis, shared by
// every instance).
type Limits struct {
	// Principal limits each authenticated user or API key.
	Principal Rate
	// IP limits each client address on routes without a principal (login,
	// health) and failed authentications.
	IP Rate
	// Login limits login attempts per username and client address.
	Login Rate
}

// Rate is a request budget: Count requests per Period, in bursts of up to
// Burst. The zero Rate is no limit.
type Rate struct {
	Count, Burst int
	Period       time.Duration
}

// Off reports whether the rate limits nothing.
func (r Rate) Off() bool { return r == Rate{} }

func (l *Limits) load(e *env) {
	for _, f := range []struct {
		name, def string
		dst       *Rate
	}{
		// Services placing orders in bulk use API keys: a generous
		// per-principal budget, a tight one for anonymous callers, and
		// five login attempts, then one every 12 s.
		{"TRACKOPS_RATE_LIMIT_PRINCIPAL", "1000/s,2000", &l.Principal},
		{"TRACKOPS_RATE_LIMIT_IP", "20/s,40", &l.IP},
		{"TRACKOPS_RATE_LIMIT_LOGIN", "5/m,5", &l.Login},
	} {
		v := e.str(f.name, f.def)
		r, err := ParseRate(v)
		if err != nil {
			e.bad("%s=%q: %v", f.name, v, err)
			r, _ = ParseRate(f.def)
		}
		*f.dst = r
	}
}

func (Limits) validate() []error { return nil } // ParseRate refuses what cannot work

// ParseRate reads "RATE/UNIT[,BURST]" with UNIT s, m or h ("100/s",
// "600/m,50"). The burst defaults to the rate. "0" or "off" is no limit.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "0" || s == "off" {
		return Rate{}, nil
	}
	spec, burstStr, hasBurst := strings.Cut(s, ",")
	rateStr, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, fmt.Errorf("want RATE/UNIT[,BURST], e.g. 50/s,100, or off")
	}
	count, err := strconv.Atoi(strings.TrimSpace(rateStr))
	if err != nil || count < 1 {
		return Rate{}, fmt.Errorf("rate must be a positive whole number")
	}
	var period time.Duration
	switch strings.TrimSpace(unit) {
	case "s", "sec", "second":
		period = time.Second
	case "m", "min", "minute":
		period = time.Minute
	case "h", "hour":
		period = time.Hour
	default:
		return Rate{}, fmt.Errorf("unit must be s, m or h")
	}
	burst := count
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(burstStr)); err != nil || burst < 1 {
			return Rate{}, fmt.Errorf("burst must be a positive whole number")
		}
	}
	return Rate{Count: count, Burst: burst, Period: period}, nil
}

// Auth is authentication's start-up settings.
type Auth struct {
	// BootstrapAdminKey, when set, is installed as an admin API key on start
	// if no admin key exists yet (usually given as
	// TRACKOPS_BOOTSTRAP_ADMIN_KEY_FILE, a mounted secret).
	BootstrapAdminKey string
}

func (a *Auth) load(e *env) { a.BootstrapAdminKey = e.str("TRACKOPS_BOOTSTRAP_ADMIN_KEY", "") }

// Sweeper is the pending-order sweeper.
type Sweeper struct {
	// PendingTimeout is the longest an order may stay PENDING before the
	// sweeper re-drives or cancels it (also trackops verify's bound).
	PendingTimeout time.Duration
}

func (s *Sweeper) load(e *env) {
	s.PendingTimeout = e.duration("TRACKOPS_SAGA_PENDING_TIMEOUT", 5*time.Minute)
}

func (s Sweeper) validate() []error {
	if s.PendingTimeout <= 0 {
		return []error{fmt.Errorf("TRACKOPS_SAGA_PENDING_TIMEOUT must be positive, such as 5m")}
	}
	return nil
}

// Log is the process's log handler.
type Log struct {
	// Format is text or json.
	Format string
	// Level is debug, info, warn or error.
	Level string
}

func (l *Log) load(e *env) {
	l.Format = strings.ToLower(e.str("TRACKOPS_LOG_FORMAT", defaultLogFormat()))
	l.Level = strings.ToLower(e.str("TRACKOPS_LOG_LEVEL", "info"))
}

func (l Log) validate() []error {
	var errs []error
	switch l.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("TRACKOPS_LOG_FORMAT=%q: want text or json", l.Format))
	}
	switch l.Level {
	case "debug", "info", "warn", "warning", "error":
	default:
		errs = append(errs, fmt.Errorf("TRACKOPS_LOG_LEVEL=%q: want debug, info, warn or error", l.Level))
	}
	return errs
}
