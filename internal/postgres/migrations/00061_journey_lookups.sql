-- +goose Up
-- The order journey finds an order's events by aggregate id. Unpublished
-- rows are in the relay's own index (outbox_pending_aggregate_idx, WHERE NOT
-- processed); this one covers the published rest. Being partial, it costs
-- nothing when a row is written, only one index entry when the relay marks
-- it published (an update that is never HOT anyway: processed is in the
-- relay's index predicates). Dead letters are found by record key (the
-- order id); they are rare, so their index costs next to nothing.
CREATE INDEX outbox_events_published_aggregate_idx ON outbox_events (aggregate_id) WHERE processed;
CREATE INDEX dlq_messages_key_idx ON dlq_messages (key);

-- +goose Down
DROP INDEX dlq_messages_key_idx;
DROP INDEX outbox_events_published_aggregate_idx;
