//! Tenant isolation on embedded SQLite, through scoped handles only: a database file per
//! tenant, created on demand and migrated, with `ATTACH` disabled so SQL cannot reach
//! another tenant's file. The same leak cases as on PostgreSQL: statements without `WHERE`,
//! raw SQL, a forged `tenant_id`, one connection alternating tenants, a cancelled query,
//! a panic inside a transaction, schema- and database-isolated tenants.

#[path = "support/data.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{Connection, Row, Sqlite};
use support::*;
use tenantry::Host;
use tenantry::isolation::IsolationKind;
use tenantry::plugin::{Capability, Grants, PluginSpec};

async fn insert(host: &Host, tenant: &str, body: &str) {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    sqlx::query("INSERT INTO notes (tenant_id, body) VALUES (?, ?)")
        .bind(tenant)
        .bind(body)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn bodies(host: &Host, tenant: &str) -> Vec<String> {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn tenants_never_see_or_change_each_others_rows() {
    let root = tempfile::tempdir().unwrap();
    let host = host(sqlite_config(root.path(), false, true)).await;
    insert(&host, "a", "a1").await;
    insert(&host, "a", "a2").await;
    insert(&host, "b", "b1").await;
    assert_eq!(bodies(&host, "a").await, ["a1", "a2"]);
    assert_eq!(bodies(&host, "b").await, ["b1"]);
    // Created on demand, next to the single database's file.
    assert!(root.path().join("data/app/a.db").is_file());
    assert!(root.path().join("data/app/b.db").is_file());

    let a = host.tenant("a").await.unwrap();
    assert_eq!(a.isolation(), &IsolationKind::Row);
    let mut conn = a.acquire::<Sqlite>().await.unwrap();
    let row = sqlx::raw_sql("SELECT count(*), count(DISTINCT tenant_id) FROM notes")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!((row.get::<i64, _>(0), row.get::<i64, _>(1)), (2, 1));
    let updated = sqlx::query("UPDATE notes SET body = 'hacked'")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 2);
    // A forged tenant_id lands in a's own file: b never sees it.
    sqlx::query("INSERT INTO notes (tenant_id, body) VALUES ('b', 'forged')")
        .execute(&mut *conn)
        .await
        .unwrap();
    let deleted = sqlx::query("DELETE FROM notes")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 3);
    drop(conn);
    assert_eq!(bodies(&host, "b").await, ["b1"]);

    // The shared database holds no tenant's rows.
    let shared = host.get().await.unwrap();
    let mut conn = shared.acquire::<Sqlite>().await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(visible, 0);
}

#[tokio::test]
async fn sql_cannot_attach_another_tenants_file() {
    let root = tempfile::tempdir().unwrap();
    let host = host(sqlite_config(root.path(), false, true)).await;
    insert(&host, "b", "secret").await;
    let b_file = root.path().join("data/app/b.db");
    let a = host.tenant("a").await.unwrap();
    let mut conn = a.acquire::<Sqlite>().await.unwrap();
    let attach = format!("ATTACH DATABASE '{}' AS other", b_file.display());
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(attach))
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("too many attached databases"),
        "{err}"
    );
    let listed: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_database_list")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(listed, ["main"]);
}

#[tokio::test]
async fn one_connection_per_pool_alternating_tenants_never_leaks() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), false, true);
    config.pools.max_connections = 1;
    let host = host(config).await;
    for i in 0..20 {
        let tenant = if i % 2 == 0 { "a" } else { "b" };
        insert(&host, tenant, &format!("{tenant}{i}")).await;
        let seen = bodies(&host, tenant).await;
        assert_eq!(seen.len(), i / 2 + 1);
        assert!(
            seen.iter().all(|b| b.starts_with(tenant)),
            "{tenant}: {seen:?}"
        );
    }
    let health = host.health().await;
    assert!(health.healthy, "{health:?}");
    // One pool per database file (shared, a, b), each within its limit of one.
    assert_eq!(health.pools.len(), 3, "{:?}", health.pools);
    assert!(
        health.pools.iter().all(|p| p.open <= 1),
        "{:?}",
        health.pools
    );
}

#[tokio::test]
async fn a_cancelled_query_does_not_leak_into_the_next_checkout() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), false, true);
    config.pools.max_connections = 1;
    let host = host(config).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    {
        let a = host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Sqlite>().await.unwrap();
        let slow = sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000000) \
             SELECT count(*) FROM n, notes",
        )
        .fetch_one(&mut *conn);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow)
                .await
                .is_err()
        );
    }
    assert_eq!(bodies(&host, "b").await, ["b1"]);
    assert_eq!(bodies(&host, "a").await, ["a1"]);
}

#[tokio::test]
async fn a_panic_inside_a_transaction_rolls_back_and_does_not_leak() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), false, true);
    config.pools.max_connections = 1;
    let host = host(config).await;
    insert(&host, "a", "a1").await;
    insert(&host, "b", "b1").await;
    let task_host = host.clone();
    let outcome = tokio::spawn(async move {
        let a = task_host.tenant("a").await.unwrap();
        let mut conn = a.acquire::<Sqlite>().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES ('doomed')")
            .execute(&mut *tx)
            .await
            .unwrap();
        panic!("handler bug");
    })
    .await;
    assert!(outcome.unwrap_err().is_panic());
    assert_eq!(bodies(&host, "a").await, ["a1"]);
    assert_eq!(bodies(&host, "b").await, ["b1"]);
}

fn tiered_policy(root: &std::path::Path) -> PluginSpec {
    let tiers = serde_json::json!({
        "standard": {"isolation": "row"},
        "pro": {"isolation": "schema", "schema": "t_{tenant}"},
        "enterprise": {
            "isolation": "database",
            "database": format!("sqlite://{}/dedicated/{{tenant}}.db", root.display()),
        },
        "archived": {"isolation": "row", "read_only": true},
    });
    PluginSpec {
        path: Some(tenantry_tests::plugin("tiered-policy")),
        grants: Grants::of(&[Capability::Config]),
        config: BTreeMap::from([
            ("tiers".to_owned(), tiers.to_string()),
            (
                "tenants".to_owned(),
                r#"{"sa": "pro", "sb": "pro", "ea": "enterprise", "eb": "enterprise", "old": "archived"}"#
                    .to_owned(),
            ),
        ]),
        ..PluginSpec::default()
    }
}

#[tokio::test]
async fn schema_and_database_isolated_tenants_get_files_of_their_own() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), true, true);
    config.plugins.tenant_policy = Some(tiered_policy(root.path()));
    let host = host(config).await;
    let acme = host.org("acme").unwrap();
    for (tenant, body) in [("sa", "sa1"), ("sb", "sb1"), ("ea", "ea1"), ("eb", "eb1")] {
        let scoped = acme.tenant(tenant).await.unwrap();
        let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES (?)")
            .bind(body)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let sa = acme.tenant("sa").await.unwrap();
    assert_eq!(sa.isolation(), &IsolationKind::Schema("t_sa".into()));
    assert!(
        sa.database().ends_with("/data/acme/sa.db"),
        "{}",
        sa.database()
    );
    let ea = acme.tenant("ea").await.unwrap();
    assert_eq!(ea.isolation(), &IsolationKind::Database);
    assert!(root.path().join("dedicated/ea.db").is_file());
    for (tenant, expected) in [("sa", "sa1"), ("sb", "sb1"), ("ea", "ea1"), ("eb", "eb1")] {
        let scoped = acme.tenant(tenant).await.unwrap();
        let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
        let seen: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(seen, [expected], "{tenant}");
        sqlx::query("DELETE FROM notes")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // Each delete above emptied one file only.
    let ea = acme.tenant("ea").await.unwrap();
    let mut conn = ea.acquire::<Sqlite>().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
    drop(conn);

    // A read-only tenant's file is opened read-only: the database refuses writes.
    let old = acme.tenant("old").await.unwrap();
    assert!(old.read_only());
    let mut conn = old.acquire::<Sqlite>().await.unwrap();
    let err = sqlx::query("INSERT INTO notes (body) VALUES ('x')")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count, 0, "reads work");
}

#[tokio::test]
async fn a_postgres_connection_is_refused_for_a_sqlite_scope() {
    let root = tempfile::tempdir().unwrap();
    let host = host(sqlite_config(root.path(), false, false)).await;
    let scoped = host.get().await.unwrap();
    let err = scoped
        .acquire::<sqlx::Postgres>()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a sqlite database"), "{err}");
    assert!(err.contains("acquire::<sqlx::Sqlite>()"), "{err}");
}
