package cache

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Near is an in-process cache of decoded values in front of one store,
// kept coherent by Redis server-assisted client-side caching: a listener
// connection asks Redis (CLIENT TRACKING ... BCAST PREFIX) to report every
// change of the store's keys, from any process, and each report drops the
// key here. A read served from Near costs no round trip and no decoding.
//
// What it guarantees (docs/cache.md, "Near cache"):
//   - This process's own invalidations drop the key at once, before the
//     call that made them returns.
//   - Another process's change is seen here once Redis's report arrives (on
//     loopback about half a millisecond after the change): until then the
//     previous version may be served, as with any client-side cache.
//   - Values only move forward: a slow read never puts back a version older
//     than one that replaced it, and a read that started before an
//     invalidation never fills the key after it.
//   - While the listener is not subscribed (start, Redis restart, lost
//     connection) Near serves nothing and is emptied before it serves again,
//     so no report missed in between can leave a stale entry.
//   - An entry lives at most TTL, whatever happens to the reports.
type Near struct {
	max int
	ttl time.Duration

	mu    sync.RWMutex
	slots map[string]*nearSlot
	live  bool // the listener is subscribed: reports are arriving

	mHit, mMiss prometheus.Counter
	entries     prometheus.Gauge
	hits        atomic.Uint64
}

// nearSlot is one key. A reader reserves the key's slot before it reads
// Redis and fills it after; an invalidation replaces the slot with a new,
// empty one, so a read that began before the invalidation finds its slot
// gone and fills nothing. floor is the highest version of the key any read
// here has returned: a slot never serves less, so reads never go back even
// when a slow read's slot was replaced under it.
type nearSlot struct {
	value   any
	version int64
	expires time.Time
	filled  bool
	floor   int64
}

func newNear(st *Store, max int, ttl time.Duration, m *Metrics) *Near {
	return &Near{
		max: max, ttl: ttl, slots: make(map[string]*nearSlot),
		mHit:    m.requests.WithLabelValues(st.name, "near_hit"),
		mMiss:   m.requests.WithLabelValues(st.name, "near_miss"),
		entries: m.nearEntries.WithLabelValues(st.name),
	}
}

// lookup returns the value held for key, if Near may serve it.
func (n *Near) lookup(key string, now time.Time) (any, bool) {
	n.mu.RLock()
	s := n.slots[key]
	ok := n.live && s != nil && s.filled && now.Before(s.expires)
	var v any
	if ok {
		v = s.value
	}
	n.mu.RUnlock()
	if ok {
		n.hits.Add(1)
		n.mHit.Inc()
	} else {
		n.mMiss.Inc()
	}
	return v, ok
}

// reserve returns the slot a read of key fills afterwards, or nil when Near
// is not serving.
func (n *Near) reserve(key string, now time.Time) *nearSlot {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.live {
		return nil
	}
	s := n.slots[key]
	if s != nil && (!s.filled || now.Before(s.expires)) {
		return s
	}
	if s == nil && len(n.slots) >= n.max {
		n.evictLocked()
	}
	return n.replaceLocked(key, s)
}

// replaceLocked puts an empty slot at key that keeps old's floor.
func (n *Near) replaceLocked(key string, old *nearSlot) *nearSlot {
	s := &nearSlot{}
	if old != nil {
		s.floor = max(old.floor, old.version)
	}
	n.slots[key] = s
	n.entries.Set(float64(len(n.slots)))
	return s
}

// evictLocked drops about a hundredth of the entries, arbitrary ones (Go's
// map order): an evicted hot key costs one Redis read.
func (n *Near) evictLocked() {
	drop := n.max/100 + 1
	for k := range n.slots {
		delete(n.slots, k)
		if drop--; drop == 0 {
			return
		}
	}
}

// fill records that a read of key, which reserved s, returned value at
// version. It stores the value if s is still the key's slot and holds
// nothing newer; either way no later read here is served an older version.
func (n *Near) fill(key string, s *nearSlot, value any, version int64, now time.Time) {
	if s == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.slots[key]
	switch {
	case cur == nil:
		// Evicted, emptied or never reserved since: any read that reserves
		// from now on reads Redis after this read's value got there.
	case cur != s:
		// Replaced since: a newer read fills it, but must not fill it
		// with a version older than the one this caller is given.
		cur.floor = max(cur.floor, version)
		if cur.filled && cur.version < version {
			cur.filled, cur.value = false, nil
		}
	case version < s.floor || (s.filled && s.version >= version):
	default:
		s.value, s.version, s.filled, s.expires = value, version, true, now.Add(n.ttl)
	}
}

// invalidate drops what is held for keys; reads already under way cannot
// fill them again.
func (n *Near) invalidate(keys ...string) {
	n.mu.Lock()
	for _, k := range keys {
		if old, ok := n.slots[k]; ok {
			n.replaceLocked(k, old)
		}
	}
	n.mu.Unlock()
}

// setLive empties Near and sets whether it may serve.
func (n *Near) setLive(live bool) {
	n.mu.Lock()
	clear(n.slots)
	n.live = live
	n.entries.Set(0)
	n.mu.Unlock()
}

// Live reports whether Near is serving (its listener is subscribed).
func (n *Near) Live() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.live
}

// Len is the number of keys held (reserved or filled).
func (n *Near) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.slots)
}

// invalidationChannel is where Redis publishes tracking reports to a
// RESP2 connection that redirects them to itself.
const invalidationChannel = "__redis__:invalidate"

// nearListener holds the subscription that keeps a near cache coherent.
// Tracking reports carry key names without a database, so a key of
// another database under the same prefix drops the same name here: a
// wasted miss, never a stale read.
type nearListener struct {
	client *redis.Client
	prefix string
	near   *Near
	log    *slog.Logger
	// idle is how long a silent subscription waits before it pings Redis;
	// a ping unanswered for another idle means the connection is dead.
	idle     time.Duration
	clientID atomic.Int64 // of the current listener connection (tests kill it)

	cancel context.CancelFunc
	done   chan struct{}
}

// newNearListener subscribes on a connection of its own to the reports of
// every key under prefix. base is the store's connection options.
func newNearListener(base *redis.Options, prefix string, near *Near, log *slog.Logger) *nearListener {
	l := &nearListener{prefix: prefix, near: near, log: log, idle: 5 * time.Second, done: make(chan struct{})}
	opt := *base
	// RESP2: reports come as Pub/Sub messages on the connection that
	// enabled tracking, which redirects them to itself.
	opt.Protocol = 2
	opt.PoolSize = 1
	opt.MaxRetries = -1
	opt.OnConnect = l.track
	l.client = redis.NewClient(&opt)
	return l
}

// track runs on every new listener connection, before it subscribes.
func (l *nearListener) track(ctx context.Context, cn *redis.Conn) error {
	id, err := cn.ClientID(ctx).Result()
	if err != nil {
		return err
	}
	if err := cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", l.prefix).Err(); err != nil {
		return err
	}
	l.clientID.Store(id)
	return nil
}

func (l *nearListener) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		defer close(l.done)
		l.run(ctx)
	}()
}

func (l *nearListener) stop() {
	l.cancel()
	// Closing the client ends a receive that waits on the socket.
	_ = l.client.Close()
	<-l.done
}

// run keeps a subscription open until ctx ends, and the near cache serving
// only while it is.
func (l *nearListener) run(ctx context.Context) {
	down := false // an outage was logged; the next subscription logs its end
	for ctx.Err() == nil {
		err := l.subscribe(ctx, func() {
			if down {
				l.log.Info("near cache serving again")
				down = false
			}
		})
		l.near.setLive(false)
		if ctx.Err() != nil {
			return
		}
		if !down {
			l.log.Warn("near cache off until its Redis subscription is back; reads go to Redis", "err", err)
			down = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// subscribe serves one subscription until it fails, calling serving each
// time it (re)subscribes.
func (l *nearListener) subscribe(ctx context.Context, serving func()) error {
	ps := l.client.Subscribe(ctx, invalidationChannel)
	defer ps.Close()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, l.idle)
		if err != nil {
			var netErr interface{ Timeout() bool }
			if ctx.Err() == nil && errors.As(err, &netErr) && netErr.Timeout() && !pinged {
				// Quiet: make sure the connection is still there.
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				pinged = true
				continue
			}
			if ctx.Err() == nil && strings.Contains(err.Error(), "unsupported pubsub message payload") {
				// The report of FLUSHDB or FLUSHALL has no keys, which
				// go-redis cannot parse; it reconnects on the next receive,
				// and the near cache starts empty once it is subscribed.
				l.near.setLive(false)
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// (Re)subscribed: whatever changed while no report could
				// arrive is unknown, so start empty.
				l.near.setLive(true)
				serving()
			}
		case *redis.Message:
			l.near.invalidate(m.PayloadSlice...)
		}
	}
}
