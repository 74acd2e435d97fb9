//! OTLP values in the shapes non-OTLP backends take: text for Loki labels and structured
//! metadata and Jaeger string tags, JSON for arrays and maps, and the protobuf
//! `google.protobuf.Timestamp` their messages carry.

use std::fmt::Write as _;

use pipeline_core::attributes::inner;
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use serde_json::{Map, Number};

/// `google.protobuf.Timestamp` (the `google.protobuf.Duration` twin is
/// [`pipeline_core::rpc::ProtoDuration`]).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ProtoTimestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds on top, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ProtoTimestamp {
    /// The timestamp of `unix_nanos` nanoseconds since the epoch.
    pub fn from_unix_nanos(unix_nanos: u64) -> ProtoTimestamp {
        ProtoTimestamp {
            seconds: i64::try_from(unix_nanos / 1_000_000_000).unwrap_or(i64::MAX),
            // Below 1e9, so it fits.
            nanos: i32::try_from(unix_nanos % 1_000_000_000).unwrap_or(0),
        }
    }

    /// Nanoseconds since the epoch; 0 for times before it.
    pub fn unix_nanos(self) -> u64 {
        u64::try_from(self.seconds)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(self.nanos).unwrap_or(0))
    }
}

/// Lower-case hex of `bytes` (trace and span IDs, binary values in text).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A value as JSON: strings, booleans and numbers as themselves (non-finite doubles as
/// strings), bytes as hex strings, arrays and maps nested.
pub fn to_json(value: Option<&Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::Number((*i).into()),
        Some(Value::DoubleValue(d)) => {
            Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Some(Value::BytesValue(b)) => J::String(hex(b)),
        Some(Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(|v| to_json(inner(Some(v)))).collect())
        }
        Some(Value::KvlistValue(l)) => {
            let mut map = Map::with_capacity(l.values.len());
            for kv in &l.values {
                map.insert(kv.key.clone(), to_json(inner(kv.value.as_ref())));
            }
            J::Object(map)
        }
        Some(Value::StringValueStrindex(i)) => J::Number((*i).into()),
    }
}

/// A value as one line of text: strings as they are, scalars in their usual form, bytes as
/// hex, arrays and maps as JSON; an absent value as the empty string.
pub fn to_plain_text(value: Option<&Value>) -> String {
    match value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(other) => to_json(Some(other)).to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pipeline_core::attributes::string;
    use pipeline_core::proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};

    #[test]
    fn text_and_json_of_every_type() {
        assert_eq!(
            to_plain_text(Some(&Value::StringValue("a b".into()))),
            "a b"
        );
        assert_eq!(to_plain_text(Some(&Value::IntValue(-3))), "-3");
        assert_eq!(to_plain_text(Some(&Value::DoubleValue(0.25))), "0.25");
        assert_eq!(to_plain_text(Some(&Value::BoolValue(true))), "true");
        assert_eq!(
            to_plain_text(Some(&Value::BytesValue(vec![0, 255]))),
            "00ff"
        );
        assert_eq!(to_plain_text(None), "");
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::IntValue(1)),
                },
                AnyValue {
                    value: Some(Value::StringValue("x".into())),
                },
            ],
        });
        assert_eq!(to_plain_text(Some(&array)), r#"[1,"x"]"#);
        let map = Value::KvlistValue(KeyValueList {
            values: vec![string("k", "v")],
        });
        assert_eq!(to_plain_text(Some(&map)), r#"{"k":"v"}"#);
        assert_eq!(
            to_json(Some(&Value::DoubleValue(f64::NAN))),
            serde_json::json!("NaN")
        );
    }

    #[test]
    fn timestamps_split_seconds_and_nanos() {
        let t = ProtoTimestamp::from_unix_nanos(1_705_314_600_180_000_123);
        assert_eq!((t.seconds, t.nanos), (1_705_314_600, 180_000_123));
        assert_eq!(t.unix_nanos(), 1_705_314_600_180_000_123);
    }
}
