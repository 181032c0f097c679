//! Vector tables: their DDL, what the catalog says about them, and writes.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::sql::{self, Args, plain_identifier, quoted_table};
use super::{Distance, Vector, VectorError};

/// Rows written per `INSERT … SELECT FROM unnest(…)` statement.
const UPSERT_BATCH: usize = 500;

/// One embedded document: an id unique within its tenant, the text it embeds (indexed for
/// full-text search too), free-form JSON metadata for filters, and the embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Unique per tenant; upserting an existing id replaces the row.
    pub id: String,
    /// The text (may be empty).
    pub content: String,
    /// JSON metadata, `{}` by default; [`super::Filter`]s query it.
    pub metadata: serde_json::Value,
    /// The embedding, as many dimensions as the table.
    pub embedding: Vector,
}

impl Document {
    /// A document with empty metadata.
    pub fn new(
        id: impl Into<String>,
        content: impl Into<String>,
        embedding: impl Into<Vector>,
    ) -> Self {
        Self {
            id: id.into(),
            content: content.into(),
            metadata: serde_json::Value::Object(serde_json::Map::new()),
            embedding: embedding.into(),
        }
    }

    /// With `metadata`.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A tenant-isolated embeddings table: its name, dimension, indexed distances and
/// full-text language. A plain description: build one with [`new`](Self::new) to create
/// the table, or read one from the catalog with [`load`](Self::load) (or
/// [`super::Vectors::table`]); then pass any tenant's connection to its methods.
///
/// The table [`create_sql`](Self::create_sql) makes:
///
/// | column | type | |
/// |---|---|---|
/// | `tenant_id` | `text NOT NULL` | defaults to the session's tenant; row-level security on it |
/// | `id` | `text NOT NULL` | primary key `(tenant_id, id)` |
/// | `content` | `text NOT NULL DEFAULT ''` | |
/// | `metadata` | `jsonb NOT NULL DEFAULT '{}'` | GIN index (`jsonb_path_ops`) |
/// | `embedding` | `vector(n) NOT NULL` | one HNSW index per distance |
/// | `content_tsv` | `tsvector`, generated from `content` | GIN index |
/// | `created_at`, `updated_at` | `timestamptz` | |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorTable {
    pub(super) name: String,
    pub(super) quoted: String,
    pub(super) dimensions: usize,
    pub(super) distances: Vec<Distance>,
    pub(super) language: String,
    pub(super) m: u32,
    pub(super) ef_construction: u32,
    /// The quoted schema pgvector lives in, once read from the catalog: operators and types
    /// are qualified with it so a tenant's `search_path` cannot hide them.
    pub(super) ext_schema: Option<String>,
}

impl VectorTable {
    /// A table `name` (`table` or `schema.table`) of `dimensions`-dimensional embeddings
    /// with an HNSW index for `distance`, full-text language `english`, HNSW `m = 16`,
    /// `ef_construction = 64` (pgvector's defaults).
    pub fn new(name: &str, dimensions: usize, distance: Distance) -> Result<Self, VectorError> {
        if !(1..=2000).contains(&dimensions) {
            return Err(VectorError::BadDimensions { dimensions });
        }
        Ok(Self {
            quoted: quoted_table(name)?,
            name: name.to_owned(),
            dimensions,
            distances: vec![distance],
            language: "english".into(),
            m: 16,
            ef_construction: 64,
            ext_schema: None,
        })
    }

    /// Also index for `distance` (another HNSW index on the same column).
    pub fn also_index(mut self, distance: Distance) -> Self {
        if !self.distances.contains(&distance) {
            self.distances.push(distance);
        }
        self
    }

    /// The text-search configuration of `content_tsv` (`english`, `simple`, `german`, …).
    pub fn language(mut self, language: &str) -> Result<Self, VectorError> {
        if !plain_identifier(language) {
            return Err(VectorError::BadName {
                what: "text search language",
                name: language.chars().take(80).collect(),
            });
        }
        self.language = language.to_owned();
        Ok(self)
    }

    /// HNSW build parameters: `m` in 2..=100, `ef_construction` in 4..=1000 and at least
    /// `2 × m` (pgvector's limits).
    pub fn hnsw(mut self, m: u32, ef_construction: u32) -> Result<Self, VectorError> {
        if !(2..=100).contains(&m)
            || !(4..=1000).contains(&ef_construction)
            || ef_construction < 2 * m
        {
            return Err(VectorError::BadQuery {
                reason: format!(
                    "HNSW m = {m}, ef_construction = {ef_construction}: m must be 2 to 100 \
                     and ef_construction 4 to 1000 and at least 2 × m"
                ),
            });
        }
        self.m = m;
        self.ef_construction = ef_construction;
        Ok(self)
    }

    /// The table's name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The default distance of searches: the first one indexed.
    pub fn distance(&self) -> Distance {
        self.distances[0]
    }

    /// Every distance the table has an HNSW index for.
    pub fn distances(&self) -> &[Distance] {
        &self.distances
    }

    /// The full-text search configuration.
    pub fn text_language(&self) -> &str {
        &self.language
    }

    /// The SQL that creates the table, its row-level security (as
    /// [`crate::isolation::postgres::enable_rls_sql`]) and its indexes; idempotent, for a
    /// migration. pgvector's type and operator classes are left unqualified here, so the
    /// extension's schema must be on the `search_path` of whoever runs it.
    pub fn create_sql(&self) -> String {
        self.ddl(None)
    }

    fn ddl(&self, ext_schema: Option<&str>) -> String {
        let q = &self.quoted;
        let ext = ext_schema.map(|s| format!("{s}.")).unwrap_or_default();
        let base: String = self
            .name
            .rsplit('.')
            .next()
            .unwrap_or(&self.name)
            .chars()
            .take(40)
            .collect();
        let rls = crate::isolation::postgres::enable_rls_sql(&self.name)
            .expect("the name was validated by the same rule");
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {q} (\n    \
                 tenant_id text NOT NULL,\n    \
                 id text NOT NULL,\n    \
                 content text NOT NULL DEFAULT '',\n    \
                 metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,\n    \
                 embedding {ext}vector({dims}) NOT NULL,\n    \
                 content_tsv tsvector GENERATED ALWAYS AS \
                 (pg_catalog.to_tsvector('{lang}'::regconfig, content)) STORED,\n    \
                 created_at timestamptz NOT NULL DEFAULT now(),\n    \
                 updated_at timestamptz NOT NULL DEFAULT now(),\n    \
                 PRIMARY KEY (tenant_id, id)\n);\n{rls}",
            dims = self.dimensions,
            lang = self.language,
        );
        for d in &self.distances {
            let short = match d {
                Distance::Cosine => "cosine",
                Distance::L2 => "l2",
                Distance::InnerProduct => "ip",
            };
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS \"{base}_embedding_{short}_hnsw\" ON {q} \
                 USING hnsw (embedding {ext}{opclass}) WITH (m = {m}, ef_construction = {ef});\n",
                opclass = d.opclass(),
                m = self.m,
                ef = self.ef_construction,
            ));
        }
        sql.push_str(&format!(
            "CREATE INDEX IF NOT EXISTS \"{base}_content_tsv_gin\" ON {q} USING gin (content_tsv);\n\
             CREATE INDEX IF NOT EXISTS \"{base}_metadata_gin\" ON {q} \
             USING gin (metadata jsonb_path_ops);\n"
        ));
        sql
    }

    /// Create the table (idempotent, in one transaction) on `conn`, then check that what
    /// exists matches this description (an existing table of another dimension is a
    /// [`VectorError::DimensionMismatch`]). The role must be allowed to create tables; the
    /// pgvector extension must exist in the database.
    pub async fn create(&self, conn: &mut PgConnection) -> Result<(), VectorError> {
        let ext_schema = super::extension_schema(conn).await?;
        let ddl = self.ddl(ext_schema.as_deref());
        sqlx::raw_sql(AssertSqlSafe(ddl))
            .execute(&mut *conn)
            .await
            .map_err(|e| sql::table_error("creating the vector table", &self.name, &e))?;
        let actual = Self::load(conn, &self.name).await?;
        if actual.dimensions != self.dimensions {
            return Err(VectorError::DimensionMismatch {
                table: self.name.clone(),
                expected: actual.dimensions,
                got: self.dimensions,
                what: "the requested table (it already exists)".into(),
            });
        }
        if actual.language != self.language {
            return Err(VectorError::NotVectorTable {
                table: self.name.clone(),
                reason: format!(
                    "it already exists with full-text language {:?}, not {:?}",
                    actual.language, self.language
                ),
            });
        }
        Ok(())
    }

    /// Read table `name`'s description from the catalog: the dimension of `embedding`, the
    /// distances of its HNSW indexes (in creation order; the first is the default), the
    /// language of `content_tsv`. Fails unless it has a vector table's columns, at least
    /// one HNSW index, and forced row-level security.
    pub async fn load(conn: &mut PgConnection, name: &str) -> Result<Self, VectorError> {
        let quoted = quoted_table(name)?;
        let row = sqlx::query(
            "SELECT pg_catalog.current_database()::text AS database, \
                    c.relrowsecurity, c.relforcerowsecurity, \
                    ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a \
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                          ORDER BY a.attnum) AS columns, \
                    (SELECT t.typname::text FROM pg_catalog.pg_attribute a \
                       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                      WHERE a.attrelid = c.oid AND a.attname = 'embedding' \
                        AND NOT a.attisdropped) AS embedding_type, \
                    (SELECT a.atttypmod FROM pg_catalog.pg_attribute a \
                      WHERE a.attrelid = c.oid AND a.attname = 'embedding' \
                        AND NOT a.attisdropped) AS dimensions, \
                    (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
                       FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a \
                         ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
                      WHERE d.adrelid = c.oid AND a.attname = 'content_tsv') AS tsv, \
                    ARRAY(SELECT opc.opcname::text FROM pg_catalog.pg_index i \
                            JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
                            JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
                            JOIN pg_catalog.pg_opclass opc ON opc.oid = i.indclass[0] \
                            JOIN pg_catalog.pg_attribute a \
                              ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
                           WHERE i.indrelid = c.oid AND am.amname = 'hnsw' \
                             AND a.attname = 'embedding' AND i.indisvalid \
                           ORDER BY i.indexrelid) AS opclasses, \
                    (SELECT pg_catalog.quote_ident(n.nspname) \
                       FROM pg_catalog.pg_extension e \
                       JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
                      WHERE e.extname = 'vector') AS ext_schema \
               FROM (SELECT pg_catalog.to_regclass($1) AS oid) r \
               LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid",
        )
        .bind(&quoted)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sql::database_error(&format!("reading the catalog for {name}"), &e))?;
        let get =
            |e: sqlx::Error| sql::database_error(&format!("reading the catalog for {name}"), &e);
        let database: String = row.try_get("database").map_err(get)?;
        let Some(row_security) = row
            .try_get::<Option<bool>, _>("relrowsecurity")
            .map_err(get)?
        else {
            return Err(VectorError::NoSuchTable {
                table: name.to_owned(),
                database,
            });
        };
        let forced: bool = row
            .try_get::<Option<bool>, _>("relforcerowsecurity")
            .map_err(get)?
            .unwrap_or(false);
        let columns: Vec<String> = row.try_get("columns").map_err(get)?;
        let not_vector = |reason: String| VectorError::NotVectorTable {
            table: name.to_owned(),
            reason,
        };
        let missing: Vec<&str> = [
            "tenant_id",
            "id",
            "content",
            "metadata",
            "embedding",
            "content_tsv",
            "updated_at",
        ]
        .into_iter()
        .filter(|c| !columns.iter().any(|have| have == c))
        .collect();
        if !missing.is_empty() {
            return Err(not_vector(format!(
                "it has no {} column",
                missing.join(", ")
            )));
        }
        let embedding_type: Option<String> = row.try_get("embedding_type").map_err(get)?;
        if embedding_type.as_deref() != Some("vector") {
            return Err(not_vector(format!(
                "its embedding column is of type {}, not vector(n)",
                embedding_type.unwrap_or_default()
            )));
        }
        let dimensions: Option<i32> = row.try_get("dimensions").map_err(get)?;
        let dimensions = match dimensions {
            Some(n) if n > 0 => n as usize,
            _ => {
                return Err(not_vector(
                    "its embedding column has no fixed dimension (use vector(n))".into(),
                ));
            }
        };
        let tsv: Option<String> = row.try_get("tsv").map_err(get)?;
        let language = tsv
            .as_deref()
            .and_then(|expr| {
                let start = expr.find('\'')? + 1;
                let len = expr[start..].find("'::regconfig")?;
                Some(expr[start..start + len].to_owned())
            })
            .filter(|l| plain_identifier(l))
            .ok_or_else(|| {
                not_vector(
                    "its content_tsv column is not generated by to_tsvector('<language>', content)"
                        .into(),
                )
            })?;
        let opclasses: Vec<String> = row.try_get("opclasses").map_err(get)?;
        let mut distances: Vec<Distance> = Vec::new();
        for d in opclasses.iter().filter_map(|o| Distance::from_opclass(o)) {
            if !distances.contains(&d) {
                distances.push(d);
            }
        }
        if distances.is_empty() {
            return Err(not_vector(
                "its embedding column has no valid HNSW index with vector_cosine_ops, \
                 vector_l2_ops or vector_ip_ops"
                    .into(),
            ));
        }
        if !(row_security && forced) {
            return Err(VectorError::NotIsolated {
                table: name.to_owned(),
            });
        }
        let ext_schema: Option<String> = row.try_get("ext_schema").map_err(get)?;
        Ok(Self {
            name: name.to_owned(),
            quoted,
            dimensions,
            distances,
            language,
            m: 16,
            ef_construction: 64,
            ext_schema,
        })
    }

    /// `vector` qualified with pgvector's schema when known.
    pub(super) fn vector_type(&self) -> String {
        match &self.ext_schema {
            Some(s) => format!("{s}.vector"),
            None => "vector".into(),
        }
    }

    /// The operator of `distance`, qualified with pgvector's schema when known.
    pub(super) fn operator(&self, distance: Distance) -> String {
        match &self.ext_schema {
            Some(s) => format!("OPERATOR({s}.{})", distance.operator()),
            None => distance.operator().to_owned(),
        }
    }

    /// Refuse an embedding of the wrong dimension or with non-finite values.
    pub(super) fn check_embedding(
        &self,
        embedding: &Vector,
        what: impl Fn() -> String,
    ) -> Result<(), VectorError> {
        let values = embedding.as_slice();
        if values.len() != self.dimensions {
            return Err(VectorError::DimensionMismatch {
                table: self.name.clone(),
                expected: self.dimensions,
                got: values.len(),
                what: what(),
            });
        }
        if !values.iter().all(|v| v.is_finite()) {
            return Err(VectorError::NonFinite { what: what() });
        }
        Ok(())
    }

    /// Insert `documents`, replacing the content, metadata and embedding of ids the tenant
    /// already has; returns the number of rows written. A later document with the same id
    /// as an earlier one in `documents` wins. Runs as the connection's tenant: on a
    /// [`crate::TenantConnection`] the rows get its `tenant_id`, and a connection without
    /// a tenant can write none.
    pub async fn upsert(
        &self,
        conn: &mut PgConnection,
        documents: &[Document],
    ) -> Result<u64, VectorError> {
        for d in documents {
            self.check_embedding(&d.embedding, || format!("document {:?}", d.id))?;
        }
        // Last occurrence of each id wins, keeping the order of first appearance.
        let mut order: Vec<&Document> = Vec::with_capacity(documents.len());
        let mut index: std::collections::HashMap<&str, usize> = Default::default();
        for d in documents {
            match index.get(d.id.as_str()) {
                Some(&i) => order[i] = d,
                None => {
                    index.insert(&d.id, order.len());
                    order.push(d);
                }
            }
        }
        let mut written = 0;
        for chunk in order.chunks(UPSERT_BATCH) {
            let mut args = Args::default();
            let ids = args.bind(chunk.iter().map(|d| d.id.clone()).collect::<Vec<_>>());
            let contents = args.bind(chunk.iter().map(|d| d.content.clone()).collect::<Vec<_>>());
            let metadata = args.bind(
                chunk
                    .iter()
                    .map(|d| d.metadata.to_string())
                    .collect::<Vec<_>>(),
            );
            let embeddings = args.bind(
                chunk
                    .iter()
                    .map(|d| d.embedding.clone())
                    .collect::<Vec<Vector>>(),
            );
            let statement = format!(
                "INSERT INTO {t} (id, content, metadata, embedding) \
                 SELECT u.id, u.content, u.metadata::jsonb, u.embedding \
                   FROM ROWS FROM (pg_catalog.unnest({ids}::text[]), \
                        pg_catalog.unnest({contents}::text[]), \
                        pg_catalog.unnest({metadata}::text[]), \
                        pg_catalog.unnest({embeddings}::{v}[])) \
                        AS u(id, content, metadata, embedding) \
                 ON CONFLICT (tenant_id, id) DO UPDATE SET content = EXCLUDED.content, \
                   metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding, \
                   updated_at = now()",
                t = self.quoted,
                v = self.vector_type(),
            );
            let done = sqlx::query_with(AssertSqlSafe(statement), args.finish()?)
                .execute(&mut *conn)
                .await
                .map_err(|e| sql::table_error("upserting embeddings", &self.name, &e))?;
            written += done.rows_affected();
        }
        Ok(written)
    }

    /// The tenant's document `id`, if it has one.
    pub async fn get(
        &self,
        conn: &mut PgConnection,
        id: &str,
    ) -> Result<Option<Document>, VectorError> {
        let statement = format!(
            "SELECT id, content, metadata::text, embedding FROM {} WHERE id = $1",
            self.quoted
        );
        let row: Option<(String, String, String, Vector)> =
            sqlx::query_as(AssertSqlSafe(statement))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| sql::table_error("reading an embedding", &self.name, &e))?;
        row.map(|(id, content, metadata, embedding)| {
            Ok(Document {
                id,
                content,
                metadata: parse_metadata(&metadata)?,
                embedding,
            })
        })
        .transpose()
    }

    /// Delete the tenant's documents `ids`; returns how many existed.
    pub async fn delete<S: AsRef<str>>(
        &self,
        conn: &mut PgConnection,
        ids: &[S],
    ) -> Result<u64, VectorError> {
        let ids: Vec<String> = ids.iter().map(|s| s.as_ref().to_owned()).collect();
        let statement = format!("DELETE FROM {} WHERE id = ANY($1)", self.quoted);
        let done = sqlx::query(AssertSqlSafe(statement))
            .bind(ids)
            .execute(&mut *conn)
            .await
            .map_err(|e| sql::table_error("deleting embeddings", &self.name, &e))?;
        Ok(done.rows_affected())
    }

    /// How many documents the connection's tenant has.
    pub async fn count(&self, conn: &mut PgConnection) -> Result<i64, VectorError> {
        let statement = format!("SELECT count(*) FROM {}", self.quoted);
        sqlx::query_scalar(AssertSqlSafe(statement))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| sql::table_error("counting embeddings", &self.name, &e))
    }
}

/// `metadata::text` back to JSON.
pub(super) fn parse_metadata(text: &str) -> Result<serde_json::Value, VectorError> {
    serde_json::from_str(text).map_err(|e| VectorError::Database {
        what: "decoding metadata".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sql_has_rls_the_opclass_per_distance_and_the_dimension() {
        let t = VectorTable::new("docs", 3, Distance::Cosine)
            .unwrap()
            .also_index(Distance::InnerProduct);
        let sql = t.create_sql();
        assert!(sql.contains("embedding vector(3) NOT NULL"), "{sql}");
        assert!(sql.contains("FORCE ROW LEVEL SECURITY"), "{sql}");
        assert!(
            sql.contains("USING hnsw (embedding vector_cosine_ops)"),
            "{sql}"
        );
        assert!(
            sql.contains("USING hnsw (embedding vector_ip_ops)"),
            "{sql}"
        );
        assert!(!sql.contains("vector_l2_ops"), "{sql}");
        assert!(sql.contains("PRIMARY KEY (tenant_id, id)"), "{sql}");
        let qualified = t.ddl(Some("\"public\""));
        assert!(
            qualified.contains("embedding \"public\".vector(3)"),
            "{qualified}"
        );
        assert!(
            qualified.contains("(embedding \"public\".vector_cosine_ops)"),
            "{qualified}"
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(
            VectorTable::new("docs", 0, Distance::L2),
            Err(VectorError::BadDimensions { dimensions: 0 })
        ));
        assert!(matches!(
            VectorTable::new("docs", 2001, Distance::L2),
            Err(VectorError::BadDimensions { .. })
        ));
        assert!(matches!(
            VectorTable::new("Docs; --", 3, Distance::L2),
            Err(VectorError::BadName { .. })
        ));
        let t = VectorTable::new("docs", 3, Distance::L2).unwrap();
        assert!(t.clone().language("english'; drop").is_err());
        assert!(t.clone().hnsw(16, 20).is_err());
        assert!(t.hnsw(8, 32).is_ok());
    }

    #[test]
    fn embeddings_are_checked_before_they_are_sent() {
        let t = VectorTable::new("docs", 3, Distance::L2).unwrap();
        let err = t
            .check_embedding(&Vector::from(vec![1.0, 2.0]), || "the query".into())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("vector(3)") && msg.contains("2 dimensions"),
            "{msg}"
        );
        assert!(matches!(
            t.check_embedding(&Vector::from(vec![1.0, f32::NAN, 0.0]), || "q".into()),
            Err(VectorError::NonFinite { .. })
        ));
        assert!(
            t.check_embedding(&Vector::from(vec![1.0, 2.0, 3.0]), || "q".into())
                .is_ok()
        );
    }
}
