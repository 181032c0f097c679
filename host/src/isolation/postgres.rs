//! PostgreSQL isolation: row-level security on `tenant_id`, schemas on `search_path`,
//! and the session switch that keeps a pooled connection from carrying one tenant's
//! scope into another's checkout.
//!
//! # Row-level security
//!
//! [`enable_rls_sql`] is the whole contract between a table and Tenantry: `ENABLE` and
//! `FORCE ROW LEVEL SECURITY` (so the table's owner is bound too), `tenant_id` defaulting to
//! the session's tenant, and two policies on
//! `tenant_id = NULLIF(current_setting('tenantry.tenant_id', true), '')` — a permissive one
//! that grants the tenant its rows and a restrictive one that keeps any other permissive
//! policy from widening that. A session without a tenant (or with an empty one) matches no
//! row and can insert none: the failure mode is "sees nothing", never "sees everything".
//!
//! # The session switch
//!
//! A pooled connection is switched to a scope by one simple-protocol message — one round
//! trip — that first clears everything a previous holder could have left in the session
//! (`CLOSE ALL`, `UNLISTEN *`, `RESET ROLE`, `RESET ALL`, `DISCARD TEMP`,
//! `DISCARD SEQUENCES`, `pg_advisory_unlock_all()`: `DISCARD ALL` minus dropping the
//! driver's prepared statements), then sets `tenantry.tenant_id`, `search_path`,
//! `default_transaction_read_only` and the policy's settings with
//! `set_config(…, false)`. The same statement reports whether it ran as the first command
//! of its own transaction (`statement_timestamp() = transaction_timestamp()`, which
//! PostgreSQL guarantees only then): if a previous holder left a raw `BEGIN` open, the
//! settings would be undone by a later `ROLLBACK`, so the switch rolls that transaction
//! back and runs again. Values are sent as `E'…'` literals with quotes and backslashes
//! escaped, after ids and names were validated.
//!
//! The pool ([`crate::pool`]) skips the switch when a connection already carries the
//! scope, because it records the scope only after this statement succeeded.

use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{AssertSqlSafe, Executor, Row};

use super::{IsolationError, TENANT_SETTING, plain_identifier, quote_ident};
use crate::id::TenantId;
use crate::pool::{Backend, Driver, DriverFuture, PoolEntry};
use crate::redact::redact_text;

/// Name of the permissive policy [`enable_rls_sql`] creates.
pub const ROW_POLICY: &str = "tenantry_tenant_rows";
/// Name of the restrictive policy [`enable_rls_sql`] creates.
pub const GUARD_POLICY: &str = "tenantry_tenant_guard";

/// The predicate both policies use.
const TENANT_MATCHES: &str =
    "tenant_id = NULLIF(pg_catalog.current_setting('tenantry.tenant_id', true), '')";

/// The SQL that puts `table` (`name` or `schema.name`) under Tenantry's row isolation.
///
/// The table must have a `tenant_id` text column. The statements are idempotent; run them
/// in a migration, with [`enable_rls`], or print them with `tenantry rls enable <table>`.
///
/// ```
/// let sql = tenantry::isolation::postgres::enable_rls_sql("notes").unwrap();
/// assert!(sql.contains("FORCE ROW LEVEL SECURITY"));
/// assert!(tenantry::isolation::postgres::enable_rls_sql("notes; drop table x").is_err());
/// ```
pub fn enable_rls_sql(table: &str) -> Result<String, IsolationError> {
    let table = quoted_table(table)?;
    Ok(format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT \
         NULLIF(pg_catalog.current_setting('tenantry.tenant_id', true), '');\n\
         DROP POLICY IF EXISTS {ROW_POLICY} ON {table};\n\
         CREATE POLICY {ROW_POLICY} ON {table} AS PERMISSIVE FOR ALL\n    \
         USING ({TENANT_MATCHES})\n    WITH CHECK ({TENANT_MATCHES});\n\
         DROP POLICY IF EXISTS {GUARD_POLICY} ON {table};\n\
         CREATE POLICY {GUARD_POLICY} ON {table} AS RESTRICTIVE FOR ALL\n    \
         USING ({TENANT_MATCHES})\n    WITH CHECK ({TENANT_MATCHES});\n"
    ))
}

/// Run [`enable_rls_sql`] for `table` (atomically: one implicit transaction).
///
/// `executor` is anything sqlx can execute on: a `PgPool`, a `&mut PgConnection`, or a
/// Tenantry connection (`&mut *conn`). The role needs to own the table.
pub async fn enable_rls<'e, E>(executor: E, table: &str) -> Result<(), IsolationError>
where
    E: Executor<'e, Database = Postgres>,
{
    let sql = enable_rls_sql(table)?;
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(executor)
        .await
        .map_err(|e| IsolationError::Database {
            what: format!("enabling row-level security on {table}"),
            database: "the database".into(),
            reason: redact_text(&e.to_string()),
        })?;
    Ok(())
}

fn quoted_table(table: &str) -> Result<String, IsolationError> {
    let bad = || IsolationError::BadTableName {
        name: table.chars().take(80).collect(),
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| plain_identifier(p)) {
        return Err(bad());
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

/// `value` as an escape-string literal: immune to `standard_conforming_strings`.
pub(crate) fn literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The switch statement for a scope (see the module docs).
pub(crate) fn switch_sql(
    tenant: Option<&TenantId>,
    schema: Option<&str>,
    read_only: bool,
    settings: &[(String, String)],
) -> String {
    let mut sql = String::from(
        "CLOSE ALL; UNLISTEN *; RESET ROLE; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES; \
         SELECT pg_catalog.pg_advisory_unlock_all()",
    );
    let mut set = |name: &str, value: &str| {
        sql.push_str(&format!(
            ", pg_catalog.set_config({}, {}, false)",
            literal(name),
            literal(value)
        ));
    };
    set(TENANT_SETTING, tenant.map_or("", TenantId::as_str));
    if let Some(schema) = schema {
        set("search_path", &quote_ident(schema));
    }
    if read_only {
        set("default_transaction_read_only", "on");
    }
    for (name, value) in settings {
        set(name, value);
    }
    sql.push_str(", pg_catalog.statement_timestamp() = pg_catalog.transaction_timestamp()");
    sql
}

impl Driver for PgConnection {
    const BACKEND: Backend = Backend::Postgres;

    fn prepare(&mut self) -> DriverFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn enter<'a>(&'a mut self, scope: &'a super::SessionScope) -> DriverFuture<'a> {
        Box::pin(enter(self, scope))
    }

    fn from_entry(entry: &PoolEntry) -> Option<std::sync::Arc<crate::pool::ConnPool<Self>>> {
        match entry {
            PoolEntry::Postgres(p) => Some(p.clone()),
            PoolEntry::Sqlite(_) => None,
        }
    }
}

/// Switch `conn` to `scope` (see the module docs).
async fn enter(conn: &mut PgConnection, scope: &super::SessionScope) -> Result<(), sqlx::Error> {
    {
        for _ in 0..2 {
            let outcome = sqlx::raw_sql(AssertSqlSafe(scope.switch_sql.as_str()))
                .fetch_all(&mut *conn)
                .await;
            match outcome {
                Ok(rows) => {
                    let first_command = rows
                        .last()
                        .and_then(|row| row.try_get::<bool, _>(row.len() - 1).ok());
                    if first_command == Some(true) {
                        return Ok(());
                    }
                }
                // 25P02: a transaction block left open and failed by a previous holder.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("25P02") => {}
                Err(e) => return Err(e),
            }
            tracing::warn!(
                "a pooled PostgreSQL connection was returned inside an open transaction \
                 block (raw BEGIN without COMMIT/ROLLBACK); rolling it back"
            );
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
        }
        Err(sqlx::Error::Protocol(
            "the session stayed inside a transaction block after ROLLBACK".into(),
        ))
    }
}

/// Refuse roles that row-level security does not bind.
pub(crate) async fn check_role(
    conn: &mut PgConnection,
    database: &str,
) -> Result<(), IsolationError> {
    let row = sqlx::query(
        "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_catalog.pg_roles \
         WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| IsolationError::Database {
        what: "checking the application role".into(),
        database: database.to_owned(),
        reason: redact_text(&e.to_string()),
    })?;
    let (role, superuser, bypass): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let attribute = if superuser {
        "SUPERUSER"
    } else if bypass {
        "BYPASSRLS"
    } else {
        return Ok(());
    };
    Err(IsolationError::PrivilegedRole {
        role,
        database: database.to_owned(),
        attribute,
    })
}

/// Tables with a `tenant_id` column that are not under enabled and forced RLS.
pub(crate) async fn unprotected_tables(
    conn: &mut PgConnection,
    database: &str,
) -> Result<Vec<String>, IsolationError> {
    sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped \
           AND c.relkind IN ('r', 'p') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_%' \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity) \
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| IsolationError::Database {
        what: "looking for tables without row-level security".into(),
        database: database.to_owned(),
        reason: redact_text(&e.to_string()),
    })
}

/// Fail with [`IsolationError::UnprotectedTables`] when [`unprotected_tables`] finds any.
pub(crate) async fn require_protected_tables(
    conn: &mut PgConnection,
    database: &str,
) -> Result<(), IsolationError> {
    let tables = unprotected_tables(conn, database).await?;
    if tables.is_empty() {
        return Ok(());
    }
    Err(IsolationError::UnprotectedTables {
        database: database.to_owned(),
        verb: if tables.len() == 1 { "has" } else { "have" },
        tables: tables.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rls_sql_quotes_and_validates_names() {
        let sql = enable_rls_sql("app.notes").unwrap();
        assert!(sql.contains("ALTER TABLE \"app\".\"notes\" FORCE ROW LEVEL SECURITY"));
        assert!(sql.contains("AS RESTRICTIVE"));
        for bad in ["", "Notes", "a.b.c", "x;y", "\"x\"", "a-b", "1x"] {
            assert!(enable_rls_sql(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("o'k\\"), "E'o''k\\\\'");
        let tenant = TenantId::new("acme").unwrap();
        let sql = switch_sql(
            Some(&tenant),
            Some("t_acme"),
            true,
            &[("statement_timeout".into(), "2s".into())],
        );
        assert!(
            sql.contains("set_config(E'tenantry.tenant_id', E'acme', false)"),
            "{sql}"
        );
        assert!(
            sql.contains("set_config(E'search_path', E'\"t_acme\"', false)"),
            "{sql}"
        );
        assert!(
            sql.contains("E'default_transaction_read_only', E'on'"),
            "{sql}"
        );
        assert!(
            sql.ends_with("pg_catalog.statement_timestamp() = pg_catalog.transaction_timestamp()")
        );
    }
}
