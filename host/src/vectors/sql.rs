//! SQL building blocks: numbered bind parameters, identifiers, error classification.

use sqlx::Arguments;
use sqlx::postgres::{PgArguments, Postgres};

use super::VectorError;
use crate::redact::redact_text;

/// Bind parameters for a statement built piece by piece: [`bind`](Self::bind) adds a value
/// and returns its placeholder (`$n`), so one value can be referenced several times.
#[derive(Default)]
pub(super) struct Args {
    args: PgArguments,
    count: usize,
    failed: Option<String>,
}

impl Args {
    /// Add `value`; its placeholder.
    pub(super) fn bind<'q, T>(&mut self, value: T) -> String
    where
        T: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + 'q,
    {
        if let Err(e) = self.args.add(value) {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        self.count += 1;
        format!("${}", self.count)
    }

    /// The arguments, or why one could not be encoded.
    pub(super) fn finish(self) -> Result<PgArguments, VectorError> {
        match self.failed {
            Some(reason) => Err(VectorError::BadQuery {
                reason: format!("a parameter could not be encoded: {reason}"),
            }),
            None => Ok(self.args),
        }
    }
}

/// Tenantry's identifier rule (lowercase, so no quoting surprises).
pub(super) fn plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `"name"` or `"schema"."name"` for a validated table name.
pub(super) fn quoted_table(name: &str) -> Result<String, VectorError> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| plain_identifier(p)) {
        return Err(VectorError::BadName {
            what: "table name",
            name: name.chars().take(80).collect(),
        });
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// The driver's message, secrets redacted.
pub(super) fn reason(e: &sqlx::Error) -> String {
    redact_text(&e.to_string())
}

/// A generic database failure.
pub(super) fn database_error(what: &str, e: &sqlx::Error) -> VectorError {
    VectorError::Database {
        what: what.to_owned(),
        reason: reason(e),
    }
}

/// Classify a failure of an operation on `table`: pgvector's dimension check, a missing
/// extension or table, or anything else.
pub(super) fn table_error(what: &str, table: &str, e: &sqlx::Error) -> VectorError {
    if let sqlx::Error::Database(d) = e {
        let message = d.message();
        if let Some((expected, got)) = parse_dimension_error(message) {
            return VectorError::DimensionMismatch {
                table: table.to_owned(),
                expected,
                got,
                what: "a value sent to the database".into(),
            };
        }
        if d.code().as_deref() == Some("42704") && message.contains("\"vector\"") {
            return VectorError::ExtensionNotCreated {
                database: "this database".into(),
                available: "(version unknown)".into(),
                detail: format!("; the server said: {}", redact_text(message)),
            };
        }
        if d.code().as_deref() == Some("42P01") {
            return VectorError::NoSuchTable {
                table: table.to_owned(),
                database: "this database".into(),
            };
        }
    }
    database_error(&format!("{what} on {table}"), e)
}

/// pgvector's `expected 3 dimensions, not 4` (storing) and `different vector dimensions 3
/// and 4` (comparing; the column is the left operand in Tenantry's SQL).
fn parse_dimension_error(message: &str) -> Option<(usize, usize)> {
    let (expected, got) = match message.strip_prefix("expected ") {
        Some(rest) => rest.split_once(" dimensions, not ")?,
        None => message
            .strip_prefix("different vector dimensions ")?
            .split_once(" and ")?,
    };
    Some((expected.trim().parse().ok()?, got.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated_and_quoted() {
        assert_eq!(quoted_table("docs").unwrap(), "\"docs\"");
        assert_eq!(quoted_table("app.docs").unwrap(), "\"app\".\"docs\"");
        for bad in ["", "Docs", "a.b.c", "docs; drop table x", "1docs", "d\"x"] {
            assert!(quoted_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pgvector_dimension_errors_are_recognised() {
        assert_eq!(
            parse_dimension_error("expected 3 dimensions, not 4"),
            Some((3, 4))
        );
        assert_eq!(
            parse_dimension_error("different vector dimensions 8 and 3"),
            Some((8, 3))
        );
        assert_eq!(
            parse_dimension_error("permission denied for table docs"),
            None
        );
    }

    #[test]
    fn placeholders_count_up() {
        let mut args = Args::default();
        assert_eq!(args.bind(1_i64), "$1");
        assert_eq!(args.bind("x".to_owned()), "$2");
        assert!(args.finish().is_ok());
    }
}
