//! From a batch's OTLP log records to Loki push request bodies: stream labels, structured
//! metadata, the line, grouping and ordering, splitting by size, and the protobuf
//! (`logproto.PushRequest`) and JSON encodings.
//!
//! Built for throughput: records are grouped by reference (no copy of the data), and each
//! entry is written straight from the record into the request body, with names and values
//! turned into text in two reused buffers. The message layout is that of
//! [`super::proto`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use pipeline_core::attributes::{find, inner, to_text};
use pipeline_core::model::{Payload, is_valid_span_id, is_valid_trace_id};
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use pipeline_core::proto::tonic::logs::v1::LogRecord;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::config::{LineFormat, LokiConfig, LokiEncoding, SEVERITY_KEY, sanitize_label_name};
use crate::helper::values::{to_json, to_plain_text};

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

/// One record in a stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    /// Its time: the record's, else its observed time, else the batch's "now".
    pub(crate) nanos: u64,
    record: &'a LogRecord,
    /// The resource's attributes.
    resource: &'a [KeyValue],
}

/// One stream: its labels (sorted by name) and entries (sorted by time).
#[derive(Debug, Clone)]
pub(crate) struct StreamRef<'a> {
    pub(crate) labels: Vec<(String, String)>,
    /// The labels in Prometheus syntax.
    pub(crate) key: String,
    pub(crate) entries: Vec<EntryRef<'a>>,
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
pub(crate) fn build_streams<'a>(
    payload: &'a Payload,
    mapping: &Mapping,
    now_nanos: u64,
) -> Result<Vec<StreamRef<'a>>, EncodeError> {
    let Payload::Logs(resource_logs) = payload else {
        return Err(EncodeError::NotLogs(payload.signal()));
    };
    let mut streams: Vec<StreamRef<'a>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut key = String::new();
    let mut last: Option<usize> = None;
    let mut labels: Vec<(&str, Cow<'_, str>)> = Vec::new();
    for rl in resource_logs {
        let resource: &[KeyValue] = rl
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            labels.clear();
            for (attr, name) in &mapping.label_attributes {
                let value = if attr == SEVERITY_KEY {
                    severity(record)
                } else {
                    find(&record.attributes, attr)
                        .or_else(|| find(resource, attr))
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
            // Neighbouring records mostly share a stream: check the last one first.
            let at = match last.filter(|at| streams[*at].key == key) {
                Some(at) => at,
                None => match index.get(key.as_str()) {
                    Some(at) => *at,
                    None => {
                        index.insert(key.clone(), streams.len());
                        streams.push(StreamRef {
                            labels: labels
                                .iter()
                                .map(|(n, v)| ((*n).to_string(), v.to_string()))
                                .collect(),
                            key: key.clone(),
                            entries: Vec::new(),
                        });
                        streams.len() - 1
                    }
                },
            };
            last = Some(at);
            let nanos = [record.time_unix_nano, record.observed_time_unix_nano]
                .into_iter()
                .find(|t| *t != 0)
                .unwrap_or(now_nanos);
            streams[at].entries.push(EntryRef {
                nanos,
                record,
                resource,
            });
        }
    }
    for stream in &mut streams {
        stream.entries.sort_by_key(|e| e.nanos);
    }
    Ok(streams)
}

/// The record's severity as a `level` value: its text in lower case (`warning` as `warn`),
/// else its number's range (`trace`, `debug`, `info`, `warn`, `error`, `fatal`).
fn severity(record: &LogRecord) -> Option<Cow<'_, str>> {
    let text = record.severity_text.trim();
    if !text.is_empty() {
        const KNOWN: [(&str, &str); 9] = [
            ("info", "info"),
            ("error", "error"),
            ("warn", "warn"),
            ("warning", "warn"),
            ("debug", "debug"),
            ("trace", "trace"),
            ("fatal", "fatal"),
            ("critical", "critical"),
            ("err", "error"),
        ];
        if let Some((_, level)) = KNOWN.iter().find(|(k, _)| k.eq_ignore_ascii_case(text)) {
            return Some(Cow::Borrowed(level));
        }
        return Some(Cow::Owned(text.to_ascii_lowercase()));
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

/// Whether `name` is already a valid label name.
fn is_clean(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// A value as text (borrowed for strings, else written to `buf`).
fn value_text<'b>(value: Option<&'b Value>, buf: &'b mut String) -> &'b str {
    buf.clear();
    match value {
        Some(Value::StringValue(s)) => return s,
        None => {}
        Some(Value::IntValue(i)) => buf.push_str(itoa::Buffer::new().format(*i)),
        Some(Value::DoubleValue(d)) => {
            let _ = write!(buf, "{d}");
        }
        Some(Value::BoolValue(b)) => buf.push_str(if *b { "true" } else { "false" }),
        Some(Value::BytesValue(b)) => push_hex(buf, b),
        Some(other) => {
            let _ = write!(buf, "{}", to_json(Some(other)));
        }
    }
    buf
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// Scratch space for turning one entry's names and values into text.
#[derive(Default)]
struct Scratch {
    /// The sanitised names of the record's metadata attributes, concatenated...
    names: String,
    /// ... and where each ends in `names`.
    name_ends: Vec<usize>,
    value: String,
    line: String,
    /// The resource whose metadata names are in `resource_names` (its address)...
    resource_at: usize,
    /// ... and those names, sanitised (`None`: a label, left out).
    resource_names: Vec<Option<String>>,
}

/// Calls `f` with each structured metadata pair of `entry`: the record's attributes that are
/// not labels, `trace_id` and `span_id`, `severity_text` when severity is no label, then the
/// resource's attributes that are not labels; names sanitised, a name the record already
/// gave left out.
fn each_metadata(
    entry: &EntryRef<'_>,
    mapping: &Mapping,
    scratch: &mut Scratch,
    mut f: impl FnMut(&str, &str),
) {
    let record = entry.record;
    let Scratch {
        names,
        name_ends,
        value,
        resource_at,
        resource_names,
        ..
    } = scratch;
    if *resource_at != entry.resource.as_ptr() as usize
        || resource_names.len() != entry.resource.len()
    {
        *resource_at = entry.resource.as_ptr() as usize;
        resource_names.clear();
        resource_names.extend(
            entry
                .resource
                .iter()
                .map(|kv| (!mapping.is_label_key(&kv.key)).then(|| sanitize_label_name(&kv.key))),
        );
    }
    names.clear();
    name_ends.clear();
    let own = || {
        record
            .attributes
            .iter()
            .filter(|kv| !mapping.is_label_key(&kv.key))
    };
    for kv in own() {
        if is_clean(&kv.key) {
            names.push_str(&kv.key);
        } else {
            names.push_str(&sanitize_label_name(&kv.key));
        }
        name_ends.push(names.len());
    }
    let name_at = |i: usize| &names[if i == 0 { 0 } else { name_ends[i - 1] }..name_ends[i]];
    let record_has = |name: &str| (0..name_ends.len()).any(|i| name_at(i) == name);
    for (i, kv) in own().enumerate() {
        f(name_at(i), value_text(inner(kv.value.as_ref()), value));
    }
    if is_valid_trace_id(&record.trace_id) && !record_has("trace_id") {
        value.clear();
        push_hex(value, &record.trace_id);
        f("trace_id", value);
    }
    if is_valid_span_id(&record.span_id) && !record_has("span_id") {
        value.clear();
        push_hex(value, &record.span_id);
        f("span_id", value);
    }
    if !mapping.severity_is_label
        && !record_has("severity_text")
        && let Some(level) = severity(record)
    {
        f("severity_text", &level);
    }
    for (kv, name) in entry.resource.iter().zip(resource_names.iter()) {
        let Some(name) = name else { continue };
        if record_has(name) {
            continue;
        }
        f(name, value_text(inner(kv.value.as_ref()), value));
    }
}

/// The line per `line_format` (borrowed for a string body, else built in `buf`).
fn line<'b>(record: &'b LogRecord, format: LineFormat, buf: &'b mut String) -> &'b str {
    let body = inner(record.body.as_ref());
    buf.clear();
    match format {
        LineFormat::Body => match body {
            Some(Value::StringValue(s)) => return s,
            other => *buf = to_plain_text(other),
        },
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
            let _ = write!(buf, "{}", serde_json::Value::Object(map));
        }
        LineFormat::Logfmt => {
            let mut value = String::new();
            if body.is_some() {
                push_logfmt(buf, "body", &to_plain_text(body));
            }
            for (key, v) in line_fields(record) {
                push_logfmt(buf, key, &v);
            }
            for kv in &record.attributes {
                let v = value_text(inner(kv.value.as_ref()), &mut value);
                push_logfmt(buf, &kv.key, v);
            }
        }
    }
    buf
}

/// The record's own fields in a `json` or `logfmt` line.
fn line_fields(record: &LogRecord) -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(3);
    if let Some(level) = severity(record) {
        fields.push(("severity", level.into_owned()));
    }
    let mut hex = String::new();
    if is_valid_trace_id(&record.trace_id) {
        push_hex(&mut hex, &record.trace_id);
        fields.push(("trace_id", std::mem::take(&mut hex)));
    }
    if is_valid_span_id(&record.span_id) {
        push_hex(&mut hex, &record.span_id);
        fields.push(("span_id", hex));
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

/// One push request body, before compression.
#[derive(Debug, Default)]
pub(crate) struct Part {
    pub(crate) body: Vec<u8>,
    /// Entries (log records) in it.
    pub(crate) items: usize,
}

/// The streams as request bodies of at most `max_bytes` each, keeping each stream's entries
/// in order across requests (an entry larger than the limit goes alone).
pub(crate) fn encode_parts(
    streams: &[StreamRef<'_>],
    mapping: &Mapping,
    encoding: LokiEncoding,
    max_bytes: usize,
) -> Vec<Part> {
    match encoding {
        LokiEncoding::Protobuf => assemble(streams, mapping, max_bytes, &mut ProtobufWriter),
        LokiEncoding::Json => assemble(streams, mapping, max_bytes, &mut JsonWriter),
    }
}

/// The framing of one encoding.
trait BodyWriter: Separator {
    /// Appends one entry to `out`, framed as inside a stream.
    fn entry(
        &mut self,
        entry: &EntryRef<'_>,
        mapping: &Mapping,
        s: &mut Scratch,
        out: &mut Vec<u8>,
    );
    /// The most a stream's framing adds around its entries.
    fn stream_overhead(&self, stream: &StreamRef<'_>) -> usize;
    /// Appends a stream with `entries` (entries written by `entry`, concatenated) to `body`.
    fn stream(&mut self, stream: &StreamRef<'_>, entries: &[u8], first: bool, body: &mut Vec<u8>);
    /// Turns the concatenated streams into the request body.
    fn finish(&mut self, streams: Vec<u8>) -> Vec<u8>;
    /// Bytes `finish` adds.
    const BODY_OVERHEAD: usize;
}

fn assemble<W: BodyWriter>(
    streams: &[StreamRef<'_>],
    mapping: &Mapping,
    max_bytes: usize,
    writer: &mut W,
) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut scratch = Scratch::default();
    let mut body = Vec::new();
    let mut items = 0usize;
    let mut size = W::BODY_OVERHEAD;
    // The entries of the stream being written, each written straight in.
    let mut entries = Vec::new();
    for stream in streams {
        let overhead = writer.stream_overhead(stream);
        entries.clear();
        for e in &stream.entries {
            let before = entries.len();
            if before > 0
                && let Some(sep) = W::ENTRY_SEPARATOR
            {
                entries.push(sep);
            }
            let start = entries.len();
            writer.entry(e, mapping, &mut scratch, &mut entries);
            let added = entries.len() - before + if before == 0 { overhead } else { 0 };
            if items > 0 && size + added > max_bytes {
                // Close the part without this entry; it starts the next one.
                let entry = entries.split_off(start);
                entries.truncate(before);
                if !entries.is_empty() {
                    writer.stream(stream, &entries, body.is_empty(), &mut body);
                }
                parts.push(Part {
                    body: writer.finish(std::mem::take(&mut body)),
                    items,
                });
                items = 0;
                size = W::BODY_OVERHEAD + overhead + entry.len();
                entries = entry;
            } else {
                size += added;
            }
            items += 1;
        }
        if !entries.is_empty() {
            writer.stream(stream, &entries, body.is_empty(), &mut body);
        }
    }
    if items > 0 {
        parts.push(Part {
            body: writer.finish(body),
            items,
        });
    }
    parts
}

trait Separator {
    /// A byte between two entries of a stream, if the encoding has one.
    const ENTRY_SEPARATOR: Option<u8>;
}

fn put_string(tag: u32, value: &str, out: &mut Vec<u8>) {
    if value.is_empty() {
        return;
    }
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

/// Room left for an entry's length prefix before the entry is written: two bytes, the
/// varint of 128 to 16383, fit most entries; others move once into place.
const LEN_ROOM: usize = 2;

/// `logproto.PushRequest`.
struct ProtobufWriter;

impl Separator for ProtobufWriter {
    const ENTRY_SEPARATOR: Option<u8> = None;
}

impl BodyWriter for ProtobufWriter {
    const BODY_OVERHEAD: usize = 0;

    fn entry(&mut self, e: &EntryRef<'_>, mapping: &Mapping, s: &mut Scratch, out: &mut Vec<u8>) {
        // StreamAdapter.entries (2): an EntryAdapter, its length written once known.
        encode_key(2, WireType::LengthDelimited, out);
        let len_at = out.len();
        out.extend_from_slice(&[0; LEN_ROOM]);
        let start = out.len();
        let seconds = e.nanos / 1_000_000_000;
        let nanos = e.nanos % 1_000_000_000;
        let ts_len = if seconds > 0 {
            1 + encoded_len_varint(seconds)
        } else {
            0
        } + if nanos > 0 {
            1 + encoded_len_varint(nanos)
        } else {
            0
        };
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(ts_len as u64, out);
        if seconds > 0 {
            encode_key(1, WireType::Varint, out);
            encode_varint(seconds, out);
        }
        if nanos > 0 {
            encode_key(2, WireType::Varint, out);
            encode_varint(nanos, out);
        }
        let mut line_buf = std::mem::take(&mut s.line);
        put_string(2, line(e.record, mapping.line_format, &mut line_buf), out);
        s.line = line_buf;
        if mapping.structured_metadata {
            each_metadata(e, mapping, s, |name, value| {
                // LabelPairAdapter: name (1), value (2).
                let len = 1
                    + encoded_len_varint(name.len() as u64)
                    + name.len()
                    + if value.is_empty() {
                        0
                    } else {
                        1 + encoded_len_varint(value.len() as u64) + value.len()
                    };
                encode_key(3, WireType::LengthDelimited, out);
                encode_varint(len as u64, out);
                put_string(1, name, out);
                put_string(2, value, out);
            });
        }
        // The length, then the content moved up against it.
        let content = out.len() - start;
        let mut prefix = [0u8; 10];
        let n = {
            let mut rest = &mut prefix[..];
            encode_varint(content as u64, &mut rest);
            10 - rest.len()
        };
        if n == LEN_ROOM {
            out[len_at..start].copy_from_slice(&prefix[..n]);
        } else {
            out.splice(len_at..start, prefix[..n].iter().copied());
        }
    }

    fn stream_overhead(&self, stream: &StreamRef<'_>) -> usize {
        // StreamAdapter key and length (at most 1 + 10), labels field.
        11 + 1 + encoded_len_varint(stream.key.len() as u64) + stream.key.len()
    }

    fn stream(&mut self, stream: &StreamRef<'_>, entries: &[u8], _first: bool, body: &mut Vec<u8>) {
        let labels_len = 1 + encoded_len_varint(stream.key.len() as u64) + stream.key.len();
        encode_key(1, WireType::LengthDelimited, body);
        encode_varint((labels_len + entries.len()) as u64, body);
        put_string(1, &stream.key, body);
        body.extend_from_slice(entries);
    }

    fn finish(&mut self, streams: Vec<u8>) -> Vec<u8> {
        streams
    }
}

/// Loki's JSON push format: `{"streams":[{"stream":{labels},"values":[["ns","line",
/// {metadata}], ...]}, ...]}`.
struct JsonWriter;

impl Separator for JsonWriter {
    const ENTRY_SEPARATOR: Option<u8> = Some(b',');
}

fn json_string(text: &str, out: &mut Vec<u8>) {
    // Serialising a string cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

impl BodyWriter for JsonWriter {
    const BODY_OVERHEAD: usize = 16;

    fn entry(&mut self, e: &EntryRef<'_>, mapping: &Mapping, s: &mut Scratch, out: &mut Vec<u8>) {
        out.extend_from_slice(b"[\"");
        out.extend_from_slice(e.nanos.to_string().as_bytes());
        out.extend_from_slice(b"\",");
        let mut line_buf = std::mem::take(&mut s.line);
        json_string(line(e.record, mapping.line_format, &mut line_buf), out);
        s.line = line_buf;
        if mapping.structured_metadata {
            let mut first = true;
            each_metadata(e, mapping, s, |name, value| {
                out.extend_from_slice(if first { b",{" } else { b"," });
                first = false;
                json_string(name, out);
                out.push(b':');
                json_string(value, out);
            });
            if !first {
                out.push(b'}');
            }
        }
        out.push(b']');
    }

    fn stream_overhead(&self, stream: &StreamRef<'_>) -> usize {
        32 + stream
            .labels
            .iter()
            .map(|(n, v)| n.len() + 2 * v.len() + 6)
            .sum::<usize>()
    }

    fn stream(&mut self, stream: &StreamRef<'_>, entries: &[u8], first: bool, body: &mut Vec<u8>) {
        if !first {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"stream\":{");
        for (i, (name, value)) in stream.labels.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            json_string(name, body);
            body.push(b':');
            json_string(value, body);
        }
        body.extend_from_slice(b"},\"values\":[");
        body.extend_from_slice(entries);
        body.extend_from_slice(b"]}");
    }

    fn finish(&mut self, streams: Vec<u8>) -> Vec<u8> {
        let mut body = Vec::with_capacity(streams.len() + Self::BODY_OVERHEAD);
        body.extend_from_slice(b"{\"streams\":[");
        body.extend_from_slice(&streams);
        body.extend_from_slice(b"]}");
        body
    }
}
