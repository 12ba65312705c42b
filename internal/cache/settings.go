package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// Setting kinds: feature flags and system configuration values.
const (
	KindFlag   = "flag"
	KindConfig = "config"
)

// Errors of the settings API.
var (
	ErrSettingNotFound = errors.New("setting not found")
	ErrVersionMismatch = errors.New("setting version does not match")
	ErrInvalidSetting  = errors.New("invalid setting")
)

// maxSettingBytes bounds a setting's JSON value.
const maxSettingBytes = 64 << 10

var settingName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)

// Setting is one feature flag or configuration value. Value is any JSON
// document; a flag is usually true or false.
type Setting struct {
	Kind      string          `json:"kind"`
	Name      string          `json:"name"`
	Value     json.RawMessage `json:"value"`
	Version   int64           `json:"version"`
	UpdatedAt time.Time       `json:"updated_at"`
	UpdatedBy string          `json:"updated_by"`
}

// Settings reads and writes feature flags and configuration: PostgreSQL
// (table system_settings) is the source of truth, the system store caches
// each setting under flag:{name} or config:{name} with its version.
type Settings struct {
	db     postgres.Querier
	stores *Stores
}

// NewSettings builds the settings API over db (a pool) and the stores.
func NewSettings(db postgres.Querier, stores *Stores) *Settings {
	return &Settings{db: db, stores: stores}
}

func (s *Settings) key(kind, name string) string { return s.stores.System.Key(kind, name) }

func validKind(kind string) error {
	if kind != KindFlag && kind != KindConfig {
		return fmt.Errorf("%w: kind %q is neither flag nor config", ErrInvalidSetting, kind)
	}
	return nil
}

// ValidateSettingName reports whether name is a valid setting name:
// lower-case letters, digits, '.', '_' and '-', starting with a letter or a
// digit, at most 100 characters.
func ValidateSettingName(name string) error {
	if !settingName.MatchString(name) {
		return fmt.Errorf("%w: name must match %s", ErrInvalidSetting, settingName)
	}
	return nil
}

const settingColumns = `kind, name, value, version, updated_at, updated_by`

func scanSetting(row pgx.Row) (Setting, error) {
	var st Setting
	err := row.Scan(&st.Kind, &st.Name, &st.Value, &st.Version, &st.UpdatedAt, &st.UpdatedBy)
	return st, err
}

// Get returns one setting, from the cache when it holds it. Unknown
// settings are cached too (as version 0), so a hot FlagEnabled on a flag
// nobody set does not query PostgreSQL each time.
func (s *Settings) Get(ctx context.Context, kind, name string) (Setting, error) {
	if err := validKind(kind); err != nil {
		return Setting{}, err
	}
	if err := ValidateSettingName(name); err != nil {
		return Setting{}, err
	}
	e, err := s.stores.System.versioned.GetOrLoad(ctx, s.key(kind, name), func(ctx context.Context) ([]byte, int64, error) {
		st, err := scanSetting(s.db.QueryRow(ctx, `SELECT `+settingColumns+` FROM system_settings WHERE kind = $1 AND name = $2`, kind, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return []byte{}, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read setting %s:%s: %w", kind, name, err)
		}
		b, err := json.Marshal(st)
		return b, st.Version, err
	})
	if err != nil {
		return Setting{}, err
	}
	if e.Version == 0 || len(e.Value) == 0 {
		return Setting{}, ErrSettingNotFound
	}
	var st Setting
	if err := json.Unmarshal(e.Value, &st); err != nil {
		return Setting{}, fmt.Errorf("decode cached setting: %w", err)
	}
	return st, nil
}

// Set creates or replaces a setting and returns it with its new version.
// ifVersion > 0 makes it conditional (optimistic locking): the setting must
// exist at that version, else ErrSettingNotFound or ErrVersionMismatch. The
// cache is updated after the commit (write-through, version-guarded).
func (s *Settings) Set(ctx context.Context, kind, name string, value json.RawMessage, actor string, ifVersion int64) (Setting, error) {
	if err := validKind(kind); err != nil {
		return Setting{}, err
	}
	if err := ValidateSettingName(name); err != nil {
		return Setting{}, err
	}
	if len(value) == 0 || len(value) > maxSettingBytes || !json.Valid(value) {
		return Setting{}, fmt.Errorf("%w: value must be a JSON document of at most %d bytes", ErrInvalidSetting, maxSettingBytes)
	}
	if p := validation.RawJSONProblem(value); p != "" { // what jsonb would refuse
		return Setting{}, fmt.Errorf("%w: value %s", ErrInvalidSetting, p)
	}
	if actor == "" {
		actor = "system"
	}
	var st Setting
	var err error
	if ifVersion > 0 {
		st, err = scanSetting(s.db.QueryRow(ctx, `UPDATE system_settings
			SET value = $3, version = version + 1, updated_at = now(), updated_by = $4
			WHERE kind = $1 AND name = $2 AND version = $5
			RETURNING `+settingColumns, kind, name, value, actor, ifVersion))
		if errors.Is(err, pgx.ErrNoRows) {
			var exists bool
			if qerr := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM system_settings WHERE kind = $1 AND name = $2)`, kind, name).Scan(&exists); qerr != nil {
				return Setting{}, fmt.Errorf("look up setting: %w", qerr)
			}
			if exists {
				return Setting{}, ErrVersionMismatch
			}
			return Setting{}, ErrSettingNotFound
		}
	} else {
		st, err = scanSetting(s.db.QueryRow(ctx, `INSERT INTO system_settings (kind, name, value, updated_by)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (kind, name) DO UPDATE
			SET value = EXCLUDED.value, version = system_settings.version + 1,
			    updated_at = now(), updated_by = EXCLUDED.updated_by
			RETURNING `+settingColumns, kind, name, value, actor))
	}
	if err != nil {
		return Setting{}, fmt.Errorf("write setting %s:%s: %w", kind, name, err)
	}
	if b, err := json.Marshal(st); err == nil {
		// A cache failure is remembered and replayed; the write succeeded.
		_ = s.stores.System.versioned.SetCommitted(ctx, s.key(kind, name), st.Version, b)
	}
	return st, nil
}

// List returns every setting of kind, by name, from PostgreSQL.
func (s *Settings) List(ctx context.Context, kind string) ([]Setting, error) {
	if err := validKind(kind); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT `+settingColumns+` FROM system_settings WHERE kind = $1 ORDER BY name`, kind)
	if err != nil {
		return nil, fmt.Errorf("list settings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Setting, error) { return scanSetting(r) })
	if err != nil {
		return nil, fmt.Errorf("list settings: %w", err)
	}
	if out == nil {
		out = []Setting{}
	}
	return out, nil
}

// FlagEnabled reports whether flag name is set to JSON true, or to an
// object whose "enabled" is true. Unknown flags and errors read as false.
func (s *Settings) FlagEnabled(ctx context.Context, name string) bool {
	st, err := s.Get(ctx, KindFlag, name)
	if err != nil {
		return false
	}
	var b bool
	if json.Unmarshal(st.Value, &b) == nil {
		return b
	}
	var obj struct {
		Enabled bool `json:"enabled"`
	}
	return json.Unmarshal(st.Value, &obj) == nil && obj.Enabled
}

// SaveHealthSnapshot stores the last health report under health:last in the
// system store (24 h TTL). It fails fast while the cache is degraded.
func (s *Stores) SaveHealthSnapshot(ctx context.Context, snapshot any) error {
	if err := s.guard.allow(); err != nil {
		return err
	}
	b, err := json.Marshal(map[string]any{"at": time.Now().UTC(), "health": snapshot})
	if err != nil {
		return err
	}
	err = s.System.client.Set(ctx, s.HealthKey(), b, s.System.ttl).Err()
	s.guard.observe(ctx, err)
	return err
}

// LastHealthSnapshot returns what SaveHealthSnapshot stored last:
// {"at": time, "health": snapshot}; nil if none.
func (s *Stores) LastHealthSnapshot(ctx context.Context) (json.RawMessage, error) {
	if err := s.guard.allow(); err != nil {
		return nil, err
	}
	b, err := s.System.client.Get(ctx, s.HealthKey()).Bytes()
	s.guard.observe(ctx, err)
	if errors.Is(err, redisNil) {
		return nil, nil
	}
	return b, err
}

// Meta returns cache:meta: the run_id of the Redis last reconciled with and
// when. Empty while degraded.
func (s *Stores) Meta(ctx context.Context) (map[string]string, error) {
	if err := s.guard.allow(); err != nil {
		return nil, err
	}
	return s.System.client.HGetAll(ctx, s.MetaKey()).Result()
}
