//! A strict Loki push server for tests (Loki itself cannot be installed where the tests
//! run): it takes `POST /loki/api/v1/push` exactly as Loki's distributor reads it
//! (snappy-compressed `logproto.PushRequest`, or the JSON push format, gzip or plain),
//! checks what Loki would refuse or what breaks the exporter's contract (label syntax,
//! label and metadata names, at least one label, per-stream timestamp order), and answers
//! with scripted statuses. Entries are recorded only from pushes it answered 2xx, so a test
//! can check that nothing was lost or duplicated.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prost::Message;
use tokio::net::TcpListener;

use super::proto::PushRequest;
use crate::testing::{HttpHandler, serve_http, text_response};

/// One entry as the server decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEntry {
    /// The stream's labels.
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub timestamp: u64,
    /// The line.
    pub line: String,
    /// Structured metadata, in order.
    pub metadata: Vec<(String, String)>,
}

impl ReceivedEntry {
    /// The value of a structured metadata pair.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One push request as received.
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    /// `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// `Content-Type`.
    pub content_type: String,
    /// The body's size before decompression.
    pub body_bytes: usize,
    /// Streams in the request.
    pub streams: usize,
    /// Its entries, stream by stream.
    pub entries: Vec<ReceivedEntry>,
    /// The status answered.
    pub status: u16,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` seconds, if any.
    pub retry_after: Option<u64>,
    /// The body (Loki answers errors as plain text).
    pub body: String,
}

#[derive(Default)]
struct State {
    pushes: Vec<ReceivedPush>,
    replies: VecDeque<Reply>,
    violations: Vec<String>,
}

/// The server; see the module docs.
pub struct LokiServer {
    addr: SocketAddr,
    state: Mutex<State>,
    down: std::sync::atomic::AtomicBool,
}

impl LokiServer {
    /// Serves on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Arc<LokiServer>> {
        LokiServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves on `addr` (bound before returning).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Arc<LokiServer>> {
        let listener = TcpListener::bind(addr).await?;
        let server = Arc::new(LokiServer {
            addr: listener.local_addr()?,
            state: Mutex::new(State::default()),
            down: std::sync::atomic::AtomicBool::new(false),
        });
        serve_http(listener, Arc::downgrade(&server));
        Ok(server)
    }

    /// Takes the server down (every connection is closed unanswered) or back up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The push URL.
    pub fn url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the next push with `reply` (then 204 again once the script is used up).
    pub fn reply(&self, reply: Reply) {
        self.state().replies.push_back(reply);
    }

    /// Every push received, answered 2xx or not.
    pub fn pushes(&self) -> Vec<ReceivedPush> {
        self.state().pushes.clone()
    }

    /// Entries of the pushes answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<ReceivedEntry> {
        self.state()
            .pushes
            .iter()
            .filter(|p| (200..300).contains(&p.status))
            .flat_map(|p| p.entries.clone())
            .collect()
    }

    /// What Loki would have refused, or the exporter promised and broke.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }
}

impl HttpHandler for LokiServer {
    fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let raw = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return text_response(400, &format!("reading the body: {e}")),
        };
        if parts.method != http::Method::POST || parts.uri.path() != "/loki/api/v1/push" {
            return text_response(404, "404 page not found");
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let decoded = if content_type.starts_with("application/x-protobuf") {
            decode_protobuf(&raw)
        } else if content_type.starts_with("application/json") {
            let gzip = header("content-encoding").is_some_and(|e| e == "gzip");
            decode_json(&raw, gzip)
        } else {
            Err(format!("unsupported content type {content_type:?}"))
        };
        let entries = match decoded
            .and_then(|(streams, entries)| check(&entries).map(|()| (streams, entries)))
        {
            Ok(ok) => ok,
            Err(why) => {
                self.state().violations.push(why.clone());
                return text_response(400, &why);
            }
        };
        let mut state = self.state();
        let reply = state.replies.pop_front().unwrap_or(Reply {
            status: 204,
            retry_after: None,
            body: String::new(),
        });
        state.pushes.push(ReceivedPush {
            tenant: header("x-scope-orgid"),
            content_type,
            body_bytes: raw.len(),
            streams: entries.0,
            entries: entries.1,
            status: reply.status,
        });
        let mut response = text_response(reply.status, &reply.body);
        if let Some(secs) = reply.retry_after
            && let Ok(v) = http::HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        response
    }
}

type Decoded = (usize, Vec<ReceivedEntry>);

fn decode_protobuf(raw: &[u8]) -> Result<Decoded, String> {
    let bytes = snap::raw::Decoder::new()
        .decompress_vec(raw)
        .map_err(|e| format!("snappy: {e}"))?;
    let request = PushRequest::decode(&bytes[..]).map_err(|e| format!("protobuf: {e}"))?;
    let mut entries = Vec::new();
    for stream in &request.streams {
        let labels = parse_labels(&stream.labels)?;
        for e in &stream.entries {
            let ts = e
                .timestamp
                .ok_or_else(|| format!("entry without timestamp in {}", stream.labels))?;
            entries.push(ReceivedEntry {
                labels: labels.clone(),
                timestamp: ts.unix_nanos(),
                line: e.line.clone(),
                metadata: e
                    .structured_metadata
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect(),
            });
        }
    }
    Ok((request.streams.len(), entries))
}

fn decode_json(raw: &[u8], gzip: bool) -> Result<Decoded, String> {
    use serde_json::Value as J;
    let mut plain = Vec::new();
    let body: &[u8] = if gzip {
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut plain)
            .map_err(|e| format!("gzip: {e}"))?;
        &plain
    } else {
        raw
    };
    let value: J = serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))?;
    let streams = value
        .get("streams")
        .and_then(J::as_array)
        .ok_or("no streams array")?;
    let mut entries = Vec::new();
    for stream in streams {
        let labels: BTreeMap<String, String> = stream
            .get("stream")
            .and_then(J::as_object)
            .ok_or("stream without a stream object")?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str().ok_or("label value not a string")?.into(),
                ))
            })
            .collect::<Result<_, &str>>()?;
        for name in labels.keys() {
            check_name(name)?;
        }
        for value in stream
            .get("values")
            .and_then(J::as_array)
            .ok_or("stream without values")?
        {
            let v = value.as_array().ok_or("value not an array")?;
            let ts: u64 = v
                .first()
                .and_then(J::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or("timestamp not a string of nanoseconds")?;
            let line = v.get(1).and_then(J::as_str).ok_or("line not a string")?;
            let metadata = match v.get(2) {
                None => Vec::new(),
                Some(J::Object(m)) => m
                    .iter()
                    .map(|(k, v)| {
                        Ok((k.clone(), v.as_str().ok_or("metadata not a string")?.into()))
                    })
                    .collect::<Result<_, &str>>()?,
                Some(_) => return Err("structured metadata not an object".into()),
            };
            entries.push(ReceivedEntry {
                labels: labels.clone(),
                timestamp: ts,
                line: line.to_string(),
                metadata,
            });
        }
    }
    Ok((streams.len(), entries))
}

/// Per stream (consecutive entries with the same labels): at least one label, timestamps
/// not going back, valid metadata names.
fn check(entries: &[ReceivedEntry]) -> Result<(), String> {
    let mut last: BTreeMap<&BTreeMap<String, String>, u64> = BTreeMap::new();
    for e in entries {
        if e.labels.is_empty() {
            return Err("error at least one label pair is required per stream".into());
        }
        if let Some(prev) = last.insert(&e.labels, e.timestamp)
            && e.timestamp < prev
        {
            return Err(format!(
                "entry out of order for stream {:?}: {} after {}",
                e.labels, e.timestamp, prev
            ));
        }
        for (name, _) in &e.metadata {
            check_name(name)?;
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("invalid label name {name:?}"))
    }
}

/// Parses `{a="x", b="y"}` as Loki's (PromQL's) parser does; names must be valid and
/// unique, values double-quoted with `\\`, `\"` and `\n` escapes.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let err = |what: &str| format!("parse error in labels {text:?}: {what}");
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| err("not in braces"))?;
    let mut labels = BTreeMap::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| err("no ="))?;
        let name = rest[..eq].trim();
        check_name(name).map_err(|e| err(&e))?;
        rest = rest[eq + 1..].trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| err("value not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(err("unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(err("bad escape")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(err("duplicate label name"));
        }
        rest = rest[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(err("expected , between labels"));
        }
    }
    if labels.is_empty() {
        return Err(err("no labels"));
    }
    Ok(labels)
}

/// `n` seed-style request logs (the seed guide's Flask app: "Request completed" with the
/// request ID, status, duration, method and path, trace context set) of service `api` on
/// `node-1`, one millisecond apart from `first_nanos`, except that every seventh record
/// arrives 5ms late (clients batch out of order). Every twentieth is an `ERROR` with status
/// 500.
pub fn request_logs(n: usize, first_nanos: u64) -> pipeline_core::Batch {
    use pipeline_core::Payload;
    use pipeline_core::attributes::string;
    use pipeline_core::proto::tonic::common::v1::any_value::Value;
    use pipeline_core::proto::tonic::common::v1::{AnyValue, InstrumentationScope};
    use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use pipeline_core::proto::tonic::resource::v1::Resource;
    let typed = pipeline_core::testing::attribute;
    let log_records = (0..n as u64)
        .map(|i| {
            let late = if i % 7 == 3 { 5_000_000 } else { 0 };
            let error = i % 20 == 19;
            LogRecord {
                time_unix_nano: first_nanos + i * 1_000_000 - late.min(first_nanos),
                observed_time_unix_nano: first_nanos + i * 1_000_000 + 20_000_000,
                severity_number: if error { 17 } else { 9 },
                severity_text: if error { "ERROR" } else { "INFO" }.into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue("Request completed".into())),
                }),
                attributes: vec![
                    string("module", "app"),
                    string("function", "after_request"),
                    typed("line", Value::IntValue(185)),
                    string("request_id", format!("req-{i:08x}-4d2b-9c1e")),
                    typed(
                        "status_code",
                        Value::IntValue(if error { 500 } else { 200 }),
                    ),
                    typed("duration_seconds", Value::DoubleValue(0.057)),
                    string("method", "POST"),
                    string("path", "/api/login"),
                    typed("user_id", Value::IntValue(12_345 + (i % 100) as i64)),
                ],
                trace_id: {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&0x5eed_u64.to_be_bytes());
                    id[8..].copy_from_slice(&(i + 1).to_be_bytes());
                    id.to_vec()
                },
                span_id: (i + 1).to_be_bytes().to_vec(),
                ..Default::default()
            }
        })
        .collect();
    pipeline_core::Batch::new(Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                string("service.name", "api"),
                string("host.name", "node-1"),
                string("deployment.environment", "prod"),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "app".into(),
                ..Default::default()
            }),
            log_records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]))
}
