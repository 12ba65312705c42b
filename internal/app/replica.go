package app

import (
	"context"
	"net/http"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/postgres"
)

// connectReadReplica opens the read replica of TRACKOPS_DATABASE_READ_URL,
// when one is configured, with the router that sends read-only queries to
// it while it keeps up (postgres.Reads), its sampler and its /health
// component ("replica"). Without one, a.reads stays nil and every read goes
// to the primary.
func (a *App) connectReadReplica() error {
	if !a.cfg.Database.ReadReplica() {
		return nil
	}
	var opts []postgres.Option
	if a.cfg.Database.Pooled() {
		// A replica is usually reached through the same kind of pooler.
		opts = append(opts, postgres.BehindPooler())
	}
	opts = append(opts, postgres.WithTracer(a.obs.tracing.QueryTracer()))
	replica, err := postgres.ConnectReplica(a.cfg.Database.ReadURL, opts...)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, replica.Close)
	log := a.log.With("component", "read-replica")
	a.reads = postgres.NewReads(a.pool, replica, a.cfg.Database.ReadMaxLag, log)
	// Sampled once before anything serves, so reads use the replica from
	// the first request when it is in shape.
	a.reads.Sample(context.Background())
	a.workers = append(a.workers, worker{name: "read-replica", run: a.reads.Run})
	a.recentWriters = cache.NewRecentWriters(a.stores, a.cfg.Database.ReadMaxLag+2*postgres.SampleInterval)
	return nil
}

// buildReplicaHealth reports the replica as the "replica" component of
// /health: UP while reads go to it, DEGRADED while they fall back to the
// primary (the platform works; the primary carries the reads).
func (a *App) buildReplicaHealth() {
	if a.reads == nil {
		return
	}
	a.health.Add(health.Func{ComponentName: "replica", Fn: func(context.Context) health.Component {
		st := a.reads.Status()
		status := health.Up
		if !st.Usable {
			status = health.Degraded
		}
		return health.Component{Status: status, Details: map[string]any{"readsTo": map[bool]string{true: "replica", false: "primary"}[st.Usable],
			"replica": st}}
	}})
}

// readQuerier is where read-only queries of read-only components (journey,
// audit log) go: the replica router, or the primary.
func (a *App) readQuerier() postgres.Querier {
	if a.reads == nil {
		return a.pool
	}
	return a.reads
}

// readYourWrites sends the reads of a client that wrote within the replica's
// lag bound to the primary (cache.RecentWriters), when a replica is in use.
func (a *App) readYourWrites(h http.Handler) http.Handler {
	if a.recentWriters == nil {
		return h
	}
	return a.recentWriters.Middleware(postgres.WithPrimaryReads)(h)
}
