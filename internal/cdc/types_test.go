package cdc

import (
	"context"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestTypeEncodings round-trips one row through PostgreSQL's walsender and
// checks each column's JSON against what Debezium's JsonConverter writes.
func TestTypeEncodings(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE typed (
		id int PRIMARY KEY, small smallint, big bigint, r real, d double precision, flag boolean,
		txt text, vc varchar(10), ch char(5), u uuid, j json, jb jsonb,
		tstz timestamptz, ts timestamp, ts3 timestamp(3), dt date, tm time, tmtz timetz,
		num numeric(10,2), neg numeric(10,2), anynum numeric, iv interval, raw bytea,
		ints int[], texts text[], nothing text)`)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": "public.typed"}))
	c, _ := runConnector(t, cfg, b, nil)
	waitStreaming(t, c)
	_, err = db.Pool.Exec(ctx, `INSERT INTO typed VALUES (1, 7, 9007199254740993, 1.5, 2.25, true,
		'héllo "q"', 'abc', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{"b":2}',
		'2024-01-02 03:04:05.123+02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123', '2024-01-02', '01:02:03.5', '01:02:03+02',
		12.34, -1.50, 1.5, '1 day 02:00:00', '\x0102ff', '{1,2,NULL}', '{"a b",c}', NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.Read(t, b, "orders.typed", 1, 20*time.Second)
	if len(recs) != 1 {
		t.Fatalf("got %d records", len(recs))
	}
	var v struct {
		After map[string]json.RawMessage `json:"after"`
	}
	if err := json.Unmarshal(recs[0].Value, &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"id":      `1`,
		"small":   `7`,
		"big":     `9007199254740993`,
		"r":       `1.5`,
		"d":       `2.25`,
		"flag":    `true`,
		"txt":     `"héllo \"q\""`,
		"vc":      `"abc"`,
		"ch":      `"ab   "`,
		"u":       `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`,
		"j":       `"{\"a\": 1}"`,
		"jb":      `"{\"b\": 2}"`,
		"tstz":    `"2024-01-02T01:04:05.123000Z"`, // padded to the column's 6 digits (DBZ-5996)
		"ts":      `1704164645123456`,
		"ts3":     `1704164645123`,
		"dt":      `19724`,
		"tm":      `3723500000`,
		"tmtz":    `"23:02:03Z"`,
		"num":     `"BNI="`,
		"neg":     `"/2o="`,
		"anynum":  `{"scale":1,"value":"Dw=="}`,
		"iv":      `93600000000`,
		"raw":     `"AQL/"`,
		"ints":    `[1,2,null]`,
		"texts":   `["a b","c"]`,
		"nothing": `null`,
	}
	for col, w := range want {
		if got := string(v.After[col]); got != w {
			t.Errorf("%s = %s, want %s", col, got, w)
		}
	}
	if len(v.After) != len(want) {
		t.Errorf("after has %d columns, want %d", len(v.After), len(want))
	}
}

func TestDecimalModes(t *testing.T) {
	t.Parallel()
	col := &column{kind: kindNumeric, scale: 2}
	free := &column{kind: kindNumeric, scale: -1}
	tests := []struct {
		mode string
		col  *column
		in   string
		want string
	}{
		{DecimalString, col, "12.34", `"12.34"`},
		{DecimalDouble, col, "12.34", `12.34`},
		{DecimalPrecise, col, "12.34", `"BNI="`},
		{DecimalPrecise, col, "-1.50", `"/2o="`},
		{DecimalPrecise, col, "0.00", `"AA=="`},
		{DecimalPrecise, col, "1.28", `"AIA="`}, // 128 needs a sign byte
		{DecimalPrecise, col, "-1.28", `"gA=="`},
		{DecimalPrecise, col, "-1.29", `"/38="`},
		{DecimalPrecise, free, "1.5", `{"scale":1,"value":"Dw=="}`},
		{DecimalPrecise, col, "NaN", `null`},
		{DecimalString, col, "NaN", `"NaN"`},
	}
	for _, tc := range tests {
		e := &encoder{cfg: &Config{DecimalHandling: tc.mode}}
		if got := string(e.appendValue(nil, tc.col, []byte(tc.in))); got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.mode, tc.in, got, tc.want)
		}
	}
	// Two's complement agrees with a reference for a range of values.
	for _, n := range []int64{-65536, -32769, -32768, -257, -256, -129, -1, 1, 127, 255, 256, 32767, 32768} {
		b := twosComplement(big.NewInt(n))
		back := new(big.Int).SetBytes(b)
		if b[0]&0x80 != 0 {
			back.Sub(back, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
		}
		if back.Int64() != n {
			t.Errorf("twosComplement(%d) = %x decodes to %d", n, b, back.Int64())
		}
		if len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0)) {
			t.Errorf("twosComplement(%d) = %x is not minimal", n, b)
		}
	}
}

func TestRegexRouterJavaReplacement(t *testing.T) {
	t.Parallel()
	tests := []struct{ regex, repl, in, want string }{
		{"trackops_orders.public.(.*)", "orders.$1", "trackops_orders.public.orders", "orders.orders"},
		{"trackops_orders.public.(.*)", "orders.$1", "trackops_orders.public.order_items", "orders.order_items"},
		{"trackops_orders.public.(.*)", "orders.$1", "other.public.orders", "other.public.orders"},
		{"(.*)\\.(.*)", "$2-$1", "a.b", "b-a"},
		{"(.*)", "cost\\$$1", "x", "cost$x"},
		{"prefix", "x", "prefix.more", "prefix.more"}, // matches() needs the whole topic
	}
	for _, tc := range tests {
		r, err := NewRegexRouter(tc.regex, tc.repl)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Topic(tc.in); got != tc.want {
			t.Errorf("%s -> %s on %s = %s, want %s", tc.regex, tc.repl, tc.in, got, tc.want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		raw, _ := OrdersConnectorConfig("postgres://postgres:pw@db:5433/shop?sslmode=disable")
		return raw
	}
	cfg, warnings, err := ParseConfig("n", base())
	if err != nil || len(warnings) != 0 {
		t.Fatalf("seed config: %v %v", err, warnings)
	}
	if cfg.Host != "db" || cfg.Port != 5433 || cfg.DBName != "shop" || cfg.Password != "pw" || cfg.DecimalHandling != DecimalString ||
		cfg.TopicPrefix != "trackops_orders" || cfg.SnapshotMode != SnapshotInitial || !cfg.TombstonesOnDelete || cfg.KeySchemas {
		t.Errorf("parsed %+v", cfg)
	}
	raw := base()
	raw["some.unknown.key"] = "1"
	raw["snapshot.mode"] = "never"
	cfg, warnings, err = ParseConfig("n", raw)
	if err != nil || len(warnings) != 1 || cfg.SnapshotMode != SnapshotNoData {
		t.Errorf("unknown key should warn, never fail: %v %v %s", err, warnings, cfg.SnapshotMode)
	}
	for key, value := range map[string]string{
		"plugin.name":                 "decoderbufs",
		"snapshot.mode":               "sometimes",
		"decimal.handling.mode":       "float",
		"publication.autocreate.mode": "maybe",
		"transforms.route.type":       "org.apache.kafka.connect.transforms.TimestampRouter",
		"database.port":               "x",
		"tombstones.on.delete":        "perhaps",
	} {
		raw := base()
		raw[key] = value
		if _, _, err := ParseConfig("n", raw); !IsConfigError(err) {
			t.Errorf("%s=%s: want a configuration error, got %v", key, value, err)
		}
	}
	raw = base()
	delete(raw, "topic.prefix")
	if cfg, _, err := ParseConfig("n", raw); err != nil || cfg.TopicPrefix != "trackops_orders" {
		t.Errorf("database.server.name should stand in for topic.prefix: %v %q", err, cfg.TopicPrefix)
	}
}
