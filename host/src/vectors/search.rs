//! k-NN and hybrid search, and the filters both take.

use std::time::SystemTime;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use super::sql::{self, Args};
use super::table::parse_metadata;
use super::{Distance, Vector, VectorError, VectorTable};

/// Largest `k` (and hybrid `candidates`): pgvector's `hnsw.ef_search` maximum.
pub const MAX_K: usize = 1000;
/// pgvector's default `hnsw.ef_search`.
const DEFAULT_EF_SEARCH: usize = 40;
/// pgvector's default `hnsw.max_scan_tuples`.
const DEFAULT_MAX_SCAN_TUPLES: u64 = 20_000;

/// A comparison for [`Filter::Number`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// A SQL predicate on a vector table's rows, rendered with bind parameters only. Combine
/// with [`Filter::All`], [`Filter::Any`] and [`Filter::Not`]; [`Search::filter`] and
/// [`HybridSearch::filter`] AND them together.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `metadata @> value`: the metadata contains this JSON (uses the GIN index).
    Contains(serde_json::Value),
    /// The metadata has this top-level key.
    HasKey(String),
    /// A top-level metadata number compared with `value`; rows where the key is missing
    /// or not a number do not match.
    Number {
        /// The key.
        key: String,
        /// How to compare.
        cmp: Cmp,
        /// With what (finite).
        value: f64,
    },
    /// The content matches this web-search-style query (`websearch_to_tsquery`: words,
    /// `"phrases"`, `or`, `-excluded`) in the table's language.
    Text(String),
    /// The id is one of these.
    Ids(Vec<String>),
    /// Written (inserted or last upserted) at or after this time.
    UpdatedSince(SystemTime),
    /// All of these (true when empty).
    All(Vec<Filter>),
    /// Any of these (false when empty).
    Any(Vec<Filter>),
    /// Not this.
    Not(Box<Filter>),
}

impl Filter {
    /// `metadata.key == value`, as containment (`metadata @> {"key": value}`).
    pub fn eq(key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        let mut map = serde_json::Map::new();
        map.insert(key.into(), value.into());
        Self::Contains(serde_json::Value::Object(map))
    }

    /// `metadata.key <cmp> value` for numbers.
    pub fn number(key: impl Into<String>, cmp: Cmp, value: f64) -> Self {
        Self::Number {
            key: key.into(),
            cmp,
            value,
        }
    }

    /// Full-text match of the content.
    pub fn text(query: impl Into<String>) -> Self {
        Self::Text(query.into())
    }

    /// The id is one of `ids`.
    pub fn ids<S: Into<String>>(ids: impl IntoIterator<Item = S>) -> Self {
        Self::Ids(ids.into_iter().map(Into::into).collect())
    }

    /// This and `other`.
    pub fn and(self, other: Filter) -> Self {
        match self {
            Self::All(mut all) => {
                all.push(other);
                Self::All(all)
            }
            first => Self::All(vec![first, other]),
        }
    }

    /// This or `other`.
    pub fn or(self, other: Filter) -> Self {
        match self {
            Self::Any(mut any) => {
                any.push(other);
                Self::Any(any)
            }
            first => Self::Any(vec![first, other]),
        }
    }

    /// Render as SQL into `out`, binding values into `args`.
    fn render(
        &self,
        table: &VectorTable,
        args: &mut Args,
        out: &mut String,
    ) -> Result<(), VectorError> {
        let lang = &table.language;
        match self {
            Self::Contains(value) => {
                let p = args.bind(value.to_string());
                out.push_str(&format!("(metadata @> {p}::jsonb)"));
            }
            Self::HasKey(key) => {
                let p = args.bind(key.clone());
                out.push_str(&format!("(metadata ? {p})"));
            }
            Self::Number { key, cmp, value } => {
                if !value.is_finite() {
                    return Err(VectorError::BadQuery {
                        reason: format!(
                            "the filter on metadata key {key:?} compares with {value}: use a finite number"
                        ),
                    });
                }
                let k = args.bind(key.clone());
                let v = args.bind(*value);
                out.push_str(&format!(
                    "((CASE WHEN pg_catalog.jsonb_typeof(metadata -> {k}) = 'number' \
                       THEN (metadata ->> {k})::float8 END) {op} {v})",
                    op = cmp.sql()
                ));
            }
            Self::Text(query) => {
                let p = args.bind(query.clone());
                out.push_str(&format!(
                    "(content_tsv @@ pg_catalog.websearch_to_tsquery('{lang}'::regconfig, {p}))"
                ));
            }
            Self::Ids(ids) => {
                let p = args.bind(ids.clone());
                out.push_str(&format!("(id = ANY({p}))"));
            }
            Self::UpdatedSince(time) => {
                let secs = match time.duration_since(SystemTime::UNIX_EPOCH) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => -e.duration().as_secs_f64(),
                };
                let p = args.bind(secs);
                out.push_str(&format!("(updated_at >= pg_catalog.to_timestamp({p}))"));
            }
            Self::All(all) | Self::Any(all) => {
                let (join, empty) = match self {
                    Self::All(_) => (" AND ", "TRUE"),
                    _ => (" OR ", "FALSE"),
                };
                if all.is_empty() {
                    out.push_str(empty);
                    return Ok(());
                }
                out.push('(');
                for (i, f) in all.iter().enumerate() {
                    if i > 0 {
                        out.push_str(join);
                    }
                    f.render(table, args, out)?;
                }
                out.push(')');
            }
            Self::Not(inner) => {
                out.push_str("(NOT ");
                inner.render(table, args, out)?;
                out.push(')');
            }
        }
        Ok(())
    }
}

fn and_filter(current: Option<Filter>, next: Filter) -> Option<Filter> {
    Some(match current {
        Some(f) => f.and(next),
        None => next,
    })
}

/// A k-nearest-neighbour search (see the module docs for how it runs).
#[derive(Debug, Clone)]
pub struct Search {
    embedding: Vector,
    k: usize,
    distance: Option<Distance>,
    filter: Option<Filter>,
    max_scan_tuples: u64,
    ef_search: usize,
}

impl Search {
    /// The 10 nearest rows to `embedding` by the table's default distance.
    pub fn new(embedding: impl Into<Vector>) -> Self {
        Self {
            embedding: embedding.into(),
            k: 10,
            distance: None,
            filter: None,
            max_scan_tuples: DEFAULT_MAX_SCAN_TUPLES,
            ef_search: DEFAULT_EF_SEARCH,
        }
    }

    /// Return at most `k` rows (1 to 1000).
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// The HNSW candidate list size (`hnsw.ef_search`): larger finds the true nearest
    /// neighbours more often and costs more. Default 40 (pgvector's); raised to `k` when
    /// smaller; at most 1000.
    pub fn ef_search(mut self, n: usize) -> Self {
        self.ef_search = n;
        self
    }

    /// Search by `distance` (the table must be indexed for it).
    pub fn distance(mut self, distance: Distance) -> Self {
        self.distance = Some(distance);
        self
    }

    /// Only rows matching `filter` (ANDed with earlier filters).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = and_filter(self.filter.take(), filter);
        self
    }

    /// Visit at most `n` index tuples looking for `k` rows that pass the tenant's policy
    /// and the filters (`hnsw.max_scan_tuples`, default 20 000). Raise it for tenants that
    /// own a tiny share of a huge table when their results come back short.
    pub fn max_scan_tuples(mut self, n: u64) -> Self {
        self.max_scan_tuples = n.max(1);
        self
    }
}

/// Vector similarity and full-text rank combined (see the module docs for the formula).
#[derive(Debug, Clone)]
pub struct HybridSearch {
    embedding: Vector,
    text: String,
    k: usize,
    distance: Option<Distance>,
    filter: Option<Filter>,
    vector_weight: f64,
    text_weight: f64,
    candidates: Option<usize>,
    max_scan_tuples: u64,
    ef_search: usize,
}

impl HybridSearch {
    /// The 10 best rows for `embedding` and the web-search-style query `text`, weighted
    /// 0.7 similarity + 0.3 text rank.
    pub fn new(embedding: impl Into<Vector>, text: impl Into<String>) -> Self {
        Self {
            embedding: embedding.into(),
            text: text.into(),
            k: 10,
            distance: None,
            filter: None,
            vector_weight: 0.7,
            text_weight: 0.3,
            candidates: None,
            max_scan_tuples: DEFAULT_MAX_SCAN_TUPLES,
            ef_search: DEFAULT_EF_SEARCH,
        }
    }

    /// Return at most `k` rows (1 to 1000).
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// `score = vector × similarity + text × text_rank`; both finite, non-negative, not
    /// both zero.
    pub fn weights(mut self, vector: f64, text: f64) -> Self {
        self.vector_weight = vector;
        self.text_weight = text;
        self
    }

    /// Rank the union of this many nearest rows and this many best text matches
    /// (default `max(4k, 40)`, at most 1000).
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = Some(n);
        self
    }

    /// Compare by `distance` (the table must be indexed for it).
    pub fn distance(mut self, distance: Distance) -> Self {
        self.distance = Some(distance);
        self
    }

    /// Only rows matching `filter` (ANDed with earlier filters), in both candidate sets.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = and_filter(self.filter.take(), filter);
        self
    }

    /// As [`Search::max_scan_tuples`].
    pub fn max_scan_tuples(mut self, n: u64) -> Self {
        self.max_scan_tuples = n.max(1);
        self
    }

    /// As [`Search::ef_search`]; raised to the candidate count when smaller.
    pub fn ef_search(mut self, n: usize) -> Self {
        self.ef_search = n;
        self
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// The document id.
    pub id: String,
    /// Its content.
    pub content: String,
    /// Its metadata.
    pub metadata: serde_json::Value,
    /// The distance to the query embedding (the operator's value).
    pub distance: f64,
    /// The similarity derived from it (see [`Distance::similarity`]).
    pub similarity: f64,
    /// `ts_rank_cd(…, 32)` of the text query, for hybrid searches.
    pub text_rank: Option<f64>,
    /// What results are ordered by: the similarity, or the hybrid score.
    pub score: f64,
}

/// A statement ready to run in a search transaction.
struct Prepared {
    sql: String,
    args: sqlx::postgres::PgArguments,
    distance: Distance,
    ef_search: usize,
    max_scan_tuples: u64,
}

fn check_k(k: usize, what: &str) -> Result<(), VectorError> {
    if !(1..=MAX_K).contains(&k) {
        return Err(VectorError::BadQuery {
            reason: format!("{what} = {k}: use 1 to {MAX_K}"),
        });
    }
    Ok(())
}

impl VectorTable {
    fn pick_distance(&self, requested: Option<Distance>) -> Result<Distance, VectorError> {
        let d = requested.unwrap_or(self.distances[0]);
        if !self.distances.contains(&d) {
            return Err(VectorError::DistanceNotIndexed {
                table: self.name.clone(),
                requested: d,
                requested_name: d.name(),
                indexed: self
                    .distances
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(d)
    }

    fn where_clause(
        &self,
        filter: Option<&Filter>,
        args: &mut Args,
    ) -> Result<String, VectorError> {
        let mut out = String::new();
        match filter {
            Some(f) => f.render(self, args, &mut out)?,
            None => out.push_str("TRUE"),
        }
        Ok(out)
    }

    fn prepare_search(&self, search: &Search) -> Result<Prepared, VectorError> {
        check_k(search.k, "k")?;
        self.check_embedding(&search.embedding, || "the query embedding".into())?;
        let distance = self.pick_distance(search.distance)?;
        let op = self.operator(distance);
        let mut args = Args::default();
        let q = args.bind(search.embedding.clone());
        let filter = self.where_clause(search.filter.as_ref(), &mut args)?;
        let k = args.bind(search.k as i64);
        let sql = format!(
            "SELECT id, content, metadata::text, (embedding {op} {q})::float8 AS distance \
               FROM {t} WHERE {filter} ORDER BY embedding {op} {q} LIMIT {k}",
            t = self.quoted,
        );
        Ok(Prepared {
            sql,
            args: args.finish()?,
            distance,
            ef_search: search.ef_search.max(search.k),
            max_scan_tuples: search.max_scan_tuples,
        })
    }

    fn prepare_hybrid(&self, search: &HybridSearch) -> Result<Prepared, VectorError> {
        check_k(search.k, "k")?;
        let candidates = search
            .candidates
            .unwrap_or((search.k * 4).max(40))
            .min(MAX_K);
        check_k(candidates, "candidates")?;
        let (wv, wt) = (search.vector_weight, search.text_weight);
        if !(wv.is_finite() && wt.is_finite() && wv >= 0.0 && wt >= 0.0 && wv + wt > 0.0) {
            return Err(VectorError::BadQuery {
                reason: format!(
                    "hybrid weights {wv} (vector) and {wt} (text): use finite, non-negative \
                     weights, not both zero"
                ),
            });
        }
        self.check_embedding(&search.embedding, || "the query embedding".into())?;
        let distance = self.pick_distance(search.distance)?;
        let op = self.operator(distance);
        let lang = &self.language;
        let t = &self.quoted;
        let mut args = Args::default();
        let q = args.bind(search.embedding.clone());
        let text = args.bind(search.text.clone());
        let cand = args.bind(candidates as i64);
        let k = args.bind(search.k as i64);
        let wv = args.bind(wv);
        let wt = args.bind(wt);
        let f1 = self.where_clause(search.filter.as_ref(), &mut args)?;
        let f2 = self.where_clause(search.filter.as_ref(), &mut args)?;
        let tsq = format!("pg_catalog.websearch_to_tsquery('{lang}'::regconfig, {text})");
        let similarity = distance.similarity_sql("distance");
        let sql = format!(
            "WITH vec AS ( \
                 SELECT id FROM {t} WHERE {f1} ORDER BY embedding {op} {q} LIMIT {cand} \
             ), txt AS ( \
                 SELECT id FROM {t} WHERE content_tsv @@ {tsq} AND {f2} \
                  ORDER BY pg_catalog.ts_rank_cd(content_tsv, {tsq}, 32) DESC, id LIMIT {cand} \
             ), scored AS ( \
                 SELECT d.id, d.content, d.metadata::text AS metadata, \
                        (d.embedding {op} {q})::float8 AS distance, \
                        pg_catalog.ts_rank_cd(d.content_tsv, {tsq}, 32)::float8 AS text_rank \
                   FROM {t} d WHERE d.id IN (SELECT id FROM vec UNION SELECT id FROM txt) \
             ) \
             SELECT id, content, metadata, distance, text_rank, {similarity} AS similarity, \
                    {wv}::float8 * {similarity} + {wt}::float8 * text_rank AS score \
               FROM scored ORDER BY score DESC, distance ASC, id ASC LIMIT {k}"
        );
        Ok(Prepared {
            sql,
            args: args.finish()?,
            distance,
            ef_search: search.ef_search.max(candidates).max(search.k),
            max_scan_tuples: search.max_scan_tuples,
        })
    }

    /// Begin the search transaction and apply its settings (see the module docs): one
    /// round trip (`BEGIN; SELECT set_config(…)` as one simple-protocol message), or a
    /// savepoint and the settings when `conn` is already in a transaction.
    async fn begin_search<'c>(
        &self,
        conn: &'c mut PgConnection,
        prepared: &Prepared,
    ) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, VectorError> {
        // Integers only: nothing from the caller is pasted into the statement.
        let ef_search = prepared.ef_search.clamp(1, MAX_K);
        let max_scan = prepared.max_scan_tuples.clamp(1, i32::MAX as u64);
        let settings = format!(
            "SELECT pg_catalog.set_config('hnsw.ef_search', '{ef_search}', true), \
                    pg_catalog.set_config('hnsw.iterative_scan', 'strict_order', true), \
                    pg_catalog.set_config('hnsw.max_scan_tuples', '{max_scan}', true), \
                    pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true)"
        );
        let begin_failed = |e: sqlx::Error| sql::table_error("starting a search", &self.name, &e);
        if !conn.is_in_transaction() {
            return conn
                .begin_with(AssertSqlSafe(format!("BEGIN; {settings}")))
                .await
                .map_err(begin_failed);
        }
        let mut tx = conn.begin().await.map_err(begin_failed)?;
        sqlx::raw_sql(AssertSqlSafe(settings))
            .execute(&mut *tx)
            .await
            .map_err(|e| sql::table_error("configuring the search", &self.name, &e))?;
        Ok(tx)
    }

    /// The `k` rows of the connection's tenant nearest to the query, nearest first.
    ///
    /// Run it on a [`crate::TenantConnection`] (`&mut conn`): row-level security limits
    /// it to that tenant's rows. Fails before reaching the database when the embedding's
    /// dimension is not the table's, or the distance is not indexed.
    pub async fn search(
        &self,
        conn: &mut PgConnection,
        search: &Search,
    ) -> Result<Vec<Hit>, VectorError> {
        let prepared = self.prepare_search(search)?;
        let mut tx = self.begin_search(conn, &prepared).await?;
        let rows: Vec<(String, String, String, f64)> =
            sqlx::query_as_with(AssertSqlSafe(prepared.sql), prepared.args)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| sql::table_error("searching", &self.name, &e))?;
        // Read-only: rolling back also undoes the settings when `conn` was already inside
        // a transaction (the search then ran in a savepoint).
        tx.rollback()
            .await
            .map_err(|e| sql::table_error("finishing a search", &self.name, &e))?;
        rows.into_iter()
            .map(|(id, content, metadata, distance)| {
                let similarity = prepared.distance.similarity(distance);
                Ok(Hit {
                    id,
                    content,
                    metadata: parse_metadata(&metadata)?,
                    distance,
                    similarity,
                    text_rank: None,
                    score: similarity,
                })
            })
            .collect()
    }

    /// The `k` best rows of the connection's tenant by the hybrid score, best first.
    pub async fn hybrid_search(
        &self,
        conn: &mut PgConnection,
        search: &HybridSearch,
    ) -> Result<Vec<Hit>, VectorError> {
        let prepared = self.prepare_hybrid(search)?;
        let mut tx = self.begin_search(conn, &prepared).await?;
        let rows: Vec<(String, String, String, f64, f64, f64, f64)> =
            sqlx::query_as_with(AssertSqlSafe(prepared.sql), prepared.args)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| sql::table_error("hybrid searching", &self.name, &e))?;
        // Read-only: rolling back also undoes the settings when `conn` was already inside
        // a transaction (the search then ran in a savepoint).
        tx.rollback()
            .await
            .map_err(|e| sql::table_error("finishing a search", &self.name, &e))?;
        rows.into_iter()
            .map(
                |(id, content, metadata, distance, text_rank, similarity, score)| {
                    Ok(Hit {
                        id,
                        content,
                        metadata: parse_metadata(&metadata)?,
                        distance,
                        similarity,
                        text_rank: Some(text_rank),
                        score,
                    })
                },
            )
            .collect()
    }

    /// PostgreSQL's plan for `search` on this connection, with the search's settings
    /// (`EXPLAIN (COSTS OFF)`): shows whether the HNSW index serves it.
    pub async fn explain(
        &self,
        conn: &mut PgConnection,
        search: &Search,
    ) -> Result<String, VectorError> {
        let prepared = self.prepare_search(search)?;
        self.explain_prepared(conn, prepared).await
    }

    /// PostgreSQL's plan for a hybrid search, like [`explain`](Self::explain).
    pub async fn explain_hybrid(
        &self,
        conn: &mut PgConnection,
        search: &HybridSearch,
    ) -> Result<String, VectorError> {
        let prepared = self.prepare_hybrid(search)?;
        self.explain_prepared(conn, prepared).await
    }

    async fn explain_prepared(
        &self,
        conn: &mut PgConnection,
        prepared: Prepared,
    ) -> Result<String, VectorError> {
        let mut tx = self.begin_search(conn, &prepared).await?;
        let statement = format!("EXPLAIN (COSTS OFF) {}", prepared.sql);
        let lines: Vec<String> = sqlx::query_scalar_with(AssertSqlSafe(statement), prepared.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| sql::table_error("explaining a search", &self.name, &e))?;
        tx.rollback()
            .await
            .map_err(|e| sql::table_error("finishing an explain", &self.name, &e))?;
        Ok(lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> VectorTable {
        VectorTable::new("docs", 2, Distance::Cosine).unwrap()
    }

    #[test]
    fn filters_render_with_bind_parameters_only() {
        let f = Filter::eq("lang", "en")
            .and(Filter::number("year", Cmp::Ge, 2020.0))
            .and(Filter::text("bread'; drop table docs; --").or(Filter::ids(["a", "b"])))
            .and(Filter::Not(Box::new(Filter::HasKey("draft".into()))));
        let mut args = Args::default();
        let mut out = String::new();
        f.render(&table(), &mut args, &mut out).unwrap();
        assert!(
            !out.contains("drop table") && !out.contains("\"en\""),
            "{out}"
        );
        assert!(out.contains("metadata @> $1::jsonb"), "{out}");
        assert!(out.contains(">= $3"), "{out}");
        assert!(
            out.contains("websearch_to_tsquery('english'::regconfig, $4)"),
            "{out}"
        );
        assert!(
            out.contains("id = ANY($5)") && out.contains("NOT (metadata ? $6)"),
            "{out}"
        );
        let mut out = String::new();
        Filter::Any(vec![])
            .render(&table(), &mut Args::default(), &mut out)
            .unwrap();
        assert_eq!(out, "FALSE");
    }

    #[test]
    fn searches_are_validated_before_reaching_the_database() {
        let t = table();
        assert!(matches!(
            t.prepare_search(&Search::new(vec![1.0, 0.0]).k(0)),
            Err(VectorError::BadQuery { .. })
        ));
        assert!(matches!(
            t.prepare_search(&Search::new(vec![1.0, 0.0]).k(1001)),
            Err(VectorError::BadQuery { .. })
        ));
        assert!(matches!(
            t.prepare_search(&Search::new(vec![1.0, 0.0, 0.0])),
            Err(VectorError::DimensionMismatch {
                expected: 2,
                got: 3,
                ..
            })
        ));
        let err = t
            .prepare_search(&Search::new(vec![1.0, 0.0]).distance(Distance::L2))
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("cosine (<=>)") && msg.contains("l2 (<->)"),
            "{msg}"
        );
        assert!(matches!(
            t.prepare_hybrid(&HybridSearch::new(vec![1.0, 0.0], "x").weights(0.0, 0.0)),
            Err(VectorError::BadQuery { .. })
        ));
        assert!(matches!(
            t.prepare_search(&Search::new(vec![1.0, 0.0]).filter(Filter::number(
                "x",
                Cmp::Lt,
                f64::NAN
            ))),
            Err(VectorError::BadQuery { .. })
        ));
        let ok = t.prepare_search(&Search::new(vec![1.0, 0.0]).k(5)).unwrap();
        assert!(
            ok.sql.contains("ORDER BY embedding <=> $1 LIMIT $2"),
            "{}",
            ok.sql
        );
    }
}
