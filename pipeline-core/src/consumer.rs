//! The one trait for everything that takes data, and the wrappers built on it.
//!
//! Receivers call [`Consumer::consume`] on the head of a pipeline; processors hold their
//! `next` consumer; exporters and connectors are consumers at the leaves. `Ok(())` means the
//! data was accepted: from then on it is the callee's job not to lose it silently.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;

use crate::model::Batch;

/// A boxed error, as carried inside [`ConsumeError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a consumer declares about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The consumer changes the data it is given.
    pub mutates_data: bool,
}

/// Why a consumer did not accept a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// A passing failure: the caller may try again later (a receiver answers gRPC
    /// `UNAVAILABLE` / HTTP 503).
    #[error("retryable: {error}")]
    Retryable {
        /// The cause.
        error: BoxError,
        /// How long the caller should wait, if the consumer knows.
        retry_after: Option<Duration>,
    },
    /// The data can never be accepted (a receiver answers `INVALID_ARGUMENT` / HTTP 400).
    #[error("permanent: {0}")]
    Permanent(BoxError),
    /// A bounded queue is full: back-pressure (a receiver answers `UNAVAILABLE` / HTTP 503
    /// with Retry-After).
    #[error("queue full")]
    Full,
    /// The consumer is shutting down and takes no more data.
    #[error("shutting down")]
    ShuttingDown,
}

impl ConsumeError {
    /// A retryable error without a retry hint.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        ConsumeError::Retryable {
            error: error.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        ConsumeError::Permanent(error.into())
    }

    /// Whether the caller may send the same data again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ConsumeError::Permanent(_))
    }
}

/// Takes batches of telemetry.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// What this consumer does with the data it is given.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Takes a batch. `Ok` means accepted; an error hands the batch's fate back to the caller.
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError>;
}

/// A consumer shared between owners.
pub type SharedConsumer = Arc<dyn Consumer>;

/// Sends each batch to several consumers: clones for all but the last, which gets the
/// original. The first error is returned after every branch was tried.
pub struct Fanout {
    branches: Vec<SharedConsumer>,
}

impl Fanout {
    /// A fanout over `branches`; with one branch, prefer using it directly.
    pub fn new(branches: Vec<SharedConsumer>) -> Fanout {
        Fanout { branches }
    }
}

#[async_trait]
impl Consumer for Fanout {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Some((last, rest)) = self.branches.split_last() else {
            return Ok(());
        };
        let mut first_error = None;
        for branch in rest {
            if let Err(e) = branch.consume(batch.clone()).await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = last.consume(batch).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A consumer whose target can be replaced while callers hold it: the head of every pipeline
/// is one, so that a rebuilt graph can be swapped in while receivers keep their ports.
pub struct SwitchConsumer {
    target: ArcSwap<SharedConsumer>,
}

impl SwitchConsumer {
    /// Starts pointing at `target`.
    pub fn new(target: SharedConsumer) -> SwitchConsumer {
        SwitchConsumer {
            target: ArcSwap::from_pointee(target),
        }
    }

    /// Points every later call at `target`.
    pub fn switch(&self, target: SharedConsumer) {
        self.target.store(Arc::new(target));
    }
}

#[async_trait]
impl Consumer for SwitchConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let target = self.target.load_full();
        target.consume(batch).await
    }
}
