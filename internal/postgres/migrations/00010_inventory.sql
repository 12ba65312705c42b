-- +goose Up
-- Stock per SKU. reserved counts units promised to open orders; available is
-- on_hand - reserved. The CHECK is the last line of defence against
-- overselling: no transaction can commit a row that breaks it.
CREATE TABLE inventory_items (
    sku        text        PRIMARY KEY,
    name       text        NOT NULL,
    on_hand    bigint      NOT NULL,
    reserved   bigint      NOT NULL DEFAULT 0,
    version    bigint      NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inventory_items_stock_check CHECK (0 <= reserved AND reserved <= on_hand)
);

-- The ledger of every on_hand change: operator sets and adjustments, and
-- units leaving with shipped orders.
CREATE TABLE inventory_adjustments (
    id                bigserial   PRIMARY KEY,
    sku               text        NOT NULL REFERENCES inventory_items (sku),
    delta             bigint      NOT NULL,
    reason            text        NOT NULL,
    actor             text        NOT NULL,
    order_id          uuid,
    resulting_on_hand bigint      NOT NULL,
    at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_adjustments_sku_idx ON inventory_adjustments (sku, id);

-- Inventory's view of each order it has seen. Reserving, releasing and
-- committing all lock this row first, so the reactions to one order's
-- events never interleave, whatever order their topics are consumed in. A
-- 'cancelled' row is a tombstone: the order was cancelled before its
-- ORDER_CREATED was handled, so nothing may be reserved for it later.
CREATE TABLE inventory_orders (
    order_id   uuid        PRIMARY KEY,
    state      text        NOT NULL CHECK (state IN ('reserved', 'failed', 'released', 'committed', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Units held for an order, one row per (order, SKU).
CREATE TABLE reservations (
    order_id   uuid        NOT NULL,
    sku        text        NOT NULL REFERENCES inventory_items (sku),
    quantity   bigint      NOT NULL CHECK (quantity > 0),
    status     text        NOT NULL CHECK (status IN ('reserved', 'released', 'committed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX reservations_sku_idx ON reservations (sku, created_at DESC, order_id DESC);

-- +goose Down
DROP TABLE reservations;
DROP TABLE inventory_orders;
DROP TABLE inventory_adjustments;
DROP TABLE inventory_items;
