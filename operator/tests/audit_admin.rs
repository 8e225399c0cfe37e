//! The administrator's audit commands through the real binary: `audit migrate` on an empty
//! store and again (a no-op), `--grant-to` giving an INSERT/SELECT-only role what the operator
//! needs, the operator's start refusing an unmigrated PostgreSQL schema with the fix in the
//! message, and `audit prune` followed by `audit verify` reporting the anchor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use chrono::DateTime;
use keyturn_audit::AuditEntry;
use keyturn_operator::controller::audit_sink::AuditSink;
use sqlx::Executor;

fn keyturn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyturn-operator"))
        .args(args)
        .env_remove("KEYTURN_AUDIT_STORE")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Records from 2010, far older than seven years by any database clock of these tests.
fn old_entry(n: i64) -> AuditEntry {
    AuditEntry {
        time: DateTime::from_timestamp(1_262_304_000 + n * 60, 0).unwrap(),
        actor: "keyturn-operator".into(),
        action: "StepCompleted".into(),
        namespace: "payments".into(),
        managed_secret: "db-password".into(),
        rotation_id: Some(format!("kt-{n}")),
        step: None,
        fingerprint: Some("sha256:ab12".into()),
        outcome: "Success".into(),
        details: format!("record {n}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_migrate_prune_and_verify_a_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let location = format!("sqlite:{}", dir.path().join("audit.db").display());

    let first = keyturn(&["audit", "migrate", "--store", &location]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first),
        "applied migration 1 (audit records)\napplied migration 2 (append keys)\n\
         applied migration 3 (audit anchor)\n\
         audit store schema up to date (3 migrations, 3 applied now)\n"
    );
    let again = keyturn(&["audit", "migrate", "--store", &location]);
    assert!(again.status.success());
    assert_eq!(
        stdout(&again),
        "audit store schema already up to date (3 migrations); nothing applied\n"
    );
    let grant = keyturn(&["audit", "migrate", "--store", &location, "--grant-to", "x"]);
    assert_eq!(grant.status.code(), Some(2));
    assert!(
        stderr(&grant).contains("SQLite has no roles"),
        "{}",
        stderr(&grant)
    );

    // The operator appends (old records and one of today).
    let store = AuditSink::open(&location).await.unwrap();
    let mut entries: Vec<AuditEntry> = (0..5).map(old_entry).collect();
    entries.push(AuditEntry {
        time: chrono::Utc::now(),
        ..old_entry(5)
    });
    store.append_batch(&entries).await.unwrap();
    store.close().await;

    let short = keyturn(&["audit", "prune", "--store", &location, "--retention", "30d"]);
    assert_eq!(short.status.code(), Some(2));
    assert!(
        stderr(&short).contains("--allow-short-retention"),
        "{}",
        stderr(&short)
    );
    let bad = keyturn(&["audit", "prune", "--store", &location, "--retention", "7w"]);
    assert!(!bad.status.success());

    let dry = keyturn(&["audit", "prune", "--store", &location, "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).starts_with(
            "dry run: would prune records 1..=5 (5 records, the newest from 2010-01-01T00:04:00Z)"
        ),
        "{}",
        stdout(&dry)
    );
    let pruned = keyturn(&["audit", "prune", "--store", &location, "--retention", "7y"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        stdout(&pruned).starts_with("pruned records 1..=5"),
        "{}",
        stdout(&pruned)
    );
    assert!(
        stdout(&pruned).contains("recorded as audit record 7"),
        "{}",
        stdout(&pruned)
    );

    let verify = keyturn(&["audit", "verify", "--store", &location]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    let line = stdout(&verify);
    assert!(
        line.starts_with("audit log valid: 2 records verified"),
        "{line}"
    );
    assert!(
        line.contains("records 1..=5 pruned (newest pruned record from 2010-01-01T00:04:00Z"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_migrate_grants_an_insert_select_role_that_the_operator_runs_with() {
    let Some(env) = keyturn_testenv::postgres() else {
        return;
    };
    let suffix = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let schema = format!("audit_admin_{suffix}");
    let role = format!("kt_operator_{suffix}");
    let password = format!("pw{suffix}");
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.url)
        .await
        .unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA {schema}; CREATE ROLE {role} LOGIN PASSWORD '{password}'"
        )))
        .await
        .unwrap();
    let with_path = |url: &str| {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options[search_path]={schema}")
    };
    let owner_url = with_path(&env.url);
    let operator_url = with_path(&env.url_for_user(&role, &password));

    // Before migrate: the operator does not start, and says how to fix it.
    let error = AuditSink::open(&operator_url)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("keyturn-operator audit migrate --store"),
        "{error}"
    );

    let first = keyturn(&[
        "audit",
        "migrate",
        "--store",
        &owner_url,
        "--grant-to",
        &role,
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    assert!(
        text.starts_with(
            "applied migration 1 (audit records)\napplied migration 2 (append keys)\n\
             applied migration 3 (audit anchor)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "granted: GRANT SELECT, INSERT ON {schema}.audit_records TO {role}"
        )),
        "{text}"
    );
    assert!(!text.contains(&password));
    let again = keyturn(&["audit", "migrate", "--store", &owner_url]);
    assert_eq!(
        stdout(&again),
        "audit store schema already up to date (3 migrations); nothing applied\n"
    );

    // The operator's role: INSERT and SELECT only, and that suffices to run.
    let privileges: Vec<String> = sqlx::query_scalar(
        "SELECT table_name || ':' || privilege_type FROM information_schema.role_table_grants \
         WHERE grantee = $1 ORDER BY 1",
    )
    .bind(&role)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(
        privileges,
        vec![
            "audit_anchor:SELECT",
            "audit_append_keys:INSERT",
            "audit_append_keys:SELECT",
            "audit_records:INSERT",
            "audit_records:SELECT"
        ]
    );
    let store = AuditSink::open(&operator_url).await.unwrap();
    let mut entries: Vec<AuditEntry> = (0..3).map(old_entry).collect();
    entries.push(AuditEntry {
        time: chrono::Utc::now(),
        ..old_entry(3)
    });
    store.append_batch(&entries).await.unwrap();

    // The operator's role cannot prune; the owner can.
    let refused = keyturn(&["audit", "prune", "--store", &operator_url]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("permission denied"),
        "{}",
        stderr(&refused)
    );
    let pruned = keyturn(&["audit", "prune", "--store", &owner_url]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        stdout(&pruned).starts_with("pruned records 1..=3"),
        "{}",
        stdout(&pruned)
    );

    // It appends on and verifies, from the anchor.
    store.append_batch(&[old_entry(9)]).await.unwrap();
    store.close().await;
    let verify = keyturn(&["audit", "verify", "--store", &operator_url]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(
        stdout(&verify).starts_with("audit log valid: 3 records verified"),
        "{}",
        stdout(&verify)
    );
    assert!(
        stdout(&verify).contains("records 1..=3 pruned"),
        "{}",
        stdout(&verify)
    );

    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {schema} CASCADE; DROP ROLE {role}"
        )))
        .await
        .unwrap();
    admin.close().await;
}
