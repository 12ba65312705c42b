package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// RecentWriters remembers, in the sessions store, which clients sent a
// write request in the last Window, so that their reads can go to the
// primary database instead of a replica that may not have replayed their
// write yet (read-your-writes across every process of the cluster). A
// client is its Authorization header (an API key or session token), kept
// as a hash: key rw:<sha256 prefix>, TTL Window.
type RecentWriters struct {
	store  *Store
	window time.Duration
}

// NewRecentWriters remembers writers for window in stores' sessions store.
// Window should outlast the replica's lag bound (TRACKOPS_DATABASE_READ_MAX_LAG):
// a replica further behind is not read from at all.
func NewRecentWriters(stores *Stores, window time.Duration) *RecentWriters {
	return &RecentWriters{store: stores.Sessions, window: window}
}

func (w *RecentWriters) key(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(auth))
	return w.store.Key("rw", hex.EncodeToString(sum[:12]))
}

// Middleware marks, before serving it, every write request (POST, PUT,
// PATCH, DELETE) of a client as recent, and marks the context of a read
// request of a recent writer with primary (postgres.WithPrimaryReads).
// When Redis cannot answer, a read is sent to the primary: correct, only
// slower. Anonymous requests are left alone.
func (w *RecentWriters) Middleware(primary func(context.Context) context.Context) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			key := w.key(r)
			if key == "" {
				next.ServeHTTP(rw, r)
				return
			}
			ctx := r.Context()
			switch r.Method {
			case http.MethodGet, http.MethodHead:
				n, err := w.store.client.Exists(ctx, key).Result()
				if err != nil || n > 0 {
					r = r.WithContext(primary(ctx))
				}
			case http.MethodOptions:
			default:
				// Before the write, so a read sent as soon as it returns
				// finds the mark. A failure leaves this client's next reads
				// to the replica (the write itself is unaffected).
				_ = w.store.client.Set(ctx, key, 1, w.window).Err()
			}
			next.ServeHTTP(rw, r)
		})
	}
}
