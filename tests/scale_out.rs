//! Orgs spread over several PostgreSQL servers (docs/scale-out.md, "What was simulated"):
//! the test server plus two more started here with `scripts/postgres.sh`, 30 orgs placed on
//! them by the bundled `directory` resolver. One `migrate::run_with` reaches every org on
//! every server, and each org's queries land on its own server (`inet_server_port()`).

#[path = "support/data.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use sqlx::Connection;
use support::*;
use tenantry::migrate::{AppOutcome, MigrateOptions};
use tenantry::plugin::{Capability, Grants};
use tenantry::{Host, HostConfig, PluginSpec};

const ORGS: usize = 30;

/// A PostgreSQL server: the test one, or one this test started (stopped on drop).
struct Server {
    admin_url: String,
    app_url: String,
    port: u16,
    dir: Option<PathBuf>,
}

impl Server {
    fn test_server() -> Self {
        let pg = tenantry_tests::postgres();
        let port = std::env::var("TENANTRY_TEST_PG_PORT")
            .expect("TENANTRY_TEST_PG_PORT")
            .parse()
            .unwrap();
        Self {
            admin_url: pg.admin_url,
            app_url: pg.app_url,
            port,
            dir: None,
        }
    }

    /// Start another server on a free loopback port with `scripts/postgres.sh`.
    fn start(dir: PathBuf) -> Self {
        let script = tenantry_tests::workspace_root().join("scripts/postgres.sh");
        let out = std::process::Command::new(script)
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postgres.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars: BTreeMap<String, String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        Self {
            admin_url: vars["TENANTRY_TEST_PG_ADMIN_URL"].clone(),
            app_url: vars["TENANTRY_TEST_PG_APP_URL"].clone(),
            port: vars["TENANTRY_TEST_PG_PORT"].parse().unwrap(),
            dir: Some(dir),
        }
    }

    async fn admin(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let script = tenantry_tests::workspace_root().join("scripts/postgres.sh");
            let _ = std::process::Command::new(script)
                .arg("stop")
                .arg(dir)
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_on_three_servers_are_migrated_and_routed_to_their_own_server() {
    let scratch = tempfile::tempdir().unwrap();
    let servers = [
        Server::test_server(),
        Server::start(scratch.path().join("pg-b")),
        Server::start(scratch.path().join("pg-c")),
    ];
    let prefix = unique("shard");
    let mut placement = BTreeMap::new();
    let mut directory = serde_json::Map::new();
    for i in 0..ORGS {
        let org = format!("s{i:02}");
        let server = &servers[i % servers.len()];
        let db = format!("{prefix}_{org}");
        server
            .admin(&format!("CREATE DATABASE \"{db}\" OWNER tenantry_app"))
            .await;
        directory.insert(org.clone(), with_database(&server.app_url, &db).into());
        placement.insert(org, server.port);
    }

    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("apps/notes/migrations");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::write(
        apps.join("0001_notes.sql"),
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);",
    )
    .unwrap();
    let mut config = HostConfig {
        orgs: true,
        ..HostConfig::default()
    };
    config.migrations.apps_dir = root.path().join("apps");
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config, Capability::Log]),
        config: [(
            "directory".to_owned(),
            serde_json::Value::Object(directory).to_string(),
        )]
        .into(),
        ..PluginSpec::default()
    };
    let host: Host = Host::builder()
        .config(config)
        .org_resolver(tenantry_tests::plugin("directory"), spec)
        .build()
        .await
        .unwrap();
    assert_eq!(host.list_orgs().await.unwrap().len(), ORGS);

    let options = MigrateOptions::default().concurrency(6);
    let report = tenantry::migrate::run_with(&host, &options, |_| {})
        .await
        .unwrap();
    assert!(!report.failed(), "{report:?}");
    assert_eq!(report.scopes.len(), ORGS);
    let mut per_server: BTreeMap<u16, usize> = BTreeMap::new();
    for scope in &report.scopes {
        assert_eq!(
            scope.apps[0].outcome,
            AppOutcome::Applied { versions: vec![1] }
        );
        let org = scope.org.as_ref().unwrap().as_str();
        let port = placement[org];
        assert!(
            scope.database.contains(&format!(":{port}/")),
            "{org} reported on {}",
            scope.database
        );
        *per_server.entry(port).or_default() += 1;
    }
    assert_eq!(per_server.len(), 3);
    assert!(
        per_server.values().all(|&n| n == ORGS / 3),
        "{per_server:?}"
    );

    // Every org's queries reach its own server, and its migrated table is there.
    for (org, port) in &placement {
        let scoped = host.org(org).unwrap().get().await.unwrap();
        let mut conn = scoped.acquire::<sqlx::Postgres>().await.unwrap();
        let (served_by, db): (i32, String) =
            sqlx::query_as("SELECT inet_server_port(), current_database()::text")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(served_by, i32::from(*port), "{org}");
        assert_eq!(db, format!("{prefix}_{org}"));
        sqlx::query("INSERT INTO notes (body) VALUES ($1)")
            .bind(org)
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    // A second run finds every server current.
    let report = tenantry::migrate::run_with(&host, &options, |_| {})
        .await
        .unwrap();
    assert_eq!(report.summary().current, ORGS);

    host.clear_cache().await;
    for (i, org) in placement.keys().enumerate() {
        let server = &servers[i % servers.len()];
        server
            .admin(&format!(
                "DROP DATABASE IF EXISTS \"{prefix}_{org}\" WITH (FORCE)"
            ))
            .await;
    }
}
