//! Sending OTLP export requests over gRPC: encoding per signal on the shared
//! [`GrpcClient`].

use async_trait::async_trait;
use http::uri::PathAndQuery;
use pipeline_core::{Batch, ComponentError, FieldError, Signal};

use super::config::OtlpConfig;
use crate::helper::codec::decode_response_proto;
use crate::helper::grpc::GrpcClient;
use crate::helper::{Delivered, SendError, Sender};

/// Sends export requests to one gRPC endpoint.
pub(crate) struct GrpcSender {
    client: GrpcClient,
}

impl GrpcSender {
    pub(crate) fn new(config: &OtlpConfig) -> Result<GrpcSender, FieldError> {
        Ok(GrpcSender {
            client: GrpcClient::new(
                config.endpoint_uri()?,
                &config.headers,
                config.compression,
                config.tls.clone(),
                config.timeout.get(),
            )?,
        })
    }
}

/// The gRPC method of each signal's `Export`.
fn export_path(signal: Signal) -> PathAndQuery {
    PathAndQuery::from_static(match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    })
}

#[async_trait]
impl Sender for GrpcSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.client.start().await
    }

    /// OTLP/gRPC carries the batch's protobuf as it is: an encoded batch's bytes as they
    /// arrived, a decoded one encoded straight from its groups.
    fn reads_data(&self) -> bool {
        false
    }

    /// Writes the request from the batch (the received bytes, or encoded from decoded data
    /// without building a request message) and sends it; a retry writes it again instead of
    /// keeping a copy around.
    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        let signal = batch.signal();
        let response = self
            .client
            .unary(export_path(signal), batch.request_chunks())
            .await?;
        decode_response_proto(signal, &response).map_err(|e| SendError::permanent(e.to_string()))
    }
}
