-- +goose Up
-- outbox_relay holds one row (its CHECK says id = 1), which the planner
-- cannot know before the table is analyzed: it assumes hundreds of rows,
-- multiplies every estimate of the backlog view by them, and past
-- jit_above_cost compiles the query — about half a CPU-second each time
-- the ops console's pulse or the outbox stats read the backlog, every few
-- seconds, on a database whose statistics autovacuum has not gathered yet
-- (a new database, or autovacuum off). Naming the row by its key makes the
-- planner read it through the primary key: one row, a cost in the
-- thousands, no JIT. The transactions the cursor saw running and the events
-- waiting for a retry are few: each is looked up through its index on its
-- own (OFFSET 0 keeps the planner from turning the lookups into a scan of
-- the whole outbox, which it does on a guess of how many there are). The columns are the view's own
-- (outbox_events has gained some since it was created).
CREATE OR REPLACE VIEW outbox_pending AS
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       o.processed, o.attempts, o.last_error, o.failed, o.xid, NULL::timestamptz AS next_attempt_at
FROM outbox_relay c JOIN outbox_events o ON o.xid >= pg_snapshot_xmax(c.snap_a)
WHERE c.id = 1 AND NOT (pg_visible_in_snapshot(o.xid, c.snap_b) AND o.seq <= c.last_seq)
UNION ALL
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       o.processed, o.attempts, o.last_error, o.failed, o.xid, NULL::timestamptz
FROM outbox_relay c CROSS JOIN LATERAL unnest(ARRAY(SELECT pg_snapshot_xip(c.snap_a))) AS x(xid)
CROSS JOIN LATERAL (SELECT * FROM outbox_events e WHERE e.xid = x.xid OFFSET 0) o
WHERE c.id = 1 AND NOT (pg_visible_in_snapshot(o.xid, c.snap_b) AND o.seq <= c.last_seq)
UNION ALL
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       o.processed, o.attempts, o.last_error, o.failed, o.xid, r.next_attempt_at
FROM outbox_retries r CROSS JOIN LATERAL (SELECT * FROM outbox_events e WHERE e.seq = r.seq OFFSET 0) o;

-- +goose Down
CREATE OR REPLACE VIEW outbox_pending AS
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       o.processed, o.attempts, o.last_error, o.failed, o.xid, NULL::timestamptz AS next_attempt_at
FROM outbox_relay c JOIN outbox_events o ON o.xid >= pg_snapshot_xmax(c.snap_a)
WHERE NOT (pg_visible_in_snapshot(o.xid, c.snap_b) AND o.seq <= c.last_seq)
UNION ALL
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       o.processed, o.attempts, o.last_error, o.failed, o.xid, NULL::timestamptz
FROM outbox_relay c CROSS JOIN LATERAL unnest(ARRAY(SELECT pg_snapshot_xip(c.snap_a))) AS x(xid)
JOIN outbox_events o ON o.xid = x.xid
WHERE NOT (pg_visible_in_snapshot(o.xid, c.snap_b) AND o.seq <= c.last_seq)
UNION ALL
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.event_data, o.headers, o.created_at,
       o.processed, o.attempts, o.last_error, o.failed, o.xid, r.next_attempt_at
FROM outbox_retries r JOIN outbox_events o ON o.seq = r.seq;
