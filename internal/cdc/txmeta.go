package cdc

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Transaction metadata (provide.transaction.metadata) as Debezium 2.7's
// PostgreSQL connector writes it: a BEGIN record when a transaction starts
// and an END record when it commits, on <topic.prefix>.transaction, and a
// "transaction" block in each of its change events. Every id is
// "<txId>:<lsn>", the LSN being that of the message the record stands for
// (Debezium's PostgresTransactionStructMaker appends the last seen LSN), so
// BEGIN, each event and END carry different ids that share the txId part.

// Connect schemas of the BEGIN/END records (Debezium's SchemaFactory:
// TransactionMetadataKey, TransactionMetadataValue, event.collection).
const (
	txKeySchema = `{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],` +
		`"optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1}`
	txValueSchema = `{"type":"struct","fields":[{"type":"string","optional":false,"field":"status"},` +
		`{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":true,"field":"event_count"},` +
		`{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"data_collection"},` +
		`{"type":"int64","optional":false,"field":"event_count"}],"optional":true,"name":"event.collection","version":1},` +
		`"optional":true,"field":"data_collections"},{"type":"int64","optional":false,"field":"ts_ms"}],` +
		`"optional":false,"name":"io.debezium.connector.common.TransactionMetadataValue","version":1}`
)

// txMeta counts the change events of the transaction being streamed.
type txMeta struct {
	xid   uint64
	total int64
	// perCollection counts events by "schema.table", in order of first
	// appearance, for END's data_collections.
	perCollection map[string]int64
	collections   []string
}

func newTxMeta(xid uint64) *txMeta {
	return &txMeta{xid: xid, perCollection: map[string]int64{}}
}

// count numbers one more event of t: its total_order and data_collection_order.
func (m *txMeta) count(t *table) (total, inCollection int64) {
	name := t.schema + "." + t.name
	n, seen := m.perCollection[name]
	if !seen {
		m.collections = append(m.collections, name)
	}
	n++
	m.perCollection[name] = n
	m.total++
	return m.total, n
}

// appendTxID writes "<xid>:<lsn>".
func appendTxID(b []byte, xid, lsn uint64) []byte {
	b = strconv.AppendUint(b, xid, 10)
	b = append(b, ':')
	return strconv.AppendUint(b, lsn, 10)
}

// txRecord encodes a BEGIN (m == nil) or END record of transaction xid at lsn.
func (e *emitter) txRecord(xid, lsn uint64, commit time.Time, m *txMeta) *kgo.Record {
	cfg := &e.c.cfg
	id := appendTxID(nil, xid, lsn)

	var key []byte
	if cfg.KeySchemas {
		key = append(key, `{"schema":`+txKeySchema+`,"payload":`...)
	}
	key = append(key, `{"id":"`...)
	key = append(key, id...)
	key = append(key, `"}`...)
	if cfg.KeySchemas {
		key = append(key, '}')
	}

	var v []byte
	if cfg.ValueSchemas {
		v = append(v, `{"schema":`+txValueSchema+`,"payload":`...)
	}
	if m == nil {
		v = append(v, `{"status":"BEGIN","id":"`...)
		v = append(v, id...)
		v = append(v, `","event_count":null,"data_collections":null`...)
	} else {
		v = append(v, `{"status":"END","id":"`...)
		v = append(v, id...)
		v = append(v, `","event_count":`...)
		v = strconv.AppendInt(v, m.total, 10)
		v = append(v, `,"data_collections":[`...)
		for i, name := range m.collections {
			if i > 0 {
				v = append(v, ',')
			}
			v = append(v, `{"data_collection":`...)
			v = appendJSONString(v, name)
			v = append(v, `,"event_count":`...)
			v = strconv.AppendInt(v, m.perCollection[name], 10)
			v = append(v, '}')
		}
		v = append(v, ']')
	}
	v = append(v, `,"ts_ms":`...)
	v = strconv.AppendInt(v, commit.UnixMilli(), 10)
	v = append(v, '}')
	if cfg.ValueSchemas {
		v = append(v, '}')
	}
	return &kgo.Record{Topic: cfg.TransactionTopic, Key: key, Value: v}
}
