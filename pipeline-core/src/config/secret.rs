//! Secrets in configs: a [`Secret`] string that never prints itself, and the rule for which
//! keys hold secrets, so that their values are masked in every message about the config
//! (validation and start-up errors), like the values of `${env:VAR}` references.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::EnvValues;

/// What a masked literal secret is shown as.
pub const MASK: &str = "***";

/// A string from the config that must not appear in logs or messages: `Debug` and
/// `Display` print [`MASK`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret with this value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (sending or comparing it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Whether a config key holds a secret: tokens, passwords, API keys, authorization headers,
/// hashing keys (any case, `-` or `_`).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    const PARTS: [&str; 6] = [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "api_key",
    ];
    PARTS.iter().any(|p| key.contains(p)) || key.ends_with("apikey") || key == "hash_key"
}

/// Records every scalar under a secret key of `value` (at any depth) so that
/// [`EnvValues::redact`] masks it.
pub(crate) fn collect(value: &Value, values: &mut EnvValues) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if is_secret_key(key) {
                    record_all(v, values);
                } else {
                    collect(v, values);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, values)),
        _ => {}
    }
}

fn record_all(value: &Value, values: &mut EnvValues) {
    match value {
        Value::String(s) => values.record_literal(s),
        Value::Number(n) => values.record_literal(&n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| record_all(v, values)),
        Value::Object(map) => map.values().for_each(|v| record_all(v, values)),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        for key in [
            "bearer_tokens",
            "password",
            "x-api-key",
            "Authorization",
            "hash_key",
            "client_secret",
            "apikey",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "endpoint",
            "key_file",
            "cert_file",
            "key",
            "keys",
            "timeout",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn a_secret_prints_as_the_mask() {
        let s: Secret = serde_json::from_value(serde_json::json!("hunter22")).unwrap();
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn values_under_secret_keys_are_masked() {
        let mut values = EnvValues::default();
        let config = serde_json::json!({
            "otlp": {"auth": {"bearer_tokens": ["tok-one", "tok-two"]}, "endpoint": "a:1"},
            "x": {"headers": {"x-api-key": 123456, "accept": "text/plain"}},
        });
        collect(&config, &mut values);
        assert_eq!(
            values.redact("got tok-one, tok-two, 123456, a:1, text/plain"),
            "got ***, ***, ***, a:1, text/plain"
        );
    }
}
