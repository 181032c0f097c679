//! Shared helpers for the integration tests: where the built plugins and fixtures are, and
//! how to reach the test PostgreSQL that `scripts/test.sh` starts.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, Once};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where R7's whole-suite secrets capture writes, when `scripts/test.sh` asks for it.
const CAPTURE_DIR: &str = "TENANTRY_TEST_CAPTURE_DIR";

/// Install, once per test process, a subscriber writing all of Tenantry's trace output (and
/// sqlx's statement log) to `$TENANTRY_TEST_CAPTURE_DIR/<process>.log`, so
/// `scripts/check-secrets.sh` can assert that no test password appears in any log line the
/// suite produced. A no-op without the variable, so `cargo test` alone stays quiet.
///
/// Called by [`postgres`], [`plugin`] and [`fixture`], which nearly every test goes through;
/// tests that install their own scoped subscriber still check their own output.
pub fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let Some(file) = capture_file("log") else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::new(
            // Everything, minus the compiler's per-function chatter.
            "trace,cranelift_codegen=warn,cranelift_frontend=warn,regalloc2=warn,\
             wasmtime_internal_cranelift=warn,wasmtime_environ=info,wasmtime=info,\
             hyper=info,h2=info,tower=info,mio=info",
        );
        // Another subscriber may already be the global default (a test installed one first):
        // that test checks its own output, so losing the capture there is acceptable.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init();
    });
}

/// Append `text` (CLI output, an HTTP body, a metrics scrape) to this process's capture file,
/// labelled with `what`. A no-op unless `TENANTRY_TEST_CAPTURE_DIR` is set.
pub fn capture(what: &str, text: &str) {
    static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
    let mut file = FILE.lock().unwrap_or_else(|e| e.into_inner());
    if file.is_none() {
        *file = capture_file("out");
    }
    if let Some(f) = file.as_mut() {
        let _ = writeln!(f, "--- {what}\n{text}");
    }
}

fn capture_file(kind: &str) -> Option<std::fs::File> {
    let dir = PathBuf::from(std::env::var_os(CAPTURE_DIR)?);
    std::fs::create_dir_all(&dir).ok()?;
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_stem()?.to_string_lossy().into_owned();
    let path = dir.join(format!("{name}.{}.{kind}", std::process::id()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()
}

/// A plugin component built by `scripts/build-plugins.sh` (`target/plugins/<name>.wasm`).
///
/// Panics with the command to run when it has not been built: these tests exercise real
/// components, never stand-ins.
pub fn plugin(name: &str) -> PathBuf {
    capture_logs();
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
    capture_logs();
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
    capture_logs();
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
