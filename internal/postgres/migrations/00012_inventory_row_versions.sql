-- +goose Up
-- Hand-made SQL changes of stock bump the row version too (see 00003), so the
-- inventory cache can never keep an older row.
CREATE TRIGGER inventory_items_row_version BEFORE UPDATE ON inventory_items
    FOR EACH ROW EXECUTE FUNCTION bump_row_version();

-- +goose Down
DROP TRIGGER inventory_items_row_version ON inventory_items;
