-- +goose Up
CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    customer_id      text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('PENDING','CONFIRMED','PROCESSING','SHIPPED','DELIVERED','CANCELLED')),
    currency         char(3)     NOT NULL DEFAULT 'USD',
    total_amount     numeric(14,2) NOT NULL CHECK (total_amount >= 0),
    shipping_address jsonb,
    cancel_reason    text,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination runs newest first on (created_at, id) within each filter.
CREATE INDEX orders_created_idx  ON orders (created_at DESC, id DESC);
CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_status_idx   ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_items (
    id          uuid PRIMARY KEY,
    order_id    uuid    NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line_no     integer NOT NULL,
    sku         text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    line_total  numeric(14,2) NOT NULL CHECK (line_total >= 0),
    UNIQUE (order_id, line_no)
);

CREATE TABLE order_status_history (
    id          bigserial PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    from_status text,
    to_status   text        NOT NULL,
    reason      text,
    actor       text        NOT NULL,
    version     integer     NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, id);

-- One row per (scope, key): the first request's fingerprint and response are
-- replayed for every retry that carries the same key and body.
CREATE TABLE idempotency_keys (
    scope           text        NOT NULL,
    key             text        NOT NULL,
    request_hash    text        NOT NULL,
    order_id        uuid        NOT NULL,
    response_status integer     NOT NULL,
    response_body   bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE order_status_history;
DROP TABLE order_items;
DROP TABLE orders;
