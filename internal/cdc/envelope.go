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
	// header is an extra record header (the primary-key change markers).
	header *kgo.RecordHeader
}

// encoder builds Debezium records; it is used by one goroutine.
type recordEncoder struct {
	encoder
	scratch []byte
}

func newRecordEncoder(cfg *Config) *recordEncoder {
	return &recordEncoder{encoder: encoder{cfg: cfg}, scratch: make([]byte, 0, 4096)}
}

// record encodes ch as a Kafka record (value and key), with its headers.
func (e *recordEncoder) record(ch *change) *kgo.Record {
	t := ch.table
	rec := &kgo.Record{Topic: t.topic}
	rec.Key = e.key(t, ch)

	b := e.scratch[:0]
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
	b = appendProcessingTime(b, time.Now())
	b = append(b, `,"transaction":null}`...)
	if t.envelopeSchema != nil {
		b = append(b, '}')
	}
	rec.Value = append(make([]byte, 0, len(b)), b...)
	e.scratch = b
	if len(unavailable) > 0 {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderUnavailableColumns, Value: []byte(strings.Join(unavailable, ","))})
	}
	return rec
}

// appendProcessingTime writes the envelope's ts_ms, ts_us and ts_ns: when
// the connector processed the event (Debezium 2.6+ writes all three).
func appendProcessingTime(b []byte, now time.Time) []byte {
	ns := now.UnixNano()
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
	b = appendProcessingTime(b, time.Now())
	b = append(b, `,"transaction":null}`...)
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

func (e *recordEncoder) source(b []byte, t *table, ch *change) []byte {
	b = append(b, t.sourceHead...)
	b = strconv.AppendInt(b, ch.commitTime.UnixMilli(), 10)
	b = append(b, `,"snapshot":"`...)
	b = append(b, ch.snapshot...)
	b = append(b, '"')
	b = append(b, t.sourceMid...)
	b = append(b, `,"sequence":"[`...)
	if ch.lastCommitLSN == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, `\"`...)
		b = strconv.AppendUint(b, ch.lastCommitLSN, 10)
		b = append(b, `\"`...)
	}
	b = append(b, `,\"`...)
	b = strconv.AppendUint(b, ch.lsn, 10)
	b = append(b, `\"]"`...)
	// ts_us and ts_ns (Debezium 2.6+): the commit time, which PostgreSQL
	// keeps in microseconds.
	us := ch.commitTime.UnixMicro()
	b = append(b, `,"ts_us":`...)
	b = strconv.AppendInt(b, us, 10)
	b = append(b, `,"ts_ns":`...)
	b = strconv.AppendInt(b, us*1000, 10)
	b = append(b, t.sourceTail...)
	b = append(b, `,"txId":`...)
	b = strconv.AppendUint(b, ch.txID, 10)
	b = append(b, `,"lsn":`...)
	b = strconv.AppendUint(b, ch.lsn, 10)
	return append(b, `,"xmin":null}`...)
}

// key encodes the primary-key columns of the event's row (the after image,
// or the before image of a delete); nil for a table without a primary key.
func (e *recordEncoder) key(t *table, ch *change) []byte {
	if len(t.key) == 0 {
		return nil
	}
	vals := ch.after
	if vals == nil {
		vals = ch.before
	}
	if vals == nil {
		return nil
	}
	b := make([]byte, 0, 64)
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
		if idx >= len(vals) || vals[idx].kind != valueText {
			b = append(b, "null"...)
			continue
		}
		data := vals[idx].data
		if c.mask >= 0 || c.truncate >= 0 {
			data = applyColumnMappers(c, data)
		}
		b = e.appendValue(b, c, data)
	}
	b = append(b, '}')
	if t.keySchema != nil {
		b = append(b, '}')
	}
	return b
}

// Headers Debezium puts on the two events of a primary-key change
// (RelationalChangeRecordEmitter.PK_UPDATE_NEWKEY_FIELD and _OLDKEY_FIELD).
const (
	HeaderNewKey = "__debezium.newkey"
	HeaderOldKey = "__debezium.oldkey"
)

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
		if idx >= len(vals) || vals[idx].kind != valueText {
			b = append(b, "null"...)
			continue
		}
		data := vals[idx].data
		if c.mask >= 0 || c.truncate >= 0 {
			data = applyColumnMappers(c, data)
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
