package cache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// Outcomes of Evict.
const (
	EvictEvicted   = "evicted"   // a cached value was removed
	EvictTombstone = "tombstone" // the key holds an invalidation; it is left in place
	EvictMissing   = "missing"   // nothing was cached under the key
)

// evictSrc deletes the key only when it holds a value. A tombstone is what
// guards against the stale set-back race, so it stays: removing a value is
// then exactly what Redis's own eviction does, and just as safe.
var evictScript = redis.NewScript(`-- trackops evict
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if string.sub(cur, 21, 21) == 'V' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 2
`)

// Evict removes the cached value at key (a key of this store, prefix
// included) so the next read loads it from PostgreSQL; see EvictEvicted and
// its siblings for the outcome.
func (v *Versioned) Evict(ctx context.Context, key string) (string, error) {
	if err := v.g.allow(); err != nil {
		return "", err
	}
	n, err := evictScript.Run(ctx, v.store.client, []string{key}).Int()
	v.g.observe(ctx, err)
	if err != nil {
		return "", fmt.Errorf("cache: evict %s: %w", key, err)
	}
	switch n {
	case 1:
		return EvictEvicted, nil
	case 2:
		return EvictTombstone, nil
	}
	return EvictMissing, nil
}

// ErrUnknownStore means a store name is not one of the versioned stores.
var ErrUnknownStore = errors.New("unknown cache store")

// Evict removes one cached value from the named store (inventory, orders or
// system); key is the documented key name without any prefix, such as
// order:{id} or inventory:{sku}. The sessions store holds no row copies and
// cannot be evicted from this way: sign out or revoke a key instead.
func (s *Stores) Evict(ctx context.Context, store, key string) (string, error) {
	for _, st := range s.All() {
		if st.Name() == store && st.versioned != nil {
			return st.versioned.Evict(ctx, st.Key(key))
		}
	}
	return "", ErrUnknownStore
}

type evictRequest struct {
	Store string `json:"store"`
	Key   string `json:"key"`
}

// serveEvict answers POST /api/v1/ops/cache/evict {"store", "key"}.
func (h *Handlers) serveEvict(w http.ResponseWriter, r *http.Request) {
	var req evictRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	var errs validation.Errors
	req.Key = strings.TrimSpace(req.Key)
	if req.Key == "" || len(req.Key) > 512 {
		errs.Add("key", "is required: a key name such as order:<id> or inventory:<sku> (at most 512 characters)")
	}
	if req.Store == "" {
		errs.Add("store", "is required: inventory, orders or system")
	}
	if len(errs) > 0 {
		httpapi.WriteValidation(w, r, errs)
		return
	}
	outcome, err := h.stores.Evict(r.Context(), req.Store, req.Key)
	switch {
	case errors.Is(err, ErrUnknownStore):
		httpapi.WriteValidation(w, r, validation.Errors{{Field: "store", Message: "must be inventory, orders or system (sessions are not a cache of rows)"}})
	case errors.Is(err, ErrUnavailable):
		httpapi.WriteProblem(w, r, http.StatusServiceUnavailable, "the cache is degraded (Redis unreachable); reads are served from PostgreSQL meanwhile")
	case err != nil:
		httpapi.WriteError(w, r, err)
	default:
		httpapi.LoggerFrom(r.Context()).InfoContext(r.Context(), "cache key evicted", "store", req.Store, "key", req.Key,
			"outcome", outcome, "actor", httpapi.PrincipalFrom(r.Context()).Actor())
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"store": req.Store, "key": req.Key, "outcome": outcome})
	}
}
