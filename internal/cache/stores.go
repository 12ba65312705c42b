// Package cache owns TrackOps' four Redis stores — sessions, inventory,
// orders and system — each with its own TTL. On standalone Redis the stores
// are databases 0–3; on Redis Cluster, which has a single database, they are
// key prefixes.
package cache

import (
	"context"
	"fmt"
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
	name   string
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
}

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

// Prefix is what every key of this store starts with ("" on standalone Redis).
func (s *Store) Prefix() string { return s.prefix }

// Stores are the four stores of one TrackOps process.
type Stores struct {
	Sessions  *Store
	Inventory *Store
	Orders    *Store
	System    *Store
	clients   []redis.UniversalClient
}

// Options tune Open.
type Options struct {
	// KeyPrefix is put before every key of every store; tests use it to
	// share one Redis without seeing each other's keys.
	KeyPrefix string
}

// Open connects the four stores described by url: "redis://host:port" (or
// rediss:// for TLS) for standalone Redis using databases 0–3, or
// "redis+cluster://h1:p,h2:p" or a comma list of addresses for Redis Cluster.
// It does not fail when Redis is down: the cache degrades, TrackOps goes on.
func Open(url string, o Options) (*Stores, error) {
	if addrs, ok := clusterAddrs(url); ok {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: 2 * time.Second,
			ReadTimeout: time.Second, WriteTimeout: time.Second})
		mk := func(name string, ttl time.Duration) *Store {
			return &Store{name: name, client: c, prefix: o.KeyPrefix + name + ":", ttl: ttl}
		}
		return &Stores{
			Sessions: mk("sessions", SessionsTTL), Inventory: mk("inventory", InventoryTTL),
			Orders: mk("orders", OrdersTTL), System: mk("system", SystemTTL),
			clients: []redis.UniversalClient{c},
		}, nil
	}
	base, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("TRACKOPS_REDIS_URL: %w", err)
	}
	s := &Stores{}
	mk := func(name string, db int, ttl time.Duration) *Store {
		opt := *base
		opt.DB = db
		opt.DialTimeout = 2 * time.Second
		opt.ReadTimeout = time.Second
		opt.WriteTimeout = time.Second
		opt.MaxRetries = 1
		c := redis.NewClient(&opt)
		s.clients = append(s.clients, c)
		return &Store{name: name, client: c, prefix: o.KeyPrefix, ttl: ttl}
	}
	s.Sessions = mk("sessions", 0, SessionsTTL)
	s.Inventory = mk("inventory", 1, InventoryTTL)
	s.Orders = mk("orders", 2, OrdersTTL)
	s.System = mk("system", 3, SystemTTL)
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

// Close closes every client.
func (s *Stores) Close() error {
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
