// Package auth is who may call TrackOps: users with argon2id-hashed
// passwords, sessions kept in the Redis sessions store under a sliding TTL,
// hashed API keys, the httpapi.Authenticator that resolves a bearer token to
// a principal, and the Redis (GCRA) rate limiters for requests and logins.
//
// Secrets are never stored or logged: PostgreSQL holds password hashes and
// API-key hashes, Redis holds session-token hashes as keys.
package auth

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/cache"
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// Logger receives operational messages (never secrets).
	Logger *slog.Logger
	// SessionTTL is the sliding lifetime of a session; default the sessions
	// store's TTL (30 minutes).
	SessionTTL time.Duration
	// Password are the argon2id parameters for new hashes; default
	// DefaultPasswordParams.
	Password PasswordParams
	// KeyCacheTTL is how long a looked-up API key is trusted from memory; a
	// key revoked on another instance keeps working there for at most this
	// long. Default 30 s.
	KeyCacheTTL time.Duration
	// KeyCacheSize bounds the in-memory API-key cache; default 10,000.
	KeyCacheSize int
	// Limiter slows down repeated logins per username and client address;
	// nil turns brute-force protection off (tests of other things only).
	Limiter *RateLimiter
}

// Service manages users, sessions and API keys, and authenticates requests.
type Service struct {
	pool     *pgxpool.Pool
	sessions *cache.Store
	opts     Options
	log      *slog.Logger
	keys     *keyCache
	// dummyHash is verified against when a login names no known user, so an
	// unknown username takes as long to reject as a wrong password.
	dummyHash string

	// touchMu orders background last-used writes with Close.
	touchMu sync.Mutex
	closed  bool
	wg      sync.WaitGroup
}

// NewService builds the service on the database pool and the Redis sessions
// store (db 0).
func NewService(pool *pgxpool.Pool, sessions *cache.Store, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = sessions.TTL()
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = cache.SessionsTTL
	}
	if opts.Password.Memory == 0 {
		opts.Password = DefaultPasswordParams
	}
	if opts.KeyCacheTTL <= 0 {
		opts.KeyCacheTTL = 30 * time.Second
	}
	if opts.KeyCacheSize <= 0 {
		opts.KeyCacheSize = 10_000
	}
	dummy, err := HashPassword("not a password anyone has", opts.Password)
	if err != nil {
		panic(err) // only if the system's random source fails
	}
	return &Service{
		pool: pool, sessions: sessions, opts: opts, log: opts.Logger,
		keys:      newKeyCache(opts.KeyCacheSize, opts.KeyCacheTTL),
		dummyHash: dummy,
	}
}

// Close waits for background last-used updates of API keys to finish.
func (s *Service) Close() {
	s.touchMu.Lock()
	s.closed = true
	s.touchMu.Unlock()
	s.wg.Wait()
}

// Errors the service returns; handlers map them to status codes.
var (
	// ErrInvalidCredentials is a wrong username or password (deliberately
	// not saying which).
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrUserExists is a username already taken (case-insensitively).
	ErrUserExists = errors.New("username already exists")
	// ErrNotFound is an unknown user or API key.
	ErrNotFound = errors.New("not found")
	// ErrSessionStoreDown means Redis, which holds sessions, does not answer.
	ErrSessionStoreDown = errors.New("session store unavailable")
)

// RateLimitedError is a login refused because of too many recent attempts.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return "too many login attempts" }
