-- +goose Up
-- Every dead letter the DLQ monitor has seen, one row per record of a *.dlq
-- topic; (topic, partition, offset) is unique so a redelivered record is
-- recorded once.
CREATE TABLE dlq_messages (
    id                 bigserial   PRIMARY KEY,
    topic              text        NOT NULL,
    partition          integer     NOT NULL,
    "offset"           bigint      NOT NULL,
    key                bytea,
    value              bytea,
    -- [{"key": "...", "value": "<base64>"}], in record order, bytes exact.
    headers            jsonb       NOT NULL DEFAULT '[]',
    record_timestamp   timestamptz,
    original_topic     text        NOT NULL,
    original_partition integer,
    original_offset    bigint,
    original_timestamp timestamptz,
    consumer_group     text        NOT NULL DEFAULT '',
    exception_class    text        NOT NULL DEFAULT '',
    exception_message  text        NOT NULL DEFAULT '',
    stacktrace         text        NOT NULL DEFAULT '',
    attempts           integer,
    -- Hash of exception class + normalised message; error_pattern is the
    -- readable form it was computed from.
    fingerprint        text        NOT NULL,
    error_pattern      text        NOT NULL,
    -- How often this record's lineage was replayed before it landed here.
    replay_count       integer     NOT NULL DEFAULT 0,
    status             text        NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'replayed', 'discarded')),
    -- Set when a replay was refused by the loop guard.
    replay_blocked     boolean     NOT NULL DEFAULT false,
    received_at        timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    replayed_at        timestamptz,
    CONSTRAINT dlq_messages_record_key UNIQUE (topic, partition, "offset")
);
CREATE INDEX dlq_messages_topic_idx ON dlq_messages (topic, id);
CREATE INDEX dlq_messages_original_topic_idx ON dlq_messages (original_topic, id);
CREATE INDEX dlq_messages_fingerprint_idx ON dlq_messages (fingerprint, id);
CREATE INDEX dlq_messages_new_idx ON dlq_messages (id) WHERE status = 'new';
CREATE INDEX dlq_messages_received_idx ON dlq_messages (received_at);

-- What operators did to dead letters (replay, discard, loop-guard refusals):
-- the DLQ's own audit trail, written in the transaction of the change.
CREATE TABLE dlq_actions (
    id         bigserial   PRIMARY KEY,
    message_id bigint      NOT NULL REFERENCES dlq_messages (id) ON DELETE CASCADE,
    action     text        NOT NULL,
    actor      text        NOT NULL,
    detail     jsonb       NOT NULL DEFAULT '{}',
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dlq_actions_message_idx ON dlq_actions (message_id, id);

-- +goose Down
DROP TABLE dlq_actions;
DROP TABLE dlq_messages;
