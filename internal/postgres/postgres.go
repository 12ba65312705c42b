// Package postgres owns the connection pool, the embedded schema migrations
// and the transaction helper every store in TrackOps builds on.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConnectTimeout bounds opening one connection when the URL sets no
// connect_timeout of its own.
const ConnectTimeout = 5 * time.Second

// Option tunes a pool opened by Connect.
type Option func(cfg *pgxpool.Config, url string)

// BehindPooler readies a pool for a transaction pooler (PgBouncer with
// pool_mode=transaction) between TrackOps and PostgreSQL. Such a pooler
// hands each transaction to whichever server connection is free, so a named
// prepared statement made on one is unknown on the next; pgx's default
// exec mode (cache_statement) prepares named statements. The pool uses
// cache_describe instead: unnamed statements, parsed in the same round trip
// as they run, with their result description cached. A URL that names
// default_query_exec_mode itself keeps it (cache_statement suits PgBouncer
// 1.21+ with max_prepared_statements set).
func BehindPooler() Option {
	return func(cfg *pgxpool.Config, url string) {
		if !strings.Contains(url, "default_query_exec_mode") {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		}
	}
}

// MaxConns caps the pool at n connections, below the default of at least
// 10 (for pools that hold sessions, such as the direct one).
func MaxConns(n int32) Option {
	return func(cfg *pgxpool.Config, _ string) { cfg.MaxConns = n }
}

// Connect opens a pool to url and checks that the server answers.
func Connect(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(url, opts)
	if err != nil {
		return nil, fmt.Errorf("TRACKOPS_DATABASE_URL is not a PostgreSQL URL; want the form postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=disable: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, connectError(url, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.User, err)
	}
	return pool, nil
}

// poolConfig parses url into a pool configuration with TrackOps' defaults
// (at least 10 connections unless the URL sets pool_max_conns, a connect
// timeout, idle connections closed after 5 minutes, uuid parameters sent as
// their 16 bytes) and applies opts.
func poolConfig(url string, opts []Option) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if cfg.MaxConns < 10 && !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = 10
	}
	// Without a connect timeout a request waiting for a connection to a
	// server that accepts but never answers waits forever; with one it
	// fails as ErrUnavailable (503) and the client retries.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUID(conn.TypeMap())
		return nil
	}
	for _, o := range opts {
		o(cfg, url)
	}
	return cfg, nil
}

// connectError says in one line why PostgreSQL could not be used and what
// to do: a server that is not there, a login it refused, a database
// missing. The driver's error stays in the chain (errors.Is, errors.As) but
// not in the message when the classification already says it.
func connectError(rawURL, host string, port uint16, user string, err error) error {
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if strings.HasPrefix(host, "/") {
		addr = host // a Unix socket directory
	}
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000"):
		return &ConnectError{fmt.Sprintf("PostgreSQL at %s refused the login of user %q (%s); check the user and password in TRACKOPS_DATABASE_URL",
			addr, user, pgErr.Message), err}
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		return &ConnectError{fmt.Sprintf("PostgreSQL at %s: %s; run `trackops migrate` to create it", addr, pgErr.Message), err}
	case errors.As(err, &pgErr) && pgErr.Code == "53300":
		return &ConnectError{fmt.Sprintf("PostgreSQL at %s has no free connection (%s); raise max_connections or stop other clients", addr, pgErr.Message), err}
	case errors.As(err, &pgErr):
		return &ConnectError{fmt.Sprintf("PostgreSQL at %s: %s (SQLSTATE %s)", addr, pgErr.Message, pgErr.Code), err}
	case errors.As(err, &dnsErr):
		return &ConnectError{fmt.Sprintf("cannot reach PostgreSQL at %s: host %q not found; check the host in TRACKOPS_DATABASE_URL", addr, dnsErr.Name), err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &ConnectError{fmt.Sprintf("cannot reach PostgreSQL at %s (connection refused); is it running? (TRACKOPS_DATABASE_URL=%s)", addr, redact(rawURL)), err}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &ConnectError{fmt.Sprintf("cannot reach PostgreSQL at %s (no answer in time); is it running and reachable? (TRACKOPS_DATABASE_URL=%s)", addr, redact(rawURL)), err}
	}
	return &ConnectError{fmt.Sprintf("cannot reach PostgreSQL at %s; is it running? (TRACKOPS_DATABASE_URL=%s): %v", addr, redact(rawURL), err), err}
}

// ConnectError is a failure to use PostgreSQL at all, worded for the
// operator; Unwrap gives the driver's error.
type ConnectError struct {
	msg string
	err error
}

// Error implements error.
func (e *ConnectError) Error() string { return e.msg }

// Unwrap returns the driver's error.
func (e *ConnectError) Unwrap() error { return e.err }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// WithTracer installs a query tracer on every connection of the pool; a nil
// tracer (tracing off) leaves pgx without one, so queries pay no hook.
func WithTracer(t pgx.QueryTracer) Option {
	return func(c *pgxpool.Config, _ string) {
		if t != nil {
			c.ConnConfig.Tracer = t
		}
	}
}

// ParseConnConfig parses a TrackOps database URL for a single connection
// (a lease's session, a LISTEN, creating the database). The URL may carry
// pgxpool's settings for the main pool (pool_max_conns and the other
// pool_* parameters); pgx alone would send them to the server as run-time
// parameters, which PostgreSQL refuses as unknown. They are dropped here.
func ParseConnConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	return cfg.ConnConfig, nil
}

// WithDatabase returns a connection string like conn that names database
// name and changes nothing else. conn is a URL (postgres://…) or libpq's
// keyword/value form.
func WithDatabase(conn, name string) string {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// Keyword/value: a later dbname wins over an earlier one.
	return strings.TrimSpace(conn) + " dbname=" + name
}

// EnsureDatabase creates the database named in url when it does not exist,
// connecting to the server's "postgres" database to do so.
func EnsureDatabase(ctx context.Context, dbURL string) error {
	cfg, err := ParseConnConfig(dbURL)
	if err != nil {
		return fmt.Errorf("TRACKOPS_DATABASE_URL is not a PostgreSQL URL; want the form postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=disable: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return connectError(dbURL, cfg.Host, cfg.Port, cfg.User, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	// Another process (a second `trackops migrate` or `run` started at the
	// same moment) may create it between the look-up and here: PostgreSQL
	// then answers 42P04 (duplicate_database), or 23505 on
	// pg_database_datname_index when both inserts race in the catalog.
	if err != nil && !IsCode(err, "42P04") && !IsUniqueViolation(err, "pg_database_datname_index") {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// Querier is what stores need from either a pool or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// TxBeginner is satisfied by *pgxpool.Pool and *pgx.Conn.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// maxTxAttempts bounds how often WithTx reruns a transaction that lost a
// serialization or deadlock race.
const maxTxAttempts = 5

// WithTx runs fn in a transaction and commits it when fn returns nil.
//
// A transaction that fails with a serialization failure (40001) or a detected
// deadlock (40P01) is rolled back and run again from the start, so fn must
// not have effects outside the transaction that cannot be repeated.
func WithTx(ctx context.Context, db TxBeginner, fn func(tx pgx.Tx) error) error {
	return WithTxOptions(ctx, db, pgx.TxOptions{}, fn)
}

// WithTxOptions is WithTx with explicit isolation and access mode.
// Its error is Classify'd: errors.Is(err, ErrUnavailable) tells a database
// that could not be reached from one that refused the work.
func WithTxOptions(ctx context.Context, db TxBeginner, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		err = runTx(ctx, db, opts, fn)
		if err == nil || !IsRetryable(err) || ctx.Err() != nil {
			return Classify(err)
		}
		time.Sleep(time.Duration(attempt*attempt) * 5 * time.Millisecond)
	}
	return Classify(err)
}

func runTx(ctx context.Context, db TxBeginner, opts pgx.TxOptions, fn func(tx pgx.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			// The rollback error is uninteresting next to the one that caused it.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// IsRetryable reports whether err is a serialization failure or deadlock
// that a fresh attempt of the same transaction may not hit.
func IsRetryable(err error) bool {
	return IsCode(err, "40001") || IsCode(err, "40P01")
}

// IsUniqueViolation reports whether err is a unique-constraint violation,
// optionally of the named constraint.
func IsUniqueViolation(err error, constraint ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return false
	}
	if len(constraint) == 0 {
		return true
	}
	for _, c := range constraint {
		if pgErr.ConstraintName == c {
			return true
		}
	}
	return false
}

// IsCode reports whether err carries the PostgreSQL SQLSTATE code.
func IsCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// redact hides the password of a connection URL so it can be logged.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(raw, "@"); i > 0 {
			return "***@" + raw[i+1:]
		}
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "***")
	}
	return u.String()
}

// Redact hides the password of a connection URL so it can be logged.
func Redact(raw string) string { return redact(raw) }
