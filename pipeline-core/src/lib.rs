//! # pipeline-core: the plugin API of Sightline
//!
//! Everything a component needs to take part in a pipeline lives here, and the built-in
//! component families (`receivers`, `processors`, `connectors`, `exporters`) use nothing
//! else: a plugin crate can do whatever a built-in can.
//!
//! Data flows as [`Batch`]es of OTLP protobuf types (re-exported as [`proto`], so every
//! plugin agrees on the version) through [`Consumer`]s. Receivers push into the graph,
//! processors transform and pass on to their `next`, exporters are the leaves. The
//! [`graph`] module assembles components from a validated [`config`] with the factories in a
//! [`Registry`], wraps every edge in instrumentation ([`telemetry`]) and runs the lifecycle
//! (start downstream-first, shut down receivers-first with a deadline).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub use opentelemetry_proto as proto;

pub mod attributes;
pub mod component;
pub mod config;
pub mod consumer;
pub mod distribution;
pub mod factory;
pub mod graph;
pub mod health;
pub mod memory;
pub mod model;
pub mod net;
pub mod queue;
pub mod registry;
pub mod rpc;
pub mod signal;
pub mod tap;
pub mod telemetry;
pub mod testing;
pub mod time;
pub mod tls;
pub mod wire;

pub use component::{Component, ComponentError, ComponentId, ComponentKind, Host};
pub use consumer::{BoxError, Capabilities, ConsumeError, Consumer, Fanout, SwitchConsumer};
pub use factory::{
    BuildError, ComponentConfig, ConnectorFactory, CreateContext, DynConnectorFactory,
    DynExporterFactory, DynProcessorFactory, DynReceiverFactory, ExporterFactory, FieldError,
    ProcessorFactory, ReceiverFactory, SignalConsumers, connector_output, parse_checked,
    parse_config,
};
pub use model::{AckHolder, AckOutcome, AckToken, Batch, BatchContext, Payload, WaitingBatch};
pub use registry::{Registry, RegistryError};
pub use signal::{PerSignal, Signal};
