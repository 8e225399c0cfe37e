//! What a role may do, read from the catalogs, so AlternatingUsers can keep its two login roles
//! equal: attributes, memberships, direct grants (from the ACLs, owner's implicit privileges
//! included) and default privileges. Ownership and per-role settings cannot be equalised by
//! GRANT; they are reported, not copied.

use std::collections::BTreeSet;

use sqlx::PgConnection;

use super::sql::quote_identifier;

/// The attributes of a role that matter for equalising.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleAttributes {
    pub superuser: bool,
    pub inherit: bool,
    pub create_role: bool,
    pub create_database: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    pub connection_limit: i32,
}

impl RoleAttributes {
    /// Attributes keyturn refuses to give a second login role silently.
    pub fn forbidden(&self) -> Vec<&'static str> {
        let mut forbidden = Vec::new();
        if self.superuser {
            forbidden.push("SUPERUSER");
        }
        if self.replication {
            forbidden.push("REPLICATION");
        }
        if self.bypass_rls {
            forbidden.push("BYPASSRLS");
        }
        forbidden
    }

    /// The copyable attributes, for comparison.
    pub fn copyable(&self) -> (bool, bool, bool, i32) {
        (
            self.inherit,
            self.create_database,
            self.create_role,
            self.connection_limit,
        )
    }
}

pub(crate) async fn attributes(
    connection: &mut PgConnection,
    role: &str,
) -> Result<Option<RoleAttributes>, sqlx::Error> {
    let row: Option<(bool, bool, bool, bool, bool, bool, i32)> = sqlx::query_as(
        "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolconnlimit \
         FROM pg_catalog.pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(connection)
    .await?;
    Ok(row.map(
        |(
            superuser,
            inherit,
            create_role,
            create_database,
            replication,
            bypass_rls,
            connection_limit,
        )| RoleAttributes {
            superuser,
            inherit,
            create_role,
            create_database,
            replication,
            bypass_rls,
            connection_limit,
        },
    ))
}

/// One thing a role holds: a privilege on an object, a membership, a default privilege.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub kind: String,
    pub object: String,
    pub privilege: String,
    pub grantable: bool,
    /// The statement giving the same to the other role (built by the server with `%I`).
    pub statement: String,
}

impl Grant {
    fn key(&self) -> (&str, &str, &str) {
        (&self.kind, &self.object, &self.privilege)
    }

    /// Whether `held` (the other role's grants) includes this one, grant option included.
    pub fn covered_by(&self, held: &[Grant]) -> bool {
        held.iter()
            .any(|other| other.key() == self.key() && (other.grantable || !self.grantable))
    }

    /// The full statement, grant/admin option included.
    pub fn grant_statement(&self) -> String {
        match (self.grantable, self.kind.as_str()) {
            (false, _) => self.statement.clone(),
            (true, "membership") => format!("{} WITH ADMIN OPTION", self.statement),
            (true, _) => format!("{} WITH GRANT OPTION", self.statement),
        }
    }

    pub fn describe(&self) -> String {
        let option = match (self.grantable, self.kind.as_str()) {
            (false, _) => "",
            (true, "membership") => " with admin option",
            (true, _) => " with grant option",
        };
        if self.kind == "membership" {
            format!("membership in {}{option}", self.object)
        } else {
            format!(
                "{}{option} on {} {}",
                self.privilege, self.kind, self.object
            )
        }
    }
}

/// Everything `role` holds directly, each with the statement granting it to `other`.
/// ACLs that are NULL stand for the owner's default privileges (`acldefault`), so an owner's
/// implicit rights count as grants: the other role then gets the same privileges by GRANT.
/// Large objects and `GRANT SET ON PARAMETER` are not covered.
const GRANTS: &str = r#"
WITH subject AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
SELECT 'database', format('%I', d.datname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON DATABASE %I TO %I', a.privilege_type, d.datname, $2::text)
  FROM pg_catalog.pg_database d
  CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'schema', format('%I', n.nspname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON SCHEMA %I TO %I', a.privilege_type, n.nspname, $2::text)
  FROM pg_catalog.pg_namespace n
  CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END,
       format('%I.%I', n.nspname, c.relname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON %s %I.%I TO %I', a.privilege_type,
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname, $2::text)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL aclexplode(coalesce(c.relacl,
       acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'column', format('%I.%I (%I)', n.nspname, c.relname, att.attname), a.privilege_type, a.is_grantable,
       format('GRANT %s (%I) ON TABLE %I.%I TO %I', a.privilege_type, att.attname, n.nspname, c.relname, $2::text)
  FROM pg_catalog.pg_attribute att
  JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL aclexplode(att.attacl) a
 WHERE att.attacl IS NOT NULL AND att.attnum > 0 AND NOT att.attisdropped
   AND a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'routine', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       a.privilege_type, a.is_grantable,
       format('GRANT %s ON ROUTINE %I.%I(%s) TO %I', a.privilege_type, n.nspname, p.proname,
              pg_get_function_identity_arguments(p.oid), $2::text)
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'type', format('%I.%I', n.nspname, t.typname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON TYPE %I.%I TO %I', a.privilege_type, n.nspname, t.typname, $2::text)
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  CROSS JOIN LATERAL aclexplode(coalesce(t.typacl, acldefault('T', t.typowner))) a
 WHERE t.typcategory <> 'A'
   AND (t.typrelid = 0 OR EXISTS (SELECT 1 FROM pg_catalog.pg_class k WHERE k.oid = t.typrelid AND k.relkind = 'c'))
   AND a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'language', format('%I', l.lanname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON LANGUAGE %I TO %I', a.privilege_type, l.lanname, $2::text)
  FROM pg_catalog.pg_language l
  CROSS JOIN LATERAL aclexplode(coalesce(l.lanacl, acldefault('l', l.lanowner))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'foreign data wrapper', format('%I', w.fdwname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON FOREIGN DATA WRAPPER %I TO %I', a.privilege_type, w.fdwname, $2::text)
  FROM pg_catalog.pg_foreign_data_wrapper w
  CROSS JOIN LATERAL aclexplode(coalesce(w.fdwacl, acldefault('F', w.fdwowner))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'foreign server', format('%I', s.srvname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON FOREIGN SERVER %I TO %I', a.privilege_type, s.srvname, $2::text)
  FROM pg_catalog.pg_foreign_server s
  CROSS JOIN LATERAL aclexplode(coalesce(s.srvacl, acldefault('S', s.srvowner))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'tablespace', format('%I', s.spcname), a.privilege_type, a.is_grantable,
       format('GRANT %s ON TABLESPACE %I TO %I', a.privilege_type, s.spcname, $2::text)
  FROM pg_catalog.pg_tablespace s
  CROSS JOIN LATERAL aclexplode(coalesce(s.spcacl, acldefault('t', s.spcowner))) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'default privileges',
       format('for role %I%s on %s', r.rolname,
              CASE WHEN d.defaclnamespace = 0 THEN '' ELSE format(' in schema %I', n.nspname) END,
              CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                                   WHEN 'T' THEN 'types' ELSE 'schemas' END),
       a.privilege_type, a.is_grantable,
       format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s GRANT %s ON %s TO %I', r.rolname,
              CASE WHEN d.defaclnamespace = 0 THEN '' ELSE format(' IN SCHEMA %I', n.nspname) END,
              a.privilege_type,
              CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                   WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END, $2::text)
  FROM pg_catalog.pg_default_acl d
  JOIN pg_catalog.pg_roles r ON r.oid = d.defaclrole
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
  CROSS JOIN LATERAL aclexplode(d.defaclacl) a
 WHERE a.grantee = (SELECT oid FROM subject)
UNION ALL
SELECT 'membership', format('%I', g.rolname), 'MEMBER', m.admin_option,
       format('GRANT %I TO %I', g.rolname, $2::text)
  FROM pg_catalog.pg_auth_members m
  JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
 WHERE m.member = (SELECT oid FROM subject) AND g.rolname <> $2::text
"#;

/// Everything `role` holds, each with the statement granting it to `other`; deduplicated (one
/// membership may be granted by several grantors since PostgreSQL 16).
pub(crate) async fn grants(
    connection: &mut PgConnection,
    role: &str,
    other: &str,
) -> Result<Vec<Grant>, sqlx::Error> {
    let rows: Vec<(String, String, String, bool, String)> = sqlx::query_as(GRANTS)
        .bind(role)
        .bind(other)
        .fetch_all(connection)
        .await?;
    let mut grants: Vec<Grant> = Vec::with_capacity(rows.len());
    for (kind, object, privilege, grantable, statement) in rows {
        if let Some(existing) = grants.iter_mut().find(|grant| {
            grant.kind == kind && grant.object == object && grant.privilege == privilege
        }) {
            existing.grantable |= grantable;
            continue;
        }
        grants.push(Grant {
            kind,
            object,
            privilege,
            grantable,
            statement,
        });
    }
    grants.sort_by(|left, right| left.key().cmp(&right.key()));
    Ok(grants)
}

/// Objects in this database (plus databases) owned by `role`: ownership is what GRANT cannot
/// share, so the other login role gets the owner's privileges but cannot ALTER or DROP them.
const OWNED: &str = r#"
WITH subject AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
SELECT 'database', format('%I', datname) FROM pg_catalog.pg_database WHERE datdba = (SELECT oid FROM subject)
UNION ALL
SELECT 'schema', format('%I', nspname) FROM pg_catalog.pg_namespace WHERE nspowner = (SELECT oid FROM subject)
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relowner = (SELECT oid FROM subject) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT 'routine', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proowner = (SELECT oid FROM subject)
UNION ALL
SELECT 'type', format('%I.%I', n.nspname, t.typname)
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typowner = (SELECT oid FROM subject) AND t.typcategory <> 'A'
   AND (t.typrelid = 0 OR EXISTS (SELECT 1 FROM pg_catalog.pg_class k WHERE k.oid = t.typrelid AND k.relkind = 'c'))
ORDER BY 1, 2
"#;

pub(crate) async fn owned_objects(
    connection: &mut PgConnection,
    role: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(OWNED).bind(role).fetch_all(connection).await
}

/// Per-role (and per-role-and-database) settings such as `search_path`, as `database: name=value`.
pub(crate) async fn settings(
    connection: &mut PgConnection,
    role: &str,
) -> Result<BTreeSet<String>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT coalesce(d.datname::text, '*'), unnest(s.setconfig) \
           FROM pg_catalog.pg_db_role_setting s \
           JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
           LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
          WHERE r.rolname = $1",
    )
    .bind(role)
    .fetch_all(connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(database, setting)| format!("{database}: {setting}"))
        .collect())
}

/// The comparison of the two login roles of AlternatingUsers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Comparison {
    /// Held by the primary, missing from the alternate: GRANT can fix these.
    pub primary_only: Vec<Grant>,
    /// Held by the alternate, missing from the primary: reported, never granted to the primary.
    pub alternate_only: Vec<Grant>,
    /// Everything else that differs and GRANT cannot fix (attributes, ownership, settings).
    pub notes: Vec<String>,
}

impl Comparison {
    pub fn describe(&self, primary: &str, alternate: &str) -> Vec<String> {
        let (primary, alternate) = (quote_identifier(primary), quote_identifier(alternate));
        let mut lines = Vec::new();
        for grant in &self.primary_only {
            lines.push(format!(
                "{alternate} lacks {} that {primary} has",
                grant.describe()
            ));
        }
        for grant in &self.alternate_only {
            lines.push(format!(
                "{primary} lacks {} that {alternate} has",
                grant.describe()
            ));
        }
        lines.extend(self.notes.iter().cloned());
        lines
    }
}

pub(crate) async fn compare(
    connection: &mut PgConnection,
    primary: &str,
    alternate: &str,
) -> Result<Option<Comparison>, sqlx::Error> {
    let Some(primary_attributes) = attributes(connection, primary).await? else {
        return Ok(None);
    };
    let Some(alternate_attributes) = attributes(connection, alternate).await? else {
        return Ok(None);
    };
    let primary_grants = grants(connection, primary, alternate).await?;
    let alternate_grants = grants(connection, alternate, primary).await?;
    let mut comparison = Comparison {
        primary_only: primary_grants
            .iter()
            .filter(|grant| !grant.covered_by(&alternate_grants))
            .cloned()
            .collect(),
        alternate_only: alternate_grants
            .iter()
            .filter(|grant| !grant.covered_by(&primary_grants))
            .cloned()
            .collect(),
        notes: Vec::new(),
    };
    let (quoted_primary, quoted_alternate) =
        (quote_identifier(primary), quote_identifier(alternate));
    if primary_attributes.copyable() != alternate_attributes.copyable() {
        comparison.notes.push(format!(
            "attributes differ: {quoted_primary} has {}, {quoted_alternate} has {}",
            describe_attributes(&primary_attributes),
            describe_attributes(&alternate_attributes)
        ));
    }
    for (role, role_attributes) in [
        (&quoted_primary, &primary_attributes),
        (&quoted_alternate, &alternate_attributes),
    ] {
        let forbidden = role_attributes.forbidden();
        if !forbidden.is_empty() {
            comparison.notes.push(format!(
                "{role} has {}, which keyturn never copies",
                forbidden.join(", ")
            ));
        }
    }
    for (owner, other) in [(primary, &quoted_alternate), (alternate, &quoted_primary)] {
        for (kind, object) in owned_objects(connection, owner).await? {
            comparison.notes.push(format!(
                "{} owns {kind} {object}; {other} gets its privileges by GRANT but not ownership (ALTER, DROP)",
                quote_identifier(owner)
            ));
        }
    }
    let primary_settings = settings(connection, primary).await?;
    let alternate_settings = settings(connection, alternate).await?;
    for setting in primary_settings.difference(&alternate_settings) {
        comparison.notes.push(format!(
            "{quoted_alternate} lacks role setting {setting} that {quoted_primary} has"
        ));
    }
    for setting in alternate_settings.difference(&primary_settings) {
        comparison.notes.push(format!(
            "{quoted_primary} lacks role setting {setting} that {quoted_alternate} has"
        ));
    }
    Ok(Some(comparison))
}

fn describe_attributes(attributes: &RoleAttributes) -> String {
    super::sql::attribute_clause(
        attributes.inherit,
        attributes.create_database,
        attributes.create_role,
        attributes.connection_limit,
    )
}
