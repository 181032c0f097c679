//! Modes and their helpful errors (asserted by message, like the seed's), configuration
//! from the environment, and the pool limits: the global connection cap across many orgs
//! and the bounded pool registry.

#[path = "support/data.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Sqlite;
use support::*;
use tenantry::{Host, HostConfig};

fn message<T: std::fmt::Debug>(result: Result<T, tenantry::HostError>) -> String {
    result.expect_err("expected an error").to_string()
}

#[tokio::test]
async fn mode_errors_name_the_fix() {
    let root = tempfile::tempdir().unwrap();

    let single = host(sqlite_config(root.path(), false, false)).await;
    assert_eq!(
        message(single.tenant("team-alpha").await),
        "Tenant mode not enabled. Enable: TENANTRY_TENANTS=true, or use host.get()"
    );
    let err = single.org("acme").unwrap_err().to_string();
    assert!(
        err.starts_with("Organization mode not enabled. Enable: TENANTRY_ORGS=true"),
        "{err}"
    );
    assert!(err.ends_with("or use host.get()"), "{err}");

    let orgs_only = host(sqlite_config(root.path(), true, false)).await;
    let err = message(orgs_only.tenant("team-alpha").await);
    assert!(
        err.starts_with("Cannot use host.tenant() when organizations are enabled"),
        "{err}"
    );
    assert!(
        err.contains("use host.org(id).tenant(id), or set TENANTRY_ORGS=false"),
        "{err}"
    );
    assert_eq!(
        message(orgs_only.org("acme").unwrap().tenant("team-alpha").await),
        "Tenant mode not enabled. Enable: TENANTRY_TENANTS=true, or use host.org(id).get()"
    );
    let err = message(orgs_only.get().await);
    assert!(err.contains("use host.org(id).get()"), "{err}");
    assert!(err.contains("or set TENANTRY_ORGS=false"), "{err}");

    let both = host(sqlite_config(root.path(), true, true)).await;
    let err = message(both.tenant("team-alpha").await);
    assert!(err.contains("use host.org(id).tenant(id)"), "{err}");
    assert!(both.org("acme").unwrap().tenant("team-alpha").await.is_ok());

    // Ids are validated before anything else happens.
    let err = message(both.org("acme").unwrap().tenant("Team_Alpha").await);
    assert!(err.contains("tenant id \"Team_Alpha\" is invalid"), "{err}");
    let err = both.org("../etc").unwrap_err().to_string();
    assert!(err.contains("org id \"../etc\" is invalid"), "{err}");
}

#[tokio::test]
async fn database_url_errors_say_what_to_write() {
    let missing = host(HostConfig::default()).await;
    let err = message(missing.get().await);
    assert!(
        err.starts_with("Database URL required. Set DATABASE_URL"),
        "{err}"
    );

    let config = HostConfig {
        database_url: Some("mysql://app:hunter2@db/app".into()),
        ..HostConfig::default()
    };
    let err = message(host(config).await.get().await);
    assert!(
        err.contains("is not usable") && err.contains("postgresql://"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let config = HostConfig {
        database_url: Some("sqlite://data/{org}.db".into()),
        ..HostConfig::default()
    };
    let err = message(host(config).await.get().await);
    assert!(
        err.contains("contains {org} but organizations are not enabled"),
        "{err}"
    );
    assert!(err.contains("TENANTRY_ORGS=true"), "{err}");
}

#[tokio::test]
async fn an_unreachable_database_shows_host_and_port_but_not_the_password() {
    let mut config = HostConfig {
        database_url: Some("postgresql://app:hunter2@127.0.0.1:1/app".into()),
        ..HostConfig::default()
    };
    config.pools.acquire_timeout_ms = 3000;
    let host = host(config).await;
    let err = message(host.get().await);
    assert!(
        err.starts_with("cannot connect to the database at"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let health = host.health().await;
    assert!(!health.healthy);
    let reported = health.error.unwrap();
    assert!(
        reported.contains("127.0.0.1:1") && !reported.contains("hunter2"),
        "{reported}"
    );
}

/// Runs in a child process (see `modes_come_from_the_environment`), where the environment
/// can be set without touching the parallel tests' process.
#[tokio::test]
async fn child_reads_modes_from_the_environment() {
    if std::env::var_os("TENANTRY_MODES_CHILD").is_none() {
        return;
    }
    let host = Host::from_env().await.unwrap();
    assert!(host.config().orgs && host.config().tenants);
    assert_eq!(host.config().pools.max_open_connections, 7);
    let scoped = host
        .org("acme")
        .unwrap()
        .tenant("team-alpha")
        .await
        .unwrap();
    assert!(
        scoped.database().ends_with("/acme/team_alpha.db"),
        "{}",
        scoped.database()
    );
    let err = message(host.tenant("team-alpha").await);
    assert!(err.contains("set TENANTRY_ORGS=false"), "{err}");
    assert_eq!(host.health().await.max_open_connections, 7);
}

#[test]
fn modes_come_from_the_environment() {
    let root = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_modes_from_the_environment",
            "--nocapture",
        ])
        .env("TENANTRY_MODES_CHILD", "1")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/{{org}}.db", root.path().display()),
        )
        .env("TENANTRY_ORGS", "true")
        .env("TENANTRY_TENANTS", "yes")
        .env("TENANTRY_MAX_CONNECTIONS", "7")
        .env("TENANTRY_APPS_DIR", root.path().join("no-apps"))
        .env_remove("TENANTRY_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_global_cap_holds_across_many_sqlite_orgs() {
    const CAP: u32 = 3;
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), true, false);
    config.pools.max_open_connections = CAP;
    config.pools.max_connections = 2;
    let host = host(config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let host = host.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.load(Ordering::Relaxed) {
                max = max.max(host.health().await.open_connections);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            max
        })
    };
    let mut tasks = Vec::new();
    for round in 0..3u64 {
        for org in 0..12 {
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("org{org}");
                let scoped = host.org(&name).unwrap().get().await.unwrap();
                let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
                sqlx::query("INSERT INTO notes (body) VALUES (?)")
                    .bind(&name)
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5 + round)).await;
                let mine: Vec<String> = sqlx::query_scalar("SELECT DISTINCT body FROM notes")
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(mine, [name]);
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let max = sampler.await.unwrap();
    assert!(
        max > 0 && max <= CAP,
        "observed {max} open connections; cap {CAP}"
    );
    assert_eq!(host.list_orgs().await.unwrap().len(), 12);
}

#[tokio::test]
async fn a_checkout_beyond_the_cap_waits_and_then_fails_with_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), true, false);
    config.pools.max_open_connections = 2;
    // Long enough for the checkouts that must succeed on a loaded 2-core machine (opening and
    // migrating a SQLite file), short enough to keep the expected failure quick.
    config.pools.acquire_timeout_ms = 1_500;
    let host = host(config).await;
    let a = host.org("a").unwrap().get().await.unwrap();
    let b = host.org("b").unwrap().get().await.unwrap();
    let c = host.org("c").unwrap().get().await.unwrap();
    let held_a = a.acquire::<Sqlite>().await.unwrap();
    let _held_b = b.acquire::<Sqlite>().await.unwrap();
    let err = c.acquire::<Sqlite>().await.unwrap_err().to_string();
    assert!(
        err.contains("all 2 allowed by max-open-connections (TENANTRY_MAX_CONNECTIONS)"),
        "{err}"
    );
    assert_eq!(host.health().await.open_connections, 2);
    // Released connections stay open (idle) but are reclaimed for another pool.
    drop(held_a);
    let mut conn = c.acquire::<Sqlite>().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
    assert!(host.health().await.open_connections <= 2);
}

#[tokio::test]
async fn the_pool_registry_is_bounded() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), true, false);
    config.pools.max_pools = 2;
    let host = host(config).await;
    for org in 0..8 {
        host.org(format!("org{org}"))
            .unwrap()
            .get()
            .await
            .unwrap()
            .ping()
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let health = host.health().await;
        if health.pools.len() <= 2 && health.open_connections <= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "evicted pools were not closed: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn app_handles_scope_the_same_databases_on_behalf_of_an_app() {
    let root = tempfile::tempdir().unwrap();
    let host = host(sqlite_config(root.path(), true, true)).await;
    assert_eq!(host.apps().await.unwrap(), ["notes"]);
    let notes = host.app("notes").unwrap();
    let scoped = notes.org("acme").unwrap().tenant("team-a").await.unwrap();
    assert_eq!(scoped.app(), Some("notes"));
    assert_eq!(scoped.tenant().map(|t| t.as_str()), Some("team-a"));
    let mut conn = scoped.acquire::<Sqlite>().await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ('from the app')")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    // Same tenant without the app: same file.
    let plain = host.org("acme").unwrap().tenant("team-a").await.unwrap();
    assert_eq!(plain.database(), scoped.database());
    let err = message(notes.get().await);
    assert!(err.contains("use host.org(id).get()"), "{err}");
    let err = host.app("Bad App").unwrap_err().to_string();
    assert!(err.contains("app name \"Bad App\" is invalid"), "{err}");
}
