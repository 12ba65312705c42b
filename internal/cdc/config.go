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
	"encoding/hex"
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
	SnapshotAlways      = "always"
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
	// HstoreHandling is hstore.handling.mode: json (a JSON document as a
	// string) or map (a JSON object).
	HstoreHandling string
	// MoneyFractionDigits is money.fraction.digits, the scale of money.
	MoneyFractionDigits int
	// TopicDelimiter is topic.delimiter, between prefix, schema and table.
	TopicDelimiter string
	// SnapshotInclude is snapshot.include.collection.list: the captured
	// tables the snapshot reads (all when empty).
	SnapshotInclude []*regexp.Regexp

	KeySchemas   bool
	ValueSchemas bool

	// SkippedOperations are ops (c, u, d, t) not emitted (skipped.operations,
	// Debezium's default "t": no truncate events unless asked).
	SkippedOperations map[string]bool

	// ProvideTransactionMetadata is provide.transaction.metadata: BEGIN and
	// END records on TransactionTopic and a "transaction" block in every
	// streamed change event, as Debezium writes them.
	ProvideTransactionMetadata bool
	// TransactionTopic is where BEGIN and END records go:
	// <topic.prefix><topic.delimiter><topic.transaction>, then the transforms.
	TransactionTopic string

	// UnavailablePlaceholder is unavailable.value.placeholder: what an
	// unchanged TOASTed column the server did not send is written as.
	UnavailablePlaceholder []byte
	// OmitUnavailable (trackops.unavailable.value.mode=omit, opt-in) leaves
	// such columns out of "after" instead, for consumers that merge by key.
	OmitUnavailable bool

	// ColumnInclude and ColumnExclude are column.include.list and
	// column.exclude.list, matched against schema.table.column.
	ColumnInclude, ColumnExclude []*regexp.Regexp
	// MessageKeyColumns is message.key.columns: custom key columns per table.
	MessageKeyColumns []KeyColumns
	// ColumnMasks and ColumnTruncates are column.mask.with.N.chars and
	// column.truncate.to.N.chars.
	ColumnMasks, ColumnTruncates []ColumnLength

	// Transforms are applied in order to every record, as Kafka Connect
	// applies SMTs.
	Transforms []Transform

	// SignalSchema and SignalTable are signal.data.collection, the
	// signaling table (both empty when signals are off). The table is
	// captured like any included table, as Debezium adds it to the filters.
	SignalSchema, SignalTable string
	// SignalChannels are signal.enabled.channels (Debezium's default:
	// source).
	SignalChannels map[string]bool
	// IncrementalChunkSize is incremental.snapshot.chunk.size: rows an
	// incremental snapshot reads per chunk (Debezium's default 1024).
	IncrementalChunkSize int
	// WatermarkStrategy is incremental.snapshot.watermarking.strategy:
	// insert_insert (the default) or insert_delete.
	WatermarkStrategy string
	// ReadOnly is read.only: the connector never writes to the captured
	// database, so it refuses incremental snapshots (their watermarks are
	// rows written to the signaling table); blocking snapshots still run.
	ReadOnly bool
	// SignalKafkaTopic and SignalKafkaGroup are signal.kafka.topic
	// (default <topic.prefix>-signal) and signal.kafka.groupId (default
	// kafka-signal), for the kafka channel.
	SignalKafkaTopic, SignalKafkaGroup string
}

// Watermarking strategies (incremental.snapshot.watermarking.strategy).
const (
	WatermarkInsertInsert = "insert_insert"
	WatermarkInsertDelete = "insert_delete"
)

// KeyColumns names the columns that form the message key of the tables a
// pattern matches (one entry of message.key.columns).
type KeyColumns struct {
	Table   *regexp.Regexp
	Columns []string
}

// ColumnLength is one column.mask.with.N.chars or column.truncate.to.N.chars
// setting: N and the fully-qualified column patterns it applies to.
type ColumnLength struct {
	N       int
	Columns []*regexp.Regexp
}

// Transform is a Kafka Connect single message transform: RegexRouter or
// Debezium's outbox EventRouter, with an optional predicate.
type Transform interface {
	// Topic rewrites a topic name (the identity for transforms that do not
	// route by topic).
	Topic(topic string) string
}

// Predicate decides whether a transform applies to a record of a topic
// (Kafka Connect's predicates; TopicNameMatches is implemented).
type Predicate struct {
	re     *regexp.Regexp
	negate bool
}

// Matches reports whether the transform applies to topic.
func (p *Predicate) Matches(topic string) bool {
	if p == nil {
		return true
	}
	return p.re.MatchString(topic) != p.negate
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
	"unavailable.value.placeholder": true, "trackops.unavailable.value.mode": true,
	"column.include.list": true, "column.exclude.list": true, "column.whitelist": true, "column.blacklist": true,
	"message.key.columns": true, "predicates": true, "money.fraction.digits": true, "topic.delimiter": true,
	"snapshot.include.collection.list": true, "hstore.handling.mode": true,
	"provide.transaction.metadata": true, "topic.transaction": true,
	"signal.data.collection": true, "signal.enabled.channels": true, "incremental.snapshot.chunk.size": true,
	"incremental.snapshot.watermarking.strategy": true, "read.only": true,
	"signal.kafka.topic": true, "signal.kafka.groupId": true, "signal.kafka.bootstrap.servers": true,
	"signal.kafka.poll.timeout.ms": true,
}

// ignoredKeys are Debezium keys TrackOps accepts and has nothing to do with,
// with Debezium's default: a value other than the default is logged as a
// warning, because it would change nothing here.
var ignoredKeys = map[string]string{
	"tasks.max": "1", "max.batch.size": "2048", "max.queue.size": "8192", "max.queue.size.in.bytes": "0",
	"poll.interval.ms": "500", "snapshot.fetch.size": "10240", "snapshot.max.threads": "1",
	"snapshot.delay.ms": "0", "streaming.delay.ms": "0", "snapshot.lock.timeout.ms": "10000",
	"snapshot.locking.mode": "none", "snapshot.isolation.mode": "serializable", "snapshot.query.mode": "select_all",
	"include.schema.changes": "true", "schema.refresh.mode": "columns_diff", "slot.max.retries": "6",
	"slot.retry.delay.ms": "10000", "retriable.restart.connector.wait.ms": "10000", "errors.max.retries": "-1",
	"database.tcpKeepAlive": "true", "database.query.timeout.ms": "600000", "topic.cache.size": "10000",
	"topic.naming.strategy":       "io.debezium.schema.SchemaTopicNamingStrategy",
	"schema.name.adjustment.mode": "none", "field.name.adjustment.mode": "none", "custom.metric.tags": "",
	"event.processing.failure.handling.mode": "fail", "include.unknown.datatypes": "false",
	"xmin.fetch.interval.ms": "0",
	"flush.lsn.source":       "true", "heartbeat.action.query": "", "database.initial.statements": "", "slot.stream.params": "",
	"message.prefix.include.list": "", "message.prefix.exclude.list": "", "converters": "",
	"column.propagate.source.type": "", "datatype.propagate.source.type": "", "skip.messages.without.change": "false",
	"replica.identity.autoset.values": "", "snapshot.select.statement.overrides": "",
	"database.sslcert": "", "database.sslkey": "", "database.sslpassword": "",
	"database.sslrootcert": "", "errors.tolerance": "none", "errors.log.enable": "false",
	"errors.log.include.messages": "false", "header.converter": "org.apache.kafka.connect.storage.SimpleHeaderConverter",
	"notification.enabled.channels": "", "signal.poll.interval.ms": "5000", "incremental.snapshot.allow.schema.changes": "false",
}

const (
	jsonConverter    = "org.apache.kafka.connect.json.JsonConverter"
	regexRouter      = "org.apache.kafka.connect.transforms.RegexRouter"
	eventRouterClass = "io.debezium.transforms.outbox.EventRouter"
	topicNameMatches = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
)

// columnLengthKey matches column.mask.with.N.chars and column.truncate.to.N.chars.
var columnLengthKey = regexp.MustCompile(`^column\.(mask\.with|truncate\.to)\.(\d+)\.chars$`)

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
	case SnapshotInitial, SnapshotNoData, SnapshotWhenNeeded, SnapshotInitialOnly, SnapshotAlways:
		c.SnapshotMode = mode
	default:
		errs = append(errs, fmt.Sprintf("snapshot.mode=%q: want initial, always, no_data (never), when_needed or initial_only (configuration_based and custom take Java classes)", mode))
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
	c.HstoreHandling = oneOf("hstore.handling.mode", "json", "json", "map")
	c.MoneyFractionDigits = 2
	if v := get("money.fraction.digits", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			errs = append(errs, fmt.Sprintf("money.fraction.digits=%q: want a small non-negative number", v))
		}
		c.MoneyFractionDigits = n
	}
	c.TopicDelimiter = get("topic.delimiter", ".")
	c.SnapshotInclude = compileList(get("snapshot.include.collection.list", ""), "snapshot.include.collection.list", &errs)
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
	for _, op := range splitList(get("skipped.operations", "t")) {
		switch op {
		case "none":
		case "c", "u", "d", "t":
			c.SkippedOperations[op] = true
		default:
			errs = append(errs, fmt.Sprintf("skipped.operations: unknown operation %q (want c, u, d, t or none)", op))
		}
	}

	c.UnavailablePlaceholder = []byte("__debezium_unavailable_value")
	if ph, ok := raw["unavailable.value.placeholder"]; ok && ph != "" {
		if h, isHex := strings.CutPrefix(ph, "hex:"); isHex {
			b, err := hex.DecodeString(h)
			if err != nil {
				errs = append(errs, fmt.Sprintf("unavailable.value.placeholder=%q: the part after hex: must be hexadecimal octets", ph))
			}
			c.UnavailablePlaceholder = b
		} else {
			c.UnavailablePlaceholder = []byte(ph)
		}
	}
	c.OmitUnavailable = oneOf("trackops.unavailable.value.mode", "placeholder", "placeholder", "omit") == "omit"

	c.ProvideTransactionMetadata = boolKey("provide.transaction.metadata", false)

	// Signals and incremental snapshots (Debezium's CommonConnectorConfig
	// and RelationalDatabaseConnectorConfig defaults).
	if sig := get("signal.data.collection", ""); sig != "" {
		schema, table, ok := splitTableName(sig)
		if !ok {
			errs = append(errs, fmt.Sprintf("signal.data.collection=%q: want <schema>.<table>, e.g. public.debezium_signal", sig))
		}
		c.SignalSchema, c.SignalTable = schema, table
	}
	c.SignalChannels = map[string]bool{}
	for _, ch := range splitList(strings.ToLower(get("signal.enabled.channels", "source"))) {
		switch ch {
		case "source":
			c.SignalChannels[ch] = true
		case "kafka":
			if c.SignalTable == "" {
				warnings = append(warnings, "signal.enabled.channels: the kafka channel relays signals through the signaling table; set signal.data.collection to use it")
				continue
			}
			c.SignalChannels[ch] = true
		default:
			warnings = append(warnings, fmt.Sprintf("signal.enabled.channels: channel %q is not available in TrackOps (source, kafka and the REST API are); ignored", ch))
		}
	}
	c.SignalKafkaTopic = get("signal.kafka.topic", c.TopicPrefix+"-signal")
	c.SignalKafkaGroup = get("signal.kafka.groupId", "kafka-signal")
	c.IncrementalChunkSize = 1024
	if v := get("incremental.snapshot.chunk.size", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Sprintf("incremental.snapshot.chunk.size=%q: want a positive number of rows", v))
		}
		c.IncrementalChunkSize = n
	}
	c.WatermarkStrategy = oneOf("incremental.snapshot.watermarking.strategy", WatermarkInsertInsert, WatermarkInsertInsert, WatermarkInsertDelete)
	c.ReadOnly = boolKey("read.only", false)
	if c.ReadOnly && c.SignalTable != "" {
		warnings = append(warnings, "read.only=true: incremental snapshots write watermarks to the signaling table, so they are refused; blocking snapshots still run")
		if c.SignalChannels["kafka"] {
			delete(c.SignalChannels, "kafka")
			warnings = append(warnings, "read.only=true: the kafka signal channel relays signals into the signaling table, so it is off")
		}
	}

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
	c.ColumnInclude = compile("column.include.list", get("column.include.list", get("column.whitelist", "")))
	c.ColumnExclude = compile("column.exclude.list", get("column.exclude.list", get("column.blacklist", "")))
	if len(c.ColumnInclude) > 0 && len(c.ColumnExclude) > 0 {
		errs = append(errs, "column.include.list and column.exclude.list cannot both be set")
	}
	// message.key.columns: "<table regex>:<col>,<col>;<table regex>:<col>".
	for _, entry := range strings.Split(get("message.key.columns", ""), ";") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		tbl, cols, ok := strings.Cut(entry, ":")
		res := compile("message.key.columns", tbl)
		if !ok || len(res) != 1 || len(splitList(cols)) == 0 {
			errs = append(errs, fmt.Sprintf("message.key.columns: %q is not <schema>.<table>:<column>[,<column>...]", entry))
			continue
		}
		c.MessageKeyColumns = append(c.MessageKeyColumns, KeyColumns{Table: res[0], Columns: splitList(cols)})
	}
	lengthKeys := make([]string, 0)
	for k := range raw {
		lengthKeys = append(lengthKeys, k)
	}
	sort.Strings(lengthKeys)
	for _, k := range lengthKeys {
		m := columnLengthKey.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[2])
		if err != nil || n < 0 || (m[1] == "truncate.to" && n == 0) {
			errs = append(errs, fmt.Sprintf("%s: the length must be a positive number", k))
			continue
		}
		cl := ColumnLength{N: n, Columns: compile(k, raw[k])}
		if m[1] == "mask.with" {
			c.ColumnMasks = append(c.ColumnMasks, cl)
		} else {
			c.ColumnTruncates = append(c.ColumnTruncates, cl)
		}
	}

	known := map[string]bool{}
	predicates := map[string]*regexp.Regexp{}
	for _, name := range splitList(get("predicates", "")) {
		prefix := "predicates." + name + "."
		for k := range raw {
			if strings.HasPrefix(k, prefix) {
				known[k] = true
			}
		}
		switch typ := get(prefix+"type", ""); typ {
		case topicNameMatches:
			re, err := regexp.Compile("^(?:" + get(prefix+"pattern", "") + ")$")
			if err != nil || get(prefix+"pattern", "") == "" {
				errs = append(errs, fmt.Sprintf("predicates.%s.pattern: want a regular expression", name))
				continue
			}
			predicates[name] = re
		default:
			errs = append(errs, fmt.Sprintf("predicates.%s.type=%q: TrackOps supports only %s", name, typ, topicNameMatches))
		}
	}
	for _, alias := range splitList(get("transforms", "")) {
		prefix := "transforms." + alias + "."
		for k := range raw {
			if strings.HasPrefix(k, prefix) {
				known[k] = true
			}
		}
		var pred *Predicate
		if pn := get(prefix+"predicate", ""); pn != "" {
			re, ok := predicates[pn]
			if !ok {
				errs = append(errs, fmt.Sprintf("transforms.%s.predicate=%q: no such predicate in predicates", alias, pn))
				continue
			}
			negate, err := strconv.ParseBool(get(prefix+"negate", "false"))
			if err != nil {
				errs = append(errs, fmt.Sprintf("transforms.%s.negate: want true or false", alias))
			}
			pred = &Predicate{re: re, negate: negate}
		}
		typ := get(prefix+"type", "")
		switch typ {
		case regexRouter:
			rr, err := NewRegexRouter(get(prefix+"regex", ""), raw[prefix+"replacement"])
			if err != nil {
				errs = append(errs, fmt.Sprintf("transforms.%s: %v", alias, err))
				continue
			}
			rr.pred = pred
			c.Transforms = append(c.Transforms, rr)
		case eventRouterClass:
			er, ws, err := newEventRouter(alias, prefix, get, raw)
			warnings = append(warnings, ws...)
			if err != nil {
				errs = append(errs, fmt.Sprintf("transforms.%s: %v", alias, err))
				continue
			}
			er.pred = pred
			c.Transforms = append(c.Transforms, er)
		case "":
			errs = append(errs, fmt.Sprintf("transforms.%s.type is required", alias))
		default:
			errs = append(errs, fmt.Sprintf("transforms.%s.type=%q: TrackOps supports %s and %s", alias, typ, regexRouter, eventRouterClass))
		}
	}

	c.TransactionTopic = routeTopic(&c, c.TopicPrefix+c.TopicDelimiter+get("topic.transaction", "transaction"))

	var unknown, ignored []string
	for k, v := range raw {
		if def, ok := ignoredKeys[k]; ok {
			if strings.TrimSpace(v) != def {
				ignored = append(ignored, k)
			}
			continue
		}
		if !knownKeys[k] && !known[k] && !columnLengthKey.MatchString(k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	sort.Strings(ignored)
	for _, k := range ignored {
		warnings = append(warnings, fmt.Sprintf("%s=%q has no effect in TrackOps (see docs/cdc.md); ignored", k, raw[k]))
	}
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

func compileList(list, key string, errs *[]string) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, p := range splitList(list) {
		re, err := regexp.Compile("^(?:" + p + ")$")
		if err != nil {
			*errs = append(*errs, fmt.Sprintf("%s: %q is not a regular expression: %v", key, p, err))
			continue
		}
		out = append(out, re)
	}
	return out
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
// The signaling table is always included, as Debezium adds
// signal.data.collection to its table filter.
func (c Config) captures(schema, table string) bool {
	if strings.HasPrefix(schema, "pg_") || schema == "information_schema" {
		return false
	}
	if c.isSignalTable(schema, table) {
		return true
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

// isSignalTable reports whether schema.table is signal.data.collection.
func (c Config) isSignalTable(schema, table string) bool {
	return c.SignalTable != "" && schema == c.SignalSchema && table == c.SignalTable
}

// splitTableName splits a PostgreSQL <schema>.<table> name; either part
// may be double-quoted (with "" for a quote inside).
func splitTableName(s string) (schema, table string, ok bool) {
	parts := make([]string, 0, 2)
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' && quoted && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			quoted = !quoted
		case ch == '.' && !quoted:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	parts = append(parts, cur.String())
	if quoted || len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
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
	pred     *Predicate
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

// Topic applies the route (when its predicate, if any, matches topic).
func (r *RegexRouter) Topic(topic string) string {
	if !r.pred.Matches(topic) {
		return topic
	}
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
