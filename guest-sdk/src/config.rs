//! This plugin's own configuration (capability `config`).
//!
//! The operator configures each plugin with string key/value pairs (its `[config]` table in
//! the host configuration). A plugin sees only its own keys, and only when the operator has
//! granted it the `config` capability; otherwise every call here traps.
//!
//! Configuration mistakes are the operator's to fix, so [`ConfigError`] names the key and
//! what is wrong with it, and converts into [`ResolveError::Invalid`] and [`Denial::Invalid`]
//! (which the host never retries): `let ttl: u32 = config::get_or("ttl-ms", 60_000)?;`.

use std::fmt;
use std::str::FromStr;

use crate::__bindings::resolver::tenantry::plugin::config as import;
use crate::{Denial, ResolveError};

/// The raw value configured for `key`, if any.
pub fn get(key: &str) -> Option<String> {
    import::get(key)
}

/// The raw value configured for `key`, or a [`ConfigError`] saying it must be set.
pub fn require(key: &str) -> Result<String, ConfigError> {
    get(key).ok_or_else(|| ConfigError::missing(key))
}

/// The value configured for `key` parsed as `T`, `None` when the key is not set.
///
/// Surrounding whitespace is ignored, so `ttl-ms = " 500 "` parses as `500`. Use [`get`] for
/// values whose whitespace matters.
pub fn parse<T>(key: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    get(key).map(|raw| parse_value(key, &raw)).transpose()
}

/// The value configured for `key` parsed as `T`, or `default` when the key is not set.
///
/// A value that is set but does not parse is an error, not the default: a typo in the
/// operator's configuration must not silently change the plugin's behaviour.
pub fn get_or<T>(key: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(parse(key)?.unwrap_or(default))
}

/// Parse one configuration value the way [`parse`] does, without calling the host; for
/// plugins that read values from somewhere else (a structured config value, a test).
pub fn parse_value<T>(key: &str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|err| ConfigError::invalid(key, err))
}

/// A configuration key that is missing or holds an unusable value.
///
/// The message never repeats the value itself: configuration values routinely carry
/// passwords (database URLs), and this message ends up in the host's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    problem: Option<String>,
}

impl ConfigError {
    /// `key` is not set but the plugin needs it.
    pub fn missing(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            problem: None,
        }
    }

    /// `key` is set but unusable, for the reason given (e.g. a parse error).
    pub fn invalid(key: &str, reason: impl fmt::Display) -> Self {
        Self {
            key: key.to_owned(),
            problem: Some(reason.to_string()),
        }
    }

    /// The configuration key at fault.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.problem {
            None => write!(
                f,
                "config key `{key}` is not set: add it to this plugin's [config] table"
            ),
            Some(reason) => write!(f, "config key `{key}` is invalid: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for ResolveError {
    fn from(err: ConfigError) -> Self {
        ResolveError::Invalid(err.to_string())
    }
}

impl From<ConfigError> for Denial {
    fn from(err: ConfigError) -> Self {
        Denial::Invalid(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trimmed_values() {
        assert_eq!(parse_value::<u32>("ttl-ms", " 500\n"), Ok(500));
        assert_eq!(parse_value::<bool>("read-only", "true"), Ok(true));
    }

    #[test]
    fn errors_name_the_key_but_not_the_value() {
        let err = parse_value::<u32>("ttl-ms", "s3cret").unwrap_err();
        assert_eq!(err.key(), "ttl-ms");
        let message = err.to_string();
        assert!(
            message.starts_with("config key `ttl-ms` is invalid: "),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");

        let ResolveError::Invalid(message) = ConfigError::missing("template").into() else {
            panic!("not invalid");
        };
        assert!(message.contains("`template` is not set"), "{message}");
    }
}
