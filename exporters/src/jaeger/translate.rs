//! OTLP spans to Jaeger's model, the standard translation (the OpenTelemetry Collector's
//! `pkg/translator/jaeger`): one Jaeger batch per resource, the resource as the process.

use pipeline_core::attributes::{find, inner, to_text};
use pipeline_core::model::{Payload, is_valid_span_id};
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use pipeline_core::proto::tonic::common::v1::{InstrumentationScope, KeyValue as OtlpKeyValue};
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, Span as OtlpSpan, span, status};
use pipeline_core::rpc::ProtoDuration;

use super::model::{Batch, KeyValue, Log, Process, Span, SpanRef, SpanRefType, ValueType};
use crate::helper::values::{ProtoTimestamp, to_json};

/// The service name of a resource without `service.name`, as the collector writes it.
pub const NO_SERVICE_NAME: &str = "OTLP_ResourceNoServiceName";

/// One Jaeger batch per resource group that has spans; the spans of `payload` if it holds
/// traces, else nothing.
pub(crate) fn batches(payload: &Payload) -> Vec<Batch> {
    let Payload::Traces(resource_spans) = payload else {
        return Vec::new();
    };
    resource_spans
        .iter()
        .filter(|rs| rs.scope_spans.iter().any(|s| !s.spans.is_empty()))
        .map(batch)
        .collect()
}

fn batch(rs: &ResourceSpans) -> Batch {
    let attributes = rs
        .resource
        .as_ref()
        .map_or(&[][..], |r| r.attributes.as_slice());
    let service_name = find(attributes, "service.name")
        .and_then(to_text)
        .map_or_else(|| NO_SERVICE_NAME.to_string(), |s| s.into_owned());
    let process = Process {
        service_name,
        tags: attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(key_value)
            .collect(),
    };
    let spans = rs
        .scope_spans
        .iter()
        .flat_map(|ss| ss.spans.iter().map(move |s| (ss.scope.as_ref(), s)))
        .map(|(scope, s)| span(s, scope))
        .collect();
    Batch {
        spans,
        process: Some(process),
    }
}

fn span(s: &OtlpSpan, scope: Option<&InstrumentationScope>) -> Span {
    let mut references = Vec::with_capacity(s.links.len() + 1);
    if is_valid_span_id(&s.parent_span_id) {
        references.push(SpanRef {
            trace_id: s.trace_id.clone(),
            span_id: s.parent_span_id.clone(),
            ref_type: SpanRefType::ChildOf as i32,
        });
    }
    references.extend(s.links.iter().map(|l| SpanRef {
        trace_id: l.trace_id.clone(),
        span_id: l.span_id.clone(),
        ref_type: SpanRefType::FollowsFrom as i32,
    }));
    let mut tags: Vec<KeyValue> = s.attributes.iter().map(key_value).collect();
    if let Some(kind) = kind_name(s.kind) {
        tags.push(string_tag("span.kind", kind));
    }
    if let Some(st) = &s.status {
        match status::StatusCode::try_from(st.code) {
            Ok(status::StatusCode::Ok) => tags.push(string_tag("otel.status_code", "OK")),
            Ok(status::StatusCode::Error) => {
                tags.push(string_tag("otel.status_code", "ERROR"));
                tags.push(KeyValue {
                    key: "error".into(),
                    v_type: ValueType::Bool as i32,
                    v_bool: true,
                    ..Default::default()
                });
            }
            _ => {}
        }
        if !st.message.is_empty() {
            tags.push(string_tag("otel.status_description", &st.message));
        }
    }
    if !s.trace_state.is_empty() {
        tags.push(string_tag("w3c.tracestate", &s.trace_state));
    }
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.push(string_tag("otel.scope.name", &scope.name));
        }
        if !scope.version.is_empty() {
            tags.push(string_tag("otel.scope.version", &scope.version));
        }
    }
    let logs = s
        .events
        .iter()
        .map(|e| {
            let mut fields = Vec::with_capacity(e.attributes.len() + 1);
            if !e.name.is_empty() {
                fields.push(string_tag("event", &e.name));
            }
            fields.extend(e.attributes.iter().map(key_value));
            Log {
                timestamp: Some(ProtoTimestamp::from_unix_nanos(e.time_unix_nano)),
                fields,
            }
        })
        .collect();
    let nanos = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano);
    Span {
        trace_id: s.trace_id.clone(),
        span_id: s.span_id.clone(),
        operation_name: s.name.clone(),
        references,
        // W3C trace flags: bit 0 is "sampled", as Jaeger's bit 0.
        flags: s.flags & 0xff,
        start_time: Some(ProtoTimestamp::from_unix_nanos(s.start_time_unix_nano)),
        duration: Some(ProtoDuration::from(std::time::Duration::from_nanos(nanos))),
        tags,
        logs,
        process: None,
        process_id: String::new(),
        warnings: Vec::new(),
    }
}

/// `span.kind` as Jaeger (OpenTracing) names it; none for `UNSPECIFIED`.
fn kind_name(kind: i32) -> Option<&'static str> {
    match span::SpanKind::try_from(kind).ok()? {
        span::SpanKind::Internal => Some("internal"),
        span::SpanKind::Server => Some("server"),
        span::SpanKind::Client => Some("client"),
        span::SpanKind::Producer => Some("producer"),
        span::SpanKind::Consumer => Some("consumer"),
        span::SpanKind::Unspecified => None,
    }
}

fn string_tag(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        v_type: ValueType::String as i32,
        v_str: value.into(),
        ..Default::default()
    }
}

/// An attribute with its type kept; arrays and maps as JSON strings.
fn key_value(kv: &OtlpKeyValue) -> KeyValue {
    let key = kv.key.clone();
    match inner(kv.value.as_ref()) {
        Some(Value::BoolValue(b)) => KeyValue {
            key,
            v_type: ValueType::Bool as i32,
            v_bool: *b,
            ..Default::default()
        },
        Some(Value::IntValue(i)) => KeyValue {
            key,
            v_type: ValueType::Int64 as i32,
            v_int64: *i,
            ..Default::default()
        },
        Some(Value::DoubleValue(d)) => KeyValue {
            key,
            v_type: ValueType::Float64 as i32,
            v_float64: *d,
            ..Default::default()
        },
        Some(Value::BytesValue(b)) => KeyValue {
            key,
            v_type: ValueType::Binary as i32,
            v_binary: b.clone(),
            ..Default::default()
        },
        Some(Value::StringValue(s)) => KeyValue {
            key,
            v_type: ValueType::String as i32,
            v_str: s.clone(),
            ..Default::default()
        },
        None => string_tag(&kv.key, ""),
        Some(other) => KeyValue {
            key,
            v_type: ValueType::String as i32,
            v_str: to_json(Some(other)).to_string(),
            ..Default::default()
        },
    }
}
