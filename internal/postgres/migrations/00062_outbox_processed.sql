-- +goose Up
-- outbox_events.processed and published_at are maintained again: the relay
-- sets them in the transaction that writes the event's ledger row, so a
-- reader of the seed's columns (SELECT ... WHERE NOT processed) sees the
-- truth. published_at is when Kafka acknowledged the event (the ledger's
-- acked_at). The ledger, the cursor and the retry queue still decide what
-- the relay reads; these columns are for people and tools.
--
-- The update is kept HOT (no index entry written, the new version on the
-- same page): no index may name processed or published_at, so the partial
-- index on published rows goes (outbox_events_aggregate_idx serves the
-- journey), and pages are filled half so the new version fits beside the
-- old one.
DROP INDEX outbox_events_published_aggregate_idx;
ALTER TABLE outbox_events ADD COLUMN published_at timestamptz;
ALTER TABLE outbox_events SET (fillfactor = 50);
UPDATE outbox_events o SET processed = true, published_at = coalesce(p.acked_at, p.published_at)
FROM outbox_published p WHERE p.seq = o.seq AND NOT o.processed;
COMMENT ON COLUMN outbox_events.processed IS 'Published to Kafka (set with the ledger row in outbox_published)';
COMMENT ON COLUMN outbox_events.published_at IS 'When Kafka acknowledged the event (outbox_published.acked_at)';

-- +goose Down
COMMENT ON COLUMN outbox_events.processed IS 'Kept for the seed''s schema; not maintained since the outbox became append-only: see outbox_status.processed';
ALTER TABLE outbox_events RESET (fillfactor);
ALTER TABLE outbox_events DROP COLUMN published_at;
CREATE INDEX outbox_events_published_aggregate_idx ON outbox_events (aggregate_id) WHERE processed;
