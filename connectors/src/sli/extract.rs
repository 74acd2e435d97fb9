//! Turning spans and request-completion log records into [`Request`]s: the service, method,
//! endpoint, status code, error type, duration and trace context of one request.

use std::borrow::Cow;

use pipeline_core::attributes::{find, find_in_map, inner, to_f64, to_i64, to_text};
use pipeline_core::model::{is_valid_span_id, is_valid_trace_id};
use pipeline_core::proto::tonic::common::v1::{KeyValue, any_value::Value};
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, Span, status::StatusCode};

use super::config::{FieldRef, SliConfig};

/// The service name when a request's resource has none, as the SDKs default it.
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";
/// `error_type` when an error has neither an exception type nor a status code.
pub(crate) const GENERIC_ERROR: &str = "error";

/// One request, borrowed from the span or log record it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request<'a> {
    pub(crate) service: Cow<'a, str>,
    pub(crate) method: Option<Cow<'a, str>>,
    pub(crate) endpoint: Option<Cow<'a, str>>,
    pub(crate) status_code: Option<i64>,
    /// Set when the request is an error.
    pub(crate) error_type: Option<Cow<'a, str>>,
    /// Seconds, when known and valid.
    pub(crate) duration: Option<f64>,
    /// The configured extra dimensions, in order; `None` is left off.
    pub(crate) dimensions: Vec<Option<Cow<'a, str>>>,
    /// Trace context for an exemplar.
    pub(crate) trace: Option<TraceRef<'a>>,
}

/// Where an exemplar points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceRef<'a> {
    pub(crate) trace_id: &'a [u8],
    pub(crate) span_id: &'a [u8],
    pub(crate) time_unix_nano: u64,
}

impl<'a> TraceRef<'a> {
    fn new(trace_id: &'a [u8], span_id: &'a [u8], time_unix_nano: u64) -> Option<Self> {
        let valid = is_valid_trace_id(trace_id) && is_valid_span_id(span_id);
        valid.then_some(TraceRef {
            trace_id,
            span_id,
            time_unix_nano,
        })
    }
}

/// Values that were present but unusable, by field; the request still counts without them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) status_code: usize,
    pub(crate) duration: usize,
}

fn text(v: Option<&Value>) -> Option<Cow<'_, str>> {
    v.and_then(to_text).filter(|s| !s.is_empty())
}

fn status_class(code: i64) -> Cow<'static, str> {
    match code {
        100..=199 => Cow::Borrowed("1xx"),
        200..=299 => Cow::Borrowed("2xx"),
        300..=399 => Cow::Borrowed("3xx"),
        400..=499 => Cow::Borrowed("4xx"),
        500..=599 => Cow::Borrowed("5xx"),
        other => Cow::Owned(format!("{}xx", other.div_euclid(100))),
    }
}

/// Reads a status code; counts a present but non-integer one.
fn status_code(v: Option<&Value>, invalid: &mut Invalid) -> Option<i64> {
    let v = v?;
    let code = to_i64(v).filter(|c| (0..=999).contains(c));
    if code.is_none() {
        invalid.status_code += 1;
    }
    code
}

fn dimensions<'a>(
    config: &SliConfig,
    own: &'a [KeyValue],
    resource: &'a [KeyValue],
) -> Vec<Option<Cow<'a, str>>> {
    config
        .dimensions
        .iter()
        .map(|d| {
            text(find(own, &d.name))
                .or_else(|| text(find(resource, &d.name)))
                .or_else(|| d.default.as_deref().map(|s| Cow::Owned(s.to_string())))
        })
        .collect()
}

fn resource_service(resource: &[KeyValue]) -> Cow<'_, str> {
    text(find(resource, "service.name")).unwrap_or(Cow::Borrowed(UNKNOWN_SERVICE))
}

/// The exception type a span recorded: an `exception` event's `exception.type`, else the
/// span's own `exception.type`, else a non-numeric `error.type`.
fn span_exception_type(span: &Span) -> Option<Cow<'_, str>> {
    span.events
        .iter()
        .filter(|e| e.name == "exception")
        .find_map(|e| text(find(&e.attributes, "exception.type")))
        .or_else(|| text(find(&span.attributes, "exception.type")))
        .or_else(|| {
            text(find(&span.attributes, "error.type"))
                .filter(|t| t.parse::<i64>().is_err() && t != "_OTHER")
        })
}

/// Hands `emit` the requests among the spans (those of the configured kinds), in order.
pub(crate) fn spans<'a>(
    config: &SliConfig,
    kinds: &[i32],
    resource_spans: &'a [ResourceSpans],
    invalid: &mut Invalid,
    mut emit: impl FnMut(Request<'a>),
) {
    for rs in resource_spans {
        let resource: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let service = resource_service(resource);
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            if !kinds.contains(&span.kind) {
                continue;
            }
            emit(span_request(config, &service, resource, span, invalid));
        }
    }
}

fn span_request<'a>(
    config: &SliConfig,
    service: &Cow<'a, str>,
    resource: &'a [KeyValue],
    span: &'a Span,
    invalid: &mut Invalid,
) -> Request<'a> {
    let attrs = &span.attributes;
    let method =
        text(find(attrs, "http.request.method")).or_else(|| text(find(attrs, "http.method")));
    let endpoint = text(find(attrs, "http.route"))
        .or_else(|| (!span.name.is_empty()).then_some(Cow::Borrowed(span.name.as_str())));
    let code = status_code(
        find(attrs, "http.response.status_code").or_else(|| find(attrs, "http.status_code")),
        invalid,
    );
    let status_error = config.errors.span_status
        && span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
    let code_error = code.is_some_and(|c| c >= config.errors.min_status_code);
    let error_type = (status_error || code_error).then(|| {
        span_exception_type(span)
            .or_else(|| code.filter(|_| code_error).map(status_class))
            .unwrap_or(Cow::Borrowed(GENERIC_ERROR))
    });
    let duration =
        if span.start_time_unix_nano > 0 && span.end_time_unix_nano >= span.start_time_unix_nano {
            Some((span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e9)
        } else {
            invalid.duration += 1;
            None
        };
    Request {
        service: service.clone(),
        method,
        endpoint,
        status_code: code,
        error_type,
        duration,
        dimensions: dimensions(config, attrs, resource),
        trace: TraceRef::new(&span.trace_id, &span.span_id, span.end_time_unix_nano),
    }
}

/// The value a field reference points at on a record.
fn field<'a>(f: &FieldRef, record: &'a LogRecord, resource: &'a [KeyValue]) -> Option<&'a Value> {
    let body = || inner(record.body.as_ref());
    match f {
        FieldRef::Body => body(),
        FieldRef::BodyKey(k) => body().and_then(|b| find_in_map(b, k)),
        FieldRef::Attribute(k) => find(&record.attributes, k),
        FieldRef::Resource(k) => find(resource, k),
        FieldRef::AttributeOrBody(k) => {
            find(&record.attributes, k).or_else(|| body().and_then(|b| find_in_map(b, k)))
        }
    }
}

/// Hands `emit` the requests among the log records (those `logs.match` selects), in order.
pub(crate) fn logs<'a>(
    config: &SliConfig,
    resource_logs: &'a [ResourceLogs],
    invalid: &mut Invalid,
    mut emit: impl FnMut(Request<'a>),
) {
    let m = &config.logs.r#match;
    for rl in resource_logs {
        let resource: &[KeyValue] = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let Some(v) = field(&m.field, record, resource) else {
                continue;
            };
            if let Some(want) = &m.equals
                && to_text(v).as_deref() != Some(want.as_str())
            {
                continue;
            }
            emit(log_request(config, resource, record, invalid));
        }
    }
}

fn log_request<'a>(
    config: &SliConfig,
    resource: &'a [KeyValue],
    record: &'a LogRecord,
    invalid: &mut Invalid,
) -> Request<'a> {
    let f = &config.logs.fields;
    let get = |r: &FieldRef| field(r, record, resource);
    let service = text(get(&f.service)).unwrap_or(Cow::Borrowed(UNKNOWN_SERVICE));
    let endpoint = text(get(&f.route)).or_else(|| {
        let path = text(get(&f.path))?;
        if !f.normalize_path {
            return Some(path);
        }
        let changed = match normalize_path(&path) {
            Cow::Borrowed(same) if same.len() == path.len() => None,
            other => Some(other.into_owned()),
        };
        Some(changed.map_or(path, Cow::Owned))
    });
    let code = status_code(get(&f.status_code), invalid);
    let code_error = code.is_some_and(|c| c >= config.errors.min_status_code);
    let error_type = code_error.then(|| {
        text(get(&f.exception_type))
            .or_else(|| code.map(status_class))
            .unwrap_or(Cow::Borrowed(GENERIC_ERROR))
    });
    let duration = get(&f.duration).and_then(|v| {
        let d = to_f64(v)
            .filter(|d| *d >= 0.0)
            .map(|d| d * f.duration_unit.seconds());
        if d.is_none() {
            invalid.duration += 1;
        }
        d
    });
    let time = if record.time_unix_nano > 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    Request {
        service,
        method: text(get(&f.method)),
        endpoint,
        status_code: code,
        error_type,
        duration,
        dimensions: dimensions(config, &record.attributes, resource),
        trace: TraceRef::new(&record.trace_id, &record.span_id, time),
    }
}

/// Whether a path segment is an identifier rather than part of the route: a number, a UUID,
/// or a long hexadecimal string with a digit in it.
fn is_id_segment(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hex = |p: &str| p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| hex(p))
    {
        return true;
    }
    s.len() >= 16 && hex(s) && s.bytes().any(|b| b.is_ascii_digit())
}

/// The route-like form of a request path: no query string or fragment, and identifier
/// segments replaced with `{id}` (`/api/users/42?x=1` becomes `/api/users/{id}`).
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let cut = path.find(['?', '#']).unwrap_or(path.len());
    let base = &path[..cut];
    if !base.split('/').any(is_id_segment) {
        return Cow::Borrowed(base);
    }
    let segments: Vec<&str> = base
        .split('/')
        .map(|s| if is_id_segment(s) { "{id}" } else { s })
        .collect();
    Cow::Owned(segments.join("/"))
}
