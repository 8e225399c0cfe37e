//! Keyturn's tamper-evident audit log (DESIGN.md, property 6).
//!
//! - [`record`]: the records and their canonical, hash-chained encoding;
//! - [`verify`]: recomputes every link and checks checkpoints kept outside the store;
//! - [`store`]: an append-only store through sqlx, SQLite (embedded file, WAL) or PostgreSQL;
//! - [`retention`]: how long records are kept, and the anchor a prune leaves behind.
//!
//! The API takes credential *fingerprints* only: no type here has a place for a credential
//! value. See `docs/audit.md`.

pub mod record;
pub mod retention;
pub mod store;
pub mod verify;

pub use record::{AuditEntry, AuditRecord, EntryError, GENESIS_HASH};
pub use retention::{Anchor, PRUNE_ACTION, Retention, RetentionError};
pub use store::{AuditStore, KeyedAppend, KeyedEntries, StoreError};
pub use verify::{Checkpoint, Verifier, VerifyError, VerifySummary, verify};
