//! What the gRPC and HTTP front ends share: checking requests, handing them to the pipeline
//! with a deadline, and turning the outcome into an answer.
//!
//! Data comes from an OTLP request and goes to the consumer of its signal (the head of every
//! pipeline that names this receiver). A protobuf request goes on as the bytes it arrived in
//! when some pipeline only moves data (the graph says so through
//! [`Capabilities::reads_data`](pipeline_core::Capabilities)), after one allocation-free pass
//! checked it as strictly as decoding would ([`EncodedPayload::from_request`]); otherwise,
//! or when that pass finds something to refuse or to remove, it is decoded as before. Items
//! with invalid IDs are removed and reported back as a partial success; they never enter the
//! pipeline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pipeline_core::model::{is_valid_span_id, is_valid_trace_id};
use pipeline_core::proto::tonic::logs::v1::ResourceLogs;
use pipeline_core::proto::tonic::trace::v1::ResourceSpans;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::wire::{EncodedPayload, Scanned};
use pipeline_core::{AckOutcome, AckToken, Batch, ConsumeError, Payload, SignalConsumers};

use super::request::OtlpRequest;

/// How long a request may wait for room in the pipeline before the client is told to retry.
pub(crate) const CONSUME_TIMEOUT: Duration = Duration::from_secs(5);
/// What a client is told to wait when the pipeline is full.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where requests go.
pub(crate) struct Ingest {
    next: SignalConsumers,
    telemetry: ComponentTelemetry,
    /// Requests handed on, by form: `bytes` (as received) or `decoded`
    /// (`sightline_receiver_requests_forwarded_total{form}`).
    forwarded: Option<[prometheus::IntCounter; 2]>,
    /// Bytes of request bodies being read or handled at once, across both protocols
    /// (`max_request_bytes_in_flight`): what the receiver itself holds is bounded whatever
    /// the number of connections and streams.
    admission: Arc<tokio::sync::Semaphore>,
    admission_bytes: usize,
}

/// The receiver's default `max_request_bytes_in_flight`.
pub(crate) const DEFAULT_REQUEST_BYTES_IN_FLIGHT: usize = 64 << 20;

const AS_BYTES: usize = 0;
const DECODED: usize = 1;

/// Room for one request body: its share of the receiver's budget and of the process's
/// memory, both given back when dropped.
pub(crate) struct Admission {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _memory: pipeline_core::memory::Reservation,
}

/// A request that was accepted, maybe partly.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Items removed as invalid.
    pub(crate) rejected: i64,
    /// Why, when `rejected > 0`.
    pub(crate) message: String,
}

/// Why a request was not accepted.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// Retry later (pipeline full or busy): gRPC UNAVAILABLE, HTTP 503.
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    /// Never acceptable: gRPC INVALID_ARGUMENT, HTTP 400.
    Invalid(String),
    /// No pipeline of this signal names the receiver: gRPC UNIMPLEMENTED, HTTP 404.
    SignalNotEnabled(&'static str),
}

impl Ingest {
    pub(crate) fn new(next: SignalConsumers, telemetry: ComponentTelemetry) -> Ingest {
        let id = telemetry.id().as_str().to_string();
        let family = telemetry.counter_family(
            "sightline_receiver_requests_forwarded_total",
            "Requests a receiver handed to its pipelines, by form: bytes (the protobuf as received, when some pipeline only moves data) or decoded.",
            &["form"],
        );
        let forwarded = family
            .ok()
            .map(|f| ["bytes", "decoded"].map(|form| f.with_label_values(&[id.as_str(), form])));
        Ingest {
            next,
            telemetry,
            forwarded,
            admission: Arc::new(tokio::sync::Semaphore::new(DEFAULT_REQUEST_BYTES_IN_FLIGHT)),
            admission_bytes: DEFAULT_REQUEST_BYTES_IN_FLIGHT,
        }
    }

    /// Bounds the bytes of request bodies in flight to `bytes`.
    pub(crate) fn with_request_budget(mut self, bytes: usize) -> Ingest {
        let bytes = bytes.clamp(1, u32::MAX as usize);
        self.admission = Arc::new(tokio::sync::Semaphore::new(bytes));
        self.admission_bytes = bytes;
        self
    }

    /// Waits (at most the consume timeout) until `bytes` of body may be read; what is
    /// returned is held until the request is answered. A request that cannot get in is
    /// refused as retryable and counted (`reason="busy"`). While a `memory_limiter` runs, a
    /// body is read only if resident memory plus the bodies reserved by every receiver, this
    /// one included, stay under its soft limit; otherwise it is refused before a byte of it
    /// is read (`reason="memory_limit"`).
    pub(crate) async fn admit(
        &self,
        bytes: usize,
        protocol: &str,
    ) -> Result<Admission, IngestError> {
        let want = bytes.clamp(1, self.admission_bytes) as u32;
        let pressure = self.telemetry.memory_pressure();
        // Refused at once when it cannot fit even now, rather than after waiting.
        if !pressure.admits(u64::from(want)) {
            return Err(self.over_memory_limit(protocol));
        }
        let acquire = Arc::clone(&self.admission).acquire_many_owned(want);
        let permit = match tokio::time::timeout(CONSUME_TIMEOUT, acquire).await {
            Ok(Ok(permit)) => permit,
            _ => {
                self.rejected_request(protocol, "busy");
                return Err(IngestError::Unavailable {
                    message:
                        "the receiver is reading as many requests as it may hold; try again later"
                            .into(),
                    retry_after: RETRY_AFTER,
                });
            }
        };
        match pressure.try_reserve(u64::from(want)) {
            Some(memory) => Ok(Admission {
                _permit: permit,
                _memory: memory,
            }),
            None => Err(self.over_memory_limit(protocol)),
        }
    }

    fn over_memory_limit(&self, protocol: &str) -> IngestError {
        self.rejected_request(protocol, "memory_limit");
        IngestError::Unavailable {
            message: "memory usage is near the memory_limiter's limit; try again later".into(),
            retry_after: RETRY_AFTER,
        }
    }

    /// Checks and forwards one protobuf request body: as bytes when some pipeline only moves
    /// data and the body passes the scan, else decoded. A body that does not decode is
    /// refused as malformed (counted under `protocol`) with prost's reason.
    pub(crate) async fn ingest_protobuf<R: OtlpRequest>(
        &self,
        body: Bytes,
        budget: Duration,
        protocol: &str,
    ) -> Result<Accepted, IngestError> {
        let hand_bytes = self
            .next
            .get(R::SIGNAL)
            .as_ref()
            .is_some_and(|next| !next.capabilities().reads_data);
        // Invalid IDs to remove, or refused by the scan: decoding gives prost's verdict.
        if hand_bytes
            && let Ok(Scanned::Clean(encoded)) = EncodedPayload::from_request(R::SIGNAL, &body)
        {
            return self
                .forward(
                    Batch::encoded(encoded),
                    Accepted::default(),
                    budget,
                    AS_BYTES,
                )
                .await;
        }
        match R::decode(body) {
            Ok(request) => self.ingest(request.into_payload(), budget).await,
            Err(e) => {
                self.rejected_request(protocol, "malformed");
                Err(IngestError::Invalid(format!(
                    "malformed OTLP protobuf: {e}"
                )))
            }
        }
    }

    /// Checks and forwards one decoded request.
    pub(crate) async fn ingest(
        &self,
        mut payload: Payload,
        budget: Duration,
    ) -> Result<Accepted, IngestError> {
        if self.next.get(payload.signal()).is_none() {
            return Err(IngestError::SignalNotEnabled(payload.signal().as_str()));
        }
        let accepted = sanitize(&mut payload);
        self.forward(Batch::new(payload), accepted, budget, DECODED)
            .await
    }

    /// Hands a checked batch to the pipelines of its signal within `budget`.
    ///
    /// When every pipeline of the signal ends in persistent queues, success is answered only
    /// once the data is written to all of them (the batch's acknowledgement handle resolves),
    /// within the same budget.
    async fn forward(
        &self,
        mut batch: Batch,
        accepted: Accepted,
        budget: Duration,
        form: usize,
    ) -> Result<Accepted, IngestError> {
        let signal = batch.signal();
        let Some(next) = self.next.get(signal) else {
            return Err(IngestError::SignalNotEnabled(signal.as_str()));
        };
        if batch.item_count() == 0 {
            return Ok(accepted);
        }
        if let Some(forwarded) = &self.forwarded {
            forwarded[form].inc();
        }
        let started = tokio::time::Instant::now();
        let durable = next.acks_durably().then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let tx = std::sync::Mutex::new(Some(tx));
            batch.ctx.acks.push(AckToken::with_outcome(move |outcome| {
                if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(outcome);
                }
            }));
            rx
        });
        match tokio::time::timeout(budget, next.consume(batch)).await {
            Ok(Ok(())) => match durable {
                None => Ok(accepted),
                Some(written) => match tokio::time::timeout_at(started + budget, written).await {
                    Ok(Ok(AckOutcome::Delivered)) => Ok(accepted),
                    Ok(_) => Err(IngestError::Unavailable {
                        message: "the data could not be written to every persistent queue".into(),
                        retry_after: RETRY_AFTER,
                    }),
                    Err(_) => Err(IngestError::Unavailable {
                        message: format!(
                            "the data was not written to the persistent queues within {budget:?}"
                        ),
                        retry_after: RETRY_AFTER,
                    }),
                },
            },
            Ok(Err(ConsumeError::Permanent(e))) => Err(IngestError::Invalid(e.to_string())),
            Ok(Err(ConsumeError::Retryable { error, retry_after })) => {
                Err(IngestError::Unavailable {
                    message: error.to_string(),
                    retry_after: retry_after.unwrap_or(RETRY_AFTER),
                })
            }
            Ok(Err(e)) => Err(IngestError::Unavailable {
                message: e.to_string(),
                retry_after: RETRY_AFTER,
            }),
            Err(_) => Err(IngestError::Unavailable {
                message: format!("the pipeline did not accept the data within {budget:?}"),
                retry_after: RETRY_AFTER,
            }),
        }
    }

    /// Counts a request rejected before decoding.
    pub(crate) fn rejected_request(&self, protocol: &str, reason: &str) {
        self.telemetry.rejected_request(protocol, reason);
    }
}

/// Removes spans without a valid trace and span ID, and log records whose trace context is
/// malformed (present but of the wrong length).
fn sanitize(payload: &mut Payload) -> Accepted {
    let mut rejected = 0i64;
    let mut reasons = Vec::new();
    match payload {
        Payload::Traces(rs) => {
            for scope in rs
                .iter_mut()
                .flat_map(|r: &mut ResourceSpans| r.scope_spans.iter_mut())
            {
                let before = scope.spans.len();
                scope.spans.retain(|s| {
                    is_valid_trace_id(&s.trace_id)
                        && is_valid_span_id(&s.span_id)
                        && (s.parent_span_id.is_empty() || s.parent_span_id.len() == 8)
                });
                rejected += (before - scope.spans.len()) as i64;
            }
            if rejected > 0 {
                reasons
                    .push("spans need a 16-byte non-zero trace_id and an 8-byte non-zero span_id");
            }
        }
        Payload::Logs(rl) => {
            for scope in rl
                .iter_mut()
                .flat_map(|r: &mut ResourceLogs| r.scope_logs.iter_mut())
            {
                let before = scope.log_records.len();
                scope.log_records.retain(|l| {
                    (l.trace_id.is_empty() || l.trace_id.len() == 16)
                        && (l.span_id.is_empty() || l.span_id.len() == 8)
                });
                rejected += (before - scope.log_records.len()) as i64;
            }
            if rejected > 0 {
                reasons
                    .push("log records with a trace_id must have 16 bytes, with a span_id 8 bytes");
            }
        }
        _ => {}
    }
    Accepted {
        rejected,
        message: reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::testing::span_batch;

    #[test]
    fn invalid_spans_are_rejected() {
        let mut payload = span_batch(3).into_parts().0;
        if let Payload::Traces(rs) = &mut payload {
            rs[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
            rs[0].scope_spans[0].spans[2].span_id = vec![1, 2];
        }
        let a = sanitize(&mut payload);
        assert_eq!(a.rejected, 2);
        assert_eq!(payload.item_count(), 1);
    }
}
