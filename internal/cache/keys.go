package cache

import (
	"context"
)

// Key names; docs/cache.md is the reference. Each helper includes the store's
// prefix (the test prefix, and on Redis Cluster the store name).
//
// Every Redis command and Lua script of the cache names one key, so none can
// fail with CROSSSLOT on Redis Cluster. The three views of one order are
// still invalidated and warmed together (one pipeline); on Redis Cluster
// they carry the order id as a hash tag, orders:order:{<id>}, so they live
// in one slot and that pipeline reaches a single master.

// OrderKey is order:{id} in the orders store: the order as the API returns it.
func (s *Stores) OrderKey(id string) string { return s.Orders.Key("order", s.Orders.HashTag(id)) }

// OrderStatusKey is order:status:{id} in the orders store.
func (s *Stores) OrderStatusKey(id string) string {
	return s.Orders.Key("order", "status", s.Orders.HashTag(id))
}

// OrderItemsKey is order:items:{id} in the orders store.
func (s *Stores) OrderItemsKey(id string) string {
	return s.Orders.Key("order", "items", s.Orders.HashTag(id))
}

// OrderKeys are the three keys of one order, in the order OrderViews lists them.
func (s *Stores) OrderKeys(id string) []string {
	return []string{s.OrderKey(id), s.OrderStatusKey(id), s.OrderItemsKey(id)}
}

// InventoryKey is inventory:{sku} in the inventory store.
func (s *Stores) InventoryKey(sku string) string { return s.Inventory.Key("inventory", sku) }

// SessionKey is session:{token-hash} in the sessions store. Store the hash
// of a session token, never the token.
func (s *Stores) SessionKey(tokenHash string) string { return s.Sessions.Key("session", tokenHash) }

// RateLimitKey is ratelimit:{parts...} in the sessions store.
func (s *Stores) RateLimitKey(parts ...string) string {
	return s.Sessions.Key(append([]string{"ratelimit"}, parts...)...)
}

// FlagKey is flag:{name} in the system store.
func (s *Stores) FlagKey(name string) string { return s.System.Key("flag", name) }

// ConfigKey is config:{name} in the system store.
func (s *Stores) ConfigKey(name string) string { return s.System.Key("config", name) }

// MetaKey is cache:meta in the system store: a hash with the run_id of the
// Redis the cache last reconciled with and when.
func (s *Stores) MetaKey() string { return s.System.Key("cache", "meta") }

// HealthKey is health:last in the system store: the last health snapshot.
func (s *Stores) HealthKey() string { return s.System.Key("health", "last") }

// OrderViews are the cached views of one order at one version; nil fields
// are not warmed.
type OrderViews struct {
	Order, Status, Items []byte
}

// InvalidateOrder writes version tombstones on order:{id},
// order:status:{id} and order:items:{id} in one round trip. Call it after
// the commit that produced version, and from order events (outbox) or
// change events (cdc). If warm is not nil, it then loads the views and
// stores those of the version warm returns (refused if older than version).
func (s *Stores) InvalidateOrder(ctx context.Context, id string, version int64, warm func(ctx context.Context) (OrderViews, int64, error)) error {
	var load func(context.Context) ([][]byte, int64, error)
	if warm != nil {
		load = func(ctx context.Context) ([][]byte, int64, error) {
			v, ver, err := warm(ctx)
			return [][]byte{v.Order, v.Status, v.Items}, ver, err
		}
	}
	return s.Orders.versioned.Refresh(ctx, version, s.OrderKeys(id), load)
}

// InvalidateInventory writes a version tombstone on inventory:{sku}, then
// warms it with warm if given (see InvalidateOrder).
func (s *Stores) InvalidateInventory(ctx context.Context, sku string, version int64, warm Loader) error {
	var load func(context.Context) ([][]byte, int64, error)
	if warm != nil {
		load = func(ctx context.Context) ([][]byte, int64, error) {
			v, ver, err := warm(ctx)
			return [][]byte{v}, ver, err
		}
	}
	return s.Inventory.versioned.Refresh(ctx, version, []string{s.InventoryKey(sku)}, load)
}
