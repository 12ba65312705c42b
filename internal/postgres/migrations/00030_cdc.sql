-- +goose Up
-- Kafka Connect-style connector definitions of the built-in CDC connector,
-- created through the Connect REST API; they restart with the process.
CREATE TABLE cdc_connectors (
    name       text        PRIMARY KEY,
    config     jsonb       NOT NULL,
    paused     boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What a connector remembers besides its replication slot: whether its
-- initial snapshot finished (snapshot.mode semantics) and the last position
-- it confirmed. Kept when a connector is deleted, as Kafka Connect keeps
-- offsets, so re-creating it resumes instead of snapshotting again.
CREATE TABLE cdc_offsets (
    name               text        PRIMARY KEY,
    slot_name          text        NOT NULL,
    snapshot_completed boolean     NOT NULL DEFAULT false,
    flushed_lsn        bigint      NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Captured tables log whole old rows: updates and deletes carry a full
-- "before" image, and an unchanged TOAST column of an update is taken from
-- the old row instead of being missing (see docs/cdc.md).
ALTER TABLE orders REPLICA IDENTITY FULL;
ALTER TABLE order_items REPLICA IDENTITY FULL;

-- +goose Down
ALTER TABLE order_items REPLICA IDENTITY DEFAULT;
ALTER TABLE orders REPLICA IDENTITY DEFAULT;
DROP TABLE cdc_offsets;
DROP TABLE cdc_connectors;
