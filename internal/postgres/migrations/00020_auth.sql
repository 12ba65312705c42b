-- +goose Up
-- Users who log in with a password; roles as in httpapi.Role.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text        NOT NULL CHECK (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('viewer','operator','admin')),
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Usernames are unique regardless of case, so "Alice" cannot shadow "alice".
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- API keys for scripts and services. Only the SHA-256 of the key is kept;
-- the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role         text        NOT NULL CHECK (role IN ('viewer','operator','admin')),
    key_hash     bytea       NOT NULL CHECK (length(key_hash) = 32),
    key_prefix   text        NOT NULL,
    created_by   text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_created_idx ON api_keys (created_at DESC, id DESC);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE users;
