package health

import (
	"context"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
)

// Application reports the process itself: version, uptime, Go runtime,
// memory and garbage collection. It is always UP while it can answer.
func Application(version string, started time.Time) Indicator {
	return Func{ComponentName: "application", IsCritical: true, Fn: func(context.Context) Component {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		uptime := time.Since(started)
		gc := map[string]any{
			"numGC":          m.NumGC,
			"pauseTotalMs":   float64(m.PauseTotalNs) / 1e6,
			"nextGCBytes":    m.NextGC,
			"gcCPUFraction":  m.GCCPUFraction,
			"lastPauseMs":    0.0,
			"lastGCAgoMs":    nil,
			"forcedGCCycles": m.NumForcedGC,
		}
		if m.NumGC > 0 {
			gc["lastPauseMs"] = float64(m.PauseNs[(m.NumGC+255)%256]) / 1e6
			gc["lastGCAgoMs"] = time.Since(time.Unix(0, int64(m.LastGC))).Milliseconds()
		}
		return Component{Status: Up, Details: map[string]any{
			"application":   "trackops",
			"version":       version,
			"startedAt":     started.UTC().Format(time.RFC3339),
			"uptime":        uptime.Round(time.Second).String(),
			"uptimeSeconds": int64(uptime.Seconds()),
			"goVersion":     runtime.Version(),
			"goroutines":    runtime.NumGoroutine(),
			"cpus":          runtime.NumCPU(),
			"gomaxprocs":    runtime.GOMAXPROCS(0),
			"memory": map[string]any{
				"heapAllocBytes":  m.HeapAlloc,
				"heapInuseBytes":  m.HeapInuse,
				"heapObjects":     m.HeapObjects,
				"stackInuseBytes": m.StackInuse,
				"sysBytes":        m.Sys,
				"totalAllocBytes": m.TotalAlloc,
			},
			"gc": gc,
		}}
	}}
}

// Database reports PostgreSQL: a timed query naming the database and
// counting orders, and the connection pool's statistics. It is critical: no
// order can be taken without it.
func Database(pool *pgxpool.Pool) Indicator {
	return Func{ComponentName: "db", IsCritical: true, Fn: func(ctx context.Context) Component {
		start := time.Now()
		var name string
		var total int64
		// An estimate keeps the check cheap on big tables; exact when small.
		err := pool.QueryRow(ctx, `SELECT current_database(),
			(SELECT CASE WHEN reltuples < 100000 THEN (SELECT count(*) FROM orders) ELSE reltuples::bigint END
			 FROM pg_class WHERE oid = 'orders'::regclass)`).Scan(&name, &total)
		took := time.Since(start)
		details := map[string]any{"database": "PostgreSQL", "pool": PoolStats(pool)}
		if err != nil {
			details["error"] = err.Error()
			return Component{Status: Down, Details: details}
		}
		details["databaseName"] = name
		details["queryTime"] = took.Round(time.Microsecond).String()
		details["queryTimeMs"] = float64(took.Microseconds()) / 1000
		details["totalOrders"] = total
		details["status"] = "Connected and responsive"
		return Component{Status: Up, Details: details}
	}}
}

// PoolStats describes a pgx pool for health details and ops pages.
func PoolStats(pool *pgxpool.Pool) map[string]any {
	st := pool.Stat()
	return map[string]any{
		"total": st.TotalConns(), "idle": st.IdleConns(), "acquired": st.AcquiredConns(),
		"constructing": st.ConstructingConns(), "max": st.MaxConns(),
		"acquireCount": st.AcquireCount(), "emptyAcquireCount": st.EmptyAcquireCount(),
		"canceledAcquireCount": st.CanceledAcquireCount(),
		"acquireWaitMs":        float64(st.AcquireDuration().Microseconds()) / 1000,
		"newConnsCount":        st.NewConnsCount(),
	}
}

// CacheCounters are the application's own cache outcomes since start.
type CacheCounters struct {
	Hits, Misses, Errors uint64
}

// CacheStats is what the Redis indicator needs from the cache layer: its
// hit, miss and error counts. The cache package's Stats plugs in through
// CacheStatsFunc.
type CacheStats interface {
	CacheCounters() CacheCounters
}

// CacheStatsFunc adapts a function to CacheStats.
type CacheStatsFunc func() CacheCounters

// CacheCounters implements CacheStats.
func (f CacheStatsFunc) CacheCounters() CacheCounters { return f() }

// maxScannedKeys caps the SCAN used to count a prefixed store's keys (on
// Redis Cluster, and in tests); beyond it the count is a lower bound.
const maxScannedKeys = 10_000

// Redis reports the cache: memory, hit rate (the application's, when stats is
// not nil, and the server's) and the key count of each store. It is not
// critical: without Redis TrackOps serves from PostgreSQL, DEGRADED.
func Redis(stores *cache.Stores, stats CacheStats) Indicator {
	return Func{ComponentName: "redis", IsCritical: false, Fn: func(ctx context.Context) Component {
		start := time.Now()
		if err := stores.Ping(ctx); err != nil {
			return Component{Status: Down, Details: map[string]any{"error": err.Error()}}
		}
		details := map[string]any{"pingTime": time.Since(start).Round(time.Microsecond).String()}
		client := stores.System.Client()
		if info, err := client.Info(ctx, "server", "memory", "stats").Result(); err == nil {
			f := infoFields(info)
			details["version"] = f["redis_version"]
			details["memory"] = map[string]any{
				"used":             f["used_memory_human"],
				"usedBytes":        atoi(f["used_memory"]),
				"peak":             f["used_memory_peak_human"],
				"maxBytes":         atoi(f["maxmemory"]),
				"evictionPolicy":   f["maxmemory_policy"],
				"fragmentationRat": f["mem_fragmentation_ratio"],
			}
			hits, misses := atoi(f["keyspace_hits"]), atoi(f["keyspace_misses"])
			details["server"] = map[string]any{"keyspaceHits": hits, "keyspaceMisses": misses,
				"hitRate": ratio(hits, hits+misses), "evictedKeys": atoi(f["evicted_keys"])}
		} else {
			details["infoError"] = err.Error()
		}
		if stats != nil {
			c := stats.CacheCounters()
			details["hits"] = c.Hits
			details["misses"] = c.Misses
			details["errors"] = c.Errors
			details["hitRate"] = ratio(int64(c.Hits), int64(c.Hits+c.Misses))
		}
		keys := map[string]any{}
		for _, st := range stores.All() {
			n, exact, err := countKeys(ctx, st)
			switch {
			case err != nil:
				keys[st.Name()] = map[string]any{"error": err.Error()}
			case exact:
				keys[st.Name()] = n
			default:
				keys[st.Name()] = map[string]any{"atLeast": n}
			}
		}
		details["keys"] = keys
		return Component{Status: Up, Details: details}
	}}
}

// countKeys counts a store's keys: DBSIZE when the store owns a whole
// database, a bounded SCAN when it shares one under a prefix.
func countKeys(ctx context.Context, st *cache.Store) (n int64, exact bool, err error) {
	if st.Prefix() == "" {
		n, err = st.Client().DBSize(ctx).Result()
		return n, true, err
	}
	var cursor uint64
	for {
		keys, next, err := st.Client().Scan(ctx, cursor, st.Prefix()+"*", 1000).Result()
		if err != nil {
			return n, false, err
		}
		n += int64(len(keys))
		if next == 0 {
			return n, true, nil
		}
		if n >= maxScannedKeys {
			return n, false, nil
		}
		cursor = next
	}
}

// EmbeddedBroker is the embedded broker's durability, for the kafka
// component: its details under "durability"; DEGRADED while the last start
// found the log damaged (lost records were published again where TrackOps
// could), DOWN once an fsync failed (durability is lost until restart).
type EmbeddedBroker interface {
	Status() map[string]any
	Healthy() (damaged bool, err error)
}

// Kafka reports the cluster: brokers, topics, and each consumer group's
// state and lag, and the embedded broker's durability when one is given.
// It is critical: without Kafka no event flows.
func Kafka(client *kgo.Client, embedded bool, broker ...EmbeddedBroker) Indicator {
	adm := kadm.NewClient(client)
	return Func{ComponentName: "kafka", IsCritical: true, Fn: func(ctx context.Context) Component {
		c := kafkaComponent(ctx, adm, embedded)
		for _, b := range broker {
			if c.Details == nil {
				c.Details = map[string]any{}
			}
			c.Details["durability"] = b.Status()
			damaged, err := b.Healthy()
			switch {
			case err != nil:
				c.Status = Down
				c.Details["durabilityError"] = err.Error()
			case damaged && c.Status == Up:
				c.Status = Degraded
			}
		}
		return c
	}}
}

func kafkaComponent(ctx context.Context, adm *kadm.Client, embedded bool) Component {
	md, err := adm.Metadata(ctx)
	if err != nil {
		return Component{Status: Down, Details: map[string]any{"error": err.Error(), "embedded": embedded}}
	}
	brokers := make([]string, 0, len(md.Brokers))
	for _, b := range md.Brokers {
		brokers = append(brokers, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))))
	}
	topics := make([]string, 0, len(md.Topics))
	for name, t := range md.Topics {
		if !t.IsInternal {
			topics = append(topics, name)
		}
	}
	sort.Strings(topics)
	details := map[string]any{
		"brokers": brokers, "embedded": embedded, "clusterId": md.Cluster, "controller": md.Controller,
		"topicCount": len(topics), "topics": topics,
	}
	lags, err := adm.Lag(ctx)
	if err != nil {
		details["consumerGroupsError"] = err.Error()
		return Component{Status: Up, Details: details}
	}
	groups := map[string]any{}
	var totalLag int64
	for _, g := range lags.Sorted() {
		if err := g.Error(); err != nil {
			groups[g.Group] = map[string]any{"error": err.Error()}
			continue
		}
		byTopic := map[string]int64{}
		for _, t := range g.Lag.TotalByTopic() {
			byTopic[t.Topic] = t.Lag
		}
		total := g.Lag.Total()
		totalLag += total
		groups[g.Group] = map[string]any{
			"state": g.State, "members": len(g.Members), "lag": total, "lagByTopic": byTopic,
		}
	}
	details["consumerGroups"] = groups
	details["totalLag"] = totalLag
	return Component{Status: Up, Details: details}
}

func infoFields(info string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			f[k] = v
		}
	}
	return f
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// ratio is part/whole rounded to four places, or nil when whole is zero
// (no reads yet: there is no rate to speak of).
func ratio(part, whole int64) any {
	if whole <= 0 {
		return nil
	}
	r := float64(part) / float64(whole)
	return float64(int64(r*10000+0.5)) / 10000
}
