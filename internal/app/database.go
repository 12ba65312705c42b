package app

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/postgres"
)

// directPoolSize bounds the direct pool: it holds sessions (the relay's
// LISTEN, leases), not request traffic, which goes through the main pool.
const directPoolSize = 4

// connectDatabase opens the main pool on TRACKOPS_DATABASE_URL — the one
// requests, consumers and the relay's claims use — ready for a transaction
// pooler when one sits in between (see config.Config.DatabasePooled).
func connectDatabase(ctx context.Context, cfg config.Config, extra ...postgres.Option) (*pgxpool.Pool, error) {
	return postgres.Connect(ctx, cfg.Database.URL, append(poolOptions(cfg), extra...)...)
}

// poolOptions are the options of a pool on TRACKOPS_DATABASE_URL.
func poolOptions(cfg config.Config) []postgres.Option {
	if cfg.Database.Pooled() {
		return []postgres.Option{postgres.BehindPooler()}
	}
	return nil
}

// connectDirect opens the pool of session-bound work on
// TRACKOPS_DATABASE_DIRECT_URL. Without a pooler in between the main pool
// serves both, and main is returned with a no-op close.
func connectDirect(ctx context.Context, cfg config.Config, main *pgxpool.Pool) (*pgxpool.Pool, func(), error) {
	if !cfg.Database.Pooled() {
		return main, func() {}, nil
	}
	p, err := postgres.Connect(ctx, cfg.Database.Direct(), postgres.MaxConns(directPoolSize))
	if err != nil {
		return nil, nil, err
	}
	return p, p.Close, nil
}
