//! The three OTLP export requests behind one trait, so the gRPC and HTTP front ends handle
//! every signal with one generic code path.

use pipeline_core::proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use pipeline_core::proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use pipeline_core::proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use pipeline_core::{Payload, Signal};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ingest::Accepted;

/// An OTLP export request type and its response.
pub(crate) trait OtlpRequest:
    prost::Message + Default + DeserializeOwned + Send + 'static
{
    /// The response message.
    type Response: prost::Message + Default + Serialize + Send + 'static;
    /// The signal it carries.
    const SIGNAL: Signal;
    /// The request as pipeline data.
    fn into_payload(self) -> Payload;
    /// The response for an accepted request, with partial success when items were rejected.
    fn response(accepted: Accepted) -> Self::Response;
}

impl OtlpRequest for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    fn into_payload(self) -> Payload {
        Payload::Traces(self.resource_spans)
    }
    fn response(a: Accepted) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (a.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: a.rejected,
                error_message: a.message,
            }),
        }
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const SIGNAL: Signal = Signal::Metrics;
    fn into_payload(self) -> Payload {
        Payload::Metrics(self.resource_metrics)
    }
    fn response(a: Accepted) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (a.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: a.rejected,
                error_message: a.message,
            }),
        }
    }
}

impl OtlpRequest for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    fn into_payload(self) -> Payload {
        Payload::Logs(self.resource_logs)
    }
    fn response(a: Accepted) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (a.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: a.rejected,
                error_message: a.message,
            }),
        }
    }
}
