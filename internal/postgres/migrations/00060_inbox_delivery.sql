-- +goose Up
-- Where and when each consumed event was handled, written by the inbox claim
-- itself (same statement, no extra round trip): the consumer group, the
-- record's topic, partition, offset and timestamp, and the attempt that
-- succeeded. processed_at is when it was handled. The order journey reads
-- them; rows written before this migration, or by claims made outside a
-- Kafka consumer, leave them null. Nullable columns without defaults are a
-- catalogue change only: no table rewrite.
ALTER TABLE processed_events
    ADD COLUMN consumer_group   text,
    ADD COLUMN topic            text,
    ADD COLUMN kafka_partition  integer,
    ADD COLUMN kafka_offset     bigint,
    ADD COLUMN record_timestamp timestamptz,
    ADD COLUMN attempts         integer;

-- +goose Down
ALTER TABLE processed_events
    DROP COLUMN attempts,
    DROP COLUMN record_timestamp,
    DROP COLUMN kafka_offset,
    DROP COLUMN kafka_partition,
    DROP COLUMN topic,
    DROP COLUMN consumer_group;
