//! Loki's push messages (`logproto`, grafana/loki `pkg/push/push.proto`), written as prost
//! derives with the upstream field numbers.

use crate::helper::values::ProtoTimestamp;

/// `logproto.PushRequest`: the body of `POST /loki/api/v1/push` (snappy block-compressed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: one stream's labels and entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The labels in Prometheus syntax: `{level="info", service_name="api"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The entries, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Left 0: Loki computes it.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`: one log line.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// When it happened.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<ProtoTimestamp>,
    /// The line.
    #[prost(string, tag = "2")]
    pub line: String,
    /// Structured metadata (Loki 2.9+/3): name-value pairs stored with the entry, not
    /// indexed.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPairAdapter {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}
