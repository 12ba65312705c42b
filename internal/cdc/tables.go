package cdc

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// table is a captured table: its columns in the order rows arrive, its key
// and its pre-rendered topic, schemas and source block pieces.
type table struct {
	schema, name string
	columns      []*column
	// key are indexes into columns of the primary key, in key order; empty
	// for a table without one (its records have a null key, as in Debezium).
	key             []int
	replicaIdentity byte // d(efault), f(ull), i(ndex), n(othing)
	topic           string
	keySchema       []byte
	envelopeSchema  []byte
	// sourceHead and sourceTail frame the per-event parts of "source".
	sourceHead []byte
	sourceMid  []byte
	sourceTail []byte
	counters   map[string]prometheus.Counter
	// outbox is set when an outbox EventRouter transforms this table's
	// records.
	outbox *outboxPlan
	// signal marks the signaling table (signal.data.collection): its
	// inserts are signals to the connector.
	signal bool
}

// columnMeta is what the catalog says about a column.
type columnMeta struct {
	oid      uint32
	typmod   int32
	notNull  bool
	pkPos    int
	typeName string
	elemOID  uint32
	// enumLabels are the labels of an enum type (or of an enum array's
	// element type), comma-separated in sort order; empty otherwise.
	enumLabels string
	isEnum     bool
}

type tableMeta struct {
	columns         map[string]columnMeta
	order           []string
	replicaIdentity byte
}

// loadTableMeta reads a table's columns (domains resolved to their base
// type), primary key and replica identity from the catalog.
func loadTableMeta(ctx context.Context, conn *pgx.Conn, schema, name string) (tableMeta, error) {
	rows, err := conn.Query(ctx, `
SELECT a.attname,
       bt.oid,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       a.attnotnull,
       COALESCE((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) WHERE k.attnum = a.attnum), 0)::int,
       bt.typname,
       CASE WHEN bt.typcategory = 'A' THEN bt.typelem ELSE 0 END,
       c.relreplident::text,
       et.typtype = 'e',
       COALESCE((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = et.oid), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END
JOIN pg_type et ON et.oid = CASE WHEN bt.typcategory = 'A' THEN bt.typelem ELSE bt.oid END
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, schema, name)
	if err != nil {
		return tableMeta{}, fmt.Errorf("read columns of %s.%s: %w", schema, name, err)
	}
	defer rows.Close()
	m := tableMeta{columns: map[string]columnMeta{}}
	for rows.Next() {
		var (
			col     string
			cm      columnMeta
			oid     uint32
			elem    uint32
			replidt string
		)
		if err := rows.Scan(&col, &oid, &cm.typmod, &cm.notNull, &cm.pkPos, &cm.typeName, &elem, &replidt, &cm.isEnum, &cm.enumLabels); err != nil {
			return tableMeta{}, fmt.Errorf("read columns of %s.%s: %w", schema, name, err)
		}
		cm.oid, cm.elemOID = oid, elem
		if replidt != "" {
			m.replicaIdentity = replidt[0]
		}
		m.columns[col] = cm
		m.order = append(m.order, col)
	}
	if err := rows.Err(); err != nil {
		return tableMeta{}, fmt.Errorf("read columns of %s.%s: %w", schema, name, err)
	}
	if len(m.order) == 0 {
		return tableMeta{}, fmt.Errorf("table %s.%s not found", schema, name)
	}
	return m, nil
}

// newTable builds a table whose rows carry the named columns in that order
// and count their events in m under the connector's name.
func newTable(cfg *Config, m *Metrics, connector, schema, name string, colNames []string, meta tableMeta, fallback map[string]columnMeta) *table {
	t := &table{schema: schema, name: name, replicaIdentity: meta.replicaIdentity, signal: cfg.isSignalTable(schema, name)}
	type keyed struct{ pos, idx int }
	var keys []keyed
	for i, n := range colNames {
		cm, ok := meta.columns[n]
		if !ok {
			cm = fallback[n]
		}
		c := newColumn(n, cm.oid, cm.typmod, cm.typeName, cm.elemOID, !cm.notNull, cfg)
		if cm.isEnum {
			target := c
			if c.kind == kindArray {
				target = c.elem
			}
			target.kind, target.enumLabels = kindEnum, cm.enumLabels
		}
		cfg.applyColumnOptions(schema, name, c)
		t.columns = append(t.columns, c)
		if cm.pkPos > 0 {
			keys = append(keys, keyed{cm.pkPos, i})
		}
	}
	for p := 1; p <= len(keys); p++ {
		for _, k := range keys {
			if k.pos == p {
				t.key = append(t.key, k.idx)
			}
		}
	}
	// message.key.columns replaces the primary key (in table column order,
	// as Debezium's key mapper selects the columns).
	for _, kc := range cfg.MessageKeyColumns {
		if !kc.Table.MatchString(schema + "." + name) {
			continue
		}
		t.key = t.key[:0]
		for i, c := range t.columns {
			for _, want := range kc.Columns {
				if c.name == want {
					t.key = append(t.key, i)
				}
			}
		}
		break
	}
	raw := cfg.TopicPrefix + cfg.TopicDelimiter + schema + cfg.TopicDelimiter + name
	t.topic = raw
	for i, tr := range cfg.Transforms {
		if er, ok := tr.(*EventRouter); ok {
			if er.pred.Matches(t.topic) {
				t.outbox = t.bindOutbox(er, cfg.Transforms[i+1:])
				break
			}
			continue
		}
		t.topic = tr.Topic(t.topic)
	}
	t.sourceHead = []byte(`{"version":"` + DebeziumVersion + `","connector":"postgresql","name":` + string(appendJSONString(nil, cfg.TopicPrefix)) + `,"ts_ms":`)
	t.sourceMid = []byte(`,"db":` + string(appendJSONString(nil, cfg.DBName)))
	t.sourceTail = []byte(`,"schema":` + string(appendJSONString(nil, schema)) + `,"table":` + string(appendJSONString(nil, name)))
	if cfg.KeySchemas {
		t.keySchema = t.buildKeySchema(cfg, raw)
	}
	if cfg.ValueSchemas {
		t.envelopeSchema = t.buildEnvelopeSchema(cfg, raw)
	}
	t.counters = map[string]prometheus.Counter{}
	for _, op := range []string{"c", "u", "d", "r", "t"} {
		t.counters[op] = m.events.WithLabelValues(connector, schema+"."+name, op)
	}
	return t
}

// applyColumnOptions applies the column filters and string mappers to
// column c of schema.table, and leaves out array types Debezium has no
// converter for (it omits those columns: PostgresValueConverter returns
// no schema for money[], interval[], varbit[], xml[], name[], point[]).
func (cfg *Config) applyColumnOptions(schema, table string, c *column) {
	full := schema + "." + table + "." + c.name
	if len(cfg.ColumnInclude) > 0 && !anyMatch(cfg.ColumnInclude, full) {
		c.skip = true
	}
	if anyMatch(cfg.ColumnExclude, full) {
		c.skip = true
	}
	if c.kind == kindArray {
		switch c.elem.typeName {
		case "money", "interval", "varbit", "xml", "name", "point", "refcursor", "bit":
			c.skip = true
		}
	}
	if !c.textual() {
		return
	}
	for _, m := range cfg.ColumnTruncates {
		if anyMatch(m.Columns, full) {
			c.truncate = m.N
		}
	}
	for _, m := range cfg.ColumnMasks {
		if anyMatch(m.Columns, full) {
			c.mask = m.N
		}
	}
}

// routeTopic applies the topic-routing transforms to a topic of the
// connector's own (heartbeats): the outbox router leaves those alone, as
// Debezium's lets non-envelope records through.
func routeTopic(cfg *Config, topic string) string {
	for _, tr := range cfg.Transforms {
		topic = tr.Topic(topic)
	}
	return topic
}

// DebeziumVersion is the Debezium release whose event format TrackOps
// writes; it is what source.version carries.
const DebeziumVersion = "2.7.3.Final"

func (t *table) buildKeySchema(cfg *Config, raw string) []byte {
	b := []byte(`{"type":"struct","fields":[`)
	for i, idx := range t.key {
		if i > 0 {
			b = append(b, ',')
		}
		c := *t.columns[idx]
		c.optional = false
		b = append(b, c.schemaJSON(cfg, true)...)
	}
	b = append(b, `],"optional":false,"name":`...)
	return append(appendJSONString(b, raw+".Key"), '}')
}

const sourceSchema = `{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},` +
	`{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},` +
	`{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum",` +
	`"version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},` +
	`"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},` +
	`{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},` +
	`{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},` +
	`{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},` +
	`{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"}],` +
	`"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}`

const transactionSchema = `{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},` +
	`{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],` +
	`"optional":true,"name":"event.block","version":1,"field":"transaction"}`

func (t *table) buildEnvelopeSchema(cfg *Config, raw string) []byte {
	row := []byte(`{"type":"struct","fields":[`)
	first := true
	for _, c := range t.columns {
		if c.skip {
			continue
		}
		if !first {
			row = append(row, ',')
		}
		first = false
		row = append(row, c.schemaJSON(cfg, true)...)
	}
	row = append(row, `],"optional":true,"name":`...)
	row = appendJSONString(row, raw+".Value")
	b := []byte(`{"type":"struct","fields":[`)
	b = append(b, row...)
	b = append(b, `,"field":"before"},`...)
	b = append(b, row...)
	b = append(b, `,"field":"after"},`...)
	b = append(b, sourceSchema...)
	b = append(b, `,{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},`...)
	b = append(b, `{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"},`...)
	b = append(b, transactionSchema...)
	b = append(b, `],"optional":false,"name":`...)
	b = appendJSONString(b, raw+".Envelope")
	return append(b, `,"version":1}`...)
}

// lsnString is an LSN as Debezium writes it in source.sequence: decimal.
func lsnString(lsn uint64) string { return strconv.FormatUint(lsn, 10) }
