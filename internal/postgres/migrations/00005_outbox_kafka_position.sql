-- +goose Up
-- Where Kafka put each published outbox event: the partition and offset the
-- broker acknowledged. The embedded broker's recovery publishes again the
-- rows whose offset is at or beyond the recovered end of their partition
-- after a torn log tail; the order journey reads them to show each event's
-- place in Kafka. published_at is now set when the row is marked, after the
-- acknowledgement and the broker's durability barrier (clock_timestamp()).
ALTER TABLE outbox_events
    ADD COLUMN kafka_partition integer,
    ADD COLUMN kafka_offset    bigint;
COMMENT ON COLUMN outbox_events.kafka_partition IS 'Kafka partition the relay published the event to (NULL until published)';
COMMENT ON COLUMN outbox_events.kafka_offset IS 'Kafka offset the broker acknowledged for the event (NULL until published)';
COMMENT ON COLUMN outbox_events.published_at IS 'When the relay marked the event published: after Kafka acknowledged it and the broker made it durable';

-- +goose Down
ALTER TABLE outbox_events DROP COLUMN kafka_partition, DROP COLUMN kafka_offset;
