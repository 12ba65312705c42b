package cdc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// The expected values in this file come from Debezium's own sources, named
// at each check: the debezium-connector-postgres tests
// (AbstractRecordsProducerTest, RecordsStreamProducerIT,
// RecordsSnapshotProducerIT, PostgresConnectorIT), debezium-core
// (RelationalSnapshotChangeEventSource, RelationalChangeRecordEmitter,
// EventRouterDelegate, EventRouterConfigDefinition) and the PostgreSQL
// connector and Outbox Event Router documentation pages.

// startParity runs a connector on db with the seed configuration, the
// changes in extra (an empty value deletes a key), and waits for it to
// stream.
func startParity(t *testing.T, db *postgrestest.Database, b *kafka.Embedded, extra map[string]string) *Connector {
	t.Helper()
	c, _ := runConnector(t, parse(t, rawConfig(t, db, extra)), b, nil)
	waitStreaming(t, c)
	return c
}

// noRoute removes the seed's RegexRouter, so topics keep Debezium's names.
var noRoute = map[string]string{"transforms": "", "transforms.route.type": "", "transforms.route.regex": "", "transforms.route.replacement": ""}

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func sqlExec(t *testing.T, db *postgrestest.Database, sql ...string) {
	t.Helper()
	for _, s := range sql {
		if _, err := db.Pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// payloadOf returns the value's payload (the value itself without schemas)
// and the schema of each after field when schemas are enabled.
func payloadOf(t *testing.T, rec *kgo.Record) (map[string]json.RawMessage, map[string]map[string]any) {
	t.Helper()
	var env struct {
		Schema  json.RawMessage            `json:"schema"`
		Payload map[string]json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(rec.Value, &env); err != nil {
		t.Fatalf("decode %s: %v", rec.Value, err)
	}
	payload := env.Payload
	if env.Schema == nil {
		if err := json.Unmarshal(rec.Value, &payload); err != nil {
			t.Fatal(err)
		}
	}
	fields := map[string]map[string]any{}
	if env.Schema != nil {
		var s struct {
			Fields []struct {
				Field  string           `json:"field"`
				Fields []map[string]any `json:"fields"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(env.Schema, &s); err != nil {
			t.Fatal(err)
		}
		for _, f := range s.Fields {
			if f.Field == "after" {
				for _, col := range f.Fields {
					fields[col["field"].(string)] = col
				}
			}
		}
	}
	return payload, fields
}

func afterOf(t *testing.T, rec *kgo.Record) map[string]json.RawMessage {
	t.Helper()
	p, _ := payloadOf(t, rec)
	var after map[string]json.RawMessage
	if err := json.Unmarshal(p["after"], &after); err != nil {
		t.Fatalf("after of %s: %v", rec.Value, err)
	}
	return after
}

func header(rec *kgo.Record, key string) (string, bool) {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func b64(b ...byte) string { return `"` + base64.StdEncoding.EncodeToString(b) + `"` }

// TestTemporalAndSemanticTypesAsDebezium streams one row of every temporal
// type and of the types with a semantic schema, with schemas enabled, and
// checks values and schema names/parameters against Debezium's tests.
func TestTemporalAndSemanticTypesAsDebezium(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	sqlExec(t, db,
		`CREATE EXTENSION IF NOT EXISTS ltree`,
		`CREATE TYPE test_type AS ENUM ('V1','V2')`,
		// The time_table of debezium-connector-postgres' postgres_create_tables.ddl.
		`CREATE TABLE time_table (pk serial PRIMARY KEY, ts timestamp, ts_ms timestamp(3), tz timestamptz, tz3 timestamptz(3),
			tz0 timestamptz(0), date date, ti time, tip time(3), ttf time, ttz timetz, tptz timetz(3), it interval,
			ts_pinf timestamp, ts_ninf timestamp, tz_pinf timestamptz, tz_ninf timestamptz, tz_dbz5996 timestamptz,
			timea time[], timetza timetz[], timestamptza timestamptz[])`,
		`CREATE TABLE semantic_table (pk serial PRIMARY KEY, value test_type NOT NULL, values_arr test_type[],
			j json, jb jsonb, u uuid, x xml, vsd numeric, dec numeric(10,2), lt ltree,
			bol bit(1), bol2 bit(1), bs bit(2), bs7 bit(7), bv bit(2), bv2 bit(24), bvl bit(64), bvunlimited1 varbit, bvunlimited2 varbit,
			mny money[], iv interval[])`)
	startParity(t, db, b, with(noRoute, "snapshot.mode", "no_data", "table.include.list", "public.time_table,public.semantic_table",
		"value.converter.schemas.enable", "true"))
	// AbstractRecordsProducerTest.INSERT_DATE_TIME_TYPES_STMT, plus DBZ-5996's
	// example and RecordsSnapshotProducerIT.shouldSnapshotTimeArrayTypesAsKnownTypes' arrays.
	sqlExec(t, db, `INSERT INTO time_table (ts, ts_ms, tz, tz3, tz0, date, ti, tip, ttf, ttz, tptz, it, ts_pinf, ts_ninf, tz_pinf, tz_ninf, tz_dbz5996,
			timea, timetza, timestamptza)
		VALUES ('2016-11-04T13:51:30.123456'::timestamp, '2016-11-04T13:51:30.123456'::timestamp, '2016-11-04T13:51:30.123456+02:00'::timestamptz,
			'2016-11-04T13:51:30.1+02:00', '2016-11-04T13:51:30+02:00', '2016-11-04'::date, '13:51:30'::time, '13:51:30.123'::time,
			'24:00:00'::time, '13:51:30.123789+02:00'::timetz, '13:51:30.123+02:00'::timetz, 'P1Y2M3DT4H5M6.78S'::interval,
			'infinity', '-infinity', 'infinity', '-infinity', '2016-11-04T13:51:30+07:00',
			'{00:01:02,01:02:03}', '{13:51:02+0200,14:51:03+0200}', '{2020-04-01 13:51:02+0200,2020-04-01 14:51:03+0200}')`,
		// RecordsStreamProducerIT.shouldStreamEnumAsKnownType / shouldStreamEnumArrayAsKnownType (DBZ-1680,
		// DBZ-1969) and AbstractRecordsProducerTest.INSERT_BIN_TYPES_STMT.
		`INSERT INTO semantic_table (value, values_arr, j, jb, u, x, vsd, dec, lt, bol, bol2, bs, bs7, bv, bv2, bvl, bvunlimited1, bvunlimited2, mny, iv)
		VALUES ('V1', '{V1,V2}', '{"bar": "baz"}', '{"bar": "baz"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '<foo>bar</foo>', 1.50, 12.30, 'Top.Collections.Pictures',
			'0'::bit(1), '1'::bit(1), '11'::bit(2), '1'::bit(7), '00'::bit(2), '000000110000001000000001'::bit(24),
			'1000000000000000000000000000000000000000000000000000000000000000'::bit(64), '101', '111011010001000110000001000000001',
			'{1.00}', '{1 day}')`)

	tt := kafkatest.Read(t, b, "trackops_orders.public.time_table", 1, 20*time.Second)
	st := kafkatest.Read(t, b, "trackops_orders.public.semantic_table", 1, 20*time.Second)
	if len(tt) != 1 || len(st) != 1 {
		t.Fatalf("got %d and %d records", len(tt), len(st))
	}
	after := afterOf(t, tt[0])
	_, schemas := payloadOf(t, tt[0])
	// AbstractRecordsProducerTest.schemaAndValuesForDateTimeTypes.
	want := map[string]string{
		"ts":           `1478267490123456`,              // MicroTimestamp
		"ts_ms":        `1478267490123`,                 // Timestamp (precision 3)
		"tz":           `"2016-11-04T11:51:30.123456Z"`, // ZonedTimestamp
		"tz3":          `"2016-11-04T11:51:30.100Z"`,    // padded to the column's 3 digits (DBZ-5996)
		"tz0":          `"2016-11-04T11:51:30Z"`,        // width 0: ISO_OFFSET_DATE_TIME
		"date":         `17109`,                         // Date: epoch days
		"ti":           `49890000000`,                   // MicroTime
		"tip":          `49890123`,                      // Time (precision 3)
		"ttf":          `86400000000`,                   // 24:00:00
		"ttz":          `"11:51:30.123789Z"`,            // ZonedTime: not padded
		"tptz":         `"11:51:30.123Z"`,               // ZonedTime
		"it":           `37091106780000`,                // MicroDuration.durationMicros(1,2,3,4,5,6,780000, 30.4375)
		"ts_pinf":      `9223372036825200000`,           // PGStatement.DATE_POSITIVE_INFINITY
		"ts_ninf":      `-9223372036832400000`,          // PGStatement.DATE_NEGATIVE_INFINITY
		"tz_pinf":      `"infinity"`,                    //
		"tz_ninf":      `"-infinity"`,                   //
		"tz_dbz5996":   `"2016-11-04T06:51:30.000000Z"`, // DBZ-5996, the example
		"timea":        `[62000000,3723000000]`,         // schemaAndValuesForTimeArrayTypes
		"timetza":      `["11:51:02Z","12:51:03Z"]`,     //
		"timestamptza": `["2020-04-01T11:51:02.000000Z","2020-04-01T12:51:03.000000Z"]`,
	}
	for col, w := range want {
		if got := string(after[col]); got != w {
			t.Errorf("time_table.%s = %s, want %s", col, got, w)
		}
	}
	wantNames := map[string]string{"ts": "io.debezium.time.MicroTimestamp", "ts_ms": "io.debezium.time.Timestamp",
		"tz": "io.debezium.time.ZonedTimestamp", "date": "io.debezium.time.Date", "ti": "io.debezium.time.MicroTime",
		"tip": "io.debezium.time.Time", "ttz": "io.debezium.time.ZonedTime", "it": "io.debezium.time.MicroDuration"}
	for col, name := range wantNames {
		if schemas[col]["name"] != name {
			t.Errorf("time_table.%s schema %v, want name %s", col, schemas[col], name)
		}
	}

	after = afterOf(t, st[0])
	_, schemas = payloadOf(t, st[0])
	wantVals := map[string]string{
		"value":      `"V1"`,
		"values_arr": `["V1","V2"]`,
		"j":          `"{\"bar\": \"baz\"}"`,
		"jb":         `"{\"bar\": \"baz\"}"`,
		"u":          `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`,
		"x":          `"<foo>bar</foo>"`,
		// VariableScaleDecimal strips trailing zeros (PostgresValueConverter.convertDecimal).
		"vsd": `{"scale":1,"value":"Dw=="}`,
		"dec": `"BM4="`, // Decimal scale 2: 1230
		"lt":  `"Top.Collections.Pictures"`,
		// AbstractRecordsProducerTest.schemaAndValuesForBinTypes.
		"bol": `false`, "bol2": `true`,
		"bs": b64(3), "bs7": b64(64), "bv": b64(), "bv2": b64(1, 2, 3), "bvl": b64(0, 0, 0, 0, 0, 0, 0, 0x80),
		"bvunlimited1": b64(5), "bvunlimited2": b64(1, 2, 35, 0xda, 1),
	}
	for col, w := range wantVals {
		if got := string(after[col]); got != w {
			t.Errorf("semantic_table.%s = %s, want %s", col, got, w)
		}
	}
	// PostgresValueConverter has no schema for money[] or interval[]: Debezium leaves them out.
	for _, col := range []string{"mny", "iv"} {
		if _, ok := after[col]; ok {
			t.Errorf("semantic_table.%s is present; Debezium omits columns it has no converter for", col)
		}
	}
	type sc struct {
		name   string
		params map[string]any
	}
	wantSchemas := map[string]sc{
		"value": {"io.debezium.data.Enum", map[string]any{"allowed": "V1,V2"}},
		"j":     {"io.debezium.data.Json", nil}, "jb": {"io.debezium.data.Json", nil},
		"u": {"io.debezium.data.Uuid", nil}, "x": {"io.debezium.data.Xml", nil},
		"vsd": {"io.debezium.data.VariableScaleDecimal", nil},
		"dec": {"org.apache.kafka.connect.data.Decimal", map[string]any{"scale": "2", "connect.decimal.precision": "10"}},
		"lt":  {"io.debezium.data.Ltree", nil},
		"bs":  {"io.debezium.data.Bits", map[string]any{"length": "2"}}, "bvl": {"io.debezium.data.Bits", map[string]any{"length": "64"}},
		"bvunlimited1": {"io.debezium.data.Bits", map[string]any{"length": "2147483647"}},
	}
	for col, w := range wantSchemas {
		got := schemas[col]
		if got["name"] != w.name {
			t.Errorf("semantic_table.%s schema name %v, want %s", col, got["name"], w.name)
		}
		if w.params != nil {
			params, _ := got["parameters"].(map[string]any)
			for k, v := range w.params {
				if params[k] != v {
					t.Errorf("semantic_table.%s parameter %s = %v, want %v", col, k, params[k], v)
				}
			}
		}
	}
	if schemas["bol"]["type"] != "boolean" {
		t.Errorf("bit(1) schema %v, want boolean", schemas["bol"])
	}
	items, _ := schemas["values_arr"]["items"].(map[string]any)
	if schemas["values_arr"]["type"] != "array" || items["name"] != "io.debezium.data.Enum" {
		t.Errorf("enum array schema %v, want an array of io.debezium.data.Enum", schemas["values_arr"])
	}
}

// TestIntervalStringMode checks interval.handling.mode=string
// (AbstractRecordsProducerTest.schemaAndValuesForIntervalAsString).
func TestIntervalStringMode(t *testing.T) {
	t.Parallel()
	e := &encoder{cfg: &Config{IntervalHandling: "string"}}
	if got := string(e.appendValue(nil, &column{kind: kindInterval}, []byte("1 year 2 mons 3 days 04:05:06.78"))); got != `"P1Y2M3DT4H5M6.78S"` {
		t.Errorf("interval string mode = %s, want \"P1Y2M3DT4H5M6.78S\"", got)
	}
}

// TestTimestampsAndKeyChangeHeadersAndTruncate covers the envelope's ts_us
// and ts_ns (Debezium 2.6+), a primary-key change's headers, and TRUNCATE
// under skipped.operations' default (t) and none.
func TestTimestampsAndKeyChangeHeadersAndTruncate(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	sqlExec(t, db, `CREATE TABLE keyed (pk int PRIMARY KEY, val text)`)
	base := with(noRoute, "snapshot.mode", "no_data", "table.include.list", "public.keyed")
	startParity(t, db, b, base) // skipped.operations unset: Debezium's default "t"
	startParity(t, db, b, with(base, "topic.prefix", "all_ops", "database.server.name", "", "skipped.operations", "none"))
	sqlExec(t, db, `INSERT INTO keyed VALUES (1, 'one')`,
		// RecordsStreamProducerIT.shouldReceiveChangesForUpdatesWithPKChanges: UPDATE ... SET pk = 2.
		`UPDATE keyed SET pk = 2 WHERE pk = 1`,
		`TRUNCATE keyed`,
		`INSERT INTO keyed VALUES (3, 'after truncate')`)

	recs := kafkatest.Read(t, b, "trackops_orders.public.keyed", 5, 20*time.Second)
	if len(recs) != 5 {
		t.Fatalf("got %d records, want c, d, tombstone, c, c (no truncate event by default)", len(recs))
	}
	ops := []string{}
	for _, r := range recs {
		if r.Value == nil {
			ops = append(ops, "tombstone")
			continue
		}
		p, _ := payloadOf(t, r)
		var op string
		_ = json.Unmarshal(p["op"], &op)
		ops = append(ops, op)
	}
	if strings.Join(ops, ",") != "c,d,tombstone,c,c" {
		t.Fatalf("ops %v, want c,d,tombstone,c,c: skipped.operations defaults to t in Debezium 2.x", ops)
	}
	// RelationalChangeRecordEmitter: __debezium.newkey on the delete, __debezium.oldkey
	// on the create, each the other key as Kafka Connect's SimpleHeaderConverter writes
	// a Struct ({"pk":2}).
	if h, ok := header(recs[1], "__debezium.newkey"); !ok || h != `{"pk":2}` {
		t.Errorf("delete's __debezium.newkey = %q (%v), want {\"pk\":2}", h, ok)
	}
	if h, ok := header(recs[3], "__debezium.oldkey"); !ok || h != `{"pk":1}` {
		t.Errorf("create's __debezium.oldkey = %q (%v), want {\"pk\":1}", h, ok)
	}
	if string(recs[1].Key) != `{"pk":1}` || string(recs[3].Key) != `{"pk":2}` {
		t.Errorf("keys %s / %s, want the old key on the delete and the new one on the create", recs[1].Key, recs[3].Key)
	}

	// ts_us and ts_ns beside ts_ms, at the top level and in source
	// (AbstractSourceInfoStructMaker.commonStruct, Envelope since 2.6).
	for _, r := range []*kgo.Record{recs[0], recs[4]} {
		var v struct {
			TsMs, TsUs, TsNs int64
			Source           struct{ TsMs, TsUs, TsNs int64 } `json:"source"`
		}
		dec := json.NewDecoder(strings.NewReader(string(r.Value)))
		var raw map[string]json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"ts_ms", "ts_us", "ts_ns"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("value has no %s: %s", k, r.Value)
			}
		}
		_ = json.Unmarshal(raw["ts_ms"], &v.TsMs)
		_ = json.Unmarshal(raw["ts_us"], &v.TsUs)
		_ = json.Unmarshal(raw["ts_ns"], &v.TsNs)
		var src map[string]json.RawMessage
		_ = json.Unmarshal(raw["source"], &src)
		_ = json.Unmarshal(src["ts_ms"], &v.Source.TsMs)
		_ = json.Unmarshal(src["ts_us"], &v.Source.TsUs)
		_ = json.Unmarshal(src["ts_ns"], &v.Source.TsNs)
		if v.TsUs/1000 != v.TsMs || v.TsNs/1000 != v.TsUs || v.Source.TsUs/1000 != v.Source.TsMs || v.Source.TsNs != v.Source.TsUs*1000 || v.Source.TsMs == 0 {
			t.Errorf("timestamps disagree: top %d/%d/%d source %d/%d/%d", v.TsMs, v.TsUs, v.TsNs, v.Source.TsMs, v.Source.TsUs, v.Source.TsNs)
		}
	}

	// skipped.operations=none keeps the truncate event (op "t", no key).
	all := kafkatest.Read(t, b, "all_ops.public.keyed", 6, 20*time.Second)
	if len(all) != 6 {
		t.Fatalf("skipped.operations=none: got %d records, want 6", len(all))
	}
	p, _ := payloadOf(t, all[4])
	if string(p["op"]) != `"t"` || all[4].Key != nil {
		t.Errorf("5th record with skipped.operations=none: op %s key %s, want a truncate", p["op"], all[4].Key)
	}
}

// TestSnapshotMarkers checks source.snapshot across several tables and for
// one single-row table against Debezium's
// RelationalSnapshotChangeEventSource.setSnapshotMarker (and
// AbstractRecordsProducerTest.expectedSnapshotRecordFromPosition).
func TestSnapshotMarkers(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	sqlExec(t, db, `CREATE TABLE m1 (id int PRIMARY KEY)`, `CREATE TABLE m2 (id int PRIMARY KEY)`,
		`CREATE TABLE m3 (id int PRIMARY KEY)`, `CREATE TABLE m4 (id int PRIMARY KEY)`, `CREATE TABLE solo (id int PRIMARY KEY)`,
		`INSERT INTO m1 SELECT generate_series(1, 3)`, `INSERT INTO m2 SELECT generate_series(1, 1)`,
		`INSERT INTO m3 SELECT generate_series(1, 3)`, `INSERT INTO m4 SELECT generate_series(1, 2)`, `INSERT INTO solo VALUES (1)`)
	startParity(t, db, b, with(noRoute, "table.include.list", "public.m[1-4]"))
	startParity(t, db, b, with(noRoute, "table.include.list", "public.solo", "topic.prefix", "solo", "database.server.name", ""))
	markers := func(topic string, n int) []string {
		var out []string
		for _, r := range kafkatest.Read(t, b, topic, n, 20*time.Second) {
			var v struct{ Source struct{ Snapshot string } }
			_ = json.Unmarshal(r.Value, &v)
			out = append(out, v.Source.Snapshot)
		}
		return out
	}
	want := map[string][]string{
		"trackops_orders.public.m1": {"first", "true", "last_in_data_collection"},
		// A one-row table between others is both first and last in its collection: last wins.
		"trackops_orders.public.m2": {"last_in_data_collection"},
		"trackops_orders.public.m3": {"first_in_data_collection", "true", "last_in_data_collection"},
		"trackops_orders.public.m4": {"first_in_data_collection", "last"},
		// A single table with a single row: "last" (lastRecordInTable && lastTable comes first).
		"solo.public.solo": {"last"},
	}
	for topic, w := range want {
		if got := markers(topic, len(w)); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("%s markers %v, want %v", topic, got, w)
		}
	}
}

// TestUnchangedToastPlaceholder updates a row whose large values PostgreSQL
// keeps out of line without touching them: with REPLICA IDENTITY DEFAULT
// the server does not send them and Debezium writes
// unavailable.value.placeholder in the forms of UnchangedToastedPlaceholder;
// with FULL the old value is known and written.
func TestUnchangedToastPlaceholder(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	cols := `(id int PRIMARY KEY, note text, big text, raw bytea, tags text[], nums int[], longs bigint[], doc jsonb)`
	sqlExec(t, db, `CREATE TABLE toasty `+cols, `CREATE TABLE toasty_full `+cols, `ALTER TABLE toasty_full REPLICA IDENTITY FULL`)
	startParity(t, db, b, with(noRoute, "snapshot.mode", "no_data", "table.include.list", "public.toasty,public.toasty_full"))
	for _, tbl := range []string{"toasty", "toasty_full"} {
		// Random data does not compress, so every value is stored out of line.
		sqlExec(t, db, `INSERT INTO `+tbl+` SELECT 1, 'n',
			(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400)),
			(SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 400)),
			(SELECT array_agg(md5(random()::text)) FROM generate_series(1, 400)),
			(SELECT array_agg((random() * 2e9)::int) FROM generate_series(1, 2000)),
			(SELECT array_agg((random() * 9e18)::bigint) FROM generate_series(1, 2000)),
			(SELECT jsonb_object_agg(md5(random()::text), md5(random()::text)) FROM generate_series(1, 400))`,
			`UPDATE `+tbl+` SET note = 'changed' WHERE id = 1`)
	}
	ph := "__debezium_unavailable_value"
	phBytes := []string{}
	for _, c := range []byte(ph) {
		phBytes = append(phBytes, strings.TrimSpace(string(json.RawMessage(mustJSON(int(c))))))
	}
	recs := kafkatest.Read(t, b, "trackops_orders.public.toasty", 2, 20*time.Second)
	if len(recs) != 2 {
		t.Fatalf("got %d records", len(recs))
	}
	after := afterOf(t, recs[1])
	want := map[string]string{
		"note":  `"changed"`,
		"big":   `"` + ph + `"`,
		"raw":   b64([]byte(ph)...), // the placeholder's bytes (binary.handling.mode=bytes)
		"tags":  `["` + ph + `"]`,
		"nums":  `[` + strings.Join(phBytes, ",") + `]`,
		"longs": `[` + strings.Join(phBytes, ",") + `]`,
		"doc":   `"` + ph + `"`,
	}
	for col, w := range want {
		if got := string(after[col]); got != w {
			t.Errorf("toasty.%s = %.80s, want %.80s", col, got, w)
		}
	}
	if h, _ := header(recs[1], HeaderUnavailableColumns); h != "big,raw,tags,nums,longs,doc" {
		t.Errorf("%s header = %q", HeaderUnavailableColumns, h)
	}
	full := kafkatest.Read(t, b, "trackops_orders.public.toasty_full", 2, 20*time.Second)
	if len(full) != 2 {
		t.Fatalf("got %d full-identity records", len(full))
	}
	created, updated := afterOf(t, full[0]), afterOf(t, full[1])
	for _, col := range []string{"big", "raw", "tags", "nums", "longs", "doc"} {
		if string(updated[col]) != string(created[col]) || strings.Contains(string(updated[col]), ph) {
			t.Errorf("REPLICA IDENTITY FULL: %s not taken from the old row", col)
		}
	}
	if _, ok := header(full[1], HeaderUnavailableColumns); ok {
		t.Errorf("REPLICA IDENTITY FULL: unexpected %s header", HeaderUnavailableColumns)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestColumnOptions checks column.exclude.list, message.key.columns,
// column.mask.with.N.chars and column.truncate.to.N.chars as the
// PostgreSQL connector documentation describes them (anchored regular
// expressions over schema.table.column; masks replace with N asterisks,
// truncation keeps the first N characters).
func TestColumnOptions(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	sqlExec(t, db, `CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, ssn text, name varchar(40), secret text)`)
	startParity(t, db, b, with(noRoute, "snapshot.mode", "no_data", "table.include.list", "public.people",
		"column.exclude.list", "public.people.secret", "message.key.columns", "public.people:email",
		"column.mask.with.5.chars", "public.people.ssn", "column.truncate.to.3.chars", "public\\.people\\.na.*",
		"key.converter.schemas.enable", "true"))
	sqlExec(t, db, `INSERT INTO people VALUES (1, 'a@example.com', '123-45-6789', 'Alexandra', 'hunter2')`)
	recs := kafkatest.Read(t, b, "trackops_orders.public.people", 1, 20*time.Second)
	if len(recs) != 1 {
		t.Fatalf("got %d records", len(recs))
	}
	after := afterOf(t, recs[0])
	if _, ok := after["secret"]; ok || string(after["ssn"]) != `"*****"` || string(after["name"]) != `"Ale"` || string(after["id"]) != `1` {
		t.Errorf("after = %v", after)
	}
	var key struct {
		Schema struct {
			Fields []struct{ Field string } `json:"fields"`
		} `json:"schema"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(recs[0].Key, &key); err != nil || len(key.Payload) != 1 || key.Payload["email"] != "a@example.com" ||
		len(key.Schema.Fields) != 1 || key.Schema.Fields[0].Field != "email" {
		t.Errorf("key %s, want the email column alone (message.key.columns)", recs[0].Key)
	}
	if _, _, err := ParseConfig("x", with(rawConfig(t, db, nil), "column.include.list", "a", "column.exclude.list", "b")); !IsConfigError(err) {
		t.Errorf("column.include.list with column.exclude.list: %v, want a configuration error", err)
	}
}

// TestHstoreConnectModeAndMoneyDigits covers hstore.handling.mode
// (AbstractRecordsProducerTest: '"key" => "val"'::hstore is the JSON
// document {"key":"val"} by default, a map with hstore.handling.mode=map),
// time.precision.mode=connect (the connector documentation: Kafka Connect's
// own Timestamp, Time and Date, milliseconds whatever the column's
// precision) and money.fraction.digits.
func TestHstoreConnectModeAndMoneyDigits(t *testing.T) {
	t.Parallel()
	hs := &column{kind: kindHstore}
	for mode, want := range map[string]string{"json": `"{\"key\":\"val\"}"`, "map": `{"key":"val"}`} {
		e := &encoder{cfg: &Config{HstoreHandling: mode}}
		if got := string(e.appendValue(nil, hs, []byte(`"key"=>"val"`))); got != want {
			t.Errorf("hstore %s = %s, want %s", mode, got, want)
		}
	}
	e := &encoder{cfg: &Config{HstoreHandling: "json"}}
	if got := string(e.appendValue(nil, hs, []byte(`"a b"=>"x\"y", "n"=>NULL`))); got != `"{\"a b\":\"x\\\"y\",\"n\":null}"` {
		t.Errorf("hstore with quotes and NULL = %s", got)
	}
	cfg := &Config{TimePrecisionMode: "connect", MoneyFractionDigits: 3, DecimalHandling: DecimalString}
	ts := newColumn("ts", oidTimestamp, -1, "timestamp", 0, true, cfg)
	tm := newColumn("tm", oidTime, 6, "time", 0, true, cfg)
	dt := newColumn("dt", oidDate, -1, "date", 0, true, cfg)
	enc := &encoder{cfg: cfg}
	if got := string(enc.appendValue(nil, ts, []byte("2016-11-04 13:51:30.123456"))); got != "1478267490123" {
		t.Errorf("connect-mode timestamp = %s, want milliseconds 1478267490123", got)
	}
	if got := string(enc.appendValue(nil, tm, []byte("13:51:30.123456"))); got != "49890123" {
		t.Errorf("connect-mode time = %s, want 49890123", got)
	}
	for c, name := range map[*column]string{ts: "org.apache.kafka.connect.data.Timestamp", tm: "org.apache.kafka.connect.data.Time", dt: "org.apache.kafka.connect.data.Date"} {
		if s := string(c.schemaJSON(cfg, false)); !strings.Contains(s, `"name":"`+name+`"`) {
			t.Errorf("connect-mode schema %s, want %s", s, name)
		}
	}
	money := newColumn("m", oidMoney, -1, "money", 0, true, &Config{MoneyFractionDigits: 3, DecimalHandling: DecimalPrecise})
	if money.scale != 3 {
		t.Errorf("money scale %d, want money.fraction.digits", money.scale)
	}
}
