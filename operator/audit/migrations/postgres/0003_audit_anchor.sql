-- Retention: an administrator's `audit prune` deletes the oldest records and leaves an anchor
-- (the last pruned record's sequence and hash) so the rest of the chain still verifies.
-- Same table as migrations/sqlite/0003_audit_anchor.sql. docs/audit.md, "Retention".
-- The operator's role gets SELECT on it at most: only the schema owner inserts anchors and
-- deletes records.
CREATE TABLE audit_anchor (
    -- The last pruned record: records 1..=sequence are gone.
    sequence       BIGINT PRIMARY KEY CHECK (sequence >= 1),
    hash           BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
    -- Its time; no pruned record is newer than cutoff_unix.
    time_unix      BIGINT NOT NULL,
    pruned_at_unix BIGINT NOT NULL,
    cutoff_unix    BIGINT NOT NULL,
    pruned_count   BIGINT NOT NULL CHECK (pruned_count >= 1),
    CHECK (time_unix <= cutoff_unix AND cutoff_unix < pruned_at_unix)
);

-- An anchor must describe the prune about to happen: newer than the last anchor, not dated
-- after the database's clock, naming an existing record by its hash and time, never the
-- newest record, and only records not newer than its cut-off.
CREATE FUNCTION audit_anchor_check_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sequence <= (SELECT max(sequence) FROM audit_anchor) THEN
        RAISE EXCEPTION 'audit_anchor: not newer than the previous anchor';
    END IF;
    IF NEW.pruned_at_unix > extract(epoch FROM statement_timestamp()) THEN
        RAISE EXCEPTION 'audit_anchor: pruned_at is after the database clock';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM audit_records WHERE sequence = NEW.sequence
                   AND hash = NEW.hash AND time_unix = NEW.time_unix) THEN
        RAISE EXCEPTION 'audit_anchor: does not name a stored record by its hash and time';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM audit_records WHERE sequence > NEW.sequence) THEN
        RAISE EXCEPTION 'audit_anchor: the newest record is never pruned';
    END IF;
    IF EXISTS (SELECT 1 FROM audit_records WHERE sequence <= NEW.sequence
               AND time_unix > NEW.cutoff_unix) THEN
        RAISE EXCEPTION 'audit_anchor: a record up to the anchor is newer than the cut-off';
    END IF;
    IF (SELECT count(*) FROM audit_records WHERE sequence <= NEW.sequence) <> NEW.pruned_count THEN
        RAISE EXCEPTION 'audit_anchor: pruned_count is not the number of records up to the anchor';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_anchor_check_insert
    BEFORE INSERT ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_anchor_check_insert();

-- At commit: the anchor's records are gone (an anchor without its deletion, or a partial
-- deletion, cannot commit).
CREATE FUNCTION audit_anchor_check_complete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_records WHERE sequence <= NEW.sequence) THEN
        RAISE EXCEPTION 'audit_anchor: records up to anchor % remain at commit', NEW.sequence;
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER audit_anchor_check_complete
    AFTER INSERT ON audit_anchor
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_anchor_check_complete();

CREATE FUNCTION audit_anchor_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_anchor is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_anchor_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_anchor_reject_change();

CREATE TRIGGER audit_anchor_no_truncate
    BEFORE TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION audit_anchor_reject_change();

-- DELETE on audit_records: only inside a prune, which sets the transaction-local
-- keyturn.prune_through to the anchor it inserted, and only rows covered by that (newest)
-- anchor: sequence up to it, time not after its cut-off. UPDATE and TRUNCATE stay rejected
-- for every role. The privilege to DELETE at all is the owner's alone.
CREATE OR REPLACE FUNCTION audit_records_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest audit_anchor%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' THEN
        SELECT * INTO newest FROM audit_anchor ORDER BY sequence DESC LIMIT 1;
        IF FOUND
           AND current_setting('keyturn.prune_through', true) = newest.sequence::text
           AND OLD.sequence <= newest.sequence
           AND OLD.time_unix <= newest.cutoff_unix THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_records is append-only: DELETE of record % rejected (only records up to the newest audit_anchor and not newer than its cut-off, by audit prune)', OLD.sequence
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'audit_records is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Pin the functions' table lookups to this schema, with pg_temp last: a session's temporary
-- table named audit_anchor cannot stand in for the real one.
DO $$
DECLARE
    schema_name text := (SELECT relnamespace::regnamespace::text FROM pg_class
                         WHERE oid = 'audit_records'::regclass);
BEGIN
    EXECUTE format('ALTER FUNCTION audit_records_reject_change() SET search_path = %s, pg_temp', schema_name);
    EXECUTE format('ALTER FUNCTION audit_anchor_check_insert() SET search_path = %s, pg_temp', schema_name);
    EXECUTE format('ALTER FUNCTION audit_anchor_check_complete() SET search_path = %s, pg_temp', schema_name);
END
$$;
