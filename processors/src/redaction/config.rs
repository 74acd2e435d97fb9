//! The `redaction` processor's config. The key names are the interface; where they overlap
//! with the OpenTelemetry Collector's redaction processor (`allow_all_keys`, `allowed_keys`,
//! `ignored_keys`, `blocked_values`, `allowed_values`, `summary`) they mean the same.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use pipeline_core::{ComponentConfig, FieldError};
use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// What a rule does with what it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replace the matched part (a key rule: the whole value) with `****`.
    #[default]
    Mask,
    /// Replace it with a short hex prefix of its HMAC-SHA256 under `hash_key`: the same
    /// value always gives the same pseudonym, so records can still be joined.
    Hash,
    /// Remove the attribute (map entry, array element, log body) holding the value.
    Remove,
}

impl Action {
    /// The name used in config and in the `action` label of the self-metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Hash => "hash",
            Action::Remove => "remove",
        }
    }
}

/// How much a changed record says about its own redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Summary {
    /// Nothing is added.
    Silent,
    /// `redaction.masked.count` and `redaction.masked.keys` on records with masked or
    /// hashed values.
    Info,
    /// As `info`, plus `redaction.removed.count` and `redaction.removed.keys` on records
    /// that lost attributes. The default, as in the OpenTelemetry Collector.
    #[default]
    Debug,
}

/// A built-in value detector, switched on by name in `detectors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// `name@example.com`: a dot and a top-level domain are required, so `user@localhost`
    /// is kept.
    Email,
    /// 13 to 19 digits, optionally grouped with single spaces or dashes, starting with 2-6
    /// (the card networks' ranges) and passing the Luhn checksum.
    CreditCard,
    /// Dotted quads with every octet at most 255, not part of a longer dotted number.
    Ipv4,
    /// Full and compressed IPv6 addresses (also with an embedded IPv4 part or a zone).
    Ipv6,
    /// JSON Web Tokens (`eyJ...` header and payload, signature).
    Jwt,
    /// Authorization header credentials: `Bearer <token>`, and `Basic <base64>` when it
    /// decodes to `user:password`. The scheme word is kept.
    BearerToken,
    /// AWS access key IDs (`AKIA...`, `ASIA...` and the other 4-letter prefixes).
    AwsAccessKey,
    /// The `user:password` part of `scheme://user:password@host`.
    UrlCredentials,
    /// Values of the query parameters named in `url_query_params`.
    UrlQuery,
}

impl Detector {
    /// Every detector, in the order they run.
    pub const ALL: [Detector; 9] = [
        Detector::UrlCredentials,
        Detector::UrlQuery,
        Detector::BearerToken,
        Detector::Jwt,
        Detector::AwsAccessKey,
        Detector::Email,
        Detector::CreditCard,
        Detector::Ipv6,
        Detector::Ipv4,
    ];

    /// The name in config, also the `rule` label of its self-metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::Jwt => "jwt",
            Detector::BearerToken => "bearer_token",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::UrlCredentials => "url_credentials",
            Detector::UrlQuery => "url_query",
        }
    }
}

/// A regex rule in `blocked_keys` or `blocked_values`: a pattern, or a map with its own
/// `name` (the `rule` label of the self-metrics) and `action`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternRule {
    /// The regex (Rust `regex` syntax). In a value rule a group named `redact`
    /// (`(?P<redact>...)`) limits the replacement to that group.
    pub pattern: String,
    /// The rule's name in the self-metrics; default `blocked_values[N]` / `blocked_keys[N]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Overrides the top-level `action`.
    #[serde(default)]
    pub action: Option<Action>,
}

impl From<String> for PatternRule {
    fn from(pattern: String) -> Self {
        PatternRule {
            pattern,
            name: None,
            action: None,
        }
    }
}

/// A detector in `detectors`: its name, or a map with `name` and its own `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorRule {
    /// Which detector.
    pub name: Detector,
    /// Overrides the top-level `action`.
    #[serde(default)]
    pub action: Option<Action>,
}

impl From<Detector> for DetectorRule {
    fn from(name: Detector) -> Self {
        DetectorRule { name, action: None }
    }
}

/// Reads a list entry written either as a scalar (`email`, `"(?i)password"`) or as a map
/// with more settings, keeping serde's field paths and unknown-key errors for the map form.
fn scalar_or_map<'de, D, S, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    S: Deserialize<'de>,
    T: Deserialize<'de> + From<S>,
{
    struct V<S, T>(PhantomData<(S, T)>);
    impl<'de, S, T> Visitor<'de> for V<S, T>
    where
        S: Deserialize<'de>,
        T: Deserialize<'de> + From<S>,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a map")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            S::deserialize(v.into_deserializer()).map(T::from)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V(PhantomData))
}

#[derive(Deserialize)]
#[serde(transparent)]
struct PatternEntry(#[serde(deserialize_with = "pattern_entry")] PatternRule);

fn pattern_entry<'de, D: Deserializer<'de>>(d: D) -> Result<PatternRule, D::Error> {
    scalar_or_map::<D, String, PatternRule>(d)
}

#[derive(Deserialize)]
#[serde(transparent)]
struct DetectorEntry(#[serde(deserialize_with = "detector_entry")] DetectorRule);

fn detector_entry<'de, D: Deserializer<'de>>(d: D) -> Result<DetectorRule, D::Error> {
    scalar_or_map::<D, Detector, DetectorRule>(d)
}

fn pattern_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PatternRule>, D::Error> {
    Ok(Vec::<PatternEntry>::deserialize(d)?
        .into_iter()
        .map(|e| e.0)
        .collect())
}

fn detector_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DetectorRule>, D::Error> {
    Ok(Vec::<DetectorEntry>::deserialize(d)?
        .into_iter()
        .map(|e| e.0)
        .collect())
}

/// The HMAC key of the `hash` action. Never printed; a `${env:VAR}` reference to a number
/// is read as its text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HashKey(String);

impl HashKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for HashKey {
    fn from(s: &str) -> Self {
        HashKey(s.to_string())
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(****)")
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HashKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HashKey, E> {
                Ok(HashKey(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HashKey, E> {
                Ok(HashKey(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HashKey, E> {
                Ok(HashKey(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HashKey, E> {
                Ok(HashKey(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HashKey, E> {
                Ok(HashKey(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Query parameters whose values `url_query` masks by default.
pub const DEFAULT_URL_QUERY_PARAMS: [&str; 14] = [
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "auth",
    "sig",
    "signature",
];

fn default_url_query_params() -> Vec<String> {
    DEFAULT_URL_QUERY_PARAMS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Shortest and longest `hash_length`.
pub(crate) const HASH_LENGTH_RANGE: std::ops::RangeInclusive<usize> = 8..=64;

/// `processors.redaction`.
///
/// ```yaml
/// processors:
///   redaction:
///     allow_all_keys: true
///     blocked_keys: ["(?i)password", "(?i)secret"]
///     detectors: [email, credit_card, ipv4, jwt, bearer_token]
///     blocked_values: ["\\bssn-\\d{3}-\\d{2}-\\d{4}\\b"]
///     action: mask
///     hash_key: ${env:REDACTION_HASH_KEY}
///     summary: info
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Keep attributes whatever their key; when false (the default) every attribute whose
    /// key is not in `allowed_keys` (or `ignored_keys`) is removed.
    pub allow_all_keys: bool,
    /// Attribute keys kept when `allow_all_keys` is false (exact names).
    pub allowed_keys: Vec<String>,
    /// Attribute and map keys never touched (exact names).
    pub ignored_keys: Vec<String>,
    /// Regexes on keys (attributes and map entries at any depth): the matching entry's whole
    /// value is masked, hashed or removed.
    #[serde(deserialize_with = "pattern_list")]
    pub blocked_keys: Vec<PatternRule>,
    /// Regexes on values: the matched parts are masked or hashed, or the attribute removed.
    #[serde(deserialize_with = "pattern_list")]
    pub blocked_values: Vec<PatternRule>,
    /// Regexes on values: a value any of them matches is left as it is by the value rules.
    pub allowed_values: Vec<String>,
    /// Built-in value detectors to switch on.
    #[serde(deserialize_with = "detector_list")]
    pub detectors: Vec<DetectorRule>,
    /// Query parameters whose values the `url_query` detector masks (case-insensitive).
    pub url_query_params: Vec<String>,
    /// The action of every rule that does not set its own.
    pub action: Action,
    /// The HMAC-SHA256 key of the `hash` action; required when any rule hashes.
    pub hash_key: Option<HashKey>,
    /// Hex characters of the HMAC written in place of a hashed value.
    pub hash_length: usize,
    /// What a changed record says about its redaction.
    pub summary: Summary,
    /// Also apply the value rules to span names (a `remove` rule masks the whole name).
    pub redact_span_names: bool,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            allow_all_keys: false,
            allowed_keys: Vec::new(),
            ignored_keys: Vec::new(),
            blocked_keys: Vec::new(),
            blocked_values: Vec::new(),
            allowed_values: Vec::new(),
            detectors: Vec::new(),
            url_query_params: default_url_query_params(),
            action: Action::Mask,
            hash_key: None,
            hash_length: 16,
            summary: Summary::Debug,
            redact_span_names: false,
        }
    }
}

/// The name every allowed-keys removal is counted under.
pub(crate) const ALLOWED_KEYS_RULE: &str = "allowed_keys";

impl ComponentConfig for RedactionConfig {
    /// Checks what serde cannot, then compiles the rules (`Redactor::new`).
    fn validate(&self) -> Result<(), FieldError> {
        if !HASH_LENGTH_RANGE.contains(&self.hash_length) {
            return Err(FieldError::new(
                "hash_length",
                format!(
                    "must be between {} and {} (hex characters of the HMAC)",
                    HASH_LENGTH_RANGE.start(),
                    HASH_LENGTH_RANGE.end()
                ),
            ));
        }
        let mut names: HashSet<&str> = HashSet::from([ALLOWED_KEYS_RULE]);
        for (list, rules) in [
            ("blocked_keys", &self.blocked_keys),
            ("blocked_values", &self.blocked_values),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                if let Some(name) = &rule.name {
                    if name.trim().is_empty() {
                        return Err(FieldError::new(
                            format!("{list}[{i}].name"),
                            "must not be empty",
                        ));
                    }
                    if !names.insert(name) {
                        return Err(FieldError::new(
                            format!("{list}[{i}].name"),
                            format!("rule name {name:?} is used twice"),
                        ));
                    }
                }
            }
        }
        // The issue's wording puts detectors among the values: a detector's name written as
        // a `blocked_values` pattern would only mask the word itself, silently.
        for (i, rule) in self.blocked_values.iter().enumerate() {
            if let Some(d) = Detector::ALL.iter().find(|d| d.as_str() == rule.pattern) {
                return Err(FieldError::new(
                    format!("blocked_values[{i}]"),
                    format!(
                        "{:?} is a built-in detector: list it under `detectors: [{}]` (a blocked_values entry is a regex and would match only the word itself)",
                        rule.pattern,
                        d.as_str()
                    ),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, d) in self.detectors.iter().enumerate() {
            if !seen.insert(d.name) {
                return Err(FieldError::new(
                    format!("detectors[{i}]"),
                    format!("{} is listed twice", d.name.as_str()),
                ));
            }
            if names.contains(d.name.as_str()) {
                return Err(FieldError::new(
                    format!("detectors[{i}]"),
                    format!(
                        "a rule in blocked_keys or blocked_values is already named {:?}",
                        d.name.as_str()
                    ),
                ));
            }
        }
        if seen.contains(&Detector::UrlQuery) {
            if self.url_query_params.is_empty() {
                return Err(FieldError::new(
                    "url_query_params",
                    "must name at least one parameter when the url_query detector is on",
                ));
            }
            if let Some(i) = self
                .url_query_params
                .iter()
                .position(|p| p.is_empty() || p.contains(['&', '=', '#', '?']))
            {
                return Err(FieldError::new(
                    format!("url_query_params[{i}]"),
                    "must be a non-empty parameter name without '&', '=', '#' or '?'",
                ));
            }
        }
        if let Some(user) = self.first_hashing_rule() {
            match &self.hash_key {
                None => {
                    return Err(FieldError::new(
                        "hash_key",
                        format!(
                            "required because {user} uses the hash action (e.g. hash_key: ${{env:REDACTION_HASH_KEY}})"
                        ),
                    ));
                }
                Some(k) if k.is_empty() => {
                    return Err(FieldError::new(
                        "hash_key",
                        format!("must not be empty: {user} uses the hash action"),
                    ));
                }
                Some(_) => {}
            }
        }
        // Regex errors surface here too, so `sightline validate` reports them.
        super::redactor::Redactor::new(self).map(|_| ())
    }
}

impl RedactionConfig {
    /// The config path of the first rule whose action is `hash`, if any.
    fn first_hashing_rule(&self) -> Option<String> {
        let hashes = |a: Option<Action>| a.unwrap_or(self.action) == Action::Hash;
        for (list, rules) in [
            ("blocked_keys", &self.blocked_keys),
            ("blocked_values", &self.blocked_values),
        ] {
            if let Some(i) = rules.iter().position(|r| hashes(r.action)) {
                return Some(format!("{list}[{i}]"));
            }
        }
        self.detectors
            .iter()
            .position(|d| hashes(d.action))
            .map(|i| format!("detectors[{i}]"))
    }
}
