package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// JSONCache is a read-through cache of values of type T, stored as JSON in a
// versioned store. It adds nothing to Versioned but the encoding, so domain
// packages can cache their types without knowing the entry format.
type JSONCache[T any] struct {
	v       *Versioned
	version func(*T) int64
}

// NewJSONCache caches T in store; version extracts the row version that
// orders writes (the stale set-back guard compares it).
func NewJSONCache[T any](store *Store, version func(*T) int64) *JSONCache[T] {
	return &JSONCache[T]{v: store.Versioned(), version: version}
}

// Get returns the value at key, loading and caching it on a miss. Only
// load's errors are returned; a broken cache falls back to load. When the
// store has a near cache the value may come from it and be shared with other
// callers: it must not be modified.
func (c *JSONCache[T]) Get(ctx context.Context, key string, load func(context.Context) (*T, error)) (*T, error) {
	near := c.v.store.near
	if near == nil || !c.v.g.up() {
		return c.get(ctx, key, load)
	}
	now := time.Now()
	if v, ok := near.lookup(key, now); ok {
		return v.(*T), nil
	}
	slot := near.reserve(key, now)
	val, err := c.get(ctx, key, load)
	if err == nil && val != nil {
		near.fill(key, slot, val, c.version(val), time.Now())
	}
	return val, err
}

func (c *JSONCache[T]) get(ctx context.Context, key string, load func(context.Context) (*T, error)) (*T, error) {
	var loaded *T
	e, err := c.v.GetOrLoad(ctx, key, func(ctx context.Context) ([]byte, int64, error) {
		val, err := load(ctx)
		if err != nil {
			return nil, 0, err
		}
		loaded = val
		b, err := json.Marshal(val)
		if err != nil {
			return nil, 0, fmt.Errorf("encode cached value: %w", err)
		}
		return b, c.version(val), nil
	})
	if err != nil {
		return nil, err
	}
	if loaded != nil {
		return loaded, nil
	}
	var out T
	if err := json.Unmarshal(e.Value, &out); err != nil {
		// An entry this build cannot read: serve from the source instead.
		return load(ctx)
	}
	return &out, nil
}

// Invalidate drops keys, refusing later sets of versions below version.
// Failures are remembered and replayed when Redis is back.
func (c *JSONCache[T]) Invalidate(ctx context.Context, version int64, keys ...string) error {
	return c.v.InvalidateMany(ctx, version, keys...)
}
