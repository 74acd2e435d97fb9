//! The explicit registry of component factories.
//!
//! Each family crate has a `register(&mut Registry)` function; a distribution's `main` calls
//! the ones it wants, plugins included. No link-time magic: what is registered is what was
//! called.
//!
//! ```
//! use pipeline_core::{ComponentKind, Registry};
//!
//! let mut registry = Registry::new();
//! // receivers::register(&mut registry)?; processors::register(&mut registry)?; ...
//! // registry.add_processor(my_plugin::Factory)?;
//! assert!(registry.type_names(ComponentKind::Processor).is_empty());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::component::ComponentKind;
use crate::factory::{
    ConnectorFactory, DynConnectorFactory, DynExporterFactory, DynProcessorFactory,
    DynReceiverFactory, ExporterFactory, ProcessorFactory, ReceiverFactory,
};
use crate::signal::Signal;

/// Why a factory could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Two factories of one kind claim the same type name.
    #[error("a {kind} of type {type_name:?} is already registered")]
    Duplicate {
        /// The kind.
        kind: ComponentKind,
        /// The type name.
        type_name: String,
    },
}

/// Factories by kind and type name.
#[derive(Default, Clone)]
pub struct Registry {
    receivers: BTreeMap<&'static str, Arc<dyn DynReceiverFactory>>,
    processors: BTreeMap<&'static str, Arc<dyn DynProcessorFactory>>,
    exporters: BTreeMap<&'static str, Arc<dyn DynExporterFactory>>,
    connectors: BTreeMap<&'static str, Arc<dyn DynConnectorFactory>>,
}

fn insert<F: ?Sized>(
    map: &mut BTreeMap<&'static str, Arc<F>>,
    kind: ComponentKind,
    name: &'static str,
    f: Arc<F>,
) -> Result<(), RegistryError> {
    if map.contains_key(name) {
        return Err(RegistryError::Duplicate {
            kind,
            type_name: name.to_string(),
        });
    }
    map.insert(name, f);
    Ok(())
}

/// One line of `sightline components`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The kind.
    pub kind: ComponentKind,
    /// The type name.
    pub type_name: &'static str,
    /// Supported signals, or `in->out` pairs for connectors.
    pub signals: Vec<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a receiver factory.
    pub fn add_receiver<F: ReceiverFactory>(&mut self, f: F) -> Result<(), RegistryError> {
        let name = F::TYPE_NAME;
        insert(
            &mut self.receivers,
            ComponentKind::Receiver,
            name,
            Arc::new(f),
        )
    }

    /// Adds a processor factory.
    pub fn add_processor<F: ProcessorFactory>(&mut self, f: F) -> Result<(), RegistryError> {
        let name = F::TYPE_NAME;
        insert(
            &mut self.processors,
            ComponentKind::Processor,
            name,
            Arc::new(f),
        )
    }

    /// Adds an exporter factory.
    pub fn add_exporter<F: ExporterFactory>(&mut self, f: F) -> Result<(), RegistryError> {
        let name = F::TYPE_NAME;
        insert(
            &mut self.exporters,
            ComponentKind::Exporter,
            name,
            Arc::new(f),
        )
    }

    /// Adds a connector factory.
    pub fn add_connector<F: ConnectorFactory>(&mut self, f: F) -> Result<(), RegistryError> {
        let name = F::TYPE_NAME;
        insert(
            &mut self.connectors,
            ComponentKind::Connector,
            name,
            Arc::new(f),
        )
    }

    /// A receiver factory by type name.
    pub fn receiver(&self, type_name: &str) -> Option<&Arc<dyn DynReceiverFactory>> {
        self.receivers.get(type_name)
    }

    /// A processor factory by type name.
    pub fn processor(&self, type_name: &str) -> Option<&Arc<dyn DynProcessorFactory>> {
        self.processors.get(type_name)
    }

    /// An exporter factory by type name.
    pub fn exporter(&self, type_name: &str) -> Option<&Arc<dyn DynExporterFactory>> {
        self.exporters.get(type_name)
    }

    /// A connector factory by type name.
    pub fn connector(&self, type_name: &str) -> Option<&Arc<dyn DynConnectorFactory>> {
        self.connectors.get(type_name)
    }

    /// Registered type names of one kind.
    pub fn type_names(&self, kind: ComponentKind) -> Vec<&'static str> {
        match kind {
            ComponentKind::Receiver => self.receivers.keys().copied().collect(),
            ComponentKind::Processor => self.processors.keys().copied().collect(),
            ComponentKind::Exporter => self.exporters.keys().copied().collect(),
            ComponentKind::Connector => self.connectors.keys().copied().collect(),
        }
    }

    /// Whether a factory of `kind` supports `signal` (connectors: as input when `as_input`,
    /// else as output).
    pub fn supports(
        &self,
        kind: ComponentKind,
        type_name: &str,
        signal: Signal,
        as_input: bool,
    ) -> bool {
        match kind {
            ComponentKind::Receiver => self
                .receiver(type_name)
                .is_some_and(|f| f.signals().contains(&signal)),
            ComponentKind::Processor => self
                .processor(type_name)
                .is_some_and(|f| f.signals().contains(&signal)),
            ComponentKind::Exporter => self
                .exporter(type_name)
                .is_some_and(|f| f.signals().contains(&signal)),
            ComponentKind::Connector => self.connector(type_name).is_some_and(|f| {
                f.signal_pairs()
                    .iter()
                    .any(|(i, o)| if as_input { *i == signal } else { *o == signal })
            }),
        }
    }

    /// Every registered component, for `sightline components`.
    pub fn describe(&self) -> Vec<ComponentInfo> {
        let names = |s: &[Signal]| s.iter().map(|s| s.as_str().to_string()).collect();
        let mut out = Vec::new();
        for (n, f) in &self.receivers {
            out.push(ComponentInfo {
                kind: ComponentKind::Receiver,
                type_name: n,
                signals: names(f.signals()),
            });
        }
        for (n, f) in &self.processors {
            out.push(ComponentInfo {
                kind: ComponentKind::Processor,
                type_name: n,
                signals: names(f.signals()),
            });
        }
        for (n, f) in &self.exporters {
            out.push(ComponentInfo {
                kind: ComponentKind::Exporter,
                type_name: n,
                signals: names(f.signals()),
            });
        }
        for (n, f) in &self.connectors {
            let pairs = f
                .signal_pairs()
                .iter()
                .map(|(i, o)| format!("{i}->{o}"))
                .collect();
            out.push(ComponentInfo {
                kind: ComponentKind::Connector,
                type_name: n,
                signals: pairs,
            });
        }
        out
    }
}
