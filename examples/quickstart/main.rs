//! Quickstart: two orgs, each in its own embedded SQLite database, found by the bundled
//! `pattern` org-resolver plugin running sandboxed in WebAssembly.
//!
//! Run it with `scripts/quickstart.sh` (builds the plugin first), or, once
//! `target/plugins/pattern.wasm` exists, `cargo run -p tenantry-examples --example quickstart`.

use std::str::FromStr;
use std::sync::atomic::Ordering;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::{Host, OrgId};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let data = root.join("target/quickstart-data");
    std::fs::create_dir_all(&data)?;
    let plugin = root.join("target/plugins/pattern.wasm");
    anyhow::ensure!(
        plugin.is_file(),
        "{} is missing: run scripts/quickstart.sh",
        plugin.display()
    );

    // The pattern plugin reads its template from the host's DATABASE_URL; it may read its
    // config (and nothing else: no files, network, clock or environment).
    let host = Host::builder()
        .database_url(format!("sqlite://{}/{{org}}.db", data.display()))
        .orgs(true)
        .org_resolver(
            &plugin,
            PluginSpec {
                grants: Grants::of(&[Capability::Config]),
                ..PluginSpec::default()
            },
        )
        .build()
        .await?;
    let info = host
        .slot(PluginKind::OrgResolver)
        .unwrap()
        .current()
        .info()
        .clone();
    println!(
        "org resolver: {} plugin, sha256 {}…, {} bytes\n",
        info.kind,
        info.short_sha(),
        info.size
    );

    for (org, notes) in [
        ("acme-corp", ["ship v2", "hire sre"]),
        ("globex", ["world domination", "lunch"]),
    ] {
        let org = OrgId::new(org)?;
        let target = host.resolve_org(&org).await?;
        let options = SqliteConnectOptions::from_str(&target.url)?.create_if_missing(true);
        let pool = SqlitePool::connect_with(options)
            .await
            .with_context(|| target.redacted_url())?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("DELETE FROM notes").execute(&pool).await?;
        for body in notes {
            sqlx::query("INSERT INTO notes (body) VALUES (?)")
                .bind(body)
                .execute(&pool)
                .await?;
        }
        let rows: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
            .fetch_all(&pool)
            .await?;
        println!("{:<10} -> {}", org.as_str(), target.redacted_url());
        println!("{:<10}    sees only its own notes: {rows:?}", "");
        pool.close().await;
    }

    // Ids are validated before they reach a plugin, a URL or a path.
    for bad in ["../etc/passwd", "Acme"] {
        println!("\nrefused {bad:?}: {}", OrgId::new(bad).unwrap_err());
    }
    let stats = host.runtime().stats();
    println!(
        "\nplugin calls: {} ({} failed), compilations: {}",
        stats.calls.load(Ordering::Relaxed),
        stats.call_failures.load(Ordering::Relaxed),
        stats.compilations.load(Ordering::Relaxed)
    );
    Ok(())
}
