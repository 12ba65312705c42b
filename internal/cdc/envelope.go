package cdc

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderUnavailableColumns names the columns an update's "after" image
// leaves out because PostgreSQL did not send their unchanged TOAST values
// (table without REPLICA IDENTITY FULL); consumers merge those from their
// previous copy instead of overwriting it with a placeholder.
const HeaderUnavailableColumns = "trackops.unavailable.columns"

// Tuple value kinds as pgoutput sends them.
const (
	valueNull      = 'n'
	valueUnchanged = 'u'
	valueText      = 't'
)

// tupleValue is one column value of a row in PostgreSQL text format.
type tupleValue struct {
	kind byte
	data []byte
}

// change is one row event ready to be encoded.
type change struct {
	op     byte // c, u, d, r
	table  *table
	before []tupleValue // nil when there is no before image
	after  []tupleValue
	// commitTime is the transaction's commit time (source.ts_ms).
	commitTime time.Time
	txID       uint64
	lsn        uint64
	// lastCommitLSN is the previous transaction's commit LSN, the first
	// element of source.sequence (0 writes null).
	lastCommitLSN uint64
	snapshot      string
	// txOrder and txCollectionOrder are the event's total_order and
	// data_collection_order in its transaction (provide.transaction.metadata);
	// 0 writes "transaction": null.
	txOrder, txCollectionOrder int64
	// header is an extra record header (the primary-key change markers).
	header *kgo.RecordHeader
	// processed is when the connector handled the event: the envelope's
	// ts_ms/ts_us/ts_ns and the record's timestamp (zero: the clock now).
	processed time.Time
}

// processedAt is ch.processed, or the clock now when unset.
func (ch *change) processedAt() time.Time {
	if ch.processed.IsZero() {
		return time.Now()
	}
	return ch.processed
}

// recordEncoder builds Debezium records; it is used by one goroutine.
//
// Records and the bytes of their keys and values are carved from blocks
// that are used again once Kafka has acknowledged every record carved from
// them (recordBlock): encoding a change allocates nothing, and a large
// transaction no longer feeds the garbage collector a new chunk every few
// dozen changes (TestEncodingAllocatesNoMemoryPerChange). Numbers that
// repeat across a transaction's events are formatted once per transaction.
type recordEncoder struct {
	encoder
	scratch []byte
	blk     *recordBlock
	// largest is the size of the largest key and value encoded so far.
	largest int
	// src holds the parts of "source" one transaction shares.
	src sourceParts
}

func newRecordEncoder(cfg *Config) *recordEncoder {
	return &recordEncoder{encoder: encoder{cfg: cfg}, scratch: make([]byte, 0, 4096)}
}

// record encodes ch as a Kafka record (value and key), with its headers.
func (e *recordEncoder) record(ch *change) *kgo.Record {
	t := ch.table
	processed := ch.processedAt()
	// The key, then the value, written straight into the block: room for
	// twice the largest record so far is made first, so a record rarely
	// outgrows the block it starts in.
	blk := e.block(min(2*e.largest, blockMaxCopy))
	rec := blk.carve()
	rec.Topic, rec.Timestamp = t.topic, processed
	b, hasKey := e.appendKey(blk.free(), t, ch)
	keyLen := len(b)
	if t.envelopeSchema != nil {
		b = append(b, `{"schema":`...)
		b = append(b, t.envelopeSchema...)
		b = append(b, `,"payload":`...)
	}
	b = append(b, `{"before":`...)
	var unavailable []string
	if ch.before == nil {
		b = append(b, "null"...)
	} else {
		b, _ = e.row(b, t, ch.before, nil)
	}
	b = append(b, `,"after":`...)
	if ch.after == nil {
		b = append(b, "null"...)
	} else {
		b, unavailable = e.row(b, t, ch.after, ch.before)
	}
	b = append(b, `,"source":`...)
	b = e.source(b, t, ch)
	b = append(b, `,"op":"`...)
	b = append(b, ch.op)
	b = append(b, '"')
	b = appendProcessingTime(b, processed)
	b = appendTransactionBlock(b, ch)
	b = append(b, '}')
	if t.envelopeSchema != nil {
		b = append(b, '}')
	}
	e.largest = max(e.largest, len(b))
	kv := blk.claim(b)
	if hasKey {
		rec.Key = kv[:keyLen:keyLen]
	}
	rec.Value = kv[keyLen:]
	if len(unavailable) > 0 {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderUnavailableColumns, Value: []byte(strings.Join(unavailable, ","))})
	}
	return rec
}

// appendProcessingTime writes the envelope's ts_ms, ts_us and ts_ns: when
// the connector processed the event (Debezium 2.6+ writes all three). The
// nanoseconds are formatted once: the milli- and microseconds of a time
// after 1970 are their leading digits.
func appendProcessingTime(b []byte, now time.Time) []byte {
	ns := now.UnixNano()
	if ns >= 1_000_000 {
		var buf [20]byte
		d := strconv.AppendInt(buf[:0], ns, 10)
		b = append(b, `,"ts_ms":`...)
		b = append(b, d[:len(d)-6]...)
		b = append(b, `,"ts_us":`...)
		b = append(b, d[:len(d)-3]...)
		b = append(b, `,"ts_ns":`...)
		return append(b, d...)
	}
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, ns/1_000_000, 10)
	b = append(b, `,"ts_us":`...)
	b = strconv.AppendInt(b, ns/1_000, 10)
	b = append(b, `,"ts_ns":`...)
	return strconv.AppendInt(b, ns, 10)
}

// truncate encodes a truncate event (op "t"): no key, no row images.
func (e *recordEncoder) truncate(t *table, ch *change) *kgo.Record {
	b := e.scratch[:0]
	if t.envelopeSchema != nil {
		b = append(b, `{"schema":`...)
		b = append(b, t.envelopeSchema...)
		b = append(b, `,"payload":`...)
	}
	b = append(b, `{"before":null,"after":null,"source":`...)
	b = e.source(b, t, ch)
	b = append(b, `,"op":"t"`...)
	b = appendProcessingTime(b, ch.processedAt())
	b = appendTransactionBlock(b, ch)
	b = append(b, '}')
	if t.envelopeSchema != nil {
		b = append(b, '}')
	}
	e.scratch = b
	return &kgo.Record{Topic: t.topic, Value: append(make([]byte, 0, len(b)), b...)}
}

// row writes a row image. A column PostgreSQL sent as "unchanged TOAST" takes
// its value from the old image when there is one (REPLICA IDENTITY FULL);
// otherwise it is written as unavailable.value.placeholder, as Debezium
// does (or left out with trackops.unavailable.value.mode=omit), and
// returned in unavailable.
func (e *recordEncoder) row(b []byte, t *table, vals, old []tupleValue) ([]byte, []string) {
	var unavailable []string
	b = append(b, '{')
	first := true
	for i, c := range t.columns {
		if c.skip {
			continue
		}
		v := tupleValue{kind: valueNull}
		if i < len(vals) {
			v = vals[i]
		}
		if v.kind == valueUnchanged {
			if i < len(old) && old[i].kind == valueText {
				v = old[i]
			} else {
				unavailable = append(unavailable, c.name)
				if e.cfg.OmitUnavailable {
					continue
				}
				if !first {
					b = append(b, ',')
				}
				first = false
				b = append(b, c.jsonName...)
				b = e.appendUnavailable(b, c)
				continue
			}
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, c.jsonName...)
		if v.kind != valueText {
			b = append(b, "null"...)
			continue
		}
		data := v.data
		if c.mask >= 0 || c.truncate >= 0 {
			data = applyColumnMappers(c, data)
		}
		b = e.appendValue(b, c, data)
	}
	return append(b, '}'), unavailable
}

// sourceParts are the formatted numbers of "source" that all events of a
// transaction share: its commit time, the previous commit's LSN and its
// id; forTx renders them again when the transaction changes.
type sourceParts struct {
	commitUs, lastCommit, txID uint64
	valid                      bool
	ms, seq, times, id         []byte
}

func (p *sourceParts) forTx(ch *change) *sourceParts {
	us := uint64(ch.commitTime.UnixMicro())
	if p.valid && p.commitUs == us && p.lastCommit == ch.lastCommitLSN && p.txID == ch.txID {
		return p
	}
	p.commitUs, p.lastCommit, p.txID, p.valid = us, ch.lastCommitLSN, ch.txID, true
	p.ms = strconv.AppendInt(p.ms[:0], ch.commitTime.UnixMilli(), 10)
	if ch.lastCommitLSN == 0 {
		p.seq = append(p.seq[:0], "null"...)
	} else {
		p.seq = append(p.seq[:0], `\"`...)
		p.seq = strconv.AppendUint(p.seq, ch.lastCommitLSN, 10)
		p.seq = append(p.seq, `\"`...)
	}
	// ts_us and ts_ns (Debezium 2.6+): the commit time, which PostgreSQL
	// keeps in microseconds.
	p.times = append(p.times[:0], `,"ts_us":`...)
	p.times = strconv.AppendInt(p.times, int64(us), 10)
	p.times = append(p.times, `,"ts_ns":`...)
	p.times = strconv.AppendInt(p.times, int64(us)*1000, 10)
	p.id = strconv.AppendUint(p.id[:0], ch.txID, 10)
	return p
}

func (e *recordEncoder) source(b []byte, t *table, ch *change) []byte {
	p := e.src.forTx(ch)
	var buf [20]byte
	lsn := strconv.AppendUint(buf[:0], ch.lsn, 10)
	b = append(b, t.sourceHead...)
	b = append(b, p.ms...)
	b = append(b, `,"snapshot":"`...)
	b = append(b, ch.snapshot...)
	b = append(b, '"')
	b = append(b, t.sourceMid...)
	b = append(b, `,"sequence":"[`...)
	b = append(b, p.seq...)
	b = append(b, `,\"`...)
	b = append(b, lsn...)
	b = append(b, `\"]"`...)
	b = append(b, p.times...)
	b = append(b, t.sourceTail...)
	b = append(b, `,"txId":`...)
	b = append(b, p.id...)
	b = append(b, `,"lsn":`...)
	b = append(b, lsn...)
	return append(b, `,"xmin":null}`...)
}

// appendKey appends the key of the event's row — its primary-key columns,
// from the after image or the before image of a delete — and reports
// whether there is one: a table without a primary key has a null key.
func (e *recordEncoder) appendKey(b []byte, t *table, ch *change) ([]byte, bool) {
	if len(t.key) == 0 {
		return b, false
	}
	vals := ch.after
	if vals == nil {
		vals = ch.before
	}
	if vals == nil {
		return b, false
	}
	if t.keySchema != nil {
		b = append(b, `{"schema":`...)
		b = append(b, t.keySchema...)
		b = append(b, `,"payload":`...)
	}
	b = append(b, '{')
	for i, idx := range t.key {
		if i > 0 {
			b = append(b, ',')
		}
		c := t.columns[idx]
		b = append(b, c.jsonName...)
		data, ok := keyText(c, vals, idx)
		if !ok {
			b = append(b, "null"...)
			continue
		}
		b = e.appendValue(b, c, data)
	}
	b = append(b, '}')
	if t.keySchema != nil {
		b = append(b, '}')
	}
	return b, true
}

// appendTransactionBlock writes the envelope's "transaction" field: null, or
// with provide.transaction.metadata Debezium's block, whose id is
// "<txId>:<lsn of this event>" as Debezium's PostgreSQL connector writes it.
func appendTransactionBlock(b []byte, ch *change) []byte {
	if ch.txOrder == 0 {
		return append(b, `,"transaction":null`...)
	}
	b = append(b, `,"transaction":{"id":"`...)
	b = appendTxID(b, ch.txID, ch.lsn)
	b = append(b, `","total_order":`...)
	b = strconv.AppendInt(b, ch.txOrder, 10)
	b = append(b, `,"data_collection_order":`...)
	b = strconv.AppendInt(b, ch.txCollectionOrder, 10)
	return append(b, '}')
}

// Headers Debezium puts on the two events of a primary-key change
// (RelationalChangeRecordEmitter.PK_UPDATE_NEWKEY_FIELD and _OLDKEY_FIELD).
const (
	HeaderNewKey = "__debezium.newkey"
	HeaderOldKey = "__debezium.oldkey"
)

// keyText is the text of key column c, vals[idx], masked and truncated as
// the column's options say; ok is false when the row has no text for it
// (null, or absent).
func keyText(c *column, vals []tupleValue, idx int) (data []byte, ok bool) {
	if idx >= len(vals) || vals[idx].kind != valueText {
		return nil, false
	}
	data = vals[idx].data
	if c.mask >= 0 || c.truncate >= 0 {
		data = applyColumnMappers(c, data)
	}
	return data, true
}

// keyHeader is a row's key as Kafka Connect's SimpleHeaderConverter writes
// a key Struct (Values.append): {"id":1} with strings quoted, only
// backslash and double quote escaped, decimals as plain numbers.
func (e *recordEncoder) keyHeader(t *table, vals []tupleValue) []byte {
	b := []byte{'{'}
	for i, idx := range t.key {
		if i > 0 {
			b = append(b, ',')
		}
		c := t.columns[idx]
		b = appendConnectString(b, c.name)
		b = append(b, ':')
		data, ok := keyText(c, vals, idx)
		if !ok {
			b = append(b, "null"...)
			continue
		}
		if (c.kind == kindNumeric || c.kind == kindMoney) && e.cfg.DecimalHandling == DecimalPrecise && c.scale >= 0 {
			if c.kind == kindMoney {
				data = cleanMoney(data)
			}
			b = append(b, data...) // BigDecimal.toString
			continue
		}
		enc := e.appendValue(nil, c, data)
		var str string
		if len(enc) > 0 && enc[0] == '"' && json.Unmarshal(enc, &str) == nil {
			b = appendConnectString(b, str)
			continue
		}
		b = append(b, enc...)
	}
	return append(b, '}')
}

// appendConnectString quotes s as Kafka Connect's Values.escape does.
func appendConnectString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
