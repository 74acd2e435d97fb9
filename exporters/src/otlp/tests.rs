//! Tests of the otlp exporter: config, status classification, and an in-process gRPC backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use pipeline_core::proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use pipeline_core::telemetry::reason;
use pipeline_core::testing::{check_exporter, log_batch, span_batch};
use pipeline_core::{DynExporterFactory, Host};
use prost::Message;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Code, Status};

use super::{Factory, OtlpConfig};
use crate::helper::grpc::classify;
use crate::helper::testutil::{
    OtlpBackend as Backend, OtlpSvc as Svc, TestCert, TestCtx, eventually, fast_retries as fast,
    in_secs, serve_otlp as serve, start_exporter,
};
use crate::helper::{Compression, SendError};
use pipeline_core::rpc::{ProtoAny, RETRY_INFO_TYPE_URL, RetryInfo, RpcStatus};

// ---- config -------------------------------------------------------------------------------

fn parse(v: Value) -> Result<OtlpConfig, pipeline_core::FieldError> {
    <OtlpConfig as pipeline_core::ComponentConfig>::parse(&v)
}

#[test]
fn config_defaults_and_errors() {
    let c = parse(json!({"endpoint": "collector:4317"})).unwrap();
    assert_eq!(c.compression, Compression::Gzip);
    assert_eq!(c.timeout.get(), Duration::from_secs(5));
    assert!(c.retry_on_failure.enabled && c.sending_queue.enabled);
    assert_eq!(
        c.endpoint_uri().unwrap().to_string(),
        "http://collector:4317/"
    );
    assert_eq!(
        parse(json!({"endpoint": "https://x:443"}))
            .unwrap()
            .endpoint_uri()
            .unwrap()
            .scheme_str(),
        Some("https")
    );

    let e = parse(json!({})).unwrap_err();
    assert!(e.message.contains("endpoint"), "{e}");
    let e = parse(json!({"endpoint": "x:1", "compresion": "gzip"})).unwrap_err();
    assert!(e.message.contains("did you mean \"compression\""), "{e}");
    let e = parse(json!({"endpoint": "x:1", "compression": "zstd"})).unwrap_err();
    assert_eq!(e.path, "compression");
    let e = parse(json!({"endpoint": "x:1", "tls": {"insecure": true}})).unwrap_err();
    assert_eq!(e.path, "tls.insecure");
    let e = parse(json!({"endpoint": "http://x:1/v1/traces"})).unwrap_err();
    assert_eq!(e.path, "endpoint");
    let e = parse(json!({"endpoint": "x:1", "retry_on_failure": {"multiplier": 0.1}})).unwrap_err();
    assert_eq!(e.path, "retry_on_failure.multiplier");
    let e = parse(json!({"endpoint": "x:1", "sending_queue": {"queue_size": 0}})).unwrap_err();
    assert_eq!(e.path, "sending_queue.queue_size");
    let e = parse(json!({"endpoint": "x:1", "headers": {"a b": "c"}})).unwrap_err();
    assert_eq!(e.path, "headers.a b");
    let e = parse(json!({"endpoint": "x:1", "timeout": "5"})).unwrap_err();
    assert_eq!(e.path, "timeout");
}

#[tokio::test]
async fn conformance() {
    // Nothing listens on port 1: start must not need the backend.
    check_exporter(&Factory, &json!({"endpoint": "127.0.0.1:1"})).await;
}

#[tokio::test]
async fn unreadable_ca_file_fails_the_start() {
    let t = TestCtx::new("otlp");
    let x = Factory
        .create(
            t.ctx.clone(),
            &json!({"endpoint": "https://127.0.0.1:1", "tls": {"ca_file": "/nonexistent/ca.pem"}}),
        )
        .unwrap();
    let e = x.start(&Host::new(std::env::temp_dir())).await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    x.shutdown(in_secs(1.0)).await.unwrap();
}

// ---- classification -----------------------------------------------------------------------

fn with_retry_info(code: Code, delay: Duration) -> Status {
    let details = RpcStatus {
        code: code as i32,
        message: "slow down".into(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.into(),
            value: RetryInfo {
                retry_delay: Some(delay.into()),
            }
            .encode_to_vec(),
        }],
    }
    .encode_to_vec();
    Status::with_details(code, "slow down", details.into())
}

#[test]
fn status_codes_map_like_the_collector() {
    for code in [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ] {
        assert!(
            matches!(
                classify(&Status::new(code, "x")),
                SendError::Retryable { .. }
            ),
            "{code:?}"
        );
    }
    for code in [
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::Unimplemented,
    ] {
        assert_eq!(
            classify(&Status::new(code, "x")),
            SendError::Permanent {
                reason: format!("gRPC status {code:?}: x"),
                health_permanent: true
            }
        );
    }
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::FailedPrecondition,
        Code::Internal,
        Code::Unknown,
        Code::ResourceExhausted,
    ] {
        assert!(
            matches!(
                classify(&Status::new(code, "x")),
                SendError::Permanent {
                    health_permanent: false,
                    ..
                }
            ),
            "{code:?}"
        );
    }
    // RESOURCE_EXHAUSTED with RetryInfo is throttling: retry after the given delay.
    assert_eq!(
        classify(&with_retry_info(
            Code::ResourceExhausted,
            Duration::from_secs(2)
        )),
        SendError::Retryable {
            reason: "gRPC status ResourceExhausted: slow down".into(),
            retry_after: Some(Duration::from_secs(2)),
        }
    );
    match classify(&with_retry_info(
        Code::Unavailable,
        Duration::from_millis(250),
    )) {
        SendError::Retryable { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_millis(250)));
        }
        other => panic!("{other:?}"),
    }
}

async fn started(t: &TestCtx, config: Value) -> Arc<dyn ConsumerComponent> {
    start_exporter(&Factory, t, config).await
}

#[tokio::test]
async fn delivers_field_for_field_with_gzip_and_metadata() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/backend");
    let x = started(
        &t,
        json!({"endpoint": format!("http://{addr}"), "headers": {"X-Api-Key": "secret"}}),
    )
    .await;
    let batch = span_batch(3);
    x.consume(batch.clone()).await.unwrap();
    x.consume(log_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 3.0
        })
        .await
    );
    assert!(eventually(Duration::from_secs(10), || async { t.sent("logs") == 2.0 }).await);
    {
        let traces = backend.traces.lock().unwrap();
        let (metadata, request) = &traces[0];
        assert_eq!(
            Payload::Traces(request.resource_spans.clone()),
            batch.into_parts().0
        );
        assert_eq!(metadata.get("x-api-key").unwrap(), "secret");
        assert_eq!(metadata.get("grpc-encoding").unwrap(), "gzip");
        assert!(metadata.get("grpc-timeout").is_some());
        assert!(
            metadata
                .get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("sightline/")
        );
    }
    assert_eq!(
        Payload::Logs(backend.logs.lock().unwrap()[0].resource_logs.clone()),
        log_batch(2).into_parts().0
    );
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn bare_host_port_is_plaintext_and_compression_can_be_off() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/plain");
    let x = started(
        &t,
        json!({"endpoint": addr.to_string(), "compression": "none"}),
    )
    .await;
    x.consume(span_batch(1)).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { backend.spans() == 1 }).await);
    assert!(
        backend.traces.lock().unwrap()[0]
            .0
            .get("grpc-encoding")
            .is_none()
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn unavailable_is_retried_and_invalid_argument_is_not() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/codes");
    let x = started(&t, fast(json!({"endpoint": format!("http://{addr}")}))).await;

    backend.reply(Err(Status::unavailable("restarting")));
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    assert_eq!(backend.calls(), 2);
    assert_eq!(backend.spans(), 2);

    backend.reply(Err(Status::invalid_argument("bad span")));
    x.consume(span_batch(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::REJECTED) == 3.0
        })
        .await
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(backend.calls(), 3, "INVALID_ARGUMENT must not be retried");
    assert_eq!(t.health(), "stopped");
}

#[tokio::test]
async fn retry_info_sets_the_delay() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/throttle");
    // Without the hint the retry would wait 10s.
    let x = started(
        &t,
        json!({"endpoint": format!("http://{addr}"),
               "retry_on_failure": {"initial_interval": "10s", "max_interval": "10s"}}),
    )
    .await;
    backend.reply(Err(with_retry_info(
        Code::ResourceExhausted,
        Duration::from_millis(20),
    )));
    let begun = Instant::now();
    x.consume(span_batch(1)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { t.sent("traces") == 1.0 }).await);
    assert!(begun.elapsed() < Duration::from_secs(5));
    assert_eq!(backend.calls(), 2);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn unauthenticated_makes_health_permanent_until_a_success() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/auth");
    let x = started(&t, json!({"endpoint": format!("http://{addr}")})).await;
    backend.reply(Err(Status::unauthenticated("bad token")));
    x.consume(span_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::REJECTED) == 1.0
        })
        .await
    );
    let health = t.health();
    assert!(health.starts_with("permanent error"), "{health}");
    assert!(health.contains("bad token"), "{health}");
    assert!(!t.health.readiness().checks.is_empty());
    x.consume(span_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 1.0
        })
        .await
    );
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn partial_success_counts_rejected_spans() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/partial");
    let x = started(&t, json!({"endpoint": format!("http://{addr}")})).await;
    backend.reply(Ok(ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "span too large".into(),
        }),
    }));
    x.consume(span_batch(4)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 3.0
        })
        .await
    );
    assert_eq!(t.dropped("traces", reason::REJECTED), 1.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn backend_down_is_retried_then_dropped() {
    // A port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let t = TestCtx::new("otlp/down");
    let mut config = fast(json!({"endpoint": format!("http://{addr}")}));
    config["retry_on_failure"]["max_elapsed_time"] = json!("200ms");
    let x = started(&t, config).await;
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", reason::RETRIES_EXHAUSTED) == 2.0
        })
        .await,
        "health: {}",
        t.health()
    );
    assert!(t.send_attempts("failure") >= 2.0);
    let health = t.health();
    assert!(health.starts_with("recoverable error"), "{health}");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_the_queue_to_the_backend() {
    let backend = Arc::new(Backend::default());
    let addr = serve(&backend).await;
    let t = TestCtx::new("otlp/drain");
    let x = Factory
        .create(
            t.ctx.clone(),
            &json!({"endpoint": format!("http://{addr}"), "sending_queue": {"num_consumers": 1}}),
        )
        .unwrap();
    // Queued before start: the workers only begin at start.
    for _ in 0..5 {
        x.consume(span_batch(2)).await.unwrap();
    }
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    x.shutdown(in_secs(10.0)).await.unwrap();
    assert_eq!(backend.spans(), 10);
    assert_eq!(t.sent("traces"), 10.0);
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 0.0);
}

#[tokio::test]
async fn https_with_ca_file() {
    let cert = TestCert::new("otlp");
    let backend = Arc::new(Backend::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
    tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(TraceServiceServer::new(Svc(Arc::clone(&backend))))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let t = TestCtx::new("otlp/tls");
    let x = started(
        &t,
        json!({"endpoint": format!("https://localhost:{port}"),
               "compression": "none",
               "tls": {"ca_file": cert.ca_file}}),
    )
    .await;
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    assert_eq!(backend.spans(), 2);
    x.shutdown(in_secs(5.0)).await.unwrap();

    // The public roots do not vouch for a self-signed certificate: retried, never sent.
    let t = TestCtx::new("otlp/untrusted");
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
    assert_eq!(backend.spans(), 2);
    x.shutdown(in_secs(0.1)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 1.0);
}
