//! Command-line parsing and the commands themselves (binary only).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tenantry::plugin::{
    Capability, EngineOptions, Grants, PluginKind, PluginLimits, PluginRuntime, PluginSpec,
    ScopeRequest,
};
use tenantry::redact::redact_text;
use tenantry::{Host, HostConfig, OrgId};

/// Multi-tenant database routing with sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "tenantry", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (default: $TENANTRY_CONFIG). Environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, test and manage plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Resolve an org (and optionally a tenant) to its database, password redacted.
    Resolve {
        /// The org id.
        org: String,
        /// Also ask the tenant policy how this tenant is isolated.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Create, delete, list and check orgs (a database or SQLite file each).
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Create, delete, list and check tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Row-level security for PostgreSQL tables.
    #[command(subcommand)]
    Rls(RlsCommand),
    /// Report the host's health: mode, backend, pools and open connections.
    Health,
    /// Run the apps' migrations on every org database and every tenant database, schema or
    /// file, several databases at once; a failure is reported and the others go on.
    Migrate(MigrateArgs),
    /// Run the admin server: health, Prometheus metrics, org health, cache, breakers and
    /// plugin hot-swap. Mutating endpoints need `TENANTRY_ADMIN_TOKEN` (disabled without it).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090", env = "TENANTRY_ADMIN_LISTEN")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// Only these apps (comma-separated; default: every app under the apps directory).
    #[arg(long, value_delimiter = ',', value_name = "APP,...")]
    apps: Option<Vec<String>>,
    /// Only these orgs (comma-separated; default: every org the host can list).
    #[arg(long, value_delimiter = ',', value_name = "ORG,...")]
    orgs: Option<Vec<String>>,
    /// Databases migrated at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Show what would be applied; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum OrgsCommand {
    /// Create orgs (database or file, plus every app's migrations); a progress bar for many.
    Create {
        /// Org ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete an org's database or file. Refuses without --yes.
    Delete {
        /// Org id.
        id: String,
        /// Confirm: the org's data is destroyed.
        #[arg(long)]
        yes: bool,
    },
    /// List orgs.
    List,
    /// Exit 0 if the org exists, 1 if not.
    Exists {
        /// Org id.
        id: String,
    },
    /// Resolve many orgs concurrently to check them (and warm a running host's caches).
    Preload {
        /// Org ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Resolutions in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Create a tenant (its registry entry, schema, database or file, as the policy says).
    Create {
        /// Tenant id.
        id: String,
        /// The org (required when orgs are enabled).
        #[arg(long)]
        org: Option<String>,
    },
    /// Delete a tenant and all its data. Refuses without --yes.
    Delete {
        /// Tenant id.
        id: String,
        /// The org.
        #[arg(long)]
        org: Option<String>,
        /// Confirm: the tenant's data is destroyed.
        #[arg(long)]
        yes: bool,
    },
    /// List tenants.
    List {
        /// The org.
        #[arg(long)]
        org: Option<String>,
        /// Only ids containing this text.
        #[arg(long)]
        filter: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Exit 0 if the tenant exists, 1 if not.
    Exists {
        /// Tenant id.
        id: String,
        /// The org.
        #[arg(long)]
        org: Option<String>,
    },
    /// Move a tenant to another org (PostgreSQL, row or schema isolation): copy in batches
    /// from one snapshot, verify counts and checksums, switch routing, delete the source.
    /// Re-run the same command to resume an interrupted move.
    Move {
        /// Tenant id.
        tenant: String,
        /// The org it is in.
        #[arg(long)]
        from: String,
        /// The org to move it to (its migrations applied).
        #[arg(long)]
        to: String,
        /// Rows per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
        /// Report tables, rows and sizes that would move; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Copy and verify but keep the source serving its copy (readable in both orgs).
        #[arg(long)]
        keep_source: bool,
        /// Abort the unfinished move to --to (before its switch): clear the target's
        /// partial copy and let the source serve the tenant read-write again.
        #[arg(long, conflicts_with_all = ["dry_run", "keep_source"])]
        abort: bool,
        /// Wait this long for other hosts to see the tenant moving (default: placement
        /// cache TTL + 1 s; 0 only when no other host serves the tenant).
        #[arg(long)]
        settle_ms: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum RlsCommand {
    /// Print (or with --apply, run) the SQL that puts `table` under tenant row-level security.
    Enable {
        /// Table name, optionally schema-qualified.
        table: String,
        /// Run it on the database (of --org, when orgs are enabled) instead of printing it.
        #[arg(long)]
        apply: bool,
        /// The org whose database to apply it on.
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Load a component, report its world, version, size and sha256, and call it on samples.
    ///
    /// The plugin gets the `log`, `config` and `clock` capabilities unless --grant says
    /// otherwise; `DATABASE_URL` is passed as its `database-url` config key.
    Check(CheckArgs),
    /// Hot-swap a running server's plugin (`PUT /plugins/{slot}`): validated and self-tested
    /// there first; the old plugin keeps serving if anything fails.
    Swap {
        /// `org-resolver` or `tenant-policy`.
        slot: String,
        /// The new component.
        file: PathBuf,
        /// The admin server.
        #[arg(long, default_value = "127.0.0.1:9090", env = "TENANTRY_ADMIN_ADDR")]
        admin: String,
    },
    /// Publish a compiled component to the shared plugin registry (docs/scale-out.md):
    /// every `tenantry serve` following the registry validates, self-tests and hot-swaps it,
    /// keeping its current plugin if anything fails.
    Publish {
        /// `org-resolver` or `tenant-policy`.
        slot: String,
        /// The component (.wasm).
        file: PathBuf,
        /// The registry database (else `[registry] url` of the config file). Prefer the
        /// environment variable when the URL holds a password: command lines show in `ps`.
        #[arg(long, env = "TENANTRY_REGISTRY_URL")]
        registry: Option<String>,
    },
    /// Put back a running server's previous plugin (`POST /plugins/{slot}/rollback`).
    Rollback {
        /// `org-resolver` or `tenant-policy`.
        slot: String,
        /// The admin server.
        #[arg(long, default_value = "127.0.0.1:9090", env = "TENANTRY_ADMIN_ADDR")]
        admin: String,
    },
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The plugin: a component (.wasm) or WAT text (.wat).
    file: PathBuf,
    /// An id to call the plugin with (repeatable). For a tenant policy: `tenant` or `org/tenant`.
    #[arg(long = "sample", value_name = "ID")]
    samples: Vec<String>,
    /// Capabilities to grant (repeatable; default log, config, clock). `none` grants nothing.
    #[arg(long = "grant", value_name = "CAP")]
    grants: Vec<String>,
    /// Plugin config entries `key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Hosts the http capability may reach (repeatable).
    #[arg(long = "http-allow", value_name = "HOST[:PORT]")]
    http_allow: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Per-call limits, defaulting to the host's defaults.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Fuel per call.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Linear memory cap per instance, in bytes.
    #[arg(long)]
    memory_bytes: Option<usize>,
    /// Cap on the total size of one answer, in bytes.
    #[arg(long)]
    answer_bytes: Option<usize>,
}

impl LimitArgs {
    fn apply(&self) -> PluginLimits {
        let mut limits = PluginLimits::default();
        if let Some(f) = self.fuel {
            limits.fuel = f;
        }
        if let Some(ms) = self.deadline_ms {
            limits.deadline = std::time::Duration::from_millis(ms);
        }
        if let Some(m) = self.memory_bytes {
            limits.memory_bytes = m;
        }
        if let Some(a) = self.answer_bytes {
            limits.answer_bytes = a;
        }
        limits
    }
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    fn operational(message: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: redact_text(&message.to_string()),
        }
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Plugin(PluginCommand::Check(args)) => check(args, cli.json).await,
        Command::Resolve { org, tenant } => resolve(&cli, org, tenant.as_deref()).await,
        Command::Serve { listen } => serve(&cli, *listen).await,
        Command::Plugin(PluginCommand::Swap { slot, file, admin }) => {
            let body = std::fs::read(file)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
            admin_call(admin, "PUT", &format!("/plugins/{slot}"), body, cli.json).await
        }
        Command::Plugin(PluginCommand::Publish {
            slot,
            file,
            registry,
        }) => publish(&cli, slot, file, registry.as_deref()).await,
        Command::Plugin(PluginCommand::Rollback { slot, admin }) => {
            admin_call(
                admin,
                "POST",
                &format!("/plugins/{slot}/rollback"),
                Vec::new(),
                cli.json,
            )
            .await
        }
        Command::Orgs(c) => orgs(&cli, c).await,
        Command::Tenants(c) => tenants(&cli, c).await,
        Command::Rls(RlsCommand::Enable { table, apply, org }) => {
            rls_enable(&cli, table, *apply, org.as_deref()).await
        }
        Command::Health => health(&cli).await,
        Command::Migrate(args) => migrate(&cli, args).await,
    }
}

async fn publish(
    cli: &Cli,
    slot: &str,
    file: &std::path::Path,
    registry: Option<&str>,
) -> Result<(), Failure> {
    let kind = PluginKind::from_world(slot).ok_or_else(|| {
        Failure::usage(format!(
            "unknown slot `{slot}`: slots are `org-resolver` and `tenant-policy`"
        ))
    })?;
    let url = match registry {
        Some(url) => url.to_owned(),
        None => host_config(cli)?.registry.url.ok_or_else(|| {
            Failure::usage(
                "no registry: pass --registry <postgres-url>, set TENANTRY_REGISTRY_URL, \
                 or [registry] url in the config file",
            )
        })?,
    };
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    // Followers compare sha256s of what they run: publish the binary, never WAT text.
    if !bytes.starts_with(b"\0asm") {
        return Err(Failure::usage(format!(
            "{} is not a compiled component: publish the .wasm (WAT is accepted only by swaps)",
            file.display()
        )));
    }
    // Refuse here what every follower would refuse: not a component, wrong world or version.
    let runtime = PluginRuntime::new(EngineOptions {
        pooling: false,
        ..EngineOptions::default()
    })
    .map_err(Failure::operational)?;
    runtime
        .load(
            Some(kind),
            PluginSpec::default(),
            &bytes,
            &file.display().to_string(),
        )
        .await
        .map_err(|e| Failure::usage(format!("not published: {e}")))?;
    tenantry::registry::install_schema(&url)
        .await
        .map_err(Failure::operational)?;
    let by = format!("tenantry-cli@{}", tenantry::registry::default_instance());
    let published = tenantry::registry::publish(&url, kind, &bytes, &by)
        .await
        .map_err(Failure::operational)?;
    emit(
        cli.json,
        serde_json::json!({"slot": slot, "version": published.version, "sha256": published.sha256,
            "registry": tenantry::redact::redact_url(&url)}),
        || {
            format!(
                "published {slot} version {} (sha256 {}) to {}",
                published.version,
                &published.sha256[..12],
                tenantry::redact::redact_url(&url)
            )
        },
    );
    Ok(())
}

async fn serve(cli: &Cli, listen: std::net::SocketAddr) -> Result<(), Failure> {
    let config = host_config(cli)?;
    let registry = config.registry.clone();
    let host = Host::load(config).await.map_err(Failure::operational)?;
    // Dropped (and stopped) when the server returns.
    let _follower = registry.url.as_ref().map(|url| {
        let options = registry.follow_options();
        eprintln!(
            "following the plugin registry at {} as {}",
            tenantry::redact::redact_url(url),
            options.instance
        );
        tenantry::registry::follow(host.clone(), url.clone(), options)
    });
    let metrics = tenantry::admin::install_prometheus().map_err(Failure::operational)?;
    let token = std::env::var("TENANTRY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if token.is_none() {
        tracing::warn!("TENANTRY_ADMIN_TOKEN is not set: mutating admin endpoints are disabled");
    }
    let public_read = std::env::var("TENANTRY_ADMIN_PUBLIC_READ")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    let options = tenantry::admin::AdminOptions {
        token,
        metrics: Some(metrics),
        public_read,
    };
    let app = tenantry::admin::router(host, options);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::operational(format!("cannot listen on {listen}: {e}")))?;
    eprintln!("tenantry admin listening on http://{listen}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(Failure::operational)
}

fn host_config(cli: &Cli) -> Result<HostConfig, Failure> {
    let config = match &cli.config {
        Some(path) => HostConfig::from_file(path).and_then(HostConfig::with_env),
        None => HostConfig::from_env(),
    };
    config.map_err(|e| Failure::usage(e.to_string()))
}

async fn load_host(cli: &Cli) -> Result<Host, Failure> {
    Host::load(host_config(cli)?)
        .await
        .map_err(Failure::operational)
}

/// Print `value` as JSON, or `text` otherwise.
fn emit(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

async fn resolve(cli: &Cli, org: &str, tenant: Option<&str>) -> Result<(), Failure> {
    let org = OrgId::new(org).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(t) = tenant {
        tenantry::TenantId::new(t).map_err(|e| Failure::usage(e.to_string()))?;
    }
    let host = load_host(cli).await?;
    let resolution = host.resolution(&org).await.map_err(Failure::operational)?;
    let target = &resolution.target;
    let mut out = serde_json::json!({
        "org": org.as_str(),
        "url": target.redacted_url(),
        "source": resolution.source,
        "region": target.region,
        "ttl_ms": target.ttl.map(|t| t.as_millis() as u64),
        "labels": target.labels,
    });
    let mut line = format!("{org} -> {}", target.redacted_url());
    if let Some(t) = tenant {
        let scoped = host
            .org(org.as_str())
            .map_err(Failure::operational)?
            .tenant(t)
            .await
            .map_err(Failure::operational)?;
        let isolation = format!("{:?}", scoped.isolation());
        out["tenant"] = serde_json::json!({
            "id": t, "isolation": redact_text(&isolation), "database": redact_text(scoped.database()),
            "read_only": scoped.read_only(), "max_connections": scoped.max_connections(),
        });
        line = format!(
            "{line}\n{org}/{t} -> {} ({})",
            redact_text(scoped.database()),
            redact_text(&isolation)
        );
    }
    emit(cli.json, out, || line);
    Ok(())
}

/// A progress bar on stderr for `n` items (hidden when stderr is not a terminal).
fn progress(n: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

async fn orgs(cli: &Cli, command: &OrgsCommand) -> Result<(), Failure> {
    let host = load_host(cli).await?;
    match command {
        OrgsCommand::Create { ids } => {
            let bar = progress(ids.len(), "creating orgs");
            let mut failed = Vec::new();
            for id in ids {
                if let Err(e) = host.create_org(id).await {
                    failed
                        .push(serde_json::json!({"org": id, "error": redact_text(&e.to_string())}));
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            let created = ids.len() - failed.len();
            emit(
                cli.json,
                serde_json::json!({"created": created, "failed": failed}),
                || {
                    let mut s = format!("created {created} of {} org(s)", ids.len());
                    for f in &failed {
                        s.push_str(&format!(
                            "\n  {}: {}",
                            f["org"].as_str().unwrap_or(""),
                            f["error"].as_str().unwrap_or("")
                        ));
                    }
                    s
                },
            );
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::operational(format!(
                    "{} org(s) could not be created",
                    failed.len()
                )))
            }
        }
        OrgsCommand::Delete { id, yes } => {
            host.delete_org(id, *yes)
                .await
                .map_err(Failure::operational)?;
            emit(cli.json, serde_json::json!({"deleted": id}), || {
                format!("deleted org {id}")
            });
            Ok(())
        }
        OrgsCommand::List => {
            let orgs = host.list_orgs().await.map_err(Failure::operational)?;
            let names: Vec<&str> = orgs.iter().map(OrgId::as_str).collect();
            emit(cli.json, serde_json::json!(names), || names.join("\n"));
            Ok(())
        }
        OrgsCommand::Exists { id } => {
            let exists = host.org_exists(id).await.map_err(Failure::operational)?;
            emit(
                cli.json,
                serde_json::json!({"org": id, "exists": exists}),
                || format!("{id}: {}", if exists { "exists" } else { "does not exist" }),
            );
            if exists {
                Ok(())
            } else {
                Err(Failure {
                    code: 1,
                    message: format!("org {id} does not exist"),
                })
            }
        }
        OrgsCommand::Preload { ids, concurrency } => {
            let ids: Vec<OrgId> = ids
                .iter()
                .map(|i| OrgId::new(i).map_err(|e| Failure::usage(e.to_string())))
                .collect::<Result<_, _>>()?;
            let bar = progress(ids.len(), "resolving orgs");
            let mut failed = Vec::new();
            for chunk in ids.chunks((*concurrency).max(1)) {
                let report = host.preload_orgs(chunk.to_vec(), *concurrency).await;
                for (org, e) in report.failed {
                    failed.push(serde_json::json!({"org": org.as_str(), "error": e.to_string()}));
                }
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            let ok = ids.len() - failed.len();
            emit(
                cli.json,
                serde_json::json!({"resolved": ok, "failed": failed}),
                || {
                    let mut s = format!("resolved {ok} of {} org(s)", ids.len());
                    for f in &failed {
                        s.push_str(&format!(
                            "\n  {}: {}",
                            f["org"].as_str().unwrap_or(""),
                            f["error"].as_str().unwrap_or("")
                        ));
                    }
                    s
                },
            );
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::operational(format!(
                    "{} org(s) failed to resolve",
                    failed.len()
                )))
            }
        }
    }
}

async fn tenants(cli: &Cli, command: &TenantsCommand) -> Result<(), Failure> {
    let host = load_host(cli).await?;
    match command {
        TenantsCommand::Create { id, org } => {
            host.create_tenant(id, org.as_deref())
                .await
                .map_err(Failure::operational)?;
            emit(
                cli.json,
                serde_json::json!({"created": id, "org": org}),
                || format!("created tenant {id}"),
            );
        }
        TenantsCommand::Delete { id, org, yes } => {
            host.delete_tenant(id, org.as_deref(), *yes)
                .await
                .map_err(Failure::operational)?;
            emit(
                cli.json,
                serde_json::json!({"deleted": id, "org": org}),
                || format!("deleted tenant {id}"),
            );
        }
        TenantsCommand::List { org, filter, limit } => {
            let filter = filter.clone().unwrap_or_default();
            let list = host
                .list_tenants(
                    org.as_deref(),
                    |t| t.as_str().contains(filter.as_str()),
                    *limit,
                )
                .await
                .map_err(Failure::operational)?;
            let names: Vec<&str> = list.iter().map(|t| t.as_str()).collect();
            emit(cli.json, serde_json::json!(names), || names.join("\n"));
        }
        TenantsCommand::Move {
            tenant,
            from,
            to,
            batch_size,
            dry_run,
            keep_source,
            abort,
            settle_ms,
        } => {
            let mut options = tenantry::relocate::MoveOptions {
                batch_size: *batch_size,
                dry_run: *dry_run,
                keep_source: *keep_source,
                abort: *abort,
                ..Default::default()
            };
            if let Some(ms) = settle_ms {
                options.settle = std::time::Duration::from_millis(*ms);
            }
            let report = host
                .move_tenant(tenant, from, to, options)
                .await
                .map_err(Failure::operational)?;
            emit(
                cli.json,
                serde_json::to_value(&report).unwrap_or_default(),
                || move_text(&report),
            );
        }
        TenantsCommand::Exists { id, org } => {
            let exists = host
                .tenant_exists(id, org.as_deref())
                .await
                .map_err(Failure::operational)?;
            emit(
                cli.json,
                serde_json::json!({"tenant": id, "exists": exists}),
                || format!("{id}: {}", if exists { "exists" } else { "does not exist" }),
            );
            if !exists {
                return Err(Failure {
                    code: 1,
                    message: format!("tenant {id} does not exist"),
                });
            }
        }
    }
    Ok(())
}

/// The text form of a move report: a table per table, the states, who serves the tenant.
fn move_text(r: &tenantry::relocate::MoveReport) -> String {
    let mut s = if r.aborted {
        format!(
            "aborted the move of tenant {} from org {} to org {} ({} isolation)",
            r.tenant, r.from, r.to, r.isolation
        )
    } else if r.dry_run {
        format!(
            "dry run: tenant {} would move from org {} to org {} ({} isolation); nothing changed",
            r.tenant, r.from, r.to, r.isolation
        )
    } else {
        format!(
            "tenant {}: org {} -> org {} ({} isolation)",
            r.tenant, r.from, r.to, r.isolation
        )
    };
    let width = r
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    s.push_str(&format!(
        "\n  {:width$}  {:>8}  {:>10}",
        "table", "rows", "bytes"
    ));
    s.push_str(if r.dry_run {
        "  est. on disk"
    } else if r.aborted {
        ""
    } else {
        "  checksum"
    });
    for t in &r.tables {
        s.push_str(&format!(
            "\n  {:width$}  {:>8}  {:>10}",
            t.table, t.rows, t.bytes
        ));
        if r.dry_run {
            match t.relation_share_bytes {
                Some(b) => s.push_str(&format!("  {b}")),
                None => s.push_str("  (not analysed)"),
            }
        } else if !r.aborted {
            let sum = t.checksum.as_deref().unwrap_or("");
            s.push_str(&format!(
                "  {sum}{}",
                if t.verified { " verified" } else { "" }
            ));
        }
    }
    s.push_str(&format!(
        "\n  {} table(s), {} row(s), {} byte(s)",
        r.tables.len(),
        r.rows,
        r.bytes
    ));
    if !r.dry_run && !r.aborted {
        s.push_str(&format!(" in {} batch(es)", r.batches));
    }
    if let Some(from) = r.resumed_from {
        s.push_str(&format!("\nresumed from state: {from}"));
    }
    if let Some(state) = r.state {
        let steps: Vec<&str> = r.steps.iter().map(|s| s.as_str()).collect();
        s.push_str(&format!("\nstate: {state}"));
        if !steps.is_empty() {
            s.push_str(&format!(" (this run: {})", steps.join(" -> ")));
        }
    }
    s.push_str(&format!("\n{}", r.served_by));
    s
}

async fn rls_enable(cli: &Cli, table: &str, apply: bool, org: Option<&str>) -> Result<(), Failure> {
    let sql = tenantry::isolation::postgres::enable_rls_sql(table)
        .map_err(|e| Failure::usage(e.to_string()))?;
    if !apply {
        println!("{sql}");
        return Ok(());
    }
    let host = load_host(cli).await?;
    let scoped = match org {
        Some(org) => host.org(org).map_err(Failure::operational)?.get().await,
        None => host.get().await,
    }
    .map_err(Failure::operational)?;
    let mut conn = scoped
        .acquire::<sqlx::Postgres>()
        .await
        .map_err(Failure::operational)?;
    tenantry::isolation::postgres::enable_rls(&mut *conn, table)
        .await
        .map_err(Failure::operational)?;
    emit(
        cli.json,
        serde_json::json!({"table": table, "rls": "enabled"}),
        || format!("row-level security enabled on {table}"),
    );
    Ok(())
}

async fn migrate(cli: &Cli, args: &MigrateArgs) -> Result<(), Failure> {
    use tenantry::migrate::{AppOutcome, MigrateEvent, MigrateOptions};
    if args.concurrency == 0 {
        return Err(Failure::usage("--concurrency must be at least 1"));
    }
    let orgs = match &args.orgs {
        Some(list) => Some(
            list.iter()
                .map(|o| OrgId::new(o).map_err(|e| Failure::usage(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let host = load_host(cli).await?;
    if let Some(wanted) = &args.apps {
        let known = host.apps().await.map_err(Failure::operational)?;
        if let Some(unknown) = wanted.iter().find(|a| !known.contains(a)) {
            return Err(Failure::usage(format!(
                "no app `{unknown}` in {}: the apps are {}",
                host.config().migrations.apps_dir.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    if orgs.is_some() && !host.config().orgs {
        return Err(Failure::usage(
            "--orgs needs organizations enabled (TENANTRY_ORGS=true)",
        ));
    }
    let options = MigrateOptions {
        apps: args.apps.clone(),
        orgs,
        concurrency: args.concurrency,
        dry_run: args.dry_run,
    };
    let bar = progress(
        0,
        if args.dry_run {
            "checking"
        } else {
            "migrating"
        },
    );
    let report = tenantry::migrate::run_with(&host, &options, |event| match event {
        MigrateEvent::Discovered { scopes } => bar.set_length(scopes as u64),
        MigrateEvent::Finished(_) => bar.inc(1),
        _ => {}
    })
    .await
    .map_err(Failure::operational)?;
    bar.finish_and_clear();
    let summary = report.summary();
    if cli.json {
        let mut value = serde_json::to_value(&report).map_err(Failure::operational)?;
        value["summary"] = serde_json::to_value(summary).map_err(Failure::operational)?;
        println!("{value}");
    } else {
        let mut rows = vec![[
            "ORG".to_owned(),
            "TENANT".to_owned(),
            "DATABASE".to_owned(),
            "APP".to_owned(),
            "RESULT".to_owned(),
        ]];
        let versions = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        for scope in &report.scopes {
            let org = scope.org.as_ref().map_or("-".to_owned(), |o| o.to_string());
            let tenant = scope
                .tenant
                .as_ref()
                .map_or("-".to_owned(), |t| t.to_string());
            let mut row = |app: &str, result: String| {
                rows.push([
                    org.clone(),
                    tenant.clone(),
                    redact_text(&scope.database),
                    app.to_owned(),
                    redact_text(&result),
                ]);
            };
            for app in &scope.apps {
                let result = match &app.outcome {
                    AppOutcome::Applied { versions: v } => format!("applied {}", versions(v)),
                    AppOutcome::AlreadyCurrent => "current".to_owned(),
                    AppOutcome::Pending { versions: v } => format!("pending {}", versions(v)),
                    AppOutcome::Failed { applied, reason } if applied.is_empty() => {
                        format!("FAILED: {reason}")
                    }
                    AppOutcome::Failed { applied, reason } => {
                        format!("FAILED after applying {}: {reason}", versions(applied))
                    }
                };
                row(&app.app, result);
            }
            if let Some(e) = &scope.error {
                row("-", format!("FAILED: {e}"));
            }
        }
        let mut width = [0usize; 4];
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for r in &rows {
            let mut line = String::new();
            for (w, cell) in width.iter().zip(r) {
                line.push_str(&format!("{cell:<w$}  "));
            }
            line.push_str(&r[4]);
            println!("{}", line.trim_end());
        }
        let what = if report.apps.is_empty() {
            " (no apps found)".to_owned()
        } else {
            format!(
                " x {} app(s) ({})",
                report.apps.len(),
                report.apps.join(", ")
            )
        };
        if report.dry_run {
            println!(
                "dry run over {} scope(s){what}: {} pending, {} current, {} failed; nothing was changed",
                summary.scopes, summary.pending, summary.current, summary.failed
            );
        } else {
            println!(
                "{} scope(s){what}: {} applied, {} current, {} failed",
                summary.scopes, summary.applied, summary.current, summary.failed
            );
        }
    }
    if report.failed() {
        return Err(Failure::operational(format!(
            "{} migration(s) failed; fix the cause and run `tenantry migrate` again: what \
             applied stays applied and only the rest runs",
            summary.failed
        )));
    }
    Ok(())
}

async fn health(cli: &Cli) -> Result<(), Failure> {
    let host = load_host(cli).await?;
    let health = host.health().await;
    let value = serde_json::to_value(&health).map_err(Failure::operational)?;
    emit(cli.json, value.clone(), || {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    });
    if health.healthy {
        Ok(())
    } else {
        Err(Failure::operational(
            health.error.unwrap_or_else(|| "unhealthy".into()),
        ))
    }
}

/// Call the admin server over plain HTTP with the bearer token from `TENANTRY_ADMIN_TOKEN`.
async fn admin_call(
    addr: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    json: bool,
) -> Result<(), Failure> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let token = std::env::var("TENANTRY_ADMIN_TOKEN").unwrap_or_default();
    let response = tenantry::http::client::send(tenantry::http::client::Request {
        addr,
        method,
        path,
        headers: &[(hyper::header::AUTHORIZATION, format!("Bearer {token}"))],
        body,
        max_body: 16 << 20,
    })
    .await
    .map_err(|e| match e {
        tenantry::http::client::ClientError::Connect { source, .. } => {
            Failure::operational(format!(
                "cannot reach the admin server at {addr}: {source} (is `tenantry serve` running?)"
            ))
        }
        e => Failure::operational(e),
    })?;
    let status = hyper::StatusCode::from_u16(response.status).map_err(Failure::operational)?;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    if status.is_success() {
        emit(
            json,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone())),
            || text.clone(),
        );
        Ok(())
    } else {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(Failure::operational(format!(
            "{} {status}: {message}",
            path
        )))
    }
}

fn parse_grants(raw: &[String]) -> Result<Grants, Failure> {
    if raw.is_empty() {
        return Ok(Grants::of(&[
            Capability::Log,
            Capability::Config,
            Capability::Clock,
        ]));
    }
    let mut grants = Grants::NONE;
    for item in raw.iter().flat_map(|r| r.split(',')) {
        let item = item.trim();
        if item == "none" || item.is_empty() {
            continue;
        }
        grants = grants.with(item.parse::<Capability>().map_err(Failure::usage)?);
    }
    Ok(grants)
}

async fn check(args: &CheckArgs, json: bool) -> Result<(), Failure> {
    if !args.file.is_file() {
        return Err(Failure::usage(format!(
            "{} is not a file: pass the path of a plugin component (.wasm) or WAT text (.wat)",
            args.file.display()
        )));
    }
    let mut config = std::collections::BTreeMap::new();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        config.insert("database-url".to_owned(), url);
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--set {kv:?}: expected KEY=VALUE")))?;
        config.insert(k.to_owned(), v.to_owned());
    }
    let spec = PluginSpec {
        grants: parse_grants(&args.grants)?,
        http_allow: args.http_allow.clone(),
        config,
        limits: args.limits.apply(),
        ..PluginSpec::default()
    };
    let runtime = PluginRuntime::new(EngineOptions {
        pooling: false,
        ..EngineOptions::default()
    })
    .map_err(Failure::operational)?;
    let plugin = runtime
        .load_file(None, spec, &args.file)
        .await
        .map_err(Failure::operational)?;
    let info = plugin.info().clone();
    let mut results = Vec::new();
    let mut failed = false;
    for sample in &args.samples {
        let (outcome, ok) = match info.kind {
            PluginKind::OrgResolver => match plugin.resolve(sample).await {
                Ok(Ok(t)) => (
                    serde_json::json!({"ok": {"url": t.redacted_url(), "region": t.region,
                        "ttl_ms": t.ttl.map(|d| d.as_millis() as u64), "labels": t.labels}}),
                    true,
                ),
                Ok(Err(f)) => (serde_json::json!({"refused": f.to_string()}), true),
                Err(e) => (serde_json::json!({"failed": e.to_string()}), false),
            },
            PluginKind::TenantPolicy => {
                let (org, tenant) = sample.split_once('/').unwrap_or(("", sample));
                let request = ScopeRequest {
                    org: org.into(),
                    tenant: tenant.into(),
                    ..ScopeRequest::default()
                };
                match plugin.scope(&request).await {
                    Ok(Ok(s)) => (
                        serde_json::json!({"ok": {"isolation": redact_text(&format!("{:?}", s.isolation)),
                            "read_only": s.read_only, "max_connections": s.max_connections,
                            "settings": s.settings}}),
                        true,
                    ),
                    Ok(Err(d)) => (serde_json::json!({"refused": d.to_string()}), true),
                    Err(e) => (serde_json::json!({"failed": e.to_string()}), false),
                }
            }
        };
        failed |= !ok;
        results.push((sample.clone(), outcome));
    }
    if json {
        let samples: serde_json::Map<String, serde_json::Value> = results.into_iter().collect();
        let out = serde_json::json!({
            "file": args.file.display().to_string(),
            "world": info.kind.world(),
            "export": format!("tenantry:plugin/{}@{}", info.kind.interface(), info.version),
            "version": info.version,
            "size": info.size,
            "sha256": info.sha256,
            "imports": info.imports,
            "samples": samples,
        });
        println!("{out}");
    } else {
        println!("plugin   {}", args.file.display());
        println!(
            "world    {} (exports tenantry:plugin/{}@{})",
            info.kind.world(),
            info.kind.interface(),
            info.version
        );
        println!("version  {}", info.version);
        println!("size     {} bytes", info.size);
        println!("sha256   {}", info.sha256);
        println!(
            "imports  {}",
            if info.imports.is_empty() {
                "none".to_owned()
            } else {
                info.imports.join(", ")
            }
        );
        for (sample, outcome) in &results {
            let line = match outcome {
                serde_json::Value::Object(m) if m.contains_key("ok") => format!("ok {}", m["ok"]),
                serde_json::Value::Object(m) if m.contains_key("refused") => {
                    format!("refused: {}", m["refused"].as_str().unwrap_or_default())
                }
                serde_json::Value::Object(m) => {
                    format!("FAILED: {}", m["failed"].as_str().unwrap_or_default())
                }
                other => other.to_string(),
            };
            println!("sample   {sample} -> {line}");
        }
    }
    if failed {
        return Err(Failure::operational(
            "the plugin failed on at least one sample (see above)",
        ));
    }
    Ok(())
}
