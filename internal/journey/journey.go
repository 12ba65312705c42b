// Package journey lays out every hop of one order on one timeline: the API
// request that placed or changed it, the commit, the outbox row and its
// acknowledgement by Kafka (or, under the cdc strategy, the change captured
// from the WAL), every event the order caused with its topic, partition and
// offset, every consumer that handled each event (when, how many attempts,
// dead letters and redrives), the stock reservations and each status change
// — with the time between hops.
//
// It is a read model across boxes: it reads what the order, outbox, inbox,
// inventory, dead-letter and audit tables already record, and writes
// nothing. What the hot path records for it is one set of columns on the
// inbox insert (see internal/inbox); everything else was there already.
package journey

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres"
)

// ErrNotFound means no order has the requested id.
var ErrNotFound = errors.New("order not found")

// Hop kinds, in the order they are listed when two hops share a timestamp.
const (
	KindRequest     = "request"
	KindCommit      = "commit"
	KindStatus      = "status"
	KindOutbox      = "outbox"
	KindPublished   = "published"
	KindCDCChange   = "cdc_change"
	KindHandled     = "handled"
	KindDeadLetter  = "dead_letter"
	KindRedrive     = "redrive"
	KindReservation = "reservation"
)

var kindRank = map[string]int{KindRequest: 0, KindCommit: 1, KindStatus: 2, KindOutbox: 3, KindPublished: 4,
	KindCDCChange: 5, KindHandled: 6, KindDeadLetter: 7, KindRedrive: 8, KindReservation: 9}

// Journey is one order's path through the platform.
type Journey struct {
	Order OrderSummary `json:"order"`
	// Strategy is how the order's own events are published: outbox or cdc.
	Strategy     string        `json:"strategy"`
	Hops         []Hop         `json:"hops"`
	Events       []Event       `json:"events"`
	Reservations []Reservation `json:"reservations"`
	// Gaps say what the journey could not show, and why.
	Gaps []string `json:"gaps,omitempty"`
}

// OrderSummary is the order as it is now.
type OrderSummary struct {
	ID           string    `json:"id"`
	CustomerID   string    `json:"customer_id"`
	Status       string    `json:"status"`
	Version      int       `json:"version"`
	TotalAmount  string    `json:"total_amount"`
	Currency     string    `json:"currency"`
	CancelReason string    `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Hop is one step on the timeline. Which optional fields are set depends on
// Kind.
type Hop struct {
	At    time.Time `json:"at"`
	Kind  string    `json:"kind"`
	Title string    `json:"title"`
	// SincePreviousMS is the time since the hop before (absent on the first).
	SincePreviousMS *float64 `json:"since_previous_ms,omitempty"`
	// SinceStartMS is the time since the first hop.
	SinceStartMS float64 `json:"since_start_ms"`

	EventID       string     `json:"event_id,omitempty"`
	EventType     string     `json:"event_type,omitempty"`
	Actor         string     `json:"actor,omitempty"`
	CorrelationID string     `json:"correlation_id,omitempty"`
	RequestID     string     `json:"request_id,omitempty"`
	Method        string     `json:"method,omitempty"`
	Path          string     `json:"path,omitempty"`
	HTTPStatus    int        `json:"http_status,omitempty"`
	DurationMS    float64    `json:"duration_ms,omitempty"`
	FromStatus    string     `json:"from_status,omitempty"`
	ToStatus      string     `json:"to_status,omitempty"`
	Reason        string     `json:"reason,omitempty"`
	Version       int        `json:"version,omitempty"`
	Topic         string     `json:"topic,omitempty"`
	Partition     *int32     `json:"partition,omitempty"`
	Offset        *int64     `json:"offset,omitempty"`
	Timestamp     *time.Time `json:"timestamp,omitempty"`
	LSN           string     `json:"lsn,omitempty"`
	Op            string     `json:"op,omitempty"`
	Consumer      string     `json:"consumer,omitempty"`
	Group         string     `json:"group,omitempty"`
	Attempts      *int       `json:"attempts,omitempty"`
	Outcome       string     `json:"outcome,omitempty"`
	Error         string     `json:"error,omitempty"`
	DeadLetterID  int64      `json:"dead_letter_id,omitempty"`
	SKU           string     `json:"sku,omitempty"`
	Quantity      int64      `json:"quantity,omitempty"`
}

// Event is one event the order caused, with where it went and who handled it.
type Event struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Topic is where it is (or will be) published.
	Topic string `json:"topic"`
	// Source is outbox (a row of outbox_events) or cdc (built by the order
	// change stream from a committed transaction; its id is derived).
	Source        string     `json:"source"`
	CorrelationID string     `json:"correlation_id,omitempty"`
	CreatedAt     *time.Time `json:"created_at,omitempty"`
	// OutboxState is pending, published or failed (outbox events only).
	OutboxState string `json:"outbox_state,omitempty"`
	// PublishedAt is when the relay marked the row published, after Kafka
	// acknowledged it and the broker made it durable.
	PublishedAt *time.Time `json:"published_at,omitempty"`
	Attempts    int        `json:"attempts,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Partition, Offset and Timestamp locate the record in Kafka; PositionFrom
	// says who reported them: outbox (the relay's acknowledgement) or
	// consumer (the record a consumer handled).
	Partition    *int32     `json:"partition,omitempty"`
	Offset       *int64     `json:"offset,omitempty"`
	Timestamp    *time.Time `json:"timestamp,omitempty"`
	PositionFrom string     `json:"position_from,omitempty"`
	// Handlings are the consumers that applied the event.
	Handlings   []inbox.Handling `json:"handlings"`
	DeadLetters []DeadLetter     `json:"dead_letters,omitempty"`
}

// DeadLetter is one time the event landed in a dead-letter topic.
type DeadLetter struct {
	ID               int64        `json:"id"`
	Topic            string       `json:"topic"`
	Partition        int32        `json:"partition"`
	Offset           int64        `json:"offset"`
	ConsumerGroup    string       `json:"consumer_group"`
	ExceptionClass   string       `json:"exception_class"`
	ExceptionMessage string       `json:"exception_message"`
	Attempts         *int         `json:"attempts,omitempty"`
	Status           string       `json:"status"`
	ReplayCount      int          `json:"replay_count"`
	ReceivedAt       time.Time    `json:"received_at"`
	ReplayedAt       *time.Time   `json:"replayed_at,omitempty"`
	Actions          []dlq.Action `json:"actions,omitempty"`
}

// Reservation is the stock held (or once held) for one SKU of the order.
type Reservation struct {
	SKU       string    `json:"sku"`
	Quantity  int64     `json:"quantity"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Options configure a Builder.
type Options struct {
	// Strategy is the platform's event strategy (outbox or cdc): under cdc
	// the order's own events come from the order change stream, not the outbox.
	Strategy string
	// ChangeFinder, when set, locates the CDC change records of the order
	// in Kafka (under the cdc strategy).
	ChangeFinder ChangeFinder
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// ChangeFinder finds the change records of one order in the CDC change
// topic, near the given times (one per committed change of the order).
type ChangeFinder interface {
	FindChanges(ctx context.Context, orderID string, near []time.Time) ([]Change, error)
}

// Change is one change event of the order read from the change topic.
type Change struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Op        string
	LSN       string
	Version   int
}

// Builder assembles journeys from the database.
type Builder struct {
	db   postgres.Querier
	dlq  *dlq.Store
	opts Options
}

// NewBuilder returns a Builder reading db.
func NewBuilder(db postgres.Querier, opts Options) *Builder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Strategy == "" {
		opts.Strategy = "outbox"
	}
	return &Builder{db: db, dlq: dlq.NewStore(db), opts: opts}
}

type historyRow struct {
	from, to, reason, actor string
	version                 int
	at                      time.Time
	// corr is the request's correlation id, which the order events built
	// from the change stream carry.
	corr string
}

type outboxRow struct {
	id, typ, topic, corr, lastError string
	createdAt                       time.Time
	processed, failed               bool
	publishedAt                     *time.Time
	attempts                        int
	partition                       *int32
	offset                          *int64
}

// Build returns the journey of the order id, or ErrNotFound.
func (b *Builder) Build(ctx context.Context, id uuid.UUID) (*Journey, error) {
	j := &Journey{Strategy: b.opts.Strategy, Hops: []Hop{}, Events: []Event{}, Reservations: []Reservation{}}

	batch := &pgx.Batch{}
	batch.Queue(`SELECT id::text, customer_id, status, version, total_amount::text, currency, coalesce(cancel_reason, ''),
		created_at, updated_at FROM orders WHERE id = $1`, id)
	batch.Queue(`SELECT coalesce(from_status, ''), to_status, coalesce(reason, ''), actor, version, changed_at,
		coalesce(correlation_id, '') FROM order_status_history WHERE order_id = $1 ORDER BY id`, id)
	// outbox_status joins each event to the relay's ledger (published,
	// Kafka's position and ack) and retry queue.
	batch.Queue(`SELECT seq, id::text, event_type, topic, coalesce(headers->>'correlation_id', ''), created_at, processed,
		failed, published_at, attempts, coalesce(last_error, ''), kafka_partition, kafka_offset
		FROM outbox_status WHERE aggregate_id = $1 ORDER BY seq`, id.String())
	batch.Queue(`SELECT sku, quantity, status, created_at, updated_at FROM reservations WHERE order_id = $1 ORDER BY sku`, id)
	br := b.db.SendBatch(ctx, batch)
	defer br.Close()

	o := &j.Order
	err := br.QueryRow().Scan(&o.ID, &o.CustomerID, &o.Status, &o.Version, &o.TotalAmount, &o.Currency, &o.CancelReason,
		&o.CreatedAt, &o.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("journey: read order %s: %w", id, err)
	}
	rows, _ := br.Query()
	history, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (historyRow, error) {
		var h historyRow
		err := r.Scan(&h.from, &h.to, &h.reason, &h.actor, &h.version, &h.at, &h.corr)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("journey: read status history: %w", err)
	}
	rows, _ = br.Query()
	outboxRows, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
		var x outboxRow
		var seq int64
		err := r.Scan(&seq, &x.id, &x.typ, &x.topic, &x.corr, &x.createdAt, &x.processed, &x.failed, &x.publishedAt,
			&x.attempts, &x.lastError, &x.partition, &x.offset)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("journey: read outbox rows: %w", err)
	}
	rows, _ = br.Query()
	j.Reservations, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Reservation, error) {
		var rs Reservation
		err := r.Scan(&rs.SKU, &rs.Quantity, &rs.Status, &rs.CreatedAt, &rs.UpdatedAt)
		return rs, err
	})
	if err != nil {
		return nil, fmt.Errorf("journey: read reservations: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("journey: %w", err)
	}

	b.addEvents(j, history, outboxRows)
	if err := b.addHandlings(ctx, j); err != nil {
		return nil, err
	}
	if err := b.addDeadLetters(ctx, j); err != nil {
		return nil, err
	}
	if err := b.addRequests(ctx, j, history); err != nil {
		return nil, err
	}
	b.addStatusHops(j, history)
	b.addEventHops(j)
	b.addReservationHops(j)
	if err := b.addChanges(ctx, j, history); err != nil {
		j.Gaps = append(j.Gaps, "CDC change records could not be read from Kafka: "+err.Error())
	}
	finish(j)
	return j, nil
}

// addEvents lists the order's events: its outbox rows, and under the cdc
// strategy the events the order change stream derives from each committed change.
func (b *Builder) addEvents(j *Journey, history []historyRow, rows []outboxRow) {
	orderEventInOutbox := false
	for _, r := range rows {
		ev := Event{ID: r.id, Type: r.typ, Topic: r.topic, Source: "outbox", CorrelationID: r.corr,
			Attempts: r.attempts, LastError: r.lastError, Handlings: []inbox.Handling{}}
		created := r.createdAt
		ev.CreatedAt = &created
		switch {
		case r.failed:
			ev.OutboxState = "failed"
		case r.processed:
			ev.OutboxState = "published"
		default:
			ev.OutboxState = "pending"
		}
		ev.PublishedAt = r.publishedAt
		if r.partition != nil && r.offset != nil {
			ev.Partition, ev.Offset, ev.PositionFrom = r.partition, r.offset, "outbox"
		}
		if isOrderEvent(r.typ) {
			orderEventInOutbox = true
		}
		j.Events = append(j.Events, ev)
	}
	if b.opts.Strategy == "cdc" && !orderEventInOutbox {
		for _, h := range history {
			typ := events.OrderStatusUpdated
			switch {
			case h.from == "":
				typ = events.OrderCreated
			case h.to == "CANCELLED":
				typ = events.OrderCancelled
			}
			at := h.at
			id := order.EventID(uuid.MustParse(j.Order.ID), typ, h.version)
			corr := h.corr
			if corr == "" {
				corr = id
			}
			j.Events = append(j.Events, Event{ID: id, Type: typ, Topic: typ, Source: "cdc", CorrelationID: corr,
				CreatedAt: &at, Handlings: []inbox.Handling{}})
		}
	}
	if b.opts.Strategy != "cdc" && !orderEventInOutbox && len(history) > 0 {
		j.Gaps = append(j.Gaps, "the order's outbox rows are gone (published rows are pruned after TRACKOPS_OUTBOX_RETENTION); their events cannot be listed")
	}
}

func isOrderEvent(typ string) bool {
	return typ == events.OrderCreated || typ == events.OrderStatusUpdated || typ == events.OrderCancelled
}

func (b *Builder) addHandlings(ctx context.Context, j *Journey) error {
	ids := make([]string, len(j.Events))
	for i, ev := range j.Events {
		ids[i] = ev.ID
	}
	hs, err := inbox.Handlings(ctx, b.db, ids)
	if err != nil {
		return fmt.Errorf("journey: %w", err)
	}
	byEvent := map[string][]inbox.Handling{}
	for _, h := range hs {
		byEvent[h.EventID] = append(byEvent[h.EventID], h)
	}
	for i := range j.Events {
		ev := &j.Events[i]
		if h := byEvent[ev.ID]; h != nil {
			ev.Handlings = h
		}
		if ev.Partition != nil {
			continue
		}
		// The record a consumer read is where the event is in Kafka.
		for _, h := range ev.Handlings {
			if h.Partition != nil && h.Offset != nil && h.Topic != nil && *h.Topic == ev.Topic {
				ev.Partition, ev.Offset, ev.Timestamp, ev.PositionFrom = h.Partition, h.Offset, h.RecordTimestamp, "consumer"
				break
			}
		}
	}
	return nil
}

func (b *Builder) addDeadLetters(ctx context.Context, j *Journey) error {
	msgs, actions, err := b.dlq.ByKey(ctx, []byte(j.Order.ID))
	if err != nil {
		return fmt.Errorf("journey: %w", err)
	}
	byID := map[string]int{}
	for i, ev := range j.Events {
		byID[ev.ID] = i
	}
	for _, m := range msgs {
		d := DeadLetter{ID: m.ID, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, ConsumerGroup: m.ConsumerGroup,
			ExceptionClass: m.ExceptionClass, ExceptionMessage: m.ExceptionMessage, Attempts: m.Attempts, Status: m.Status,
			ReplayCount: m.ReplayCount, ReceivedAt: m.ReceivedAt, ReplayedAt: m.ReplayedAt, Actions: actions[m.ID]}
		i, ok := byID[m.HeaderValue(events.HeaderEventID)]
		if !ok {
			// A record of the order that is none of its known events
			// (e.g. a change event of the cdc strategy): list it on its own.
			j.Events = append(j.Events, Event{ID: m.HeaderValue(events.HeaderEventID), Type: m.HeaderValue(events.HeaderEventType),
				Topic: m.OriginalTopic, Source: "dead_letter", Handlings: []inbox.Handling{}})
			i = len(j.Events) - 1
			byID[j.Events[i].ID] = i
		}
		j.Events[i].DeadLetters = append(j.Events[i].DeadLetters, d)
	}
	return nil
}

// addRequests finds the API requests that changed the order in the audit
// log: the one that placed it (its request id is the correlation id its
// events carry) and those that changed its status (their path names it).
// Each is looked up only near the time of the change it made, which the
// audit log's time index answers cheaply.
func (b *Builder) addRequests(ctx context.Context, j *Journey, history []historyRow) error {
	if len(history) == 0 {
		return nil
	}
	corr := ""
	for _, ev := range j.Events {
		if ev.Type == events.OrderCreated && ev.Source == "outbox" {
			corr = ev.CorrelationID
		}
	}
	prefix := "/api/v1/orders/" + j.Order.ID + "/"
	var (
		conds []string
		args  = []any{corr, []string{prefix + "status", prefix + "cancel"}, history[0].actor}
	)
	for _, h := range history {
		args = append(args, h.at.Add(-2*time.Second), h.at.Add(30*time.Second))
		conds = append(conds, fmt.Sprintf("at BETWEEN $%d AND $%d", len(args)-1, len(args)))
	}
	rows, err := b.db.Query(ctx, `SELECT at, actor, method, route, target, status, request_id, duration_ms FROM audit_log
		WHERE (`+strings.Join(conds, " OR ")+`)
		  AND ((route = '/api/v1/orders' AND method = 'POST' AND (request_id = $1 OR ($1 = '' AND actor = $3 AND status = 201)))
		       OR target = ANY($2))
		ORDER BY at LIMIT 100`, args...)
	if err != nil {
		return fmt.Errorf("journey: read audit log: %w", err)
	}
	type req struct {
		at                               time.Time
		actor, method, route, target, id string
		status                           int
		ms                               float64
	}
	reqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (req, error) {
		var q req
		err := r.Scan(&q.at, &q.actor, &q.method, &q.route, &q.target, &q.status, &q.id, &q.ms)
		return q, err
	})
	if err != nil {
		return fmt.Errorf("journey: read audit log: %w", err)
	}
	creates := 0
	for _, q := range reqs {
		if q.route == "/api/v1/orders" {
			creates++
		}
	}
	for _, q := range reqs {
		if q.route == "/api/v1/orders" && corr == "" && creates != 1 {
			continue // not identifiable without a correlation id
		}
		title := "API request " + q.method + " " + q.target
		start := q.at.Add(-time.Duration(q.ms * float64(time.Millisecond)))
		hop := Hop{At: start, Kind: KindRequest, Title: title, Actor: q.actor, RequestID: q.id, Method: q.method,
			Path: q.target, HTTPStatus: q.status, DurationMS: q.ms}
		if q.route == "/api/v1/orders" {
			hop.CorrelationID = corr
			if hop.CorrelationID == "" {
				hop.CorrelationID = q.id
			}
		}
		j.Hops = append(j.Hops, hop)
	}
	if creates == 0 || (corr == "" && creates != 1) {
		j.Gaps = append(j.Gaps, "the request that placed the order is not in the audit log (placed by a script or test without the API, or its audit row is gone)")
	}
	return nil
}

func (b *Builder) addStatusHops(j *Journey, history []historyRow) {
	for i, h := range history {
		if i == 0 {
			j.Hops = append(j.Hops, Hop{At: h.at, Kind: KindCommit, Title: "Order committed as " + h.to, ToStatus: h.to,
				Actor: h.actor, Version: h.version})
			continue
		}
		j.Hops = append(j.Hops, Hop{At: h.at, Kind: KindStatus, Title: "Status " + h.from + " → " + h.to,
			FromStatus: h.from, ToStatus: h.to, Reason: h.reason, Actor: h.actor, Version: h.version})
	}
}

func (b *Builder) addEventHops(j *Journey) {
	for _, ev := range j.Events {
		name := ev.Type
		if name == "" {
			name = "A record of the order" // e.g. a malformed one, without an event_type header
		}
		if ev.Source == "outbox" && ev.CreatedAt != nil {
			j.Hops = append(j.Hops, Hop{At: *ev.CreatedAt, Kind: KindOutbox, Title: "Outbox row " + ev.Type + " written",
				EventID: ev.ID, EventType: ev.Type, Topic: ev.Topic, CorrelationID: ev.CorrelationID, Outcome: ev.OutboxState,
				Error: ev.LastError})
		}
		if ev.PublishedAt != nil {
			j.Hops = append(j.Hops, Hop{At: *ev.PublishedAt, Kind: KindPublished, Title: ev.Type + " marked published: Kafka acknowledged it and made it durable",
				EventID: ev.ID, EventType: ev.Type, Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset,
				Attempts: intPtr(ev.Attempts)})
		} else if ev.Source == "cdc" && ev.Timestamp != nil {
			j.Hops = append(j.Hops, Hop{At: *ev.Timestamp, Kind: KindPublished, Title: ev.Type + " published by the CDC connector's order change stream",
				EventID: ev.ID, EventType: ev.Type, Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset})
		}
		for _, h := range ev.Handlings {
			hop := Hop{At: h.HandledAt, Kind: KindHandled, Title: name + " handled by " + h.Consumer, EventID: ev.ID,
				EventType: ev.Type, Consumer: h.Consumer, Partition: h.Partition, Offset: h.Offset, Attempts: h.Attempts,
				Outcome: "applied", Timestamp: h.RecordTimestamp}
			if h.Group != nil {
				hop.Group = *h.Group
			}
			if h.Topic != nil {
				hop.Topic = *h.Topic
			}
			j.Hops = append(j.Hops, hop)
		}
		for _, d := range ev.DeadLetters {
			j.Hops = append(j.Hops, Hop{At: d.ReceivedAt, Kind: KindDeadLetter, Title: name + " dead-lettered by " + d.ConsumerGroup,
				EventID: ev.ID, EventType: ev.Type, Topic: d.Topic, Partition: &d.Partition, Offset: &d.Offset,
				Group: d.ConsumerGroup, Attempts: d.Attempts, Outcome: d.Status, Error: d.ExceptionClass + ": " + d.ExceptionMessage,
				DeadLetterID: d.ID})
			for _, a := range d.Actions {
				if !strings.HasPrefix(a.Action, "replay") || strings.Contains(a.Action, "dry") {
					continue
				}
				j.Hops = append(j.Hops, Hop{At: a.At, Kind: KindRedrive, Title: name + " redriven to " + ev.Topic,
					EventID: ev.ID, EventType: ev.Type, Actor: a.Actor, Topic: ev.Topic, Outcome: a.Action, DeadLetterID: d.ID})
			}
		}
	}
}

func (b *Builder) addReservationHops(j *Journey) {
	for _, r := range j.Reservations {
		j.Hops = append(j.Hops, Hop{At: r.CreatedAt, Kind: KindReservation, Title: fmt.Sprintf("Reserved %d × %s", r.Quantity, r.SKU),
			SKU: r.SKU, Quantity: r.Quantity, Outcome: "reserved"})
		if r.Status != "reserved" && r.UpdatedAt.After(r.CreatedAt) {
			j.Hops = append(j.Hops, Hop{At: r.UpdatedAt, Kind: KindReservation, Title: fmt.Sprintf("Reservation of %d × %s %s", r.Quantity, r.SKU, r.Status),
				SKU: r.SKU, Quantity: r.Quantity, Outcome: r.Status})
		}
	}
}

// addChanges adds the change records of the order's row that the CDC
// connector published, when a ChangeFinder is configured (cdc strategy).
func (b *Builder) addChanges(ctx context.Context, j *Journey, history []historyRow) error {
	if b.opts.Strategy != "cdc" {
		return nil
	}
	if b.opts.ChangeFinder == nil || len(history) == 0 {
		j.Gaps = append(j.Gaps, "CDC change positions (LSN, partition, offset) are not recorded; open the orders.orders topic in the message browser with the order id as key")
		return nil
	}
	near := make([]time.Time, len(history))
	for i, h := range history {
		near[i] = h.at
	}
	changes, err := b.opts.ChangeFinder.FindChanges(ctx, j.Order.ID, near)
	if err != nil {
		return err
	}
	for _, c := range changes {
		p, o, ts := c.Partition, c.Offset, c.Timestamp
		j.Hops = append(j.Hops, Hop{At: c.Timestamp, Kind: KindCDCChange, Title: "Change captured from the WAL (op " + c.Op + ")",
			Topic: c.Topic, Partition: &p, Offset: &o, Timestamp: &ts, LSN: c.LSN, Op: c.Op, Version: c.Version})
	}
	if len(changes) < len(history) {
		j.Gaps = append(j.Gaps, fmt.Sprintf("%d of %d changes of the order were found in the change topic within the scan budget", len(changes), len(history)))
	}
	return nil
}

// finish sorts the hops by time and fills in the time between them.
func finish(j *Journey) {
	sort.SliceStable(j.Hops, func(a, b int) bool {
		ha, hb := j.Hops[a], j.Hops[b]
		if !ha.At.Equal(hb.At) {
			return ha.At.Before(hb.At)
		}
		return kindRank[ha.Kind] < kindRank[hb.Kind]
	})
	for i := range j.Hops {
		j.Hops[i].SinceStartMS = ms(j.Hops[i].At.Sub(j.Hops[0].At))
		if i > 0 {
			d := ms(j.Hops[i].At.Sub(j.Hops[i-1].At))
			j.Hops[i].SincePreviousMS = &d
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func intPtr(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}
