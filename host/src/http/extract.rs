//! Who is asking for which org and tenant: the tower layer that configures it, and the
//! axum extractor that hands a handler its tenant-scoped database handle.
//!
//! Sources, in priority order: the authenticated [`Identity`] (a request extension set by
//! the application's auth layer) or the `extract_org`/`extract_tenant` closures; then the
//! configured path parameters; then headers (`x-org-id`, `x-tenant-id`). A path parameter or
//! header that contradicts the identity is rejected with 403, never obeyed: a client cannot
//! talk its way into another tenant by sending a header.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderName, Request, StatusCode};

use super::ApiError;
use crate::{Host, HostError, OrgId, Scoped, TenantId};

/// The caller as established by the application's authentication. Insert it into the
/// request's extensions (e.g. in your auth middleware) before the handler runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Stable subject id (user, service account).
    pub subject: String,
    /// The org the caller belongs to, if authentication establishes one.
    pub org: Option<String>,
    /// The tenant the caller belongs to, if authentication establishes one.
    pub tenant: Option<String>,
    /// Verified claims, passed to the tenant policy.
    pub claims: Vec<(String, String)>,
}

/// Reads an id from the request (the seed's `extractOrg` / `extractTenant`).
pub type IdExtractor = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
/// Decides whether `identity` may act as another tenant (the seed's `switchTenant`).
pub type SwitchPolicy = Arc<dyn Fn(&Identity, &TenantId) -> bool + Send + Sync>;
/// Called with every rejection before it is returned (logging, metrics).
pub type ErrorHook = Arc<dyn Fn(&ApiError) + Send + Sync>;

/// How the tenancy layer finds org and tenant ids. Defaults follow the host's modes.
#[derive(Clone)]
pub struct TenancyOptions {
    /// Header carrying the org id. Default `x-org-id`.
    pub org_header: HeaderName,
    /// Header carrying the tenant id. Default `x-tenant-id`.
    pub tenant_header: HeaderName,
    /// Header with which an authorised caller switches tenant. Default `x-switch-tenant`.
    pub switch_header: HeaderName,
    /// Path parameter carrying the org id (e.g. `org` for `/orgs/{org}/…`). Default none.
    pub org_param: Option<String>,
    /// Path parameter carrying the tenant id. Default none.
    pub tenant_param: Option<String>,
    /// Reject requests without an org id. Default: whether orgs are enabled.
    pub org_required: Option<bool>,
    /// Reject requests without a tenant id. Default: whether tenants are enabled.
    pub tenant_required: Option<bool>,
    /// Create a missing org or tenant on first use. Default `false`.
    pub auto_create: bool,
    /// Org id from the request, tried before path parameters and headers.
    pub extract_org: Option<IdExtractor>,
    /// Tenant id from the request, tried before path parameters and headers.
    pub extract_tenant: Option<IdExtractor>,
    /// Who may switch tenant with [`switch_header`](Self::switch_header); nobody by default.
    pub switch_tenant: Option<SwitchPolicy>,
    /// Observer of rejections.
    pub on_error: Option<ErrorHook>,
}

impl Default for TenancyOptions {
    fn default() -> Self {
        Self {
            org_header: HeaderName::from_static("x-org-id"),
            tenant_header: HeaderName::from_static("x-tenant-id"),
            switch_header: HeaderName::from_static("x-switch-tenant"),
            org_param: None,
            tenant_param: None,
            org_required: None,
            tenant_required: None,
            auto_create: false,
            extract_org: None,
            extract_tenant: None,
            switch_tenant: None,
            on_error: None,
        }
    }
}

impl std::fmt::Debug for TenancyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyOptions")
            .field("org_header", &self.org_header)
            .field("tenant_header", &self.tenant_header)
            .field("org_param", &self.org_param)
            .field("tenant_param", &self.tenant_param)
            .field("org_required", &self.org_required)
            .field("tenant_required", &self.tenant_required)
            .field("auto_create", &self.auto_create)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct TenancyState {
    host: Host,
    options: Arc<TenancyOptions>,
}

/// A tower layer that makes the [`Tenant`] extractor available to the routes below it.
#[derive(Clone)]
pub struct TenancyLayer {
    state: TenancyState,
}

impl std::fmt::Debug for TenancyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyLayer")
            .field("options", &self.state.options)
            .finish()
    }
}

impl TenancyLayer {
    /// Tenancy for `host` with default options.
    pub fn new(host: Host) -> Self {
        Self::with_options(host, TenancyOptions::default())
    }

    /// Tenancy for `host` configured by `options`.
    pub fn with_options(host: Host, options: TenancyOptions) -> Self {
        Self {
            state: TenancyState {
                host,
                options: Arc::new(options),
            },
        }
    }
}

impl<S> tower::Layer<S> for TenancyLayer {
    type Service = TenancyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TenancyService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`TenancyLayer`].
#[derive(Clone)]
pub struct TenancyService<S> {
    inner: S,
    state: TenancyState,
}

impl<S> std::fmt::Debug for TenancyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyService").finish_non_exhaustive()
    }
}

impl<S, B> tower::Service<Request<B>> for TenancyService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.state.clone());
        self.inner.call(request)
    }
}

/// The extractor: the request's org and tenant, and a database handle scoped to them.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use tenantry::http::{Tenant, TenancyLayer};
///
/// async fn notes(tenant: Tenant) -> String {
///     format!("tenant {:?} of org {:?}", tenant.tenant, tenant.org)
/// }
///
/// # async fn app(host: tenantry::Host) {
/// let app: Router = Router::new().route("/notes", get(notes)).layer(TenancyLayer::new(host));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The org, when orgs are enabled.
    pub org: Option<OrgId>,
    /// The tenant, when one was given.
    pub tenant: Option<TenantId>,
    /// Connections and transactions that can only see this scope's data.
    pub db: Scoped,
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(state) = parts.extensions.get::<TenancyState>().cloned() else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "tenancy_layer_missing",
                "the Tenant extractor needs TenancyLayer: add .layer(TenancyLayer::new(host)) to the router",
            ));
        };
        let result = extract(&state, parts).await;
        if let (Err(e), Some(hook)) = (&result, &state.options.on_error) {
            hook(e);
        }
        result
    }
}

fn header(parts: &Parts, name: &HeaderName) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Combine the sources of one id: identity first; a param or header may only agree with it.
fn pick(
    kind: &'static str,
    trusted: Option<String>,
    param: Option<String>,
    header: Option<String>,
) -> Result<Option<String>, ApiError> {
    if let Some(trusted) = trusted {
        for (source, claimed) in [("path parameter", &param), ("header", &header)] {
            if claimed.as_ref().is_some_and(|c| *c != trusted) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "identity_mismatch",
                    format!(
                        "the {kind} id in the {source} does not match the authenticated identity's {kind}"
                    ),
                ));
            }
        }
        return Ok(Some(trusted));
    }
    if let (Some(p), Some(h)) = (&param, &header)
        && p != h
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "conflicting_ids",
            format!("the {kind} id in the path and in the header differ: send one"),
        ));
    }
    Ok(param.or(header))
}

async fn extract(state: &TenancyState, parts: &mut Parts) -> Result<Tenant, ApiError> {
    let options = &state.options;
    let host = &state.host;
    let identity = parts.extensions.get::<Identity>().cloned();
    let params: Vec<(String, String)> = match RawPathParams::from_request_parts(parts, &()).await {
        Ok(p) => p
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let param = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    };
    let trusted_org = identity
        .as_ref()
        .and_then(|i| i.org.clone())
        .or_else(|| options.extract_org.as_ref().and_then(|f| f(parts)));
    let trusted_tenant = identity
        .as_ref()
        .and_then(|i| i.tenant.clone())
        .or_else(|| options.extract_tenant.as_ref().and_then(|f| f(parts)));
    let org = pick(
        "org",
        trusted_org,
        param(&options.org_param),
        header(parts, &options.org_header),
    )?;
    let mut tenant = pick(
        "tenant",
        trusted_tenant,
        param(&options.tenant_param),
        header(parts, &options.tenant_header),
    )?;

    if let Some(target) = header(parts, &options.switch_header) {
        let target = TenantId::new(&target).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant_id", e.to_string())
        })?;
        let allowed = match (&identity, &options.switch_tenant) {
            (Some(identity), Some(policy)) => policy(identity, &target),
            _ => false,
        };
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_switch_denied",
                "this caller may not switch tenant",
            ));
        }
        tracing::info!(subject = identity.as_ref().map(|i| i.subject.as_str()).unwrap_or(""), tenant = %target, "tenant switched by an authorised caller");
        tenant = Some(target.to_string());
    }

    let orgs = host.config().orgs;
    let tenants = host.config().tenants;
    let org = if orgs { org } else { None };
    if options.org_required.unwrap_or(orgs) && org.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "org_required",
            format!(
                "missing org id: authenticate, or send the `{}` header",
                options.org_header
            ),
        ));
    }
    if options.tenant_required.unwrap_or(tenants) && tenant.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "tenant_required",
            format!(
                "missing tenant id: authenticate, or send the `{}` header",
                options.tenant_header
            ),
        ));
    }
    let org = org
        .map(|o| {
            OrgId::new(&o).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_org_id", e.to_string())
            })
        })
        .transpose()?;
    let tenant = tenant
        .map(|t| {
            TenantId::new(&t).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant_id", e.to_string())
            })
        })
        .transpose()?;

    let db = match open(host, org.as_ref(), tenant.as_ref()).await {
        Ok(db) => db,
        Err(e) if options.auto_create && is_missing(&e) => {
            create(host, org.as_ref(), tenant.as_ref()).await?;
            open(host, org.as_ref(), tenant.as_ref()).await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Tenant { org, tenant, db })
}

async fn open(
    host: &Host,
    org: Option<&OrgId>,
    tenant: Option<&TenantId>,
) -> Result<Scoped, HostError> {
    match (org, tenant) {
        (Some(org), Some(tenant)) => host.org(org.as_str())?.tenant(tenant.as_str()).await,
        (Some(org), None) => host.org(org.as_str())?.get().await,
        (None, Some(tenant)) => host.tenant(tenant.as_str()).await,
        (None, None) => host.get().await,
    }
}

fn is_missing(e: &HostError) -> bool {
    let code = super::error::classify(e).1;
    matches!(code, "not_found" | "tenant_not_found")
}

async fn create(
    host: &Host,
    org: Option<&OrgId>,
    tenant: Option<&TenantId>,
) -> Result<(), ApiError> {
    let ignore_exists = |r: Result<(), HostError>| match r {
        Err(HostError::Data(crate::scope::DataError::AlreadyExists { .. })) | Ok(()) => Ok(()),
        Err(e) => Err(ApiError::from(e)),
    };
    if let Some(org) = org {
        ignore_exists(host.create_org(org.as_str()).await)?;
    }
    if let Some(tenant) = tenant {
        ignore_exists(
            host.create_tenant(tenant.as_str(), org.map(OrgId::as_str))
                .await,
        )?;
    }
    tracing::info!(
        org = org.map(OrgId::as_str).unwrap_or(""),
        tenant = tenant.map(TenantId::as_str).unwrap_or(""),
        "auto-created on first use"
    );
    Ok(())
}
