-- +goose Up
-- The request's correlation id and trace context travel with each status
-- change, so that under the cdc strategy the events built from the change
-- stream carry them as the outbox's do (the WAL knows nothing of requests).
ALTER TABLE order_status_history
    ADD COLUMN correlation_id text,
    ADD COLUMN traceparent    text;

-- The change stream builds ORDER_* events from the rows of each transaction,
-- the history row giving actor and reason; it captures this table too.
-- Rows are only ever inserted, so the default replica identity suffices.

-- +goose Down
ALTER TABLE order_status_history
    DROP COLUMN traceparent,
    DROP COLUMN correlation_id;
