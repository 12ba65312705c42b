-- +goose Up
-- The signaling table of the built-in CDC connector (its
-- signal.data.collection), in the shape Debezium documents: an insert here is
-- a signal, e.g.
--   INSERT INTO debezium_signal (id, type, data) VALUES ('ad-hoc-1', 'execute-snapshot',
--     '{"data-collections": ["public.orders"], "type": "incremental"}');
-- Incremental snapshots write their watermarks here too. The connector
-- captures it (Debezium adds the signaling table to the captured tables).
CREATE TABLE debezium_signal (
    id   varchar(42)   PRIMARY KEY,
    type varchar(32)   NOT NULL,
    data varchar(2048) NULL
);

-- +goose Down
DROP TABLE debezium_signal;
