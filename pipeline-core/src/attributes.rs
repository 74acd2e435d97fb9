//! Reading OTLP attribute lists: find a key, and read a value as text or as a number the way
//! a user who wrote `status_code: "200"` or `status_code: 200` expects either to work; and
//! visiting every record's attribute list of a payload ([`for_each_record_mut`]) for
//! processors that edit attributes.

use std::borrow::Cow;

use crate::model::Payload;
use crate::proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use crate::proto::tonic::metrics::v1::metric::Data;

/// The attributes holding a request ID by default, in order: the seed guide's
/// structured-log field, the semantic conventions' captured `X-Request-ID` header, and a
/// common alternative (read by the `request_id` processor and the `loadbalancing` exporter).
pub const DEFAULT_REQUEST_ID_ATTRIBUTES: [&str; 3] = [
    "request_id",
    "http.request.header.x-request-id",
    "http.request_id",
];

/// The value of `key` in `attributes` (the first one, if the key repeats).
pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The value of `key` in a map value (`kvlist_value`), such as a structured log body.
pub fn find_in_map<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map {
        Value::KvlistValue(list) => find(&list.values, key),
        _ => None,
    }
}

/// The inner value of an [`AnyValue`], if set.
pub fn inner(value: Option<&AnyValue>) -> Option<&Value> {
    value.and_then(|v| v.value.as_ref())
}

/// A scalar value as text: strings as they are, integers and booleans in decimal and
/// `true`/`false`, doubles in their shortest form (`0.5`, `200`). Arrays, maps and bytes
/// have no text form here.
pub fn to_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::StringValue(s) => Some(Cow::Borrowed(s.as_str())),
        Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        Value::BoolValue(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::DoubleValue(d) if d.is_finite() => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

/// A scalar value as text (see [`to_text`]), or the first element of an array value as
/// text: the semantic conventions record captured HTTP headers
/// (`http.request.header.x-request-id`) as string arrays.
pub fn to_text_or_first(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::ArrayValue(a) => a
            .values
            .first()
            .and_then(|v| inner(Some(v)))
            .and_then(to_text),
        other => to_text(other),
    }
}

/// A value as a number: integers, finite doubles, and strings holding either.
pub fn to_f64(value: &Value) -> Option<f64> {
    let n = match value {
        Value::IntValue(i) => *i as f64,
        Value::DoubleValue(d) => *d,
        Value::StringValue(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A value as an integer: integers, doubles without a fraction, and strings holding either.
pub fn to_i64(value: &Value) -> Option<i64> {
    match value {
        Value::IntValue(i) => Some(*i),
        Value::DoubleValue(d) if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e15 => {
            Some(*d as i64)
        }
        Value::StringValue(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| to_i64(&Value::DoubleValue(s.parse::<f64>().ok()?)))
        }
        _ => None,
    }
}

/// A string attribute.
pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Feeds an attribute list into `hasher`, keys and values in order (doubles by their bits),
/// so that equal lists hash equally: for grouping records by resource or attribute set.
pub fn hash_attributes<H: std::hash::Hasher>(attributes: &[KeyValue], hasher: &mut H) {
    use std::hash::Hash;
    attributes.len().hash(hasher);
    for kv in attributes {
        kv.key.hash(hasher);
        hash_value(inner(kv.value.as_ref()), hasher);
    }
}

/// Feeds one value into `hasher` (see [`hash_attributes`]).
pub fn hash_value<H: std::hash::Hasher>(value: Option<&Value>, hasher: &mut H) {
    use std::hash::Hash;
    match value {
        None => 0u8.hash(hasher),
        Some(Value::StringValue(s)) => (1u8, s).hash(hasher),
        Some(Value::BoolValue(b)) => (2u8, b).hash(hasher),
        Some(Value::IntValue(i)) => (3u8, i).hash(hasher),
        Some(Value::DoubleValue(d)) => (4u8, d.to_bits()).hash(hasher),
        Some(Value::BytesValue(b)) => (5u8, b).hash(hasher),
        Some(Value::ArrayValue(a)) => {
            (6u8, a.values.len()).hash(hasher);
            for v in &a.values {
                hash_value(inner(Some(v)), hasher);
            }
        }
        Some(Value::KvlistValue(l)) => {
            7u8.hash(hasher);
            hash_attributes(&l.values, hasher);
        }
        Some(Value::StringValueStrindex(i)) => (8u8, i).hash(hasher),
    }
}

/// Calls `f` with the attribute list of every record in `payload`: each span, each log record
/// and each metric data point (of every metric type), in order. Resource and scope attributes
/// are not records and are not visited.
///
/// ```
/// use pipeline_core::Payload;
/// use pipeline_core::attributes::{for_each_record_mut, string};
/// use pipeline_core::testing::span_batch;
///
/// let mut batch = span_batch(3);
/// for_each_record_mut(batch.payload_mut(), |attributes| {
///     attributes.push(string("deployment.environment", "prod"))
/// });
/// let Payload::Traces(rs) = batch.payload() else { unreachable!() };
/// assert!(rs[0].scope_spans[0].spans.iter().all(|s| s.attributes.len() > 0));
/// # batch.delivered();
/// ```
pub fn for_each_record_mut(payload: &mut Payload, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    match payload {
        Payload::Traces(rs) => rs
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans)
            .for_each(|span| f(&mut span.attributes)),
        Payload::Logs(rl) => rl
            .iter_mut()
            .flat_map(|r| &mut r.scope_logs)
            .flat_map(|s| &mut s.log_records)
            .for_each(|record| f(&mut record.attributes)),
        Payload::Metrics(rm) => {
            let metrics = rm
                .iter_mut()
                .flat_map(|r| &mut r.scope_metrics)
                .flat_map(|s| &mut s.metrics);
            for metric in metrics {
                match &mut metric.data {
                    Some(Data::Gauge(g)) => {
                        g.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::Sum(s)) => {
                        s.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::Histogram(h)) => {
                        h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    Some(Data::Summary(s)) => {
                        s.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
                    }
                    None => {}
                }
            }
        }
    }
}

/// A string-array attribute with one element, the semantic conventions' shape for a
/// captured HTTP header.
pub fn string_array(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::ArrayValue(
                crate::proto::tonic::common::v1::ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue(value.into())),
                    }],
                },
            )),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tonic::common::v1::KeyValueList;

    #[test]
    fn finds_and_converts() {
        let attrs = vec![
            string("a", "x"),
            KeyValue {
                key: "n".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(503)),
                }),
                ..Default::default()
            },
        ];
        assert_eq!(find(&attrs, "a").and_then(to_text).as_deref(), Some("x"));
        assert_eq!(find(&attrs, "n").and_then(to_i64), Some(503));
        assert_eq!(find(&attrs, "missing"), None);
        assert_eq!(to_i64(&Value::StringValue(" 404 ".into())), Some(404));
        assert_eq!(to_i64(&Value::StringValue("200.0".into())), Some(200));
        assert_eq!(to_i64(&Value::StringValue("2xx".into())), None);
        assert_eq!(to_i64(&Value::DoubleValue(1.5)), None);
        assert_eq!(to_f64(&Value::StringValue("0.25".into())), Some(0.25));
        assert_eq!(to_f64(&Value::DoubleValue(f64::NAN)), None);
        assert_eq!(to_text(&Value::DoubleValue(0.5)).as_deref(), Some("0.5"));
        assert_eq!(to_text(&Value::BoolValue(true)).as_deref(), Some("true"));
        let map = Value::KvlistValue(KeyValueList {
            values: vec![string("type", "ValueError")],
        });
        assert_eq!(
            find_in_map(&map, "type").and_then(to_text).as_deref(),
            Some("ValueError")
        );
        let header = [string_array("http.request.header.x-request-id", "abc")];
        assert_eq!(
            find(&header, "http.request.header.x-request-id")
                .and_then(to_text_or_first)
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            to_text_or_first(&Value::StringValue("x".into())).as_deref(),
            Some("x")
        );
        assert_eq!(
            to_text_or_first(&Value::ArrayValue(Default::default())),
            None
        );
    }

    #[test]
    fn equal_attribute_lists_hash_equally() {
        use std::hash::{BuildHasher, Hasher, RandomState};
        let state = RandomState::new();
        let hash = |attrs: &[KeyValue]| {
            let mut h = state.build_hasher();
            hash_attributes(attrs, &mut h);
            h.finish()
        };
        let a = vec![string("service.name", "api"), string("host.name", "n1")];
        let b = vec![string("service.name", "api"), string("host.name", "n2")];
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&b));
    }
}
