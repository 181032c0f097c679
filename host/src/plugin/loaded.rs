//! A compiled, linked plugin and the per-call sandbox around it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::answer::{check_identifier, check_url};
use super::bindings::{policy_world, resolver_world, types};
use super::capability::{HttpAccess, PluginState};
use super::{
    ComponentInfo, Isolation, OrgTarget, PluginError, PluginKind, PluginRuntime, PluginSpec,
    ResolveFailure, ScopeDenial, ScopeRequest, TenantScope,
};

pub(crate) enum Prepared {
    Resolver(resolver_world::OrgResolverPre<PluginState>),
    Policy(policy_world::TenantPolicyPre<PluginState>),
}

/// An instance kept between calls (`reuse-instances = true`), with its store.
enum Warm {
    Resolver(Store<PluginState>, resolver_world::OrgResolver),
    Policy(Store<PluginState>, policy_world::TenantPolicy),
}

/// How many warm instances one plugin keeps at most.
const MAX_WARM: usize = 16;

/// Marker error raised by the epoch callback when a call's deadline passes.
#[derive(Debug)]
struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlinePassed {}

/// A plugin ready to be called: compiled once, linked once, instantiated per call.
///
/// Cheap to share behind an `Arc`; calls may run concurrently, each in its own instance.
pub struct LoadedPlugin {
    runtime: PluginRuntime,
    name: Arc<str>,
    spec: PluginSpec,
    info: ComponentInfo,
    config: Arc<BTreeMap<String, String>>,
    http: Option<Arc<HttpAccess>>,
    prepared: Prepared,
    warm: std::sync::Mutex<Vec<Warm>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub(crate) fn new(
        runtime: PluginRuntime,
        spec: PluginSpec,
        info: ComponentInfo,
        prepared: Prepared,
    ) -> Self {
        let name: Arc<str> = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", info.kind, info.short_sha()))
            .into();
        let http = (!spec.http_allow.is_empty())
            .then(|| Arc::new(HttpAccess::new(spec.http_allow.clone(), &spec.limits)));
        Self {
            runtime,
            name,
            config: Arc::new(spec.config.clone()),
            http,
            spec,
            info,
            prepared,
            warm: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The plugin's name (from its spec, or its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// World, version, sha256, size and imports.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// The spec it was loaded with.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    fn new_store(&self) -> Store<PluginState> {
        let limits = &self.spec.limits;
        let state = PluginState::new(
            self.name.clone(),
            self.spec.grants,
            self.config.clone(),
            self.http.clone(),
            limits,
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(DeadlinePassed.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Arm a store for one call: a full fuel budget and a fresh deadline. Fuel and the
    /// deadline cover instantiation too: a guest's start function counts.
    fn arm(&self, store: &mut Store<PluginState>) {
        let limits = &self.spec.limits;
        store
            .set_fuel(limits.fuel)
            .expect("fuel is enabled on the engine");
        store
            .data_mut()
            .begin_call(Instant::now() + limits.deadline);
        store.set_epoch_deadline(1);
    }

    fn take_warm(&self) -> Option<Warm> {
        if !self.spec.reuse_instances {
            return None;
        }
        self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn keep_warm(&self, warm: Warm) {
        let mut idle = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_WARM {
            idle.push(warm);
        }
    }

    fn classify(&self, store: &Store<PluginState>, err: wasmtime::Error) -> PluginError {
        let plugin = self.name.to_string();
        let sha = self.info.short_sha().to_owned();
        let state = store.data();
        if let Some(capability) = state.denied {
            return PluginError::NotGranted {
                plugin,
                sha,
                capability,
            };
        }
        if let Some(resource) = state.limiter.hit {
            let limit = match resource {
                "memory-bytes" => state.limiter.memory_bytes,
                _ => state.limiter.table_elements,
            };
            return PluginError::MemoryLimit {
                plugin,
                sha,
                resource,
                limit,
            };
        }
        if err.downcast_ref::<DeadlinePassed>().is_some() {
            return PluginError::DeadlineExceeded {
                plugin,
                sha,
                deadline: self.spec.limits.deadline,
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => {
                return PluginError::OutOfFuel {
                    plugin,
                    sha,
                    fuel: self.spec.limits.fuel,
                };
            }
            Some(Trap::Interrupt) => {
                return PluginError::DeadlineExceeded {
                    plugin,
                    sha,
                    deadline: self.spec.limits.deadline,
                };
            }
            _ => {}
        }
        // The trap code reads better than wasmtime's multi-line backtrace report, which
        // goes to the debug log instead.
        tracing::debug!(plugin = %self.name, "plugin trap: {err:?}");
        let mut message = match err.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => crate::redact::redact_text(&err.root_cause().to_string()),
        };
        if let Some(words) = &state.last_words {
            message = format!("{message}; the plugin's last message: {words}");
        }
        PluginError::Trap {
            plugin,
            sha,
            message,
        }
    }

    fn bad_answer(&self, reason: String) -> PluginError {
        PluginError::BadAnswer {
            plugin: self.name.to_string(),
            sha: self.info.short_sha().to_owned(),
            reason,
        }
    }

    fn finish<T>(&self, result: Result<T, PluginError>) -> Result<T, PluginError> {
        self.runtime.count_call(result.is_err());
        if let Err(e) = &result {
            tracing::warn!(plugin = %self.name, sha = self.info.short_sha(), error = %e, "plugin call failed");
        }
        result
    }

    /// Ask an org resolver where `org_id` lives.
    ///
    /// The outer `Result` is the sandbox's verdict (did the plugin behave?); the inner one
    /// is the plugin's answer. Ids are passed as given: validate them first (see
    /// [`OrgId`](crate::OrgId)).
    pub async fn resolve(
        &self,
        org_id: &str,
    ) -> Result<Result<OrgTarget, ResolveFailure>, PluginError> {
        let result = self.resolve_inner(org_id).await;
        self.finish(result)
    }

    async fn resolve_inner(
        &self,
        org_id: &str,
    ) -> Result<Result<OrgTarget, ResolveFailure>, PluginError> {
        let Prepared::Resolver(pre) = &self.prepared else {
            return Err(self.wrong_kind(PluginKind::OrgResolver));
        };
        let (mut store, warm) = match self.take_warm() {
            Some(Warm::Resolver(store, instance)) => (store, Some(instance)),
            _ => (self.new_store(), None),
        };
        self.arm(&mut store);
        let call = async {
            let instance = match warm {
                Some(instance) => instance,
                None => pre.instantiate_async(&mut store).await?,
            };
            let answer = instance
                .tenantry_plugin_resolver()
                .call_resolve(&mut store, org_id)
                .await?;
            Ok::<_, wasmtime::Error>((answer, instance))
        };
        let answer = match call.await {
            Ok((answer, instance)) => {
                if self.spec.reuse_instances {
                    self.keep_warm(Warm::Resolver(store, instance));
                }
                answer
            }
            Err(e) => return Err(self.classify(&store, e)),
        };
        let limit = self.spec.limits.answer_bytes;
        match answer {
            Ok(t) => {
                let size = t.url.len()
                    + t.region.as_ref().map_or(0, String::len)
                    + t.labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>();
                if size > limit {
                    return Err(self.bad_answer(format!(
                        "answer is {size} bytes; the limit is {limit} (limits.answer-bytes)"
                    )));
                }
                check_url(&t.url).map_err(|r| self.bad_answer(r))?;
                Ok(Ok(OrgTarget {
                    url: t.url,
                    region: t.region,
                    ttl: t.ttl_ms.map(|ms| Duration::from_millis(ms.into())),
                    labels: dedup(t.labels),
                }))
            }
            Err(types::ResolveError::NotFound) => Ok(Err(ResolveFailure::NotFound)),
            Err(types::ResolveError::Unavailable(m)) => {
                Ok(Err(ResolveFailure::Unavailable(self.message(m)?)))
            }
            Err(types::ResolveError::Invalid(m)) => {
                Ok(Err(ResolveFailure::Invalid(self.message(m)?)))
            }
        }
    }

    /// Ask a tenant policy how `request.tenant` must be isolated.
    pub async fn scope(
        &self,
        request: &ScopeRequest,
    ) -> Result<Result<TenantScope, ScopeDenial>, PluginError> {
        let result = self.scope_inner(request).await;
        self.finish(result)
    }

    async fn scope_inner(
        &self,
        request: &ScopeRequest,
    ) -> Result<Result<TenantScope, ScopeDenial>, PluginError> {
        let Prepared::Policy(pre) = &self.prepared else {
            return Err(self.wrong_kind(PluginKind::TenantPolicy));
        };
        let wit_request = types::ScopeRequest {
            org: request.org.clone(),
            tenant: request.tenant.clone(),
            app: request.app.clone(),
            principal: request
                .principal
                .as_ref()
                .map(|(subject, claims)| types::Principal {
                    subject: subject.clone(),
                    claims: claims.clone(),
                }),
            org_labels: request.org_labels.clone(),
        };
        let (mut store, warm) = match self.take_warm() {
            Some(Warm::Policy(store, instance)) => (store, Some(instance)),
            _ => (self.new_store(), None),
        };
        self.arm(&mut store);
        let call = async {
            let instance = match warm {
                Some(instance) => instance,
                None => pre.instantiate_async(&mut store).await?,
            };
            let answer = instance
                .tenantry_plugin_policy()
                .call_scope(&mut store, &wit_request)
                .await?;
            Ok::<_, wasmtime::Error>((answer, instance))
        };
        let answer = match call.await {
            Ok((answer, instance)) => {
                if self.spec.reuse_instances {
                    self.keep_warm(Warm::Policy(store, instance));
                }
                answer
            }
            Err(e) => return Err(self.classify(&store, e)),
        };
        let limit = self.spec.limits.answer_bytes;
        match answer {
            Ok(s) => {
                let isolation = match s.isolation {
                    types::Isolation::Row => Isolation::Row,
                    types::Isolation::Schema(name) => {
                        check_identifier("schema", &name).map_err(|r| self.bad_answer(r))?;
                        Isolation::Schema(name)
                    }
                    types::Isolation::Database(url) => {
                        if url.len() > limit {
                            return Err(self.bad_answer(format!(
                                "database url is {} bytes; the limit is {limit}",
                                url.len()
                            )));
                        }
                        check_url(&url).map_err(|r| self.bad_answer(r))?;
                        Isolation::Database(url)
                    }
                };
                let size: usize = s.settings.iter().map(|(k, v)| k.len() + v.len()).sum();
                if size > limit {
                    return Err(
                        self.bad_answer(format!("settings are {size} bytes; the limit is {limit}"))
                    );
                }
                for (name, _) in &s.settings {
                    check_identifier("setting", name).map_err(|r| self.bad_answer(r))?;
                }
                Ok(Ok(TenantScope {
                    isolation,
                    settings: dedup(s.settings),
                    read_only: s.read_only,
                    max_connections: s.max_connections,
                    ttl: s.ttl_ms.map(|ms| Duration::from_millis(ms.into())),
                }))
            }
            Err(types::Denial::NotFound) => Ok(Err(ScopeDenial::NotFound)),
            Err(types::Denial::Forbidden(m)) => Ok(Err(ScopeDenial::Forbidden(self.message(m)?))),
            Err(types::Denial::Unavailable(m)) => {
                Ok(Err(ScopeDenial::Unavailable(self.message(m)?)))
            }
            Err(types::Denial::Invalid(m)) => Ok(Err(ScopeDenial::Invalid(self.message(m)?))),
        }
    }

    /// Bound and redact a free-form message from the guest.
    fn message(&self, m: String) -> Result<String, PluginError> {
        let limit = self.spec.limits.answer_bytes;
        if m.len() > limit {
            return Err(self.bad_answer(format!(
                "error message is {} bytes; the limit is {limit}",
                m.len()
            )));
        }
        Ok(crate::redact::redact_text(&m))
    }

    fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        PluginError::WrongWorld {
            what: self.name.to_string(),
            expected: super::error::describe_world(Some(wanted)),
            found: format!("world `{}`", self.info.kind),
        }
    }

    /// Run the self-test a candidate must pass before it may serve: every configured
    /// sample (or one probe id when none are configured) must be answered without a
    /// [`PluginError`]. Typed refusals such as not-found are fine.
    pub async fn self_test(&self) -> Result<(), PluginError> {
        let probe = ["tenantry-self-test".to_owned()];
        let samples = if self.spec.samples.is_empty() {
            &probe[..]
        } else {
            &self.spec.samples[..]
        };
        for sample in samples {
            let outcome = match self.info.kind {
                PluginKind::OrgResolver => self.resolve(sample).await.map(drop),
                PluginKind::TenantPolicy => {
                    let request = ScopeRequest {
                        tenant: sample.clone(),
                        ..ScopeRequest::default()
                    };
                    self.scope(&request).await.map(drop)
                }
            };
            if let Err(e) = outcome {
                return Err(PluginError::SelfTest {
                    plugin: self.name.to_string(),
                    sha: self.info.short_sha().to_owned(),
                    sample: sample.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Keep the first occurrence of each key.
fn dedup(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}
