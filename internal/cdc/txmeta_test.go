package cdc

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// txRecordValue is a BEGIN/END record's value.
type txRecordValue struct {
	Status          string `json:"status"`
	ID              string `json:"id"`
	EventCount      *int64 `json:"event_count"`
	DataCollections []struct {
		DataCollection string `json:"data_collection"`
		EventCount     int64  `json:"event_count"`
	} `json:"data_collections"`
	TsMs int64 `json:"ts_ms"`
}

// txBlock is the "transaction" field of a change event.
type txBlock struct {
	ID                  string `json:"id"`
	TotalOrder          int64  `json:"total_order"`
	DataCollectionOrder int64  `json:"data_collection_order"`
}

// splitTxID splits Debezium's PostgreSQL transaction id "<txId>:<lsn>".
func splitTxID(t *testing.T, id string) (xid, lsn int64) {
	t.Helper()
	a, b, ok := strings.Cut(id, ":")
	x, err1 := strconv.ParseInt(a, 10, 64)
	l, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("transaction id %q is not <txId>:<lsn>", id)
	}
	return x, l
}

// unwrap returns a JsonConverter value's payload (schemas.enable=true) and
// its schema, or the value itself.
func unwrap(t *testing.T, value []byte, withSchema bool) (payload, schema json.RawMessage) {
	t.Helper()
	if !withSchema {
		return value, nil
	}
	var env struct {
		Schema  json.RawMessage `json:"schema"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(value, &env); err != nil || env.Schema == nil || env.Payload == nil {
		t.Fatalf("want {schema, payload}, got %s (%v)", value, err)
	}
	return env.Payload, env.Schema
}

// TestTransactionMetadata follows Debezium's own test of
// provide.transaction.metadata for PostgreSQL (debezium-connector-postgres,
// TransactionMetadataIT.transactionMetadata, with the assertions of its
// assertBeginTransaction / assertRecordTransactionMetadata /
// assertEndTransaction overrides): tables s1.a and s2.a, one transaction
// inserting into both, gives BEGIN, the change events and END, where
//
//   - BEGIN has status "BEGIN", event_count null, key {"id"} equal to its id;
//   - every id is "<txId>:<lsn>" (PostgresTransactionStructMaker appends the
//     LSN of the message the record stands for): each change event's
//     transaction.id is "<source.txId>:<source.lsn>";
//   - total_order counts the transaction's events, data_collection_order
//     the events of the same table;
//   - END has status "END", event_count = the events, data_collections =
//     [{"data_collection":"s1.a","event_count":N}, ...] keyed "schema.table",
//     and ts_ms (Debezium 2.x) is the commit time.
//
// Debezium's test inserts one row per table; this one inserts two into s1.a
// so that data_collection_order and total_order differ. It runs with the
// JSON converter's schemas off and on (schema names from Debezium's
// SchemaFactory), and checks that without the option the block is null
// and no transaction record is written.
func TestTransactionMetadata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		schemas bool
	}{{"schemas disabled", false}, {"schemas enabled", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := postgrestest.New(t)
			b := kafkatest.New(t)
			ctx := context.Background()
			if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA s1; CREATE SCHEMA s2;
				CREATE TABLE s1.a (pk SERIAL, aa integer, PRIMARY KEY(pk));
				CREATE TABLE s2.a (pk SERIAL, aa integer, bb varchar(20), PRIMARY KEY(pk))`); err != nil {
				t.Fatal(err)
			}
			schemas := strconv.FormatBool(tc.schemas)
			cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": `s1\.a,s2\.a`,
				"provide.transaction.metadata": "true", "key.converter.schemas.enable": schemas, "value.converter.schemas.enable": schemas}))
			if cfg.TransactionTopic != "trackops_orders.transaction" {
				t.Fatalf("transaction topic %q, want <topic.prefix>.transaction", cfg.TransactionTopic)
			}
			c, _ := runConnector(t, cfg, b, nil)
			waitStreaming(t, c)

			var xid int64
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{`INSERT INTO s1.a (aa) VALUES (1)`, `INSERT INTO s1.a (aa) VALUES (2)`, `INSERT INTO s2.a (aa) VALUES (1)`} {
				if _, err := tx.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}

			txRecs := kafkatest.Read(t, b, cfg.TransactionTopic, 2, 20*time.Second)
			s1 := kafkatest.Read(t, b, "trackops_orders.s1.a", 2, 20*time.Second)
			s2 := kafkatest.Read(t, b, "trackops_orders.s2.a", 1, 20*time.Second)
			if len(txRecs) != 2 || len(s1) != 2 || len(s2) != 1 {
				t.Fatalf("got %d transaction records, %d + %d change events; want BEGIN+END, 2 + 1", len(txRecs), len(s1), len(s2))
			}

			var begin, end txRecordValue
			for i, into := range []*txRecordValue{&begin, &end} {
				payload, schema := unwrap(t, txRecs[i].Value, tc.schemas)
				if err := json.Unmarshal(payload, into); err != nil {
					t.Fatal(err)
				}
				keyPayload, keySchema := unwrap(t, txRecs[i].Key, tc.schemas)
				var key struct{ ID string }
				if err := json.Unmarshal(keyPayload, &key); err != nil || key.ID != into.ID {
					t.Errorf("%s key %s, want {\"id\":%q}", into.Status, txRecs[i].Key, into.ID)
				}
				if tc.schemas {
					var vs, ks struct {
						Name   string `json:"name"`
						Fields []struct {
							Field string `json:"field"`
						} `json:"fields"`
					}
					_ = json.Unmarshal(schema, &vs)
					_ = json.Unmarshal(keySchema, &ks)
					var fields []string
					for _, f := range vs.Fields {
						fields = append(fields, f.Field)
					}
					if vs.Name != "io.debezium.connector.common.TransactionMetadataValue" || strings.Join(fields, ",") != "status,id,event_count,data_collections,ts_ms" ||
						ks.Name != "io.debezium.connector.common.TransactionMetadataKey" {
						t.Errorf("schemas: value %s %v, key %s", vs.Name, fields, ks.Name)
					}
				}
			}
			if begin.Status != "BEGIN" || begin.EventCount != nil || begin.DataCollections != nil {
				t.Errorf("BEGIN = %+v", begin)
			}
			beginXid, beginLSN := splitTxID(t, begin.ID)
			if beginXid != xid {
				t.Errorf("BEGIN id %s, want txId %d", begin.ID, xid)
			}

			var lastLSN int64
			var commitMs int64
			for i, rec := range []struct {
				value           []byte
				total, inTable  int64
				table, topicTag string
			}{{s1[0].Value, 1, 1, "a", "s1"}, {s1[1].Value, 2, 2, "a", "s1"}, {s2[0].Value, 3, 1, "a", "s2"}} {
				payload, schema := unwrap(t, rec.value, tc.schemas)
				var ev struct {
					Source struct {
						TxID  int64 `json:"txId"`
						LSN   int64 `json:"lsn"`
						TsMs  int64 `json:"ts_ms"`
						Table string
					} `json:"source"`
					Transaction *txBlock `json:"transaction"`
				}
				if err := json.Unmarshal(payload, &ev); err != nil {
					t.Fatal(err)
				}
				if ev.Transaction == nil {
					t.Fatalf("event %d has no transaction block: %s", i, payload)
				}
				want := txBlock{ID: strconv.FormatInt(ev.Source.TxID, 10) + ":" + strconv.FormatInt(ev.Source.LSN, 10),
					TotalOrder: rec.total, DataCollectionOrder: rec.inTable}
				if *ev.Transaction != want || ev.Source.TxID != xid {
					t.Errorf("event %d (%s.%s): transaction %+v, want %+v", i, rec.topicTag, rec.table, *ev.Transaction, want)
				}
				if ev.Source.LSN < beginLSN {
					t.Errorf("event %d lsn %d before BEGIN's %d", i, ev.Source.LSN, beginLSN)
				}
				lastLSN = max(lastLSN, ev.Source.LSN)
				commitMs = ev.Source.TsMs
				if tc.schemas && !strings.Contains(string(schema), `"name":"event.block"`) {
					t.Errorf("envelope schema lacks the event.block transaction schema")
				}
			}

			endXid, endLSN := splitTxID(t, end.ID)
			counts := map[string]int64{}
			for _, dc := range end.DataCollections {
				counts[dc.DataCollection] = dc.EventCount
			}
			if end.Status != "END" || endXid != xid || endLSN <= lastLSN || end.EventCount == nil || *end.EventCount != 3 ||
				len(counts) != 2 || counts["s1.a"] != 2 || counts["s2.a"] != 1 {
				t.Errorf("END = %+v (lsn %d, last event lsn %d), want 3 events: s1.a 2, s2.a 1", end, endLSN, lastLSN)
			}
			if begin.TsMs != commitMs || end.TsMs != commitMs {
				t.Errorf("ts_ms BEGIN %d END %d, want the commit time %d (source.ts_ms)", begin.TsMs, end.TsMs, commitMs)
			}
		})
	}
}

// TestNoTransactionMetadataByDefault: provide.transaction.metadata defaults
// to false, as in Debezium: "transaction" is null and nothing goes to the
// transaction topic.
func TestNoTransactionMetadataByDefault(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"}))
	if cfg.ProvideTransactionMetadata {
		t.Fatal("provide.transaction.metadata is on by default")
	}
	c, _ := runConnector(t, cfg, b, nil)
	waitStreaming(t, c)
	if _, err := db.Pool.Exec(context.Background(), insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.Read(t, b, "orders.orders", 1, 20*time.Second)
	if len(recs) != 1 || !strings.HasSuffix(string(recs[0].Value), `"transaction":null}`) {
		t.Fatalf("records %d; want one ending in \"transaction\":null", len(recs))
	}
	for _, tp := range c.em.Load().topicList() {
		if tp == cfg.TransactionTopic {
			t.Errorf("the connector wrote to %s without provide.transaction.metadata", tp)
		}
	}
}
