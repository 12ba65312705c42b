-- +goose Up
-- An incremental snapshot's progress (what is left to read, the last key
-- emitted, the table's maximum key), kept with the connector's offsets as
-- Debezium keeps it in its own, so a restarted connector resumes the
-- snapshot where Kafka last held it instead of starting over.
ALTER TABLE cdc_offsets ADD COLUMN incremental_snapshot jsonb;

-- +goose Down
ALTER TABLE cdc_offsets DROP COLUMN incremental_snapshot;
