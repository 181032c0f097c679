//! Shared helpers for the integration tests: where the built plugins and fixtures are, and
//! how to reach the test PostgreSQL that `scripts/test.sh` starts.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A plugin component built by `scripts/build-plugins.sh` (`target/plugins/<name>.wasm`).
///
/// Panics with the command to run when it has not been built: these tests exercise real
/// components, never stand-ins.
pub fn plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("TENANTRY_PLUGIN_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the guest plugins first with scripts/build-plugins.sh \
         (scripts/test.sh does this for you)",
        path.display()
    );
    path
}

/// A WAT fixture from `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// Connection URLs of the test PostgreSQL started by `scripts/test.sh`.
#[derive(Debug, Clone)]
pub struct TestPostgres {
    /// Superuser URL (setup only).
    pub admin_url: String,
    /// Plain application role URL.
    pub app_url: String,
}

/// The test PostgreSQL. Panics with the command to run when it is not configured.
pub fn postgres() -> TestPostgres {
    let get = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: run the tests through scripts/test.sh, which starts PostgreSQL"
            )
        })
    };
    TestPostgres {
        admin_url: get("TENANTRY_TEST_PG_ADMIN_URL"),
        app_url: get("TENANTRY_TEST_PG_APP_URL"),
    }
}

/// Run four calls of `runaway` on the org id `loop` (each spins until its `deadline`) while
/// `neighbour` answers `acme` for 300 ms; assert the neighbour answered at least
/// `min_answers` times and every runaway call ended with `DeadlineExceeded { deadline }`.
///
/// Shared by the Rust and the JavaScript containment tests: the same guarantee must hold for
/// every guest runtime.
pub async fn assert_runaway_contained(
    runaway: std::sync::Arc<tenantry::plugin::LoadedPlugin>,
    neighbour: &tenantry::plugin::LoadedPlugin,
    deadline: std::time::Duration,
    min_answers: usize,
) {
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let p = runaway.clone();
            tokio::spawn(async move { p.resolve("loop").await })
        })
        .collect();
    let start = std::time::Instant::now();
    let mut answered = 0;
    while start.elapsed() < std::time::Duration::from_millis(300) {
        let t = neighbour.resolve("acme").await.unwrap().unwrap();
        assert_eq!(t.url, "postgres://db/acme");
        answered += 1;
    }
    assert!(
        answered >= min_answers,
        "neighbour starved: {answered} answers in 300 ms"
    );
    for l in loops {
        match l.await.unwrap() {
            Err(tenantry::PluginError::DeadlineExceeded { deadline: d, .. }) => {
                assert_eq!(d, deadline)
            }
            other => panic!("loop: {other:?}"),
        }
    }
}
