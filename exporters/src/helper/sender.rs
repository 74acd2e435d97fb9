//! The protocol half of an exporter: one attempt to deliver one batch.

use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::{Batch, ComponentError};

/// What a backend said about a batch it accepted.
///
/// OTLP backends may accept a request yet reject some of its items (`partial_success`);
/// those are counted as dropped with reason `rejected`, the rest as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Items the backend rejected (0: all accepted).
    pub rejected_items: u64,
    /// The backend's explanation or warning, if it gave one.
    pub message: String,
}

impl Delivered {
    /// Everything accepted, nothing to say.
    pub fn all() -> Delivered {
        Delivered::default()
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A passing failure (backend down, overloaded, timed out): try again later.
    #[error("{reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// How long the backend asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// The batch can never be delivered as it is: do not retry.
    #[error("{reason}")]
    Permanent {
        /// What happened.
        reason: String,
        /// Whether the backend itself is unusable until someone acts (credentials
        /// rejected, endpoint does not exist), as opposed to this one batch being bad:
        /// the exporter then reports a permanent health error.
        health_permanent: bool,
    },
}

impl SendError {
    /// A retryable error without a hint.
    pub fn retryable(reason: impl Into<String>) -> SendError {
        SendError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent error about this batch only.
    pub fn permanent(reason: impl Into<String>) -> SendError {
        SendError::Permanent {
            reason: reason.into(),
            health_permanent: false,
        }
    }

    /// A permanent error that also makes the exporter unhealthy.
    pub fn permanent_health(reason: impl Into<String>) -> SendError {
        SendError::Permanent {
            reason: reason.into(),
            health_permanent: true,
        }
    }

    /// The same error with `prefix: ` before its reason (the request it is about).
    pub fn prefixed(self, prefix: impl std::fmt::Display) -> SendError {
        match self {
            SendError::Retryable {
                reason,
                retry_after,
            } => SendError::Retryable {
                reason: format!("{prefix}: {reason}"),
                retry_after,
            },
            SendError::Permanent {
                reason,
                health_permanent,
            } => SendError::Permanent {
                reason: format!("{prefix}: {reason}"),
                health_permanent,
            },
        }
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Retryable { reason, .. } | SendError::Permanent { reason, .. } => reason,
        }
    }
}

/// Delivers batches to one backend; [`QueuedExporter`](super::QueuedExporter) adds the
/// queue, timeout, retries, counting and health around it.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Prepares to send (reads certificates, builds clients). Called once, from the
    /// exporter's `start`; a failure fails the start. Must not need the backend to be up.
    async fn start(&self) -> Result<(), ComponentError> {
        Ok(())
    }

    /// One attempt to deliver `batch`. The caller applies the timeout and decides about
    /// retries; the future may be dropped at any await point.
    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError>;

    /// Releases what `start` acquired. Called once, at the end of the exporter's shutdown,
    /// also when `start` never ran.
    async fn shutdown(&self) {}
}

/// An error and its chain of causes on one line (`a: b: c`), for errors such as hyper's
/// whose `Display` alone says little.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
