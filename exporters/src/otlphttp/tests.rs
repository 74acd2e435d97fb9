//! Tests of the otlphttp exporter: config, answer classification, and a tiny hyper backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use pipeline_core::proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use pipeline_core::telemetry::reason;
use pipeline_core::testing::{check_exporter, log_batch, span_batch};
use pipeline_core::{DynExporterFactory, Host, Signal};
use prost::Message;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::client::{interpret, parse_retry_after};
use super::{Encoding, Factory, OtlpHttpConfig};
use crate::helper::testutil::{
    TestCert, TestCtx, eventually, fast_retries as fast, in_secs, start_exporter,
};
use crate::helper::{Delivered, SendError};
use pipeline_core::rpc::RpcStatus;

// ---- config -------------------------------------------------------------------------------

fn parse(v: Value) -> Result<OtlpHttpConfig, pipeline_core::FieldError> {
    <OtlpHttpConfig as pipeline_core::ComponentConfig>::parse(&v)
}

#[test]
fn signal_urls_follow_the_collector() {
    let c = parse(json!({"endpoint": "http://collector:4318"})).unwrap();
    assert_eq!(c.encoding, Encoding::Proto);
    let urls = c.signal_urls().unwrap();
    assert_eq!(
        urls.get(Signal::Traces).as_ref().unwrap().to_string(),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(
        urls.get(Signal::Metrics).as_ref().unwrap().to_string(),
        "http://collector:4318/v1/metrics"
    );
    let c = parse(json!({
        "endpoint": "https://otlp.example/prefix/",
        "logs_endpoint": "https://logs.example/custom",
        "encoding": "json",
    }))
    .unwrap();
    let urls = c.signal_urls().unwrap();
    assert_eq!(
        urls.get(Signal::Traces).as_ref().unwrap().to_string(),
        "https://otlp.example/prefix/v1/traces"
    );
    assert_eq!(
        urls.get(Signal::Logs).as_ref().unwrap().to_string(),
        "https://logs.example/custom"
    );
    assert_eq!(c.encoding, Encoding::Json);
    let c = parse(json!({"traces_endpoint": "http://t:1/x"})).unwrap();
    assert!(c.signal_urls().unwrap().get(Signal::Logs).is_none());

    let e = parse(json!({})).unwrap_err();
    assert_eq!(e.path, "endpoint");
    let e = parse(json!({"endpoint": "collector:4318"})).unwrap_err();
    assert!(
        e.message.contains("no scheme") || e.message.contains("scheme"),
        "{e}"
    );
    let e = parse(json!({"endpoint": "http://x", "encoding": "protobuf"})).unwrap_err();
    assert_eq!(e.path, "encoding");
    let e = parse(json!({"endpoint": "http://x", "metric_endpoint": "http://y"})).unwrap_err();
    assert!(e.message.contains("metrics_endpoint"), "{e}");
}

#[tokio::test]
async fn conformance() {
    check_exporter(&Factory, &json!({"endpoint": "http://127.0.0.1:1"})).await;
}

// ---- classification -----------------------------------------------------------------------

fn answer(
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: &[u8],
) -> Result<Delivered, SendError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, HeaderValue::from_static(v));
    }
    interpret(
        Signal::Traces,
        Encoding::Proto,
        StatusCode::from_u16(status).unwrap(),
        &map,
        body,
    )
}

#[test]
fn statuses_map_like_the_collector() {
    assert_eq!(answer(200, &[], b""), Ok(Delivered::all()));
    assert_eq!(answer(202, &[], b""), Ok(Delivered::all()));
    for status in [429, 502, 503, 504] {
        assert!(
            matches!(
                answer(status, &[], b""),
                Err(SendError::Retryable {
                    retry_after: None,
                    ..
                })
            ),
            "{status}"
        );
    }
    assert_eq!(
        answer(503, &[("retry-after", "7")], b""),
        Err(SendError::Retryable {
            reason: "HTTP 503 Service Unavailable".into(),
            retry_after: Some(Duration::from_secs(7)),
        })
    );
    for status in [401, 403, 404] {
        assert!(
            matches!(
                answer(status, &[], b""),
                Err(SendError::Permanent {
                    health_permanent: true,
                    ..
                })
            ),
            "{status}"
        );
    }
    for status in [400, 413, 500, 501, 301] {
        assert!(
            matches!(
                answer(status, &[], b""),
                Err(SendError::Permanent {
                    health_permanent: false,
                    ..
                })
            ),
            "{status}"
        );
    }
}

#[test]
fn error_bodies_and_partial_success_are_read() {
    let status = RpcStatus {
        code: 3,
        message: "span name missing".into(),
        details: vec![],
    }
    .encode_to_vec();
    let e = answer(400, &[("content-type", "application/x-protobuf")], &status).unwrap_err();
    assert_eq!(e.reason(), "HTTP 400 Bad Request: span name missing");
    let e = answer(
        400,
        &[("content-type", "application/json")],
        br#"{"code":3,"message":"bad json"}"#,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "HTTP 400 Bad Request: bad json");
    let long = "x".repeat(1000);
    let e = answer(500, &[("content-type", "text/plain")], long.as_bytes()).unwrap_err();
    assert!(e.reason().len() < 300, "{}", e.reason());

    let partial = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 4,
            error_message: "too old".into(),
        }),
    }
    .encode_to_vec();
    let d = answer(200, &[("content-type", "application/x-protobuf")], &partial).unwrap();
    assert_eq!((d.rejected_items, d.message.as_str()), (4, "too old"));
    let d = answer(
        200,
        &[("content-type", "application/json")],
        br#"{"partialSuccess":{"rejectedSpans":"2"}}"#,
    )
    .unwrap();
    assert_eq!(d.rejected_items, 2);
    // Unreadable success bodies are still success.
    assert_eq!(
        answer(
            200,
            &[("content-type", "application/x-protobuf")],
            b"\xff\xff"
        ),
        Ok(Delivered::all())
    );
}

#[test]
fn retry_after_in_seconds() {
    let v = |s: &'static str| HeaderValue::from_static(s);
    assert_eq!(parse_retry_after(&v("5")), Some(Duration::from_secs(5)));
    assert_eq!(parse_retry_after(&v(" 10 ")), Some(Duration::from_secs(10)));
    assert_eq!(parse_retry_after(&v("0")), Some(Duration::ZERO));
    // HTTP-date and junk fall back to the computed backoff.
    assert_eq!(parse_retry_after(&v("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    assert_eq!(parse_retry_after(&v("-1")), None);
    assert_eq!(parse_retry_after(&v("soon")), None);
}

// ---- a tiny backend -----------------------------------------------------------------------

struct Recorded {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    /// The body after gunzip.
    body: Vec<u8>,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Backend {
    requests: Mutex<Vec<Recorded>>,
    replies: Mutex<VecDeque<Reply>>,
}

impl Backend {
    fn reply(&self, r: Reply) {
        self.replies.lock().unwrap().push_back(r);
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn handle(
    backend: Arc<Backend>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let raw = body.collect().await.unwrap().to_bytes();
    let body = if parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip")
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw.to_vec()
    };
    backend.requests.lock().unwrap().push(Recorded {
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    });
    let reply = backend
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::status(200));
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in reply.headers {
        response
            .headers_mut()
            .insert(k, HeaderValue::from_static(v));
    }
    Ok(response)
}

/// Serves on 127.0.0.1:0; bound before returning, so no readiness wait is needed.
async fn serve(backend: &Arc<Backend>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::clone(backend);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let backend = Arc::clone(&backend);
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(Arc::clone(&backend), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn started(t: &TestCtx, config: Value) -> Arc<dyn ConsumerComponent> {
    start_exporter(&Factory, t, config).await
}

#[tokio::test]
async fn posts_gzipped_protobuf_with_headers() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/proto");
    let x = started(
        &t,
        json!({"endpoint": format!("http://{addr}"), "headers": {"Authorization": "Bearer t0k"}}),
    )
    .await;
    let batch = span_batch(3);
    x.consume(batch.clone()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 3.0
        })
        .await
    );
    {
        let requests = backend.requests.lock().unwrap();
        let r = &requests[0];
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert_eq!(r.headers["authorization"], "Bearer t0k");
        assert!(
            r.headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("sightline/")
        );
        let request = ExportTraceServiceRequest::decode(&r.body[..]).unwrap();
        assert_eq!(
            Payload::Traces(request.resource_spans),
            batch.into_parts().0
        );
    }
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn posts_plain_json_to_a_base_path() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/json");
    let x = started(
        &t,
        json!({"endpoint": format!("http://{addr}/otlp"), "encoding": "json", "compression": "none"}),
    )
    .await;
    let batch = log_batch(2);
    x.consume(batch.clone()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { t.sent("logs") == 2.0 }).await);
    {
        let requests = backend.requests.lock().unwrap();
        let r = &requests[0];
        assert_eq!(r.path, "/otlp/v1/logs");
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers.get("content-encoding").is_none());
        let request: ExportLogsServiceRequest = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(Payload::Logs(request.resource_logs), batch.into_parts().0);
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(text.starts_with("{\"resourceLogs\":"), "{text}");
    }
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn status_503_with_retry_after_is_retried() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/503");
    // Without Retry-After the retry would wait 10s.
    let x = started(
        &t,
        json!({"endpoint": format!("http://{addr}"),
               "retry_on_failure": {"initial_interval": "10s", "max_interval": "10s"}}),
    )
    .await;
    backend.reply(Reply {
        status: 503,
        headers: vec![("retry-after", "1")],
        body: b"overloaded".to_vec(),
    });
    let begun = Instant::now();
    x.consume(span_batch(2)).await.unwrap();
    assert!(eventually(Duration::from_secs(8), || async { t.sent("traces") == 2.0 }).await);
    let took = begun.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(backend.count(), 2);
    assert_eq!(t.send_attempts("failure"), 1.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn status_400_is_not_retried() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/400");
    let x = started(&t, fast(json!({"endpoint": format!("http://{addr}")}))).await;
    backend.reply(Reply::status(400));
    x.consume(span_batch(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::REJECTED) == 3.0
        })
        .await
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(backend.count(), 1);
    assert_eq!(t.sent("traces"), 0.0);
}

#[tokio::test]
async fn status_401_marks_health_permanent() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/401");
    let x = started(&t, json!({"endpoint": format!("http://{addr}")})).await;
    backend.reply(Reply::status(401));
    x.consume(span_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::REJECTED) == 1.0
        })
        .await
    );
    let health = t.health();
    assert!(health.starts_with("permanent error"), "{health}");
    assert!(health.contains("401"), "{health}");
    assert!(!t.health.readiness().ready);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn partial_success_in_json_is_counted() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/partial");
    let x = started(
        &t,
        json!({"endpoint": format!("http://{addr}"), "encoding": "json"}),
    )
    .await;
    backend.reply(Reply {
        status: 200,
        headers: vec![("content-type", "application/json")],
        body: br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"dup"}}"#.to_vec(),
    });
    x.consume(span_batch(5)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 3.0
        })
        .await
    );
    assert_eq!(t.dropped("traces", reason::REJECTED), 2.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_the_queue_to_the_backend() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/drain");
    let x = Factory
        .create(
            t.ctx.clone(),
            &json!({"endpoint": format!("http://{addr}"), "sending_queue": {"num_consumers": 2}}),
        )
        .unwrap();
    for _ in 0..6 {
        x.consume(span_batch(2)).await.unwrap();
    }
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    x.shutdown(in_secs(10.0)).await.unwrap();
    assert_eq!(backend.count(), 6);
    assert_eq!(t.sent("traces"), 12.0);
}

#[tokio::test]
async fn shutdown_deadline_counts_what_the_backend_never_took() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/deadline");
    let mut config = fast(json!({"endpoint": format!("http://{addr}")}));
    config["retry_on_failure"]["max_elapsed_time"] = json!("0");
    let x = started(&t, config).await;
    for _ in 0..50 {
        backend.reply(Reply::status(503));
    }
    for _ in 0..3 {
        x.consume(span_batch(2)).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(10), || async { backend.count() >= 3 }).await);
    x.shutdown(in_secs(0.2)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 6.0);
    assert_eq!(t.sent("traces"), 0.0);
}

#[tokio::test]
async fn backend_down_is_retryable() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let t = TestCtx::new("otlphttp/down");
    let mut config = fast(json!({"endpoint": format!("http://{addr}")}));
    config["retry_on_failure"]["max_elapsed_time"] = json!("150ms");
    let x = started(&t, config).await;
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::RETRIES_EXHAUSTED) == 2.0
        })
        .await
    );
    let health = t.health();
    assert!(health.starts_with("recoverable error"), "{health}");
    assert!(health.contains("refused"), "{health}");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn signal_without_endpoint_is_rejected() {
    let t = TestCtx::new("otlphttp/partialcfg");
    let x = started(
        &t,
        json!({"traces_endpoint": "http://127.0.0.1:1/v1/traces"}),
    )
    .await;
    x.consume(log_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("logs", reason::REJECTED) == 1.0
        })
        .await
    );
    assert!(t.health().contains("logs_endpoint"), "{}", t.health());
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn https_with_ca_file() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let cert = TestCert::new("otlphttp");
    let certs = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = Arc::new(Backend::default());
    let b = Arc::clone(&backend);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, backend) = (acceptor.clone(), Arc::clone(&b));
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req| handle(Arc::clone(&backend), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let t = TestCtx::new("otlphttp/tls");
    let x = started(
        &t,
        json!({"endpoint": format!("https://localhost:{port}"), "tls": {"ca_file": cert.ca_file}}),
    )
    .await;
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    assert_eq!(backend.count(), 1);
    x.shutdown(in_secs(5.0)).await.unwrap();

    // The public roots do not vouch for a self-signed certificate: retried, never sent.
    let t = TestCtx::new("otlphttp/untrusted");
    let x = started(
        &t,
        fast(json!({"endpoint": format!("https://localhost:{port}")})),
    )
    .await;
    x.consume(span_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.send_attempts("failure") >= 2.0
        })
        .await
    );
    assert!(
        t.health().contains("certificate") || t.health().contains("Certificate"),
        "{}",
        t.health()
    );
    assert_eq!(backend.count(), 1);
    x.shutdown(in_secs(0.1)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 1.0);
}

#[tokio::test]
async fn messages_and_health_never_show_the_query_string() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlphttp/apikey");
    let mut config = fast(json!({"endpoint": format!("http://{addr}/otlp?api_key=80417365")}));
    config["retry_on_failure"]["max_elapsed_time"] = json!("150ms");
    let x = started(&t, config).await;
    for _ in 0..100 {
        backend.reply(Reply::status(503));
    }
    x.consume(span_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::RETRIES_EXHAUSTED) == 1.0
        })
        .await
    );
    // The key went to the backend, and nowhere else.
    {
        let requests = backend.requests.lock().unwrap();
        assert_eq!(requests[0].path, "/otlp/v1/traces");
        assert_eq!(requests[0].query.as_deref(), Some("api_key=80417365"));
    }
    let health = t.health();
    assert!(
        health.contains(&format!("POST http://{addr}/otlp/v1/traces: HTTP 503")),
        "{health}"
    );
    assert!(!health.contains("80417365"), "{health}");
    x.shutdown(in_secs(5.0)).await.unwrap();

    // Nor in config errors.
    let e = parse(json!({"endpoint": "ftp://h/?api_key=80417365"})).unwrap_err();
    assert!(!e.to_string().contains("80417365"), "{e}");
}
