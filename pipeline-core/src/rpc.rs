//! The few `google.rpc` messages OTLP uses for errors, written by hand (no protoc): `Status`
//! (gRPC's `grpc-status-details-bin`, and the body of an OTLP/HTTP error response) and the
//! `RetryInfo` detail a server uses to say when to come back. Receivers write them,
//! exporters read them.

use std::time::Duration;

use prost::Message;

/// `type_url` of a `google.rpc.RetryInfo` detail.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    /// Which message `value` holds.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long to wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds on top.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ProtoDuration {
    /// As a [`Duration`]; negative values become zero.
    pub fn to_duration(self) -> Duration {
        let secs = u64::try_from(self.seconds).unwrap_or(0);
        let nanos = u32::try_from(self.nanos).unwrap_or(0).min(999_999_999);
        Duration::new(secs, nanos)
    }
}

impl From<Duration> for ProtoDuration {
    fn from(d: Duration) -> ProtoDuration {
        ProtoDuration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }
    }
}

impl RpcStatus {
    /// A status with a code and message, plus a `RetryInfo` detail when `retry_after` is set.
    pub fn new(code: i32, message: impl Into<String>, retry_after: Option<Duration>) -> RpcStatus {
        let details = retry_after
            .map(|d| ProtoAny {
                type_url: RETRY_INFO_TYPE_URL.into(),
                value: RetryInfo {
                    retry_delay: Some(d.into()),
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect();
        RpcStatus {
            code,
            message: message.into(),
            details,
        }
    }

    /// Decodes an encoded `google.rpc.Status`; `None` when empty or malformed.
    pub fn decode_bytes(bytes: &[u8]) -> Option<RpcStatus> {
        if bytes.is_empty() {
            return None;
        }
        RpcStatus::decode(bytes).ok()
    }

    /// The delay of the first `RetryInfo` detail, if there is one.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|d| d.type_url == RETRY_INFO_TYPE_URL)
            .find_map(|d| RetryInfo::decode(&d.value[..]).ok()?.retry_delay)
            .map(ProtoDuration::to_duration)
    }
}

/// The `RetryInfo` delay inside encoded `google.rpc.Status` details (what tonic's
/// `Status::details` returns), if any.
pub fn retry_delay(status_details: &[u8]) -> Option<Duration> {
    RpcStatus::decode_bytes(status_details)?.retry_delay()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_retry_info_among_details() {
        let status = RpcStatus {
            code: 14,
            message: "busy".into(),
            details: vec![
                ProtoAny {
                    type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                    value: vec![1, 2, 3],
                },
                ProtoAny {
                    type_url: RETRY_INFO_TYPE_URL.into(),
                    value: RetryInfo {
                        retry_delay: Some(Duration::from_millis(1500).into()),
                    }
                    .encode_to_vec(),
                },
            ],
        };
        let bytes = status.encode_to_vec();
        assert_eq!(retry_delay(&bytes), Some(Duration::from_millis(1500)));
        assert_eq!(RpcStatus::decode_bytes(&bytes).unwrap().message, "busy");
        assert_eq!(retry_delay(&[]), None);
        assert_eq!(retry_delay(&[0xff, 0xff]), None);
        let none = RpcStatus {
            code: 14,
            ..Default::default()
        };
        assert_eq!(retry_delay(&none.encode_to_vec()), None);
    }
}
