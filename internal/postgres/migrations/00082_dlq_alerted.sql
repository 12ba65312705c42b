-- +goose Up
-- Dead-letter alerts are raised by one process of the cluster (the holder
-- of the dlq-alerts lease) from this table, whichever process's monitor
-- recorded the dead letter: alerted_at marks the rows already alerted.
-- Rows recorded before this migration were alerted by the monitor that
-- recorded them; a non-volatile default marks them (at the migration's
-- time) without rewriting the table, and new rows start unalerted.
ALTER TABLE dlq_messages ADD COLUMN alerted_at timestamptz DEFAULT now();
ALTER TABLE dlq_messages ALTER COLUMN alerted_at DROP DEFAULT;
CREATE INDEX dlq_messages_unalerted_idx ON dlq_messages (id) WHERE alerted_at IS NULL;

-- +goose Down
DROP INDEX dlq_messages_unalerted_idx;
ALTER TABLE dlq_messages DROP COLUMN alerted_at;
