-- +goose Up
-- What the running platform was started with, so one-shot commands on
-- another shell (`trackops cdc status`) report the platform's settings, not
-- their own environment's. Every `trackops run` writes its rows on start.
CREATE TABLE platform_runtime (
    name       text        PRIMARY KEY CHECK (name ~ '^[a-z0-9_]{1,63}$'),
    value      text        NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now(),
    set_by     text        NOT NULL
);

-- +goose Down
DROP TABLE platform_runtime;
