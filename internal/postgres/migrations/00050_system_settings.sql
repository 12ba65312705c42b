-- +goose Up
-- Feature flags and system configuration: the durable source behind the
-- Redis system store (flag:{name}, config:{name}), which only caches them.
CREATE TABLE system_settings (
    kind       text        NOT NULL CHECK (kind IN ('flag', 'config')),
    name       text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,99}$'),
    value      jsonb       NOT NULL,
    version    bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL DEFAULT 'system',
    PRIMARY KEY (kind, name)
);

-- +goose Down
DROP TABLE system_settings;
