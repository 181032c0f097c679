//! Validated org and tenant identifiers.
//!
//! An id ends up inside database URLs, file paths, schema names and session settings, so it
//! is validated once, at the edge, and the rest of the crate only ever sees the typed form.
//! The rule is deliberately narrow: 1–63 characters of `a-z`, `0-9` and `-`, starting and
//! ending with a letter or digit. That makes ids valid DNS labels, safe file names on every
//! filesystem, and — after the `-` → `_` mapping used for database names — valid unquoted
//! SQL identifiers. Uppercase and `_` are refused rather than folded so that two distinct ids
//! can never map to the same database (`Acme`/`acme`, `acme-corp`/`acme_corp`).

use std::fmt;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} id is empty: pass a non-empty id such as `acme-corp`")]
    Empty {
        /// `org` or `tenant`.
        kind: &'static str,
    },
    /// The id is longer than 63 characters.
    #[error("{kind} id is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// `org` or `tenant`.
        kind: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// The id contains a character outside `a-z0-9-`, or starts/ends with `-`.
    #[error(
        "{kind} id {shown} is invalid at position {position}: use 1-{MAX_ID_LEN} characters of \
         a-z, 0-9 and '-', starting and ending with a letter or digit"
    )]
    BadCharacter {
        /// `org` or `tenant`.
        kind: &'static str,
        /// A printable, truncated rendering of the refused id.
        shown: String,
        /// Character index of the first offending character.
        position: usize,
    },
}

/// Longest id accepted (PostgreSQL's identifier limit, and a DNS label's).
pub const MAX_ID_LEN: usize = 63;

fn validate(kind: &'static str, raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = raw.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len });
    }
    let last = len - 1;
    for (position, c) in raw.chars().enumerate() {
        let ok = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || (c == '-' && position != 0 && position != last);
        if !ok {
            return Err(IdError::BadCharacter {
                kind,
                shown: shown(raw),
                position,
            });
        }
    }
    Ok(())
}

/// Render untrusted input for an error message: escaped and at most 40 characters.
fn shown(raw: &str) -> String {
    let mut out: String = raw.chars().take(40).flat_map(char::escape_debug).collect();
    if raw.chars().count() > 40 {
        out.push('…');
    }
    format!("\"{out}\"")
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Validate `raw` and wrap it.
            pub fn new(raw: &str) -> Result<Self, IdError> {
                validate($kind, raw)?;
                Ok(Self(raw.into()))
            }

            /// The id as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id with `-` mapped to `_`: a valid unquoted SQL identifier fragment and
            /// the form substituted into `{org}`/`{tenant}` URL and path templates.
            pub fn db_name(&self) -> String {
                self.0.replace('-', "_")
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(&s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A validated organization id (see the module docs for the rule).
    OrgId,
    "org"
);
id_type!(
    /// A validated tenant id (same rule as [`OrgId`]).
    TenantId,
    "tenant"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for ok in ["a", "acme", "acme-corp", "org-42", "9", &"x".repeat(63)] {
            assert_eq!(OrgId::new(ok).unwrap().as_str(), ok);
        }
        assert_eq!(OrgId::new("acme-corp").unwrap().db_name(), "acme_corp");
    }

    #[test]
    fn refuses_hostile_ids() {
        let long = "a".repeat(10 * 1024);
        let hostile = [
            "",
            "-acme",
            "acme-",
            "Acme",
            "acme_corp",
            "../etc",
            "a/b",
            "a\0b",
            "a b",
            "acme'; drop table x;--",
            "аcme",
            /* Cyrillic а */ "ａcme",
            "a%2fb",
            "a.b",
            &long,
        ];
        for bad in hostile {
            assert!(OrgId::new(bad).is_err(), "accepted {bad:?}");
            assert!(TenantId::new(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = TenantId::new("a/b").unwrap_err().to_string();
        assert!(
            err.contains("tenant id \"a/b\" is invalid at position 1"),
            "{err}"
        );
        assert!(err.contains("a-z, 0-9 and '-'"), "{err}");
        let err = OrgId::new(&"a".repeat(100)).unwrap_err().to_string();
        assert!(err.contains("100 characters long"), "{err}");
        let err = OrgId::new(&format!("{}\n", "x".repeat(50)))
            .unwrap_err()
            .to_string();
        assert!(err.contains('…') && !err.contains('\n'), "{err}");
    }
}

#[cfg(test)]
mod properties {
    //! Fuzzing by property: `PROPTEST_CASES=1000000 cargo test -p tenantry --lib properties`
    //! runs the long version.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_is_refused_or_safe(raw in any::<String>()) {
            if let Ok(id) = OrgId::new(&raw) {
                let name = id.db_name();
                prop_assert!(!name.is_empty() && name.len() <= MAX_ID_LEN);
                prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                const FORBIDDEN: [char; 9] = ['/', '.', '\0', '\'', '"', ';', '%', '{', '}'];
                let clean = !raw.contains(FORBIDDEN);
                prop_assert!(clean, "accepted {:?}", raw);
            }
        }

        #[test]
        fn distinct_ids_never_share_a_database_name(a in "[a-z0-9-]{1,8}", b in "[a-z0-9-]{1,8}") {
            if let (Ok(a), Ok(b)) = (OrgId::new(&a), OrgId::new(&b)) {
                prop_assert_eq!(a == b, a.db_name() == b.db_name());
            }
        }

        #[test]
        fn errors_are_printable_and_bounded(raw in any::<String>()) {
            if let Err(e) = TenantId::new(&raw) {
                let m = e.to_string();
                prop_assert!(m.len() < 400, "{}", m);
                prop_assert!(!m.contains('\n') && !m.contains('\0'));
            }
        }
    }
}
