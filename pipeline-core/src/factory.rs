//! Factories: how a component type declares itself and is built from its config.
//!
//! A factory names its type, the signals it supports, parses and validates its own
//! `#[serde(deny_unknown_fields)]` config struct (see [`parse_config`]) and builds instances.
//! The graph builder calls `create` once per component ID (receivers, exporters, connectors)
//! or once per pipeline (processors, which share per-ID state through
//! [`CreateContext::shared`]).

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::component::{Component, ComponentId, ComponentKind};
use crate::config::{ConfigValue, did_you_mean};
use crate::consumer::{Consumer, SharedConsumer};
use crate::health::HealthReporter;
use crate::signal::{PerSignal, Signal};
use crate::telemetry::ComponentTelemetry;

/// A problem in one component's config, relative to the component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Dot-separated path inside the component's config; empty for the whole of it.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses a component's raw config into its typed struct, reporting the field path and
/// suggesting the nearest known key for an unknown one. String fields take numbers and
/// booleans as their text (see [`ConfigValue`]), so `${env:API_KEY}` holding digits is the
/// string it was.
pub fn parse_config<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(ConfigValue(value)).map_err(|e| {
        let path = e.path().to_string();
        let (path, message) = describe_serde_error(&path, e.inner());
        FieldError { path, message }
    })
}

/// [`parse_config`], then `check` on the whole typed config (ranges, combinations of
/// fields): what every factory's `validate` and `create` start with.
pub fn parse_checked<T: DeserializeOwned>(
    value: &Value,
    check: impl FnOnce(&T) -> Result<(), FieldError>,
) -> Result<T, FieldError> {
    let config: T = parse_config(value)?;
    check(&config)?;
    Ok(config)
}

/// Turns a serde error into (path, message), adding "did you mean" to unknown fields and
/// unknown variants.
pub fn describe_serde_error(path: &str, e: &serde_json::Error) -> (String, String) {
    let text = e.to_string();
    let path = if path == "." { "" } else { path };
    // serde's wording: "unknown field `x`, expected one of `a`, `b`" / "expected `a`".
    for what in ["unknown field `", "unknown variant `"] {
        if let Some(rest) = text.strip_prefix(what)
            && let Some((name, tail)) = rest.split_once('`')
        {
            let known: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            // serde_path_to_error already ends the path with the unknown key.
            let full_path = path.to_string();
            let kind = if what.starts_with("unknown field") {
                "unknown key"
            } else {
                "unknown value"
            };
            let expected = if known.is_empty() {
                "no keys are accepted here".to_string()
            } else {
                format!("expected one of {}", known.join(", "))
            };
            let message = format!(
                "{kind} {name:?}{}; {expected}",
                did_you_mean(name, known.iter().copied())
            );
            return (full_path, message);
        }
    }
    let message = strip_position(&text);
    (path.to_string(), message)
}

fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Per-ID state shared by every instance a processor factory creates for that ID (one per
/// pipeline), so a stateful processor named in two pipelines has one state.
#[derive(Clone, Default)]
pub struct SharedState {
    slots: Arc<Mutex<HashMap<ComponentId, Arc<dyn Any + Send + Sync>>>>,
}

impl SharedState {
    /// The state for `id`, made by `init` the first time.
    pub fn get_or_init<T: Any + Send + Sync>(
        &self,
        id: &ComponentId,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = slots.get(id)
            && let Ok(typed) = Arc::clone(existing).downcast::<T>()
        {
            return typed;
        }
        let fresh = Arc::new(init());
        slots.insert(id.clone(), fresh.clone() as Arc<dyn Any + Send + Sync>);
        fresh
    }
}

/// What a factory gets when it builds an instance.
#[derive(Clone)]
#[non_exhaustive]
pub struct CreateContext {
    /// The component's ID.
    pub id: ComponentId,
    /// The component's role.
    pub kind: ComponentKind,
    /// Its self-metrics handle.
    pub telemetry: ComponentTelemetry,
    /// Where it reports its health.
    pub health: HealthReporter,
    /// Per-ID shared state (processors).
    pub shared: SharedState,
    /// `service.data_dir`.
    pub data_dir: PathBuf,
}

impl CreateContext {
    /// A context for tests and tools: fresh telemetry and health.
    pub fn for_tests(kind: ComponentKind, id: &str) -> CreateContext {
        let id = ComponentId::parse(id).unwrap_or_else(|_| {
            ComponentId::parse("invalid").unwrap_or_else(|_| unreachable!("constant ID"))
        });
        let telemetry = crate::telemetry::Telemetry::new();
        let health = crate::health::HealthRegistry::default();
        CreateContext {
            telemetry: telemetry.component(kind, &id),
            health: health.reporter(&id),
            id,
            kind,
            shared: SharedState::default(),
            data_dir: std::env::temp_dir(),
        }
    }
}

/// Why a component could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] FieldError),
    /// The component does not support a signal it was asked for.
    #[error("signal {0} is not supported")]
    UnsupportedSignal(Signal),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The consumers a receiver or connector feeds, one per signal it is used with.
pub type SignalConsumers = PerSignal<Option<SharedConsumer>>;

/// The consumer of `signal` in a connector's `next`, or the build error saying that no
/// pipeline of that signal receives from the connector (`type_name`).
pub fn connector_output(
    next: &SignalConsumers,
    signal: Signal,
    type_name: &str,
) -> Result<SharedConsumer, BuildError> {
    next.get(signal).clone().ok_or_else(|| {
        BuildError::Other(format!(
            "no {signal} pipeline receives from this {type_name} connector"
        ))
    })
}

/// A component that takes data: processors, exporters and connectors.
pub trait ConsumerComponent: Consumer + Component {}
impl<T: Consumer + Component + ?Sized> ConsumerComponent for T {}

/// Builds receivers.
pub trait ReceiverFactory: Send + Sync + 'static {
    /// The type name in config (`otlp`).
    fn type_name(&self) -> &'static str;
    /// Signals it can produce.
    fn signals(&self) -> &'static [Signal];
    /// A config that must validate (for the conformance kit and `components`).
    fn default_config(&self) -> Value {
        Value::Object(Default::default())
    }
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Addresses the receiver would listen on, to catch two receivers on one port.
    fn listen_addresses(&self, _config: &Value) -> Vec<String> {
        Vec::new()
    }
    /// Builds the receiver, feeding `next`.
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError>;
}

/// Builds processors (one instance per pipeline).
pub trait ProcessorFactory: Send + Sync + 'static {
    /// The type name in config (`batch`).
    fn type_name(&self) -> &'static str;
    /// Signals it can process.
    fn signals(&self) -> &'static [Signal];
    /// A config that must validate.
    fn default_config(&self) -> Value {
        Value::Object(Default::default())
    }
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Builds the processor for one pipeline of `signal`, passing results to `next`.
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

/// Builds exporters (one instance per ID, fed by every pipeline naming it).
pub trait ExporterFactory: Send + Sync + 'static {
    /// The type name in config (`otlp`).
    fn type_name(&self) -> &'static str;
    /// Signals it can export.
    fn signals(&self) -> &'static [Signal];
    /// A config that must validate.
    fn default_config(&self) -> Value {
        Value::Object(Default::default())
    }
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Addresses the exporter would listen on (a scrape endpoint), if any.
    fn listen_addresses(&self, _config: &Value) -> Vec<String> {
        Vec::new()
    }
    /// Checks a valid config against the connectors that feed it: `upstream` holds, for every
    /// pipeline naming this exporter, the connectors among its receivers as (type name,
    /// config), each once. For checks one component cannot make alone (the `slo` exporter's
    /// latency threshold against the `sli` connector's buckets). Default: nothing to check.
    fn validate_upstream(
        &self,
        _config: &Value,
        _upstream: &[(&str, &Value)],
    ) -> Result<(), FieldError> {
        Ok(())
    }
    /// Builds the exporter.
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

/// Builds connectors: the exporter of some pipelines and the receiver of others.
pub trait ConnectorFactory: Send + Sync + 'static {
    /// The type name in config (`forward`).
    fn type_name(&self) -> &'static str;
    /// Supported (input signal, output signal) pairs.
    fn signal_pairs(&self) -> &'static [(Signal, Signal)];
    /// A config that must validate.
    fn default_config(&self) -> Value {
        Value::Object(Default::default())
    }
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Addresses the connector would listen on (a status endpoint), if any.
    fn listen_addresses(&self, _config: &Value) -> Vec<String> {
        Vec::new()
    }
    /// Checks a valid config against the connectors that feed it, as
    /// [`ExporterFactory::validate_upstream`] does for exporters. Default: nothing to check.
    fn validate_upstream(
        &self,
        _config: &Value,
        _upstream: &[(&str, &Value)],
    ) -> Result<(), FieldError> {
        Ok(())
    }
    /// Builds the connector, emitting into `next` (one consumer per output signal used).
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        endpoint: String,
        #[serde(default)]
        tls: bool,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        grpc: Inner,
    }

    #[test]
    fn unknown_field_has_path_and_suggestion() {
        let e = parse_config::<Outer>(&serde_json::json!({"grpc": {"endpont": "x"}})).unwrap_err();
        assert_eq!(e.path, "grpc.endpont");
        assert!(
            e.message.contains("did you mean \"endpoint\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_type_has_path() {
        let e = parse_config::<Outer>(&serde_json::json!({"grpc": {"endpoint": "x", "tls": "on"}}))
            .unwrap_err();
        assert_eq!(e.path, "grpc.tls");
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }
}
