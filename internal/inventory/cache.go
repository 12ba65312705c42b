package inventory

import (
	"context"

	"github.com/trackops/trackops/internal/cache"
)

// RedisCache keeps stock items in the Redis inventory store (db 1) under
// inventory:{sku}, as JSON stamped with the item's version.
type RedisCache struct {
	stores *cache.Stores
	items  *cache.JSONCache[Item]
}

// NewRedisCache returns the inventory cache over stores.
func NewRedisCache(stores *cache.Stores) *RedisCache {
	return &RedisCache{stores: stores, items: cache.NewJSONCache(stores.Inventory, func(it *Item) int64 { return it.Version })}
}

// Item implements Cache.
func (c *RedisCache) Item(ctx context.Context, sku string, load func(context.Context) (*Item, error)) (*Item, error) {
	return c.items.Get(ctx, c.stores.InventoryKey(sku), load)
}

// InvalidateItem implements Cache; failures are replayed by the cache when
// Redis answers again.
func (c *RedisCache) InvalidateItem(ctx context.Context, sku string, version int64) {
	_ = c.items.Invalidate(ctx, version, c.stores.InventoryKey(sku))
}
