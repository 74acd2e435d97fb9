//! OTLP export requests and responses, per signal, in protobuf and OTLP/JSON.
//!
//! OTLP/JSON is written straight from the [`Payload`]'s resource groups
//! ([`Payload::write_json`]), without cloning the data into a request message first.
//! (Protobuf requests come from
//! [`Batch::write_request`](pipeline_core::Batch::write_request), which sends an encoded
//! batch's bytes as they arrived.)

use pipeline_core::Signal;
use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use pipeline_core::proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use pipeline_core::proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::sender::Delivered;

/// Why a payload could not be encoded or a response decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A payload variant this version does not know.
    #[error("unsupported payload for signal {0}")]
    Unsupported(Signal),
    /// JSON encoding or decoding failed.
    #[error("OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Protobuf decoding failed.
    #[error("OTLP protobuf: {0}")]
    Proto(#[from] prost::DecodeError),
}

/// An owned OTLP export request of any signal.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportRequest {
    /// Spans.
    Traces(ExportTraceServiceRequest),
    /// Metrics.
    Metrics(ExportMetricsServiceRequest),
    /// Logs.
    Logs(ExportLogsServiceRequest),
}

impl ExportRequest {
    /// The request carrying a copy of `payload`.
    pub fn from_payload(payload: &Payload) -> Result<ExportRequest, CodecError> {
        Ok(match payload {
            Payload::Traces(rs) => ExportRequest::Traces(ExportTraceServiceRequest {
                resource_spans: rs.clone(),
            }),
            Payload::Metrics(rm) => ExportRequest::Metrics(ExportMetricsServiceRequest {
                resource_metrics: rm.clone(),
            }),
            Payload::Logs(rl) => ExportRequest::Logs(ExportLogsServiceRequest {
                resource_logs: rl.clone(),
            }),
            other => return Err(CodecError::Unsupported(other.signal())),
        })
    }
}

/// Writes the payload's export request as OTLP/JSON (one line, no trailing newline); see
/// [`Payload::write_json`].
pub fn write_json(payload: &Payload, out: &mut Vec<u8>) -> Result<(), CodecError> {
    Ok(payload.write_json(out)?)
}

/// The payload's export request as OTLP/JSON.
pub fn encode_json(payload: &Payload) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    write_json(payload, &mut out)?;
    Ok(out)
}

fn rejected(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl From<ExportTraceServiceResponse> for Delivered {
    fn from(r: ExportTraceServiceResponse) -> Delivered {
        r.partial_success
            .map(|p| Delivered {
                rejected_items: rejected(p.rejected_spans),
                message: p.error_message,
            })
            .unwrap_or_default()
    }
}

impl From<ExportMetricsServiceResponse> for Delivered {
    fn from(r: ExportMetricsServiceResponse) -> Delivered {
        r.partial_success
            .map(|p| Delivered {
                rejected_items: rejected(p.rejected_data_points),
                message: p.error_message,
            })
            .unwrap_or_default()
    }
}

impl From<ExportLogsServiceResponse> for Delivered {
    fn from(r: ExportLogsServiceResponse) -> Delivered {
        r.partial_success
            .map(|p| Delivered {
                rejected_items: rejected(p.rejected_log_records),
                message: p.error_message,
            })
            .unwrap_or_default()
    }
}

/// Reads the partial success out of a protobuf `Export*ServiceResponse` of `signal`; an
/// empty body is full success.
pub fn decode_response_proto(signal: Signal, body: &[u8]) -> Result<Delivered, CodecError> {
    Ok(match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)?.into(),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)?.into(),
        Signal::Logs => ExportLogsServiceResponse::decode(body)?.into(),
    })
}

/// Reads the partial success out of an OTLP/JSON `Export*ServiceResponse` of `signal`; an
/// empty body is full success.
///
/// Read leniently: protojson writes the 64-bit `rejected_*` counts as strings, other servers
/// as numbers; both are accepted.
pub fn decode_response_json(signal: Signal, body: &[u8]) -> Result<Delivered, CodecError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Delivered::all());
    }
    let value: serde_json::Value = serde_json::from_slice(body)?;
    let Some(partial) = value
        .get("partialSuccess")
        .or_else(|| value.get("partial_success"))
    else {
        return Ok(Delivered::all());
    };
    let (camel, snake) = match signal {
        Signal::Traces => ("rejectedSpans", "rejected_spans"),
        Signal::Metrics => ("rejectedDataPoints", "rejected_data_points"),
        Signal::Logs => ("rejectedLogRecords", "rejected_log_records"),
    };
    let count = partial.get(camel).or_else(|| partial.get(snake));
    let rejected_items = match count {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    let message = partial
        .get("errorMessage")
        .or_else(|| partial.get("error_message"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Delivered {
        rejected_items,
        message,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pipeline_core::proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    use pipeline_core::testing::{log_batch, span_batch};

    #[test]
    fn proto_matches_the_request_message() {
        let batch = span_batch(3);
        let Payload::Traces(rs) = &*batch.payload_view() else {
            unreachable!()
        };
        let want = ExportTraceServiceRequest {
            resource_spans: rs.clone(),
        }
        .encode_to_vec();
        assert_eq!(batch.to_request(), want);
        let decoded = ExportTraceServiceRequest::decode(&want[..]).unwrap();
        assert_eq!(&decoded.resource_spans, rs);
    }

    #[test]
    fn json_matches_the_request_message() {
        let batch = log_batch(2);
        let Payload::Logs(rl) = &*batch.payload_view() else {
            unreachable!()
        };
        let want = serde_json::to_vec(&ExportLogsServiceRequest {
            resource_logs: rl.clone(),
        })
        .unwrap();
        assert_eq!(encode_json(&batch.payload_view()).unwrap(), want);
        let text = String::from_utf8(encode_json(&span_batch(1).payload_view()).unwrap()).unwrap();
        assert!(text.starts_with("{\"resourceSpans\":[{"), "{text}");
        // OTLP/JSON: hex IDs, not base64.
        assert!(
            text.contains("\"traceId\":\"01010101010101010101010101010101\""),
            "{text}"
        );
        let back: ExportTraceServiceRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(
            Payload::Traces(back.resource_spans),
            span_batch(1).into_parts().0
        );
    }

    #[test]
    fn partial_success_from_proto_and_json() {
        let resp = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "bad spans".into(),
            }),
        };
        let d = decode_response_proto(Signal::Traces, &resp.encode_to_vec()).unwrap();
        assert_eq!(d.rejected_items, 2);
        assert_eq!(d.message, "bad spans");
        assert_eq!(
            decode_response_proto(Signal::Logs, &[]).unwrap(),
            Delivered::all()
        );
        let d = decode_response_json(
            Signal::Metrics,
            br#"{"partialSuccess":{"rejectedDataPoints":"7","errorMessage":"old"}}"#,
        )
        .unwrap();
        assert_eq!((d.rejected_items, d.message.as_str()), (7, "old"));
        let d = decode_response_json(
            Signal::Logs,
            br#"{"partialSuccess":{"rejectedLogRecords":3}}"#,
        )
        .unwrap();
        assert_eq!(d.rejected_items, 3);
        assert_eq!(
            decode_response_json(Signal::Traces, b"{}").unwrap(),
            Delivered::all()
        );
        assert_eq!(
            decode_response_json(Signal::Traces, b"").unwrap(),
            Delivered::all()
        );
        assert!(decode_response_json(Signal::Traces, b"nope").is_err());
    }
}
