// Package edgetest builds TrackOps' HTTP edge for one test: the real router
// over the real handlers of every route that takes text from a client
// (orders, inventory, flags and config, login, users, API keys, dead
// letters, audit log, outbox ops), on a private PostgreSQL database, Redis
// key prefix and in-process broker. Requests run as an anonymous admin (no
// authenticator), so every route is reachable; the login route still
// checks credentials.
package edgetest

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/trackops/trackops/internal/audit"
	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// Edge is the router of one test and the database behind it.
type Edge struct {
	DB      *postgrestest.Database
	Handler http.Handler
}

// fastPasswords keep argon2id cheap; production uses the defaults.
var fastPasswords = auth.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// New builds the edge for t.
func New(t testing.TB) *Edge {
	t.Helper()
	db := postgrestest.New(t)
	stores := cachetest.New(t)
	broker := kafkatest.New(t)
	producer := kafkatest.NewProducer(t, broker)
	log := slog.New(slog.DiscardHandler)
	authSvc := auth.NewService(db.Pool, stores.Sessions, auth.Options{Logger: log, Password: fastPasswords})
	t.Cleanup(authSvc.Close)
	orders := order.NewService(db.Pool)
	inv := inventory.NewService(db.Pool)
	var routes []httpapi.Route
	routes = append(routes, order.NewHandlers(orders).Routes()...)
	routes = append(routes, inventory.NewHandlers(inv).Routes()...)
	routes = append(routes, cache.NewHandlers(cache.NewSettings(db.Pool, stores), stores).Routes()...)
	routes = append(routes, authSvc.Routes()...)
	routes = append(routes, audit.NewReader(db.Pool).Routes()...)
	routes = append(routes, dlq.NewHandlers(dlq.NewStore(db.Pool), dlq.NewReplayer(db.Pool, producer, dlq.ReplayerConfig{Logger: log})).Routes()...)
	routes = append(routes, outbox.NewHandlers(db.Pool, nil).Routes()...)
	h := httpapi.NewRouter(httpapi.RouterConfig{Logger: log, MaxBodyBytes: 64 << 10}, routes)
	return &Edge{DB: db, Handler: h}
}
