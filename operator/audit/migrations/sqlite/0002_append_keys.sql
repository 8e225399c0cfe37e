-- Idempotent appends (AuditStore::append_batch_once): one row per key already appended, e.g.
-- the auditID of a Kubernetes audit event, so a batch the API server retries is not recorded
-- twice. Not part of the hash chain: deleting a row only allows a duplicate record, which the
-- chain itself records as such.
CREATE TABLE audit_append_keys (
    key      TEXT    PRIMARY KEY,
    sequence INTEGER NOT NULL
) STRICT;

-- Readers of one action in sequence order (reads summaries: action = 'SecretRead').
CREATE INDEX audit_records_action ON audit_records (action, sequence);
