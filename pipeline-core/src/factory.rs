//! Factories: how a component type declares itself and is built from its config.
//!
//! A factory names its type and the signals it supports, says which typed config it takes
//! (a `#[serde(deny_unknown_fields)]` struct implementing [`ComponentConfig`]) and builds
//! instances from it: [`ReceiverFactory`], [`ProcessorFactory`], [`ExporterFactory`],
//! [`ConnectorFactory`]. Parsing, validation and the default config come from the config
//! type, once, through the object-safe `Dyn*Factory` traits every factory gets for free and
//! the [`Registry`](crate::Registry) stores. The graph builder calls `create` once per
//! component ID (receivers, exporters, connectors) or once per pipeline (processors, which
//! share per-ID state through [`CreateContext::shared`]).
//!
//! # Writing a component
//!
//! A processor that passes every batch on unchanged: a config type, the runtime (a
//! [`Consumer`] and a [`Component`]) and the factory tying them together.
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use pipeline_core::consumer::SharedConsumer;
//! use pipeline_core::factory::ConsumerComponent;
//! use pipeline_core::{
//!     Batch, BuildError, Capabilities, Component, ComponentConfig, ConsumeError, Consumer,
//!     CreateContext, ProcessorFactory, Signal,
//! };
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct PassConfig {}
//! impl ComponentConfig for PassConfig {}
//!
//! /// Passes every batch on unchanged.
//! struct Pass {
//!     next: SharedConsumer,
//! }
//!
//! #[async_trait]
//! impl Consumer for Pass {
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::MOVES_DATA
//!     }
//!     async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
//!         self.next.consume(batch).await
//!     }
//! }
//! #[async_trait]
//! impl Component for Pass {}
//!
//! struct PassFactory;
//! impl ProcessorFactory for PassFactory {
//!     type Config = PassConfig;
//!     const TYPE_NAME: &'static str = "pass";
//!     const SIGNALS: &'static [Signal] = &Signal::ALL;
//!
//!     fn build(
//!         &self,
//!         _ctx: CreateContext,
//!         _config: PassConfig,
//!         _signal: Signal,
//!         next: SharedConsumer,
//!     ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
//!         Ok(Arc::new(Pass { next }))
//!     }
//! }
//!
//! let mut registry = pipeline_core::Registry::new();
//! registry.add_processor(PassFactory).unwrap();
//! assert_eq!(registry.type_names(pipeline_core::ComponentKind::Processor), ["pass"]);
//! ```

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

/// A component's typed config: parsed from the YAML section once, checked once, and handed
/// to the factory's `build` as the struct.
///
/// Derive `Deserialize` with `#[serde(deny_unknown_fields)]` (so a misspelled key is an error
/// with a "did you mean") and implement this trait; every method has a default.
///
/// # Example
///
/// ```
/// use pipeline_core::{ComponentConfig, FieldError};
/// use serde::Deserialize;
/// use serde_json::{Value, json};
///
/// /// Config of a `greeting` processor.
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct GreetingConfig {
///     /// The attribute to set.
///     key: String,
///     /// How many times (1 to 10).
///     #[serde(default = "one")]
///     times: u32,
/// }
///
/// fn one() -> u32 {
///     1
/// }
///
/// impl ComponentConfig for GreetingConfig {
///     fn default_config() -> Value {
///         json!({ "key": "greeting" })
///     }
///
///     fn validate(&self) -> Result<(), FieldError> {
///         if !(1..=10).contains(&self.times) {
///             return Err(FieldError::new("times", "must be between 1 and 10"));
///         }
///         Ok(())
///     }
/// }
///
/// let config = GreetingConfig::parse(&json!({ "key": "hello", "times": 3 })).unwrap();
/// assert_eq!(config.times, 3);
/// let err = GreetingConfig::parse(&json!({ "key": "hello", "times": 0 })).unwrap_err();
/// assert_eq!(err.to_string(), "times: must be between 1 and 10");
/// let err = GreetingConfig::parse(&json!({ "kee": "hello" })).unwrap_err();
/// assert!(err.message.contains("did you mean \"key\""), "{err}");
/// ```
pub trait ComponentConfig: DeserializeOwned + Send + Sync + 'static {
    /// A config that validates, for the conformance kit (`pipeline_core::testing`) and for
    /// `sightline components`. Default: `{}`, right for a config whose keys all have
    /// defaults; a config with a required key returns an example here.
    fn default_config() -> Value {
        Value::Object(Default::default())
    }

    /// Checks what `Deserialize` cannot: ranges, combinations of fields, syntax inside
    /// strings. Report the failing field's dot-separated path in the [`FieldError`].
    /// Default: nothing more to check.
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }

    /// Addresses the component would listen on (`host:port`), so the graph can refuse two
    /// components on one port before anything starts. Default: none.
    fn listen_addresses(&self) -> Vec<String> {
        Vec::new()
    }

    /// Checks a valid config against the connectors that feed it (exporters and connectors
    /// only): `upstream` holds, for every pipeline naming this component, the connectors among
    /// its receivers as (type name, raw config), each once. For checks one component cannot
    /// make alone (the `slo` exporter's latency threshold against the `sli` connector's
    /// buckets). Default: nothing to check.
    fn validate_upstream(&self, _upstream: &[(&str, &Value)]) -> Result<(), FieldError> {
        Ok(())
    }

    /// Parses `value` (with [`parse_config`]) and [`validate`](ComponentConfig::validate)s
    /// it: what the graph does with every component's section.
    fn parse(value: &Value) -> Result<Self, FieldError> {
        parse_checked(value, Self::validate)
    }
}

/// Builds receivers: components that bring data into the graph (listen on a port, tail a
/// file, scrape the host) and push it into `next`.
///
/// Register with [`Registry::add_receiver`](crate::Registry::add_receiver). The graph parses
/// and validates [`Config`](ReceiverFactory::Config) once per component ID and calls
/// [`build`](ReceiverFactory::build) with it.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
///
/// use async_trait::async_trait;
/// use pipeline_core::{
///     BuildError, Component, ComponentConfig, CreateContext, ReceiverFactory, Registry, Signal,
///     SignalConsumers,
/// };
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct NullConfig {}
/// impl ComponentConfig for NullConfig {}
///
/// /// A receiver that never receives anything.
/// struct NullReceiver;
/// #[async_trait]
/// impl Component for NullReceiver {}
///
/// struct NullFactory;
/// impl ReceiverFactory for NullFactory {
///     type Config = NullConfig;
///     const TYPE_NAME: &'static str = "null";
///     const SIGNALS: &'static [Signal] = &Signal::ALL;
///
///     fn build(
///         &self,
///         _ctx: CreateContext,
///         _config: NullConfig,
///         _next: SignalConsumers,
///     ) -> Result<Arc<dyn Component>, BuildError> {
///         Ok(Arc::new(NullReceiver))
///     }
/// }
///
/// let mut registry = Registry::new();
/// registry.add_receiver(NullFactory).unwrap();
/// assert!(registry.receiver("null").is_some());
/// ```
pub trait ReceiverFactory: Send + Sync + 'static {
    /// Its typed config.
    type Config: ComponentConfig;
    /// The type name in config (`otlp`): the part of a component ID before the `/`.
    const TYPE_NAME: &'static str;
    /// Signals it can produce.
    const SIGNALS: &'static [Signal];
    /// Builds the receiver, feeding `next` (one consumer per signal it is used with; a
    /// signal no pipeline takes from it is `None`).
    fn build(
        &self,
        ctx: CreateContext,
        config: Self::Config,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError>;
}

/// Builds processors: one instance per pipeline naming the processor, each passing its
/// results to that pipeline's `next`. Instances of one ID share state through
/// [`CreateContext::shared`].
///
/// See the [module docs](self) for a complete processor.
pub trait ProcessorFactory: Send + Sync + 'static {
    /// Its typed config.
    type Config: ComponentConfig;
    /// The type name in config (`batch`).
    const TYPE_NAME: &'static str;
    /// Signals it can process.
    const SIGNALS: &'static [Signal];
    /// Builds the processor for one pipeline of `signal`, passing results to `next`.
    fn build(
        &self,
        ctx: CreateContext,
        config: Self::Config,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

/// Builds exporters: one instance per ID, fed by every pipeline naming it; the leaves of
/// the graph. Most exporters put a [`QueuedExporter`-style](crate::queue) queue in front of
/// a sender; see the `exporters` crate's `helper` module.
///
/// An exporter's factory has the shape of a processor's (see the [module docs](self)) without
/// `signal` and `next`: it is where data leaves the graph, so its consumer resolves every
/// batch's acknowledgement (`batch.delivered()` or `batch.dropped()`).
pub trait ExporterFactory: Send + Sync + 'static {
    /// Its typed config.
    type Config: ComponentConfig;
    /// The type name in config (`otlp`).
    const TYPE_NAME: &'static str;
    /// Signals it can export.
    const SIGNALS: &'static [Signal];
    /// Builds the exporter.
    fn build(
        &self,
        ctx: CreateContext,
        config: Self::Config,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

/// Builds connectors: the exporter of some pipelines and the receiver of others, one
/// instance per ID, emitting into `next` (one consumer per output signal used).
pub trait ConnectorFactory: Send + Sync + 'static {
    /// Its typed config.
    type Config: ComponentConfig;
    /// The type name in config (`forward`).
    const TYPE_NAME: &'static str;
    /// Supported (input signal, output signal) pairs.
    const SIGNAL_PAIRS: &'static [(Signal, Signal)];
    /// Builds the connector; find the consumer of an output signal with
    /// [`connector_output`].
    fn build(
        &self,
        ctx: CreateContext,
        config: Self::Config,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

/// A receiver factory as the [`Registry`](crate::Registry) and the graph use it: config as
/// raw JSON. Every [`ReceiverFactory`] is one; implement that instead.
pub trait DynReceiverFactory: Send + Sync + 'static {
    /// The type name in config (`otlp`).
    fn type_name(&self) -> &'static str;
    /// Signals it can produce.
    fn signals(&self) -> &'static [Signal];
    /// A config that must validate (for the conformance kit and `components`).
    fn default_config(&self) -> Value;
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Addresses the receiver would listen on, to catch two receivers on one port.
    fn listen_addresses(&self, config: &Value) -> Vec<String>;
    /// Builds the receiver, feeding `next`.
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError>;
}

/// A processor factory with config as raw JSON; every [`ProcessorFactory`] is one.
pub trait DynProcessorFactory: Send + Sync + 'static {
    /// The type name in config (`batch`).
    fn type_name(&self) -> &'static str;
    /// Signals it can process.
    fn signals(&self) -> &'static [Signal];
    /// A config that must validate.
    fn default_config(&self) -> Value;
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

/// An exporter factory with config as raw JSON; every [`ExporterFactory`] is one.
pub trait DynExporterFactory: Send + Sync + 'static {
    /// The type name in config (`otlp`).
    fn type_name(&self) -> &'static str;
    /// Signals it can export.
    fn signals(&self) -> &'static [Signal];
    /// A config that must validate.
    fn default_config(&self) -> Value;
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Addresses the exporter would listen on (a scrape endpoint), if any.
    fn listen_addresses(&self, config: &Value) -> Vec<String>;
    /// See [`ComponentConfig::validate_upstream`].
    fn validate_upstream(
        &self,
        config: &Value,
        upstream: &[(&str, &Value)],
    ) -> Result<(), FieldError>;
    /// Builds the exporter.
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

/// A connector factory with config as raw JSON; every [`ConnectorFactory`] is one.
pub trait DynConnectorFactory: Send + Sync + 'static {
    /// The type name in config (`forward`).
    fn type_name(&self) -> &'static str;
    /// Supported (input signal, output signal) pairs.
    fn signal_pairs(&self) -> &'static [(Signal, Signal)];
    /// A config that must validate.
    fn default_config(&self) -> Value;
    /// Parses and checks a config.
    fn validate(&self, config: &Value) -> Result<(), FieldError>;
    /// Addresses the connector would listen on (a status endpoint), if any.
    fn listen_addresses(&self, config: &Value) -> Vec<String>;
    /// See [`ComponentConfig::validate_upstream`].
    fn validate_upstream(
        &self,
        config: &Value,
        upstream: &[(&str, &Value)],
    ) -> Result<(), FieldError>;
    /// Builds the connector, emitting into `next`.
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError>;
}

fn addresses_of<C: ComponentConfig>(config: &Value) -> Vec<String> {
    C::parse(config)
        .map(|c| c.listen_addresses())
        .unwrap_or_default()
}

fn upstream_of<C: ComponentConfig>(
    config: &Value,
    upstream: &[(&str, &Value)],
) -> Result<(), FieldError> {
    C::parse(config)?.validate_upstream(upstream)
}

impl<F: ReceiverFactory> DynReceiverFactory for F {
    fn type_name(&self) -> &'static str {
        F::TYPE_NAME
    }
    fn signals(&self) -> &'static [Signal] {
        F::SIGNALS
    }
    fn default_config(&self) -> Value {
        F::Config::default_config()
    }
    fn validate(&self, config: &Value) -> Result<(), FieldError> {
        F::Config::parse(config).map(|_| ())
    }
    fn listen_addresses(&self, config: &Value) -> Vec<String> {
        addresses_of::<F::Config>(config)
    }
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError> {
        self.build(ctx, F::Config::parse(config)?, next)
    }
}

impl<F: ProcessorFactory> DynProcessorFactory for F {
    fn type_name(&self) -> &'static str {
        F::TYPE_NAME
    }
    fn signals(&self) -> &'static [Signal] {
        F::SIGNALS
    }
    fn default_config(&self) -> Value {
        F::Config::default_config()
    }
    fn validate(&self, config: &Value) -> Result<(), FieldError> {
        F::Config::parse(config).map(|_| ())
    }
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        if !F::SIGNALS.contains(&signal) {
            return Err(BuildError::UnsupportedSignal(signal));
        }
        self.build(ctx, F::Config::parse(config)?, signal, next)
    }
}

impl<F: ExporterFactory> DynExporterFactory for F {
    fn type_name(&self) -> &'static str {
        F::TYPE_NAME
    }
    fn signals(&self) -> &'static [Signal] {
        F::SIGNALS
    }
    fn default_config(&self) -> Value {
        F::Config::default_config()
    }
    fn validate(&self, config: &Value) -> Result<(), FieldError> {
        F::Config::parse(config).map(|_| ())
    }
    fn listen_addresses(&self, config: &Value) -> Vec<String> {
        addresses_of::<F::Config>(config)
    }
    fn validate_upstream(
        &self,
        config: &Value,
        upstream: &[(&str, &Value)],
    ) -> Result<(), FieldError> {
        upstream_of::<F::Config>(config, upstream)
    }
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        self.build(ctx, F::Config::parse(config)?)
    }
}

impl<F: ConnectorFactory> DynConnectorFactory for F {
    fn type_name(&self) -> &'static str {
        F::TYPE_NAME
    }
    fn signal_pairs(&self) -> &'static [(Signal, Signal)] {
        F::SIGNAL_PAIRS
    }
    fn default_config(&self) -> Value {
        F::Config::default_config()
    }
    fn validate(&self, config: &Value) -> Result<(), FieldError> {
        F::Config::parse(config).map(|_| ())
    }
    fn listen_addresses(&self, config: &Value) -> Vec<String> {
        addresses_of::<F::Config>(config)
    }
    fn validate_upstream(
        &self,
        config: &Value,
        upstream: &[(&str, &Value)],
    ) -> Result<(), FieldError> {
        upstream_of::<F::Config>(config, upstream)
    }
    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        self.build(ctx, F::Config::parse(config)?, next)
    }
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
