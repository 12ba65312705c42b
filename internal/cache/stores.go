// Package cache owns TrackOps' four Redis stores — sessions, inventory,
// orders and system — each with its own TTL. On standalone Redis the stores
// are databases 0–3; on Redis Cluster, which has a single database, they are
// key prefixes.
package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store names and their TTLs, as the seed's multi-database design sets them.
const (
	SessionsTTL  = 30 * time.Minute
	InventoryTTL = time.Hour
	OrdersTTL    = time.Hour
	SystemTTL    = 24 * time.Hour
)

// Store is one logical Redis store: a client, a key prefix and a TTL.
type Store struct {
	name      string
	client    redis.UniversalClient
	prefix    string
	ttl       time.Duration
	db        int // -1 on Redis Cluster
	versioned *Versioned
	near      *Near // nil: reads of the store always go to Redis
}

// Versioned is the store's version-guarded cache-aside view (see Versioned).
// It is nil for the sessions store, whose entries are not row copies.
func (s *Store) Versioned() *Versioned { return s.versioned }

// Near is the store's in-process near cache, or nil when it has none.
func (s *Store) Near() *Near { return s.near }

// DB is the Redis database number of the store, or -1 on Redis Cluster.
func (s *Store) DB() int { return s.db }

// Name is the store's name: sessions, inventory, orders or system.
func (s *Store) Name() string { return s.name }

// Client is the Redis client the store's keys live on.
func (s *Store) Client() redis.UniversalClient { return s.client }

// TTL is how long the store's entries live.
func (s *Store) TTL() time.Duration { return s.ttl }

// Key builds a key in the store from its parts joined by ':', e.g.
// Key("order", id) = "order:<id>" (with the store's prefix, if any).
func (s *Store) Key(parts ...string) string {
	return s.prefix + strings.Join(parts, ":")
}

// HashTag returns id as a Redis Cluster hash tag, "{id}", on Redis Cluster
// and unchanged on standalone Redis. Keys that share a tag share a slot, so
// the cluster keeps them on one node: a pipeline over them is one round
// trip to one master, and they fail over together.
func (s *Store) HashTag(id string) string {
	if s.db < 0 {
		return "{" + id + "}"
	}
	return id
}

// Prefix is what every key of this store starts with ("" on standalone Redis).
func (s *Store) Prefix() string { return s.prefix }

// Stores are the four stores of one TrackOps process.
type Stores struct {
	Sessions  *Store
	Inventory *Store
	Orders    *Store
	System    *Store
	clients   []redis.UniversalClient
	guard     *guard
	cluster   bool
	near      *nearListener
}

// Options tune Open. Zero values take the defaults named on each field.
type Options struct {
	// KeyPrefix is put before every key of every store; tests use it to
	// share one Redis without seeing each other's keys.
	KeyPrefix string
	// OpTimeout bounds every Redis command from the moment it is issued
	// (pool wait, dial and connection set-up included), and a request that
	// lost one command to an unresponsive Redis spends no more (see
	// WithBudget): a hung Redis costs a request about this much before it
	// falls back to PostgreSQL. Default 250 ms.
	OpTimeout time.Duration
	// DialTimeout bounds connecting. Default 500 ms.
	DialTimeout time.Duration
	// FailureThreshold is how many consecutive failed reads or sets put the
	// cache in the degraded state. A failed invalidation degrades at once.
	// Default 3.
	FailureThreshold int
	// ProbeInterval is how often a degraded cache tries to recover.
	// Default 1 s.
	ProbeInterval time.Duration
	// TombstoneTTL is how long an invalidation's version tombstone lives. It
	// must outlast any load (loads are cut at half of it). Default 2 min.
	TombstoneTTL time.Duration
	// MaxPending bounds the invalidations remembered per store while Redis
	// is unreachable; past it the whole store is purged on recovery.
	// Default 10,000.
	MaxPending int
	// Logger receives state changes (degraded, recovered, purged).
	// Default slog.Default().
	Logger *slog.Logger
	// Metrics count the stores' calls; nil counts without exporting.
	Metrics *Metrics
	// NearEntries bounds the in-process near cache in front of the orders
	// store (see Near); 0 turns it off. It is always off on Redis Cluster,
	// where a tracking subscription would be needed on every master.
	NearEntries int
	// NearTTL is the longest a near cache entry is served. Default 10 s.
	NearTTL time.Duration
}

func (o Options) withDefaults() Options {
	if o.OpTimeout <= 0 {
		o.OpTimeout = 250 * time.Millisecond
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 500 * time.Millisecond
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 3
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = 2 * time.Minute
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.NearTTL <= 0 {
		o.NearTTL = 10 * time.Second
	}
	return o
}

// Open connects the four stores described by url: "redis://host:port" (or
// rediss:// for TLS) for standalone Redis using databases 0–3, or
// "redis+cluster://h1:p,h2:p" or a comma list of addresses for Redis Cluster.
// It does not fail when Redis is down: the cache starts degraded, every
// cache call fails fast, and a background probe brings it up when Redis
// answers (see docs/cache.md). Close stops the probe.
func Open(url string, o Options) (*Stores, error) {
	o = o.withDefaults()
	s := &Stores{}
	g := newGuard(s, o)
	s.guard = g
	if addrs, ok := clusterAddrs(url); ok {
		s.cluster = true
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: o.DialTimeout,
			ReadTimeout: o.OpTimeout, WriteTimeout: o.OpTimeout, PoolTimeout: o.OpTimeout,
			ContextTimeoutEnabled: true, MaxRetries: 1})
		c.AddHook(budgetHook{timeout: o.OpTimeout})
		mk := func(name string, ttl time.Duration) *Store {
			return &Store{name: name, client: c, prefix: o.KeyPrefix + name + ":", ttl: ttl, db: -1}
		}
		s.Sessions, s.Inventory = mk("sessions", SessionsTTL), mk("inventory", InventoryTTL)
		s.Orders, s.System = mk("orders", OrdersTTL), mk("system", SystemTTL)
		s.clients = []redis.UniversalClient{c}
	} else {
		base, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("TRACKOPS_REDIS_URL: %w", err)
		}
		mk := func(name string, db int, ttl time.Duration) *Store {
			opt := *base
			opt.DB = db
			opt.DialTimeout = o.DialTimeout
			opt.ReadTimeout = o.OpTimeout
			opt.WriteTimeout = o.OpTimeout
			opt.PoolTimeout = o.OpTimeout
			opt.ContextTimeoutEnabled = true
			// Retrying a failed command doubles the time a dead Redis costs a
			// request; the guard's degraded state is the retry policy.
			opt.MaxRetries = -1
			opt.OnConnect = g.onConnect
			c := redis.NewClient(&opt)
			c.AddHook(budgetHook{timeout: o.OpTimeout})
			s.clients = append(s.clients, c)
			return &Store{name: name, client: c, prefix: o.KeyPrefix, ttl: ttl, db: db}
		}
		s.Sessions = mk("sessions", 0, SessionsTTL)
		s.Inventory = mk("inventory", 1, InventoryTTL)
		s.Orders = mk("orders", 2, OrdersTTL)
		s.System = mk("system", 3, SystemTTL)
		if o.NearEntries > 0 {
			s.Orders.near = newNear(s.Orders, o.NearEntries, o.NearTTL, o.Metrics)
			s.near = newNearListener(base, s.Orders.Key("order", ""), s.Orders.near, o.Logger)
		}
	}
	for _, st := range []*Store{s.Inventory, s.Orders, s.System} {
		st.versioned = newVersioned(st, g)
	}
	g.start()
	if s.near != nil {
		s.near.start()
	}
	return s, nil
}

// All returns the four stores.
func (s *Stores) All() []*Store { return []*Store{s.Sessions, s.Inventory, s.Orders, s.System} }

// Ping checks that Redis answers.
func (s *Stores) Ping(ctx context.Context) error {
	for _, c := range s.clients {
		if err := c.Ping(ctx).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the recovery probe and closes every client.
func (s *Stores) Close() error {
	if s.near != nil {
		s.near.stop()
	}
	s.guard.stop()
	var first error
	for _, c := range s.clients {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func clusterAddrs(url string) ([]string, bool) {
	if rest, ok := strings.CutPrefix(url, "redis+cluster://"); ok {
		return strings.Split(rest, ","), true
	}
	if !strings.Contains(url, "://") && strings.Contains(url, ",") {
		return strings.Split(url, ","), true
	}
	return nil, false
}
