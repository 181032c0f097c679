//! The contract's org and tenant id rule, and the name form used inside templates.
//!
//! The rule is the host's own (`tenantry::OrgId`): 1–63 characters of `a-z`, `0-9` and `-`,
//! starting and ending with a letter or digit. It keeps ids valid DNS labels and file names,
//! and after [`db_name`] valid unquoted SQL identifiers. The messages match the host's word
//! for word, so an operator sees the same explanation whichever side refused an id.

use std::fmt;

use crate::{Denial, ResolveError};

/// Longest id accepted: PostgreSQL's identifier limit, and a DNS label's.
pub const MAX_ID_LEN: usize = 63;

/// Why an id was refused by [`check_id`].
///
/// Converts into [`ResolveError::Invalid`] and [`Denial::Invalid`], carrying the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    Empty {
        /// What kind of id, e.g. `org` or `tenant`.
        kind: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`] characters.
    TooLong {
        /// What kind of id, e.g. `org` or `tenant`.
        kind: &'static str,
        /// The length that was given, in characters.
        len: usize,
    },
    /// The id contains a character outside `a-z0-9-`, or starts or ends with `-`.
    BadCharacter {
        /// What kind of id, e.g. `org` or `tenant`.
        kind: &'static str,
        /// A printable, truncated rendering of the refused id (it is untrusted input).
        shown: String,
        /// Character index of the first offending character.
        position: usize,
    },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty { kind } => {
                write!(
                    f,
                    "{kind} id is empty: pass a non-empty id such as `acme-corp`"
                )
            }
            Self::TooLong { kind, len } => {
                write!(
                    f,
                    "{kind} id is {len} characters long; the limit is {MAX_ID_LEN}"
                )
            }
            Self::BadCharacter {
                kind,
                shown,
                position,
            } => write!(
                f,
                "{kind} id {shown} is invalid at position {position}: use 1-{MAX_ID_LEN} \
                 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
            ),
        }
    }
}

impl std::error::Error for IdError {}

impl From<IdError> for ResolveError {
    fn from(err: IdError) -> Self {
        ResolveError::Invalid(err.to_string())
    }
}

impl From<IdError> for Denial {
    fn from(err: IdError) -> Self {
        Denial::Invalid(err.to_string())
    }
}

/// Check `id` against the contract's id rule; `kind` (`"org"`, `"tenant"`) names it in the
/// message.
pub fn check_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = id.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len });
    }
    let last = len - 1;
    for (position, c) in id.chars().enumerate() {
        let ok = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || (c == '-' && position != 0 && position != last);
        if !ok {
            return Err(IdError::BadCharacter {
                kind,
                shown: shown(id),
                position,
            });
        }
    }
    Ok(())
}

/// Check an org id; a refusal is [`ResolveError::Invalid`] with a message saying what is
/// wrong and what a valid id looks like.
///
/// ```
/// use tenantry_guest::{ResolveError, validate_org_id};
///
/// assert!(validate_org_id("acme-corp").is_ok());
/// let Err(ResolveError::Invalid(message)) = validate_org_id("Acme") else { unreachable!() };
/// assert!(message.contains("org id \"Acme\" is invalid at position 0"));
/// ```
pub fn validate_org_id(org_id: &str) -> Result<(), ResolveError> {
    Ok(check_id("org", org_id)?)
}

/// Check a tenant id; a refusal is [`Denial::Invalid`] with a message saying what is wrong
/// and what a valid id looks like.
pub fn validate_tenant_id(tenant_id: &str) -> Result<(), Denial> {
    Ok(check_id("tenant", tenant_id)?)
}

/// The form of a (validated) id that goes into `{org}` / `{tenant}` templates: `-` becomes
/// `_`, so `acme-corp` becomes `acme_corp`.
///
/// This is the host's own mapping, which makes the result a valid unquoted SQL identifier
/// fragment; a plugin must use the same one or its URLs and the host's would disagree. The
/// id rule forbids `_`, so two distinct ids never map to the same name.
pub fn db_name(id: &str) -> String {
    id.replace('-', "_")
}

/// Render untrusted input for an error message: escaped and at most 40 characters.
fn shown(raw: &str) -> String {
    let mut out: String = raw.chars().take(40).flat_map(char::escape_debug).collect();
    if raw.chars().count() > 40 {
        out.push('…');
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for ok in ["a", "acme", "acme-corp", "org-42", "9", &"x".repeat(63)] {
            assert_eq!(check_id("org", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_the_host_refuses() {
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
            assert!(check_id("org", bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let Err(ResolveError::Invalid(message)) = validate_org_id("a/b") else {
            panic!("a/b accepted");
        };
        assert!(
            message.contains("org id \"a/b\" is invalid at position 1"),
            "{message}"
        );
        assert!(message.contains("a-z, 0-9 and '-'"), "{message}");
        let Err(Denial::Invalid(message)) = validate_tenant_id(&"t".repeat(64)) else {
            panic!("long tenant id accepted");
        };
        assert!(
            message.contains("tenant id is 64 characters long"),
            "{message}"
        );
        let message = check_id("org", &format!("{}\n", "x".repeat(50)))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains('…') && !message.contains('\n'),
            "{message}"
        );
    }

    #[test]
    fn db_name_maps_dashes() {
        assert_eq!(db_name("acme-corp"), "acme_corp");
        assert_eq!(db_name("tech-inc-2"), "tech_inc_2");
        assert_eq!(db_name("plain"), "plain");
    }
}
