//! The OTLP/HTTP front end driven in-process for the fuzz targets (`fuzz/`, feature
//! `fuzzing`): a request goes through the same router, body limits, gunzip, protobuf scan or
//! decoding (or OTLP/JSON) and [`Ingest`] as on the network, into a consumer that checks
//! what arrives.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pipeline_core::model::{is_valid_span_id, is_valid_trace_id};
use pipeline_core::{
    Batch, Capabilities, ComponentKind, ConsumeError, Consumer, CreateContext, Payload, PerSignal,
};

use super::ingest::Ingest;

/// Checks every batch the receiver hands on, then resolves it as delivered.
struct CheckingConsumer {
    reads: bool,
}

#[async_trait]
impl Consumer for CheckingConsumer {
    fn capabilities(&self) -> Capabilities {
        if self.reads {
            Capabilities::default()
        } else {
            Capabilities::MOVES_DATA
        }
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let counted = batch.item_count();
        let encoded = batch.encoded_payload().cloned();
        // Bytes handed on must decode, to as many items as the scan counted, and say the
        // same request when written out again.
        let payload = batch.payload().clone();
        assert_eq!(payload.item_count(), counted, "items counted by the scan");
        if let Some(encoded) = encoded {
            // Compared as protobuf: a NaN in the data is not equal to itself.
            let as_protobuf = |p: &Payload| {
                let mut out = Vec::new();
                p.write_request(&mut out);
                out
            };
            let decoded = encoded.decode().expect("bytes handed on decode");
            assert_eq!(as_protobuf(&decoded), as_protobuf(&payload));
        }
        // Nothing with an invalid ID gets past the receiver.
        match &payload {
            Payload::Traces(rs) => {
                for span in rs
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    assert!(is_valid_trace_id(&span.trace_id) && is_valid_span_id(&span.span_id));
                }
            }
            Payload::Logs(rl) => {
                for record in rl
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                {
                    assert!(record.trace_id.is_empty() || record.trace_id.len() == 16);
                    assert!(record.span_id.is_empty() || record.span_id.len() == 8);
                }
            }
            _ => {}
        }
        batch.delivered();
        Ok(())
    }
}

/// The OTLP/HTTP routes in front of a checking consumer, on a current-thread runtime.
pub struct OtlpHttpHarness {
    runtime: tokio::runtime::Runtime,
    /// Behind a pipeline that reads the data (decoded path) and one that only moves it
    /// (bytes path).
    routers: [axum::Router; 2],
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessAnswer {
    /// The HTTP status.
    pub status: u16,
}

impl OtlpHttpHarness {
    /// A harness with a 1 MiB body limit.
    pub fn new() -> Result<OtlpHttpHarness, std::io::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let router = |reads: bool| {
            let consumer: Arc<dyn Consumer> = Arc::new(CheckingConsumer { reads });
            let next = PerSignal::from_fn(|_| Some(consumer.clone()));
            let ctx = CreateContext::for_tests(ComponentKind::Receiver, "otlp");
            super::http::router(Arc::new(Ingest::new(next, ctx.telemetry)), 1 << 20, None)
        };
        Ok(OtlpHttpHarness {
            runtime,
            routers: [router(true), router(false)],
        })
    }

    /// POSTs `body` to `path` with `content_type` (gzip-encoded when `gzip`), to the pipeline
    /// that reads (`reads`) or the one that only moves data.
    pub fn post(
        &self,
        reads: bool,
        path: &str,
        content_type: &str,
        gzip: bool,
        body: Vec<u8>,
    ) -> HarnessAnswer {
        let mut request = http::Request::post(path).header("content-type", content_type);
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        let Ok(request) = request.body(axum::body::Body::from(Bytes::from(body))) else {
            return HarnessAnswer { status: 0 };
        };
        let router = self.routers[usize::from(!reads)].clone();
        let response = self
            .runtime
            .block_on(tower::ServiceExt::oneshot(router, request));
        let status = match response {
            Ok(r) => r.status().as_u16(),
            Err(never) => match never {},
        };
        HarnessAnswer { status }
    }
}
