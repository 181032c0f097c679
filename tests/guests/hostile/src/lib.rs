//! An org resolver that misbehaves on request: the org id selects the misdeed.
//! Used only by the host's sandbox tests; every other id resolves normally.

wit_bindgen::generate!({ path: "../../../wit", world: "org-resolver" });

use exports::tenantry::plugin::resolver::Guest;
use tenantry::plugin::types::{OrgTarget, ResolveError};
use tenantry::plugin::{clock, config, http, log};

struct Hostile;

fn ok(url: String) -> Result<OrgTarget, ResolveError> {
    Ok(OrgTarget {
        url,
        region: None,
        ttl_ms: None,
        labels: Vec::new(),
    })
}

#[inline(never)]
fn recurse(depth: u64, acc: &mut [u64; 64]) -> u64 {
    acc[(depth % 64) as usize] = depth;
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1, acc).wrapping_add(acc[3])
}

impl Guest for Hostile {
    fn resolve(org_id: String) -> Result<OrgTarget, ResolveError> {
        match org_id.as_str() {
            "loop" => loop {
                core::hint::black_box(())
            },
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            "panic" => {
                log::write(
                    log::Level::Error,
                    "boom: the hostile plugin panics on purpose",
                );
                panic!("boom")
            }
            "recurse" => ok(format!("postgres://db/{}", recurse(0, &mut [0; 64]))),
            "huge" => ok(format!("postgres://db/{}", "x".repeat(1 << 20))),
            "count" => {
                // Calls served by this instance: always 1 with fresh instances.
                static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
                let n = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
                ok(format!("postgres://db/count-{n}"))
            }
            "flap" => {
                // Alternates ok / unavailable on a reused instance (a fresh one always says
                // ok): a backend that keeps dropping out.
                static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
                let n = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                if n % 2 == 0 {
                    ok("postgres://db/flap".into())
                } else {
                    Err(ResolveError::Unavailable("flapping backend".into()))
                }
            }
            "garbage" => ok("this is not a url".into()),
            "wrong-scheme" => ok("http://evil.example/acme".into()),
            "config" => ok(format!(
                "postgres://db/{}",
                config::get("suffix").unwrap_or_default()
            )),
            "clock" => ok(format!("postgres://db/t{}", clock::now_ms())),
            "unavailable" => Err(ResolveError::Unavailable(
                "backend down (postgres://svc:hunter2@dir/x)".into(),
            )),
            "invalid" => Err(ResolveError::Invalid("bad id".into())),
            "missing" => Err(ResolveError::NotFound),
            id if id.starts_with("http-") => {
                let url = config::get(id).unwrap_or_default();
                match http::get(&url) {
                    Ok(r) => Ok(OrgTarget {
                        url: "postgres://db/http".into(),
                        region: Some(format!("{} {}", r.status, r.body)),
                        ttl_ms: None,
                        labels: Vec::new(),
                    }),
                    Err(e) => Err(ResolveError::Unavailable(e)),
                }
            }
            id => ok(format!("postgres://db/{id}")),
        }
    }
}

export!(Hostile);
