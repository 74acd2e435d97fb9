//! Configuration in the OpenTelemetry Collector's shape.
//!
//! Two phases. [`load`] turns YAML files into raw JSON values per component ID (after
//! `${env:VAR}` / `${env:VAR:-default}` substitution and a deep merge of later files over
//! earlier ones) plus the typed [`ServiceConfig`]. Then the graph builder hands each
//! component's raw value to its factory, which parses its own `deny_unknown_fields` struct
//! with [`crate::factory::parse_config`]. Every error names the file, the component ID and
//! the field path.

mod bytesize;
mod duration;
mod scalars;
mod secret;
mod suggest;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use bytesize::{ByteSize, parse_byte_size};
pub use duration::{HumanDuration, parse_duration};
pub use scalars::ConfigValue;
pub use secret::{MASK, Secret, is_secret_key};
pub use suggest::{closest, did_you_mean};

use crate::component::{ComponentId, ComponentKind};

/// One config file's text and the name to report it by.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// A path, or a label such as `<embedded default>`.
    pub name: String,
    /// The YAML text.
    pub text: String,
}

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the offending part came from.
    pub file: String,
    /// `receivers::otlp`, `service::pipelines::traces`, or empty for the whole file.
    pub component: String,
    /// The field path inside the component, dot-separated; may be empty.
    pub path: String,
    /// What is wrong, with a suggestion where one exists.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if !self.component.is_empty() {
            write!(f, ": {}", self.component)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, in the order found.
#[derive(Debug, Clone, Default, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The `service` section.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Sightline's own logs and metrics.
    pub telemetry: TelemetryConfig,
    /// The health probe endpoint.
    pub health: HealthConfig,
    /// Pipelines by ID: `traces`, `metrics`, `logs` or `<signal>/<name>`.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// How long shutdown may take before queued data is dropped (and counted).
    pub shutdown_timeout: ShutdownTimeout,
    /// Where components keep state (checkpoints, persistent queues).
    pub data_dir: DataDir,
}

/// `service.shutdown_timeout`, default 10s.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct ShutdownTimeout(pub HumanDuration);

impl Default for ShutdownTimeout {
    fn default() -> Self {
        ShutdownTimeout(HumanDuration::from_secs(10))
    }
}

/// `service.data_dir`, default `./data`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct DataDir(pub PathBuf);

impl Default for DataDir {
    fn default() -> Self {
        DataDir(PathBuf::from("./data"))
    }
}

/// `service.telemetry`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Sightline's own logs.
    pub logs: LogsConfig,
    /// Sightline's own metrics.
    pub metrics: MetricsConfig,
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` or a `RUST_LOG`-style filter.
    pub level: String,
    /// `json` (the seed guide's structured layout) or `text`.
    pub format: LogFormat,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// How Sightline writes its own logs.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; `none` or empty turns it off.
    pub endpoint: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            endpoint: "127.0.0.1:8888".into(),
        }
    }
}

/// `service.health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Where `/health/live`, `/health/ready` and `/health/startup` are served; `none` or
    /// empty turns them off.
    pub endpoint: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            endpoint: "127.0.0.1:13133".into(),
        }
    }
}

/// One pipeline: receivers -> processors (in order) -> exporters.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Receiver and connector IDs feeding the pipeline.
    pub receivers: Vec<String>,
    /// Processor IDs, applied in order.
    pub processors: Vec<String>,
    /// Exporter and connector IDs the pipeline fans out to.
    pub exporters: Vec<String>,
}

/// A loaded config: raw component values by ID, and the typed service section.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Raw component configs per kind, by ID.
    pub components: BTreeMap<ComponentKind, BTreeMap<ComponentId, Value>>,
    /// The `service` section.
    pub service: ServiceConfig,
    /// Which file last defined each component or pipeline (for error messages).
    pub origins: BTreeMap<String, String>,
    /// The file names, in load order.
    pub files: Vec<String>,
    /// The values substituted from the environment, kept out of messages.
    pub env_values: EnvValues,
}

/// The values `${env:VAR}` references were replaced with, so that messages about the config
/// (validation errors, start-up errors) can name the reference instead of quoting what may
/// be a secret.
#[derive(Debug, Clone, Default)]
pub struct EnvValues {
    /// `(value, "${env:VAR}")`, longest value first.
    values: Vec<(String, String)>,
}

impl EnvValues {
    /// Values shorter than this are not masked: they cannot be secrets worth the name, and
    /// masking `1` or `on` would garble every message.
    const MIN_LEN: usize = 3;

    fn record(&mut self, name: &str, value: &str) {
        self.mask(value, || format!("${{env:{name}}}"));
    }

    /// A literal value under a secret key ([`is_secret_key`]), shown as [`MASK`].
    /// One that holds a substituted value keeps the more telling `${env:VAR}` mask.
    fn record_literal(&mut self, value: &str) {
        if self.values.iter().any(|(v, _)| value.contains(v.as_str())) {
            return;
        }
        self.mask(value, || MASK.to_string());
    }

    fn mask(&mut self, value: &str, shown: impl FnOnce() -> String) {
        if value.chars().count() < Self::MIN_LEN || self.values.iter().any(|(v, _)| v == value) {
            return;
        }
        self.values.push((value.to_string(), shown()));
        self.values.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    }

    /// `text` with every substituted value replaced by its reference (`${env:API_KEY}`) and
    /// every value under a secret key replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, reference) in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), reference);
            }
        }
        out
    }

    /// [`EnvValues::redact`] on the message of every error.
    pub fn redact_errors(&self, errors: &mut [ConfigError]) {
        for e in errors {
            e.message = self.redact(&e.message);
        }
    }
}

impl Config {
    /// The raw configs of one kind.
    pub fn section(&self, kind: ComponentKind) -> impl Iterator<Item = (&ComponentId, &Value)> {
        self.components.get(&kind).into_iter().flatten()
    }

    /// The file to blame for a component or pipeline key (`receivers::otlp`).
    pub fn origin(&self, key: &str) -> &str {
        self.origins
            .get(key)
            .or_else(|| self.files.last())
            .map_or("<config>", String::as_str)
    }
}

/// For `Option<T>` fields where a key that is present, even with no value (`grpc:`), turns a
/// feature on with its defaults, as in the OpenTelemetry Collector. Use with
/// `#[serde(default, deserialize_with = "present_means_enabled")]`.
pub fn present_means_enabled<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// The config section name of a kind: `receivers`, `processors`, ...
pub fn section_name(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Receiver => "receivers",
        ComponentKind::Processor => "processors",
        ComponentKind::Exporter => "exporters",
        ComponentKind::Connector => "connectors",
    }
}

const SECTIONS: [(&str, ComponentKind); 4] = [
    ("receivers", ComponentKind::Receiver),
    ("processors", ComponentKind::Processor),
    ("exporters", ComponentKind::Exporter),
    ("connectors", ComponentKind::Connector),
];
const TOP_LEVEL: [&str; 5] = [
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "service",
];

/// Reads environment variables; a function so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses, substitutes and merges `sources` (later over earlier) into a [`Config`].
pub fn load(sources: &[ConfigSource], env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut merged = Map::new();
    let mut origins = BTreeMap::new();
    let mut env_values = EnvValues::default();
    for source in sources {
        let mut value: Value = match serde_saphyr::from_str(&source.text) {
            Ok(Value::Null) => Value::Object(Map::new()),
            Ok(v) => v,
            Err(e) => {
                errors.push(err(&source.name, "", "", format!("invalid YAML: {e}")));
                continue;
            }
        };
        let Value::Object(map) = &mut value else {
            errors.push(err(
                &source.name,
                "",
                "",
                "the top level must be a map".into(),
            ));
            continue;
        };
        let mut substitution = Substitution {
            file: &source.name,
            env,
            errors: &mut errors,
            values: &mut env_values,
        };
        substitution.map(map, "");
        for (key, section) in map.iter() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                errors.push(err(
                    &source.name,
                    "",
                    key,
                    format!(
                        "unknown top-level key{}; expected one of {}",
                        did_you_mean(key, TOP_LEVEL),
                        TOP_LEVEL.join(", ")
                    ),
                ));
                continue;
            }
            if let Value::Object(entries) = section {
                for id in entries.keys() {
                    origins.insert(format!("{key}::{id}"), source.name.clone());
                }
            }
            if key == "service"
                && let Some(Value::Object(p)) = section.get("pipelines")
            {
                for id in p.keys() {
                    origins.insert(format!("service::pipelines::{id}"), source.name.clone());
                }
            }
        }
        deep_merge(&mut merged, std::mem::take(map));
    }
    for section in merged.values() {
        secret::collect(section, &mut env_values);
    }
    let last_file = sources.last().map_or("<config>", |s| s.name.as_str());
    let mut config = Config {
        origins,
        files: sources.iter().map(|s| s.name.clone()).collect(),
        env_values,
        ..Config::default()
    };
    for (name, kind) in SECTIONS {
        let mut parsed = BTreeMap::new();
        match merged.remove(name) {
            None | Some(Value::Null) => {}
            Some(Value::Object(entries)) => {
                for (id, value) in entries {
                    let key = format!("{name}::{id}");
                    let file = config.origin(&key).to_string();
                    match ComponentId::parse(&id) {
                        Ok(cid) => {
                            let value = if value.is_null() {
                                Value::Object(Map::new())
                            } else {
                                value
                            };
                            parsed.insert(cid, value);
                        }
                        Err(m) => errors.push(err(&file, &key, "", m)),
                    }
                }
            }
            Some(_) => errors.push(err(
                last_file,
                name,
                "",
                "must be a map of component IDs".into(),
            )),
        }
        config.components.insert(kind, parsed);
    }
    match merged.remove("service") {
        None | Some(Value::Null) => {}
        Some(service) => {
            match serde_path_to_error::deserialize::<_, ServiceConfig>(ConfigValue(&service)) {
                Ok(s) => config.service = s,
                Err(e) => {
                    let path = e.path().to_string();
                    let file = service_origin(&config, &path).to_string();
                    let (path, message) = crate::factory::describe_serde_error(&path, e.inner());
                    errors.push(err(&file, "service", &path, message));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        config.env_values.redact_errors(&mut errors);
        Err(ConfigErrors(errors))
    }
}

fn service_origin<'a>(config: &'a Config, path: &str) -> &'a str {
    let mut parts = path.split('.');
    if parts.next() == Some("pipelines")
        && let Some(id) = parts.next()
    {
        return config.origin(&format!("service::pipelines::{id}"));
    }
    config.origin("service")
}

fn err(file: &str, component: &str, path: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        component: component.to_string(),
        path: path.to_string(),
        message,
    }
}

/// Later maps merge into earlier ones key by key; anything else replaces.
fn deep_merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// `${env:...}` substitution over one file's values.
struct Substitution<'a, 'e> {
    file: &'a str,
    env: EnvLookup<'e>,
    errors: &'a mut Vec<ConfigError>,
    values: &'a mut EnvValues,
}

impl Substitution<'_, '_> {
    fn map(&mut self, map: &mut Map<String, Value>, path: &str) {
        for (key, value) in map.iter_mut() {
            let p = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            self.value(value, &p);
        }
    }

    fn value(&mut self, value: &mut Value, path: &str) {
        match value {
            Value::Object(m) => self.map(m, path),
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.value(v, &format!("{path}[{i}]"));
                }
            }
            Value::String(s) if s.contains('$') => {
                let values = &mut *self.values;
                match expand_recording(s, self.env, &mut |name, v| values.record(name, v)) {
                    Ok((expanded, whole)) => *value = typed(expanded, whole),
                    Err(m) => self.errors.push(err(self.file, "", path, m)),
                }
            }
            _ => {}
        }
    }
}

/// A value that is one reference alone takes the variable's YAML type, so `${env:PORT}` can
/// be a number; but only a number or boolean that prints back as exactly the same text:
/// `007`, `1e3`, `0x1F`, ` 42` or `yes` stay strings instead of becoming 7, 1000.0, 31, 42
/// or true, and any other text stays the string it is (never read as YAML, which would
/// cut `abc #1` at the `#` or unquote `'abc'`). A string-typed field then takes the number or boolean as that text (see
/// [`ConfigValue`]), so nothing substituted changes on its way to a string field.
fn typed(expanded: String, whole: bool) -> Value {
    if !whole {
        return Value::String(expanded);
    }
    serde_saphyr::from_str::<Value>(&expanded)
        .ok()
        .filter(|v| v.is_number() || v.is_boolean())
        .filter(|v| serde_json::to_string(v).is_ok_and(|t| t == expanded))
        .unwrap_or(Value::String(expanded))
}

/// Expands `${env:VAR}`, `${env:VAR:-default}` and `$$`. Returns the text and whether the
/// input was a single reference and nothing else.
pub fn expand(s: &str, env: EnvLookup<'_>) -> Result<(String, bool), String> {
    expand_recording(s, env, &mut |_, _| {})
}

/// [`expand`], telling `found` each variable's name and the value it had.
fn expand_recording(
    s: &str,
    env: EnvLookup<'_>,
    found: &mut dyn FnMut(&str, &str),
) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut references = 0;
    let mut literal = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        literal |= pos > 0;
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            literal = true;
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed reference in {s:?}"))?;
            let reference = &body[..end];
            let spec = reference.strip_prefix("env:").ok_or_else(|| {
                format!("unsupported reference ${{{reference}}}: only ${{env:VAR}} and ${{env:VAR:-default}} are supported")
            })?;
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (env(name), default) {
                (Some(v), _) => {
                    found(name, &v);
                    out.push_str(&v);
                }
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set and has no default (write ${{env:{name}:-default}})"
                    ));
                }
            }
            references += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            literal = true;
            rest = after;
        }
    }
    literal |= !rest.is_empty();
    out.push_str(rest);
    Ok((out, references == 1 && !literal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "KEY" => Some("007".into()),
            "HEXKEY" => Some("1e3".into()),
            "HOST" => Some("example".into()),
            "API_KEY" => Some("80417365".into()),
            "PADDED" => Some(" 42".into()),
            "HASHED" => Some("abc #1".into()),
            "QUOTED" => Some("'abc'".into()),
            "YES" => Some("yes".into()),
            "TRUE" => Some("true".into()),
            _ => None,
        }
    }

    fn src(name: &str, text: &str) -> ConfigSource {
        ConfigSource {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn expands_env_references() {
        assert_eq!(expand("${env:HOST}:1", &env).unwrap().0, "example:1");
        assert_eq!(expand("${env:NOPE:-x}", &env).unwrap(), ("x".into(), true));
        assert_eq!(expand("$$HOME", &env).unwrap().0, "$HOME");
        assert!(expand("${env:NOPE}", &env).unwrap_err().contains("NOPE"));
    }

    #[test]
    fn whole_reference_takes_yaml_type() {
        let c = load(
            &[src("a.yaml", "receivers: {otlp: {port: '${env:PORT}'}}")],
            &env,
        )
        .unwrap();
        let v = &c.components[&ComponentKind::Receiver];
        assert_eq!(v.values().next().unwrap()["port"], serde_json::json!(4317));
    }

    #[test]
    fn numbers_that_would_change_their_text_stay_strings() {
        let c = load(
            &[src(
                "a.yaml",
                "processors: {redaction: {hash_key: '${env:KEY}', other: '${env:HEXKEY}'}}",
            )],
            &env,
        )
        .unwrap();
        let v = &c.components[&ComponentKind::Processor];
        let r = v.values().next().unwrap();
        assert_eq!(r["hash_key"], serde_json::json!("007"));
        assert_eq!(r["other"], serde_json::json!("1e3"));
    }

    #[test]
    fn substituted_text_reaches_string_fields_unchanged() {
        let c = load(
            &[src(
                "a.yaml",
                "exporters: {x: {key: '${env:API_KEY}', padded: '${env:PADDED}', hashed: '${env:HASHED}', \
                 quoted: '${env:QUOTED}', yes: '${env:YES}', flag: '${env:TRUE}'}}",
            )],
            &env,
        )
        .unwrap();
        let x = c.components[&ComponentKind::Exporter]
            .values()
            .next()
            .unwrap();
        // A number that prints as its own text stays a number, for number fields...
        assert_eq!(x["key"], serde_json::json!(80_417_365));
        assert_eq!(x["flag"], serde_json::json!(true));
        // ...and anything else stays exactly the text it was.
        assert_eq!(x["padded"], serde_json::json!(" 42"));
        assert_eq!(x["hashed"], serde_json::json!("abc #1"));
        assert_eq!(x["quoted"], serde_json::json!("'abc'"));
        assert_eq!(x["yes"], serde_json::json!("yes"));

        #[derive(serde::Deserialize)]
        struct Strings {
            key: String,
            flag: String,
        }
        let typed: Strings = crate::factory::parse_config(x).unwrap();
        assert_eq!(typed.key, "80417365");
        assert_eq!(typed.flag, "true");
    }

    #[test]
    fn messages_name_the_reference_not_the_value() {
        let e = load(
            &[src(
                "a.yaml",
                "service: {telemetry: {logs: {format: '${env:API_KEY}'}}}",
            )],
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("80417365"), "{e}");
        assert!(e.contains("${env:API_KEY}"), "{e}");
        let c = load(
            &[src(
                "a.yaml",
                "exporters: {x: {key: 'k${env:API_KEY}', p: '${env:PORT}'}}",
            )],
            &env,
        )
        .unwrap();
        assert_eq!(
            c.env_values.redact("bad key \"k80417365\" on port 4317"),
            "bad key \"k${env:API_KEY}\" on port ${env:PORT}"
        );
    }

    #[test]
    fn later_files_deep_merge() {
        let a = src(
            "a.yaml",
            "exporters: {debug: {verbosity: basic}, file: {path: x}}\nservice: {shutdown_timeout: 3s}",
        );
        let b = src("b.yaml", "exporters: {debug: {verbosity: detailed}}");
        let c = load(&[a, b], &env).unwrap();
        let e = &c.components[&ComponentKind::Exporter];
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[&ComponentId::parse("debug").unwrap()]["verbosity"],
            "detailed"
        );
        assert_eq!(c.service.shutdown_timeout.0.get().as_secs(), 3);
        assert_eq!(c.origin("exporters::debug"), "b.yaml");
        assert_eq!(c.origin("exporters::file"), "a.yaml");
    }

    #[test]
    fn unknown_keys_are_errors_with_suggestions() {
        let e = load(
            &[src("a.yaml", "recievers: {}\nservice: {pipelins: {}}")],
            &env,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("did you mean \"receivers\""), "{text}");
        assert!(text.contains("did you mean \"pipelines\""), "{text}");
        assert!(text.contains("a.yaml"), "{text}");
    }

    #[test]
    fn unset_env_is_an_error() {
        let e = load(
            &[src("a.yaml", "exporters: {file: {path: '${env:MISSING}'}}")],
            &env,
        )
        .unwrap_err();
        assert!(e.to_string().contains("MISSING"), "{e}");
    }
}
