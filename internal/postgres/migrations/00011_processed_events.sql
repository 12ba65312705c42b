-- +goose Up
-- The consumers' inbox: one row per event a consumer has applied, written in
-- the same transaction as the change the event caused, so a redelivered
-- event finds its row and changes nothing.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_at_idx ON processed_events (processed_at);

-- +goose Down
DROP TABLE processed_events;
