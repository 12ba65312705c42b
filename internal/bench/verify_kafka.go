package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/order"
)

// KafkaVerify configures `trackops verify --kafka`: the topics are read with
// a plain consumer (no group), from the start of each partition to the high
// watermark taken when the check starts, and held against the database.
type KafkaVerify struct {
	// Brokers are the cluster's bootstrap brokers.
	Brokers []string
	// Extra are client options (TLS, SASL).
	Extra []kgo.Opt
	// Strategy is the event strategy: under cdc the order events' ids are
	// derived from (order, type, version), and the change topics are
	// checked too.
	Strategy string
	// Grace leaves out database changes newer than this before the check
	// started: they may still be on their way to Kafka (the outbox-drained
	// and pending checks cover those). Zero means OutboxBound.
	Grace time.Duration
	// ChangeTopicOrders and ChangeTopicItems are the cdc strategy's change
	// topics (default orders.orders and orders.order_items).
	ChangeTopicOrders, ChangeTopicItems string
}

// DerivedEventID is the id the order domain gives the order event of type
// typ at version of orderID (order.EventID), under either strategy.
func DerivedEventID(orderID, typ string, version int) string {
	return order.EventID(uuid.MustParse(orderID), typ, version)
}

// eventKey names one order event: the order, its type and the order's
// version the event describes.
type eventKey struct {
	order   uuid.UUID
	typ     string
	version int
}

// expectedEvent is what the database says an event must look like.
type expectedEvent struct {
	id   uuid.UUID // uuid.Nil when the id is no longer known (outbox row pruned)
	seen bool
}

// partitionRange is where a plain read of one partition starts and stops.
type partitionRange struct{ start, end int64 }

// endOffsets takes the start and high-watermark offsets of topics.
func endOffsets(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]map[int32]partitionRange, error) {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	out := map[string]map[int32]partitionRange{}
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			return // no such topic yet: nothing in it
		}
		if o.Err != nil {
			ferr = fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err)
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]partitionRange{}
		}
		r := partitionRange{end: o.Offset}
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			r.start = s.Offset
		}
		out[o.Topic][o.Partition] = r
	})
	return out, ferr
}

// readTopics streams every record of topics below the ranges' ends to fn,
// holding no record longer than fn does.
func readTopics(ctx context.Context, kv KafkaVerify, ranges map[string]map[int32]partitionRange, fn func(*kgo.Record)) error {
	assign := map[string]map[int32]kgo.Offset{}
	remaining := 0
	for t, ps := range ranges {
		for p, r := range ps {
			if r.end <= r.start {
				continue
			}
			if assign[t] == nil {
				assign[t] = map[int32]kgo.Offset{}
			}
			assign[t][p] = kgo.NewOffset().At(r.start)
			remaining++
		}
	}
	if remaining == 0 {
		return nil
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(kv.Brokers...), kgo.ConsumePartitions(assign),
		kgo.FetchMaxWait(200 * time.Millisecond), kgo.ClientID("trackops-verify")}, kv.Extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	done := map[string]map[int32]bool{}
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read topics: %w", err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("read %s/%d: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(rec *kgo.Record) {
			r := ranges[rec.Topic][rec.Partition]
			if rec.Offset >= r.end || done[rec.Topic][rec.Partition] {
				return
			}
			fn(rec)
			if rec.Offset >= r.end-1 {
				if done[rec.Topic] == nil {
					done[rec.Topic] = map[int32]bool{}
				}
				done[rec.Topic][rec.Partition] = true
				remaining--
			}
		})
	}
	return nil
}

// kafkaChecks holds the database snapshot against the topics.
func (v verifier) kafkaChecks(ctx context.Context, kv KafkaVerify, ranges map[string]map[int32]partitionRange, cutoff time.Time) ([]CheckResult, error) {
	orderEvents, err := v.orderEventsInKafka(ctx, kv, ranges, cutoff)
	if err != nil {
		return nil, err
	}
	out := []CheckResult{orderEvents}
	if kv.Strategy != "cdc" {
		return append(out, skipped("kafka-change-records", "outbox strategy: no change topics")), nil
	}
	changes, err := v.changeRecordsInKafka(ctx, kv, ranges, cutoff)
	if err != nil {
		return nil, err
	}
	return append(out, changes), nil
}

// orderEventsInKafka: every order has its ORDER_CREATED and every status
// change its ORDER_STATUS_UPDATED or ORDER_CANCELLED, matched by order,
// type and version, and by event id where the id is known (the outbox row
// while it exists; derived under the cdc strategy).
func (v verifier) orderEventsInKafka(ctx context.Context, kv KafkaVerify, ranges map[string]map[int32]partitionRange, cutoff time.Time) (CheckResult, error) {
	c := CheckResult{Name: "kafka-order-events", Detail: fmt.Sprintf(
		"every order's ORDER_CREATED and every status change's event is in Kafka (changes before %s)", cutoff.Format(time.RFC3339))}
	typed := map[eventKey]*expectedEvent{}
	rows, err := v.tx.Query(ctx, `SELECT id, 1, 'PENDING' FROM orders WHERE created_at < $1
		UNION ALL
		SELECT order_id, version, to_status FROM order_status_history WHERE from_status IS NOT NULL AND changed_at < $1`, cutoff)
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	var (
		id      uuid.UUID
		version int
		to      string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &version, &to}, func() error {
		typ := events.OrderStatusUpdated
		switch {
		case to == "PENDING":
			typ = events.OrderCreated
		case to == "CANCELLED":
			typ = events.OrderCancelled
		}
		typed[eventKey{order: id, typ: typ, version: version}] = &expectedEvent{}
		return nil
	}); err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	if kv.Strategy == "cdc" {
		for k, e := range typed {
			e.id = uuid.MustParse(DerivedEventID(k.order.String(), k.typ, k.version))
		}
	} else {
		rows, err = v.tx.Query(ctx, `SELECT aggregate_id, event_type, coalesce((event_data::jsonb #>> '{data,version}')::int, 0), id
			FROM outbox_events WHERE event_type = ANY($1)`, []string{events.OrderCreated, events.OrderStatusUpdated, events.OrderCancelled})
		if err != nil {
			return c, fmt.Errorf("check %s: %w", c.Name, err)
		}
		var (
			agg, typ string
			eid      uuid.UUID
		)
		if _, err := pgx.ForEachRow(rows, []any{&agg, &typ, &version, &eid}, func() error {
			oid, err := uuid.Parse(agg)
			if err != nil {
				return nil
			}
			if e, ok := typed[eventKey{order: oid, typ: typ, version: version}]; ok {
				e.id = eid
			}
			return nil
		}); err != nil {
			return c, fmt.Errorf("check %s: %w", c.Name, err)
		}
	}
	wrongID := 0
	err = readTopics(ctx, kv, pick(ranges, events.OrderCreated, events.OrderStatusUpdated, events.OrderCancelled), func(rec *kgo.Record) {
		var env struct {
			ID   string `json:"id"`
			Data struct {
				OrderID string `json:"order_id"`
				Version int    `json:"version"`
			} `json:"data"`
		}
		if json.Unmarshal(rec.Value, &env) != nil {
			return
		}
		oid, err := uuid.Parse(env.Data.OrderID)
		if err != nil {
			return
		}
		e, ok := typed[eventKey{order: oid, typ: rec.Topic, version: env.Data.Version}]
		if !ok || e.seen {
			return
		}
		if e.id != uuid.Nil && env.ID != e.id.String() {
			wrongID++
			return
		}
		e.seen = true
	})
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	for k, e := range typed {
		if !e.seen {
			id := "id unknown (outbox row pruned)"
			if e.id != uuid.Nil {
				id = "event_id=" + e.id.String()
			}
			c.add(fmt.Sprintf("order=%s missing %s version=%d %s", k.order, k.typ, k.version, id), v.opts.MaxListed)
		}
	}
	c.finish()
	if wrongID > 0 {
		c.Detail += fmt.Sprintf(" (%d records matched an order and version under another event id)", wrongID)
	}
	return c, nil
}

// changeRecordsInKafka (cdc strategy): the latest change record of every
// order carries its current version, and every order item has a change
// record.
func (v verifier) changeRecordsInKafka(ctx context.Context, kv KafkaVerify, ranges map[string]map[int32]partitionRange, cutoff time.Time) (CheckResult, error) {
	ordersTopic, itemsTopic := kv.ChangeTopicOrders, kv.ChangeTopicItems
	if ordersTopic == "" {
		ordersTopic = "orders.orders"
	}
	if itemsTopic == "" {
		itemsTopic = "orders.order_items"
	}
	c := CheckResult{Name: "kafka-change-records", Detail: fmt.Sprintf(
		"the latest change record of each order on %s has its current version; each order item is on %s", ordersTopic, itemsTopic)}
	orderVersions := map[uuid.UUID]int{} // order -> current version, for rows not changed since the cutoff
	rows, err := v.tx.Query(ctx, `SELECT id, version FROM orders WHERE updated_at < $1`, cutoff)
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	var (
		id      uuid.UUID
		version int
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &version}, func() error { orderVersions[id] = version; return nil }); err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	items := map[uuid.UUID]bool{}
	rows, err = v.tx.Query(ctx, `SELECT i.id FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.created_at < $1`, cutoff)
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { items[id] = false; return nil }); err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	latest := make(map[uuid.UUID]int, len(orderVersions))
	err = readTopics(ctx, kv, pick(ranges, ordersTopic, itemsTopic), func(rec *kgo.Record) {
		if rec.Value == nil {
			return // tombstone
		}
		var env struct {
			Payload json.RawMessage `json:"payload"`
			After   *struct {
				ID      string          `json:"id"`
				Version json.RawMessage `json:"version"`
			} `json:"after"`
		}
		if json.Unmarshal(rec.Value, &env) != nil {
			return
		}
		if env.After == nil && len(env.Payload) > 0 { // schemas.enable=true
			_ = json.Unmarshal(env.Payload, &env)
		}
		if env.After == nil {
			return
		}
		rid, err := uuid.Parse(env.After.ID)
		if err != nil {
			return
		}
		if rec.Topic == itemsTopic {
			if _, ok := items[rid]; ok {
				items[rid] = true
			}
			return
		}
		if _, ok := orderVersions[rid]; !ok {
			return
		}
		if n, err := strconv.Atoi(string(env.After.Version)); err == nil {
			latest[rid] = n // records of one key arrive in offset order
		}
	})
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	for oid, want := range orderVersions {
		if got, ok := latest[oid]; !ok {
			c.add(fmt.Sprintf("order=%s has no change record on %s (version %d)", oid, ordersTopic, want), v.opts.MaxListed)
		} else if got != want {
			c.add(fmt.Sprintf("order=%s latest change record has version %d, the row has %d", oid, got, want), v.opts.MaxListed)
		}
	}
	for iid, seen := range items {
		if !seen {
			c.add(fmt.Sprintf("order item=%s has no change record on %s", iid, itemsTopic), v.opts.MaxListed)
		}
	}
	c.finish()
	return c, nil
}

func pick(ranges map[string]map[int32]partitionRange, topics ...string) map[string]map[int32]partitionRange {
	out := map[string]map[int32]partitionRange{}
	for _, t := range topics {
		if r, ok := ranges[t]; ok {
			out[t] = r
		}
	}
	return out
}

// prepareKafka takes the topics' offsets before the database snapshot, so
// every change the snapshot holds from before the cutoff had its chance to
// be below them.
func prepareKafka(ctx context.Context, kv KafkaVerify, outboxBound time.Duration) (map[string]map[int32]partitionRange, time.Time, error) {
	grace := kv.Grace
	if grace <= 0 {
		grace = outboxBound
	}
	cutoff := time.Now().Add(-grace)
	opts := append([]kgo.Opt{kgo.SeedBrokers(kv.Brokers...), kgo.ClientID("trackops-verify")}, kv.Extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, cutoff, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	topics := []string{events.OrderCreated, events.OrderStatusUpdated, events.OrderCancelled}
	if kv.Strategy == "cdc" {
		o, i := kv.ChangeTopicOrders, kv.ChangeTopicItems
		if o == "" {
			o = "orders.orders"
		}
		if i == "" {
			i = "orders.order_items"
		}
		topics = append(topics, o, i)
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ranges, err := endOffsets(tctx, kadm.NewClient(cl), topics...)
	return ranges, cutoff, err
}
