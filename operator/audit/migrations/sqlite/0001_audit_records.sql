-- Keyturn audit log, SQLite. Same columns as migrations/postgres/0001_audit_records.sql.
-- One row per record of the hash chain; see docs/audit.md for the canonical encoding.
CREATE TABLE audit_records (
    sequence       INTEGER PRIMARY KEY CHECK (sequence >= 1),
    time_unix      INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    namespace      TEXT    NOT NULL,
    managed_secret TEXT    NOT NULL,
    rotation_id    TEXT,
    step           TEXT,
    fingerprint    TEXT,
    outcome        TEXT    NOT NULL,
    details        TEXT    NOT NULL,
    -- UNIQUE: two records can never link to the same predecessor (no fork of the chain).
    previous_hash  BLOB    NOT NULL UNIQUE CHECK (length(previous_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE INDEX audit_records_time ON audit_records (time_unix);

-- Append-only: the file's owner can still drop these (see docs/audit.md, "Limits").
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE rejected');
END;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only: DELETE rejected');
END;
