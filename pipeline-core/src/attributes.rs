//! Reading OTLP attribute lists: find a key, and read a value as text or as a number the way
//! a user who wrote `status_code: "200"` or `status_code: 200` expects either to work.

use std::borrow::Cow;

use crate::proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

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
    }
}
