package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/outbox"
)

// ConsumerGroup is the Kafka consumer group of the inventory reactions, and
// the default name they claim events under in the inbox.
const ConsumerGroup = "trackops-inventory"

// ConsumedTopics are the topics the inventory reactions consume: an order's
// creation reserves stock, its cancellation releases it, its shipping
// commits it.
var ConsumedTopics = []string{events.OrderCreated, events.OrderCancelled, events.OrderStatusUpdated}

// Actor is how the inventory reactions appear in the stock ledger.
const Actor = "system:inventory"

// errOversold means a conditional reservation matched no row although the
// row was locked and had room: it cannot happen unless the locking is
// broken, and the transaction is rolled back rather than oversell.
var errOversold = errors.New("inventory: conditional reservation matched no row")

// Handler returns the inventory reactions as an events.Handler for the
// Kafka consumer runner, claiming events in the inbox under inboxName
// (normally ConsumerGroup; a second group replaying the same topics under
// the same name changes nothing).
func (s *Service) Handler(inboxName string) events.Handler {
	return func(ctx context.Context, ev events.Envelope) error {
		switch ev.Type {
		case events.OrderCreated:
			return s.Reserve(ctx, inboxName, ev)
		case events.OrderCancelled:
			return s.Release(ctx, inboxName, ev)
		case events.OrderStatusUpdated:
			return s.Commit(ctx, inboxName, ev)
		}
		d, _ := events.DeliveryFrom(ctx)
		return events.Permanent(fmt.Errorf("inventory: unexpected event type %q on topic %s", ev.Type, d.Topic))
	}
}

// Reserve handles ORDER_CREATED: in one transaction it claims the event in
// the inbox, locks the order's SKUs in sorted order, and either reserves
// every line (conditional updates that cannot oversell) and writes
// INVENTORY_RESERVED, or reserves nothing and writes
// INVENTORY_RESERVATION_FAILED naming the SKUs that fell short. A
// redelivered event, or an order cancelled before it was reserved, changes
// nothing.
func (s *Service) Reserve(ctx context.Context, inboxName string, env events.Envelope) error {
	req, err := ReadReservation(env)
	if err != nil {
		return err
	}
	orderID, lines := req.OrderID, req.Lines
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	var (
		changed map[string]int64
		applied bool
		outcome string
	)
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		changed, applied, outcome = nil, false, ""
		now := s.now()
		// One round trip: the claim, the order's row and the stock locks.
		// On a duplicate the other two are no-ops (the order's row exists)
		// or harmless locks released at commit.
		b := &pgx.Batch{}
		inbox.QueueClaim(ctx, b, inboxName, env.ID)
		b.Queue(startOrderSQL, orderID, now)
		b.Queue(lockStockSQL, skus)
		br := tx.SendBatch(ctx, b)
		first, err := inbox.Claimed(br)
		if err != nil {
			_ = br.Close()
			return err
		}
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("record order %s: %w", orderID, err)
		}
		fresh := tag.RowsAffected() == 1
		rows, err := br.Query()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("lock stock: %w", err)
		}
		stock, err := readStock(rows)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		applied = first
		if err != nil || !first || !fresh {
			return err
		}
		if short := Shortfalls(lines, stock); len(short) > 0 {
			outcome = "failed"
			return s.writeFailed(ctx, tx, orderID, short)
		}
		outcome = "reserved"
		out := make([]events.ReservedLine, len(lines))
		for i, l := range lines {
			out[i] = events.ReservedLine{SKU: l.SKU, Quantity: int(l.Quantity)}
		}
		ev, err := events.New(events.InventoryReserved, events.AggregateOrder, orderID.String(),
			events.InventoryReservedData{OrderID: orderID.String(), Lines: out}, logging.CorrelationID(ctx))
		if err != nil {
			return err
		}
		changed, err = s.reserveLines(ctx, tx, orderID, lines, now, ev)
		return err
	})
	if err != nil {
		return fmt.Errorf("reserve stock for order %s: %w", orderID, err)
	}
	s.metrics.count(events.OrderCreated, applied)
	if outcome != "" { // reserved or failed: an event was written
		s.wakeRelay()
		s.metrics.reservations.WithLabelValues(outcome).Inc()
	}
	s.invalidate(ctx, changed)
	return nil
}

// reserveLines moves each line's quantity into reserved with a conditional
// update, records the reservations, marks the order reserved and writes
// the reservation's event to the outbox, in one round trip; it returns the
// items' new versions.
func (s *Service) reserveLines(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, lines []Line, now time.Time, ev events.Event) (map[string]int64, error) {
	b := &pgx.Batch{}
	for _, l := range lines {
		b.Queue(`UPDATE inventory_items SET reserved = reserved + $2, version = version + 1, updated_at = $3
			WHERE sku = $1 AND on_hand - reserved >= $2 RETURNING version`, l.SKU, l.Quantity, now)
	}
	for _, l := range lines {
		b.Queue(`INSERT INTO reservations (order_id, sku, quantity, status, created_at, updated_at) VALUES ($1, $2, $3, 'reserved', $4, $4)`,
			orderID, l.SKU, l.Quantity, now)
	}
	b.Queue(`UPDATE inventory_orders SET state = $2, updated_at = $3 WHERE order_id = $1`, orderID, string(orderReserved), now)
	if err := outbox.Queue(ctx, b, ev); err != nil {
		return nil, err
	}
	br := tx.SendBatch(ctx, b)
	versions := make(map[string]int64, len(lines))
	for _, l := range lines {
		var v int64
		if err := br.QueryRow().Scan(&v); err != nil {
			_ = br.Close()
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, fmt.Errorf("%w (sku %s)", errOversold, l.SKU)
			}
			return nil, fmt.Errorf("reserve %s: %w", l.SKU, err)
		}
		versions[l.SKU] = v
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("record reservations and their event: %w", err)
	}
	return versions, nil
}

func (s *Service) writeFailed(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, short []Shortfall) error {
	lines := make([]events.ShortLine, len(short))
	for i, sf := range short {
		lines[i] = events.ShortLine{SKU: sf.SKU, Requested: int(sf.Requested), Available: int(sf.Available), Reason: sf.Reason}
	}
	ev, err := events.New(events.InventoryReservationFailed, events.AggregateOrder, orderID.String(),
		events.InventoryReservationFailedData{OrderID: orderID.String(), Reason: events.ReasonOutOfStock, Short: lines},
		logging.CorrelationID(ctx))
	if err != nil {
		return err
	}
	return outbox.Write(ctx, tx, ev)
}

// lockOrCloseOrder locks inventory's row of the order and returns its state.
// An order inventory has not seen yet gets a 'cancelled' tombstone when
// closing is true, so a late ORDER_CREATED reserves nothing for it.
func (s *Service) lockOrCloseOrder(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, closing bool) (orderState, error) {
	st, err := s.store.lockOrder(ctx, tx, orderID)
	if err != nil || st != "" || !closing {
		return st, err
	}
	// A concurrent Reserve may hold an uncommitted row for the order: the
	// insert waits for it, and on conflict the row is read (and locked)
	// as that transaction committed it.
	tag, err := tx.Exec(ctx, `INSERT INTO inventory_orders (order_id, state, created_at, updated_at) VALUES ($1, $2, $3, $3)
		ON CONFLICT (order_id) DO NOTHING`, orderID, string(orderCancelled), s.now())
	if err != nil {
		return "", fmt.Errorf("record cancelled order %s: %w", orderID, err)
	}
	if tag.RowsAffected() == 1 {
		return orderCancelled, nil
	}
	return s.store.lockOrder(ctx, tx, orderID)
}

// settleHeld is the frame of the reactions that end an order's hold on
// stock: in one transaction it claims the event in the inbox, locks the
// order's inventory row (closing it when the order never reserved, if
// closeUnknown) and, when the order holds stock, hands its held lines to
// settle; afterwards it counts the outcome and invalidates the items settle
// changed. A redelivered event is a no-op.
func (s *Service) settleHeld(ctx context.Context, inboxName string, env events.Envelope, orderID uuid.UUID,
	closeUnknown bool, onNoHold func(state orderState), settle func(tx pgx.Tx, lines []Line, now time.Time) (map[string]int64, error)) error {
	var (
		changed map[string]int64
		applied bool
	)
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		changed, applied = nil, false
		if inboxName != "" { // "" is a direct call (the sweeper), idempotent by the order's state alone
			first, err := inbox.Claim(ctx, tx, inboxName, env.ID)
			if err != nil || !first {
				return err
			}
		}
		applied = true
		st, err := s.lockOrCloseOrder(ctx, tx, orderID, closeUnknown)
		if err != nil {
			return err
		}
		if st != orderReserved {
			if onNoHold != nil {
				onNoHold(st)
			}
			return nil
		}
		lines, err := s.store.heldLines(ctx, tx, orderID)
		if err != nil {
			return err
		}
		changed, err = settle(tx, lines, s.now())
		return err
	})
	if err != nil {
		return err
	}
	s.metrics.count(env.Type, applied)
	s.invalidate(ctx, changed)
	return nil
}

// Release handles ORDER_CANCELLED: the order's held units go back to stock
// (reserved drops, reservations become released) and INVENTORY_RELEASED is
// written — only when something was held. Idempotent through the inbox.
func (s *Service) Release(ctx context.Context, inboxName string, env events.Envelope) error {
	c, err := ReadCancellation(env)
	if err != nil {
		return err
	}
	return s.release(ctx, inboxName, env, c.OrderID, c.Reason)
}

// ReleaseOrder returns what cancelled order orderID holds to stock, as its
// ORDER_CANCELLED would, and closes the order for inventory (a late
// ORDER_CREATED reserves nothing for it). It is idempotent by the order's
// state alone, so the event arriving later changes nothing. The
// pending-order sweeper calls it right after cancelling an order.
func (s *Service) ReleaseOrder(ctx context.Context, orderID uuid.UUID, reason string) error {
	return s.release(ctx, "", events.Envelope{Type: events.OrderCancelled}, orderID, reason)
}

// Redrive decides an order's reservation now if inventory has not decided
// it yet, exactly as its ORDER_CREATED would: created is that event, which
// the pending-order sweeper rebuilds from an order stuck PENDING (with the
// same derived id); it is claimed in the inbox under RedriveInbox, and
// INVENTORY_RESERVED or _FAILED is written. An order inventory already
// decided, or that was cancelled first, is left as it is.
func (s *Service) Redrive(ctx context.Context, created events.Envelope) error {
	return s.Reserve(ctx, RedriveInbox, created)
}

// RedriveInbox is the name Redrive claims its rebuilt events under.
const RedriveInbox = "trackops-order-sweeper"

func (s *Service) release(ctx context.Context, inboxName string, env events.Envelope, orderID uuid.UUID, reason string) error {
	wrote := false // INVENTORY_RELEASED
	err := s.settleHeld(ctx, inboxName, env, orderID, true, nil, func(tx pgx.Tx, lines []Line, now time.Time) (map[string]int64, error) {
		wrote = false
		b := &pgx.Batch{}
		for _, l := range lines {
			b.Queue(`UPDATE inventory_items SET reserved = reserved - $2, version = version + 1, updated_at = $3
				WHERE sku = $1 RETURNING version`, l.SKU, l.Quantity, now)
		}
		b.Queue(`UPDATE reservations SET status = 'released', updated_at = $2 WHERE order_id = $1 AND status = 'reserved'`, orderID, now)
		b.Queue(`UPDATE inventory_orders SET state = $2, updated_at = $3 WHERE order_id = $1`, orderID, string(orderReleased), now)
		changed, err := runStockBatch(ctx, tx, b, lines, nil)
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		if len(lines) == 0 {
			return changed, nil
		}
		out := make([]events.ReservedLine, len(lines))
		for i, l := range lines {
			out[i] = events.ReservedLine{SKU: l.SKU, Quantity: int(l.Quantity)}
		}
		ev, err := events.New(events.InventoryReleased, events.AggregateOrder, orderID.String(),
			events.InventoryReleasedData{OrderID: orderID.String(), Lines: out, Reason: reason}, logging.CorrelationID(ctx))
		if err != nil {
			return nil, err
		}
		wrote = true
		return changed, outbox.Write(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("release stock of order %s: %w", orderID, err)
	}
	if wrote {
		s.wakeRelay()
	}
	return nil
}

// Commit handles ORDER_STATUS_UPDATED: when the order shipped, its held
// units leave the warehouse (on_hand and reserved both drop, reservations
// become committed, the ledger records each line). Other status changes are
// ignored. Idempotent through the inbox.
func (s *Service) Commit(ctx context.Context, inboxName string, env events.Envelope) error {
	shipped, orderID, err := ReadShipment(env)
	if err != nil {
		return err
	}
	if !shipped {
		s.metrics.reactions.WithLabelValues(events.OrderStatusUpdated, "ignored").Inc()
		return nil
	}
	noHold := func(st orderState) {
		if st == "" {
			slog.WarnContext(ctx, "shipped order has no reservation; nothing to commit", "order_id", orderID)
		}
	}
	err = s.settleHeld(ctx, inboxName, env, orderID, false, noHold, func(tx pgx.Tx, lines []Line, now time.Time) (map[string]int64, error) {
		b := &pgx.Batch{}
		for _, l := range lines {
			b.Queue(`UPDATE inventory_items SET on_hand = on_hand - $2, reserved = reserved - $2, version = version + 1, updated_at = $3
				WHERE sku = $1 RETURNING version, on_hand`, l.SKU, l.Quantity, now)
		}
		b.Queue(`UPDATE reservations SET status = 'committed', updated_at = $2 WHERE order_id = $1 AND status = 'reserved'`, orderID, now)
		b.Queue(`UPDATE inventory_orders SET state = $2, updated_at = $3 WHERE order_id = $1`, orderID, string(orderCommitted), now)
		reason := "shipped with order " + orderID.String()
		changed, err := runStockBatch(ctx, tx, b, lines, func(l Line, onHand int64) ledgerEntry {
			return ledgerEntry{SKU: l.SKU, Delta: -l.Quantity, Reason: reason, Actor: Actor, OrderID: &orderID,
				ResultingOnHand: onHand, At: now}
		})
		if err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
		return changed, nil
	})
	if err != nil {
		return fmt.Errorf("commit stock of order %s: %w", orderID, err)
	}
	return nil
}

// runStockBatch sends b, whose first len(lines) statements are item updates
// returning the new version (and on_hand when ledger is set), and returns
// the versions. When ledger is set, a ledger row per line follows.
func runStockBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch, lines []Line, ledger func(Line, int64) ledgerEntry) (map[string]int64, error) {
	br := tx.SendBatch(ctx, b)
	versions := make(map[string]int64, len(lines))
	entries := make([]ledgerEntry, 0, len(lines))
	for _, l := range lines {
		var v, onHand int64
		dest := []any{&v}
		if ledger != nil {
			dest = append(dest, &onHand)
		}
		if err := br.QueryRow().Scan(dest...); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("update %s: %w", l.SKU, err)
		}
		versions[l.SKU] = v
		if ledger != nil {
			entries = append(entries, ledger(l, onHand))
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		lb := &pgx.Batch{}
		for _, e := range entries {
			queueLedger(lb, e)
		}
		if err := tx.SendBatch(ctx, lb).Close(); err != nil {
			return nil, fmt.Errorf("record ledger: %w", err)
		}
	}
	return versions, nil
}
