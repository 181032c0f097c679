//! `tenantry plugin check` and `tenantry resolve`, run as a user would: by output and exit code.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plugin(name: &str) -> PathBuf {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} missing: run scripts/build-plugins.sh",
        p.display()
    );
    p
}

fn tenantry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TENANTRY_CONFIG")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("tenantry runs");
    capture(args, &out);
    out
}

/// The server's log: captured at debug level under R7's capture directory, else dropped.
fn server_log() -> std::process::Stdio {
    let Some(dir) = std::env::var_os("TENANTRY_TEST_CAPTURE_DIR") else {
        return std::process::Stdio::null();
    };
    let _ = std::fs::create_dir_all(&dir);
    let path = PathBuf::from(dir).join(format!("cli-serve.{}.log", std::process::id()));
    match std::fs::File::create(path) {
        Ok(f) => f.into(),
        Err(_) => std::process::Stdio::null(),
    }
}

/// R7: with `TENANTRY_TEST_CAPTURE_DIR` set (by `scripts/test.sh`), append every CLI run's
/// output there so `scripts/check-secrets.sh` can assert no test password was printed.
fn capture(args: &[&str], out: &Output) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("TENANTRY_TEST_CAPTURE_DIR") else {
        return;
    };
    let _ = std::fs::create_dir_all(&dir);
    let path = PathBuf::from(dir).join(format!("cli.{}.out", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let (stdout, stderr) = text(out);
        let _ = writeln!(f, "--- tenantry {}\n{stdout}{stderr}", args.join(" "));
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_reports_world_version_sha_and_redacted_answer() {
    let pattern = plugin("pattern");
    let out = tenantry(
        &[
            "plugin",
            "check",
            pattern.to_str().unwrap(),
            "--sample",
            "acme-corp",
        ],
        &[("DATABASE_URL", "postgresql://app:pw@db:5432/{org}_database")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("world    org-resolver (exports tenantry:plugin/resolver@0.1.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("version  0.1.0"), "{stdout}");
    let sha = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256   "))
        .expect("sha256 line");
    assert_eq!(sha.len(), 64);
    assert!(
        stdout.contains("postgresql://app:***@db:5432/acme_corp_database"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(":pw@") && !stderr.contains(":pw@"),
        "password leaked"
    );
}

#[test]
fn check_json_output_parses() {
    let out = tenantry(
        &[
            "plugin",
            "check",
            plugin("pattern").to_str().unwrap(),
            "--sample",
            "acme",
            "--sample",
            "Bad_Id",
            "--json",
        ],
        &[("DATABASE_URL", "sqlite://data/{org}.db")],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["world"], "org-resolver");
    assert_eq!(v["samples"]["acme"]["ok"]["url"], "sqlite://data/acme.db");
    assert!(
        v["samples"]["Bad_Id"]["refused"]
            .as_str()
            .unwrap()
            .starts_with("invalid"),
        "{v}"
    );
}

#[test]
fn check_exits_nonzero_with_a_clear_message_for_each_bad_input() {
    let fixtures = root().join("tests/fixtures");
    let readme = root().join("README.md");
    let cases: [(PathBuf, i32, &str); 5] = [
        (root().join("no/such/file.wasm"), 2, "is not a file"),
        (readme, 1, "is not WebAssembly"),
        (
            fixtures.join("core-module.wat"),
            1,
            "is a core WebAssembly module, not a component",
        ),
        (
            fixtures.join("no-world.wat"),
            1,
            "implements no tenantry:plugin world",
        ),
        (
            fixtures.join("future-version.wat"),
            1,
            "version 0.2.0, but this host supports version 0.1.0",
        ),
    ];
    for (path, code, needle) in cases {
        let out = tenantry(&["plugin", "check", path.to_str().unwrap()], &[]);
        let (_, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}: {stderr}",
            path.display()
        );
        assert!(stderr.contains(needle), "{}: {stderr}", path.display());
    }
}

#[test]
fn check_fails_when_a_sample_breaks_the_sandbox() {
    let out = tenantry(
        &[
            "plugin",
            "check",
            plugin("test-hostile").to_str().unwrap(),
            "--sample",
            "loop",
            "--fuel",
            "1000000",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("FAILED: plugin test-hostile")
            && stdout.contains("ran out of fuel after 1000000"),
        "{stdout}"
    );
    assert!(stderr.contains("failed on at least one sample"), "{stderr}");
}

#[test]
fn check_of_a_tenant_policy() {
    let out = tenantry(
        &[
            "plugin",
            "check",
            plugin("tiered-policy").to_str().unwrap(),
            "--sample",
            "acme/t1",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("world    tenant-policy (exports tenantry:plugin/policy@0.1.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("sample   acme/t1 -> ok"), "{stdout}");
}

#[test]
fn resolve_uses_the_pattern_natively_and_refuses_bad_ids() {
    let env = [
        ("DATABASE_URL", "postgresql://app:s3cret@db/{org}_db"),
        ("TENANTRY_ORGS", "true"),
    ];
    let out = tenantry(&["resolve", "acme-corp"], &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "acme-corp -> postgresql://app:***@db/acme_corp_db"
    );
    let out = tenantry(&["resolve", "../etc"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("org id \"../etc\" is invalid"));
    let out = tenantry(&["resolve", "acme"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("no org resolver: set DATABASE_URL"),
        "{:?}",
        text(&out)
    );
}

/// A `tenantry` run against an embedded SQLite deployment in `dir`.
fn sqlite_cli(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let url = format!("sqlite://{}/{{org}}.db", dir.display());
    let out = tenantry(
        args,
        &[
            ("DATABASE_URL", &url),
            ("TENANTRY_ORGS", "true"),
            ("TENANTRY_TENANTS", "true"),
        ],
    );
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

#[test]
fn orgs_and_tenants_end_to_end_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| sqlite_cli(dir.path(), args);
    let (code, out, err) = run(&["orgs", "create", "acme", "globex"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("created 2 of 2"), "{out}");
    let (code, out, _) = run(&["--json", "orgs", "list"]);
    assert_eq!(code, Some(0));
    let mut listed: Vec<String> = serde_json::from_str(&out).unwrap();
    listed.sort();
    assert_eq!(listed, ["acme", "globex"]);
    assert_eq!(run(&["orgs", "exists", "acme"]).0, Some(0));
    assert_eq!(run(&["orgs", "exists", "initech"]).0, Some(1));

    let (code, out, err) = run(&["tenants", "create", "t1", "--org", "globex"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = run(&["--json", "tenants", "list", "--org", "globex"]);
    assert_eq!(serde_json::from_str::<Vec<String>>(&out).unwrap(), ["t1"]);
    assert_eq!(
        run(&["tenants", "exists", "t1", "--org", "globex"]).0,
        Some(0)
    );
    let (code, _, err) = run(&["tenants", "delete", "t1", "--org", "globex"]);
    assert_eq!(code, Some(1), "deleting without --yes must refuse");
    assert!(
        err.contains("--yes") || err.to_lowercase().contains("confirm"),
        "{err}"
    );
    assert_eq!(
        run(&["tenants", "delete", "t1", "--org", "globex", "--yes"]).0,
        Some(0)
    );
    assert_eq!(
        run(&["tenants", "exists", "t1", "--org", "globex"]).0,
        Some(1)
    );

    assert_eq!(run(&["orgs", "delete", "acme"]).0, Some(1));
    assert_eq!(run(&["orgs", "delete", "acme", "--yes"]).0, Some(0));
    assert_eq!(run(&["orgs", "exists", "acme"]).0, Some(1));

    let (code, out, err) = run(&["--json", "health"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let health: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["orgs"], true);

    let (code, out, _) = run(&["--json", "resolve", "globex", "--tenant", "t2"]);
    assert_eq!(code, Some(0), "{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["source"], "pattern");
    assert_eq!(r["tenant"]["id"], "t2");

    let (code, out, _) = run(&["orgs", "preload", "a1", "a2", "a3"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("resolved 3 of 3"), "{out}");
}

#[test]
fn rls_sql_and_usage_errors() {
    let out = tenantry(&["rls", "enable", "notes"], &[]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("ENABLE ROW LEVEL SECURITY") && stdout.contains("FORCE ROW LEVEL SECURITY"),
        "{stdout}"
    );
    assert!(stdout.contains("tenantry.tenant_id"), "{stdout}");
    let out = tenantry(&["rls", "enable", "notes; drop table x"], &[]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    for args in [&["orgs"][..], &["nonsense"], &["orgs", "delete"]] {
        assert_eq!(tenantry(args, &[]).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn plugin_swap_reports_an_unreachable_admin_server() {
    let out = tenantry(
        &[
            "plugin",
            "swap",
            "org-resolver",
            plugin("pattern").to_str().unwrap(),
            "--admin",
            "127.0.0.1:9",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("cannot reach the admin server"),
        "{:?}",
        text(&out)
    );
}

/// `tenantry serve` on a free loopback port, over SQLite orgs in `dir` resolved by the
/// `directory` plugin (acme only), with `extra` appended to its config file and `env` set;
/// returned once it accepts connections, killed when dropped (also when a test panics).
struct Server {
    child: std::process::Child,
    listen: String,
}

impl Server {
    fn start(dir: &std::path::Path, extra: &str, env: &[(&str, &str)]) -> Server {
        let config = dir.join("tenantry.toml");
        std::fs::write(
            &config,
            format!(
                "database-url = \"sqlite://{0}/{{org}}.db\"\norgs = true\n[plugins.org-resolver]\npath = \"{1}\"\ngrants = [\"config\"]\n\
                 [plugins.org-resolver.config]\ndirectory = '{{\"acme\": \"sqlite://{0}/acme.db\"}}'\n{extra}",
                dir.display(),
                plugin("directory").display()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry"));
        cmd.args([
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--listen",
            &listen,
        ])
        .env("TENANTRY_ADMIN_TOKEN", "cli-token")
        .env("TENANTRY_LOG", "debug")
        .env_remove("DATABASE_URL")
        .stderr(server_log());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let server = Server {
            child: cmd.spawn().unwrap(),
            listen,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&server.listen).is_err() {
            assert!(std::time::Instant::now() < deadline, "server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_then_swap_and_rollback_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "", &[]);
    let listen = server.listen.clone();
    let env = [("TENANTRY_ADMIN_TOKEN", "cli-token")];
    let swap = tenantry(
        &[
            "--json",
            "plugin",
            "swap",
            "org-resolver",
            plugin("pattern").to_str().unwrap(),
            "--admin",
            &listen,
        ],
        &env,
    );
    let (stdout, stderr) = text(&swap);
    assert!(swap.status.success(), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["generation"], 1);
    let bad = tenantry(
        &[
            "plugin",
            "swap",
            "org-resolver",
            root()
                .join("tests/fixtures/core-module.wat")
                .to_str()
                .unwrap(),
            "--admin",
            &listen,
        ],
        &env,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).1.contains("core WebAssembly module"),
        "{:?}",
        text(&bad)
    );
    let wrong = tenantry(
        &["plugin", "rollback", "org-resolver", "--admin", &listen],
        &[("TENANTRY_ADMIN_TOKEN", "nope")],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong).1.contains("401"), "{:?}", text(&wrong));
    let back = tenantry(
        &["plugin", "rollback", "org-resolver", "--admin", &listen],
        &env,
    );
    assert!(back.status.success(), "{:?}", text(&back));
    drop(server);
}

#[test]
fn orgs_and_tenants_end_to_end_on_postgres() {
    let var = |v: &str| {
        std::env::var(v).unwrap_or_else(|_| panic!("{v} not set: run through scripts/test.sh"))
    };
    let (admin, app) = (
        var("TENANTRY_TEST_PG_ADMIN_URL"),
        var("TENANTRY_TEST_PG_APP_URL"),
    );
    let (base, _) = app.rsplit_once('/').unwrap();
    let prefix = format!("cli{}", std::process::id());
    let url = format!("{base}/{prefix}_{{org}}");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANTRY_ADMIN_DATABASE_URL", admin.as_str()),
        ("TENANTRY_ORGS", "true"),
        ("TENANTRY_TENANTS", "true"),
    ];
    let password = app
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_owned();
    let run = |args: &[&str]| {
        let out = tenantry(args, &env);
        let (stdout, stderr) = text(&out);
        assert!(
            !stdout.contains(&password) && !stderr.contains(&password),
            "password in CLI output: {stdout}{stderr}"
        );
        (out.status.code(), stdout, stderr)
    };
    let (code, out, err) = run(&["orgs", "create", "pa", "pb"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = run(&["--json", "orgs", "list"]);
    let listed: Vec<String> = serde_json::from_str(&out).unwrap();
    assert!(
        listed.contains(&"pa".to_owned()) && listed.contains(&"pb".to_owned()),
        "{listed:?}"
    );
    assert_eq!(run(&["orgs", "exists", "pa"]).0, Some(0));
    let (code, out, err) = run(&["tenants", "create", "t1", "--org", "pa"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = run(&["--json", "tenants", "list", "--org", "pa"]);
    assert_eq!(serde_json::from_str::<Vec<String>>(&out).unwrap(), ["t1"]);
    let (code, out, _) = run(&["--json", "resolve", "pa", "--tenant", "t1"]);
    assert_eq!(code, Some(0));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(r["url"].as_str().unwrap().contains(":***@"), "{r}");
    let (code, _, err) = run(&["orgs", "delete", "pa"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--yes") || err.to_lowercase().contains("confirm"),
        "{err}"
    );
    for org in ["pa", "pb"] {
        assert_eq!(run(&["orgs", "delete", org, "--yes"]).0, Some(0));
        assert_eq!(run(&["orgs", "exists", org]).0, Some(1));
    }
    let (code, out, err) = run(&["--json", "health"]);
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn migrate_reports_each_org_continues_past_a_failure_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps");
    let url = format!("sqlite://{}/{{org}}.db", dir.path().display());
    let apps_env = apps.display().to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANTRY_ORGS", "true"),
        ("TENANTRY_APPS_DIR", apps_env.as_str()),
    ];
    let run = |args: &[&str]| {
        let out = tenantry(args, &env);
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, out, err) = run(&["orgs", "create", "acme", "globex", "initech"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let sql = |statement: &str| {
        let url = format!("sqlite://{}/globex.db", dir.path().display());
        let statement = statement.to_owned();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
            });
    };
    // globex already has a `labels` table: the app's migration 2 fails there.
    sql("CREATE TABLE labels (legacy TEXT)");
    let migrations = apps.join("notes/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        migrations.join("0002_labels.sql"),
        "CREATE TABLE labels (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let row = |out: &str, org: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{org} ")))
            .unwrap_or_else(|| panic!("no row for {org}: {out}"))
            .to_owned()
    };

    let (code, out, err) = run(&["migrate", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("3 pending, 0 current, 0 failed; nothing was changed"),
        "{out}"
    );
    for org in ["acme", "globex", "initech"] {
        assert!(row(&out, org).ends_with("pending 1, 2"), "{out}");
    }

    let (code, out, err) = run(&["migrate", "--concurrency", "2"]);
    assert_eq!(code, Some(1), "a failed scope exits 1: {out}{err}");
    assert!(row(&out, "acme").ends_with("applied 1, 2"), "{out}");
    assert!(row(&out, "initech").ends_with("applied 1, 2"), "{out}");
    let globex = row(&out, "globex");
    assert!(
        globex.contains("FAILED after applying 1: migrations of app `notes` failed on")
            && globex.contains("globex.db")
            && globex.contains("labels already exists"),
        "{out}"
    );
    assert!(out.contains("2 applied, 0 current, 1 failed"), "{out}");
    assert!(err.contains("1 migration(s) failed"), "{err}");

    let (code, out, _) = run(&["--json", "migrate"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(v["summary"]["failed"], 1);
    assert_eq!(v["summary"]["current"], 2);
    let scopes = v["scopes"].as_array().unwrap();
    let globex = scopes.iter().find(|s| s["org"] == "globex").unwrap();
    assert_eq!(globex["apps"][0]["result"], "failed");
    assert_eq!(globex["apps"][0]["app"], "notes");

    sql("DROP TABLE labels");
    let (code, out, err) = run(&["migrate", "--orgs", "globex,acme"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(row(&out, "globex").ends_with("applied 2"), "{out}");
    assert!(row(&out, "acme").ends_with("current"), "{out}");
    assert!(!out.contains("initech"), "{out}");

    // Usage errors exit 2.
    assert_eq!(run(&["migrate", "--apps", "billing"]).0, Some(2));
    assert_eq!(run(&["migrate", "--orgs", "Bad_Id"]).0, Some(2));
    assert_eq!(run(&["migrate", "--concurrency", "0"]).0, Some(2));
}

/// Run `sql` as the superuser on database `db` of the test server.
fn admin_sql(admin_url: &str, db: &str, sql: &str) -> Vec<i64> {
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{db}");
    let sql = sql.to_owned();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        })
}

#[test]
fn tenants_move_dry_run_then_move_on_postgres() {
    let var = |v: &str| {
        std::env::var(v).unwrap_or_else(|_| panic!("{v} not set: run through scripts/test.sh"))
    };
    let (admin, app) = (
        var("TENANTRY_TEST_PG_ADMIN_URL"),
        var("TENANTRY_TEST_PG_APP_URL"),
    );
    let apps = tempfile::tempdir().unwrap();
    let migrations = apps.path().join("notes/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_notes.sql"),
        format!(
            "CREATE TABLE notes (tenant_id text NOT NULL, \
             id bigint GENERATED BY DEFAULT AS IDENTITY, body text NOT NULL, \
             PRIMARY KEY (tenant_id, id));\n{}",
            tenantry::isolation::postgres::enable_rls_sql("notes").unwrap()
        ),
    )
    .unwrap();
    let (base, _) = app.rsplit_once('/').unwrap();
    let prefix = format!("climv{}", std::process::id());
    let url = format!("{base}/{prefix}_{{org}}");
    let apps_dir = apps.path().display().to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANTRY_ADMIN_DATABASE_URL", admin.as_str()),
        ("TENANTRY_ORGS", "true"),
        ("TENANTRY_TENANTS", "true"),
        ("TENANTRY_APPS_DIR", apps_dir.as_str()),
    ];
    let secrets: Vec<String> = [&admin, &app]
        .iter()
        .map(|u| {
            let auth = u.split("://").nth(1).unwrap().split('@').next().unwrap();
            auth.split_once(':').unwrap().1.to_owned()
        })
        .collect();
    let run = |args: &[&str]| {
        let out = tenantry(args, &env);
        let (stdout, stderr) = text(&out);
        for secret in &secrets {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "password in CLI output: {stdout}{stderr}"
            );
        }
        (out.status.code(), stdout, stderr)
    };
    let (code, out, err) = run(&["orgs", "create", "ma", "mb"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["tenants", "create", "t1", "--org", "ma"]);
    assert_eq!(code, Some(0), "{out}{err}");
    run(&["tenants", "create", "t2", "--org", "ma"]);
    let ma = format!("{prefix}_ma");
    let mb = format!("{prefix}_mb");
    admin_sql(
        &admin,
        &ma,
        "INSERT INTO notes (tenant_id, body) SELECT 't1', 'note ' || g \
         FROM generate_series(1, 1200) g RETURNING 0::int8",
    );
    admin_sql(
        &admin,
        &ma,
        "INSERT INTO notes (tenant_id, body) VALUES ('t2', 'other') RETURNING 0::int8",
    );
    let count = |db: &str, tenant: &str| {
        admin_sql(
            &admin,
            db,
            &format!("SELECT count(*) FROM notes WHERE tenant_id = '{tenant}'"),
        )[0]
    };

    let (code, out, err) = run(&[
        "tenants",
        "move",
        "t1",
        "--from",
        "ma",
        "--to",
        "mb",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(
            "dry run: tenant t1 would move from org ma to org mb (row isolation); nothing changed"
        ),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("public.notes") && l.contains(" 1200 ")),
        "{out}"
    );
    assert_eq!(
        (count(&ma, "t1"), count(&mb, "t1")),
        (1200, 0),
        "dry run moved nothing"
    );

    let (code, out, err) = run(&[
        "tenants",
        "move",
        "t1",
        "--from",
        "ma",
        "--to",
        "mb",
        "--batch-size",
        "500",
        "--settle-ms",
        "0",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    for expected in [
        "tenant t1: org ma -> org mb (row isolation)",
        "1 table(s), 1200 row(s)",
        "in 3 batch(es)",
        "verified",
        "state: source-deleted (this run: planned -> copying -> verified -> switched -> source-deleted)",
        "org `mb` serves the tenant; org `ma` refuses it with tenant_moved",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!((count(&ma, "t1"), count(&mb, "t1")), (0, 1200));
    assert_eq!(count(&ma, "t2"), 1, "the other tenant stays");
    // The old org refuses the tenant and says where it went.
    let (code, _, err) = run(&["resolve", "ma", "--tenant", "t1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("tenant `t1` is not served by org `ma`: it lives in org `mb`"),
        "{err}"
    );
    let (code, out, _) = run(&[
        "--json", "tenants", "move", "t1", "--from", "ma", "--to", "mb",
    ]);
    assert_eq!(code, Some(0), "a finished move re-runs as a no-op: {out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["resumed_from"], "source-deleted");
    assert_eq!(report["rows"], 1200);
    for org in ["ma", "mb"] {
        assert_eq!(run(&["orgs", "delete", org, "--yes"]).0, Some(0));
    }
}

/// `GET path` on the admin server at `addr` with the token; the JSON body.
fn admin_get(addr: &str, path: &str, token: &str) -> serde_json::Value {
    let response = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(tenantry::http::client::send(
            tenantry::http::client::Request {
                addr,
                method: "GET",
                path,
                headers: &[(hyper::header::AUTHORIZATION, format!("Bearer {token}"))],
                body: Vec::new(),
                max_body: 1 << 20,
            },
        ))
        .unwrap();
    assert_eq!(response.status, 200, "{path}");
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn publish_to_the_registry_reaches_a_following_server() {
    let admin = std::env::var("TENANTRY_TEST_PG_ADMIN_URL")
        .expect("TENANTRY_TEST_PG_ADMIN_URL not set: run through scripts/test.sh");
    let db = format!("cli_registry_{}", std::process::id());
    admin_sql(&admin, "postgres", &format!("CREATE DATABASE {db}"));
    let (base, _) = admin.rsplit_once('/').unwrap();
    let registry = format!("{base}/{db}");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        "[registry]\ninstance = \"cli-test\"\nreconcile-every-ms = 500\n",
        &[("TENANTRY_REGISTRY_URL", &registry)],
    );
    let listen = server.listen.clone();
    let result = std::panic::catch_unwind(|| {
        let serving = |addr: &str| {
            admin_get(addr, "/status", "cli-token")["plugins"][0]["sha256"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let before = serving(&listen);
        let password = registry
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(user, _)| user.split_once(':'))
            .map(|(_, pw)| pw.to_owned())
            .unwrap();

        // What no follower would accept is refused before it reaches the registry.
        let wat = root().join("tests/fixtures/core-module.wat");
        let out = tenantry(
            &["plugin", "publish", "org-resolver", wat.to_str().unwrap()],
            &[("TENANTRY_REGISTRY_URL", &registry)],
        );
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        assert!(
            text(&out).1.contains("not a compiled component"),
            "{:?}",
            text(&out)
        );
        let out = tenantry(
            &[
                "plugin",
                "publish",
                "org-resolver",
                plugin("tiered-policy").to_str().unwrap(),
            ],
            &[("TENANTRY_REGISTRY_URL", &registry)],
        );
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        assert!(text(&out).1.contains("not published"), "{:?}", text(&out));
        let out = tenantry(
            &["plugin", "publish", "org-resolver", wat.to_str().unwrap()],
            &[],
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).1.contains("no registry"), "{:?}", text(&out));

        // A real publish reaches the running server through NOTIFY and its hot-swap.
        let out = tenantry(
            &[
                "--json",
                "plugin",
                "publish",
                "org-resolver",
                plugin("pattern").to_str().unwrap(),
            ],
            // The environment, not `--registry`: a password on a command line shows in `ps`
            // (and R7's capture of every command line would flag it).
            &[("TENANTRY_REGISTRY_URL", &registry)],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(!stdout.contains(&password) && !stderr.contains(&password));
        let published: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(published["version"], 1);
        let sha = published["sha256"].as_str().unwrap().to_owned();
        assert_ne!(sha, before);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while serving(&listen) != sha {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never swapped in the published plugin"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // The follower records what it runs (written right after the swap).
        let recorded = || {
            admin_sql(
                &admin,
                &db,
                "SELECT count(*) FROM tenantry_plugin_status \
                 WHERE instance = 'cli-test' AND ok AND version = 1",
            ) == vec![1]
        };
        while !recorded() {
            assert!(
                std::time::Instant::now() < deadline,
                "no status row for the swap"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    drop(server);
    admin_sql(
        &admin,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
