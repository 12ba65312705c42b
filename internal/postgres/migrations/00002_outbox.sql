-- +goose Up
-- The transactional outbox. Column names follow the seed (event_type,
-- aggregate_id, event_data, processed); Debezium's Outbox Event Router reads
-- the table as is with table.field.event.type=event_type,
-- table.field.event.key=aggregate_id, table.field.event.payload=event_data.
CREATE TABLE outbox_events (
    seq             bigserial   NOT NULL UNIQUE,
    id              uuid        PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    event_type      text        NOT NULL,
    topic           text        NOT NULL,
    event_data      text        NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    processed       boolean     NOT NULL DEFAULT false,
    published_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    failed          boolean     NOT NULL DEFAULT false
);
-- The relay's work queue: unpublished rows in commit-sequence order.
CREATE INDEX outbox_pending_idx ON outbox_events (seq) WHERE NOT processed AND NOT failed;
-- Per-aggregate ordering check: is there an earlier unpublished event?
-- (Published rows are pruned in seq order through the seq index; no index on
-- published_at, so marking a row published touches as few indexes as it can.)
CREATE INDEX outbox_pending_aggregate_idx ON outbox_events (aggregate_id, seq) WHERE NOT processed;

-- Wake relays at commit instead of waiting for their next poll. One
-- notification per statement; PostgreSQL folds duplicates within a transaction.
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('trackops_outbox', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TABLE outbox_events;
DROP FUNCTION outbox_notify();
