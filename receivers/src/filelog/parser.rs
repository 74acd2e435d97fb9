//! Turning one record's text into an OTLP `LogRecord`: `none` (the text is the body),
//! `json` (the seed guide's structured-log layout) and `regex` (named captures).

use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use pipeline_core::proto::tonic::logs::v1::LogRecord;

use super::config::{ParserConfig, ParserKind};
use super::json;
use super::timestamp::{self, Layout};

/// The attribute set on a record whose text could not be parsed (the message says why).
pub(crate) const PARSE_ERROR: &str = "log.parse_error";

enum Kind {
    None,
    Json,
    Regex(regex::Regex),
}

/// Builds records from text as configured.
pub(crate) struct RecordBuilder {
    kind: Kind,
    layout: Option<Layout>,
    timestamp_field: String,
    level_field: String,
    message_field: String,
    service_field: String,
}

/// One built record and where it belongs.
pub(crate) struct Built {
    /// The record.
    pub(crate) record: LogRecord,
    /// The resource's `service.name`, when the record named one.
    pub(crate) service: Option<String>,
    /// The text could not be parsed (the record carries `log.parse_error`).
    pub(crate) parse_error: bool,
}

/// SeverityNumber of a level name, case-insensitive (0 when unknown).
pub(crate) fn severity_number(level: &str) -> i32 {
    let l = level.trim();
    let eq = |name: &str| l.eq_ignore_ascii_case(name);
    if eq("TRACE") {
        1
    } else if eq("DEBUG") {
        5
    } else if eq("INFO") || eq("INFORMATION") {
        9
    } else if eq("NOTICE") {
        10
    } else if eq("WARNING") || eq("WARN") {
        13
    } else if eq("ERROR") || eq("ERR") {
        17
    } else if eq("CRITICAL") || eq("FATAL") || eq("CRIT") || eq("EMERGENCY") || eq("ALERT") {
        21
    } else {
        0
    }
}

fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s)),
    }
}

fn kv(key: String, value: AnyValue) -> KeyValue {
    KeyValue {
        key,
        value: Some(value),
        ..Default::default()
    }
}

fn hex_id<const N: usize>(text: &str) -> Option<Vec<u8>> {
    let t = text.trim().as_bytes();
    if t.len() != N * 2 {
        return None;
    }
    let mut out = Vec::with_capacity(N);
    for pair in t.chunks(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    // All-zero IDs are invalid in OTLP.
    out.iter().any(|b| *b != 0).then_some(out)
}

impl RecordBuilder {
    /// A builder for a validated parser config.
    pub(crate) fn new(c: &ParserConfig) -> Result<RecordBuilder, String> {
        let kind = match c.kind {
            ParserKind::None => Kind::None,
            ParserKind::Json => Kind::Json,
            ParserKind::Regex => {
                let pattern = c.regex.as_deref().unwrap_or_default();
                Kind::Regex(regex::Regex::new(pattern).map_err(|e| e.to_string())?)
            }
        };
        let layout = c
            .timestamp_layout
            .as_deref()
            .map(Layout::parse)
            .transpose()?;
        Ok(RecordBuilder {
            kind,
            layout,
            timestamp_field: c.timestamp_field.clone(),
            level_field: c.level_field.clone(),
            message_field: c.message_field.clone(),
            service_field: c.service_field.clone(),
        })
    }

    fn time_of_text(&self, text: &str) -> Option<u64> {
        match &self.layout {
            Some(l) => l.apply(text),
            None => timestamp::parse_auto(text),
        }
    }

    /// The record for `text`, with `attributes` (file name, truncation) first.
    pub(crate) fn build(&self, text: &str, attributes: Vec<KeyValue>, observed: u64) -> Built {
        let mut record = LogRecord {
            observed_time_unix_nano: observed,
            attributes,
            ..Default::default()
        };
        let mut service = None;
        let outcome = match &self.kind {
            Kind::None => {
                record.body = Some(string_value(text.to_string()));
                Ok(())
            }
            Kind::Json => self.json(text, &mut record, &mut service),
            Kind::Regex(re) => self.regex(re, text, &mut record, &mut service),
        };
        let parse_error = match outcome {
            Ok(()) => false,
            Err(why) => {
                record.body = Some(string_value(text.to_string()));
                record
                    .attributes
                    .push(kv(PARSE_ERROR.into(), string_value(why)));
                true
            }
        };
        Built {
            record,
            service,
            parse_error,
        }
    }

    /// Applies one parsed field; returns it back when it is an ordinary attribute.
    fn special(
        &self,
        key: &str,
        value: AnyValue,
        record: &mut LogRecord,
        service: &mut Option<String>,
    ) -> Option<AnyValue> {
        if key == self.message_field {
            record.body = Some(value);
            return None;
        }
        if key == self.timestamp_field {
            let t = match &value.value {
                Some(Value::StringValue(s)) => self.time_of_text(s),
                Some(Value::IntValue(i)) => timestamp::from_epoch_int(*i),
                Some(Value::DoubleValue(d)) => timestamp::from_epoch(*d),
                _ => None,
            };
            return match t {
                Some(t) => {
                    record.time_unix_nano = t;
                    None
                }
                None => Some(value),
            };
        }
        let Some(Value::StringValue(s)) = &value.value else {
            return Some(value);
        };
        if key == self.level_field {
            record.severity_number = severity_number(s);
            if let Some(Value::StringValue(s)) = value.value {
                record.severity_text = s;
            }
            return None;
        }
        if key == self.service_field {
            if let Some(Value::StringValue(s)) = value.value {
                *service = Some(s);
            }
            return None;
        }
        if key == "trace_id"
            && let Some(id) = hex_id::<16>(s)
        {
            record.trace_id = id;
            return None;
        }
        if key == "span_id"
            && let Some(id) = hex_id::<8>(s)
        {
            record.span_id = id;
            return None;
        }
        Some(value)
    }

    fn json(
        &self,
        text: &str,
        record: &mut LogRecord,
        service: &mut Option<String>,
    ) -> Result<(), String> {
        let base = record.attributes.len();
        record.attributes.reserve(12);
        let parsed = json::visit_object(text, |key, value| {
            if key == "exception"
                && let Some(Value::KvlistValue(list)) = value.value
            {
                for item in list.values {
                    let name = match item.key.as_str() {
                        "type" => "exception.type".to_string(),
                        "message" => "exception.message".to_string(),
                        "traceback" | "stacktrace" | "stack_trace" => {
                            "exception.stacktrace".to_string()
                        }
                        other => format!("exception.{other}"),
                    };
                    let v = item.value.unwrap_or_default();
                    let v = if name == "exception.stacktrace" {
                        stacktrace(v)
                    } else {
                        v
                    };
                    record.attributes.push(kv(name, v));
                }
                return;
            }
            if let Some(v) = self.special(&key, value, record, service) {
                record.attributes.push(kv(key.into_owned(), v));
            }
        });
        if let Err(e) = parsed {
            // Nothing of a half-parsed line stays: the raw text is the record.
            record.attributes.truncate(base);
            record.body = None;
            record.time_unix_nano = 0;
            record.severity_number = 0;
            record.severity_text.clear();
            record.trace_id.clear();
            record.span_id.clear();
            *service = None;
            return Err(e.to_string());
        }
        if record.body.is_none() {
            record.body = Some(string_value(text.to_string()));
        }
        Ok(())
    }

    fn regex(
        &self,
        re: &regex::Regex,
        text: &str,
        record: &mut LogRecord,
        service: &mut Option<String>,
    ) -> Result<(), String> {
        let caps = re
            .captures(text)
            .ok_or_else(|| "the line does not match the regex".to_string())?;
        for name in re.capture_names().flatten() {
            let Some(m) = caps.name(name) else {
                continue;
            };
            let value = string_value(m.as_str().to_string());
            if let Some(v) = self.special(name, value, record, service) {
                record.attributes.push(kv(name.to_string(), v));
            }
        }
        if record.body.is_none() {
            record.body = Some(string_value(text.to_string()));
        }
        Ok(())
    }
}

/// Python's `traceback.format_exception` gives a list of lines (each ending in a newline):
/// joined, they are the stack trace as printed.
fn stacktrace(v: AnyValue) -> AnyValue {
    match v.value {
        Some(Value::ArrayValue(a)) => {
            let mut out = String::new();
            for item in a.values {
                if let Some(Value::StringValue(s)) = item.value {
                    out.push_str(&s);
                }
            }
            string_value(out)
        }
        other => AnyValue { value: other },
    }
}
