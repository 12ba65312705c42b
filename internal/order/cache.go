package order

import (
	"context"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/cache"
)

// RedisCache keeps orders in the Redis orders store (db 2) under
// order:{id}, as JSON stamped with the order's version; invalidation also
// covers order:status:{id} and order:items:{id}.
type RedisCache struct {
	stores *cache.Stores
	orders *cache.JSONCache[Order]
}

// NewRedisCache returns the order cache over stores.
func NewRedisCache(stores *cache.Stores) *RedisCache {
	return &RedisCache{stores: stores, orders: cache.NewJSONCache(stores.Orders, func(o *Order) int64 { return int64(o.Version) })}
}

// Order implements Cache.
func (c *RedisCache) Order(ctx context.Context, id uuid.UUID, load func(context.Context) (*Order, error)) (*Order, error) {
	return c.orders.Get(ctx, c.stores.OrderKey(id.String()), load)
}

// InvalidateOrder implements Cache. A failure is remembered by the cache and
// replayed when Redis answers again, so it needs no handling here.
func (c *RedisCache) InvalidateOrder(ctx context.Context, id uuid.UUID, version int) {
	_ = c.orders.Invalidate(ctx, int64(version), c.stores.OrderKeys(id.String())...)
}
