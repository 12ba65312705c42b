package cache

import "context"

type minVersionKey struct{}

func withMinVersion(ctx context.Context, v int64) context.Context {
	if v <= 0 {
		return ctx
	}
	return context.WithValue(ctx, minVersionKey{}, v)
}

// MinVersion is, inside a Loader run by GetOrLoad, the version the cache
// knows is committed for the key: the version of the invalidation
// tombstone the miss found (0 when it found none). A loader reading a
// replica that lags returns an older version; the cache refuses to store it
// (the tombstone), and the loader should read the primary instead, so the
// caller, too, never gets a version older than one already committed and
// announced.
func MinVersion(ctx context.Context) int64 {
	v, _ := ctx.Value(minVersionKey{}).(int64)
	return v
}
