//! How tenants are kept apart — by the database, not by the application remembering a
//! `WHERE` clause.
//!
//! | isolation | PostgreSQL | SQLite |
//! |---|---|---|
//! | row | shared tables with a `tenant_id` column under forced row-level security; the session carries `tenantry.tenant_id` | a database file per tenant, `<org file stem>/<tenant>.db` |
//! | schema | the tenant's schema, first and only on `search_path` (plus the tenant setting) | same as row: SQLite has no schemas |
//! | database | the policy's URL | the policy's URL |
//!
//! A scope's session state — tenant setting, `search_path`, read-only, the policy's extra
//! settings — is a session scope; [`postgres`] switches pooled connections between
//! scopes, [`sqlite`] derives tenant files and hardens connections.

pub mod postgres;
pub mod sqlite;

use crate::id::TenantId;

/// The custom setting row-level security policies read: `current_setting('tenantry.tenant_id', true)`.
pub const TENANT_SETTING: &str = "tenantry.tenant_id";

/// Settings a tenant policy may not set, because isolation itself depends on them.
const RESERVED_SETTINGS: &[&str] = &[
    "search_path",
    "role",
    "session_authorization",
    "default_transaction_read_only",
    "transaction_read_only",
    "row_security",
];

/// A refused isolation request or an isolation check that failed; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IsolationError {
    /// A table name that is not a plain (optionally schema-qualified) identifier.
    #[error(
        "table name {name:?} is not a plain identifier: use `table` or `schema.table` \
         with a-z, 0-9 and '_', starting with a letter or '_'"
    )]
    BadTableName {
        /// The name given.
        name: String,
    },
    /// A schema name that is not a plain identifier.
    #[error("schema name {name:?} is not a plain identifier (a-z, 0-9, '_'; at most 63)")]
    BadSchema {
        /// The name given.
        name: String,
    },
    /// A tenant policy tried to set a setting that isolation depends on.
    #[error(
        "the tenant policy may not set `{name}`: Tenantry sets it to isolate the tenant; \
         remove it from the policy's settings"
    )]
    ReservedSetting {
        /// The setting.
        name: String,
    },
    /// A setting value that cannot be sent safely.
    #[error("the value of setting `{name}` contains a NUL character: remove it from the policy")]
    BadSettingValue {
        /// The setting.
        name: String,
    },
    /// The application's role bypasses row-level security.
    #[error(
        "the application role `{role}` on {database} has {attribute}, so row-level security \
         does not apply to it and tenants would see each other's rows: connect as a role \
         with NOSUPERUSER NOBYPASSRLS, or set allow-privileged-role = true \
         (TENANTRY_ALLOW_PRIVILEGED_ROLE=true) to run anyway"
    )]
    PrivilegedRole {
        /// The role.
        role: String,
        /// The database, password redacted.
        database: String,
        /// `SUPERUSER` or `BYPASSRLS`.
        attribute: &'static str,
    },
    /// Tables with a `tenant_id` column are not protected by forced row-level security.
    #[error(
        "{database}: {tables} {verb} a tenant_id column but no forced row-level security, so \
         tenants could read each other's rows: run `tenantry rls enable <table>` (or \
         tenantry::isolation::postgres::enable_rls) for each, or set \
         allow-unprotected-tables = true to run anyway"
    )]
    UnprotectedTables {
        /// The database, password redacted.
        database: String,
        /// The tables, comma-separated.
        tables: String,
        /// `has` or `have`.
        verb: &'static str,
    },
    /// A SQLite URL that cannot hold tenant files.
    #[error("SQLite database {url} cannot hold tenants: {reason}")]
    BadSqliteUrl {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The database refused an isolation statement.
    #[error("{what} failed on {database}: {reason}")]
    Database {
        /// What was attempted.
        what: String,
        /// The database, password redacted.
        database: String,
        /// The database's answer (secrets redacted).
        reason: String,
    },
}

/// Safety checks on PostgreSQL databases (`[isolation]`). Both default to refusing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IsolationConfig {
    /// Run even when the application's role is `SUPERUSER` or `BYPASSRLS`, which row-level
    /// security does not bind (`TENANTRY_ALLOW_PRIVILEGED_ROLE`). Only for development
    /// against a superuser; tenants are then not isolated by RLS.
    pub allow_privileged_role: bool,
    /// With tenants enabled, warn instead of refusing when a table has a `tenant_id` column
    /// but no enabled and forced row-level security.
    pub allow_unprotected_tables: bool,
}

/// How a scope's data is kept apart, as reported by [`Scoped::isolation`](crate::Scoped::isolation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum IsolationKind {
    /// Not a tenant scope: the whole database of the org (or the app), no tenant's rows.
    Shared,
    /// Row-level (PostgreSQL RLS, or a SQLite file per tenant).
    Row,
    /// A schema of its own (PostgreSQL), or a file of its own (SQLite).
    Schema(String),
    /// A database of its own.
    Database,
}

impl std::fmt::Display for IsolationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shared => f.write_str("shared"),
            Self::Row => f.write_str("row"),
            Self::Schema(s) => write!(f, "schema {s}"),
            Self::Database => f.write_str("database"),
        }
    }
}

/// Everything a session must carry for one scope. Two checkouts with equal scopes may
/// share a connection without switching it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionScope {
    pub(crate) tenant: Option<TenantId>,
    pub(crate) schema: Option<String>,
    pub(crate) read_only: bool,
    pub(crate) settings: Vec<(String, String)>,
    /// The PostgreSQL statement that switches a session to this scope, built once.
    pub(crate) switch_sql: String,
}

impl SessionScope {
    /// Validate and build a scope.
    pub(crate) fn new(
        tenant: Option<TenantId>,
        schema: Option<String>,
        read_only: bool,
        settings: Vec<(String, String)>,
    ) -> Result<Self, IsolationError> {
        if let Some(s) = &schema
            && !plain_identifier(s)
        {
            return Err(IsolationError::BadSchema { name: s.clone() });
        }
        for (name, value) in &settings {
            let lower = name.to_ascii_lowercase();
            if RESERVED_SETTINGS.contains(&lower.as_str()) || lower.starts_with("tenantry.") {
                return Err(IsolationError::ReservedSetting { name: name.clone() });
            }
            if value.contains('\0') || name.contains('\0') {
                return Err(IsolationError::BadSettingValue { name: name.clone() });
            }
        }
        let switch_sql =
            postgres::switch_sql(tenant.as_ref(), schema.as_deref(), read_only, &settings);
        Ok(Self {
            tenant,
            schema,
            read_only,
            settings,
            switch_sql,
        })
    }

    /// The scope of handles that belong to no tenant.
    pub(crate) fn shared() -> Self {
        Self::new(None, None, false, Vec::new()).expect("the empty scope is valid")
    }
}

/// `a-z`, `0-9`, `_`, starting with a letter or `_`, at most 63 characters.
pub(crate) fn plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `"name"`, with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
