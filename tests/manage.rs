//! Organization and tenant management end to end, on embedded SQLite and on the test
//! PostgreSQL: create → use → list → delete (refused without confirmation), health, apps,
//! migrations on every database, reconfiguration and cache clearing.

#[path = "support/data.rs"]
mod support;

use sqlx::{Connection, Postgres, Sqlite};
use support::*;
use tenantry::manage::Mode;
use tenantry::{Backend, DataError, Host, HostError, TenantId};

fn ids(list: &[TenantId]) -> Vec<&str> {
    list.iter().map(|t| t.as_str()).collect()
}

async fn write_note(host: &Host, org: &str, tenant: &str, body: &str) {
    let scoped = host.org(org).unwrap().tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES (?)")
        .bind(body)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn read_notes(host: &Host, org: &str, tenant: &str) -> Vec<String> {
    let scoped = host.org(org).unwrap().tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_orgs_and_tenants_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    let host = host(sqlite_config(root.path(), true, true)).await;
    assert!(host.list_orgs().await.unwrap().is_empty());
    assert!(!host.org_exists("acme").await.unwrap());

    host.create_org("acme").await.unwrap();
    host.create_org("globex").await.unwrap();
    assert!(root.path().join("data/acme.db").is_file());
    assert!(host.org_exists("acme").await.unwrap());
    let err = host.create_org("acme").await.unwrap_err().to_string();
    assert!(
        err.contains("org `acme`") && err.contains("already exists"),
        "{err}"
    );
    let orgs: Vec<String> = host
        .list_orgs()
        .await
        .unwrap()
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(orgs, ["acme", "globex"]);

    // The org's own database is usable at once (migrated on creation).
    let shared = host.org("acme").unwrap().get().await.unwrap();
    let mut conn = shared.acquire::<Sqlite>().await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ('org-wide')")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    for tenant in ["t1", "t2", "team-x"] {
        host.create_tenant(tenant, Some("acme")).await.unwrap();
    }
    let err = host
        .create_tenant("t1", Some("acme"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tenant `t1` of org `acme` already exists"),
        "{err}"
    );
    assert!(host.tenant_exists("t1", Some("acme")).await.unwrap());
    assert!(!host.tenant_exists("nope", Some("acme")).await.unwrap());
    let all = host
        .list_tenants(Some("acme"), |_| true, None)
        .await
        .unwrap();
    assert_eq!(ids(&all), ["t1", "t2", "team-x"]);
    let teams = host
        .list_tenants(Some("acme"), |t| t.as_str().starts_with("team"), None)
        .await
        .unwrap();
    assert_eq!(ids(&teams), ["team-x"]);
    let first = host
        .list_tenants(Some("acme"), |_| true, Some(2))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["t1", "t2"]);
    assert!(
        host.list_tenants(Some("globex"), |_| true, None)
            .await
            .unwrap()
            .is_empty()
    );

    write_note(&host, "acme", "t1", "one").await;
    write_note(&host, "acme", "t2", "two").await;
    assert_eq!(read_notes(&host, "acme", "t1").await, ["one"]);

    let err = host
        .delete_tenant("t1", Some("acme"), false)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        HostError::Data(DataError::ConfirmationRequired { .. })
    ));
    assert!(err.to_string().contains("with confirm = true"), "{err}");
    assert!(host.tenant_exists("t1", Some("acme")).await.unwrap());
    host.delete_tenant("t1", Some("acme"), true).await.unwrap();
    assert!(!host.tenant_exists("t1", Some("acme")).await.unwrap());
    assert!(!root.path().join("data/acme/t1.db").exists());
    assert_eq!(
        ids(&host
            .list_tenants(Some("acme"), |_| true, None)
            .await
            .unwrap()),
        ["t2", "team-x"]
    );
    // Using the tenant again starts from an empty file: its data is gone.
    assert!(read_notes(&host, "acme", "t1").await.is_empty());
    assert_eq!(read_notes(&host, "acme", "t2").await, ["two"]);
    let err = host
        .delete_tenant("ghost", Some("acme"), true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let health = host.health().await;
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.mode, Mode::OrgsAndTenants);
    assert_eq!(health.backend, Some(Backend::Sqlite));
    assert!(health.open_connections >= 1 && health.open_connections <= health.max_open_connections);
    assert!(
        health
            .pools
            .iter()
            .any(|p| p.database.ends_with("/data/acme/t2.db"))
    );
    assert_eq!(host.apps().await.unwrap(), ["notes"]);

    let err = host
        .delete_org("globex", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to delete org `globex`"), "{err}");
    assert!(host.org_exists("globex").await.unwrap());
    host.delete_org("globex", true).await.unwrap();
    assert!(!host.org_exists("globex").await.unwrap());
    host.delete_org("acme", true).await.unwrap();
    assert!(!root.path().join("data/acme.db").exists());
    assert!(
        !root.path().join("data/acme").exists(),
        "tenant files deleted with the org"
    );
    assert!(host.list_orgs().await.unwrap().is_empty());
    let err = host.delete_org("acme", true).await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        host.health().await.pools.is_empty(),
        "the deleted orgs' pools were closed"
    );
}

#[tokio::test]
async fn postgres_orgs_and_tenants_end_to_end() {
    let pg = tenantry_tests::postgres();
    let prefix = unique("mgmt");
    let root = tempfile::tempdir().unwrap();
    let pattern = with_database(&pg.app_url, &format!("{prefix}_{{org}}"));
    let mut config = postgres_config(&pattern, true);
    config.orgs = true;
    config.migrations.apps_dir = apps_dir(root.path(), &notes_postgres());

    let without_admin = host(config.clone()).await;
    let err = without_admin
        .create_org("acme")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TENANTRY_ADMIN_DATABASE_URL"), "{err}");

    config.admin_database_url = Some(pg.admin_url.clone());
    let host = host(config).await;
    assert!(!host.org_exists("acme").await.unwrap());
    host.create_org("acme").await.unwrap();
    assert!(host.org_exists("acme").await.unwrap());
    let orgs: Vec<String> = host
        .list_orgs()
        .await
        .unwrap()
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(orgs, ["acme"]);

    host.create_tenant("t1", Some("acme")).await.unwrap();
    host.create_tenant("t2", Some("acme")).await.unwrap();
    assert!(host.tenant_exists("t2", Some("acme")).await.unwrap());
    assert!(!host.tenant_exists("t3", Some("acme")).await.unwrap());
    assert_eq!(
        ids(&host
            .list_tenants(Some("acme"), |_| true, None)
            .await
            .unwrap()),
        ["t1", "t2"]
    );
    for (tenant, body) in [("t1", "one"), ("t1", "uno"), ("t2", "two")] {
        let scoped = host.org("acme").unwrap().tenant(tenant).await.unwrap();
        let mut conn = scoped.acquire::<Postgres>().await.unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES ($1)")
            .bind(body)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // A tenant cannot enumerate the others through the registry.
    let t2 = host.org("acme").unwrap().tenant("t2").await.unwrap();
    let mut conn = t2.acquire::<Postgres>().await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM tenantry_tenants")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(visible, 0);
    drop(conn);

    host.delete_tenant("t1", Some("acme"), true).await.unwrap();
    assert_eq!(
        ids(&host
            .list_tenants(Some("acme"), |_| true, None)
            .await
            .unwrap()),
        ["t2"]
    );
    let mut admin =
        sqlx::PgConnection::connect(&with_database(&pg.admin_url, &format!("{prefix}_acme")))
            .await
            .unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT tenant_id, body FROM notes ORDER BY id")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [("t2".to_owned(), "two".to_owned())],
        "t1's rows are gone, t2's kept"
    );
    admin.close().await.unwrap();

    assert!(host.health().await.healthy);
    let err = host
        .delete_org("acme", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("without confirmation"), "{err}");
    host.delete_org("acme", true).await.unwrap();
    assert!(!host.org_exists("acme").await.unwrap());
    assert!(host.list_orgs().await.unwrap().is_empty());
}

#[tokio::test]
async fn migrate_runs_every_app_on_every_org_and_tenant_file() {
    let root = tempfile::tempdir().unwrap();
    let config = sqlite_config(root.path(), true, true);
    let apps = config.migrations.apps_dir.clone();
    let host = host(config).await;
    for org in ["acme", "globex"] {
        host.create_org(org).await.unwrap();
    }
    host.create_tenant("t1", Some("acme")).await.unwrap();
    host.create_tenant("t2", Some("globex")).await.unwrap();
    // A second app and a new migration of the first.
    std::fs::write(
        apps.join("notes/migrations/0002_pinned.sql"),
        "ALTER TABLE notes ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;",
    )
    .unwrap();
    std::fs::create_dir_all(apps.join("billing/migrations")).unwrap();
    std::fs::write(
        apps.join("billing/migrations/0001_invoices.sql"),
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);",
    )
    .unwrap();
    host.clear_cache().await;
    let report = tenantry::migrate::run(&host).await.unwrap();
    assert_eq!(report.apps, ["billing", "notes"]);
    let mut migrated: Vec<String> = report
        .scopes
        .iter()
        .map(|s| match &s.tenant {
            Some(t) => format!("{}/{t}", s.org.as_ref().unwrap()),
            None => s.org.as_ref().unwrap().to_string(),
        })
        .collect();
    migrated.sort();
    assert_eq!(migrated, ["acme", "acme/t1", "globex", "globex/t2"]);
    for (org, tenant) in [("acme", "t1"), ("globex", "t2")] {
        let scoped = host.org(org).unwrap().tenant(tenant).await.unwrap();
        let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
        sqlx::query("INSERT INTO notes (body, pinned) VALUES ('x', 1)")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO invoices (amount) VALUES (3)")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    assert_eq!(host.apps().await.unwrap(), ["billing", "notes"]);
    // Per-app bookkeeping tables keep the apps' version numbers apart.
    let scoped = host.org("acme").unwrap().get().await.unwrap();
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE name LIKE '_tenantry_migrations_%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        tables,
        ["_tenantry_migrations_billing", "_tenantry_migrations_notes"]
    );
}

#[tokio::test]
async fn configure_returns_a_new_host_and_clear_cache_closes_pools() {
    let root = tempfile::tempdir().unwrap();
    let host = host(sqlite_config(root.path(), false, false)).await;
    host.get().await.unwrap().ping().await.unwrap();
    assert_eq!(host.health().await.pools.len(), 1);
    host.clear_cache().await;
    let health = host.health().await;
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.pools.len(), 1, "health reopened the single database");

    let other = host
        .configure(format!("sqlite://{}/other.db", root.path().display()))
        .await
        .unwrap();
    other.get().await.unwrap().ping().await.unwrap();
    assert!(root.path().join("other.db").is_file());
    assert!(other.get().await.unwrap().database().ends_with("/other.db"));
    assert!(
        host.get()
            .await
            .unwrap()
            .database()
            .ends_with("/data/app.db")
    );
    let err = host
        .configure("mysql://nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not usable"), "{err}");
}

/// Which file a tenant's connection really reads: `PRAGMA database_list`'s `main`.
async fn file_of(host: &Host, org: &str, tenant: &str) -> String {
    let scoped = host.org(org).unwrap().tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    let (_, _, file): (i64, String, String) = sqlx::query_as("PRAGMA database_list")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        scoped.database(),
        format!("sqlite://{file}"),
        "the handle names the file its connections use"
    );
    file
}

/// The host hands the same scope's handle out again while nothing it was built from changed
/// (see `Ready` in scope.rs). That must never outlive the org's resolution, the policy's
/// answer or the pool: after each change below, the very next checkout goes to where the
/// host routes now. `pattern` answers `v1/acme.db`, `directory` answers `v2/acme.db`.
#[tokio::test]
async fn handles_kept_ready_follow_every_change_of_routing() {
    use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().display().to_string();
    for keep_cache_on_swap in [false, true] {
        let mut config = sqlite_config(root.path(), true, true);
        config.resolve.keep_cache_on_swap = keep_cache_on_swap;
        config.plugins.org_resolver = Some(PluginSpec {
            path: Some(tenantry_tests::plugin("pattern")),
            grants: Grants::of(&[Capability::Config]),
            config: [
                (
                    "template".to_owned(),
                    format!("sqlite://{dir}/v1/{{org}}.db"),
                ),
                (
                    "directory".to_owned(),
                    format!(r#"{{"acme": "sqlite://{dir}/v2/acme.db"}}"#),
                ),
            ]
            .into(),
            samples: vec!["acme".into()],
            ..PluginSpec::default()
        });
        let host = host(config).await;
        let v1 = format!("{dir}/v1/");
        let v2 = format!("{dir}/v2/");

        // Repeated handles (kept ready after the first) count as org-cache hits, as before.
        assert!(file_of(&host, "acme", "t1").await.starts_with(&v1));
        let hits = host.resolver_metrics().await.cache_hits;
        for _ in 0..5 {
            assert!(file_of(&host, "acme", "t1").await.starts_with(&v1));
        }
        assert_eq!(host.resolver_metrics().await.cache_hits, hits + 5);
        write_note(&host, "acme", "t1", "in v1").await;

        // A resolver swap: the cached resolution is stale at once, unless kept on purpose —
        // then the handle follows the cache, and clearing the org's entry moves it.
        host.swap_file(
            PluginKind::OrgResolver,
            &tenantry_tests::plugin("directory"),
        )
        .await
        .unwrap();
        if keep_cache_on_swap {
            assert!(file_of(&host, "acme", "t1").await.starts_with(&v1));
            host.clear_org_cache(Some(&"acme".parse().unwrap())).await;
        }
        assert!(file_of(&host, "acme", "t1").await.starts_with(&v2));
        assert!(read_notes(&host, "acme", "t1").await.is_empty());

        // Back, through a rollback and (with kept answers) clearing every cached org.
        host.rollback(PluginKind::OrgResolver).await.unwrap();
        if keep_cache_on_swap {
            assert!(file_of(&host, "acme", "t1").await.starts_with(&v2));
            host.clear_org_cache(None).await;
        }
        assert!(file_of(&host, "acme", "t1").await.starts_with(&v1));
        assert_eq!(read_notes(&host, "acme", "t1").await, ["in v1"]);

        // Deleting the tenant closes its pool and deletes its file: the next handle opens
        // a new, empty one instead of failing on the closed pool.
        host.delete_tenant("t1", Some("acme"), true).await.unwrap();
        assert!(read_notes(&host, "acme", "t1").await.is_empty());
        write_note(&host, "acme", "t1", "again").await;

        // Clearing every cache closes every pool; so does deleting the org.
        host.clear_cache().await;
        assert_eq!(read_notes(&host, "acme", "t1").await, ["again"]);
        host.delete_org("acme", true).await.unwrap();
        assert!(!root.path().join("v1/acme.db").exists());
        assert!(read_notes(&host, "acme", "t1").await.is_empty());
        assert!(
            root.path().join("v1/acme.db").is_file(),
            "recreated by its tenant"
        );
        host.delete_org("acme", true).await.unwrap();
        drop(host);
        std::fs::remove_dir_all(root.path().join("v2")).unwrap();
    }
}

/// Same for the tenant policy: a handle kept ready never outlives the policy's answer. The
/// bundled `tiered-policy` puts `t2` in a database of its own (its `tenants` key); the C
/// example policy has no such key, so it keeps `t2` in the org's tenant files.
#[tokio::test]
async fn handles_kept_ready_follow_a_tenant_policy_swap() {
    use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().display().to_string();
    let mut config = sqlite_config(root.path(), true, true);
    let tiers = serde_json::json!({
        "standard": {"isolation": "row"},
        "enterprise": {"isolation": "database", "database": format!("sqlite://{dir}/dedicated/{{tenant}}.db")},
    });
    config.plugins.tenant_policy = Some(PluginSpec {
        path: Some(tenantry_tests::plugin("tiered-policy")),
        grants: Grants::of(&[Capability::Config]),
        config: [
            ("tiers".to_owned(), tiers.to_string()),
            ("tenants".to_owned(), r#"{"t2": "enterprise"}"#.to_owned()),
        ]
        .into(),
        ..PluginSpec::default()
    });
    // Compiled once up front, so the swaps below take milliseconds: well inside the time
    // a ready handle may be kept, so a stale one would be handed out.
    config.engine.cache_dir = Some(root.path().join("compiled"));
    let host = host(config).await;
    let c_policy = tenantry_tests::plugin("c-policy");
    host.swap_file(PluginKind::TenantPolicy, &c_policy)
        .await
        .unwrap();
    host.rollback(PluginKind::TenantPolicy).await.unwrap();
    let dedicated = format!("{dir}/dedicated/t2.db");
    let shared = format!("{dir}/data/acme/t2.db");
    for _ in 0..2 {
        for _ in 0..3 {
            assert_eq!(file_of(&host, "acme", "t2").await, dedicated);
        }
        host.swap_file(PluginKind::TenantPolicy, &c_policy)
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(file_of(&host, "acme", "t2").await, shared);
        }
        host.rollback(PluginKind::TenantPolicy).await.unwrap();
    }
}
