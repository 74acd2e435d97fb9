//! Component identity and lifecycle.

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::time::Instant;

/// What role a component plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Brings data into the graph.
    Receiver,
    /// Transforms data inside a pipeline.
    Processor,
    /// Sends data out of the graph.
    Exporter,
    /// Exporter of one pipeline and receiver of another.
    Connector,
}

impl ComponentKind {
    /// The config section name, singular: `receiver`, `processor`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Connector => "connector",
        }
    }

    /// The kind named `receiver`, `processor`, `exporter` or `connector`.
    pub fn parse(s: &str) -> Option<ComponentKind> {
        [
            ComponentKind::Receiver,
            ComponentKind::Processor,
            ComponentKind::Exporter,
            ComponentKind::Connector,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component ID as written in config: `type` or `type/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    id: String,
    type_len: usize,
}

impl ComponentId {
    /// Parses `type` or `type/name`; the type must be non-empty and made of letters, digits
    /// and `_`, the name non-empty.
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (ty, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if ty.is_empty() || !ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid component ID {s:?}: the type must be letters, digits and '_'"
            ));
        }
        if name.is_some_and(|n| n.trim().is_empty()) {
            return Err(format!(
                "invalid component ID {s:?}: the name after '/' is empty"
            ));
        }
        Ok(ComponentId {
            id: s.to_string(),
            type_len: ty.len(),
        })
    }

    /// The type part (`otlp` in `otlp/backend`).
    pub fn type_name(&self) -> &str {
        &self.id[..self.type_len]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// What the running service offers components at start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Host {
    /// Where components keep state on disk (checkpoints, persistent queues).
    pub data_dir: PathBuf,
}

impl Host {
    /// A host whose data directory is `data_dir`.
    pub fn new(data_dir: PathBuf) -> Host {
        Host { data_dir }
    }
}

/// Why a component failed to start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// A listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

/// The lifecycle every component has.
///
/// `shutdown` must be safe without `start` and must return by `deadline`, delivering what it
/// can and counting what it could not as dropped.
#[async_trait]
pub trait Component: Send + Sync {
    /// Acquires resources (ports, files, connections) and starts background work.
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Stops taking data, finishes or hands on what it holds, releases resources.
    async fn shutdown(&self, _deadline: Instant) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// Waits for a component's background task until `deadline`, then aborts it. Returns whether
/// it finished in time (a task that was never started counts as finished).
pub async fn join_until(task: Option<tokio::task::JoinHandle<()>>, deadline: Instant) -> bool {
    let Some(mut task) = task else { return true };
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(_) => true,
        Err(_) => {
            task.abort();
            false
        }
    }
}
