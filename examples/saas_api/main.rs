//! A small multi-tenant notes API on axum: the caller's identity picks the org and tenant,
//! and every query runs on a connection that can only see that tenant's notes.
//!
//! ```sh
//! cargo run -p tenantry-examples --example saas_api            # SQLite under target/saas-data
//! curl -s -H 'authorization: Bearer acme.alice' -d 'ship it' localhost:3000/notes
//! curl -s -H 'authorization: Bearer acme.alice' localhost:3000/notes
//! curl -s -H 'authorization: Bearer acme.bob'   localhost:3000/notes      # bob sees none of alice's
//! curl -s localhost:3001/metrics                                          # admin server
//! ```
//!
//! On PostgreSQL (`DATABASE_URL=postgresql://app:…@host/{org}` with `TENANTRY_ADMIN_DATABASE_URL`),
//! the `notes` table carries a `tenant_id` column under row-level security; this example
//! creates it on first use of each org database.
//!
//! The "authentication" here is a demo: `Bearer <org>.<tenant>`. A real app verifies a token
//! and inserts the resulting [`Identity`]; headers such as `x-org-id` can then never move a
//! caller into another tenant (403).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use tenantry::http::{ApiError, Identity, TenancyLayer, Tenant};
use tenantry::{Backend, Host};

/// Databases whose `notes` table is known to exist.
type Ready = Arc<Mutex<HashSet<String>>>;

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "database_error",
        e.to_string(),
    )
}

/// Create the table once per database: a file per tenant on SQLite, a shared table under
/// row-level security on PostgreSQL.
async fn ensure_schema(t: &Tenant, ready: &Ready) -> Result<(), ApiError> {
    let key = t.db.database().to_owned();
    if ready.lock().unwrap().contains(&key) {
        return Ok(());
    }
    match t.db.backend() {
        Backend::Sqlite => {
            let mut conn = t.db.acquire::<sqlx::Sqlite>().await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            )
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
        Backend::Postgres => {
            let mut conn = t.db.acquire::<sqlx::Postgres>().await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, body text NOT NULL, \
                 tenant_id text NOT NULL DEFAULT current_setting('tenantry.tenant_id'))",
            )
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            tenantry::isolation::postgres::enable_rls(&mut *conn, "notes")
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "schema", e.to_string())
                })?;
        }
    }
    ready.lock().unwrap().insert(key);
    Ok(())
}

async fn list(
    t: Tenant,
    ready: axum::extract::State<Ready>,
) -> Result<Json<Vec<String>>, ApiError> {
    ensure_schema(&t, &ready).await?;
    let notes = match t.db.backend() {
        Backend::Sqlite => {
            let mut conn = t.db.acquire::<sqlx::Sqlite>().await?;
            sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
                .fetch_all(&mut *conn)
                .await
        }
        Backend::Postgres => {
            let mut conn = t.db.acquire::<sqlx::Postgres>().await?;
            sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
                .fetch_all(&mut *conn)
                .await
        }
    };
    Ok(Json(notes.map_err(db_error)?))
}

async fn add(
    t: Tenant,
    ready: axum::extract::State<Ready>,
    body: String,
) -> Result<StatusCode, ApiError> {
    ensure_schema(&t, &ready).await?;
    let done = match t.db.backend() {
        Backend::Sqlite => {
            let mut conn = t.db.acquire::<sqlx::Sqlite>().await?;
            sqlx::query("INSERT INTO notes (body) VALUES (?)")
                .bind(&body)
                .execute(&mut *conn)
                .await
                .map(drop)
        }
        Backend::Postgres => {
            let mut conn = t.db.acquire::<sqlx::Postgres>().await?;
            sqlx::query("INSERT INTO notes (body) VALUES ($1)")
                .bind(&body)
                .execute(&mut *conn)
                .await
                .map(drop)
        }
    };
    done.map_err(db_error)?;
    Ok(StatusCode::CREATED)
}

/// Demo authentication: `authorization: Bearer <org>.<tenant>` becomes the caller's identity.
async fn demo_auth(mut request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some((org, tenant)) = bearer.and_then(|b| b.split_once('.')) {
        let identity = Identity {
            subject: format!("{tenant}@{org}"),
            org: Some(org.into()),
            tenant: Some(tenant.into()),
            claims: vec![],
        };
        request.extensions_mut().insert(identity);
    }
    next.run(request).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    if std::env::var_os("DATABASE_URL").is_none() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/saas-data");
        std::fs::create_dir_all(&data)?;
        let url = format!("sqlite://{}/{{org}}.db", data.canonicalize()?.display());
        println!("DATABASE_URL not set: using {url}");
        return run(tenantry::HostConfig {
            database_url: Some(url),
            orgs: true,
            tenants: true,
            ..tenantry::HostConfig::default()
        })
        .await;
    }
    run(tenantry::HostConfig::from_env()?).await
}

async fn run(config: tenantry::HostConfig) -> anyhow::Result<()> {
    let host = Host::load(config).await?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = Router::new()
        .route("/notes", get(list).post(add))
        .with_state(Ready::default())
        .layer(TenancyLayer::new(host.clone()))
        .layer(axum::middleware::from_fn(demo_auth));
    let admin = tenantry::admin::router(
        host,
        tenantry::admin::AdminOptions {
            token: std::env::var("TENANTRY_ADMIN_TOKEN").ok(),
            metrics: tenantry::admin::install_prometheus().ok(),
            public_read: false,
        },
    );
    let api = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let ops = tokio::net::TcpListener::bind(("127.0.0.1", port + 1)).await?;
    println!(
        "notes API on http://127.0.0.1:{port}, admin on http://127.0.0.1:{}",
        port + 1
    );
    tokio::try_join!(axum::serve(api, app), axum::serve(ops, admin))?;
    Ok(())
}

fn tracing_subscriber_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
}
