//! From a batch's OTLP log records to Loki push requests: stream labels, structured
//! metadata, the line, grouping and ordering, splitting by size, and the protobuf (snappy)
//! and JSON bodies.

use std::borrow::Cow;
use std::collections::HashMap;

use pipeline_core::attributes::{find, inner, to_text};
use pipeline_core::model::{Payload, is_valid_span_id, is_valid_trace_id};
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use pipeline_core::proto::tonic::logs::v1::LogRecord;
use prost::Message;

use super::config::{LineFormat, LokiConfig, SEVERITY_KEY, sanitize_label_name};
use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
use crate::helper::values::{ProtoTimestamp, hex, to_json, to_plain_text};

/// The label a stream gets when no configured label has a value: Loki refuses streams
/// without labels, and Loki 3's own OTLP route uses the same.
const FALLBACK_LABEL: (&str, &str) = ("service_name", "unknown_service");

/// How records become entries, from the config.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// Attribute key to (sanitised) label name.
    label_attributes: Vec<(String, String)>,
    /// Static labels, names sanitised.
    static_labels: Vec<(String, String)>,
    line_format: LineFormat,
    structured_metadata: bool,
    severity_is_label: bool,
}

impl Mapping {
    pub(crate) fn new(config: &LokiConfig) -> Mapping {
        Mapping {
            label_attributes: config
                .label_attributes
                .iter()
                .map(|(k, v)| (k.clone(), sanitize_label_name(v)))
                .collect(),
            static_labels: config
                .labels
                .iter()
                .map(|(k, v)| (sanitize_label_name(k), v.clone()))
                .collect(),
            line_format: config.line_format,
            structured_metadata: config.structured_metadata,
            severity_is_label: config.label_attributes.contains_key(SEVERITY_KEY),
        }
    }

    fn is_label_key(&self, key: &str) -> bool {
        self.label_attributes.iter().any(|(k, _)| k == key)
    }
}

/// One stream: its labels (sorted by name) and entries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stream {
    pub(crate) labels: Vec<(String, String)>,
    /// The labels in Prometheus syntax.
    pub(crate) key: String,
    pub(crate) entries: Vec<EntryAdapter>,
}

impl Stream {
    fn shell(&self) -> Stream {
        Stream {
            labels: self.labels.clone(),
            key: self.key.clone(),
            entries: Vec::new(),
        }
    }
}

/// Why a batch cannot be pushed to Loki.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("the loki exporter takes logs, not {0}")]
    NotLogs(pipeline_core::Signal),
}

/// The batch's records grouped into streams, each stream's entries sorted by timestamp
/// (records of equal time keep their order). `now_nanos` stands in for records with
/// neither a time nor an observed time.
pub(crate) fn build_streams(
    payload: &Payload,
    mapping: &Mapping,
    now_nanos: u64,
) -> Result<Vec<Stream>, EncodeError> {
    let Payload::Logs(resource_logs) = payload else {
        return Err(EncodeError::NotLogs(payload.signal()));
    };
    let mut streams: Vec<Stream> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut key = String::new();
    let mut labels: Vec<(&str, Cow<'_, str>)> = Vec::new();
    for rl in resource_logs {
        let resource_attrs: &[KeyValue] = rl
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let resource_metadata = if mapping.structured_metadata {
            metadata_of(resource_attrs, mapping)
        } else {
            Vec::new()
        };
        for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            labels.clear();
            for (attr, name) in &mapping.label_attributes {
                let value = if attr == SEVERITY_KEY {
                    severity(record)
                } else {
                    find(&record.attributes, attr)
                        .or_else(|| find(resource_attrs, attr))
                        .map(label_text)
                };
                if let Some(value) = value.filter(|v| !v.is_empty()) {
                    labels.push((name, value));
                }
            }
            for (name, value) in &mapping.static_labels {
                if !labels.iter().any(|(n, _)| n == name) {
                    labels.push((name, Cow::Borrowed(value)));
                }
            }
            if labels.is_empty() {
                labels.push((FALLBACK_LABEL.0, Cow::Borrowed(FALLBACK_LABEL.1)));
            }
            labels.sort_by(|a, b| a.0.cmp(b.0));
            labels.dedup_by(|a, b| a.0 == b.0);
            format_labels(&labels, &mut key);
            let at = match index.get(key.as_str()) {
                Some(at) => *at,
                None => {
                    index.insert(key.clone(), streams.len());
                    streams.push(Stream {
                        labels: labels
                            .iter()
                            .map(|(n, v)| ((*n).to_string(), v.to_string()))
                            .collect(),
                        key: key.clone(),
                        entries: Vec::new(),
                    });
                    streams.len() - 1
                }
            };
            let entry = entry(record, mapping, &resource_metadata, now_nanos);
            streams[at].entries.push(entry);
        }
    }
    for stream in &mut streams {
        stream
            .entries
            .sort_by_key(|e| e.timestamp.map(ProtoTimestamp::unix_nanos));
    }
    Ok(streams)
}

/// The record's severity as a `level` value: its text in lower case (`warning` as `warn`),
/// else its number's range (`trace`, `debug`, `info`, `warn`, `error`, `fatal`).
fn severity(record: &LogRecord) -> Option<Cow<'_, str>> {
    let text = record.severity_text.trim();
    if !text.is_empty() {
        let lower = if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        };
        return Some(match lower.as_ref() {
            "warning" => Cow::Borrowed("warn"),
            "err" => Cow::Borrowed("error"),
            _ => lower,
        });
    }
    let name = match record.severity_number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    };
    Some(Cow::Borrowed(name))
}

fn label_text(value: &Value) -> Cow<'_, str> {
    to_text(value).unwrap_or_else(|| Cow::Owned(to_plain_text(Some(value))))
}

/// `{a="x", b="y"}` into `out`, values escaped as PromQL strings.
fn format_labels(labels: &[(&str, Cow<'_, str>)], out: &mut String) {
    out.clear();
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Attributes that are not labels, as structured metadata.
fn metadata_of(attributes: &[KeyValue], mapping: &Mapping) -> Vec<LabelPairAdapter> {
    attributes
        .iter()
        .filter(|kv| !mapping.is_label_key(&kv.key))
        .map(|kv| LabelPairAdapter {
            name: sanitize_label_name(&kv.key),
            value: to_plain_text(inner(kv.value.as_ref())),
        })
        .collect()
}

fn entry(
    record: &LogRecord,
    mapping: &Mapping,
    resource_metadata: &[LabelPairAdapter],
    now_nanos: u64,
) -> EntryAdapter {
    let nanos = [record.time_unix_nano, record.observed_time_unix_nano]
        .into_iter()
        .find(|t| *t != 0)
        .unwrap_or(now_nanos);
    let mut metadata = Vec::new();
    if mapping.structured_metadata {
        metadata = metadata_of(&record.attributes, mapping);
        if is_valid_trace_id(&record.trace_id) {
            metadata.push(pair("trace_id", hex(&record.trace_id)));
        }
        if is_valid_span_id(&record.span_id) {
            metadata.push(pair("span_id", hex(&record.span_id)));
        }
        if !mapping.severity_is_label
            && let Some(level) = severity(record)
        {
            metadata.push(pair("severity_text", level.into_owned()));
        }
        for pair in resource_metadata {
            if !metadata.iter().any(|m| m.name == pair.name) {
                metadata.push(pair.clone());
            }
        }
    }
    EntryAdapter {
        timestamp: Some(ProtoTimestamp::from_unix_nanos(nanos)),
        line: line(record, mapping.line_format),
        structured_metadata: metadata,
    }
}

fn pair(name: &str, value: String) -> LabelPairAdapter {
    LabelPairAdapter {
        name: name.to_string(),
        value,
    }
}

/// The line per `line_format`.
fn line(record: &LogRecord, format: LineFormat) -> String {
    let body = inner(record.body.as_ref());
    match format {
        LineFormat::Body => to_plain_text(body),
        LineFormat::Json => {
            let mut map = serde_json::Map::new();
            if body.is_some() {
                map.insert("body".into(), to_json(body));
            }
            for (key, value) in line_fields(record) {
                map.insert(key.into(), serde_json::Value::String(value));
            }
            for kv in &record.attributes {
                map.insert(kv.key.clone(), to_json(inner(kv.value.as_ref())));
            }
            serde_json::Value::Object(map).to_string()
        }
        LineFormat::Logfmt => {
            let mut out = String::new();
            if body.is_some() {
                push_logfmt(&mut out, "body", &to_plain_text(body));
            }
            for (key, value) in line_fields(record) {
                push_logfmt(&mut out, key, &value);
            }
            for kv in &record.attributes {
                push_logfmt(&mut out, &kv.key, &to_plain_text(inner(kv.value.as_ref())));
            }
            out
        }
    }
}

/// The record's own fields in a `json` or `logfmt` line.
fn line_fields(record: &LogRecord) -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(3);
    if let Some(level) = severity(record) {
        fields.push(("severity", level.into_owned()));
    }
    if is_valid_trace_id(&record.trace_id) {
        fields.push(("trace_id", hex(&record.trace_id)));
    }
    if is_valid_span_id(&record.span_id) {
        fields.push(("span_id", hex(&record.span_id)));
    }
    fields
}

/// ` key=value`, the value quoted (with `\` and `"` escaped) when it is empty or holds a
/// space, `=`, `"` or a control character.
fn push_logfmt(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.extend(key.chars().map(|c| {
        if c.is_whitespace() || c == '=' || c == '"' {
            '_'
        } else {
            c
        }
    }));
    out.push('=');
    let quote = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c == '"' || c.is_control());
    if !quote {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One push request's worth of streams.
#[derive(Debug, Default)]
pub(crate) struct Part {
    pub(crate) streams: Vec<Stream>,
    /// Entries (log records) in it.
    pub(crate) items: usize,
}

/// Splits the streams into requests of at most `max_bytes` (protobuf, before compression),
/// keeping each stream's entries in order across requests. An entry larger than the limit
/// goes alone.
pub(crate) fn split(streams: Vec<Stream>, max_bytes: usize) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut current = Part::default();
    let mut size = 0usize;
    for mut stream in streams {
        let overhead = stream.key.len() + 16;
        let entries = std::mem::take(&mut stream.entries);
        let mut piece = stream.shell();
        for entry in entries {
            let entry_size = entry.encoded_len() + 4;
            if size > 0 && size + entry_size + overhead > max_bytes {
                if !piece.entries.is_empty() {
                    let next = piece.shell();
                    current.streams.push(std::mem::replace(&mut piece, next));
                }
                parts.push(std::mem::take(&mut current));
                size = 0;
            }
            if piece.entries.is_empty() {
                size += overhead;
            }
            size += entry_size;
            piece.entries.push(entry);
            current.items += 1;
        }
        if !piece.entries.is_empty() {
            current.streams.push(piece);
        }
    }
    if current.items > 0 {
        parts.push(current);
    }
    parts
}

/// The part as a snappy-compressed `PushRequest`.
pub(crate) fn encode_protobuf(part: Part) -> Result<Vec<u8>, snap::Error> {
    let request = PushRequest {
        streams: part
            .streams
            .into_iter()
            .map(|s| StreamAdapter {
                labels: s.key,
                entries: s.entries,
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

/// The part in Loki's JSON push format: `{"streams":[{"stream":{labels},"values":[[ns,
/// line, {metadata}]]}]}`.
pub(crate) fn encode_json(part: &Part) -> Vec<u8> {
    use serde_json::{Map, Value as J};
    let streams: Vec<J> = part
        .streams
        .iter()
        .map(|s| {
            let labels: Map<String, J> = s
                .labels
                .iter()
                .map(|(n, v)| (n.clone(), J::String(v.clone())))
                .collect();
            let values: Vec<J> = s
                .entries
                .iter()
                .map(|e| {
                    let nanos = e.timestamp.map_or(0, ProtoTimestamp::unix_nanos);
                    let mut value = vec![J::String(nanos.to_string()), J::String(e.line.clone())];
                    if !e.structured_metadata.is_empty() {
                        let mut meta = Map::new();
                        for p in &e.structured_metadata {
                            meta.insert(p.name.clone(), J::String(p.value.clone()));
                        }
                        value.push(J::Object(meta));
                    }
                    J::Array(value)
                })
                .collect();
            let mut stream = Map::new();
            stream.insert("stream".into(), J::Object(labels));
            stream.insert("values".into(), J::Array(values));
            J::Object(stream)
        })
        .collect();
    let mut body = Map::new();
    body.insert("streams".into(), J::Array(streams));
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(&J::Object(body)).unwrap_or_default()
}
