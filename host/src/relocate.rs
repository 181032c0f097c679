//! Moving a tenant between orgs ([`Host::move_tenant`], `tenantry tenants move`) — the seed's
//! "tenant migration between organizations" with batch size, dry run and "preserve original".
//!
//! # What moves
//!
//! The tenant's rows in every table with a `tenant_id` column (row isolation), or every
//! table of its schema (schema isolation), from one PostgreSQL org database to another —
//! except migration bookkeeping (`_tenantry_migrations_*`, `_sqlx_migrations`), which the
//! target's own migrations own. A table the target lacks is skipped when the tenant has no
//! rows in it.
//! Database-per-tenant and SQLite tenants are refused with [`MoveError::Unsupported`], which
//! says what to do instead. The target org must have the same tables and columns (the apps'
//! migrations); a missing table or column is named in [`MoveError::TargetSchema`].
//!
//! # How (a resumable state machine)
//!
//! The source org's registry row (`public.tenantry_tenants`, upgraded in place with
//! `ADD COLUMN IF NOT EXISTS move_state, moved_to`) records the move:
//!
//! ```text
//! planned ─▶ copying ─▶ verified ─▶ switched ─▶ source-deleted
//!                               └─▶ copied            (--keep-source)
//! ```
//!
//! * **planned**: the tenant is marked moving; the mover then waits `settle` (longer than
//!   [`PLACEMENT_TTL`]) so every host serves it read-only before the copy starts.
//! * **copying**: the target's rows of the tenant are cleared (so a resumed copy never
//!   duplicates), then every table is copied in batches of `batch_size` through one
//!   cursor per table, all inside one `REPEATABLE READ READ ONLY` transaction on the source:
//!   every batch sees the same snapshot. Tables are copied parents first (foreign keys).
//!   Identity and serial sequences on the target are moved past the copied ids.
//! * **verified**: per table, the row count and a checksum — md5 over the sorted md5s of
//!   `ROW(columns)::text`, computed by the same SQL on both sides — match between the
//!   snapshot, the target and a fresh read of the source (so a write that reached the source
//!   during the copy is detected, never lost: the move stops and a re-run copies again).
//! * **switched**: routing moves to the target (below).
//! * **source-deleted**: the tenant's rows (or schema) in the source org are deleted, after
//!   another `settle` wait so handles opened before the switch have finished.
//!
//! Re-running the same move continues from the recorded state; an interrupted copy starts
//! its copy again from a fresh snapshot (writes are blocked, so the result is the same).
//! A move that cannot finish — e.g. [`MoveError::KeyConflict`], a key another tenant already
//! uses in the target — is undone before its switch with [`MoveOptions::abort`].
//! One mover per tenant at a time: a session advisory lock on the source org refuses a
//! second one ([`MoveError::Busy`]).
//!
//! # Writes during the move
//!
//! From `planned` until `switched`, the host opens the tenant's scopes in the source org
//! **read-only** ([`crate::Scoped::read_only`] is true; PostgreSQL refuses writes with
//! SQLSTATE 25006 `read_only_sql_transaction`). Reads keep working.
//!
//! # Routing: fail closed
//!
//! After the switch the source org **refuses** the tenant with
//! [`DataError::TenantMoved`] (HTTP 409, code `tenant_moved`) naming the new org, rather than
//! routing there transparently: a tenant's org is part of how callers address, authorise
//! and locate it (org labels, regions), so silently answering from another org would make
//! [`crate::Scoped::org`] lie and could cross a residency boundary. The caller updates its
//! directory and asks the new org. The target refuses the tenant the same way (pointing back
//! at the source) until the switch, so a half-copied tenant is never served. Between the two
//! registry writes of the switch the tenant is refused by both orgs (fail closed, and said
//! in the report); with `keep_source` nothing is switched and the tenant is readable in both
//! orgs, which the report says too.
//!
//! Where a tenant lives is cached per host for [`PLACEMENT_TTL`] next to the policy answer
//! (one cache hit on the hot path). The mover invalidates its own host's entries at every
//! step; other hosts learn within [`PLACEMENT_TTL`], which is why the mover waits `settle`
//! (default [`PLACEMENT_TTL`] + 1 s) after marking the tenant moving and again before
//! deleting the source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::host::{Host, HostError};
use crate::id::{OrgId, TenantId};
use crate::isolation::postgres::literal;
use crate::isolation::{IsolationKind, SessionScope, quote_ident};
use crate::pool::{Backend, PoolEntry};
use crate::redact::redact_text;
use crate::scope::{DataError, Purpose, ScopeAddress, Scoped, checkout_error, sqlx_error};

/// How long a host trusts what it read about a tenant's placement (moving, moved). Another
/// host learns of a move at most this late.
pub const PLACEMENT_TTL: Duration = Duration::from_secs(5);

/// Where the registry of an org says a tenant is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Served here (also: not registered, or no registry).
    Here,
    /// Served here read-only: a move away is under way.
    Moving,
    /// Not served here: it lives in (or is still in) the other org.
    Elsewhere(OrgId),
}

/// The per-host placement cache, `(org, tenant)` → placement.
pub(crate) type PlacementCache = moka::future::Cache<(OrgId, TenantId), Placement>;

pub(crate) fn placement_cache() -> PlacementCache {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(PLACEMENT_TTL)
        .build()
}

/// The recorded state of a move (the source org's registry row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoveState {
    /// Recorded; the tenant is read-only in the source.
    Planned,
    /// Rows are being copied.
    Copying,
    /// Counts and checksums match on both sides.
    Verified,
    /// The target serves the tenant; the source refuses it.
    Switched,
    /// The source's rows are gone: the move is complete.
    SourceDeleted,
    /// `keep_source`: copied and verified; both orgs serve their copy.
    Copied,
}

impl MoveState {
    /// The name stored in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Copying => "copying",
            Self::Verified => "verified",
            Self::Switched => "switched",
            Self::SourceDeleted => "source-deleted",
            Self::Copied => "copied",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Planned,
            Self::Copying,
            Self::Verified,
            Self::Switched,
            Self::SourceDeleted,
            Self::Copied,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for MoveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The target's registry state while a tenant is on its way there.
const INCOMING: &str = "incoming";

/// How to move (see [`Host::move_tenant`]).
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// Rows per batch (default 500).
    pub batch_size: u32,
    /// Report what would move (tables, rows, estimated size) and change nothing.
    pub dry_run: bool,
    /// Copy and verify, but keep the source serving its copy (the tenant is then readable
    /// in both orgs, and the copies diverge with later writes).
    pub keep_source: bool,
    /// How long to wait after marking the tenant moving and before deleting the source, so
    /// other hosts' placement caches expire (default [`PLACEMENT_TTL`] + 1 s). Zero is right
    /// only when this host is the only one serving the tenant.
    pub settle: Duration,
    /// Stop with [`MoveError::Stopped`] after this many batches (tests and drills of an
    /// interrupted move).
    pub stop_after_batches: Option<u64>,
    /// Abort the unfinished move to the named target instead (before its switch): clear
    /// what reached the target, drop the target's incoming registration, and let the source
    /// serve the tenant read-write again.
    pub abort: bool,
}

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            dry_run: false,
            keep_source: false,
            settle: PLACEMENT_TTL + Duration::from_secs(1),
            stop_after_batches: None,
            abort: false,
        }
    }
}

/// One table of a move.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableReport {
    /// `schema.table` in the source.
    pub table: String,
    /// The tenant's rows.
    pub rows: u64,
    /// Their size, `sum(pg_column_size(row))`.
    pub bytes: u64,
    /// The tenant's share of `pg_total_relation_size` (indexes and TOAST included), by row
    /// count; `None` when the table was never analysed.
    pub relation_share_bytes: Option<u64>,
    /// md5 over the sorted md5s of the rows (empty in a dry run).
    pub checksum: Option<String>,
    /// Count and checksum matched on both sides.
    pub verified: bool,
}

/// What [`Host::move_tenant`] did (or, in a dry run, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveReport {
    /// The tenant.
    pub tenant: String,
    /// The source org.
    pub from: String,
    /// The target org.
    pub to: String,
    /// `row` or `schema`.
    pub isolation: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The unfinished move was aborted ([`MoveOptions::abort`]).
    pub aborted: bool,
    /// The state recorded when this run started, if a move was already under way.
    pub resumed_from: Option<MoveState>,
    /// The states this run went through, in order.
    pub steps: Vec<MoveState>,
    /// The state now (`None` in a dry run).
    pub state: Option<MoveState>,
    /// Per table, parents first.
    pub tables: Vec<TableReport>,
    /// Rows in all tables.
    pub rows: u64,
    /// Bytes in all tables (`pg_column_size`).
    pub bytes: u64,
    /// Batches copied by this run.
    pub batches: u64,
    /// The source still has the tenant's data.
    pub source_kept: bool,
    /// Which org serves the tenant now, said plainly (both, one, or — in a switch window —
    /// neither).
    pub served_by: String,
}

/// Why a move was refused or stopped; each says what to do. The tenant is never left
/// without a recorded state: re-running the same move continues it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MoveError {
    /// Moving needs organizations and tenants.
    #[error(
        "moving a tenant between orgs needs organizations and tenants: set TENANTRY_ORGS=true \
         and TENANTRY_TENANTS=true"
    )]
    NeedsOrgs,
    /// Source and target are the same org.
    #[error("tenant `{tenant}` is already in org `{org}`: name a different target org")]
    SameOrg {
        /// The tenant.
        tenant: String,
        /// The org.
        org: String,
    },
    /// This tenant's isolation or backend cannot be moved.
    #[error("cannot move tenant `{tenant}`: {what} is not supported by move: {fix}")]
    Unsupported {
        /// The tenant.
        tenant: String,
        /// What is unsupported.
        what: String,
        /// What to do instead.
        fix: String,
    },
    /// The target org lacks tables or columns the tenant's data needs.
    #[error(
        "org `{org}` cannot take tenant `{tenant}`: missing {}; run the apps' migrations on \
         org `{org}` (tenantry migrate, or recreate it with tenantry orgs create) and retry",
        missing.join(", ")
    )]
    TargetSchema {
        /// The tenant.
        tenant: String,
        /// The target org.
        org: String,
        /// `table x` / `column x.c`.
        missing: Vec<String>,
    },
    /// The tenant already has data or a registration in the target.
    #[error(
        "tenant `{tenant}` already exists in org `{org}` ({detail}): delete it there first \
         (tenantry tenants delete {tenant} --org {org} --yes) or move to another org"
    )]
    TargetOccupied {
        /// The tenant.
        tenant: String,
        /// The target org.
        org: String,
        /// What was found.
        detail: String,
    },
    /// A move of this tenant to another org is recorded and unfinished.
    #[error(
        "tenant `{tenant}` of org `{from}` has an unfinished move to org `{to}` (state \
         `{state}`): re-run that move to finish it first"
    )]
    OtherMove {
        /// The tenant.
        tenant: String,
        /// The source org.
        from: String,
        /// The org of the recorded move.
        to: String,
        /// Its state.
        state: MoveState,
    },
    /// The tenant has already left the source org.
    #[error(
        "tenant `{tenant}` already moved from org `{from}` to org `{to}`: move it from there \
         (--from {to})"
    )]
    AlreadyMoved {
        /// The tenant.
        tenant: String,
        /// The org it left.
        from: String,
        /// Where it went.
        to: String,
    },
    /// Another mover holds this tenant.
    #[error(
        "another move of tenant `{tenant}` is running on org `{from}`: wait for it to finish, \
         then re-run to see its state"
    )]
    Busy {
        /// The tenant.
        tenant: String,
        /// The source org.
        from: String,
    },
    /// Counts or checksums differ.
    #[error(
        "verification of tenant `{tenant}`'s {table} failed: {detail}. Nothing was switched \
         or deleted; the tenant stays in org `{from}` (read-only while the move is pending): \
         re-run the move to copy again, or abort it with --abort"
    )]
    Mismatch {
        /// The tenant.
        tenant: String,
        /// The source org.
        from: String,
        /// The table.
        table: String,
        /// Counts and checksums on each side.
        detail: String,
    },
    /// A key of the tenant's rows is already used by another tenant's row in the target.
    #[error(
        "copying tenant `{tenant}`'s {table} into org `{to}` hit a key another row there \
         already uses ({reason}): keys must be unique across orgs, e.g. (tenant_id, id) or uuid \
         primary keys. The tenant stays read-only in org `{from}` until the move is aborted \
         (tenantry tenants move {tenant} --from {from} --to {to} --abort)"
    )]
    KeyConflict {
        /// The tenant.
        tenant: String,
        /// The source org.
        from: String,
        /// The target org.
        to: String,
        /// The table.
        table: String,
        /// The database's answer.
        reason: String,
    },
    /// Nothing to abort.
    #[error(
        "tenant `{tenant}` of org `{from}` has no unfinished move to org `{to}` to abort{state}"
    )]
    NothingToAbort {
        /// The tenant.
        tenant: String,
        /// The source org.
        from: String,
        /// The target org.
        to: String,
        /// `: it already switched …` when too late.
        state: String,
    },
    /// `stop_after_batches` was reached.
    #[error(
        "move of tenant `{tenant}` stopped after {batches} batch(es) as asked \
         (stop_after_batches); its state is `copying` and it is read-only in org `{from}`: \
         re-run the same move to resume"
    )]
    Stopped {
        /// The tenant.
        tenant: String,
        /// The source org.
        from: String,
        /// Batches copied.
        batches: u64,
    },
}

/// A tenant-owned table and how to reach it on both sides.
#[derive(Debug, Clone)]
struct Table {
    /// Quoted `schema.table` in the source.
    src: String,
    /// Quoted `schema.table` in the target.
    dst: String,
    /// Unquoted `schema.table` in the source, for reports.
    name: String,
    /// The table's oid in the source (for foreign-key order and sizes).
    oid: i64,
    /// Quoted names of the columns copied (not generated).
    columns: Vec<String>,
}

/// Count, size and checksum of one side of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digest {
    rows: u64,
    bytes: u64,
    checksum: String,
}

/// The row isolation of both sides, or the schemas of both sides.
#[derive(Debug, Clone)]
enum Kind {
    Row,
    Schema { src: String, dst: String },
}

struct Mover<'h> {
    host: &'h Host,
    tenant: TenantId,
    from: OrgId,
    to: OrgId,
    kind: Kind,
    options: MoveOptions,
    /// The tenant's management scope in each org (no placement gate, writable).
    src: Scoped,
    dst: Scoped,
    /// Each org's shared management scope (the registry).
    src_org: Scoped,
    dst_org: Scoped,
}

impl Host {
    /// Move `tenant` from org `from` to org `to` (see the [module docs](crate::relocate)):
    /// copy in batches from one snapshot, verify counts and checksums on both sides, switch
    /// routing, delete the source (unless `keep_source`). Re-running continues an
    /// interrupted move.
    ///
    /// ```no_run
    /// # async fn f(host: tenantry::Host) -> Result<(), tenantry::HostError> {
    /// use tenantry::relocate::MoveOptions;
    /// let report = host
    ///     .move_tenant("t1", "acme", "globex", MoveOptions::default())
    ///     .await?;
    /// println!("{} rows, {}", report.rows, report.served_by);
    /// # Ok(()) }
    /// ```
    pub async fn move_tenant(
        &self,
        tenant: impl AsRef<str>,
        from: impl AsRef<str>,
        to: impl AsRef<str>,
        options: MoveOptions,
    ) -> Result<MoveReport, HostError> {
        if !self.config().orgs || !self.config().tenants {
            return Err(MoveError::NeedsOrgs.into());
        }
        let tenant = TenantId::new(tenant.as_ref())?;
        let from = OrgId::new(from.as_ref())?;
        let to = OrgId::new(to.as_ref())?;
        if from == to {
            return Err(MoveError::SameOrg {
                tenant: tenant.to_string(),
                org: from.to_string(),
            }
            .into());
        }
        let address = |org: &OrgId, tenant: Option<TenantId>| ScopeAddress {
            app: None,
            org: Some(org.clone()),
            tenant,
        };
        let src_plan = self
            .plan_scope(address(&from, Some(tenant.clone())), Purpose::Manage)
            .await?;
        let dst_plan = self
            .plan_scope(address(&to, Some(tenant.clone())), Purpose::Manage)
            .await?;
        let unsupported = |what: String, fix: &str| MoveError::Unsupported {
            tenant: tenant.to_string(),
            what,
            fix: fix.to_owned(),
        };
        for (org, plan) in [(&from, &src_plan), (&to, &dst_plan)] {
            if plan.backend == Backend::Sqlite {
                return Err(unsupported(
                    format!("org `{org}` is on SQLite"),
                    "a SQLite tenant is a file: stop writes to it and copy the file to the \
                     target org's tenant directory yourself",
                )
                .into());
            }
            if plan.isolation == IsolationKind::Database {
                return Err(unsupported(
                    format!("a database per tenant (in org `{org}`)"),
                    "copy the tenant's database with pg_dump/pg_restore and point the tenant \
                     policy at the copy",
                )
                .into());
            }
        }
        let kind = match (&src_plan.isolation, &dst_plan.isolation) {
            (IsolationKind::Row, IsolationKind::Row) => Kind::Row,
            (IsolationKind::Schema(a), IsolationKind::Schema(b)) => Kind::Schema {
                src: a.clone(),
                dst: b.clone(),
            },
            (a, b) => {
                return Err(unsupported(
                    format!("isolation `{a}` in org `{from}` but `{b}` in org `{to}`"),
                    "make the tenant policy give the tenant the same isolation in both orgs",
                )
                .into());
            }
        };
        let mover = Mover {
            host: self,
            src: self.open_plan(src_plan).await?,
            dst: self.open_plan(dst_plan).await?,
            src_org: self
                .open_scope(address(&from, None), Purpose::Manage)
                .await?,
            dst_org: self.open_scope(address(&to, None), Purpose::Manage).await?,
            tenant,
            from,
            to,
            kind,
            options,
        };
        // Boxed: the state machine's future is large; keep it off the caller's stack.
        Box::pin(mover.run()).await
    }

    /// Whether the tenant is being moved away from `org` (serve it read-only); fails with
    /// [`DataError::TenantMoved`] when `org` does not serve it. Cached for [`PLACEMENT_TTL`].
    pub(crate) async fn placement_gate(
        &self,
        org: &OrgId,
        tenant: &TenantId,
    ) -> Result<bool, HostError> {
        let key = (org.clone(), tenant.clone());
        let placement = self
            .data()
            .placements
            // Boxed so the (rare) load does not grow every scope-opening future.
            .try_get_with(key, Box::pin(self.load_placement(org, tenant)))
            .await
            .map_err(|e| HostError::Data((*e).clone()))?;
        match placement {
            Placement::Here => Ok(false),
            Placement::Moving => Ok(true),
            Placement::Elsewhere(to) => Err(DataError::TenantMoved {
                tenant: tenant.clone(),
                org: org.clone(),
                to,
            }
            .into()),
        }
    }

    async fn load_placement(&self, org: &OrgId, tenant: &TenantId) -> Result<Placement, DataError> {
        // The pool directly, not a scope: planning a scope is what asked.
        let (url, _) = self
            .org_url(Some(org))
            .await
            .map_err(|e| as_data_error(e, org))?;
        let entry = self
            .pool_for(&url, Backend::Postgres, false)
            .await
            .map_err(|e| as_data_error(e, org))?;
        let PoolEntry::Postgres(pool) = &entry else {
            return Ok(Placement::Here);
        };
        let database = entry.label().to_owned();
        let mut conn = pool
            .checkout(&Arc::new(SessionScope::shared()))
            .await
            .map_err(|e| checkout_error(&database, &self.data().registry, e))?;
        match read_record(conn.raw_mut(), tenant.as_str()).await {
            Ok(record) => placement_of(record, &database),
            // No registry: nothing was ever moved here.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P01") => {
                Ok(Placement::Here)
            }
            Err(e) => Err(sqlx_error(&database, &e)),
        }
    }

    pub(crate) async fn forget_placement(&self, org: &OrgId, tenant: &TenantId) {
        self.data()
            .placements
            .invalidate(&(org.clone(), tenant.clone()))
            .await;
    }
}

fn as_data_error(e: HostError, org: &OrgId) -> DataError {
    match e {
        HostError::Data(d) => d,
        other => DataError::Database {
            database: format!("org `{org}`"),
            reason: redact_text(&other.to_string()),
        },
    }
}

/// `(move_state, moved_to)` of a tenant's registry row, `None` when it is not registered.
/// Reads through `to_jsonb` so a registry without the move columns reads as never moved.
async fn read_record(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Option<(Option<String>, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT to_jsonb(r) ->> 'move_state', to_jsonb(r) ->> 'moved_to' \
         FROM public.tenantry_tenants r WHERE r.id = $1",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

fn placement_of(
    record: Option<(Option<String>, Option<String>)>,
    database: &str,
) -> Result<Placement, DataError> {
    let Some((Some(state), moved_to)) = record else {
        return Ok(Placement::Here);
    };
    let other = || {
        moved_to
            .as_deref()
            .and_then(|o| OrgId::new(o).ok())
            .ok_or_else(|| DataError::Database {
                database: database.to_owned(),
                reason: format!(
                    "the tenant registry records move state `{state}` without a valid \
                     moved_to org: fix public.tenantry_tenants"
                ),
            })
    };
    if state == INCOMING {
        return Ok(Placement::Elsewhere(other()?));
    }
    match MoveState::parse(&state) {
        Some(MoveState::Copied) => Ok(Placement::Here),
        Some(MoveState::Planned | MoveState::Copying | MoveState::Verified) => {
            Ok(Placement::Moving)
        }
        Some(MoveState::Switched | MoveState::SourceDeleted) => Ok(Placement::Elsewhere(other()?)),
        // An unknown state: refuse rather than guess.
        None => Err(DataError::Database {
            database: database.to_owned(),
            reason: format!("the tenant registry records an unknown move state `{state}`"),
        }),
    }
}

/// The registry rows of the tenants an org serves (or is moving away): not those that left
/// (`switched`, `source-deleted`: kept as tombstones so the org fails closed) nor those still
/// arriving (`incoming`). Reads the move columns through `to_jsonb`, so a registry without
/// them lists every row.
pub(crate) const REGISTERED_HERE_SQL: &str = "SELECT id, isolation FROM public.tenantry_tenants r \
    WHERE COALESCE(to_jsonb(r) ->> 'move_state', '') \
        NOT IN ('switched', 'source-deleted', 'incoming') \
    ORDER BY id";

/// Drop the tombstone of a tenant that moved away and whose source data is gone, so
/// `create_tenant` can create it here again (a new, empty tenant).
pub(crate) async fn clear_tombstone(
    conn: &mut PgConnection,
    tenant: &TenantId,
    database: &str,
) -> Result<(), DataError> {
    sqlx::query(
        "DELETE FROM public.tenantry_tenants r WHERE r.id = $1 \
         AND COALESCE(to_jsonb(r) ->> 'move_state', '') = 'source-deleted'",
    )
    .bind(tenant.as_str())
    .execute(conn)
    .await
    .map(drop)
    .map_err(|e| sqlx_error(database, &e))
}

/// Adds the move columns to a registry created before they existed.
const UPGRADE_REGISTRY: &str = "ALTER TABLE public.tenantry_tenants \
    ADD COLUMN IF NOT EXISTS move_state text, \
    ADD COLUMN IF NOT EXISTS moved_to text, \
    ADD COLUMN IF NOT EXISTS move_updated_at timestamptz";

impl Mover<'_> {
    fn err(&self, e: sqlx::Error, scoped: &Scoped) -> HostError {
        sqlx_error(scoped.database(), &e).into()
    }

    async fn run(self) -> Result<MoveReport, HostError> {
        let mut reg = self.src_org.acquire::<sqlx::Postgres>().await?;
        let present: bool =
            sqlx::query_scalar("SELECT to_regclass('public.tenantry_tenants') IS NOT NULL")
                .fetch_one(&mut *reg)
                .await
                .map_err(|e| self.err(e, &self.src_org))?;
        let record = if present {
            read_record(&mut reg, self.tenant.as_str())
                .await
                .map_err(|e| self.err(e, &self.src_org))?
        } else {
            None
        };
        drop(reg);
        let Some((state, moved_to)) = record else {
            return Err(DataError::NotFound {
                what: format!(
                    "tenant `{}` of org `{}` (not in its registry: create it with \
                     tenantry tenants create)",
                    self.tenant, self.from
                ),
            }
            .into());
        };
        let state = state.as_deref().and_then(MoveState::parse);
        let to = self.to.as_str();
        let resumed_from = match state {
            None | Some(MoveState::Copied) => None,
            Some(s) if moved_to.as_deref() != Some(to) => {
                let other = moved_to.unwrap_or_default();
                return Err(if s >= MoveState::Switched {
                    MoveError::AlreadyMoved {
                        tenant: self.tenant.to_string(),
                        from: self.from.to_string(),
                        to: other,
                    }
                } else {
                    MoveError::OtherMove {
                        tenant: self.tenant.to_string(),
                        from: self.from.to_string(),
                        to: other,
                        state: s,
                    }
                }
                .into());
            }
            Some(s) => Some(s),
        };
        let mut tables = self.tables().await?;
        if self.options.abort {
            return self.abort(resumed_from, tables).await;
        }
        if resumed_from.is_none() {
            self.check_occupied(&tables).await?;
        }
        if !matches!(self.kind, Kind::Schema { .. }) || self.target_schema_exists().await? {
            tables = self.check_target(tables).await?;
        }
        if self.options.dry_run {
            return self.dry_run(tables, resumed_from).await;
        }
        let _lock = self.lock().await?;
        let mut steps = Vec::new();
        let mut current = resumed_from;
        let mut digests = Vec::new();
        let mut batches = 0;
        if current.is_none() {
            self.plan().await?;
            steps.push(MoveState::Planned);
            current = Some(MoveState::Planned);
        }
        if matches!(current, Some(MoveState::Planned | MoveState::Copying)) {
            // A schema tenant's target schema exists only now: check it.
            tables = self.check_target(tables).await?;
            self.set_state(MoveState::Copying).await?;
            steps.push(MoveState::Copying);
            let (d, b) = self.copy(&tables).await?;
            digests = d;
            batches = b;
            self.set_state(MoveState::Verified).await?;
            steps.push(MoveState::Verified);
            current = Some(MoveState::Verified);
        }
        if current == Some(MoveState::Verified) {
            if digests.is_empty() {
                // Resumed after verification: check again before switching.
                digests = self.verify_fresh(&tables).await?;
            }
            if self.options.keep_source {
                self.activate_target().await?;
                self.set_state(MoveState::Copied).await?;
                steps.push(MoveState::Copied);
                current = Some(MoveState::Copied);
            } else {
                self.set_state(MoveState::Switched).await?;
                self.activate_target().await?;
                steps.push(MoveState::Switched);
                current = Some(MoveState::Switched);
            }
        }
        if current == Some(MoveState::Switched) {
            self.activate_target().await?;
            tokio::time::sleep(self.options.settle).await;
            // Again after the wait: a lookup that raced the switch may have cached the old
            // placement on this host.
            self.host.forget_placement(&self.from, &self.tenant).await;
            self.host.forget_placement(&self.to, &self.tenant).await;
            self.delete_source(&tables).await?;
            self.set_state(MoveState::SourceDeleted).await?;
            steps.push(MoveState::SourceDeleted);
            current = Some(MoveState::SourceDeleted);
        }
        if digests.is_empty() {
            // Nothing copied by this run: describe what the target holds.
            for table in &tables {
                digests.push((self.digest(&self.dst, table, &table.dst).await?, None));
            }
        }
        let state = current.expect("a state was reached");
        let source_kept = state == MoveState::Copied;
        let served_by = if source_kept {
            format!(
                "source kept: tenant readable in both orgs (`{}` and `{}` each serve their \
                 copy; later writes are not synchronised)",
                self.from, self.to
            )
        } else {
            format!(
                "org `{}` serves the tenant; org `{}` refuses it with tenant_moved (fail \
                 closed). During the switch it was briefly refused by both",
                self.to, self.from
            )
        };
        tracing::info!(tenant = %self.tenant, from = %self.from, to = %self.to, %state, "tenant moved");
        Ok(self.report(
            tables,
            digests,
            resumed_from,
            steps,
            Some(state),
            batches,
            source_kept,
            served_by,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        tables: Vec<Table>,
        digests: Vec<(Digest, Option<u64>)>,
        resumed_from: Option<MoveState>,
        steps: Vec<MoveState>,
        state: Option<MoveState>,
        batches: u64,
        source_kept: bool,
        served_by: String,
    ) -> MoveReport {
        let dry_run = state.is_none();
        let tables: Vec<TableReport> = tables
            .into_iter()
            .zip(digests)
            .map(|(t, (d, share))| TableReport {
                table: t.name,
                rows: d.rows,
                bytes: d.bytes,
                relation_share_bytes: share,
                checksum: (!dry_run).then_some(d.checksum),
                verified: !dry_run,
            })
            .collect();
        MoveReport {
            tenant: self.tenant.to_string(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            isolation: match self.kind {
                Kind::Row => "row".into(),
                Kind::Schema { .. } => "schema".into(),
            },
            dry_run,
            aborted: false,
            resumed_from,
            steps,
            state,
            rows: tables.iter().map(|t| t.rows).sum(),
            bytes: tables.iter().map(|t| t.bytes).sum(),
            tables,
            batches,
            source_kept,
            served_by,
        }
    }

    async fn dry_run(
        &self,
        tables: Vec<Table>,
        resumed_from: Option<MoveState>,
    ) -> Result<MoveReport, HostError> {
        let mut conn = self.src.acquire::<sqlx::Postgres>().await?;
        let mut digests = Vec::new();
        for table in &tables {
            let d = digest_on(&mut conn, &self.where_tenant(), table, &table.src)
                .await
                .map_err(|e| self.err(e, &self.src))?;
            let (total, tuples): (i64, f64) = sqlx::query_as(
                "SELECT pg_total_relation_size(c.oid)::int8, c.reltuples::float8 \
                 FROM pg_catalog.pg_class c WHERE c.oid = $1::int8::oid",
            )
            .bind(table.oid)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(e, &self.src))?;
            let share = (tuples > 0.0).then(|| {
                let all = tuples.max(d.rows as f64);
                (total as f64 * d.rows as f64 / all).round() as u64
            });
            digests.push((d, share));
        }
        drop(conn);
        let served_by = match resumed_from {
            Some(s) => format!(
                "a move to org `{}` is recorded at state `{s}`: running without --dry-run \
                 resumes it",
                self.to
            ),
            None => format!(
                "org `{}` still serves the tenant; a real run makes it read-only there while \
                 copying",
                self.from
            ),
        };
        Ok(self.report(
            tables,
            digests,
            resumed_from,
            Vec::new(),
            None,
            0,
            true,
            served_by,
        ))
    }

    /// `WHERE` clause restricting a table to the tenant (row isolation; RLS bounds it too).
    fn where_tenant(&self) -> String {
        match self.kind {
            Kind::Row => format!("WHERE t.tenant_id = {}", literal(self.tenant.as_str())),
            Kind::Schema { .. } => String::new(),
        }
    }

    /// The tenant-owned tables of the source, parents before children.
    async fn tables(&self) -> Result<Vec<Table>, HostError> {
        let mut conn = self.src.acquire::<sqlx::Postgres>().await?;
        let fail = |e| self.err(e, &self.src);
        let rows: Vec<(i64, String, String)> = match &self.kind {
            Kind::Row => sqlx::query_as(
                "SELECT c.oid::int8, n.nspname::text, c.relname::text \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                 WHERE a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped \
                   AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND c.relname NOT LIKE '\\_tenantry\\_migrations\\_%' \
                   AND c.relname <> '_sqlx_migrations' \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_%' \
                 ORDER BY 2, 3",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(fail)?,
            Kind::Schema { src, .. } => sqlx::query_as(
                "SELECT c.oid::int8, n.nspname::text, c.relname::text \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND c.relname NOT LIKE '\\_tenantry\\_migrations\\_%' \
                   AND c.relname <> '_sqlx_migrations' \
                 ORDER BY 2, 3",
            )
            .bind(src)
            .fetch_all(&mut *conn)
            .await
            .map_err(fail)?,
        };
        let mut tables = Vec::new();
        for (oid, schema, name) in rows {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT attname::text FROM pg_catalog.pg_attribute \
                 WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped \
                   AND attgenerated = '' ORDER BY attnum",
            )
            .bind(oid)
            .fetch_all(&mut *conn)
            .await
            .map_err(fail)?;
            let dst_schema = match &self.kind {
                Kind::Row => schema.clone(),
                Kind::Schema { dst, .. } => dst.clone(),
            };
            tables.push(Table {
                src: format!("{}.{}", quote_ident(&schema), quote_ident(&name)),
                dst: format!("{}.{}", quote_ident(&dst_schema), quote_ident(&name)),
                name: format!("{schema}.{name}"),
                oid,
                columns: columns.iter().map(|c| quote_ident(c)).collect(),
            });
        }
        let edges: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT conrelid::int8, confrelid::int8 FROM pg_catalog.pg_constraint \
             WHERE contype = 'f' AND conrelid <> confrelid",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(fail)?;
        Ok(parents_first(tables, &edges))
    }

    async fn target_schema_exists(&self) -> Result<bool, HostError> {
        let Kind::Schema { dst, .. } = &self.kind else {
            return Ok(true);
        };
        let mut conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        )
        .bind(dst)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.err(e, &self.dst_org))
    }

    /// Refuse a target without the tables and columns the tenant's rows need.
    /// A table the target lacks is skipped when the tenant has no rows in it (e.g. another
    /// schema tenant's table that happens to have a `tenant_id` column); otherwise refused.
    async fn check_target(&self, tables: Vec<Table>) -> Result<Vec<Table>, HostError> {
        let mut conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        let mut missing = Vec::new();
        let mut kept = Vec::with_capacity(tables.len());
        for table in tables {
            let columns: Option<Vec<String>> = sqlx::query_scalar(
                "SELECT array_agg(attname::text) FROM pg_catalog.pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
                   AND attgenerated = ''",
            )
            .bind(&table.dst)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(e, &self.dst_org))?;
            let Some(columns) =
                columns.map(|c| c.iter().map(|c| quote_ident(c)).collect::<Vec<_>>())
            else {
                if self.digest(&self.src, &table, &table.src).await?.rows > 0 {
                    missing.push(format!("table {}", table.dst.replace('"', "")));
                }
                continue;
            };
            for c in &table.columns {
                if !columns.contains(c) {
                    missing.push(format!(
                        "column {}.{}",
                        table.dst.replace('"', ""),
                        c.replace('"', "")
                    ));
                }
            }
            kept.push(table);
        }
        missing.sort();
        if missing.is_empty() {
            Ok(kept)
        } else {
            Err(MoveError::TargetSchema {
                tenant: self.tenant.to_string(),
                org: self.to.to_string(),
                missing,
            }
            .into())
        }
    }

    /// Refuse a target that already holds this tenant (registered and served, or with rows).
    async fn check_occupied(&self, tables: &[Table]) -> Result<(), HostError> {
        let occupied = |detail: String| MoveError::TargetOccupied {
            tenant: self.tenant.to_string(),
            org: self.to.to_string(),
            detail,
        };
        let mut conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        let present: bool =
            sqlx::query_scalar("SELECT to_regclass('public.tenantry_tenants') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| self.err(e, &self.dst_org))?;
        if present {
            let record = read_record(&mut conn, self.tenant.as_str())
                .await
                .map_err(|e| self.err(e, &self.dst_org))?;
            if let Some((state, _)) = &record {
                let gone = state
                    .as_deref()
                    .and_then(MoveState::parse)
                    .is_some_and(|s| matches!(s, MoveState::Switched | MoveState::SourceDeleted));
                if !gone && state.as_deref() != Some(INCOMING) {
                    return Err(occupied("registered in its tenant registry".into()).into());
                }
            }
        }
        drop(conn);
        if matches!(self.kind, Kind::Row) {
            let mut conn = self.dst.acquire::<sqlx::Postgres>().await?;
            for table in tables {
                let exists: Option<bool> = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(&table.dst)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| self.err(e, &self.dst))?;
                if exists != Some(true) {
                    continue;
                }
                let any: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT EXISTS (SELECT 1 FROM {} t {})",
                    table.dst,
                    self.where_tenant()
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| self.err(e, &self.dst))?;
                if any {
                    return Err(occupied(format!("it has rows in {}", table.name)).into());
                }
            }
        }
        Ok(())
    }

    /// A session advisory lock on the source org, on a connection of its own: released by
    /// the server when the connection goes, even if this future is dropped.
    async fn lock(&self) -> Result<PgConnection, HostError> {
        let url = &self.src.plan().org_url;
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| HostError::from(sqlx_error(self.src_org.database(), &e)))?;
        let mut conn = options
            .application_name("tenantry-move")
            .connect()
            .await
            .map_err(|e| self.err(e, &self.src_org))?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(format!("tenantry-move/{}", self.tenant))
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.err(e, &self.src_org))?;
        if !locked {
            return Err(MoveError::Busy {
                tenant: self.tenant.to_string(),
                from: self.from.to_string(),
            }
            .into());
        }
        Ok(conn)
    }

    /// Register the tenant in the target as incoming (created there first when it has a
    /// schema of its own), mark it moving in the source, and wait for other hosts to see it.
    async fn plan(&self) -> Result<(), HostError> {
        if matches!(self.kind, Kind::Schema { .. }) && !self.target_schema_exists().await? {
            self.host
                .create_tenant(self.tenant.as_str(), Some(self.to.as_str()))
                .await?;
        }
        let mut conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        let fail = |e| self.err(e, &self.dst_org);
        let present: bool =
            sqlx::query_scalar("SELECT to_regclass('public.tenantry_tenants') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await
                .map_err(fail)?;
        if !present {
            // The same table create_tenant makes (manage.rs), created through it.
            drop(conn);
            self.host
                .create_tenant(self.tenant.as_str(), Some(self.to.as_str()))
                .await?;
            conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        }
        sqlx::raw_sql(UPGRADE_REGISTRY)
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        sqlx::query(
            "INSERT INTO public.tenantry_tenants (id, isolation, move_state, moved_to, \
             move_updated_at) VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (id) DO UPDATE SET move_state = EXCLUDED.move_state, \
             moved_to = EXCLUDED.moved_to, move_updated_at = now()",
        )
        .bind(self.tenant.as_str())
        .bind(match self.kind {
            Kind::Row => "row",
            Kind::Schema { .. } => "schema",
        })
        .bind(INCOMING)
        .bind(self.from.as_str())
        .execute(&mut *conn)
        .await
        .map_err(fail)?;
        drop(conn);
        self.host.forget_placement(&self.to, &self.tenant).await;
        let mut conn = self.src_org.acquire::<sqlx::Postgres>().await?;
        sqlx::raw_sql(UPGRADE_REGISTRY)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e, &self.src_org))?;
        drop(conn);
        self.set_state(MoveState::Planned).await?;
        tokio::time::sleep(self.options.settle).await;
        Ok(())
    }

    /// Record `state` in the source registry and forget the cached placement.
    async fn set_state(&self, state: MoveState) -> Result<(), HostError> {
        let mut conn = self.src_org.acquire::<sqlx::Postgres>().await?;
        sqlx::query(
            "UPDATE public.tenantry_tenants SET move_state = $2, moved_to = $3, \
             move_updated_at = now() WHERE id = $1",
        )
        .bind(self.tenant.as_str())
        .bind(state.as_str())
        .bind(self.to.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| self.err(e, &self.src_org))?;
        drop(conn);
        self.host.forget_placement(&self.from, &self.tenant).await;
        Ok(())
    }

    /// Let the target serve the tenant.
    async fn activate_target(&self) -> Result<(), HostError> {
        let mut conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        sqlx::query(
            "UPDATE public.tenantry_tenants SET move_state = NULL, moved_to = NULL, \
             move_updated_at = now() WHERE id = $1",
        )
        .bind(self.tenant.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| self.err(e, &self.dst_org))?;
        drop(conn);
        self.host.forget_placement(&self.to, &self.tenant).await;
        Ok(())
    }

    /// Clear the target, copy every table from one snapshot, fix sequences, verify.
    async fn copy(&self, tables: &[Table]) -> Result<(Vec<(Digest, Option<u64>)>, u64), HostError> {
        let batch = self.options.batch_size.max(1);
        let filter = self.where_tenant();
        // Clear what an interrupted copy left.
        self.clear_target(tables).await?;
        let mut dst = self.dst.acquire::<sqlx::Postgres>().await?;
        let dst_fail = |e| self.err(e, &self.dst);

        let mut src = self.src.acquire::<sqlx::Postgres>().await?;
        let src_fail = |e| self.err(e, &self.src);
        let mut snapshot = src.begin().await.map_err(src_fail)?;
        sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *snapshot)
            .await
            .map_err(src_fail)?;
        let mut batches = 0u64;
        for table in tables {
            let columns = table.columns.join(", ");
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DECLARE tenantry_move NO SCROLL CURSOR FOR \
                 SELECT to_jsonb(t)::text FROM {} t {filter}",
                table.src
            )))
            .execute(&mut *snapshot)
            .await
            .map_err(src_fail)?;
            let insert = format!(
                "INSERT INTO {dst} ({columns}) OVERRIDING SYSTEM VALUE \
                 SELECT {columns} FROM jsonb_populate_recordset(NULL::{dst}, $1::jsonb)",
                dst = table.dst
            );
            loop {
                let rows: Vec<String> =
                    sqlx::query_scalar(AssertSqlSafe(format!("FETCH {batch} FROM tenantry_move")))
                        .fetch_all(&mut *snapshot)
                        .await
                        .map_err(src_fail)?;
                if rows.is_empty() {
                    break;
                }
                let json = format!("[{}]", rows.join(","));
                sqlx::query(AssertSqlSafe(insert.clone()))
                    .bind(json)
                    .execute(&mut *dst)
                    .await
                    .map_err(|e| match &e {
                        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
                            MoveError::KeyConflict {
                                tenant: self.tenant.to_string(),
                                from: self.from.to_string(),
                                to: self.to.to_string(),
                                table: table.name.clone(),
                                reason: redact_text(d.message()),
                            }
                            .into()
                        }
                        _ => dst_fail(e),
                    })?;
                batches += 1;
                if self.options.stop_after_batches == Some(batches) {
                    return Err(MoveError::Stopped {
                        tenant: self.tenant.to_string(),
                        from: self.from.to_string(),
                        batches,
                    }
                    .into());
                }
                if rows.len() < batch as usize {
                    break;
                }
            }
            sqlx::raw_sql("CLOSE tenantry_move")
                .execute(&mut *snapshot)
                .await
                .map_err(src_fail)?;
        }
        // The snapshot's own digests: what the copy must equal.
        let mut expected = Vec::new();
        for table in tables {
            expected.push(
                digest_on(&mut snapshot, &filter, table, &table.src)
                    .await
                    .map_err(src_fail)?,
            );
        }
        snapshot.commit().await.map_err(src_fail)?;
        drop(src);
        self.fix_sequences(&mut dst, tables).await?;
        drop(dst);
        let mut digests = Vec::new();
        for (table, want) in tables.iter().zip(expected) {
            let copied = self.digest(&self.dst, table, &table.dst).await?;
            self.compare(table, "the snapshot", &want, "the target", &copied)?;
            let now = self.digest(&self.src, table, &table.src).await?;
            self.compare(table, "the snapshot", &want, "the source now", &now)?;
            digests.push((want, None));
        }
        Ok((digests, batches))
    }

    /// Delete the tenant's rows from the target's tables (children first, one transaction;
    /// tables the target lacks are skipped).
    async fn clear_target(&self, tables: &[Table]) -> Result<(), HostError> {
        let mut dst = self.dst.acquire::<sqlx::Postgres>().await?;
        let fail = |e| self.err(e, &self.dst);
        let mut tx = dst.begin().await.map_err(fail)?;
        for table in tables.iter().rev() {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&table.dst)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
            if exists {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DELETE FROM {} t {}",
                    table.dst,
                    self.where_tenant()
                )))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            }
        }
        tx.commit().await.map_err(fail)
    }

    /// Undo a move that has not switched yet (see [`MoveOptions::abort`]).
    async fn abort(
        &self,
        state: Option<MoveState>,
        tables: Vec<Table>,
    ) -> Result<MoveReport, HostError> {
        let nothing = |state: String| MoveError::NothingToAbort {
            tenant: self.tenant.to_string(),
            from: self.from.to_string(),
            to: self.to.to_string(),
            state,
        };
        match state {
            Some(MoveState::Planned | MoveState::Copying | MoveState::Verified) => {}
            Some(s @ (MoveState::Switched | MoveState::SourceDeleted)) => {
                return Err(nothing(format!(
                    ": it already switched (state `{s}`); move it back instead \
                     (--from {} --to {})",
                    self.to, self.from
                ))
                .into());
            }
            _ => return Err(nothing(String::new()).into()),
        }
        if self.options.dry_run {
            return Err(nothing(": --dry-run and --abort cannot be combined".into()).into());
        }
        let _lock = self.lock().await?;
        self.clear_target(&tables).await?;
        let mut conn = self.dst_org.acquire::<sqlx::Postgres>().await?;
        let fail = |e| self.err(e, &self.dst_org);
        let removed = sqlx::query(
            "DELETE FROM public.tenantry_tenants r WHERE r.id = $1 \
             AND to_jsonb(r) ->> 'move_state' = 'incoming'",
        )
        .bind(self.tenant.as_str())
        .execute(&mut *conn)
        .await
        .map_err(fail)?
        .rows_affected();
        if let (Kind::Schema { dst, .. }, 1) = (&self.kind, removed) {
            // The move created this schema (the target had no such tenant).
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(dst)
            )))
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        }
        drop(conn);
        self.host.forget_placement(&self.to, &self.tenant).await;
        let mut conn = self.src_org.acquire::<sqlx::Postgres>().await?;
        sqlx::query(
            "UPDATE public.tenantry_tenants SET move_state = NULL, moved_to = NULL, \
             move_updated_at = now() WHERE id = $1",
        )
        .bind(self.tenant.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| self.err(e, &self.src_org))?;
        drop(conn);
        self.host.forget_placement(&self.from, &self.tenant).await;
        let mut digests = Vec::new();
        for table in &tables {
            digests.push((self.digest(&self.src, table, &table.src).await?, None));
        }
        tracing::info!(tenant = %self.tenant, from = %self.from, to = %self.to, "tenant move aborted");
        let served_by = format!(
            "move aborted: org `{}` serves the tenant read-write again; org `{}` holds none \
             of it",
            self.from, self.to
        );
        let mut report = self.report(tables, digests, state, Vec::new(), None, 0, true, served_by);
        report.dry_run = false;
        report.aborted = true;
        Ok(report)
    }

    /// Fresh digests of both sides, compared (for a move resumed after verification).
    async fn verify_fresh(
        &self,
        tables: &[Table],
    ) -> Result<Vec<(Digest, Option<u64>)>, HostError> {
        let mut digests = Vec::new();
        for table in tables {
            let src = self.digest(&self.src, table, &table.src).await?;
            let dst = self.digest(&self.dst, table, &table.dst).await?;
            self.compare(table, "the source", &src, "the target", &dst)?;
            digests.push((src, None));
        }
        Ok(digests)
    }

    fn compare(
        &self,
        table: &Table,
        a_name: &str,
        a: &Digest,
        b_name: &str,
        b: &Digest,
    ) -> Result<(), HostError> {
        if a.rows == b.rows && a.checksum == b.checksum {
            return Ok(());
        }
        Err(MoveError::Mismatch {
            tenant: self.tenant.to_string(),
            from: self.from.to_string(),
            table: table.name.clone(),
            detail: format!(
                "{a_name} has {} rows (checksum {}), {b_name} has {} rows (checksum {})",
                a.rows, a.checksum, b.rows, b.checksum
            ),
        }
        .into())
    }

    async fn digest(
        &self,
        scoped: &Scoped,
        table: &Table,
        name: &str,
    ) -> Result<Digest, HostError> {
        let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
        digest_on(&mut conn, &self.where_tenant(), table, name)
            .await
            .map_err(|e| self.err(e, scoped))
    }

    /// Move identity and serial sequences of the target past the copied ids.
    async fn fix_sequences(
        &self,
        dst: &mut PgConnection,
        tables: &[Table],
    ) -> Result<(), HostError> {
        let fail = |e| self.err(e, &self.dst);
        for table in tables {
            let sequences: Vec<(String, String)> = sqlx::query_as(
                "SELECT quote_ident(attname::text), \
                        pg_get_serial_sequence($1, attname::text) \
                 FROM pg_catalog.pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
                   AND pg_get_serial_sequence($1, attname::text) IS NOT NULL",
            )
            .bind(&table.dst)
            .fetch_all(&mut *dst)
            .await
            .map_err(fail)?;
            for (column, sequence) in sequences {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT setval($1::regclass, m) FROM (SELECT max(t.{column})::int8 AS m \
                     FROM {} t {}) s \
                     WHERE m IS NOT NULL \
                       AND m > COALESCE(pg_sequence_last_value($1::regclass), 0)",
                    table.dst,
                    self.where_tenant()
                )))
                .bind(sequence)
                .execute(&mut *dst)
                .await
                .map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Delete the tenant's data in the source: its rows (children first, one transaction,
    /// through its own scope so row-level security bounds the delete) or its schema.
    async fn delete_source(&self, tables: &[Table]) -> Result<(), HostError> {
        match &self.kind {
            Kind::Row => {
                let mut conn = self.src.acquire::<sqlx::Postgres>().await?;
                let fail = |e| self.err(e, &self.src);
                let mut tx = conn.begin().await.map_err(fail)?;
                for table in tables.iter().rev() {
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DELETE FROM {} t {}",
                        table.src,
                        self.where_tenant()
                    )))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                }
                tx.commit().await.map_err(fail)?;
            }
            Kind::Schema { src, .. } => {
                let mut conn = self.src_org.acquire::<sqlx::Postgres>().await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    quote_ident(src)
                )))
                .execute(&mut *conn)
                .await
                .map_err(|e| self.err(e, &self.src_org))?;
            }
        }
        Ok(())
    }
}

/// Count, size and checksum of the tenant's rows of `table` at `name`, over the source's
/// columns: md5 of the sorted md5s of `ROW(columns)::text`, so row order does not matter and
/// both sides compute it with the same SQL.
async fn digest_on(
    conn: &mut PgConnection,
    filter: &str,
    table: &Table,
    name: &str,
) -> Result<Digest, sqlx::Error> {
    let row = table
        .columns
        .iter()
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (rows, bytes, checksum): (i64, i64, String) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*)::int8, COALESCE(sum(s.size), 0)::int8, \
                md5(COALESCE(string_agg(s.h, '' ORDER BY s.h), '')) \
         FROM (SELECT md5(ROW({row})::text) AS h, pg_column_size(t.*) AS size \
               FROM {name} t {filter}) s"
    )))
    .fetch_one(conn)
    .await?;
    Ok(Digest {
        rows: rows as u64,
        bytes: bytes as u64,
        checksum,
    })
}

/// `tables` ordered so a table comes after the tables its foreign keys reference (ties and
/// cycles keep name order).
fn parents_first(tables: Vec<Table>, edges: &[(i64, i64)]) -> Vec<Table> {
    let index: HashMap<i64, usize> = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    for (child, parent) in edges {
        if let (Some(&c), Some(&p)) = (index.get(child), index.get(parent)) {
            parents[c].push(p);
        }
    }
    let mut placed = vec![false; tables.len()];
    let mut order = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        let next = (0..tables.len())
            .find(|&i| !placed[i] && parents[i].iter().all(|&p| placed[p] || p == i))
            // A cycle: take the first remaining table.
            .or_else(|| (0..tables.len()).find(|&i| !placed[i]))
            .expect("a table remains");
        placed[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<Table>> = tables.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i].take().expect("each once"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: i64, name: &str) -> Table {
        Table {
            src: name.into(),
            dst: name.into(),
            name: name.into(),
            oid,
            columns: Vec::new(),
        }
    }

    #[test]
    fn parents_come_first() {
        let tables = vec![table(1, "comments"), table(2, "notes"), table(3, "tags")];
        // comments → notes, tags → comments
        let order: Vec<String> = parents_first(tables, &[(1, 2), (3, 1), (9, 1)])
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(order, ["notes", "comments", "tags"]);
        let cyclic: Vec<String> =
            parents_first(vec![table(1, "a"), table(2, "b")], &[(1, 2), (2, 1)])
                .into_iter()
                .map(|t| t.name)
                .collect();
        assert_eq!(cyclic, ["a", "b"]);
    }

    #[test]
    fn placements_follow_the_recorded_state() {
        let rec = |s: &str, to: Option<&str>| Some((Some(s.to_owned()), to.map(str::to_owned)));
        assert_eq!(placement_of(None, "db").unwrap(), Placement::Here);
        assert_eq!(
            placement_of(Some((None, None)), "db").unwrap(),
            Placement::Here
        );
        assert_eq!(
            placement_of(rec("copying", Some("b")), "db").unwrap(),
            Placement::Moving
        );
        assert_eq!(
            placement_of(rec("switched", Some("b")), "db").unwrap(),
            Placement::Elsewhere(OrgId::new("b").unwrap())
        );
        assert_eq!(
            placement_of(rec("incoming", Some("a")), "db").unwrap(),
            Placement::Elsewhere(OrgId::new("a").unwrap())
        );
        assert_eq!(
            placement_of(rec("copied", Some("b")), "db").unwrap(),
            Placement::Here
        );
        assert!(placement_of(rec("switched", None), "db").is_err());
        assert!(placement_of(rec("bogus", Some("b")), "db").is_err());
    }
}
