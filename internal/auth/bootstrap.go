package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres"
)

// BootstrapKeyName is the name the bootstrap admin key is stored under.
const BootstrapKeyName = "bootstrap-admin"

// ErrBadBootstrapKey means the configured bootstrap key does not have the
// shape of an API key, so it could never authenticate.
var ErrBadBootstrapKey = errors.New("the bootstrap admin key must be an API key: tok_ followed by 43 base64url characters (32 random bytes)")

// BootstrapOutcome says what EnsureBootstrapAdminKey did.
type BootstrapOutcome int

// Outcomes of EnsureBootstrapAdminKey.
const (
	// BootstrapCreated: there was no admin key; the bootstrap key is one now.
	BootstrapCreated BootstrapOutcome = iota + 1
	// BootstrapAdminExists: an admin key (this one or another) is active;
	// nothing was changed.
	BootstrapAdminExists
	// BootstrapKeyRevoked: no admin key is active, but the bootstrap key is
	// stored already, revoked (or with another role). It is not brought
	// back: a revoked key must stay revoked across restarts.
	BootstrapKeyRevoked
)

// bootstrapLockID serialises bootstrap across processes that start at once.
// It is a transaction-scoped advisory lock, which a transaction pooler
// (PgBouncer in transaction mode) keeps correctly.
const bootstrapLockID = 0x7472_6b6f_7073_01 // "trkops" 1

// EnsureBootstrapAdminKey installs key as an admin API key when no active
// admin key exists, so a fresh deployment can be administered with a key
// provisioned from a secret file (TRACKOPS_BOOTSTRAP_ADMIN_KEY_FILE). It is
// idempotent, and safe when several processes run it at the same moment:
// they take turns on an advisory lock, and each looks for an admin key
// before it inserts one. Only the key's hash is stored, as for every key.
func (s *Service) EnsureBootstrapAdminKey(ctx context.Context, key string) (BootstrapOutcome, error) {
	if _, kind, err := ParseBearer("Bearer " + key); err != nil || kind != APIKeyToken {
		return 0, ErrBadBootstrapKey
	}
	h := tokenHash(key)
	var out BootstrapOutcome
	err := postgres.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(bootstrapLockID)); err != nil {
			return fmt.Errorf("bootstrap lock: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL)`).Scan(&exists); err != nil {
			return fmt.Errorf("look for an admin key: %w", err)
		}
		if exists {
			out = BootstrapAdminExists
			return nil
		}
		tag, err := tx.Exec(ctx, `INSERT INTO api_keys (id, name, role, key_hash, key_prefix, created_by)
			VALUES ($1, $2, $3, $4, $5, 'bootstrap') ON CONFLICT (key_hash) DO NOTHING`,
			uuid.NewString(), BootstrapKeyName, string(httpapi.RoleAdmin), h[:], key[:len(APIKeyPrefix)+6])
		if err != nil {
			return fmt.Errorf("create bootstrap admin key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			out = BootstrapKeyRevoked
			return nil
		}
		out = BootstrapCreated
		return nil
	})
	return out, err
}
