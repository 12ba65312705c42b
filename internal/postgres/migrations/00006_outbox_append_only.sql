-- +goose Up
-- The outbox becomes append-only: the relay no longer rewrites a row to mark
-- it published. Under wal_level=logical every UPDATE logs the whole new row
-- (about 1 KB with its payload), touches the primary key and seq indexes, and
-- the claim before it locked the row (one more WAL record). Instead:
--
--  * outbox_events keeps what the application writes (the seed's columns,
--    read by Debezium's Outbox Event Router as before) plus xid, the
--    transaction that wrote the row;
--  * outbox_relay holds the relay's cursor: rows whose transaction is visible
--    in snapshot snap_a are done, rows committed between snap_a and snap_b
--    are done up to seq last_seq, the rest are pending. Commit order, not
--    seq order, moves the cursor, so a transaction that took its seq early
--    and committed late is never skipped;
--  * outbox_published is the ledger: one narrow row per published event with
--    the partition and offset Kafka acknowledged, when it acknowledged, and
--    when the relay recorded it (after the broker made it durable);
--  * outbox_retries queues the rare events the cursor passed without
--    publishing: a transient failure, a later event of an aggregate that has
--    one, a failed event an operator requeued, an event a damaged broker log
--    lost. A table of its own, usually empty, so the relay's look at it
--    costs nothing whatever the planner knows of outbox_events.
--
-- outbox_status joins them into one row per event with the columns readers
-- used to find on outbox_events (processed, published_at, kafka_partition,
-- kafka_offset) plus kafka_acked_at; outbox_pending lists the backlog.

-- Existing rows read as written by transaction 1, visible in every snapshot:
-- the cursor below has passed them, and the statements further down sort
-- them into published (ledger) and still to publish (retry). New rows get
-- the inserting transaction's id (no table rewrite: a constant default is
-- stored once, then the default changes).
ALTER TABLE outbox_events ADD COLUMN xid xid8 NOT NULL DEFAULT '1';
ALTER TABLE outbox_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
COMMENT ON COLUMN outbox_events.xid IS 'Transaction that wrote the event: the relay''s cursor follows commit order through it';
COMMENT ON COLUMN outbox_events.processed IS 'Kept for the seed''s schema; not maintained since the outbox became append-only: see outbox_status.processed';
COMMENT ON COLUMN outbox_events.attempts IS 'Failed publish attempts (outbox_status.attempts adds the one that succeeded)';

CREATE TABLE outbox_published (
    seq             bigint      PRIMARY KEY,
    kafka_partition integer,
    kafka_offset    bigint,
    acked_at        timestamptz,
    published_at    timestamptz NOT NULL DEFAULT statement_timestamp()
);
COMMENT ON TABLE outbox_published IS 'The relay''s ledger: one row per published outbox event (outbox_events.seq)';
COMMENT ON COLUMN outbox_published.kafka_partition IS 'Kafka partition the broker acknowledged the event on (NULL for events published before positions were recorded)';
COMMENT ON COLUMN outbox_published.kafka_offset IS 'Kafka offset the broker acknowledged for the event';
COMMENT ON COLUMN outbox_published.acked_at IS 'When Kafka acknowledged the event';
COMMENT ON COLUMN outbox_published.published_at IS 'When the relay recorded the event published: after the acknowledgement and the broker''s durability barrier';

INSERT INTO outbox_published (seq, kafka_partition, kafka_offset, acked_at, published_at)
SELECT seq, kafka_partition, kafka_offset, published_at, coalesce(published_at, created_at)
FROM outbox_events WHERE processed;
-- attempts now counts failures only; a published row's last attempt succeeded.
UPDATE outbox_events SET attempts = attempts - 1 WHERE processed AND attempts > 0;

CREATE TABLE outbox_retries (
    seq             bigint      PRIMARY KEY,
    aggregate_id    text        NOT NULL,
    next_attempt_at timestamptz NOT NULL
);
COMMENT ON TABLE outbox_retries IS 'Outbox events behind the relay''s cursor still to publish, each aggregate''s in seq order, after next_attempt_at';
CREATE INDEX outbox_retries_aggregate_idx ON outbox_retries (aggregate_id, seq);
INSERT INTO outbox_retries (seq, aggregate_id, next_attempt_at)
SELECT seq, aggregate_id, next_attempt_at FROM outbox_events WHERE NOT processed AND NOT failed;

-- Where the relay is. One row; epoch fences a relay that lost its lock.
CREATE TABLE outbox_relay (
    id         integer      PRIMARY KEY CHECK (id = 1),
    epoch      bigint       NOT NULL,
    owner      text,
    snap_a     pg_snapshot  NOT NULL,
    snap_b     pg_snapshot  NOT NULL,
    last_seq   bigint       NOT NULL,
    updated_at timestamptz  NOT NULL
);
COMMENT ON TABLE outbox_relay IS 'The outbox relay''s cursor: done = visible in snap_a, or committed by snap_b with seq <= last_seq';
INSERT INTO outbox_relay VALUES (1, 0, NULL, pg_current_snapshot(), pg_current_snapshot(), 0, now());

ALTER TABLE outbox_events DROP COLUMN published_at, DROP COLUMN kafka_partition, DROP COLUMN kafka_offset,
    DROP COLUMN next_attempt_at;

DROP INDEX outbox_pending_idx;
DROP INDEX outbox_pending_aggregate_idx;
-- The cursor's new rows (xid >= a snapshot's xmax, or in its running list).
CREATE INDEX outbox_events_xid_idx ON outbox_events (xid);
-- An order's events (the journey, operators).
CREATE INDEX outbox_events_aggregate_idx ON outbox_events (aggregate_id, seq);
-- Events given up, none when all is well: free on insert.
CREATE INDEX outbox_failed_idx ON outbox_events (seq) WHERE failed;

CREATE VIEW outbox_status AS
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       p.seq IS NOT NULL AS processed,
       p.published_at, p.acked_at AS kafka_acked_at, p.kafka_partition, p.kafka_offset,
       o.attempts + (p.seq IS NOT NULL)::int AS attempts,
       o.last_error, o.failed, r.seq IS NOT NULL AS retrying, r.next_attempt_at
FROM outbox_events o LEFT JOIN outbox_published p ON p.seq = o.seq LEFT JOIN outbox_retries r ON r.seq = o.seq;
COMMENT ON VIEW outbox_status IS 'One row per outbox event with its publication: the ledger joined to the outbox';

-- The backlog: events not yet published and not given up. New rows through
-- the xid index: those of transactions that started after the cursor's
-- snapshot, and of those it saw running (a long transaction elsewhere, which
-- holds the snapshot's xmin back, costs nothing here); then the retry queue.
CREATE VIEW outbox_pending AS
SELECT o.*, NULL::timestamptz AS next_attempt_at
FROM outbox_relay c JOIN outbox_events o ON o.xid >= pg_snapshot_xmax(c.snap_a)
WHERE NOT (pg_visible_in_snapshot(o.xid, c.snap_b) AND o.seq <= c.last_seq)
UNION ALL
SELECT o.*, NULL::timestamptz
FROM outbox_relay c CROSS JOIN LATERAL unnest(ARRAY(SELECT pg_snapshot_xip(c.snap_a))) AS x(xid)
JOIN outbox_events o ON o.xid = x.xid
WHERE NOT (pg_visible_in_snapshot(o.xid, c.snap_b) AND o.seq <= c.last_seq)
UNION ALL
SELECT o.*, r.next_attempt_at FROM outbox_retries r JOIN outbox_events o ON o.seq = r.seq;
COMMENT ON VIEW outbox_pending IS 'Outbox events the relay has yet to publish (failed ones excluded)';

-- +goose Down
DROP VIEW outbox_pending;
DROP VIEW outbox_status;
ALTER TABLE outbox_events ADD COLUMN published_at timestamptz, ADD COLUMN kafka_partition integer, ADD COLUMN kafka_offset bigint,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
UPDATE outbox_events o SET next_attempt_at = r.next_attempt_at FROM outbox_retries r WHERE r.seq = o.seq;
UPDATE outbox_events o SET processed = true, attempts = o.attempts + 1, published_at = p.published_at,
    kafka_partition = p.kafka_partition, kafka_offset = p.kafka_offset
FROM outbox_published p WHERE p.seq = o.seq;
UPDATE outbox_events SET processed = false WHERE seq NOT IN (SELECT seq FROM outbox_published);
DROP INDEX outbox_failed_idx;
DROP INDEX outbox_events_aggregate_idx;
DROP INDEX outbox_events_xid_idx;
CREATE INDEX outbox_pending_idx ON outbox_events (seq) WHERE NOT processed AND NOT failed;
CREATE INDEX outbox_pending_aggregate_idx ON outbox_events (aggregate_id, seq) WHERE NOT processed;
DROP TABLE outbox_relay;
DROP TABLE outbox_retries;
DROP TABLE outbox_published;
ALTER TABLE outbox_events DROP COLUMN xid;
