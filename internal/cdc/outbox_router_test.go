package cdc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// outboxRouterConfig is a Debezium outbox configuration for TrackOps' own
// outbox_events table, whose column names differ from the router's
// defaults (id, aggregatetype, aggregateid, payload): the table.field.*
// options map them.
func outboxRouterConfig(kv ...string) map[string]string {
	return with(noRoute, append([]string{
		"table.include.list", "public.outbox_events",
		"transforms", "outbox",
		"transforms.outbox.type", "io.debezium.transforms.outbox.EventRouter",
		"transforms.outbox.table.field.event.id", "id",
		"transforms.outbox.table.field.event.key", "aggregate_id",
		"transforms.outbox.table.field.event.payload", "event_data",
	}, kv...)...)
}

// insertOutbox writes an outbox row as outbox.Write does.
func insertOutbox(t *testing.T, db *postgrestest.Database, id, aggregateID, eventType, data string) {
	t.Helper()
	sqlExec(t, db, `INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, topic, event_data)
		VALUES ('`+id+`', 'order', '`+aggregateID+`', '`+eventType+`', '`+eventType+`', '`+data+`')`)
}

// TestOutboxEventRouterOnOutboxEvents runs Debezium's Outbox Event Router
// configuration over TrackOps' outbox_events. Expected behaviour from
// Debezium's EventRouterDelegate.apply and EventRouterConfigDefinition and
// the Outbox Event Router documentation: one event per insert (and snapshot
// read) on the topic route.topic.replacement makes of the route.by.field
// value, keyed by table.field.event.key, the payload column as the value
// (a JSON string unless table.expand.json.payload), an "id" header with the
// event id, additional fields as headers or envelope fields; updates and
// deletes (with their tombstones) produce nothing;
// route.tombstone.on.empty.payload turns an empty payload into a tombstone.
func TestOutboxEventRouterOnOutboxEvents(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	const (
		idA = "6f1c7f2e-2a4b-4c1d-9f0e-0a1b2c3d4e51"
		idB = "6f1c7f2e-2a4b-4c1d-9f0e-0a1b2c3d4e52"
		idC = "6f1c7f2e-2a4b-4c1d-9f0e-0a1b2c3d4e53"
		idD = "6f1c7f2e-2a4b-4c1d-9f0e-0a1b2c3d4e54"
	)
	dataA := `{"specversion":"1.0","type":"ORDER_CREATED","subject":"order-1","data":{"total":"12.50","note":null}}`
	insertOutbox(t, db, idA, "order-1", "ORDER_CREATED", dataA) // before the connectors: a snapshot read

	// 1: payload only, routed by event_type to Debezium's default outbox.event.<value>.
	startParity(t, db, b, outboxRouterConfig(
		"transforms.outbox.route.by.field", "event_type",
		"transforms.outbox.table.fields.additional.placement", "event_type:header:eventType"))
	// 2: expanded JSON, an envelope field, a header, tombstones for empty
	// payloads, routed by aggregate_type through route.topic.replacement.
	startParity(t, db, b, outboxRouterConfig(
		"topic.prefix", "outbox2", "database.server.name", "", "snapshot.mode", "no_data",
		"transforms.outbox.route.by.field", "aggregate_type",
		"transforms.outbox.route.topic.replacement", "${routedByValue}.events",
		"transforms.outbox.table.expand.json.payload", "true",
		"transforms.outbox.table.fields.additional.placement", "event_type:envelope:type,aggregate_id:header",
		"transforms.outbox.route.tombstone.on.empty.payload", "true"))

	dataB := `{"specversion":"1.0","type":"ORDER_CREATED","subject":"order-2","data":{"total":"7.00"}}`
	insertOutbox(t, db, idB, "order-2", "ORDER_CREATED", dataB)
	// The relay's bookkeeping updates and pruning deletes publish nothing.
	sqlExec(t, db, `UPDATE outbox_events SET attempts = attempts + 1, last_error = 'broker unavailable'`,
		`DELETE FROM outbox_events WHERE id = '`+idA+`'`)
	insertOutbox(t, db, idC, "order-3", "ORDER_CANCELLED", `{"data":{"reason":"x"}}`)
	insertOutbox(t, db, idD, "order-4", "ORDER_CREATED", ``)

	created := kafkatest.Read(t, b, "outbox.event.ORDER_CREATED", 3, 20*time.Second)
	cancelled := kafkatest.Read(t, b, "outbox.event.ORDER_CANCELLED", 1, 20*time.Second)
	if len(created) != 3 || len(cancelled) != 1 {
		t.Fatalf("outbox.event.ORDER_CREATED has %d records (want A, B, D), ORDER_CANCELLED %d (want C)", len(created), len(cancelled))
	}
	for i, w := range []struct{ key, id, data string }{{"order-1", idA, dataA}, {"order-2", idB, dataB}, {"order-4", idD, ""}} {
		r := created[i]
		var value string
		if err := json.Unmarshal(r.Value, &value); err != nil || value != w.data {
			t.Errorf("event %d value %s, want the payload column as a JSON string %q", i, r.Value, w.data)
		}
		if string(r.Key) != `"`+w.key+`"` {
			t.Errorf("event %d key %s, want %q (the key column as a JSON string)", i, r.Key, w.key)
		}
		if h, _ := header(r, "id"); h != w.id {
			t.Errorf("event %d id header %q, want %s", i, h, w.id)
		}
		if h, _ := header(r, "eventType"); h != "ORDER_CREATED" {
			t.Errorf("event %d eventType header %q", i, h)
		}
	}

	routed := kafkatest.Read(t, b, "order.events", 3, 20*time.Second)
	if len(routed) != 3 {
		t.Fatalf("order.events has %d records, want B, C and D's tombstone", len(routed))
	}
	var env struct {
		Payload json.RawMessage `json:"payload"`
		Type    string          `json:"type"`
	}
	if err := json.Unmarshal(routed[0].Value, &env); err != nil || env.Type != "ORDER_CREATED" ||
		string(env.Payload) != `{"specversion":"1.0","type":"ORDER_CREATED","subject":"order-2","data":{"total":"7.00"}}` {
		t.Errorf("expanded envelope %s", routed[0].Value)
	}
	if h, _ := header(routed[0], "aggregate_id"); h != "order-2" || string(routed[0].Key) != `"order-2"` {
		t.Errorf("aggregate_id header %q key %s", h, routed[0].Key)
	}
	if err := json.Unmarshal(routed[1].Value, &env); err != nil || env.Type != "ORDER_CANCELLED" || string(env.Payload) != `{"data":{"reason":"x"}}` {
		t.Errorf("second envelope %s", routed[1].Value)
	}
	if routed[2].Value != nil || string(routed[2].Key) != `"order-4"` {
		t.Errorf("empty payload: value %s key %s, want a tombstone keyed \"order-4\"", routed[2].Value, routed[2].Key)
	}
	// null members are left out of an expanded payload (table.json.payload.null.behavior=ignore).
	doc, _, ok := expandJSON([]byte(dataA))
	if !ok || strings.Contains(string(doc), "note") {
		t.Errorf("expanded %s still has the null member", doc)
	}
}

// TestOutboxRouterConfiguration checks the router's defaults and errors.
func TestOutboxRouterConfiguration(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	cfg := parse(t, rawConfig(t, db, outboxRouterConfig()))
	r, ok := cfg.Transforms[0].(*EventRouter)
	if !ok {
		t.Fatalf("transform %T", cfg.Transforms[0])
	}
	// EventRouterConfigDefinition's defaults.
	if r.routeBy != "aggregatetype" || r.invalidOp != "warn" || r.tombstoneOnEmpty || r.expandJSON {
		t.Errorf("defaults %+v", r)
	}
	if m := r.routeRe.FindStringSubmatchIndex("ORDER"); m == nil || string(r.routeRe.ExpandString(nil, r.routeTemplate, "ORDER", m)) != "outbox.event.ORDER" {
		t.Errorf("default route.topic.replacement does not give outbox.event.<value>")
	}
	for k, v := range map[string]string{
		"transforms.outbox.table.fields.additional.placement": "type:sideways",
		"transforms.outbox.route.topic.regex":                 "(",
		"transforms.outbox.debezium.op.invalid.behavior":      "explode",
	} {
		if _, _, err := ParseConfig("x", rawConfig(t, db, outboxRouterConfig(k, v))); !IsConfigError(err) {
			t.Errorf("%s=%s: %v, want a configuration error", k, v, err)
		}
	}
}
