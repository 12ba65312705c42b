package health

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
)

// Application reports the process itself: version, uptime, Go runtime and
// memory.
func Application(version string, started time.Time) Indicator {
	return Func{ComponentName: "application", IsCritical: true, Fn: func(context.Context) Component {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return Component{Status: Up, Details: map[string]any{
			"application": "trackops",
			"version":     version,
			"uptime":      time.Since(started).Round(time.Second).String(),
			"goVersion":   runtime.Version(),
			"goroutines":  runtime.NumGoroutine(),
			"cpus":        runtime.NumCPU(),
			"memory": map[string]any{
				"heapAllocBytes": m.HeapAlloc, "sysBytes": m.Sys, "numGC": m.NumGC,
				"gcPauseTotalMs": float64(m.PauseTotalNs) / 1e6,
			},
		}}
	}}
}

// Database reports PostgreSQL: a timed query counting orders, and pool stats.
func Database(pool *pgxpool.Pool) Indicator {
	return Func{ComponentName: "db", IsCritical: true, Fn: func(ctx context.Context) Component {
		start := time.Now()
		var total int64
		// An estimate keeps the check cheap on big tables; exact when small.
		err := pool.QueryRow(ctx, `SELECT CASE WHEN reltuples < 100000 THEN (SELECT count(*) FROM orders)
			ELSE reltuples::bigint END FROM pg_class WHERE relname = 'orders'`).Scan(&total)
		took := time.Since(start)
		st := pool.Stat()
		details := map[string]any{
			"database": "PostgreSQL",
			"pool": map[string]any{
				"total": st.TotalConns(), "idle": st.IdleConns(), "acquired": st.AcquiredConns(),
				"max": st.MaxConns(), "acquireCount": st.AcquireCount(),
			},
		}
		if err != nil {
			details["error"] = err.Error()
			return Component{Status: Down, Details: details}
		}
		details["queryTime"] = took.Round(time.Microsecond).String()
		details["totalOrders"] = total
		details["status"] = "Connected and responsive"
		return Component{Status: Up, Details: details}
	}}
}

// Redis reports the cache; it is not critical: without it TrackOps serves
// from PostgreSQL, DEGRADED.
func Redis(stores *cache.Stores) Indicator {
	return Func{ComponentName: "redis", IsCritical: false, Fn: func(ctx context.Context) Component {
		start := time.Now()
		if err := stores.Ping(ctx); err != nil {
			return Component{Status: Down, Details: map[string]any{"error": err.Error()}}
		}
		details := map[string]any{"pingTime": time.Since(start).Round(time.Microsecond).String()}
		if info, err := stores.System.Client().Info(ctx, "memory").Result(); err == nil {
			details["usedMemory"] = infoField(info, "used_memory_human")
		}
		return Component{Status: Up, Details: details}
	}}
}

// Kafka reports the brokers and topics.
func Kafka(client *kgo.Client, embedded bool) Indicator {
	adm := kadm.NewClient(client)
	return Func{ComponentName: "kafka", IsCritical: true, Fn: func(ctx context.Context) Component {
		md, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return Component{Status: Down, Details: map[string]any{"error": err.Error(), "embedded": embedded}}
		}
		brokers := make([]string, 0, len(md.Brokers))
		for _, b := range md.Brokers {
			brokers = append(brokers, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))))
		}
		details := map[string]any{"brokers": brokers, "embedded": embedded, "clusterId": md.Cluster}
		if groups, err := adm.ListGroups(ctx); err == nil {
			details["consumerGroups"] = groups.Groups()
		}
		return Component{Status: Up, Details: details}
	}}
}

func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}
