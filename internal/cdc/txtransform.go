package cdc

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TxTransform derives records from whole committed transactions, beside
// the change events the connector writes. It is how a domain turns the
// change stream into its own events without reading anything back from the
// database: the connector decodes the WAL itself, knows where each
// transaction begins and commits, and hands the transform the rows the
// transaction wrote.
//
// Delivery follows the change events': the slot is confirmed past a
// transaction only once Kafka has acknowledged every record of it — change
// events and derived records alike — and its AfterAck has returned. After a
// crash the unconfirmed transactions are streamed again and the transform
// sees them again, so derived records must be deterministic (same
// transaction, same records, same ids) for consumers to deduplicate.
// Snapshot reads are not transactions: the transform never sees them.
type TxTransform interface {
	// Captures reports whether the transform needs the changes of
	// schema.table, one of the connector's captured tables. Only those are
	// held until the commit, so a transaction of other tables costs no
	// memory however large it is.
	Captures(schema, table string) bool
	// Transaction is called on the stream's goroutine at each commit of a
	// transaction that changed a table Captures accepted. An error stops
	// the connector run (it restarts and streams the transaction again), so
	// it is for failures worth retrying; data the transform cannot use is
	// its own to skip or report.
	Transaction(ctx context.Context, tx *Transaction) (Derived, error)
}

// Derived is what a TxTransform makes of one transaction.
type Derived struct {
	// Records are produced after the transaction's change events, with the
	// connector's producer; a topic is created on first use.
	Records []*kgo.Record
	// AfterAck, when not nil, runs once Kafka has acknowledged every record
	// of the transaction, on a goroutine of its own; the slot is not
	// confirmed past the transaction until it returns. Its ctx ends a
	// few seconds after the connector is stopped.
	AfterAck func(ctx context.Context)
}

// Transaction is one committed transaction as the transform sees it.
type Transaction struct {
	// XID is the transaction id (source.txId of its change events).
	XID uint64
	// BeginLSN is the position of the transaction's first change in the
	// WAL; CommitLSN that of its commit record; EndLSN the end of the
	// commit record, the position the slot is confirmed to.
	BeginLSN, CommitLSN, EndLSN uint64
	// CommitTime is when the transaction committed (source.ts_ms).
	CommitTime time.Time
	// Changes are the row changes of the captured tables the transform
	// asked for, in the order the transaction made them.
	Changes []Change
}

// Op is a change's operation, as Debezium's "op" names it.
type Op string

// Operations a transform sees.
const (
	OpCreate   Op = "c"
	OpUpdate   Op = "u"
	OpDelete   Op = "d"
	OpTruncate Op = "t"
)

// Change is one row change of a transaction.
type Change struct {
	Op            Op
	Schema, Table string
	// LSN is the change's position in the WAL (source.lsn).
	LSN uint64
	// Before is the old row: the whole row under REPLICA IDENTITY FULL,
	// the key columns under DEFAULT when the key changed, else empty. After
	// is the new row (empty for deletes and truncates).
	Before, After Row
}

// Value is one column of a row image, in PostgreSQL's text output format
// as the replication connection renders it (UTC timestamps, ISO dates).
type Value struct {
	Text string
	Null bool
	// Unavailable marks an unchanged TOAST value PostgreSQL did not send
	// (its table's replica identity is not FULL).
	Unavailable bool
}

// Row is a row image: column values by name.
type Row struct {
	cols *rowColumns
	vals []Value
}

// rowColumns maps a table's column names to their position in its rows.
type rowColumns struct {
	index map[string]int
}

func newRowColumns(t *table) *rowColumns {
	rc := &rowColumns{index: make(map[string]int, len(t.columns))}
	for i, c := range t.columns {
		rc.index[c.name] = i
	}
	return rc
}

// Empty reports whether the row has no image (e.g. After of a delete).
func (r Row) Empty() bool { return r.cols == nil }

// Value returns the named column; ok is false when the row has no such
// column.
func (r Row) Value(column string) (v Value, ok bool) {
	if r.cols == nil {
		return Value{}, false
	}
	i, ok := r.cols.index[column]
	if !ok || i >= len(r.vals) {
		return Value{}, false
	}
	return r.vals[i], true
}

// Text returns the named column's text; ok is false when the column is
// missing, NULL or unavailable.
func (r Row) Text(column string) (string, bool) {
	v, ok := r.Value(column)
	if !ok || v.Null || v.Unavailable {
		return "", false
	}
	return v.Text, true
}

// NewRow builds a row image from column values, for transforms' tests.
func NewRow(values map[string]*string) Row {
	rc := &rowColumns{index: make(map[string]int, len(values))}
	vals := make([]Value, 0, len(values))
	for name, v := range values {
		rc.index[name] = len(vals)
		if v == nil {
			vals = append(vals, Value{Null: true})
		} else {
			vals = append(vals, Value{Text: *v})
		}
	}
	return Row{cols: rc, vals: vals}
}

// txBuffer collects, between a transaction's BEGIN and COMMIT, the changes
// a transform asked for.
type txBuffer struct {
	tx Transaction
}

// rowOf copies a tuple out of the message buffer (the decoder's values
// point into it until the next receive). An unchanged TOAST value is taken
// from old when old has it (REPLICA IDENTITY FULL).
func rowOf(rc *rowColumns, vals, old []tupleValue) Row {
	if vals == nil {
		return Row{}
	}
	out := make([]Value, len(vals))
	for i, v := range vals {
		switch v.kind {
		case valueText:
			out[i] = Value{Text: string(v.data)}
		case valueUnchanged:
			if i < len(old) && old[i].kind == valueText {
				out[i] = Value{Text: string(old[i].data)}
			} else {
				out[i] = Value{Unavailable: true}
			}
		default:
			out[i] = Value{Null: true}
		}
	}
	return Row{cols: rc, vals: out}
}
