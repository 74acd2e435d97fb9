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

/// How far the earlier attempts at one batch got, for a [`Sender`] that sends a batch as
/// several requests. The exporter keeps one per batch across its retries; the sender moves
/// it forward after each part the backend answered for good, and resumes after
/// `parts_done` on the next attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendProgress {
    /// Leading parts finished: accepted, or rejected for good (never to be sent again).
    pub parts_done: usize,
    /// Items in the finished parts.
    pub items_done: usize,
    /// Of those, items the backend rejected, and its last explanation.
    pub rejected: Delivered,
    /// The wall-clock time of the batch's first attempt, in nanoseconds since the Unix
    /// epoch: a "now" that stays the same across retries, so a sender that fills in missing
    /// timestamps cuts the batch into the same parts every time.
    pub first_attempt_unix_nanos: u64,
}

impl SendProgress {
    /// Progress of a batch whose first attempt starts now.
    pub fn starting_now() -> SendProgress {
        SendProgress {
            first_attempt_unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            ..SendProgress::default()
        }
    }

    /// Records a finished part of `items` items, `rejected_items` of which the backend
    /// refused (explaining with `message`).
    pub fn finish_part(&mut self, items: usize, rejected_items: u64, message: &str) {
        self.parts_done += 1;
        self.items_done += items;
        if rejected_items > 0 {
            self.rejected.rejected_items += rejected_items;
            self.rejected.message = message.to_string();
        }
    }
}

/// How the backend answered one part of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartAnswer {
    /// All of it accepted.
    Accepted,
    /// `items` of it refused for good (the rest accepted), with the backend's reason.
    Rejected {
        /// How many.
        items: u64,
        /// Why.
        message: String,
    },
}

/// Sends the parts of a batch not yet in `progress`, in order, each with `send_part`,
/// recording every answer in `progress` before the next part is sent (so an attempt
/// dropped at any await loses nothing already answered). Returns the whole batch's outcome
/// once every part is answered, or the first error (a retry resumes at that part).
pub async fn send_in_parts<P, F, Fut>(
    parts: Vec<P>,
    items_of: impl Fn(&P) -> usize,
    progress: &mut SendProgress,
    mut send_part: F,
) -> Result<Delivered, SendError>
where
    F: FnMut(P) -> Fut,
    Fut: std::future::Future<Output = Result<PartAnswer, SendError>>,
{
    for part in parts.into_iter().skip(progress.parts_done) {
        let items = items_of(&part);
        match send_part(part).await? {
            PartAnswer::Accepted => progress.finish_part(items, 0, ""),
            PartAnswer::Rejected {
                items: rejected,
                message,
            } => progress.finish_part(items, rejected.min(items as u64), &message),
        }
    }
    Ok(progress.rejected.clone())
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

    /// Whether the sender looks inside batches (translates them to another format). The
    /// exporter then decodes each batch once when it takes it, so `send` finds it decoded
    /// ([`Batch::payload_view`] borrows). Senders of OTLP protobuf say `false` and write the
    /// batch as it is ([`Batch::write_request`]).
    fn reads_data(&self) -> bool {
        true
    }

    /// One attempt to deliver `batch`. The caller applies the timeout and decides about
    /// retries; the future may be dropped at any await point.
    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError>;

    /// One attempt to deliver what of `batch` is not in `progress` yet. Senders that send a
    /// batch as several requests implement this (and make `send` call it with a fresh
    /// progress); they update `progress` as soon as a part is answered, before the next
    /// await, and return the whole batch's outcome (`progress.rejected` included) once the
    /// last part is done. The default sends the batch as one request.
    async fn send_resuming(
        &self,
        batch: &Batch,
        progress: &mut SendProgress,
    ) -> Result<Delivered, SendError> {
        let _ = progress;
        self.send(batch).await
    }

    /// Releases what `start` acquired. Called once, at the end of the exporter's shutdown,
    /// also when `start` never ran.
    async fn shutdown(&self) {}
}

/// An error and its chain of causes on one line (`a: b: c`), for errors such as hyper's
/// whose `Display` alone says little.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    push_causes(&mut text, error.source());
    text
}

/// Appends `: cause` to `text` for each cause in the chain from `source` that `text` does
/// not already say.
pub(crate) fn push_causes(text: &mut String, source: Option<&(dyn std::error::Error + 'static)>) {
    let mut source = source;
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
}
