-- +goose Up
-- One row per mutation that reached a route: who, what, where, outcome.
CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL,
    actor          text        NOT NULL,
    principal_id   text        NOT NULL,
    principal_kind text        NOT NULL,
    action         text        NOT NULL,
    method         text        NOT NULL,
    route          text        NOT NULL,
    target         text        NOT NULL,
    status         integer     NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('success','denied','rejected','error')),
    request_id     text        NOT NULL DEFAULT '',
    client_ip      text        NOT NULL DEFAULT '',
    duration_ms    double precision NOT NULL DEFAULT 0
);
-- Reads page newest first by id, optionally within one actor or route.
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id DESC);
CREATE INDEX audit_log_route_idx ON audit_log (route, id DESC);
CREATE INDEX audit_log_at_idx    ON audit_log (at);

-- +goose Down
DROP TABLE audit_log;
