//! Semantic search per tenant: three companies' knowledge bases (280 real sentences, in
//! `sentences.txt`) in one pgvector table, each tenant searching only its own.
//!
//! Embeddings are computed locally and deterministically — no model download: a hashed
//! bag of words plus character trigrams ("feature hashing") into 256 dimensions,
//! L2-normalised. It captures shared words and word forms (`water`, `watering`), not
//! meaning; swap [`embed`] for a real embedding model and nothing else changes.
//!
//! ```sh
//! D=$(mktemp -d); eval "$(scripts/postgres.sh start $D)"    # PostgreSQL with pgvector
//! cargo run -p tenantry-examples --example semantic_search
//! scripts/postgres.sh stop $D
//! ```
//!
//! With `TENANTRY_TEST_PG_*` from `scripts/postgres.sh` it makes (and drops) a database of
//! its own; otherwise set `DATABASE_URL` to a PostgreSQL database where `CREATE EXTENSION
//! vector` was run, as a role without SUPERUSER/BYPASSRLS.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use sqlx::{Connection, PgConnection, Postgres};
use tenantry::vectors::{Distance, Document, Filter, HybridSearch, Search, VectorTable, Vectors};
use tenantry::{Host, HostConfig};

const DIMS: usize = 256;
const SENTENCES: &str = include_str!("sentences.txt");
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "how", "i", "if",
    "in", "is", "it", "my", "of", "on", "or", "our", "so", "the", "their", "they", "to", "we",
    "what", "when", "with", "you", "your",
];

/// FNV-1a, 64 bits: a stable hash (std's `DefaultHasher` may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Add `feature` with `weight` to a signed hashed bucket.
fn add(v: &mut [f32], feature: &str, weight: f32) {
    let h = fnv1a(feature.as_bytes());
    let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
    v[(h % DIMS as u64) as usize] += sign * weight;
}

/// A deterministic text embedding: words (weight 1) and the character trigrams of each
/// word padded with spaces (weight 0.3), hashed into `DIMS` buckets, L2-normalised.
fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    let lower = text.to_lowercase();
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(w))
    {
        add(&mut v, word, 1.0);
        let padded: Vec<char> = format!(" {word} ").chars().collect();
        for tri in padded.windows(3) {
            add(&mut v, &format!("#{}", tri.iter().collect::<String>()), 0.3);
        }
    }
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url has a database");
    format!("{base}/{db}")
}

/// The database to use: a fresh one on the script's server, or `DATABASE_URL`.
async fn database() -> anyhow::Result<(String, Option<(String, String)>)> {
    if let (Ok(admin), Ok(app)) = (
        std::env::var("TENANTRY_TEST_PG_ADMIN_URL"),
        std::env::var("TENANTRY_TEST_PG_APP_URL"),
    ) {
        let db = format!("semantic_search_{}", std::process::id());
        let mut conn = PgConnection::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{db}\" OWNER tenantry_app"
        )))
        .execute(&mut conn)
        .await?;
        // pgvector is created by a superuser, once per database.
        let mut conn = PgConnection::connect(&with_database(&admin, &db)).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
            .execute(&mut conn)
            .await?;
        return Ok((with_database(&app, &db), Some((admin, db))));
    }
    let url = std::env::var("DATABASE_URL").context(
        "no database: start one with pgvector (D=$(mktemp -d); eval \"$(scripts/postgres.sh \
         start $D)\") or set DATABASE_URL to a PostgreSQL database with the vector extension",
    )?;
    Ok((url, None))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (url, owned) = database().await?;
    let outcome = run(&url).await;
    if let Some((admin, db)) = owned {
        let mut conn = PgConnection::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
    }
    outcome
}

async fn run(url: &str) -> anyhow::Result<()> {
    // TENANTRY_TENANTS=true and TENANTRY_VECTORS=true, set in code here.
    let host = Host::load(HostConfig {
        database_url: Some(url.to_owned()),
        tenants: true,
        vectors: true,
        ..HostConfig::default()
    })
    .await?;
    let vectors = Vectors::new(&host)?;
    let shared = host.get().await?;
    let info = vectors.check(&shared).await?; // says how to install pgvector if it is missing
    println!(
        "PostgreSQL {} with pgvector {} in database {}",
        info.server_version, info.version, info.database
    );
    let spec = VectorTable::new("knowledge", DIMS, Distance::Cosine)?;
    vectors.create_table(&shared, &spec).await?;
    let table = vectors.table(&shared, "knowledge").await?;

    // Load every tenant's sentences through its own tenant connection.
    let mut by_tenant: BTreeMap<&str, Vec<Document>> = BTreeMap::new();
    for line in SENTENCES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut parts = line.splitn(3, '|');
        let (Some(tenant), Some(topic), Some(text)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("malformed line in sentences.txt: {line}");
        };
        let docs = by_tenant.entry(tenant).or_default();
        let id = format!("{tenant}/{}", docs.len() + 1);
        docs.push(
            Document::new(id, text, embed(text)).with_metadata(serde_json::json!({"topic": topic})),
        );
    }
    let started = Instant::now();
    for (tenant, docs) in &by_tenant {
        let scoped = host.tenant(tenant).await?;
        let mut conn = scoped.acquire::<Postgres>().await?;
        let n = table.upsert(&mut conn, docs).await?;
        println!("{tenant}: {n} sentences stored");
    }
    println!(
        "loaded in {:.0} ms\n",
        started.elapsed().as_secs_f64() * 1000.0
    );

    let mut checked = 0;
    // The same questions to every tenant: each answers from its own knowledge base only.
    for question in [
        "Can I get a refund if I cancel?",
        "What are your opening hours on Saturdays?",
        "How often should I water tomatoes?",
        "Which telescope should a beginner buy?",
    ] {
        println!("Q: {question}");
        for tenant in by_tenant.keys() {
            let scoped = host.tenant(tenant).await?;
            let mut conn = scoped.acquire::<Postgres>().await?;
            let hits = table
                .search(&mut conn, &Search::new(embed(question)).k(2))
                .await?;
            for hit in &hits {
                anyhow::ensure!(
                    hit.id.starts_with(&format!("{tenant}/")),
                    "tenant {tenant} got another tenant's row {}",
                    hit.id
                );
                checked += 1;
                println!("  [{tenant}] {:.3}  {}", hit.similarity, hit.content);
            }
        }
        println!();
    }

    // Hybrid: similarity plus full-text rank, restricted by metadata (a SQL predicate).
    let scoped = host.tenant("greenleaf-garden").await?;
    let mut conn = scoped.acquire::<Postgres>().await?;
    let question = "how do I keep slugs and aphids away from my plants";
    let hits = table
        .hybrid_search(
            &mut conn,
            &HybridSearch::new(embed(question), "slugs or aphids")
                .k(3)
                .filter(Filter::eq("topic", "pests")),
        )
        .await?;
    println!("Hybrid, greenleaf-garden, topic = pests: {question}");
    for hit in &hits {
        anyhow::ensure!(hit.metadata["topic"] == "pests", "filter ignored: {hit:?}");
        println!(
            "  score {:.3} = 0.7 × similarity {:.3} + 0.3 × text rank {:.3}  {}",
            hit.score,
            hit.similarity,
            hit.text_rank.unwrap_or_default(),
            hit.content
        );
    }
    let plan = table
        .explain(&mut conn, &Search::new(embed(question)).k(5))
        .await?;
    // A tenant of a hundred rows: the planner sorts its own rows exactly (through the
    // primary key); tenants with thousands of rows get the HNSW index.
    println!("\nPlan of a k-NN search for greenleaf-garden:");
    for line in plan.lines() {
        let short: String = line.chars().take(110).collect();
        let cut = if short.len() < line.len() { "…" } else { "" };
        println!("  {short}{cut}");
    }
    println!("\n{checked} results checked: every one belonged to the tenant that asked.");
    Ok(())
}
