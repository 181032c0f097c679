//! Tenant isolation on a real PostgreSQL, through scoped handles only: row-level security
//! on shared tables, schema and database isolation from a tenant policy, and the session
//! switch that keeps a pooled connection from carrying one tenant into another's checkout —
//! after cancelled queries, panics, rolled-back and abandoned transactions.
//!
//! Every test works in a database of its own, as the unprivileged application role.

#[path = "support/data.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{Connection, Postgres, Row};
use support::*;
use tenantry::plugin::{Capability, Grants, PluginSpec};
use tenantry::{DataError, Host, HostError};

/// A host with tenants over a fresh database holding the `notes` table under RLS.
async fn setup(max_connections: u32) -> (Host, String) {
    let db = unique("iso");
    let url = pg_database(&db, &notes_postgres()).await;
    let mut config = postgres_config(&url, true);
    config.pools.max_connections = max_connections;
    (host(config).await, db)
}

async fn insert(host: &Host, tenant: &str, body: &str) {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ($1)")
        .bind(body)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn bodies(host: &Host, tenant: &str) -> Vec<String> {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

async fn setting(conn: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar("SELECT coalesce(current_setting('tenantry.tenant_id', true), '')")
        .fetch_one(conn)
        .await
        .unwrap()
}

fn sql_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn tenants_never_see_or_change_each_others_rows() {
    let (host, db) = setup(4).await;
    insert(&host, "a", "a1").await;
    insert(&host, "a", "a2").await;
    insert(&host, "b", "b1").await;
    assert_eq!(bodies(&host, "a").await, ["a1", "a2"]);
    assert_eq!(bodies(&host, "b").await, ["b1"]);

    let a = host.tenant("a").await.unwrap();
    let mut conn = a.acquire::<Postgres>().await.unwrap();
    // Raw SQL through the simple protocol, no WHERE anywhere.
    let row =
        sqlx::raw_sql("SELECT count(*), count(DISTINCT tenant_id), min(tenant_id) FROM notes")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let (count, distinct, tenant): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((count, distinct, tenant.as_str()), (2, 1, "a"));
    let updated = sqlx::query("UPDATE notes SET body = 'hacked'")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 2);
    // Forging another tenant's id is refused by the policy's WITH CHECK.
    let forged = sqlx::query("INSERT INTO notes (tenant_id, body) VALUES ('b', 'forged')")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sql_code(&forged).as_deref(), Some("42501"), "{forged}");
    let moved = sqlx::query("UPDATE notes SET tenant_id = 'b'")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sql_code(&moved).as_deref(), Some("42501"), "{moved}");
    let deleted = sqlx::query("DELETE FROM notes")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 2);
    drop(conn);
    assert_eq!(bodies(&host, "b").await, ["b1"]);
    assert!(bodies(&host, "a").await.is_empty());

    // Outside any tenant, the table shows nothing and accepts nothing.
    let shared = host.get().await.unwrap();
    let mut conn = shared.acquire::<Postgres>().await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(visible, 0);
    let err = sqlx::query("INSERT INTO notes (tenant_id, body) VALUES ('b', 'x')")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sql_code(&err).as_deref(), Some("42501"));
    drop(conn);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn one_connection_alternating_tenants_never_leaks() {
    let (host, db) = setup(1).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    let mut pids = std::collections::BTreeSet::new();
    for i in 0..30 {
        let (tenant, expected) = match i % 3 {
            0 => ("a", vec!["a1"]),
            1 => ("b", vec!["b1"]),
            _ => ("", vec![]),
        };
        let scoped = if tenant.is_empty() {
            host.get().await.unwrap()
        } else {
            host.tenant(tenant).await.unwrap()
        };
        let mut conn = scoped.acquire::<Postgres>().await.unwrap();
        assert_eq!(setting(&mut conn).await, tenant, "checkout {i}");
        let seen: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(seen, expected, "checkout {i} as {tenant:?}");
        pids.insert(
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
        );
    }
    assert_eq!(pids.len(), 1, "a pool of one connection used one backend");
    drop_pg_database(&db).await;
}

/// Which backend serves `tenant`'s next checkout (after checking its session is the tenant's).
async fn backend_of(host: &Host, tenant: &str) -> i32 {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    assert_eq!(setting(&mut conn).await, tenant);
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// While the pool has room, a tenant no idle connection carries gets a connection of its
/// own instead of switching one that carries another tenant; once the pool is full they
/// share by switching. Never more connections than the pool's limit, even under
/// concurrency, and never a session carrying the wrong tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_taking_turns_keep_sessions_of_their_own_up_to_the_pool_limit() {
    let (host, db) = setup(3).await;
    let a = backend_of(&host, "a").await;
    let b = backend_of(&host, "b").await;
    assert_ne!(
        a, b,
        "b got a connection of its own rather than switching a's"
    );
    assert_eq!(backend_of(&host, "a").await, a);
    assert_eq!(backend_of(&host, "b").await, b);
    let mut seen = std::collections::BTreeSet::from([a, b]);
    for tenant in ["c", "d", "e", "a", "b", "c"] {
        seen.insert(backend_of(&host, tenant).await);
    }
    assert!(seen.len() <= 3, "{} backends for a pool of 3", seen.len());

    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let host = host.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let tenant = ["a", "b", "c", "d", "e"][(task * 7 + i * 3) % 5];
                    let scoped = host.tenant(tenant).await.unwrap();
                    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
                    assert_eq!(setting(&mut conn).await, tenant);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let pools = host.health().await.pools;
    assert_eq!(pools.len(), 1);
    assert!(pools[0].open <= 3, "{:?}", pools[0]);
    let backends: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenantry'",
    )
    .bind(&db)
    .fetch_one(&mut sqlx::PgConnection::connect(&tenantry_tests::postgres().admin_url).await.unwrap())
    .await
    .unwrap();
    assert!(
        backends <= 3,
        "{backends} server connections for a pool of 3"
    );
    drop(host);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn a_query_cancelled_mid_flight_does_not_leak_into_the_next_checkout() {
    let (host, db) = setup(1).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    {
        let a = host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        let slow = sqlx::query("SELECT pg_sleep(1), body FROM notes").fetch_all(&mut *conn);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slow)
                .await
                .is_err(),
            "the query was cancelled by the timeout"
        );
        // A transaction abandoned mid-query too.
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES ('uncommitted')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let slow = sqlx::query("SELECT pg_sleep(1)").execute(&mut *tx);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slow)
                .await
                .is_err()
        );
    }
    // The single connection now serves b.
    let b = host.tenant("b").await.unwrap();
    let mut conn = b.acquire::<Postgres>().await.unwrap();
    assert_eq!(setting(&mut conn).await, "b");
    let seen: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(seen, ["b1"]);
    drop(conn);
    assert_eq!(
        bodies(&host, "a").await,
        ["a1"],
        "the abandoned insert rolled back"
    );
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn a_panic_inside_a_transaction_rolls_back_and_does_not_leak() {
    let (host, db) = setup(1).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    let task_host = host.clone();
    let outcome = tokio::spawn(async move {
        let a = task_host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES ('doomed')")
            .execute(&mut *tx)
            .await
            .unwrap();
        // Even a session-level switch inside the transaction is undone by its rollback.
        sqlx::query("SELECT set_config('tenantry.tenant_id', 'b', false)")
            .execute(&mut *tx)
            .await
            .unwrap();
        panic!("handler bug");
    })
    .await;
    assert!(outcome.unwrap_err().is_panic());
    assert_eq!(bodies(&host, "b").await, ["b1"]);
    assert_eq!(bodies(&host, "a").await, ["a1"]);
    let a = host.tenant("a").await.unwrap();
    let mut conn = a.acquire::<Postgres>().await.unwrap();
    assert_eq!(setting(&mut conn).await, "a");
    drop(conn);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn a_raw_begin_left_open_cannot_roll_the_next_tenant_back_into_the_previous() {
    let (host, db) = setup(1).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    {
        let a = host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        sqlx::raw_sql("BEGIN; INSERT INTO notes (body) VALUES ('left open')")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let b = host.tenant("b").await.unwrap();
    let mut conn = b.acquire::<Postgres>().await.unwrap();
    // Application code that believes it is in a transaction and rolls back.
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
    assert_eq!(setting(&mut conn).await, "b");
    let seen: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(seen, ["b1"]);
    drop(conn);
    assert_eq!(bodies(&host, "a").await, ["a1"]);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn session_state_left_by_one_tenant_is_gone_for_the_next() {
    let (host, db) = setup(1).await;
    insert(&host, "a", "a1").await;
    {
        let a = host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        sqlx::raw_sql(
            "CREATE TEMP TABLE scratch AS SELECT * FROM notes; \
             SET statement_timeout = '1234ms'; \
             BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT body FROM notes; COMMIT;",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    // The same tenant gets its connection back untouched: no switch was needed.
    {
        let a = host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        let scratch: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('pg_temp.scratch')::text")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert!(
            scratch.is_some(),
            "a connection carrying the scope is reused as is"
        );
    }
    let b = host.tenant("b").await.unwrap();
    let mut conn = b.acquire::<Postgres>().await.unwrap();
    let scratch: Option<String> = sqlx::query_scalar("SELECT to_regclass('pg_temp.scratch')::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        scratch, None,
        "a's temp table (a copy of its rows) is dropped"
    );
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(timeout, "0");
    let cursor = sqlx::query("FETCH ALL FROM held")
        .fetch_all(&mut *conn)
        .await;
    assert!(cursor.is_err(), "a's held cursor is closed");
    drop(conn);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn changing_the_tenant_setting_by_hand_needs_forget_session_or_no_reuse() {
    let (host, db) = setup(1).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    {
        let a = host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        sqlx::query("SELECT set_config('tenantry.tenant_id', 'b', false)")
            .execute(&mut *conn)
            .await
            .unwrap();
        conn.forget_session();
    }
    assert_eq!(bodies(&host, "a").await, ["a1"]);

    // With session reuse off, every checkout re-asserts the scope.
    let url = with_database(&tenantry_tests::postgres().app_url, &db);
    let mut config = postgres_config(&url, true);
    config.pools.max_connections = 1;
    config.pools.reuse_sessions = false;
    let strict = support::host(config).await;
    {
        let a = strict.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Postgres>().await.unwrap();
        sqlx::query("SELECT set_config('tenantry.tenant_id', 'b', false)")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    assert_eq!(bodies(&strict, "a").await, ["a1"]);
    drop_pg_database(&db).await;
}

fn tiered_policy(tiers: &str, tenants: &str) -> PluginSpec {
    PluginSpec {
        path: Some(tenantry_tests::plugin("tiered-policy")),
        grants: Grants::of(&[Capability::Config]),
        config: BTreeMap::from([
            ("tiers".to_owned(), tiers.to_owned()),
            ("tenants".to_owned(), tenants.to_owned()),
        ]),
        ..PluginSpec::default()
    }
}

/// A host over a fresh empty database, with the notes app and the given policy.
async fn policy_host(tiers: &str, tenants: &str) -> (Host, tempfile::TempDir, String) {
    let db = unique("pol");
    let url = pg_database(&db, "").await;
    let root = tempfile::tempdir().unwrap();
    let mut config = postgres_config(&url, true);
    config.migrations.apps_dir = apps_dir(root.path(), &notes_postgres());
    config.admin_database_url = Some(tenantry_tests::postgres().admin_url);
    config.plugins.tenant_policy = Some(tiered_policy(tiers, tenants));
    config.pools.acquire_timeout_ms = 1500;
    (host(config).await, root, db)
}

#[tokio::test]
async fn schema_isolated_tenants_see_only_their_schema() {
    let (host, _root, db) = policy_host(
        r#"{"pro": {"isolation": "schema", "schema": "t_{tenant}"}, "standard": {"isolation": "row"}}"#,
        r#"{"sa": "pro", "sb": "pro"}"#,
    )
    .await;
    host.create_tenant("sa", None).await.unwrap();
    host.create_tenant("sb", None).await.unwrap();
    host.create_tenant("row-tenant", None).await.unwrap();
    tenantry::migrate::run(&host).await.unwrap();
    for (tenant, body) in [
        ("sa", "sa1"),
        ("sa", "sa2"),
        ("sb", "sb1"),
        ("row-tenant", "r1"),
    ] {
        insert(&host, tenant, body).await;
    }
    let sa = host.tenant("sa").await.unwrap();
    assert_eq!(
        sa.isolation(),
        &tenantry::isolation::IsolationKind::Schema("t_sa".into())
    );
    let mut conn = sa.acquire::<Postgres>().await.unwrap();
    let path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(path, "\"t_sa\"");
    let deleted = sqlx::query("DELETE FROM notes")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 2);
    drop(conn);
    assert_eq!(bodies(&host, "sb").await, ["sb1"]);
    assert_eq!(bodies(&host, "row-tenant").await, ["r1"]);
    let mut tenants = host.list_tenants(None, |_| true, None).await.unwrap();
    tenants.sort();
    let names: Vec<&str> = tenants.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, ["row-tenant", "sa", "sb"]);
    host.delete_tenant("sb", None, true).await.unwrap();
    let schema: Option<String> = {
        let shared = host.get().await.unwrap();
        let mut conn = shared.acquire::<Postgres>().await.unwrap();
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = 't_sb'")
            .fetch_optional(&mut *conn)
            .await
            .unwrap()
    };
    assert_eq!(schema, None, "delete_tenant dropped the schema");
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn database_isolated_tenants_get_databases_of_their_own() {
    let prefix = unique("ent");
    let pg = tenantry_tests::postgres();
    let template = with_database(&pg.app_url, &format!("{prefix}_{{tenant}}"));
    let tiers = serde_json::json!({
        "enterprise": {"isolation": "database", "database": template},
        "standard": {"isolation": "row"},
    })
    .to_string();
    let (host, _root, db) =
        policy_host(&tiers, r#"{"ea": "enterprise", "eb": "enterprise"}"#).await;
    host.create_tenant("ea", None).await.unwrap();
    host.create_tenant("eb", None).await.unwrap();
    insert(&host, "ea", "ea1").await;
    insert(&host, "eb", "eb1").await;
    let ea = host.tenant("ea").await.unwrap();
    assert!(
        ea.database().ends_with(&format!("/{prefix}_ea")),
        "{}",
        ea.database()
    );
    assert!(
        !ea.database().contains(&password(&pg.app_url)),
        "password redacted"
    );
    let mut conn = ea.acquire::<Postgres>().await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(name, format!("{prefix}_ea"));
    let seen: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(seen, ["ea1"]);
    drop(conn);
    assert_eq!(bodies(&host, "eb").await, ["eb1"]);
    host.delete_tenant("ea", None, true).await.unwrap();
    host.delete_tenant("eb", None, true).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1")
        .bind(format!("{prefix}%"))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "delete_tenant dropped the tenants' databases");
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn policy_limits_read_only_and_settings_are_honoured() {
    let (host, _root, db) = policy_host(
        r#"{"archived": {"isolation": "row", "read_only": true},
            "small": {"isolation": "row", "max_connections": 1, "settings": {"statement_timeout": "1234ms"}},
            "standard": {"isolation": "row"}}"#,
        r#"{"old": "archived", "tiny": "small"}"#,
    )
    .await;
    tenantry::migrate::run(&host).await.unwrap();
    insert(&host, "tiny", "t1").await;

    let old = host.tenant("old").await.unwrap();
    assert!(old.read_only());
    let mut conn = old.acquire::<Postgres>().await.unwrap();
    let err = sqlx::query("INSERT INTO notes (body) VALUES ('x')")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sql_code(&err).as_deref(), Some("25006"), "{err}");
    drop(conn);

    let tiny = host.tenant("tiny").await.unwrap();
    let mut first = tiny.acquire::<Postgres>().await.unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *first)
        .await
        .unwrap();
    assert_eq!(timeout, "1234ms");
    let second = tiny.acquire::<Postgres>().await.unwrap_err().to_string();
    assert!(
        second.contains("the tenant policy's max-connections"),
        "{second}"
    );
    drop(first);
    assert!(tiny.acquire::<Postgres>().await.is_ok());
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn privileged_roles_are_refused_unless_allowed() {
    let db = unique("priv");
    pg_database(&db, "").await;
    let admin_url = with_database(&tenantry_tests::postgres().admin_url, &db);
    let host = support::host(postgres_config(&admin_url, false)).await;
    let err = host.get().await.unwrap_err().to_string();
    assert!(
        err.contains("has SUPERUSER") && err.contains("allow-privileged-role"),
        "{err}"
    );
    assert!(!err.contains(&password(&admin_url)), "{err}");
    let mut config = postgres_config(&admin_url, false);
    config.isolation.allow_privileged_role = true;
    let host = support::host(config).await;
    assert!(host.get().await.unwrap().ping().await.is_ok());
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn tables_with_tenant_id_but_without_forced_rls_are_refused() {
    let db = unique("leak");
    let url = pg_database(
        &db,
        "CREATE TABLE leaky (id int, tenant_id text); \
         CREATE TABLE half (id int, tenant_id text); ALTER TABLE half ENABLE ROW LEVEL SECURITY;",
    )
    .await;
    let host = support::host(postgres_config(&url, true)).await;
    let err = host.tenant("a").await.unwrap_err();
    assert!(
        matches!(err, HostError::Data(DataError::Isolation(_))),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("public.half, public.leaky"), "{err}");
    assert!(err.contains("tenantry rls enable"), "{err}");
    let mut config = postgres_config(&url, true);
    config.isolation.allow_unprotected_tables = true;
    let host = support::host(config).await;
    assert!(host.tenant("a").await.is_ok());
    // The fix the message names works.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    tenantry::isolation::postgres::enable_rls(&mut conn, "leaky")
        .await
        .unwrap();
    tenantry::isolation::postgres::enable_rls(&mut conn, "half")
        .await
        .unwrap();
    let host = support::host(postgres_config(&url, true)).await;
    assert!(host.tenant("a").await.is_ok());
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn the_global_cap_holds_across_many_postgres_orgs() {
    const CAP: u32 = 4;
    let prefix = unique("cap");
    let orgs: Vec<String> = (0..6).map(|i| format!("org{i}")).collect();
    for org in &orgs {
        pg_database(&format!("{prefix}_{org}"), "").await;
    }
    let pg = tenantry_tests::postgres();
    let mut config = postgres_config(
        &with_database(&pg.app_url, &format!("{prefix}_{{org}}")),
        false,
    );
    config.orgs = true;
    config.pools.max_open_connections = CAP;
    config.pools.max_connections = 3;
    let host = support::host(config).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let host = host.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(host.health().await.open_connections);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            max
        })
    };
    let mut tasks = Vec::new();
    for round in 0..4 {
        for org in &orgs {
            let host = host.clone();
            let org = org.clone();
            tasks.push(tokio::spawn(async move {
                let scoped = host.org(&org).unwrap().get().await.unwrap();
                let mut conn = scoped.acquire::<Postgres>().await.unwrap();
                let db: String = sqlx::query_scalar("SELECT current_database()::text")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10 + round)).await;
                db
            }));
        }
    }
    for (task, org) in tasks.into_iter().zip(orgs.iter().cycle()) {
        assert_eq!(task.await.unwrap(), format!("{prefix}_{org}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let max = sampler.await.unwrap();
    assert!(
        max <= CAP && max > 0,
        "observed {max} open connections; cap {CAP}"
    );
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let on_server: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE $1 AND usename = 'tenantry_app'",
    )
    .bind(format!("{prefix}%"))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        on_server <= CAP as i64,
        "{on_server} connections on the server; cap {CAP}"
    );
    for org in &orgs {
        drop_pg_database(&format!("{prefix}_{org}")).await;
    }
}
