package app

import (
	"context"

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

// buildCache serves the cache and system-settings endpoints and, under the
// outbox strategy with the orders role, runs the consumer that refreshes
// cached orders on their events. Under the cdc strategy the order domain's
// change stream refreshes the cache itself, once per change, in the process
// that runs the cdc role (buildCDC).
func (a *App) buildCache(orders *order.Service) error {
	a.routes = append(a.routes, cache.NewHandlers(cache.NewSettings(a.pool, a.stores), a.stores).Routes()...)
	if orders == nil || a.cfg.EventStrategy == config.StrategyCDC {
		return nil
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: a.kafkaOptions("trackops-cache"),
		Group:   cacheInvalidationGroup,
		Topics:  []string{events.OrderStatusUpdated, events.OrderCancelled},
		Handler: a.traceHandler(cacheInvalidationGroup, func(ctx context.Context, rec *kgo.Record) error {
			env, err := events.Decode(rec.Value)
			if err != nil {
				return err
			}
			return orders.RefreshFromEvent(ctx, env)
		}),
		Logger: a.log.With("component", "cache"),
	})
	if err != nil {
		return err
	}
	a.workers = append(a.workers, worker{name: "cache-invalidation", run: c.Run})
	return nil
}
