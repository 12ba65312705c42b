package app

import (
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/order"
)

// buildCache serves the cache and system-settings endpoints and, under the
// outbox strategy with the orders role, runs the order cache refresh
// (order.CacheGroup) on the order events. Under the cdc strategy the order
// domain's change stream refreshes the cache itself, once per change, in
// the process that runs the cdc role (buildCDC).
func (a *App) buildCache(orders *order.Service) error {
	a.routes = append(a.routes, cache.NewHandlers(cache.NewSettings(a.pool, a.stores), a.stores).Routes()...)
	if orders == nil || a.cfg.EventStrategy == config.StrategyCDC {
		return nil
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: a.kafkaOptions("trackops-cache"),
		Group:   order.CacheGroup,
		Topics:  order.CacheTopics,
		Events:  orders.RefreshFromEvent,
		Logger:  a.log.With("component", "cache"),
	})
	if err != nil {
		return err
	}
	a.addConsumer("cache-refresh", c)
	return nil
}
