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
    cmd.output().expect("tenantry runs")
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
