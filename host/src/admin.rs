//! The operator's HTTP surface (`tenantry serve`): health, Prometheus metrics, org health,
//! cache and breaker controls, and plugin hot-swap.
//!
//! Read-only endpoints are open; mutating ones require `Authorization: Bearer <token>` with
//! the configured admin token. With no token configured, mutating endpoints are disabled
//! (403), never open.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/health` | liveness |
//! | GET | `/health/db` | [`Host::health`] |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/orgs/{id}/health` | [`Host::check_org_health`] |
//! | GET | `/status` | everything an operator's dashboard shows (token, unless `public_read`); its database health is at most 10 s old |
//! | POST | `/orgs/{id}/refresh` | [`Host::refresh_org`] (token) |
//! | POST | `/orgs/{id}/breaker` | body `{"state": "open" \| "closed" \| "reset"}` (token) |
//! | DELETE | `/cache`, `/cache/{id}` | [`Host::clear_org_cache`] (token) |
//! | PUT | `/plugins/{slot}` | body = component; validated, self-tested hot-swap (token) |
//! | POST | `/plugins/{slot}/rollback` | (token) |
//! | GET | `/` | the operator dashboard ([`crate::dashboard`]); it calls the endpoints above |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
pub use metrics_exporter_prometheus::PrometheusHandle;

use crate::http::ApiError;
use crate::plugin::PluginKind;
use crate::resolve::BreakerOverride;
use crate::{Host, OrgId};

/// Largest plugin upload accepted by `PUT /plugins/{slot}` (Python components are ~20 MB).
const MAX_PLUGIN_UPLOAD: usize = 64 << 20;

/// Options of the admin router.
#[derive(Clone, Default)]
pub struct AdminOptions {
    /// Bearer token for mutating endpoints; `None` disables them.
    pub token: Option<String>,
    /// Renders the process's Prometheus metrics (see [`install_prometheus`]).
    pub metrics: Option<PrometheusHandle>,
    /// Serve `/status` without the token (read-only data; no secrets). Default `false`.
    pub public_read: bool,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("metrics", &self.metrics.is_some())
            .field("public_read", &self.public_read)
            .finish()
    }
}

/// Install the process-wide Prometheus recorder that receives Tenantry's `metrics` and return
/// a handle to render them. Call once, in the binary (a library should not install globals).
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())
}

#[derive(Clone)]
struct AdminState {
    host: Host,
    options: Arc<AdminOptions>,
    /// The last [`Host::health`] answer `/status` showed, and when it was taken.
    status_health: Arc<tokio::sync::Mutex<Option<(std::time::Instant, crate::manage::Health)>>>,
}

/// How long `/status` reuses a health check: dashboards poll every 2 s, and each check
/// pings every open database, so many open dashboards must not multiply the pings.
const STATUS_HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl AdminState {
    /// [`Host::health`], at most once per [`STATUS_HEALTH_TTL`]; concurrent callers wait for
    /// the one check in flight (the lock is held across it) instead of starting their own.
    async fn status_health(&self) -> crate::manage::Health {
        let mut cached = self.status_health.lock().await;
        if let Some((at, health)) = cached.as_ref()
            && at.elapsed() < STATUS_HEALTH_TTL
        {
            return health.clone();
        }
        let health = self.host.health().await;
        *cached = Some((std::time::Instant::now(), health.clone()));
        health
    }
}

/// The admin routes for `host`.
pub fn router(host: Host, options: AdminOptions) -> Router {
    let state = AdminState {
        host,
        options: Arc::new(options),
        status_health: Arc::default(),
    };
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/health/db", get(health_db))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route("/orgs/{id}/health", get(org_health))
        .route("/orgs/{id}/refresh", post(org_refresh))
        .route("/orgs/{id}/breaker", post(org_breaker))
        .route("/cache", delete(clear_all))
        .route("/cache/{id}", delete(clear_one))
        .route("/plugins/{slot}", put(plugin_swap))
        .route("/plugins/{slot}/rollback", post(plugin_rollback))
        .merge(crate::dashboard::router())
        .layer(DefaultBodyLimit::max(MAX_PLUGIN_UPLOAD))
        .with_state(state)
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.options.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "mutating admin endpoints are disabled: set TENANTRY_ADMIN_TOKEN (or admin-token in the config) to enable them",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ));
    }
    Ok(())
}

/// Compare without leaking, through timing, how much of the token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn org_id(raw: &str) -> Result<OrgId, ApiError> {
    OrgId::new(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_org_id", e.to_string()))
}

fn slot(raw: &str) -> Result<PluginKind, ApiError> {
    PluginKind::from_world(raw).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_slot",
            "slots are `org-resolver` and `tenant-policy`",
        )
    })
}

async fn health_db(State(s): State<AdminState>) -> Response {
    let health = s.host.health().await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health)).into_response()
}

async fn metrics_text(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let Some(handle) = &s.options.metrics else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_disabled",
            "no Prometheus recorder: call tenantry::admin::install_prometheus() and pass the handle in AdminOptions",
        ));
    };
    // Gauges describing the host's current state are set at scrape time.
    let m = s.host.resolver_metrics().await;
    metrics::gauge!("tenantry_org_cache_entries").set(m.cache_size as f64);
    metrics::gauge!("tenantry_org_breakers_open").set(m.open_breakers.len() as f64);
    let stats = s.host.runtime().stats();
    metrics::gauge!("tenantry_plugin_calls")
        .set(stats.calls.load(std::sync::atomic::Ordering::Relaxed) as f64);
    metrics::gauge!("tenantry_plugin_call_failures").set(
        stats
            .call_failures
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    // Pool counters only: a scrape must not ping databases (that is what /health/db is for).
    let (open, max) = s.host.connection_counts();
    metrics::gauge!("tenantry_open_connections").set(f64::from(open));
    metrics::gauge!("tenantry_max_open_connections").set(f64::from(max));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

async fn status(State(s): State<AdminState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !s.options.public_read {
        authorize(&s, &headers)?;
    }
    let host = &s.host;
    let plugins: Vec<serde_json::Value> = PluginKind::ALL
        .into_iter()
        .filter_map(|kind| host.slot(kind))
        .map(|slot| {
            let current = slot.current();
            let info = current.info();
            serde_json::json!({
                "slot": slot.name(),
                "plugin": current.name(),
                "world": info.kind.world(),
                "version": info.version,
                "sha256": info.sha256,
                "size": info.size,
                "imports": info.imports,
                "grants": current.spec().grants,
                "loaded_at_unix_ms": slot.loaded_at_unix_ms(),
                "generation": slot.generation(),
                "last_swap": slot.last_swap(),
            })
        })
        .collect();
    let resolver = host.resolver_metrics().await;
    let breakers: Vec<serde_json::Value> = resolver
        .open_breakers
        .iter()
        .filter_map(|org| OrgId::new(org).ok())
        .map(|org| serde_json::json!({"org": org.as_str(), "state": host.org_breaker(&org), "last_error": host.org_breaker_error(&org)}))
        .collect();
    let health = s.status_health().await;
    let stats = host.runtime().stats();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Ok(axum::Json(serde_json::json!({
        "time_unix_ms": now,
        "health": health,
        "plugins": plugins,
        "plugin_calls": stats.calls.load(std::sync::atomic::Ordering::Relaxed),
        "plugin_call_failures": stats.call_failures.load(std::sync::atomic::Ordering::Relaxed),
        "resolver": resolver,
        "breakers": breakers,
        "busiest_orgs": host.busiest_orgs(10).into_iter().map(|(org, hits)| serde_json::json!({"org": org, "hits": hits})).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn org_health(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let health = s.host.check_org_health(&org_id(&id)?).await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(health)).into_response())
}

async fn org_refresh(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let r = s.host.refresh_org(&org_id(&id)?).await?;
    Ok(axum::Json(
        serde_json::json!({"org": id, "url": r.target.redacted_url(), "source": r.source}),
    )
    .into_response())
}

#[derive(serde::Deserialize)]
struct BreakerBody {
    state: String,
}

async fn org_breaker(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let org = org_id(&id)?;
    let body: BreakerBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected {{\"state\": \"open\"|\"closed\"|\"reset\"}}: {e}"),
        )
    })?;
    match body.state.as_str() {
        "open" => s.host.set_org_breaker(&org, BreakerOverride::Open),
        "closed" => s.host.set_org_breaker(&org, BreakerOverride::Closed),
        "reset" => s.host.reset_org_breaker(&org),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("unknown state {other:?}: use open, closed or reset"),
            ));
        }
    }
    Ok(
        axum::Json(serde_json::json!({"org": id, "breaker": s.host.org_breaker(&org)}))
            .into_response(),
    )
}

async fn clear_all(State(s): State<AdminState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    s.host.clear_org_cache(None).await;
    Ok(axum::Json(serde_json::json!({"cleared": "all"})).into_response())
}

async fn clear_one(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    s.host.clear_org_cache(Some(&org_id(&id)?)).await;
    Ok(axum::Json(serde_json::json!({"cleared": id})).into_response())
}

async fn plugin_swap(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(slot_name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let kind = slot(&slot_name)?;
    match s.host.swap_bytes(kind, &body).await {
        Ok(outcome) => Ok(axum::Json(outcome).into_response()),
        Err(crate::HostError::SlotNotConfigured(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "slot_not_configured",
            format!("no {slot_name} plugin is configured"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "swap_rejected",
            format!("{e}; the current plugin keeps serving"),
        )),
    }
}

async fn plugin_rollback(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(slot_name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let kind = slot(&slot_name)?;
    match s.host.rollback(kind).await {
        Ok(outcome) => Ok(axum::Json(outcome).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "rollback_failed",
            e.to_string(),
        )),
    }
}
