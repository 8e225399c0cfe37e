-- Retention: an administrator's `audit prune` deletes the oldest records and leaves an anchor
-- (the last pruned record's sequence and hash) so the rest of the chain still verifies.
-- Same table as migrations/postgres/0003_audit_anchor.sql. docs/audit.md, "Retention".
CREATE TABLE audit_anchor (
    -- The last pruned record: records 1..=sequence are gone.
    sequence       INTEGER PRIMARY KEY CHECK (sequence >= 1),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32),
    -- Its time; no pruned record is newer than cutoff_unix.
    time_unix      INTEGER NOT NULL,
    pruned_at_unix INTEGER NOT NULL,
    cutoff_unix    INTEGER NOT NULL,
    pruned_count   INTEGER NOT NULL CHECK (pruned_count >= 1),
    CHECK (time_unix <= cutoff_unix AND cutoff_unix < pruned_at_unix)
) STRICT;

-- An anchor must describe the prune about to happen: newer than the last anchor, not dated
-- after the database's clock, naming an existing record by its hash and time, never the
-- newest record, and only records not newer than its cut-off.
CREATE TRIGGER audit_anchor_check_insert BEFORE INSERT ON audit_anchor
BEGIN
    SELECT RAISE(ABORT, 'audit_anchor: not newer than the previous anchor')
        WHERE NEW.sequence <= (SELECT max(sequence) FROM audit_anchor);
    SELECT RAISE(ABORT, 'audit_anchor: pruned_at is after the database clock')
        WHERE NEW.pruned_at_unix > unixepoch();
    SELECT RAISE(ABORT, 'audit_anchor: does not name a stored record by its hash and time')
        WHERE NOT EXISTS (SELECT 1 FROM audit_records WHERE sequence = NEW.sequence
                          AND hash = NEW.hash AND time_unix = NEW.time_unix);
    SELECT RAISE(ABORT, 'audit_anchor: the newest record is never pruned')
        WHERE NOT EXISTS (SELECT 1 FROM audit_records WHERE sequence > NEW.sequence);
    SELECT RAISE(ABORT, 'audit_anchor: a record up to the anchor is newer than the cut-off')
        WHERE EXISTS (SELECT 1 FROM audit_records WHERE sequence <= NEW.sequence
                      AND time_unix > NEW.cutoff_unix);
    SELECT RAISE(ABORT, 'audit_anchor: pruned_count is not the number of records up to the anchor')
        WHERE (SELECT count(*) FROM audit_records WHERE sequence <= NEW.sequence)
              <> NEW.pruned_count;
END;

CREATE TRIGGER audit_anchor_no_update BEFORE UPDATE ON audit_anchor
BEGIN
    SELECT RAISE(ABORT, 'audit_anchor is append-only: UPDATE rejected');
END;

CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor
BEGIN
    SELECT RAISE(ABORT, 'audit_anchor is append-only: DELETE rejected');
END;

-- DELETE on audit_records: only rows covered by the newest anchor (sequence up to it, time
-- not after its cut-off). The anchor insert above requires such rows to exist, and prune
-- deletes them all in the same transaction, so an anchor's permission is used up when that
-- transaction commits. Whoever can write the file can drop this trigger (docs/audit.md).
DROP TRIGGER audit_records_no_delete;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN NOT EXISTS (
    SELECT 1 FROM (SELECT sequence, cutoff_unix FROM audit_anchor ORDER BY sequence DESC LIMIT 1) AS a
    WHERE OLD.sequence <= a.sequence AND OLD.time_unix <= a.cutoff_unix
)
BEGIN
    SELECT RAISE(ABORT, 'audit_records is append-only: DELETE rejected (only records up to the newest audit_anchor and not newer than its cut-off, by audit prune)');
END;
