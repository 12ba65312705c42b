// Package cdc is TrackOps' built-in change data capture: a PostgreSQL
// logical-replication (pgoutput) source that writes Debezium-compatible change
// events to Kafka, configured with Debezium's PostgreSQL connector keys and
// managed through a Kafka Connect-compatible REST API (package cdc/connect).
//
// Delivery is at-least-once: the replication slot is only confirmed up to the
// end of transactions whose every event Kafka has acknowledged. See
// docs/cdc.md for the configuration keys, encodings and guarantees.
package cdc

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ConnectorClass is the Debezium connector class TrackOps implements.
const ConnectorClass = "io.debezium.connector.postgresql.PostgresConnector"

// Snapshot modes (snapshot.mode).
const (
	SnapshotInitial     = "initial"
	SnapshotNoData      = "no_data"
	SnapshotWhenNeeded  = "when_needed"
	SnapshotInitialOnly = "initial_only"
)

// Publication auto-create modes (publication.autocreate.mode).
const (
	PublicationAllTables = "all_tables"
	PublicationFiltered  = "filtered"
	PublicationDisabled  = "disabled"
)

// Decimal handling modes (decimal.handling.mode).
const (
	DecimalPrecise = "precise"
	DecimalString  = "string"
	DecimalDouble  = "double"
)

// Config is a connector configuration parsed from Debezium's keys.
type Config struct {
	// Name is the connector's name (Kafka Connect's "name").
	Name string
	// Raw is the configuration as given, for the REST API to echo back.
	Raw map[string]string

	Host     string
	Port     int
	User     string
	Password string
	DBName   string
	SSLMode  string

	// TopicPrefix is topic.prefix (or the legacy database.server.name).
	TopicPrefix string

	TableInclude  []*regexp.Regexp
	TableExclude  []*regexp.Regexp
	SchemaInclude []*regexp.Regexp
	SchemaExclude []*regexp.Regexp

	SlotName              string
	PublicationName       string
	PublicationAutocreate string
	SlotDropOnStop        bool
	SnapshotMode          string

	HeartbeatInterval    time.Duration
	HeartbeatTopicPrefix string
	// StatusInterval is how often the slot position is reported to the
	// server (status.update.interval.ms).
	StatusInterval time.Duration

	TombstonesOnDelete bool
	DecimalHandling    string
	// BinaryHandling is binary.handling.mode: bytes (base64 in JSON), base64, base64-url-safe or hex.
	BinaryHandling string
	// IntervalHandling is interval.handling.mode: numeric (micros) or string (ISO-8601).
	IntervalHandling string
	// TimePrecisionAdaptive is true for time.precision.mode=adaptive (the
	// default), false for adaptive_time_microseconds (time always micros).
	TimePrecisionMode string

	KeySchemas   bool
	ValueSchemas bool

	// SkippedOperations are ops (c, u, d, t) not emitted (skipped.operations).
	SkippedOperations map[string]bool

	// ProvideTransactionMetadata is provide.transaction.metadata: BEGIN and
	// END records on TransactionTopic and a "transaction" block in every
	// streamed change event, as Debezium writes them.
	ProvideTransactionMetadata bool
	// TransactionTopic is where BEGIN and END records go:
	// <topic.prefix>.<topic.transaction>, then the transforms.
	TransactionTopic string

	// Transforms are applied in order to every record's topic.
	Transforms []Transform
}

// Transform rewrites a record's topic, like a Kafka Connect SMT.
type Transform interface {
	Topic(topic string) string
}

// knownKeys are accepted without a warning, even when TrackOps has nothing to
// do with them (they configure Kafka Connect or Debezium internals).
var knownKeys = map[string]bool{
	"name": true, "connector.class": true, "tasks.max": true,
	"database.hostname": true, "database.port": true, "database.user": true, "database.password": true,
	"database.dbname": true, "database.sslmode": true, "database.server.name": true, "topic.prefix": true,
	"table.include.list": true, "table.exclude.list": true, "table.whitelist": true, "table.blacklist": true,
	"schema.include.list": true, "schema.exclude.list": true,
	"plugin.name": true, "slot.name": true, "publication.name": true, "publication.autocreate.mode": true,
	"slot.drop.on.stop": true, "snapshot.mode": true, "heartbeat.interval.ms": true, "topic.heartbeat.prefix": true,
	"heartbeat.topics.prefix": true, "tombstones.on.delete": true, "decimal.handling.mode": true,
	"binary.handling.mode": true, "interval.handling.mode": true, "time.precision.mode": true,
	"key.converter": true, "value.converter": true, "key.converter.schemas.enable": true,
	"value.converter.schemas.enable": true, "transforms": true, "skipped.operations": true,
	"status.update.interval.ms": true, "max.batch.size": true, "max.queue.size": true, "poll.interval.ms": true,
	"include.schema.changes": true, "errors.tolerance": true, "errors.log.enable": true,
	"errors.log.include.messages": true, "slot.max.retries": true, "slot.retry.delay.ms": true,
	"snapshot.fetch.size": true, "snapshot.isolation.mode": true, "topic.creation.enable": true,
	"topic.creation.default.replication.factor": true, "topic.creation.default.partitions": true,
	"provide.transaction.metadata": true, "topic.transaction": true,
}

var (
	jsonConverter = "org.apache.kafka.connect.json.JsonConverter"
	regexRouter   = "org.apache.kafka.connect.transforms.RegexRouter"
)

// ParseConfig turns Debezium connector keys into a Config. Unknown keys and
// settings TrackOps accepts but ignores come back as warnings; values that
// cannot work are an error naming the key.
func ParseConfig(name string, raw map[string]string) (Config, []string, error) {
	var warnings, errs []string
	get := func(k, def string) string {
		if v, ok := raw[k]; ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	boolKey := func(k string, def bool) bool {
		v := get(k, "")
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: want true or false", k, v))
			return def
		}
		return b
	}
	msKey := func(k string, def time.Duration) time.Duration {
		v := get(k, "")
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Sprintf("%s=%q: want a non-negative number of milliseconds", k, v))
			return def
		}
		return time.Duration(n) * time.Millisecond
	}
	oneOf := func(k, def string, allowed ...string) string {
		v := strings.ToLower(get(k, def))
		for _, a := range allowed {
			if v == a {
				return v
			}
		}
		errs = append(errs, fmt.Sprintf("%s=%q: want one of %s", k, v, strings.Join(allowed, ", ")))
		return def
	}

	c := Config{Name: name, Raw: raw}
	if n := get("name", ""); n != "" && name == "" {
		c.Name = n
	}
	if cls := get("connector.class", ConnectorClass); cls != ConnectorClass && cls != "PostgresConnector" && cls != "io.debezium.connector.postgresql.PostgresConnector" {
		errs = append(errs, fmt.Sprintf("connector.class=%q: TrackOps implements only %s", cls, ConnectorClass))
	}
	c.Host = get("database.hostname", "")
	if c.Host == "" {
		errs = append(errs, "database.hostname is required")
	}
	port, err := strconv.Atoi(get("database.port", "5432"))
	if err != nil || port <= 0 || port > 65535 {
		errs = append(errs, fmt.Sprintf("database.port=%q: want a TCP port", get("database.port", "")))
	}
	c.Port = port
	c.User = get("database.user", "")
	if c.User == "" {
		errs = append(errs, "database.user is required")
	}
	c.Password = raw["database.password"]
	c.DBName = get("database.dbname", "")
	if c.DBName == "" {
		errs = append(errs, "database.dbname is required")
	}
	c.SSLMode = oneOf("database.sslmode", "prefer", "disable", "allow", "prefer", "require", "verify-ca", "verify-full")

	c.TopicPrefix = get("topic.prefix", get("database.server.name", ""))
	if c.TopicPrefix == "" {
		errs = append(errs, "topic.prefix is required (database.server.name is accepted as its legacy name)")
	}
	if p := get("plugin.name", "pgoutput"); p != "pgoutput" {
		errs = append(errs, fmt.Sprintf("plugin.name=%q: TrackOps decodes only pgoutput, PostgreSQL's built-in plugin; set plugin.name=pgoutput", p))
	}
	c.SlotName = get("slot.name", "debezium")
	if !validIdentifier(c.SlotName) {
		errs = append(errs, fmt.Sprintf("slot.name=%q: use lower-case letters, digits and underscores (at most 63)", c.SlotName))
	}
	c.PublicationName = get("publication.name", "dbz_publication")
	if !validIdentifier(c.PublicationName) {
		errs = append(errs, fmt.Sprintf("publication.name=%q: use lower-case letters, digits and underscores (at most 63)", c.PublicationName))
	}
	c.PublicationAutocreate = oneOf("publication.autocreate.mode", PublicationAllTables, PublicationAllTables, PublicationFiltered, PublicationDisabled)
	c.SlotDropOnStop = boolKey("slot.drop.on.stop", false)
	mode := strings.ToLower(get("snapshot.mode", SnapshotInitial))
	if mode == "never" {
		mode = SnapshotNoData
	}
	switch mode {
	case SnapshotInitial, SnapshotNoData, SnapshotWhenNeeded, SnapshotInitialOnly:
		c.SnapshotMode = mode
	default:
		errs = append(errs, fmt.Sprintf("snapshot.mode=%q: want initial, no_data (never), when_needed or initial_only", mode))
	}
	c.HeartbeatInterval = msKey("heartbeat.interval.ms", 0)
	c.HeartbeatTopicPrefix = get("topic.heartbeat.prefix", get("heartbeat.topics.prefix", "__debezium-heartbeat"))
	c.StatusInterval = msKey("status.update.interval.ms", time.Second)
	if c.StatusInterval <= 0 {
		c.StatusInterval = time.Second
	}
	c.TombstonesOnDelete = boolKey("tombstones.on.delete", true)
	c.DecimalHandling = oneOf("decimal.handling.mode", DecimalPrecise, DecimalPrecise, DecimalString, DecimalDouble)
	c.BinaryHandling = oneOf("binary.handling.mode", "bytes", "bytes", "base64", "base64-url-safe", "hex")
	c.IntervalHandling = oneOf("interval.handling.mode", "numeric", "numeric", "string")
	c.TimePrecisionMode = oneOf("time.precision.mode", "adaptive", "adaptive", "adaptive_time_microseconds", "connect")
	if c.TimePrecisionMode == "connect" {
		warnings = append(warnings, "time.precision.mode=connect is treated as adaptive_time_microseconds")
		c.TimePrecisionMode = "adaptive_time_microseconds"
	}
	for _, k := range []string{"key.converter", "value.converter"} {
		if v := get(k, jsonConverter); v != jsonConverter {
			errs = append(errs, fmt.Sprintf("%s=%q: TrackOps writes only %s", k, v, jsonConverter))
		}
	}
	// Kafka Connect's JsonConverter enables schemas by default; Debezium
	// deployments (and the seed) switch them off. TrackOps defaults to off.
	c.KeySchemas = boolKey("key.converter.schemas.enable", false)
	c.ValueSchemas = boolKey("value.converter.schemas.enable", false)

	c.SkippedOperations = map[string]bool{}
	for _, op := range splitList(get("skipped.operations", "none")) {
		switch op {
		case "none":
		case "c", "u", "d", "t":
			c.SkippedOperations[op] = true
		default:
			errs = append(errs, fmt.Sprintf("skipped.operations: unknown operation %q (want c, u, d, t or none)", op))
		}
	}

	c.ProvideTransactionMetadata = boolKey("provide.transaction.metadata", false)

	compile := func(key string, list string) []*regexp.Regexp {
		var out []*regexp.Regexp
		for _, p := range splitList(list) {
			re, err := regexp.Compile("^(?:" + p + ")$")
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not a regular expression: %v", key, p, err))
				continue
			}
			out = append(out, re)
		}
		return out
	}
	c.TableInclude = compile("table.include.list", get("table.include.list", get("table.whitelist", "")))
	c.TableExclude = compile("table.exclude.list", get("table.exclude.list", get("table.blacklist", "")))
	c.SchemaInclude = compile("schema.include.list", get("schema.include.list", ""))
	c.SchemaExclude = compile("schema.exclude.list", get("schema.exclude.list", ""))
	if len(c.TableInclude) > 0 && len(c.TableExclude) > 0 {
		errs = append(errs, "table.include.list and table.exclude.list cannot both be set")
	}

	known := map[string]bool{}
	for _, alias := range splitList(get("transforms", "")) {
		prefix := "transforms." + alias + "."
		for k := range raw {
			if strings.HasPrefix(k, prefix) {
				known[k] = true
			}
		}
		typ := get(prefix+"type", "")
		switch typ {
		case regexRouter:
			rr, err := NewRegexRouter(get(prefix+"regex", ""), raw[prefix+"replacement"])
			if err != nil {
				errs = append(errs, fmt.Sprintf("transforms.%s: %v", alias, err))
				continue
			}
			c.Transforms = append(c.Transforms, rr)
		case "":
			errs = append(errs, fmt.Sprintf("transforms.%s.type is required", alias))
		default:
			errs = append(errs, fmt.Sprintf("transforms.%s.type=%q: TrackOps supports only %s", alias, typ, regexRouter))
		}
	}

	c.TransactionTopic = routeTopic(&c, c.TopicPrefix+"."+get("topic.transaction", "transaction"))

	var unknown []string
	for k := range raw {
		if !knownKeys[k] && !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		warnings = append(warnings, fmt.Sprintf("unknown configuration key %q ignored", k))
	}
	if len(errs) > 0 {
		return Config{}, warnings, &ConfigError{Problems: errs}
	}
	return c, warnings, nil
}

// ConfigError lists every problem found in a connector configuration.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "invalid connector configuration: " + strings.Join(e.Problems, "; ")
}

// IsConfigError reports whether err is a configuration problem (a 400 for
// the REST API), not a runtime failure.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// ConnString is the libpq keyword/value connection string for the captured
// database; replication adds replication=database.
func (c Config) ConnString(replication bool) string {
	kv := []string{
		"host=" + quoteConnValue(c.Host),
		"port=" + strconv.Itoa(c.Port),
		"user=" + quoteConnValue(c.User),
		"dbname=" + quoteConnValue(c.DBName),
		"sslmode=" + quoteConnValue(c.SSLMode),
		"application_name=" + quoteConnValue("trackops-cdc-"+c.Name),
	}
	if c.Password != "" {
		kv = append(kv, "password="+quoteConnValue(c.Password))
	}
	if replication {
		kv = append(kv, "replication=database")
	}
	return strings.Join(kv, " ")
}

func quoteConnValue(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `'`, `\'`)
	return "'" + v + "'"
}

// DatabaseKeys returns Debezium's database.* keys for a libpq URL, e.g. to
// point a connector at TrackOps' own database.
func DatabaseKeys(databaseURL string) (map[string]string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("database url: want postgres://user:password@host:port/dbname")
	}
	host := u.Hostname()
	if host == "" {
		host = "127.0.0.1"
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	out := map[string]string{
		"database.hostname": host,
		"database.port":     port,
		"database.dbname":   strings.TrimPrefix(u.Path, "/"),
	}
	if u.User != nil {
		out["database.user"] = u.User.Username()
		if p, ok := u.User.Password(); ok {
			out["database.password"] = p
		}
	}
	if ssl := u.Query().Get("sslmode"); ssl != "" {
		out["database.sslmode"] = ssl
	}
	return out, nil
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

var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func validIdentifier(s string) bool { return identRe.MatchString(s) }

// captures reports whether the connector's filters include schema.table.
func (c Config) captures(schema, table string) bool {
	if strings.HasPrefix(schema, "pg_") || schema == "information_schema" {
		return false
	}
	full := schema + "." + table
	if len(c.SchemaInclude) > 0 && !anyMatch(c.SchemaInclude, schema) {
		return false
	}
	if anyMatch(c.SchemaExclude, schema) {
		return false
	}
	if len(c.TableInclude) > 0 {
		return anyMatch(c.TableInclude, full)
	}
	return !anyMatch(c.TableExclude, full)
}

func anyMatch(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// RegexRouter is Kafka Connect's org.apache.kafka.connect.transforms.RegexRouter:
// a topic the regex matches entirely is replaced by the replacement, whose
// $1-style group references are Java's.
type RegexRouter struct {
	re       *regexp.Regexp
	template string
}

// NewRegexRouter compiles a RegexRouter.
func NewRegexRouter(regex, replacement string) (*RegexRouter, error) {
	if regex == "" {
		return nil, errors.New("regex is required")
	}
	re, err := regexp.Compile("^(?:" + regex + ")$")
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", regex, err)
	}
	return &RegexRouter{re: re, template: javaReplacement(replacement)}, nil
}

// Topic applies the route.
func (r *RegexRouter) Topic(topic string) string {
	m := r.re.FindStringSubmatchIndex(topic)
	if m == nil {
		return topic
	}
	return string(r.re.ExpandString(nil, r.template, topic, m))
}

// javaReplacement turns a java.util.regex replacement ("$1", "${name}",
// "\$" for a literal dollar) into a Go Expand template.
func javaReplacement(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && i+1 < len(s):
			i++
			if s[i] == '$' {
				b.WriteString("$$")
			} else {
				b.WriteByte(s[i])
			}
		case ch == '$' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			b.WriteString("${" + s[i+1:j] + "}")
			i = j - 1
		case ch == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				b.WriteString("$$")
				continue
			}
			b.WriteString(s[i : i+end+1])
			i += end
		case ch == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}
