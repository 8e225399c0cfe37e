-- Keyturn audit log, PostgreSQL. Same columns as migrations/sqlite/0001_audit_records.sql.
-- Run by the schema owner; the operator's role gets only SELECT and INSERT (docs/audit.md).
CREATE TABLE audit_records (
    sequence       BIGINT PRIMARY KEY CHECK (sequence >= 1),
    time_unix      BIGINT NOT NULL,
    actor          TEXT   NOT NULL,
    action         TEXT   NOT NULL,
    namespace      TEXT   NOT NULL,
    managed_secret TEXT   NOT NULL,
    rotation_id    TEXT,
    step           TEXT,
    fingerprint    TEXT,
    outcome        TEXT   NOT NULL,
    details        TEXT   NOT NULL,
    -- UNIQUE: two records can never link to the same predecessor (no fork of the chain).
    previous_hash  BYTEA  NOT NULL UNIQUE CHECK (octet_length(previous_hash) = 32),
    hash           BYTEA  NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE INDEX audit_records_time ON audit_records (time_unix);

-- Append-only, whatever the caller's grants: UPDATE, DELETE and TRUNCATE raise.
-- A superuser (or the table owner) can still disable or drop the triggers; checkpoints kept
-- outside the database detect what they then do (docs/audit.md, "Limits").
CREATE FUNCTION audit_records_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_records is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_records_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_reject_change();

CREATE TRIGGER audit_records_no_truncate
    BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_reject_change();
