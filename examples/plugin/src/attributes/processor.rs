//! The `attributes` processor at run time: each action compiled once (values converted to
//! OTLP, patterns to regexes), then applied in order to every record's attribute list.

use async_trait::async_trait;
use pipeline_core::attributes::{for_each_record_mut, inner};
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use pipeline_core::proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use pipeline_core::{Batch, BuildError, Capabilities, Component, ConsumeError, Consumer};
use prost::Message;
use regex::Regex;

use super::config::{Action, ActionConfig, AttributesConfig};

/// Which attributes an action touches.
enum Target {
    Key(String),
    Pattern(Regex),
}

impl Target {
    fn matches(&self, key: &str) -> bool {
        match self {
            Target::Key(k) => k == key,
            Target::Pattern(p) => p.is_match(key),
        }
    }
}

/// Where a set value comes from.
enum Source {
    Value(AnyValue),
    FromAttribute(String),
}

struct Compiled {
    action: Action,
    target: Target,
    source: Option<Source>,
}

impl Compiled {
    fn new(config: &ActionConfig) -> Result<Compiled, BuildError> {
        let target = match (&config.key, &config.pattern) {
            (Some(key), _) => Target::Key(key.clone()),
            (None, Some(p)) => Target::Pattern(
                Regex::new(p).map_err(|e| BuildError::Other(format!("pattern {p:?}: {e}")))?,
            ),
            (None, None) => return Err(BuildError::Other("an action has no key".into())),
        };
        let source = match (&config.value, &config.from_attribute) {
            (Some(v), _) => Some(Source::Value(any_value(v))),
            (None, Some(from)) => Some(Source::FromAttribute(from.clone())),
            (None, None) => None,
        };
        Ok(Compiled {
            action: config.action,
            target,
            source,
        })
    }

    /// The value to set on a record with `attributes`, if there is one.
    fn value(&self, attributes: &[KeyValue]) -> Option<AnyValue> {
        match self.source.as_ref()? {
            Source::Value(v) => Some(v.clone()),
            Source::FromAttribute(from) => attributes
                .iter()
                .find(|kv| &kv.key == from)
                .and_then(|kv| kv.value.clone()),
        }
    }

    fn apply(&self, attributes: &mut Vec<KeyValue>) {
        let position = || {
            attributes
                .iter()
                .position(|kv| self.target.matches(&kv.key))
        };
        match self.action {
            Action::Insert => {
                if position().is_none()
                    && let (Target::Key(key), Some(value)) = (&self.target, self.value(attributes))
                {
                    attributes.push(KeyValue {
                        key: key.clone(),
                        value: Some(value),
                        ..Default::default()
                    });
                }
            }
            Action::Update => {
                if let Some(i) = position()
                    && let Some(value) = self.value(attributes)
                {
                    attributes[i].value = Some(value);
                }
            }
            Action::Upsert => {
                let Some(value) = self.value(attributes) else {
                    return;
                };
                match (position(), &self.target) {
                    (Some(i), _) => attributes[i].value = Some(value),
                    (None, Target::Key(key)) => attributes.push(KeyValue {
                        key: key.clone(),
                        value: Some(value),
                        ..Default::default()
                    }),
                    (None, Target::Pattern(_)) => {}
                }
            }
            Action::Delete => attributes.retain(|kv| !self.target.matches(&kv.key)),
            Action::Hash => {
                for kv in attributes
                    .iter_mut()
                    .filter(|kv| self.target.matches(&kv.key))
                {
                    if let Some(value) = inner(kv.value.as_ref()) {
                        let hashed = sha256_hex(&hash_input(value));
                        kv.value = Some(AnyValue {
                            value: Some(Value::StringValue(hashed)),
                        });
                    }
                }
            }
        }
    }
}

/// A config value as an OTLP value: strings, integers, doubles, booleans, lists and maps.
fn any_value(v: &serde_json::Value) -> AnyValue {
    let value = match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(Value::BoolValue(*b)),
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        serde_json::Value::String(s) => Some(Value::StringValue(s.clone())),
        serde_json::Value::Array(a) => Some(Value::ArrayValue(ArrayValue {
            values: a.iter().map(any_value).collect(),
        })),
        serde_json::Value::Object(m) => Some(Value::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(any_value(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// The bytes hashed for a value, as otelcol's attributes processor hashes them: a string's
/// UTF-8, a boolean as one byte 1 or 0, an integer as 8 bytes big-endian, a double's IEEE
/// bits big-endian, bytes as they are; lists and maps by their protobuf encoding.
fn hash_input(value: &Value) -> Vec<u8> {
    match value {
        Value::StringValue(s) => s.as_bytes().to_vec(),
        Value::BoolValue(b) => vec![u8::from(*b)],
        Value::IntValue(i) => i.to_be_bytes().to_vec(),
        Value::DoubleValue(d) => d.to_bits().to_be_bytes().to_vec(),
        Value::BytesValue(b) => b.clone(),
        other => AnyValue {
            value: Some(other.clone()),
        }
        .encode_to_vec(),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The `attributes` processor of one pipeline.
pub struct AttributesProcessor {
    actions: Vec<Compiled>,
    next: SharedConsumer,
}

impl AttributesProcessor {
    /// Compiles a validated config; results go to `next`.
    pub fn new(config: &AttributesConfig, next: SharedConsumer) -> Result<Self, BuildError> {
        let actions = config
            .actions
            .iter()
            .map(Compiled::new)
            .collect::<Result<_, _>>()?;
        Ok(AttributesProcessor { actions, next })
    }

    /// Applies every action, in order, to one record's attributes.
    pub fn apply(&self, attributes: &mut Vec<KeyValue>) {
        for action in &self.actions {
            action.apply(attributes);
        }
    }
}

#[async_trait]
impl Consumer for AttributesProcessor {
    /// It reads and changes the data.
    fn capabilities(&self) -> Capabilities {
        Capabilities::MUTATES_DATA
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        for_each_record_mut(batch.payload_mut(), |attributes| self.apply(attributes));
        self.next.consume(batch).await
    }
}

/// Stateless: nothing to start or stop.
#[async_trait]
impl Component for AttributesProcessor {}
