package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// APIKey describes a key without its secret.
type APIKey struct {
	ID         string       `json:"id"`
	Name       string       `json:"name"`
	Role       httpapi.Role `json:"role"`
	Prefix     string       `json:"prefix"`
	CreatedBy  string       `json:"created_by"`
	CreatedAt  time.Time    `json:"created_at"`
	LastUsedAt *time.Time   `json:"last_used_at"`
	Revoked    bool         `json:"revoked"`
	RevokedAt  *time.Time   `json:"revoked_at,omitempty"`
}

// lastUsedResolution is how often last_used_at is written per key: often
// enough to spot unused keys, rarely enough that authentication stays a
// memory lookup.
const lastUsedResolution = time.Minute

func validateNewKey(name string, role httpapi.Role) error {
	var errs validation.Errors
	if n := len(strings.TrimSpace(name)); n == 0 || len(name) > 100 {
		errs.Add("name", "must be 1 to 100 characters")
	}
	if role.Rank() == 0 {
		errs.Add("role", "must be viewer, operator or admin")
	}
	return errs.Err()
}

// CreateAPIKey makes a new API key and returns it in plain text; only its
// hash is stored, so this is the one time it can be seen. The CLI's
// `trackops apikey create` calls it.
func (s *Service) CreateAPIKey(ctx context.Context, name string, role httpapi.Role) (string, error) {
	_, plain, err := s.IssueAPIKey(ctx, name, role, "cli")
	return plain, err
}

// IssueAPIKey is CreateAPIKey recording who created the key, returning its
// description as well.
func (s *Service) IssueAPIKey(ctx context.Context, name string, role httpapi.Role, createdBy string) (APIKey, string, error) {
	if err := validateNewKey(name, role); err != nil {
		return APIKey{}, "", err
	}
	secret, err := newSecret()
	if err != nil {
		return APIKey{}, "", err
	}
	plain := APIKeyPrefix + secret
	h := tokenHash(plain)
	k := APIKey{ID: uuid.NewString(), Name: name, Role: role, Prefix: plain[:len(APIKeyPrefix)+6], CreatedBy: createdBy}
	err = s.pool.QueryRow(ctx, `INSERT INTO api_keys (id, name, role, key_hash, key_prefix, created_by)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
		k.ID, name, string(role), h[:], k.Prefix, createdBy).Scan(&k.CreatedAt)
	if err != nil {
		return APIKey{}, "", fmt.Errorf("create api key: %w", err)
	}
	return k, plain, nil
}

// ListAPIKeys returns every key (revoked ones too), newest first.
func (s *Service) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, role, key_prefix, created_by, created_at, last_used_at, revoked_at
		FROM api_keys ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
		var k APIKey
		var role string
		err := row.Scan(&k.ID, &k.Name, &role, &k.Prefix, &k.CreatedBy, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
		k.Role, k.Revoked = httpapi.Role(role), k.RevokedAt != nil
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey revokes a key at once on this instance (other instances stop
// accepting it within KeyCacheTTL). Revoking twice is not an error.
func (s *Service) RevokeAPIKey(ctx context.Context, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return ErrNotFound
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	s.keys.dropID(id)
	return nil
}

// authenticateKey resolves an API key, from memory when it was looked up
// within KeyCacheTTL.
func (s *Service) authenticateKey(ctx context.Context, key string) (httpapi.Principal, error) {
	h := tokenHash(key)
	e := s.keys.get(h)
	if e == nil {
		var err error
		if e, err = s.loadKey(ctx, h); err != nil {
			return httpapi.Principal{}, err
		}
		s.keys.put(h, e)
	}
	if e.revoked {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	s.touchKey(e)
	return e.principal, nil
}

func (s *Service) loadKey(ctx context.Context, h [32]byte) (*keyEntry, error) {
	var id, name, role string
	var revoked bool
	err := s.pool.QueryRow(ctx, `SELECT id, name, role, revoked_at IS NOT NULL FROM api_keys WHERE key_hash = $1`, h[:]).
		Scan(&id, &name, &role, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, httpapi.ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("look up api key: %w", err)
	}
	return &keyEntry{
		principal: httpapi.Principal{ID: id, Name: name, Kind: "apikey", Role: httpapi.Role(role)},
		revoked:   revoked,
	}, nil
}

// touchKey records the key's use in the background, at most once per
// lastUsedResolution per key and instance.
func (s *Service) touchKey(e *keyEntry) {
	now := time.Now().UnixNano()
	last := e.lastTouch.Load()
	if now-last < int64(lastUsedResolution) || !e.lastTouch.CompareAndSwap(last, now) {
		return
	}
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, e.principal.ID); err != nil {
			s.log.Warn("record api key use", "key_id", e.principal.ID, "err", err)
		}
	}()
}

type keyEntry struct {
	principal httpapi.Principal
	revoked   bool
	expires   time.Time
	lastTouch atomic.Int64
}

// keyCache is a small bounded map from key hash to principal. When full it
// drops an arbitrary entry: misses only cost one indexed query.
type keyCache struct {
	mu  sync.RWMutex
	m   map[[32]byte]*keyEntry
	max int
	ttl time.Duration
	now func() time.Time
}

func newKeyCache(max int, ttl time.Duration) *keyCache {
	return &keyCache{m: make(map[[32]byte]*keyEntry), max: max, ttl: ttl, now: time.Now}
}

func (c *keyCache) get(h [32]byte) *keyEntry {
	c.mu.RLock()
	e := c.m[h]
	c.mu.RUnlock()
	if e == nil || c.now().After(e.expires) {
		return nil
	}
	return e
}

func (c *keyCache) put(h [32]byte, e *keyEntry) {
	e.expires = c.now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[h]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[h] = e
}

func (c *keyCache) dropID(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.principal.ID == id {
			delete(c.m, h)
		}
	}
}
