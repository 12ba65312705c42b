package cdc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// EventRouter is Debezium's outbox Event Router
// (io.debezium.transforms.outbox.EventRouter): it turns each insert into an
// outbox table into one event on a topic chosen by a column of the row,
// keyed by another, with the payload column as the value. It follows
// Debezium's EventRouterDelegate: deletes and tombstones are dropped,
// updates are dropped with a warning (debezium.op.invalid.behavior), and a
// snapshot read is routed like an insert.
type EventRouter struct {
	alias string
	pred  *Predicate

	fieldID, fieldKey, fieldPayload, fieldTimestamp string
	routeBy                                         string
	routeRe                                         *regexp.Regexp
	routeTemplate                                   string
	tombstoneOnEmpty                                bool
	expandJSON                                      bool
	additional                                      []additionalField
	// invalidOp is debezium.op.invalid.behavior: warn, error or fatal.
	invalidOp string
}

type additionalField struct {
	column, placement, alias string
}

// Topic implements Transform; the router chooses topics per event.
func (r *EventRouter) Topic(topic string) string { return topic }

// newEventRouter reads transforms.<alias>.* with Debezium's defaults
// (EventRouterConfigDefinition).
func newEventRouter(alias, prefix string, get func(k, def string) string, raw map[string]string) (*EventRouter, []string, error) {
	var warnings []string
	r := &EventRouter{
		alias:            alias,
		fieldID:          get(prefix+"table.field.event.id", "id"),
		fieldKey:         get(prefix+"table.field.event.key", "aggregateid"),
		fieldPayload:     get(prefix+"table.field.event.payload", "payload"),
		fieldTimestamp:   get(prefix+"table.field.event.timestamp", ""),
		routeBy:          get(prefix+"route.by.field", "aggregatetype"),
		routeTemplate:    javaReplacement(get(prefix+"route.topic.replacement", "outbox.event.${routedByValue}")),
		invalidOp:        strings.ToLower(get(prefix+"debezium.op.invalid.behavior", "warn")),
		tombstoneOnEmpty: strings.EqualFold(get(prefix+"route.tombstone.on.empty.payload", "false"), "true"),
		expandJSON:       strings.EqualFold(get(prefix+"table.expand.json.payload", "false"), "true"),
	}
	// Java's named groups (?<name>...) are Go's too.
	re, err := regexp.Compile("^(?:" + get(prefix+"route.topic.regex", "(?<routedByValue>.*)") + ")$")
	if err != nil {
		return nil, warnings, fmt.Errorf("route.topic.regex: %w", err)
	}
	r.routeRe = re
	switch r.invalidOp {
	case "warn", "error", "fatal":
	default:
		return nil, warnings, fmt.Errorf("debezium.op.invalid.behavior=%q: want warn, error or fatal", r.invalidOp)
	}
	for _, spec := range splitList(get(prefix+"table.fields.additional.placement", "")) {
		parts := strings.Split(spec, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
			return nil, warnings, fmt.Errorf("table.fields.additional.placement: %q is not column:placement[:alias]", spec)
		}
		f := additionalField{column: parts[0], placement: strings.ToLower(parts[1]), alias: parts[0]}
		if len(parts) == 3 {
			f.alias = parts[2]
		}
		switch f.placement {
		case "header", "envelope":
			r.additional = append(r.additional, f)
		case "partition":
			warnings = append(warnings, fmt.Sprintf("transforms.%s: placement %q of column %s is not supported; the broker's partitioner chooses the partition", alias, f.placement, f.column))
		default:
			return nil, warnings, fmt.Errorf("table.fields.additional.placement: unknown placement %q (want header or envelope)", parts[1])
		}
	}
	if _, ok := raw[prefix+"table.field.event.schema.version"]; ok {
		warnings = append(warnings, fmt.Sprintf("transforms.%s.table.field.event.schema.version is ignored: TrackOps writes no schema version on outbox events", alias))
	}
	return r, warnings, nil
}

// outboxPlan is an EventRouter bound to one captured table: the column
// positions it reads and the transforms that follow it.
type outboxPlan struct {
	r                                   *EventRouter
	id, key, payload, routeBy, tsColumn int
	additional                          []int
	after                               []Transform
	// err is why the router cannot work on this table (a column missing);
	// the first event then fails the connector, as Debezium's task fails.
	err error
}

func (t *table) bindOutbox(r *EventRouter, after []Transform) *outboxPlan {
	p := &outboxPlan{r: r, after: after, key: -1, tsColumn: -1}
	find := func(name string) int {
		for i, c := range t.columns {
			if c.name == name && !c.skip {
				return i
			}
		}
		return -1
	}
	missing := func(what, name string) {
		if p.err == nil {
			p.err = fmt.Errorf("outbox event router %s: table %s.%s has no %s column %q (set transforms.%s.%s)",
				r.alias, t.schema, t.name, what, name, r.alias, map[string]string{
					"event-id": "table.field.event.id", "payload": "table.field.event.payload",
					"route-by": "route.by.field", "timestamp": "table.field.event.timestamp", "additional": "table.fields.additional.placement",
				}[what])
		}
	}
	if p.id = find(r.fieldID); p.id < 0 {
		missing("event-id", r.fieldID)
	}
	if p.payload = find(r.fieldPayload); p.payload < 0 {
		missing("payload", r.fieldPayload)
	}
	if p.routeBy = find(r.routeBy); p.routeBy < 0 {
		missing("route-by", r.routeBy)
	}
	p.key = find(r.fieldKey) // a missing key column gives a null key, as in Debezium
	if r.fieldTimestamp != "" {
		if p.tsColumn = find(r.fieldTimestamp); p.tsColumn < 0 {
			missing("timestamp", r.fieldTimestamp)
		}
	}
	for _, f := range r.additional {
		i := find(f.column)
		if i < 0 {
			missing("additional", f.column)
		}
		p.additional = append(p.additional, i)
	}
	return p
}

// errOutboxUpdate is the failure of debezium.op.invalid.behavior=fatal.
var errOutboxUpdate = errors.New("outbox event router: unexpected update of an outbox row (debezium.op.invalid.behavior=fatal)")

// outboxRecord builds the routed event of an insert (or snapshot read) into
// an outbox table, as EventRouterDelegate.apply does.
func (e *recordEncoder) outboxRecord(p *outboxPlan, ch *change) (*kgo.Record, error) {
	if p.err != nil {
		return nil, p.err
	}
	t, r, row := ch.table, p.r, ch.after
	val := func(i int) (tupleValue, bool) {
		if i < 0 || i >= len(row) || row[i].kind != valueText {
			return tupleValue{}, false
		}
		return row[i], true
	}
	route, ok := val(p.routeBy)
	if !ok {
		return nil, fmt.Errorf("outbox event router %s: %s.%s row has a null %s; cannot route it", r.alias, t.schema, t.name, r.routeBy)
	}
	topic := string(route.data)
	if m := r.routeRe.FindStringSubmatchIndex(topic); m != nil {
		topic = string(r.routeRe.ExpandString(nil, r.routeTemplate, topic, m))
	}
	for _, tr := range p.after {
		topic = tr.Topic(topic)
	}
	rec := &kgo.Record{Topic: topic}

	// Key: the key column as the JsonConverter writes its value.
	if kv, ok := val(p.key); ok {
		c := t.columns[p.key]
		var b []byte
		if e.cfg.KeySchemas {
			k := *c
			k.optional = c.optional
			b = append(b, `{"schema":`...)
			b = append(b, k.schemaJSON(e.cfg, false)...)
			b = append(b, `,"payload":`...)
		}
		b = e.appendValue(b, c, kv.data)
		if e.cfg.KeySchemas {
			b = append(b, '}')
		}
		rec.Key = b
	}

	// Headers: "id" and the header-placed columns, as Kafka Connect's
	// SimpleHeaderConverter writes them (strings as they are).
	if idv, ok := val(p.id); ok {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "id", Value: e.headerValue(t.columns[p.id], idv.data)})
	} else {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "id"})
	}
	envelope := false
	for i, f := range r.additional {
		if f.placement == "envelope" {
			envelope = true
			continue
		}
		h := kgo.RecordHeader{Key: f.alias}
		if v, ok := val(p.additional[i]); ok {
			h.Value = e.headerValue(t.columns[p.additional[i]], v.data)
		}
		rec.Headers = append(rec.Headers, h)
	}

	// Timestamp: the timestamp column, or the event's processing time.
	rec.Timestamp = time.Now()
	if tv, ok := val(p.tsColumn); ok {
		if micros, ok := parseTimestampMicros(tv.data); ok {
			rec.Timestamp = time.UnixMicro(micros)
		} else if ts, err := time.Parse("2006-01-02 15:04:05.999999Z07", string(tv.data)); err == nil {
			rec.Timestamp = ts
		}
	}

	pv, hasPayload := val(p.payload)
	if (!hasPayload || len(bytes.TrimSpace(pv.data)) == 0) && r.tombstoneOnEmpty {
		return rec, nil // route.tombstone.on.empty.payload: a tombstone
	}
	pc := t.columns[p.payload]
	var payload, payloadSchema []byte
	expanded := false
	if hasPayload && r.expandJSON {
		if doc, schema, ok := expandJSON(pv.data); ok {
			payload, payloadSchema, expanded = doc, schema, true
		}
	}
	if !expanded {
		if hasPayload {
			payload = e.appendValue(nil, pc, pv.data)
		} else {
			payload = []byte("null")
		}
		payloadSchema = pc.schemaJSON(e.cfg, false)
	}
	var b []byte
	if !envelope {
		if e.cfg.ValueSchemas {
			b = append(b, `{"schema":`...)
			b = append(b, payloadSchema...)
			b = append(b, `,"payload":`...)
		}
		b = append(b, payload...)
		if e.cfg.ValueSchemas {
			b = append(b, '}')
		}
		rec.Value = b
		return rec, nil
	}
	if e.cfg.ValueSchemas {
		b = append(b, `{"schema":{"type":"struct","fields":[`...)
		b = append(b, withField(payloadSchema, "payload")...)
		for i, f := range r.additional {
			if f.placement == "envelope" {
				b = append(b, ',')
				b = append(b, withField(t.columns[p.additional[i]].schemaJSON(e.cfg, false), f.alias)...)
			}
		}
		b = append(b, `],"optional":false,"name":`...)
		b = appendJSONString(b, topic+".Value")
		b = append(b, `},"payload":`...)
	}
	b = append(b, `{"payload":`...)
	b = append(b, payload...)
	for i, f := range r.additional {
		if f.placement != "envelope" {
			continue
		}
		b = append(b, ',')
		b = appendJSONString(b, f.alias)
		b = append(b, ':')
		if v, ok := val(p.additional[i]); ok {
			b = e.appendValue(b, t.columns[p.additional[i]], v.data)
		} else {
			b = append(b, "null"...)
		}
	}
	b = append(b, '}')
	if e.cfg.ValueSchemas {
		b = append(b, '}')
	}
	rec.Value = b
	return rec, nil
}

// withField adds "field":name to a schema object.
func withField(schema []byte, name string) []byte {
	out := append([]byte(nil), schema[:len(schema)-1]...)
	out = append(out, `,"field":`...)
	out = appendJSONString(out, name)
	return append(out, '}')
}

// headerValue is a column value as Kafka Connect's SimpleHeaderConverter
// writes it: the value's plain string form.
func (e *recordEncoder) headerValue(c *column, v []byte) []byte {
	switch c.kind {
	case kindBool:
		if len(v) > 0 && v[0] == 't' {
			return []byte("true")
		}
		return []byte("false")
	case kindString, kindUUID, kindJSON, kindXML, kindEnum, kindLtree, kindInt, kindFloat, kindNumeric:
		return append([]byte(nil), v...)
	}
	enc := e.appendValue(nil, c, v)
	var s string
	if json.Unmarshal(enc, &s) == nil {
		return []byte(s)
	}
	return enc
}

// expandJSON parses a payload that is a JSON object or array (Debezium's
// table.expand.json.payload) and returns it compacted, null members left
// out (table.json.payload.null.behavior=ignore), with the Kafka Connect
// schema inferred from it.
func expandJSON(text []byte) (doc, schema []byte, ok bool) {
	trimmed := bytes.TrimSpace(text)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil, nil, false
	}
	var kv orderedJSON
	if err := json.Unmarshal(trimmed, &kv); err != nil {
		return nil, nil, false
	}
	doc = kv.encode(nil)
	return doc, kv.schema(false), true
}

// orderedJSON is a JSON value decoded with its object members in document
// order (Jackson keeps them so).
type orderedJSON struct {
	kind    byte // o(bject), a(rray), s(tring), n(umber), b(ool), z (null)
	members []orderedMember
	items   []orderedJSON
	raw     json.RawMessage
}

type orderedMember struct {
	name  string
	value orderedJSON
}

func (o *orderedJSON) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return errors.New("empty JSON value")
	case b[0] == '{':
		o.kind = 'o'
		dec := json.NewDecoder(bytes.NewReader(b))
		if _, err := dec.Token(); err != nil {
			return err
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := tok.(string)
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return err
			}
			var v orderedJSON
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			o.members = append(o.members, orderedMember{name: name, value: v})
		}
	case b[0] == '[':
		o.kind = 'a'
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			return err
		}
		for _, r := range raws {
			var v orderedJSON
			if err := json.Unmarshal(r, &v); err != nil {
				return err
			}
			o.items = append(o.items, v)
		}
	case b[0] == '"':
		o.kind, o.raw = 's', append(json.RawMessage(nil), b...)
	case b[0] == 't' || b[0] == 'f':
		o.kind, o.raw = 'b', append(json.RawMessage(nil), b...)
	case b[0] == 'n':
		o.kind = 'z'
	default:
		o.kind, o.raw = 'n', append(json.RawMessage(nil), b...)
	}
	return nil
}

func (o orderedJSON) encode(b []byte) []byte {
	switch o.kind {
	case 'o':
		b = append(b, '{')
		first := true
		for _, m := range o.members {
			if m.value.kind == 'z' {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, m.name)
			b = append(b, ':')
			b = m.value.encode(b)
		}
		return append(b, '}')
	case 'a':
		b = append(b, '[')
		for i, it := range o.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = it.encode(b)
		}
		return append(b, ']')
	case 'z':
		return append(b, "null"...)
	}
	return append(b, o.raw...)
}

// schema infers a Kafka Connect schema as Debezium's SchemaBuilderUtil
// does: objects are structs, arrays take their first element's schema,
// integers int64, other numbers double.
func (o orderedJSON) schema(optional bool) []byte {
	opt := `,"optional":` + strconv.FormatBool(optional) + `}`
	switch o.kind {
	case 'o':
		b := []byte(`{"type":"struct","fields":[`)
		first := true
		for _, m := range o.members {
			if m.value.kind == 'z' {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, withField(m.value.schema(true), m.name)...)
		}
		b = append(b, ']')
		return append(b, opt...)
	case 'a':
		item := []byte(`{"type":"string","optional":true}`)
		if len(o.items) > 0 {
			item = o.items[0].schema(true)
		}
		b := append([]byte(`{"type":"array","items":`), item...)
		return append(b, opt...)
	case 's':
		return []byte(`{"type":"string"` + opt)
	case 'b':
		return []byte(`{"type":"boolean"` + opt)
	case 'n':
		if _, err := strconv.ParseInt(string(o.raw), 10, 64); err == nil {
			return []byte(`{"type":"int64"` + opt)
		}
		return []byte(`{"type":"double"` + opt)
	}
	return []byte(`{"type":"string"` + opt)
}
