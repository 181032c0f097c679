//! Fleet migrations (`migrate::run_with`, `tenantry migrate`): 50 org databases on SQLite and
//! 50 on PostgreSQL, one of which already holds a table that its second migration creates.
//! That org is reported failed (naming the app and the database) after its first migration
//! applied, every other org is migrated, a second run has nothing left to do but the failed
//! org, and once the conflict is removed a third run completes it. A dry run first reports
//! every version pending and changes nothing; no more than `concurrency` scopes ever run at
//! once.

#[path = "support/data.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;
use support::*;
use tenantry::migrate::{AppOutcome, FleetReport, MigrateEvent, MigrateOptions};
use tenantry::{Host, HostConfig, OrgId};

const ORGS: usize = 50;
/// The org whose database already has a `labels` table, so migration 2 fails there.
const BROKEN: &str = "o17";
const CONCURRENCY: usize = 4;

fn org_ids() -> Vec<String> {
    (0..ORGS).map(|i| format!("o{i:02}")).collect()
}

/// The `notes` app: three migrations, the second creating `labels`.
fn write_app(apps: &Path, postgres: bool) {
    let dir = apps.join("notes/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    let (id, int) = if postgres {
        ("bigserial PRIMARY KEY", "bigint")
    } else {
        ("INTEGER PRIMARY KEY", "INTEGER")
    };
    std::fs::write(
        dir.join("0001_notes.sql"),
        format!("CREATE TABLE notes (id {id}, body TEXT NOT NULL);"),
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_labels.sql"),
        format!("CREATE TABLE labels (id {id}, name TEXT NOT NULL);"),
    )
    .unwrap();
    std::fs::write(
        dir.join("0003_note_labels.sql"),
        format!("ALTER TABLE notes ADD COLUMN label_id {int} REFERENCES labels (id);"),
    )
    .unwrap();
}

/// Runs `run_with`, recording the most scopes ever in flight between `Started` and
/// `Finished`.
async fn migrate(host: &Host, options: &MigrateOptions) -> (FleetReport, usize) {
    let running = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let discovered = AtomicUsize::new(usize::MAX);
    let report = tenantry::migrate::run_with(host, options, |event| match event {
        MigrateEvent::Discovered { scopes } => discovered.store(scopes, Ordering::SeqCst),
        MigrateEvent::Started { .. } => {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
        }
        MigrateEvent::Finished(_) => {
            running.fetch_sub(1, Ordering::SeqCst);
            finished.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    })
    .await
    .expect("the run starts");
    assert_eq!(running.load(Ordering::SeqCst), 0, "every start finished");
    assert_eq!(finished.load(Ordering::SeqCst), report.scopes.len());
    assert_eq!(discovered.load(Ordering::SeqCst), report.scopes.len());
    (report, most.load(Ordering::SeqCst))
}

fn outcome<'r>(report: &'r FleetReport, org: &str, tenant: Option<&str>) -> &'r AppOutcome {
    let scope = report
        .scope(Some(org), tenant)
        .unwrap_or_else(|| panic!("{org}/{tenant:?} not in the report"));
    assert_eq!(scope.apps.len(), 1, "{scope:?}");
    assert_eq!(scope.apps[0].app, "notes");
    &scope.apps[0].outcome
}

/// Every scope but the broken org's has `expected`.
fn assert_others(report: &FleetReport, expected: &AppOutcome) {
    for scope in &report.scopes {
        if scope.org.as_ref().map(OrgId::as_str) == Some(BROKEN) && scope.tenant.is_none() {
            continue;
        }
        assert!(scope.error.is_none(), "{scope:?}");
        assert_eq!(&scope.apps[0].outcome, expected, "{scope:?}");
    }
}

/// The broken org failed after applying `applied`, with a reason naming the app, the
/// database and the conflict.
fn assert_broken(report: &FleetReport, applied: &[i64], database: &str) {
    match outcome(report, BROKEN, None) {
        AppOutcome::Failed { applied: a, reason } => {
            assert_eq!(a, applied, "{reason}");
            assert!(
                reason.contains("app `notes`")
                    && reason.contains(database)
                    && reason.contains("migration 2")
                    && reason.contains("labels"),
                "{reason}"
            );
        }
        other => panic!("{BROKEN}: {other:?}"),
    }
}

async fn sqlite_conn(path: &Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn sqlite_tables(path: &Path) -> Vec<String> {
    let mut conn = sqlite_conn(path).await;
    let names =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fleet_continues_past_a_failure_and_reruns_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(root.path(), true, true);
    // The orgs exist before the app does.
    let apps = root.path().join("fleet-apps");
    config.migrations.apps_dir = apps.clone();
    let host = host(config).await;
    for org in org_ids() {
        host.create_org(&org).await.unwrap();
    }
    for org in ["o00", "o01"] {
        host.create_tenant("t1", Some(org)).await.unwrap();
    }
    let data = root.path().join("data");
    let mut conn = sqlite_conn(&data.join(format!("{BROKEN}.db"))).await;
    sqlx::query("CREATE TABLE labels (legacy TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    write_app(&apps, false);
    host.clear_cache().await;
    let scopes = ORGS + 2;

    // Dry run: everything pending, nothing written (not even the bookkeeping table).
    let before: Vec<Vec<String>> = all_tables(&data).await;
    let dry = MigrateOptions::default()
        .concurrency(CONCURRENCY)
        .dry_run(true);
    let (report, most) = migrate(&host, &dry).await;
    assert_eq!(report.scopes.len(), scopes);
    assert!(report.dry_run && !report.failed());
    assert!(most <= CONCURRENCY, "{most} scopes ran at once");
    for scope in &report.scopes {
        assert_eq!(
            scope.apps[0].outcome,
            AppOutcome::Pending {
                versions: vec![1, 2, 3]
            },
            "{scope:?}"
        );
    }
    assert_eq!(report.summary().pending, scopes);
    assert_eq!(
        all_tables(&data).await,
        before,
        "the dry run changed a file"
    );

    // First run: all migrated but the broken org, which keeps migration 1.
    let options = MigrateOptions::default().concurrency(CONCURRENCY);
    let (report, most) = migrate(&host, &options).await;
    assert_eq!(report.scopes.len(), scopes);
    assert!(
        most <= CONCURRENCY,
        "{most} scopes ran at once, more than {CONCURRENCY}"
    );
    assert_eq!(most, CONCURRENCY, "the run never used its concurrency");
    assert!(report.failed());
    assert_broken(&report, &[1], &format!("{BROKEN}.db"));
    assert_others(
        &report,
        &AppOutcome::Applied {
            versions: vec![1, 2, 3],
        },
    );
    let summary = report.summary();
    assert_eq!(
        (summary.applied, summary.current, summary.failed),
        (scopes - 1, 0, 1)
    );
    let mut conn = sqlite_conn(&data.join(format!("{BROKEN}.db"))).await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _tenantry_migrations_notes ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1], "migration 2 rolled back, 1 kept");
    let legacy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pragma_table_info('labels') WHERE name = 'legacy'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(legacy, 1, "the conflicting table is untouched");
    conn.close().await.unwrap();

    // Second run: nothing left but the broken org. `run` reports it as an error.
    let (report, _) = migrate(&host, &options).await;
    assert_broken(&report, &[], &format!("{BROKEN}.db"));
    assert_others(&report, &AppOutcome::AlreadyCurrent);
    let err = tenantry::migrate::run(&host).await.unwrap_err().to_string();
    assert!(
        err.contains("app `notes`") && err.contains(&format!("{BROKEN}.db")),
        "{err}"
    );

    // Fixed: the third run completes the broken org with migrations 2 and 3.
    let mut conn = sqlite_conn(&data.join(format!("{BROKEN}.db"))).await;
    sqlx::query("DROP TABLE labels")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (report, _) = migrate(&host, &options).await;
    assert!(!report.failed(), "{report:?}");
    assert_eq!(
        outcome(&report, BROKEN, None),
        &AppOutcome::Applied {
            versions: vec![2, 3]
        }
    );
    assert_others(&report, &AppOutcome::AlreadyCurrent);
    let report = tenantry::migrate::run(&host).await.unwrap();
    assert_eq!(report.scopes.len(), scopes);

    // An org whose tenants cannot be listed: its own database is still migrated, the scope
    // reports why its tenants were not, and `run` fails.
    std::fs::write(data.join("o05"), "not a directory").unwrap();
    let (report, _) = migrate(&host, &options).await;
    let o05 = report.scope(Some("o05"), None).unwrap();
    assert_eq!(o05.apps[0].outcome, AppOutcome::AlreadyCurrent);
    let error = o05.error.as_deref().unwrap_or_default();
    assert!(error.contains("its tenants were not migrated"), "{o05:?}");
    assert_eq!(report.summary().failed, 1);
    assert!(tenantry::migrate::run(&host).await.is_err());
    std::fs::remove_file(data.join("o05")).unwrap();

    // Filters: one org, an unknown app.
    let one = MigrateOptions::default()
        .orgs([OrgId::new("o03").unwrap()])
        .dry_run(true);
    let (report, _) = migrate(&host, &one).await;
    assert_eq!(report.scopes.len(), 1);
    assert_eq!(outcome(&report, "o03", None), &AppOutcome::AlreadyCurrent);
    let err =
        tenantry::migrate::run_with(&host, &MigrateOptions::default().apps(["billing"]), |_| {})
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("app `billing`"), "{err}");
}

/// Table names of every SQLite file under `dir` (recursively), in path order.
async fn all_tables(dir: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "db") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let mut tables = sqlite_tables(&f).await;
        tables.insert(0, f.display().to_string());
        out.push(tables);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fleet_continues_past_a_failure_and_reruns_cleanly() {
    let pg = tenantry_tests::postgres();
    let prefix = unique("fleet");
    let root = tempfile::tempdir().unwrap();
    let mut config: HostConfig = postgres_config(
        &with_database(&pg.app_url, &format!("{prefix}_{{org}}")),
        false,
    );
    config.orgs = true;
    config.admin_database_url = Some(pg.admin_url.clone());
    let apps = root.path().join("apps");
    config.migrations.apps_dir = apps.clone();
    let host = host(config).await;
    for org in org_ids() {
        host.create_org(&org).await.unwrap();
    }
    let broken_db = format!("{prefix}_{BROKEN}");
    let broken_url = with_database(&pg.app_url, &broken_db);
    let mut conn = sqlx::PgConnection::connect(&broken_url).await.unwrap();
    sqlx::query("CREATE TABLE labels (legacy text)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    write_app(&apps, true);
    host.clear_cache().await;

    let dry = MigrateOptions::default()
        .concurrency(CONCURRENCY)
        .dry_run(true);
    let (report, most) = migrate(&host, &dry).await;
    assert_eq!(report.scopes.len(), ORGS);
    assert!(most <= CONCURRENCY, "{most} scopes ran at once");
    assert_eq!(report.summary().pending, ORGS);
    for scope in &report.scopes {
        assert_eq!(
            scope.apps[0].outcome,
            AppOutcome::Pending {
                versions: vec![1, 2, 3]
            }
        );
        assert!(!scope.database.contains(&password(&pg.app_url)));
    }
    for org in org_ids() {
        let expected: &[&str] = if org == BROKEN { &["labels"] } else { &[] };
        assert_eq!(
            pg_tables(&format!("{prefix}_{org}")).await,
            expected,
            "the dry run wrote to {org}"
        );
    }

    let options = MigrateOptions::default().concurrency(CONCURRENCY);
    let (report, most) = migrate(&host, &options).await;
    assert!(
        most <= CONCURRENCY,
        "{most} scopes ran at once, more than {CONCURRENCY}"
    );
    assert_eq!(most, CONCURRENCY, "the run never used its concurrency");
    assert_broken(&report, &[1], &broken_db);
    assert_others(
        &report,
        &AppOutcome::Applied {
            versions: vec![1, 2, 3],
        },
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains(&password(&pg.app_url)), "password in report");
    assert_eq!(
        pg_tables(&format!("{prefix}_o00")).await,
        ["_tenantry_migrations_notes", "labels", "notes"]
    );
    assert_eq!(
        pg_tables(&broken_db).await,
        ["_tenantry_migrations_notes", "labels", "notes"],
        "migration 1 kept, 2 rolled back"
    );

    let (report, _) = migrate(&host, &options).await;
    assert_broken(&report, &[], &broken_db);
    assert_others(&report, &AppOutcome::AlreadyCurrent);

    let mut conn = sqlx::PgConnection::connect(&broken_url).await.unwrap();
    sqlx::query("DROP TABLE labels")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (report, _) = migrate(&host, &options).await;
    assert!(!report.failed(), "{report:?}");
    assert_eq!(
        outcome(&report, BROKEN, None),
        &AppOutcome::Applied {
            versions: vec![2, 3]
        }
    );
    assert_others(&report, &AppOutcome::AlreadyCurrent);
    let mut conn = sqlx::PgConnection::connect(&broken_url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _tenantry_migrations_notes ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    conn.close().await.unwrap();

    host.clear_cache().await;
    for org in org_ids() {
        drop_pg_database(&format!("{prefix}_{org}")).await;
    }
}

/// The tables of database `db` of the test PostgreSQL's `public` schema.
async fn pg_tables(db: &str) -> Vec<String> {
    let pg = tenantry_tests::postgres();
    let mut conn = sqlx::PgConnection::connect(&with_database(&pg.app_url, db))
        .await
        .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    names
}

/// Schema tenants keep their own bookkeeping table in their schema: the dry run and the run
/// read it through the tenant's `search_path`, so a tenant created after a migration was added
/// is already current while an older one is not.
#[tokio::test]
async fn postgres_schema_tenants_are_migrated_in_their_own_schema() {
    use std::collections::BTreeMap;
    use tenantry::plugin::{Capability, Grants};

    let db = unique("fleet_schema");
    let url = pg_database(&db, "").await;
    let root = tempfile::tempdir().unwrap();
    let mut config = postgres_config(&url, true);
    let apps = apps_dir(root.path(), &notes_postgres());
    config.migrations.apps_dir = apps.clone();
    config.plugins.tenant_policy = Some(tenantry::PluginSpec {
        path: Some(tenantry_tests::plugin("tiered-policy")),
        grants: Grants::of(&[Capability::Config]),
        config: BTreeMap::from([
            (
                "tiers".to_owned(),
                r#"{"pro": {"isolation": "schema", "schema": "t_{tenant}"}, "standard": {"isolation": "row"}}"#
                    .to_owned(),
            ),
            ("tenants".to_owned(), r#"{"sa": "pro", "sb": "pro"}"#.to_owned()),
        ]),
        ..tenantry::PluginSpec::default()
    });
    let host = host(config).await;
    host.create_tenant("sa", None).await.unwrap();
    host.create_tenant("row-tenant", None).await.unwrap();
    std::fs::write(
        apps.join("notes/migrations/0002_pinned.sql"),
        "ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;",
    )
    .unwrap();
    host.clear_cache().await;
    host.create_tenant("sb", None).await.unwrap(); // migrated with 1 and 2

    let (report, _) = migrate(&host, &MigrateOptions::default().dry_run(true)).await;
    let scopes: Vec<(Option<String>, AppOutcome)> = report
        .scopes
        .iter()
        .map(|s| {
            (
                s.tenant.as_ref().map(|t| t.to_string()),
                s.apps[0].outcome.clone(),
            )
        })
        .collect();
    let pending = AppOutcome::Pending { versions: vec![2] };
    assert_eq!(
        scopes,
        [
            // The shared database was never migrated: schema tenants were, in their schemas.
            (
                None,
                AppOutcome::Pending {
                    versions: vec![1, 2]
                }
            ),
            (Some("sa".into()), pending),
            (Some("sb".into()), AppOutcome::AlreadyCurrent),
        ],
        "the row tenant has no scope of its own"
    );
    assert!(
        report.scopes[1].database.contains("(schema t_sa)"),
        "{:?}",
        report.scopes[1]
    );

    let (report, _) = migrate(&host, &MigrateOptions::default()).await;
    assert!(!report.failed(), "{report:?}");
    let applied = AppOutcome::Applied { versions: vec![2] };
    assert_eq!(
        report
            .scopes
            .iter()
            .map(|s| s.apps[0].outcome.clone())
            .collect::<Vec<_>>(),
        [
            AppOutcome::Applied {
                versions: vec![1, 2]
            },
            applied,
            AppOutcome::AlreadyCurrent
        ]
    );
    for tenant in ["sa", "sb", "row-tenant"] {
        let scoped = host.tenant(tenant).await.unwrap();
        let mut conn = scoped.acquire::<sqlx::Postgres>().await.unwrap();
        sqlx::query("INSERT INTO notes (body, pinned) VALUES ('x', true)")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    host.clear_cache().await;
    drop_pg_database(&db).await;
}
