//! Jaeger's api_v2 messages (jaegertracing/jaeger-idl `proto/api_v2/model.proto` and
//! `collector.proto`), written as prost derives with the upstream field numbers. IDs are
//! big-endian bytes: a 16-byte trace ID (high then low 64 bits) and an 8-byte span ID.

use pipeline_core::rpc::ProtoDuration;

use crate::helper::values::ProtoTimestamp;

/// The gRPC method spans are posted to.
pub const POST_SPANS_PATH: &str = "/jaeger.api_v2.CollectorService/PostSpans";

/// `jaeger.api_v2.ValueType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ValueType {
    /// `v_str`.
    String = 0,
    /// `v_bool`.
    Bool = 1,
    /// `v_int64`.
    Int64 = 2,
    /// `v_float64`.
    Float64 = 3,
    /// `v_binary`.
    Binary = 4,
}

/// `jaeger.api_v2.SpanRefType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SpanRefType {
    /// The parent.
    ChildOf = 0,
    /// A span this one follows (OTLP links).
    FollowsFrom = 1,
}

/// `jaeger.api_v2.KeyValue`: a typed tag or log field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Which of the value fields is set.
    #[prost(enumeration = "ValueType", tag = "2")]
    pub v_type: i32,
    /// String value.
    #[prost(string, tag = "3")]
    pub v_str: String,
    /// Boolean value.
    #[prost(bool, tag = "4")]
    pub v_bool: bool,
    /// Integer value.
    #[prost(int64, tag = "5")]
    pub v_int64: i64,
    /// Floating-point value.
    #[prost(double, tag = "6")]
    pub v_float64: f64,
    /// Binary value.
    #[prost(bytes = "vec", tag = "7")]
    pub v_binary: Vec<u8>,
}

/// `jaeger.api_v2.Log`: a timestamped event of a span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Log {
    /// When.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<ProtoTimestamp>,
    /// What.
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<KeyValue>,
}

/// `jaeger.api_v2.SpanRef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanRef {
    /// The referenced span's trace.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// The referenced span.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// The relationship.
    #[prost(enumeration = "SpanRefType", tag = "3")]
    pub ref_type: i32,
}

/// `jaeger.api_v2.Process`: the service that emitted spans.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Process {
    /// The service name.
    #[prost(string, tag = "1")]
    pub service_name: String,
    /// The rest of the resource.
    #[prost(message, repeated, tag = "2")]
    pub tags: Vec<KeyValue>,
}

/// `jaeger.api_v2.Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// The span name.
    #[prost(string, tag = "3")]
    pub operation_name: String,
    /// Parent (CHILD_OF) and links (FOLLOWS_FROM).
    #[prost(message, repeated, tag = "4")]
    pub references: Vec<SpanRef>,
    /// Bit flags (1: sampled).
    #[prost(uint32, tag = "5")]
    pub flags: u32,
    /// Start.
    #[prost(message, optional, tag = "6")]
    pub start_time: Option<ProtoTimestamp>,
    /// Duration.
    #[prost(message, optional, tag = "7")]
    pub duration: Option<ProtoDuration>,
    /// Tags.
    #[prost(message, repeated, tag = "8")]
    pub tags: Vec<KeyValue>,
    /// Logs (OTLP events).
    #[prost(message, repeated, tag = "9")]
    pub logs: Vec<Log>,
    /// The span's own process (unset: the batch's).
    #[prost(message, optional, tag = "10")]
    pub process: Option<Process>,
    /// Process identifier (unused on the wire here).
    #[prost(string, tag = "11")]
    pub process_id: String,
    /// Warnings.
    #[prost(string, repeated, tag = "12")]
    pub warnings: Vec<String>,
}

/// `jaeger.api_v2.Batch`: spans of one process.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Batch {
    /// The spans.
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<Span>,
    /// Their process.
    #[prost(message, optional, tag = "2")]
    pub process: Option<Process>,
}

/// `jaeger.api_v2.PostSpansRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PostSpansRequest {
    /// The batch.
    #[prost(message, optional, tag = "1")]
    pub batch: Option<Batch>,
}

/// `jaeger.api_v2.PostSpansResponse` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PostSpansResponse {}
