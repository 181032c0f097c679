//! What a plugin may reach outside its sandbox: one capability per WIT import.
//!
//! Every import is always linked, so a component that imports one links fine; the grant is
//! checked on each call. An ungranted `config`, `clock` or `http` call traps the call with
//! [`PluginError::NotGranted`](super::PluginError::NotGranted). An ungranted `log` call is
//! not emitted, but its message is kept as the call's "last words" so that a guest's panic
//! message still reaches the error report.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::bindings::{clock, config, http, log};
use super::limits::PluginLimits;

/// One grantable capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `tenantry:plugin/log`: write to the host's log.
    Log,
    /// `tenantry:plugin/config`: read the plugin's own configuration.
    Config,
    /// `tenantry:plugin/clock`: read the wall clock.
    Clock,
    /// `tenantry:plugin/http`: GET from allowlisted hosts.
    Http,
}

impl Capability {
    /// All capabilities, in WIT order.
    pub const ALL: [Capability; 4] = [Self::Log, Self::Config, Self::Clock, Self::Http];

    /// The capability's config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Config => "config",
            Self::Clock => "clock",
            Self::Http => "http",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown capability {s:?}; expected log, config, clock or http"))
    }
}

/// The set of capabilities granted to one plugin; empty by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(from = "Vec<Capability>", into = "Vec<Capability>")]
pub struct Grants(u8);

impl Grants {
    /// No capability.
    pub const NONE: Grants = Grants(0);

    /// These capabilities.
    pub fn of(caps: &[Capability]) -> Self {
        caps.iter().fold(Self::NONE, |g, &c| g.with(c))
    }

    /// This set plus `cap`.
    pub fn with(self, cap: Capability) -> Self {
        Grants(self.0 | (1 << cap as u8))
    }

    /// Whether `cap` is granted.
    pub fn allows(self, cap: Capability) -> bool {
        self.0 & (1 << cap as u8) != 0
    }
}

impl From<Vec<Capability>> for Grants {
    fn from(v: Vec<Capability>) -> Self {
        Self::of(&v)
    }
}

impl From<Grants> for Vec<Capability> {
    fn from(g: Grants) -> Self {
        Capability::ALL
            .into_iter()
            .filter(|&c| g.allows(c))
            .collect()
    }
}

/// The `http` capability's allowlist and limits.
#[derive(Debug)]
pub(crate) struct HttpAccess {
    allow: Vec<String>,
    timeout: Duration,
    max_body: usize,
}

impl HttpAccess {
    pub(crate) fn new(allow: Vec<String>, limits: &PluginLimits) -> Self {
        Self {
            allow: allow.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            timeout: limits.deadline,
            max_body: limits.answer_bytes,
        }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        let with_port = format!("{host}:{port}");
        self.allow.iter().any(|a| *a == host || *a == with_port)
    }

    async fn get(&self, plugin: &str, raw: &str) -> Result<http::Response, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("bad url: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "scheme `{}` is not supported; the http capability speaks plain http to allowlisted hosts",
                url.scheme()
            ));
        }
        let host = url
            .host_str()
            .ok_or("url has no host")?
            .to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(80);
        if !self.allows(&host, port) {
            tracing::warn!(plugin, %host, port, "http-get denied: host not on the plugin's allowlist");
            return Err(format!(
                "host {host}:{port} is not on this plugin's http allowlist"
            ));
        }
        let addr = format!("{host}:{port}");
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let fetch = async {
            let response = crate::http::client::send(crate::http::client::Request {
                addr: &addr,
                method: "GET",
                path: &path,
                headers: &[(hyper::header::USER_AGENT, "tenantry-plugin".to_owned())],
                body: Vec::new(),
                max_body: self.max_body,
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok(http::Response {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            })
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("timed out after {:?}", self.timeout))?
    }
}

/// Memory and table caps for one call, remembering which one was hit.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    pub(crate) memory_bytes: usize,
    pub(crate) table_elements: usize,
    pub(crate) hit: Option<&'static str>,
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some("memory-bytes");
            return Err(wasmtime::format_err!("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some("table-elements");
            return Err(wasmtime::format_err!("table limit reached"));
        }
        Ok(true)
    }
}

/// Upper bound on log lines one call may emit, so a chatty plugin cannot flood the log.
const MAX_LOG_LINES_PER_CALL: u32 = 64;
/// Upper bound on the length of one log line.
const MAX_LOG_LINE: usize = 2048;

/// The data of one call's `Store`.
pub(crate) struct PluginState {
    pub(crate) plugin: Arc<str>,
    pub(crate) grants: Grants,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) http: Option<Arc<HttpAccess>>,
    pub(crate) limiter: CallLimiter,
    /// The first capability the guest used without a grant.
    pub(crate) denied: Option<Capability>,
    /// The last warn/error message the guest logged; attached to trap reports.
    pub(crate) last_words: Option<String>,
    /// When the current call must end (read by the epoch callback).
    pub(crate) deadline: std::time::Instant,
    log_lines: u32,
}

impl PluginState {
    pub(crate) fn new(
        plugin: Arc<str>,
        grants: Grants,
        config: Arc<BTreeMap<String, String>>,
        http: Option<Arc<HttpAccess>>,
        limits: &PluginLimits,
    ) -> Self {
        Self {
            plugin,
            grants,
            config,
            http,
            limiter: CallLimiter {
                memory_bytes: limits.memory_bytes,
                table_elements: limits.table_elements,
                hit: None,
            },
            denied: None,
            last_words: None,
            deadline: std::time::Instant::now(),
            log_lines: 0,
        }
    }

    /// Prepare a (possibly reused) store's state for the next call.
    pub(crate) fn begin_call(&mut self, deadline: std::time::Instant) {
        self.deadline = deadline;
        self.denied = None;
        self.last_words = None;
        self.limiter.hit = None;
        self.log_lines = 0;
    }

    fn require(&mut self, cap: Capability) -> wasmtime::Result<()> {
        if self.grants.allows(cap) {
            return Ok(());
        }
        self.denied.get_or_insert(cap);
        tracing::warn!(plugin = %self.plugin, capability = %cap, "plugin used a capability it was not granted");
        Err(wasmtime::format_err!("capability `{cap}` not granted"))
    }
}

impl log::Host for PluginState {
    fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let mut message = crate::redact::redact_text(&message);
        if message.len() > MAX_LOG_LINE {
            let cut = (0..=MAX_LOG_LINE)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        if matches!(level, log::Level::Warn | log::Level::Error) {
            self.last_words = Some(message.clone());
        }
        if !self.grants.allows(Capability::Log) || self.log_lines >= MAX_LOG_LINES_PER_CALL {
            return Ok(());
        }
        self.log_lines += 1;
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "tenantry::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "tenantry::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "tenantry::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "tenantry::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "tenantry::plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.require(Capability::Config)?;
        Ok(self.config.get(&key).cloned())
    }
}

impl clock::Host for PluginState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.require(Capability::Clock)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(now.as_millis() as u64)
    }
}

impl http::Host for PluginState {
    async fn get(&mut self, url: String) -> wasmtime::Result<Result<http::Response, String>> {
        self.require(Capability::Http)?;
        let Some(access) = self.http.clone() else {
            return Ok(Err(
                "no hosts are allowlisted for this plugin (http-allow is empty)".into(),
            ));
        };
        Ok(access.get(&self.plugin, &url).await)
    }
}

impl super::bindings::types::Host for PluginState {}
