-- +goose Up
-- The order journey finds an order's events by aggregate id, published ones
-- included (the relay's own index covers unpublished rows only), and its
-- dead letters by record key (the order id). The outbox index costs one more
-- index entry per outbox insert and publish; dead letters are rare.
CREATE INDEX outbox_events_aggregate_idx ON outbox_events (aggregate_id);
CREATE INDEX dlq_messages_key_idx ON dlq_messages (key);

-- +goose Down
DROP INDEX dlq_messages_key_idx;
DROP INDEX outbox_events_aggregate_idx;
