//! Jaeger's own gRPC API: one `jaeger.api_v2.CollectorService/PostSpans` per resource of a
//! batch, on the shared [`GrpcClient`].

use async_trait::async_trait;
use bytes::Bytes;
use http::uri::PathAndQuery;
use pipeline_core::{Batch, ComponentError, FieldError, Signal};
use prost::Message;

use super::config::JaegerConfig;
use super::model::{POST_SPANS_PATH, PostSpansRequest};
use super::translate::batches;
use crate::helper::grpc::GrpcClient;
use crate::helper::{Delivered, PartAnswer, SendError, SendProgress, Sender, send_in_parts};

/// Posts spans to a Jaeger collector's api_v2 gRPC endpoint.
pub(crate) struct PostSpansSender {
    client: GrpcClient,
}

impl PostSpansSender {
    pub(crate) fn new(config: &JaegerConfig) -> Result<PostSpansSender, FieldError> {
        Ok(PostSpansSender {
            client: GrpcClient::new(
                config.grpc_uri()?,
                &config.headers,
                config.compression(),
                config.tls.clone(),
                config.timeout.get(),
            )?,
        })
    }
}

#[async_trait]
impl Sender for PostSpansSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.client.start().await
    }

    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        self.send_resuming(batch, &mut SendProgress::starting_now())
            .await
    }

    /// A batch spanning several resources is several calls (a Jaeger batch has one
    /// process); a retry resumes after the calls already answered. A call refused for good
    /// (`INVALID_ARGUMENT` and the like) counts its spans as rejected and the rest go on;
    /// refusals of everything (`UNAUTHENTICATED`, `UNIMPLEMENTED`, ...) end the attempt.
    async fn send_resuming(
        &self,
        batch: &Batch,
        progress: &mut SendProgress,
    ) -> Result<Delivered, SendError> {
        if batch.signal() != Signal::Traces {
            return Err(SendError::permanent(format!(
                "the jaeger exporter takes traces, not {}",
                batch.signal()
            )));
        }
        let path = PathAndQuery::from_static(POST_SPANS_PATH);
        send_in_parts(
            batches(&batch.payload_view()),
            |b| b.spans.len(),
            progress,
            |jaeger_batch| {
                let spans = jaeger_batch.spans.len() as u64;
                let body = Bytes::from(
                    PostSpansRequest {
                        batch: Some(jaeger_batch),
                    }
                    .encode_to_vec(),
                );
                let call = self.client.unary(path.clone(), body);
                async move {
                    match call.await {
                        Ok(_) => Ok(PartAnswer::Accepted),
                        Err(SendError::Permanent {
                            reason,
                            health_permanent: false,
                        }) => Ok(PartAnswer::Rejected {
                            items: spans,
                            message: reason,
                        }),
                        Err(e) => Err(e),
                    }
                }
            },
        )
        .await
    }
}
