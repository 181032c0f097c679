//! Recognising what a file is before trusting it: WAT or binary, core module or component,
//! which world, which contract version, which imports.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::describe_world;
use super::{PluginError, PluginKind};

/// The `tenantry:plugin` contract version this host implements.
pub const SUPPORTED_VERSION: &str = "0.1.0";

/// Interfaces a plugin may import (all from `tenantry:plugin`).
const IMPORTABLE: &[&str] = &["types", "log", "config", "clock", "http"];

/// What a component is, as read from its type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentInfo {
    /// The world it implements.
    pub kind: PluginKind,
    /// The contract version of its export.
    pub version: String,
    /// Hex sha256 of the component's binary form.
    pub sha256: String,
    /// Size of the binary, in bytes.
    pub size: usize,
    /// The names of its imports.
    pub imports: Vec<String>,
}

impl ComponentInfo {
    /// The first 12 hex digits of the sha256, as shown in errors and logs.
    pub fn short_sha(&self) -> &str {
        &self.sha256[..12]
    }
}

/// Turn WAT text into binary, and refuse anything that is not a component.
pub(crate) fn to_component_binary(bytes: &[u8], what: &str) -> Result<Vec<u8>, PluginError> {
    let binary = if bytes.starts_with(b"\0asm") {
        bytes.to_vec()
    } else {
        let text =
            std::str::from_utf8(bytes).map_err(|_| PluginError::NotWasm { what: what.into() })?;
        wat::parse_str(text).map_err(|e| {
            if looks_like_wat(text) {
                PluginError::Compile {
                    what: what.into(),
                    reason: format!("invalid WAT: {e}"),
                }
            } else {
                PluginError::NotWasm { what: what.into() }
            }
        })?
    };
    // Bytes 4..8: version 1, layer 0 is a core module; layer 1 is a component.
    match binary.get(6..8) {
        Some([0, 0]) => Err(PluginError::CoreModule { what: what.into() }),
        Some([1, 0]) => Ok(binary),
        _ => Err(PluginError::NotWasm { what: what.into() }),
    }
}

fn looks_like_wat(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('(') || t.starts_with(";;")
}

/// Hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Read world, version and imports from a compiled component and check them.
///
/// `expected`: the slot's world, or `None` to accept either (as `tenantry plugin check` does).
pub fn inspect_component(
    engine: &Engine,
    component: &Component,
    binary: &[u8],
    what: &str,
    expected: Option<PluginKind>,
) -> Result<ComponentInfo, PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let mut found = None;
    for name in &exports {
        for kind in PluginKind::ALL {
            let prefix = format!("tenantry:plugin/{}", kind.interface());
            if let Some(rest) = name.strip_prefix(&prefix) {
                let version = rest.strip_prefix('@').unwrap_or("(unversioned)");
                found = Some((kind, name.clone(), version.to_owned()));
            }
        }
    }
    let Some((kind, interface, version)) = found else {
        let shown = if exports.is_empty() {
            "no exports".to_owned()
        } else {
            format!("exports {exports:?}")
        };
        return Err(PluginError::WrongWorld {
            what: what.into(),
            expected: describe_world(expected),
            found: format!("no tenantry:plugin world ({shown})"),
        });
    };
    if let Some(expected) = expected.filter(|&e| e != kind) {
        return Err(PluginError::WrongWorld {
            what: what.into(),
            expected: describe_world(Some(expected)),
            found: format!("world `{kind}`"),
        });
    }
    if version != SUPPORTED_VERSION {
        return Err(PluginError::UnsupportedVersion {
            what: what.into(),
            interface,
            found: version,
            supported: SUPPORTED_VERSION,
        });
    }
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    for import in &imports {
        let known = import
            .strip_prefix("tenantry:plugin/")
            .and_then(|rest| rest.split_once('@'))
            .is_some_and(|(iface, v)| IMPORTABLE.contains(&iface) && v == SUPPORTED_VERSION);
        if !known {
            return Err(PluginError::UnknownImport {
                what: what.into(),
                import: import.clone(),
            });
        }
    }
    Ok(ComponentInfo {
        kind,
        version,
        sha256: sha256_hex(binary),
        size: binary.len(),
        imports,
    })
}
