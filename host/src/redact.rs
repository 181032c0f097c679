//! Keeping secrets out of logs, errors, metrics and CLI output.
//!
//! Database URLs routinely carry passwords (`postgresql://app:pw@db/acme`). Every URL the
//! host prints goes through [`redact_url`], and every free-form message that might embed
//! one (a plugin's error text, a driver error) goes through [`redact_text`].

/// What a redacted password is replaced with.
pub const MASK: &str = "***";

/// `url` with its password (if any) replaced by `***`.
///
/// Works on strings that are not valid URLs too, so a malformed URL in an error message
/// does not leak either.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

/// `text` with the password of every `scheme://user:password@` occurrence masked, and the
/// value of every `password=` query/connection-string parameter masked.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace; a password may
        // itself contain '@' or ':', so the userinfo ends at the authority's last '@'.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    mask_password_params(&out)
}

/// Mask `password=value` pairs (libpq keyword strings and URL query parameters).
fn mask_password_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("password=") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password=") {
        let value_start = i + found + "password=".len();
        out.push_str(&text[i..value_start]);
        let value_end = text[value_start..]
            .find(['&', ';', ' ', '\n', '\t', '#'])
            .map_or(text.len(), |n| value_start + n);
        out.push_str(MASK);
        i = value_end;
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            redact_url("postgresql://app:s3cret@db:5432/acme"),
            "postgresql://app:***@db:5432/acme"
        );
        assert_eq!(redact_url("postgres://db/acme"), "postgres://db/acme");
        assert_eq!(
            redact_url("postgres://app@db/acme"),
            "postgres://app@db/acme"
        );
        assert_eq!(redact_url("sqlite://data/acme.db"), "sqlite://data/acme.db");
    }

    #[test]
    fn masks_awkward_passwords() {
        let s = redact_text("x postgres://u:p@ss:w@rd@h/db y postgres://v:q@h2 z");
        assert_eq!(s, "x postgres://u:***@h/db y postgres://v:***@h2 z");
        let s = redact_text("host=db user=app password=hunter2 dbname=x");
        assert_eq!(s, "host=db user=app password=*** dbname=x");
        let s = redact_text("postgres://h/db?sslmode=disable&PASSWORD=hunter2&x=1");
        assert!(!s.contains("hunter2"), "{s}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_password_survives(
            scheme in "(postgres|postgresql|sqlite|mysql)",
            user in "[a-z]{1,8}",
            password in "[A-Za-z0-9!$%^*]{6,20}",
            host in "[a-z]{1,10}(:[0-9]{2,5})?",
            prefix in "[ -~]{0,20}",
        ) {
            let url = format!("{prefix} {scheme}://{user}:{password}@{host}/db?x=1");
            let out = redact_text(&url);
            prop_assert!(!out.contains(&password), "{}", out);
            prop_assert!(out.contains(&format!("{user}:***@{host}")), "{}", out);
        }

        #[test]
        fn never_panics_and_only_shrinks_secrets(text in any::<String>()) {
            let out = redact_text(&text);
            prop_assert!(out.len() <= text.len() + MASK.len() * (text.matches("://").count() + text.to_ascii_lowercase().matches("password=").count() + 1));
        }
    }
}
