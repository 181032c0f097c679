//! Host configuration: environment first (like the JavaScript module Tenantry replaces),
//! with an optional TOML file for plugins, limits and engine options.
//!
//! Precedence, lowest to highest: defaults → TOML file (`TENANTRY_CONFIG` or an explicit
//! path) → environment variables. See `tenantry.example.toml` for every key, annotated.
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | the database, or a pattern with `{org}` (and `{tenant}`) placeholders |
//! | `TENANTRY_ORGS` | `true`: a database per org |
//! | `TENANTRY_TENANTS` | `true`: tenants inside each database |
//! | `TENANTRY_VECTORS` | `true`: enable [`crate::vectors`] (pgvector embeddings and search) |
//! | `TENANTRY_PLUGINS_DIR` | directory watched for `<slot>.wasm` hot-swaps |
//! | `TENANTRY_CACHE_DIR` | compile cache for plugins |
//! | `TENANTRY_CONFIG` | path of the TOML file |
//! | `TENANTRY_ADMIN_DATABASE_URL` | administrative PostgreSQL URL for creating and dropping databases |
//! | `TENANTRY_MAX_CONNECTIONS` | cap on open connections across all pools |
//! | `TENANTRY_APPS_DIR` | directory of `<app>/migrations` (default `apps`) |
//! | `TENANTRY_AUTO_MIGRATE` | run migrations on SQLite files on first use and on created databases |
//! | `TENANTRY_REGISTRY_URL` | shared plugin registry `tenantry serve` follows ([`crate::registry`]) |
//! | `TENANTRY_ALLOW_PRIVILEGED_ROLE` | run even when the app's role is SUPERUSER or BYPASSRLS |

use std::path::{Path, PathBuf};

use crate::plugin::{EngineOptions, PluginSpec};

/// A configuration problem, naming the file or variable to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML file does not parse or has unknown keys.
    #[error("config file {} is invalid: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A numeric variable does not parse.
    #[error("{var}={value:?} is not a positive whole number")]
    BadNumber {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A boolean variable has a value other than true/false/1/0/yes/no/on/off.
    #[error("{var}={value:?} is not a boolean: use true or false")]
    BadBool {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

/// The plugins of one host, by slot.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginsConfig {
    /// Maps org ids to database targets. Without one, `DATABASE_URL`'s `{org}` pattern is
    /// used natively.
    pub org_resolver: Option<PluginSpec>,
    /// Decides each tenant's isolation. Without one, every tenant is row-isolated.
    pub tenant_policy: Option<PluginSpec>,
}

/// Everything [`Host::load`](crate::Host::load) needs.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HostConfig {
    /// `DATABASE_URL`: a database URL, or a pattern with `{org}` / `{tenant}`.
    pub database_url: Option<String>,
    /// `TENANTRY_ORGS`: a database per org.
    pub orgs: bool,
    /// `TENANTRY_TENANTS`: tenants within each database.
    pub tenants: bool,
    /// `TENANTRY_VECTORS`: enable [`crate::vectors`] (pgvector embeddings and k-NN search).
    pub vectors: bool,
    /// `TENANTRY_PLUGINS_DIR`: watched for `<slot>.wasm` files to hot-swap.
    pub plugins_dir: Option<PathBuf>,
    /// Engine-wide options (`[engine]`).
    pub engine: EngineOptions,
    /// Plugins by slot (`[plugins.org-resolver]`, `[plugins.tenant-policy]`).
    pub plugins: PluginsConfig,
    /// The org resolution pipeline (`[resolve]`): cache, breakers, retries, fallback.
    pub resolve: crate::resolve::ResolveOptions,
    /// `TENANTRY_ADMIN_DATABASE_URL`: a PostgreSQL role allowed to create and drop
    /// databases, used only by `create_org`/`delete_org` and database-isolated tenants.
    pub admin_database_url: Option<String>,
    /// Pool limits and timeouts (`[pools]`).
    pub pools: crate::pool::PoolConfig,
    /// Isolation safety checks (`[isolation]`).
    pub isolation: crate::isolation::IsolationConfig,
    /// Apps and their migrations (`[migrations]`).
    pub migrations: crate::migrate::MigrationConfig,
    /// The shared plugin registry `tenantry serve` follows (`[registry]`).
    pub registry: crate::registry::RegistryConfig,
}

impl HostConfig {
    /// Read the TOML file named by `TENANTRY_CONFIG` (if set), then apply the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let base = match std::env::var_os("TENANTRY_CONFIG") {
            Some(path) => Self::from_file(Path::new(&path))?,
            None => Self::default(),
        };
        base.with_env()
    }

    /// Parse a TOML file (no environment applied).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parse TOML text (no environment applied).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Override fields from the environment variables listed in the module docs.
    pub fn with_env(mut self) -> Result<Self, ConfigError> {
        if let Some(url) = env_nonempty("DATABASE_URL") {
            self.database_url = Some(url);
        }
        if let Some(v) = env_bool("TENANTRY_ORGS")? {
            self.orgs = v;
        }
        if let Some(v) = env_bool("TENANTRY_TENANTS")? {
            self.tenants = v;
        }
        if let Some(v) = env_bool("TENANTRY_VECTORS")? {
            self.vectors = v;
        }
        if let Some(dir) = env_nonempty("TENANTRY_PLUGINS_DIR") {
            self.plugins_dir = Some(dir.into());
        }
        if let Some(dir) = env_nonempty("TENANTRY_CACHE_DIR") {
            self.engine.cache_dir = Some(dir.into());
        }
        if let Some(url) = env_nonempty("TENANTRY_ADMIN_DATABASE_URL") {
            self.admin_database_url = Some(url);
        }
        if let Some(value) = env_nonempty("TENANTRY_MAX_CONNECTIONS") {
            let var = "TENANTRY_MAX_CONNECTIONS";
            self.pools.max_open_connections = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::BadNumber { var, value })?;
        }
        if let Some(dir) = env_nonempty("TENANTRY_APPS_DIR") {
            self.migrations.apps_dir = dir.into();
        }
        if let Some(v) = env_bool("TENANTRY_AUTO_MIGRATE")? {
            self.migrations.auto = v;
        }
        if let Some(url) = env_nonempty("TENANTRY_REGISTRY_URL") {
            self.registry.url = Some(url);
        }
        if let Some(v) = env_bool("TENANTRY_ALLOW_PRIVILEGED_ROLE")? {
            self.isolation.allow_privileged_role = v;
        }
        Ok(self)
    }
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn env_bool(var: &'static str) -> Result<Option<bool>, ConfigError> {
    let Some(value) = env_nonempty(var) else {
        return Ok(None);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::BadBool { var, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_annotated_example() {
        let text = include_str!("../../tenantry.example.toml");
        let config = HostConfig::from_toml(text).expect("example parses");
        let resolver = config.plugins.org_resolver.expect("example has a resolver");
        assert!(resolver.grants.allows(crate::plugin::Capability::Config));
        assert_eq!(
            resolver.limits.deadline,
            std::time::Duration::from_millis(250)
        );
        assert!(config.tenants);
        assert_eq!(
            config.resolve,
            crate::resolve::ResolveOptions::default(),
            "documented defaults drifted"
        );
    }

    #[test]
    fn rejects_unknown_keys_with_location() {
        let err = HostConfig::from_toml("orgz = true").unwrap_err();
        assert!(err.contains("orgz"), "{err}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_parses_or_fails_cleanly(text in any::<String>()) {
            let _ = HostConfig::from_toml(&text);
        }

        #[test]
        fn toml_shaped_noise_fails_cleanly(text in "([a-z-]{1,12} = (true|false|[0-9]{1,6}|\"[ -~]{0,20}\")\n|\\[[a-z.-]{1,20}\\]\n){0,8}") {
            if let Err(e) = HostConfig::from_toml(&text) {
                prop_assert!(!e.is_empty());
            }
        }
    }
}
