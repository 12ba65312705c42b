package app

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/order"
)

// cacheInvalidationGroup keeps the order cache right after changes other
// processes made (or that a crash kept from invalidating at commit).
const cacheInvalidationGroup = "trackops-cache"

// buildCache serves the cache and system-settings endpoints and, with the
// orders role, runs the consumer that invalidates and warms cached orders on
// their events (a change made straight in SQL reaches it through CDC too).
func (a *App) buildCache(orders *order.Service) error {
	a.routes = append(a.routes, cache.NewHandlers(cache.NewSettings(a.pool, a.stores), a.stores).Routes()...)
	// Under the cdc strategy a process that also runs the transformer
	// refreshes the cache from the change stream itself (buildCDC); the
	// events it publishes would only refresh the same orders a second time.
	if orders == nil || (a.cfg.EventStrategy == config.StrategyCDC && a.roles.Has(RoleCDC)) {
		return nil
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: a.kafkaOptions("trackops-cache"),
		Group:   cacheInvalidationGroup,
		Topics:  []string{events.OrderStatusUpdated, events.OrderCancelled},
		Handler: a.traceHandler(cacheInvalidationGroup, func(ctx context.Context, rec *kgo.Record) error {
			return a.invalidateOrderFromEvent(ctx, orders, rec)
		}),
		Logger: a.log.With("component", "cache"),
	})
	if err != nil {
		return err
	}
	a.workers = append(a.workers, worker{name: "cache-invalidation", run: c.Run})
	return nil
}

func (a *App) invalidateOrderFromEvent(ctx context.Context, orders *order.Service, rec *kgo.Record) error {
	env, err := events.Decode(rec.Value)
	if err != nil {
		return err
	}
	var data struct {
		OrderID string `json:"order_id"`
		Version int    `json:"version"`
	}
	if err := env.DecodeData(&data); err != nil {
		return err
	}
	id, err := uuid.Parse(data.OrderID)
	if err != nil {
		return kafka.Permanent(fmt.Errorf("order_id %q: %w", data.OrderID, err))
	}
	a.refreshOrder(ctx, orders, id, data.Version)
	return nil
}

// refreshOrder invalidates the cached order at version and warms it with the
// committed row, so the next read is a hit on fresh data.
func (a *App) refreshOrder(ctx context.Context, orders *order.Service, id uuid.UUID, version int) {
	a.orderCache.InvalidateOrder(ctx, id, version)
	// Warming goes through the versioned set: it can never replace a newer
	// entry, and a failure only leaves the next read a miss.
	_, _ = orders.Get(ctx, id)
}
