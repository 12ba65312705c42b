-- +goose Up
-- Connector definitions shared by every process of the cdc role. Each change
-- (create, new configuration, pause, resume, restart) bumps generation and
-- is announced with NOTIFY trackops_cdc_connectors; a process applies a
-- definition whose generation differs from the one it runs. builtin rows
-- are connectors a process defines from its own configuration (the orders
-- connector of the cdc strategy): their config is empty unless a client
-- replaced it through the REST API, and their pause and restart are shared.
ALTER TABLE cdc_connectors
    ADD COLUMN generation bigint  NOT NULL DEFAULT 1,
    ADD COLUMN builtin    boolean NOT NULL DEFAULT false;

-- What the process streaming a connector (the holder of its lease) reports,
-- so every process's Kafka Connect status API can answer for it:
-- worker_id and lease_pid name the holder (its lease session's backend),
-- state and trace are Kafka Connect's.
CREATE TABLE cdc_connector_status (
    name       text        PRIMARY KEY,
    worker_id  text        NOT NULL,
    lease_pid  integer     NOT NULL DEFAULT 0,
    state      text        NOT NULL,
    trace      text        NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE cdc_connector_status;
ALTER TABLE cdc_connectors DROP COLUMN builtin, DROP COLUMN generation;
