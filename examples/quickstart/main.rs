//! Quickstart: two orgs, each with tenants, on embedded SQLite — zero setup.
//!
//! * Orgs are found by the bundled `pattern` org-resolver plugin, running sandboxed in
//!   WebAssembly, from the pattern `sqlite://…/{org}.db`.
//! * Each tenant gets a database file of its own, created on first use and migrated with
//!   the `notes` app (`quickstart/apps/notes/migrations`).
//! * Every connection comes from a scoped handle and can see its tenant's rows only —
//!   including for SQL without any `WHERE` clause.
//!
//! Run it with `scripts/quickstart.sh` (builds the plugin first), or, once
//! `target/plugins/pattern.wasm` exists, `cargo run -p tenantry-examples --example quickstart`.

use std::sync::atomic::Ordering;

use sqlx::Sqlite;
use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::{Host, HostConfig, OrgId};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = examples.parent().expect("examples/ is in the workspace");
    let data = root.join("target/quickstart-data");
    // Start from nothing each run, so the output below is what a new user sees.
    let _ = std::fs::remove_dir_all(&data);
    let plugin = root.join("target/plugins/pattern.wasm");
    anyhow::ensure!(
        plugin.is_file(),
        "{} is missing: run scripts/quickstart.sh",
        plugin.display()
    );

    // Equivalent to DATABASE_URL=sqlite://…/{org}.db TENANTRY_ORGS=true TENANTRY_TENANTS=true.
    let mut config = HostConfig {
        database_url: Some(format!("sqlite://{}/{{org}}.db", data.display())),
        orgs: true,
        tenants: true,
        ..HostConfig::default()
    };
    config.migrations.apps_dir = examples.join("quickstart/apps");
    // The pattern plugin reads its template from the host's DATABASE_URL; it may read its
    // config (and nothing else: no files, network, clock or environment).
    config.plugins.org_resolver = Some(PluginSpec {
        path: Some(plugin),
        grants: Grants::of(&[Capability::Config]),
        ..PluginSpec::default()
    });
    let host = Host::load(config).await?;
    let info = host
        .slot(PluginKind::OrgResolver)
        .expect("configured above")
        .current()
        .info()
        .clone();
    println!(
        "org resolver: {} plugin, sha256 {}…, {} bytes",
        info.kind,
        info.short_sha(),
        info.size
    );
    println!("apps: {:?}\n", host.apps().await?);

    let notes = [
        ("acme-corp", "team-alpha", ["ship v2", "hire an SRE"]),
        ("acme-corp", "team-beta", ["fix the build", "lunch"]),
        (
            "globex",
            "team-alpha",
            ["world domination", "buy a volcano"],
        ),
    ];
    for (org, tenant, bodies) in notes {
        let db = host.org(org)?.tenant(tenant).await?;
        let mut conn = db.acquire::<Sqlite>().await?;
        for body in bodies {
            sqlx::query("INSERT INTO notes (body) VALUES (?)")
                .bind(body)
                .execute(&mut *conn)
                .await?;
        }
    }

    for org in host.list_orgs().await? {
        println!("org {org}");
        for tenant in host
            .list_tenants(Some(org.as_str()), |_| true, None)
            .await?
        {
            let db = host.org(&org)?.tenant(&tenant).await?;
            let mut conn = db.acquire::<Sqlite>().await?;
            // No WHERE clause: the connection can only see this tenant's file.
            let rows: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
                .fetch_all(&mut *conn)
                .await?;
            println!(
                "  {tenant:<11} ({} isolation) sees {rows:?}",
                db.isolation()
            );
        }
    }

    // SQL cannot reach another tenant's file either: ATTACH is disabled.
    let alpha = host.org("acme-corp")?.tenant("team-alpha").await?;
    let mut conn = alpha.acquire::<Sqlite>().await?;
    let beta_file = data.join("acme_corp/team_beta.db");
    let attach = format!("ATTACH DATABASE '{}' AS beta", beta_file.display());
    let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(attach))
        .execute(&mut *conn)
        .await
        .expect_err("ATTACH is disabled on tenant connections");
    println!("\nteam-alpha trying to ATTACH team-beta's file: refused ({refused})");
    drop(conn);

    // The seed's helpful errors, and ids validated before they reach a plugin, a URL or a path.
    println!(
        "\nhost.tenant(\"x\") with orgs on: {}",
        host.tenant("x").await.unwrap_err()
    );
    for bad in ["../etc/passwd", "Acme"] {
        println!("refused {bad:?}: {}", OrgId::new(bad).unwrap_err());
    }

    host.delete_tenant("team-beta", Some("acme-corp"), true)
        .await?;
    let left: Vec<String> = host
        .list_tenants(Some("acme-corp"), |_| true, None)
        .await?
        .iter()
        .map(|t| t.to_string())
        .collect();
    println!("\ndeleted team-beta (and its file); acme-corp's tenants now: {left:?}");
    let health = host.health().await;
    println!(
        "health: healthy={} mode={:?} backend={:?} open connections {}/{} in {} pools",
        health.healthy,
        health.mode,
        health.backend,
        health.open_connections,
        health.max_open_connections,
        health.pools.len()
    );
    let stats = host.runtime().stats();
    println!(
        "plugin calls: {} ({} failed), compilations: {}",
        stats.calls.load(Ordering::Relaxed),
        stats.call_failures.load(Ordering::Relaxed),
        stats.compilations.load(Ordering::Relaxed)
    );
    Ok(())
}
