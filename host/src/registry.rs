//! A plugin registry shared by many instances (docs/scale-out.md, section 1).
//!
//! One PostgreSQL table says which component each slot should run; [`publish`] writes a new
//! version and announces it with `NOTIFY tenantry_plugins` in the same transaction, and every
//! instance running a [`Follower`] hears it and puts the component through the slot's
//! ordinary hot-swap (validation, self-test, atomic switch, old plugin kept on failure). Each
//! instance records what it runs in `tenantry_plugin_status`.
//!
//! Ordering and idempotence come from the row's `version` (increasing per slot) and `sha256`:
//! a version older than the last one attempted is ignored, a version already rejected is not
//! retried, and a component whose sha256 is already serving is not swapped again. Missed
//! notifications (listener reconnects, paused instances) are covered by reconciling on every
//! (re)connect and every [`FollowOptions::reconcile_every`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener};
use sqlx::{Connection, Executor};

use crate::host::Host;
use crate::plugin::PluginKind;
use crate::plugin::inspect::sha256_hex;
use crate::redact::{redact_text, redact_url};

/// The `NOTIFY` channel.
pub const CHANNEL: &str = "tenantry_plugins";

/// The registry's tables (idempotent).
pub const SCHEMA_SQL: &str = "\
CREATE TABLE IF NOT EXISTS tenantry_plugins (
    slot        text PRIMARY KEY,
    version     bigint NOT NULL CHECK (version > 0),
    sha256      text   NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    wasm        bytea  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text   NOT NULL
);
CREATE TABLE IF NOT EXISTS tenantry_plugin_versions (
    slot        text   NOT NULL,
    version     bigint NOT NULL,
    sha256      text   NOT NULL,
    wasm        bytea  NOT NULL,
    updated_at  timestamptz NOT NULL,
    updated_by  text   NOT NULL,
    PRIMARY KEY (slot, version)
);
CREATE TABLE IF NOT EXISTS tenantry_plugin_status (
    instance    text   NOT NULL,
    slot        text   NOT NULL,
    version     bigint NOT NULL,
    sha256      text   NOT NULL,
    ok          boolean NOT NULL,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, slot)
);";

/// A registry operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin registry at {database}: {reason}")]
pub struct RegistryError {
    /// The registry database, password redacted.
    pub database: String,
    /// Why (secrets redacted).
    pub reason: String,
}

fn failed(url: &str) -> impl Fn(sqlx::Error) -> RegistryError + '_ {
    move |e| RegistryError {
        database: redact_url(url),
        reason: redact_text(&e.to_string()),
    }
}

/// Create the registry's tables in the database at `url`.
pub async fn install_schema(url: &str) -> Result<(), RegistryError> {
    let mut conn = PgConnection::connect(url).await.map_err(failed(url))?;
    conn.execute(SCHEMA_SQL).await.map_err(failed(url))?;
    let _ = conn.close().await;
    Ok(())
}

/// A version written by [`publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The slot's new version.
    pub version: i64,
    /// sha256 of the component, hex.
    pub sha256: String,
}

/// Make `bytes` the component of `slot` for every following instance: a new version, kept in
/// the history, announced on [`CHANNEL`] when the transaction commits. Check the component
/// first (`tenantry plugin check`); each instance still self-tests it before serving it.
pub async fn publish(
    url: &str,
    slot: PluginKind,
    bytes: &[u8],
    by: &str,
) -> Result<Published, RegistryError> {
    let sha256 = sha256_hex(bytes);
    let mut conn = PgConnection::connect(url).await.map_err(failed(url))?;
    let mut tx = conn.begin().await.map_err(failed(url))?;
    // One statement: concurrent publishers serialize on the row, none is lost.
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO tenantry_plugins (slot, version, sha256, wasm, updated_by) \
         VALUES ($1, 1, $2, $3, $4) \
         ON CONFLICT (slot) DO UPDATE SET version = tenantry_plugins.version + 1, \
             sha256 = EXCLUDED.sha256, wasm = EXCLUDED.wasm, updated_at = now(), \
             updated_by = EXCLUDED.updated_by \
         RETURNING version",
    )
    .bind(slot.world())
    .bind(&sha256)
    .bind(bytes)
    .bind(by)
    .fetch_one(&mut *tx)
    .await
    .map_err(failed(url))?;
    sqlx::query(
        "INSERT INTO tenantry_plugin_versions \
         SELECT slot, version, sha256, wasm, updated_at, updated_by FROM tenantry_plugins \
         WHERE slot = $1",
    )
    .bind(slot.world())
    .execute(&mut *tx)
    .await
    .map_err(failed(url))?;
    let payload = serde_json::json!({"slot": slot.world(), "version": version, "sha256": sha256});
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload.to_string())
        .execute(&mut *tx)
        .await
        .map_err(failed(url))?;
    tx.commit().await.map_err(failed(url))?;
    let _ = conn.close().await;
    Ok(Published { version, sha256 })
}

/// Where `tenantry serve` follows a shared registry (`[registry]` in the config file).
///
/// Library users start a [`Follower`] themselves with [`follow`]: [`Host::load`] does not,
/// because a follower holds the host and would keep it alive.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RegistryConfig {
    /// `TENANTRY_REGISTRY_URL`: the PostgreSQL database holding the registry. Unset: none.
    pub url: Option<String>,
    /// This instance's name in `tenantry_plugin_status`. Default `<hostname>:<pid>`.
    pub instance: Option<String>,
    /// Read the whole registry this often, notifications or not (ms). Default 30 000.
    pub reconcile_every_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: None,
            instance: None,
            reconcile_every_ms: 30_000,
        }
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("instance", &self.instance)
            .field("reconcile_every_ms", &self.reconcile_every_ms)
            .finish()
    }
}

impl RegistryConfig {
    /// The follower options this config asks for.
    pub fn follow_options(&self) -> FollowOptions {
        let instance = self.instance.clone().unwrap_or_else(default_instance);
        FollowOptions {
            instance,
            reconcile_every: Duration::from_millis(self.reconcile_every_ms.max(100)),
        }
    }
}

/// `<hostname>:<pid>`: unique among instances on one network, readable in the status table.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tenantry".to_owned());
    format!("{host}:{}", std::process::id())
}

/// How a [`Follower`] runs.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// This instance's name in `tenantry_plugin_status` (e.g. hostname:pid).
    pub instance: String,
    /// Read the whole registry this often, whatever the notifications said. Default 30 s.
    pub reconcile_every: Duration,
}

impl FollowOptions {
    /// Options for instance `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            instance: name.into(),
            reconcile_every: Duration::from_secs(30),
        }
    }
}

/// What a follower last did for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The registry version.
    pub version: i64,
    /// Whether the slot runs it.
    pub ok: bool,
    /// The rejection reason, when not.
    pub reason: Option<String>,
}

/// Keeps a host's plugin slots on the registry's versions. Stops when dropped.
#[derive(Debug)]
pub struct Follower {
    task: tokio::task::JoinHandle<()>,
    attempts: Arc<Mutex<HashMap<String, Attempt>>>,
}

impl Follower {
    /// The last attempt per slot (`org-resolver`, `tenant-policy`).
    pub fn attempts(&self) -> HashMap<String, Attempt> {
        self.attempts.lock().expect("attempts lock").clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start following the registry at `url` for `host`'s configured slots: listen, reconcile
/// now, then on every notification, reconnect and period.
pub fn follow(host: Host, url: impl Into<String>, options: FollowOptions) -> Follower {
    let attempts = Arc::new(Mutex::new(HashMap::new()));
    let state = State {
        host,
        url: url.into(),
        options,
        attempts: attempts.clone(),
    };
    Follower {
        task: tokio::spawn(state.run()),
        attempts,
    }
}

struct State {
    host: Host,
    url: String,
    options: FollowOptions,
    attempts: Arc<Mutex<HashMap<String, Attempt>>>,
}

#[derive(serde::Deserialize)]
struct Notice {
    slot: String,
    version: i64,
    sha256: String,
}

impl State {
    async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Err(e) = self.listen().await {
                tracing::warn!("{e}; reconnecting in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }

    /// One listening session: returns when the registry cannot be reached.
    async fn listen(&self) -> Result<(), RegistryError> {
        let mut listener = PgListener::connect(&self.url)
            .await
            .map_err(failed(&self.url))?;
        listener.listen(CHANNEL).await.map_err(failed(&self.url))?;
        // Listening first, then reading: nothing published in between is missed.
        self.reconcile().await?;
        let mut tick = tokio::time::interval(self.options.reconcile_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                received = listener.try_recv() => match received.map_err(failed(&self.url))? {
                    Some(n) => match serde_json::from_str::<Notice>(n.payload()) {
                        Ok(notice) => {
                            self.consider(&notice.slot, notice.version, &notice.sha256)
                                .await?;
                        }
                        Err(e) => tracing::warn!("ignoring a malformed registry notice: {e}"),
                    },
                    // The connection was lost and re-established: notices may be lost.
                    None => self.reconcile().await?,
                },
                _ = tick.tick() => self.reconcile().await?,
            }
        }
    }

    async fn reconcile(&self) -> Result<(), RegistryError> {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .map_err(failed(&self.url))?;
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT slot, version, sha256 FROM tenantry_plugins ORDER BY slot")
                .fetch_all(&mut conn)
                .await
                .map_err(failed(&self.url))?;
        let _ = conn.close().await;
        for (slot, version, sha256) in rows {
            self.consider(&slot, version, &sha256).await?;
        }
        Ok(())
    }

    /// Apply the ordering and idempotence rules, then swap if needed.
    async fn consider(&self, slot: &str, version: i64, sha256: &str) -> Result<(), RegistryError> {
        let Some(kind) = PluginKind::from_world(slot) else {
            return Ok(());
        };
        let Some(target) = self.host.slot(kind).cloned() else {
            return Ok(()); // this instance does not run that slot
        };
        let last = self
            .attempts
            .lock()
            .expect("attempts lock")
            .get(slot)
            .cloned();
        if let Some(last) = &last
            && (version < last.version || (version == last.version && !last.ok))
        {
            return Ok(()); // stale, duplicate, or already rejected
        }
        let (ok, reason, serving, version) = if target.current().info().sha256 == sha256 {
            (true, None, sha256.to_owned(), version)
        } else {
            self.swap(&target, slot, version, sha256).await?
        };
        let mut conn = PgConnection::connect(&self.url)
            .await
            .map_err(failed(&self.url))?;
        sqlx::query(
            "INSERT INTO tenantry_plugin_status (instance, slot, version, sha256, ok, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (instance, slot) DO UPDATE SET version = EXCLUDED.version, \
                 sha256 = EXCLUDED.sha256, ok = EXCLUDED.ok, reason = EXCLUDED.reason, at = now()",
        )
        .bind(&self.options.instance)
        .bind(slot)
        .bind(version)
        .bind(&serving)
        .bind(ok)
        .bind(&reason)
        .execute(&mut conn)
        .await
        .map_err(failed(&self.url))?;
        let _ = conn.close().await;
        // Recorded after the status row, so whoever sees the attempt also finds the row.
        self.attempts.lock().expect("attempts lock").insert(
            slot.to_owned(),
            Attempt {
                version,
                ok,
                reason,
            },
        );
        Ok(())
    }

    /// Fetch the slot's component and hot-swap it: (ok, reason, sha256 serving afterwards).
    async fn swap(
        &self,
        target: &crate::plugin::PluginSlot,
        slot: &str,
        version: i64,
        sha256: &str,
    ) -> Result<(bool, Option<String>, String, i64), RegistryError> {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .map_err(failed(&self.url))?;
        // The row may have moved on since the notice: then the newer version is what serves.
        let row: Option<(i64, String, Vec<u8>)> =
            sqlx::query_as("SELECT version, sha256, wasm FROM tenantry_plugins WHERE slot = $1")
                .bind(slot)
                .fetch_optional(&mut conn)
                .await
                .map_err(failed(&self.url))?;
        let _ = conn.close().await;
        let serving = || target.current().info().sha256.clone();
        let Some((row_version, row_sha, wasm)) = row else {
            return Ok((
                false,
                Some("the slot's row is gone".into()),
                serving(),
                version,
            ));
        };
        if row_version < version || (row_sha != sha256 && row_version == version) {
            let reason = "the row does not match the notice".to_owned();
            return Ok((false, Some(reason), serving(), version));
        }
        let actual = sha256_hex(&wasm);
        if actual != row_sha {
            let reason = format!("the stored component's sha256 is {actual}, not {row_sha}");
            return Ok((false, Some(reason), serving(), row_version));
        }
        let what = format!("registry {slot} v{row_version}");
        match target.swap_bytes(&wasm, &what, None).await {
            Ok(outcome) => {
                tracing::info!(slot, version = row_version, sha = %&outcome.sha256[..12], "registry swap");
                Ok((true, None, outcome.sha256, row_version))
            }
            Err(e) => {
                let reason = redact_text(&e.to_string());
                tracing::warn!(
                    slot,
                    version = row_version,
                    "registry swap rejected: {reason}"
                );
                Ok((false, Some(reason), serving(), row_version))
            }
        }
    }
}
