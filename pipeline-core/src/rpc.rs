//! The few `google.rpc` messages OTLP uses for errors, written as prost structs (no protoc):
//! the `Status` an OTLP/HTTP error body carries, and the `RetryInfo` detail that tells a
//! gRPC client how long to wait.

use std::time::Duration;

use prost::Message;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// `type.googleapis.com/<full name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds past `seconds`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long to wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// The `type_url` of [`RetryInfo`].
pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl Status {
    /// A status with a code and message, plus a RetryInfo detail when `retry_after` is set.
    pub fn new(code: i32, message: impl Into<String>, retry_after: Option<Duration>) -> Status {
        let details = retry_after
            .map(|d| Any {
                type_url: RETRY_INFO_TYPE.into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }),
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect();
        Status { code, message: message.into(), details }
    }

    /// The RetryInfo delay among the details, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details.iter().filter(|d| d.type_url == RETRY_INFO_TYPE).find_map(|d| {
            let info = RetryInfo::decode(d.value.as_slice()).ok()?;
            let delay = info.retry_delay?;
            Some(Duration::new(u64::try_from(delay.seconds).ok()?, u32::try_from(delay.nanos).ok()?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips() {
        let s = Status::new(14, "busy", Some(Duration::from_millis(1500)));
        let back = Status::decode(s.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.retry_delay(), Some(Duration::from_millis(1500)));
        assert_eq!(back.message, "busy");
    }
}
