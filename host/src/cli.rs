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
    /// Resolve an org to its database (password redacted) using the configured host.
    Resolve {
        /// The org id.
        org: String,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Load a component, report its world, version, size and sha256, and call it on samples.
    ///
    /// The plugin gets the `log`, `config` and `clock` capabilities unless --grant says
    /// otherwise; `DATABASE_URL` is passed as its `database-url` config key.
    Check(CheckArgs),
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
        Command::Resolve { org } => resolve(&cli, org).await,
    }
}

fn host_config(cli: &Cli) -> Result<HostConfig, Failure> {
    let config = match &cli.config {
        Some(path) => HostConfig::from_file(path).and_then(HostConfig::with_env),
        None => HostConfig::from_env(),
    };
    config.map_err(|e| Failure::usage(e.to_string()))
}

async fn resolve(cli: &Cli, org: &str) -> Result<(), Failure> {
    let org = OrgId::new(org).map_err(|e| Failure::usage(e.to_string()))?;
    let host = Host::load(host_config(cli)?)
        .await
        .map_err(Failure::operational)?;
    let target = host.resolve_org(&org).await.map_err(Failure::operational)?;
    if cli.json {
        let out = serde_json::json!({
            "org": org.as_str(),
            "url": target.redacted_url(),
            "region": target.region,
            "ttl_ms": target.ttl.map(|t| t.as_millis() as u64),
            "labels": target.labels,
        });
        println!("{out}");
    } else {
        println!("{org} -> {}", target.redacted_url());
    }
    Ok(())
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
