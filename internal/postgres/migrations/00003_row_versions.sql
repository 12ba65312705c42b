-- +goose Up
-- version is the row version every cache entry and event is stamped with.
-- TrackOps bumps it on each change; an UPDATE made by hand in SQL that leaves
-- it alone is bumped here, so caches and CDC consumers still see a newer
-- version and never keep the old row.
-- +goose StatementBegin
CREATE FUNCTION bump_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version = OLD.version AND NEW IS DISTINCT FROM OLD THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER orders_row_version BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bump_row_version();

-- +goose Down
DROP TRIGGER orders_row_version ON orders;
DROP FUNCTION bump_row_version();
