//! Test helpers shared by the exporters' tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use pipeline_core::config::HumanDuration;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::health::HealthRegistry;
use pipeline_core::telemetry::Telemetry;
use pipeline_core::{ComponentId, ComponentKind, CreateContext, DynExporterFactory, Host};
use tokio::time::Instant;

use super::config::{ExporterSettings, QueueConfig, RetryConfig};

/// A context whose telemetry and health the test can read.
pub(crate) struct TestCtx {
    pub(crate) ctx: CreateContext,
    pub(crate) telemetry: Telemetry,
    pub(crate) health: HealthRegistry,
}

impl TestCtx {
    pub(crate) fn new(id: &str) -> TestCtx {
        let telemetry = Telemetry::new();
        let health = HealthRegistry::default();
        let mut ctx = CreateContext::for_tests(ComponentKind::Exporter, id);
        let cid = ComponentId::parse(id).unwrap();
        ctx.telemetry = telemetry.component(ComponentKind::Exporter, &cid);
        ctx.health = health.reporter(&cid);
        TestCtx {
            ctx,
            telemetry,
            health,
        }
    }

    /// The value of a metric series whose labels include all of `labels`; 0 if absent.
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        pipeline_core::testing::metric_sum(&self.telemetry.render(), name, labels)
    }

    pub(crate) fn sent(&self, signal: &str) -> f64 {
        self.metric(
            "sightline_component_items_sent_total",
            &[("signal", signal)],
        )
    }

    /// Waits up to 10s until `items` of `signal` count as sent; whether they did.
    pub(crate) async fn wait_sent(&self, signal: &str, items: f64) -> bool {
        eventually(Duration::from_secs(10), || async {
            self.sent(signal) == items
        })
        .await
    }

    pub(crate) fn dropped(&self, signal: &str, reason: &str) -> f64 {
        self.metric(
            "sightline_component_items_dropped_total",
            &[("signal", signal), ("reason", reason)],
        )
    }

    pub(crate) fn send_attempts(&self, outcome: &str) -> f64 {
        self.metric(
            "sightline_exporter_send_duration_seconds_count",
            &[("outcome", outcome)],
        )
    }

    /// The health line of the component.
    pub(crate) fn health(&self) -> String {
        self.health
            .readiness()
            .checks
            .values()
            .next()
            .cloned()
            .unwrap_or_default()
    }
}

/// Retries that fit in a test: 20ms, 30ms, ... up to 100ms, for at most `max_elapsed`.
pub(crate) fn fast_retry(max_elapsed: Duration) -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial_interval: HumanDuration::from_millis(20),
        randomization_factor: 0.0,
        multiplier: 1.5,
        max_interval: HumanDuration::from_millis(100),
        max_elapsed_time: HumanDuration(max_elapsed),
    }
}

/// Settings with fast retries and a small queue.
pub(crate) fn fast_settings() -> ExporterSettings {
    ExporterSettings {
        timeout: HumanDuration::from_secs(5),
        retry_on_failure: fast_retry(Duration::from_secs(10)),
        sending_queue: QueueConfig {
            enabled: true,
            num_consumers: 2,
            queue_size: 100,
            sizer: Default::default(),
            block_on_overflow: true,
            ..QueueConfig::default()
        },
    }
}

/// Builds an exporter of `factory` on `t`'s context and starts it.
pub(crate) async fn start_exporter(
    factory: &dyn DynExporterFactory,
    t: &TestCtx,
    config: serde_json::Value,
) -> std::sync::Arc<dyn ConsumerComponent> {
    let x = factory.create(t.ctx.clone(), &config).unwrap();
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    x
}

/// `config` with retries that fit in a test (10ms to 50ms, for at most 10s).
pub(crate) fn fast_retries(mut config: serde_json::Value) -> serde_json::Value {
    config["retry_on_failure"] = serde_json::json!({
        "initial_interval": "10ms", "max_interval": "50ms", "max_elapsed_time": "10s"
    });
    config
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A deadline `secs` from now.
pub(crate) fn in_secs(secs: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(secs)
}

/// A self-signed certificate for `localhost`, its key, and the certificate written to a
/// file under `dir` (to use as `tls.ca_file`).
pub(crate) struct TestCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) ca_file: std::path::PathBuf,
}

impl TestCert {
    pub(crate) fn new(name: &str) -> TestCert {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = certified.cert.pem();
        let key_pem = certified.signing_key.serialize_pem();
        let dir = std::env::temp_dir().join(format!(
            "sightline-exporters-tls-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &cert_pem).unwrap();
        TestCert {
            cert_pem,
            key_pem,
            ca_file,
        }
    }
}

/// What became of the acknowledgement tokens of the batches made by [`Acks::track`]: one
/// entry per token, `true` for delivered, in the order they were resolved.
#[derive(Clone, Default)]
pub(crate) struct Acks(std::sync::Arc<std::sync::Mutex<Vec<bool>>>);

impl Acks {
    /// `batch` with one more token, reporting here.
    pub(crate) fn track(&self, mut batch: pipeline_core::Batch) -> pipeline_core::Batch {
        let outcomes = self.0.clone();
        batch.ctx.acks.push(pipeline_core::AckToken::new(move |ok| {
            outcomes.lock().unwrap().push(ok);
        }));
        batch
    }

    /// The outcomes so far.
    pub(crate) fn outcomes(&self) -> Vec<bool> {
        self.0.lock().unwrap().clone()
    }
}

/// OTLP metrics for the Prometheus exporters' tests.
pub(crate) mod metrics {
    use pipeline_core::proto::tonic::common::v1::KeyValue;
    use pipeline_core::proto::tonic::metrics::v1::{
        AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
        metric, number_data_point, summary_data_point::ValueAtQuantile,
    };
    use pipeline_core::proto::tonic::resource::v1::Resource;
    use pipeline_core::{Batch, Payload};

    pub(crate) use pipeline_core::attributes::string as kv;

    /// A resource of service `service` holding `metrics`.
    pub(crate) fn resource(service: &str, metrics: Vec<Metric>) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "node-1")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    pub(crate) fn batch(resources: Vec<ResourceMetrics>) -> Batch {
        Batch::new(Payload::Metrics(resources))
    }

    fn number(attrs: Vec<KeyValue>, value: number_data_point::Value, t_ms: u64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            time_unix_nano: t_ms * 1_000_000,
            value: Some(value),
            ..Default::default()
        }
    }

    /// `http.requests` (monotonic cumulative sum, `{request}`) with one point per
    /// `(method, value)`.
    pub(crate) fn counter(name: &str, points: &[(&str, i64)], t_ms: u64) -> Metric {
        Metric {
            name: name.into(),
            description: "Total HTTP requests".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points
                    .iter()
                    .map(|(m, v)| {
                        let mut p = number(
                            vec![kv("method", *m)],
                            number_data_point::Value::AsInt(*v),
                            t_ms,
                        );
                        p.exemplars = vec![Exemplar {
                            trace_id: vec![0x11; 16],
                            span_id: vec![0x22; 8],
                            value: Some(exemplar::Value::AsInt(1)),
                            time_unix_nano: t_ms * 1_000_000,
                            ..Default::default()
                        }];
                        p
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    /// A gauge in bytes.
    pub(crate) fn gauge(name: &str, value: f64, t_ms: u64) -> Metric {
        Metric {
            name: name.into(),
            description: "Memory in use".into(),
            unit: "By".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![number(
                    vec![kv("state", "used")],
                    number_data_point::Value::AsDouble(value),
                    t_ms,
                )],
            })),
            ..Default::default()
        }
    }

    /// A histogram in seconds with the seed's buckets: observations counted per bucket.
    pub(crate) fn histogram(name: &str, counts: Vec<u64>, sum: f64, t_ms: u64) -> Metric {
        Metric {
            name: name.into(),
            description: "HTTP request duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("endpoint", "/api/users/{id}")],
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    time_unix_nano: t_ms * 1_000_000,
                    count: counts.iter().sum(),
                    sum: Some(sum),
                    bucket_counts: counts,
                    explicit_bounds: vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0],
                    exemplars: vec![Exemplar {
                        trace_id: vec![0xaa; 16],
                        span_id: vec![0xbb; 8],
                        value: Some(exemplar::Value::AsDouble(0.07)),
                        time_unix_nano: t_ms * 1_000_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }
    }

    /// A summary in seconds: p50 and p99.
    pub(crate) fn summary(name: &str, p50: f64, p99: f64, t_ms: u64) -> Metric {
        Metric {
            name: name.into(),
            description: "RPC latency".into(),
            unit: "s".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    time_unix_nano: t_ms * 1_000_000,
                    count: 40,
                    sum: 12.5,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: p50,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: p99,
                        },
                    ],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        }
    }

    /// One of each kind for `service`, at `t_ms`.
    pub(crate) fn all_kinds(service: &str, t_ms: u64) -> ResourceMetrics {
        resource(
            service,
            vec![
                counter("http.requests", &[("GET", 42), ("POST", 7)], t_ms),
                gauge("system.memory.usage", 1024.0, t_ms),
                histogram(
                    "http.request.duration",
                    vec![1, 2, 3, 0, 0, 0, 0, 0, 1],
                    11.5,
                    t_ms,
                ),
                summary("rpc.latency", 0.25, 0.9, t_ms),
            ],
        )
    }
}

// ---- an in-process OTLP/gRPC backend (traces and logs) -----------------------------------

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use pipeline_core::proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use pipeline_core::proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use pipeline_core::proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What an in-process OTLP backend received, and how it answers.
#[derive(Default)]
pub(crate) struct OtlpBackend {
    pub(crate) traces: Mutex<Vec<(MetadataMap, ExportTraceServiceRequest)>>,
    pub(crate) logs: Mutex<Vec<ExportLogsServiceRequest>>,
    replies: Mutex<VecDeque<Result<ExportTraceServiceResponse, Status>>>,
    calls: AtomicUsize,
    /// While set, every call is answered `UNAVAILABLE` (a backend that is down).
    pub(crate) down: AtomicBool,
}

impl OtlpBackend {
    /// Queues the answer to the next traces call.
    pub(crate) fn reply(&self, r: Result<ExportTraceServiceResponse, Status>) {
        self.replies.lock().unwrap().push_back(r);
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn spans(&self) -> usize {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| Payload::Traces(r.resource_spans.clone()).item_count())
            .sum()
    }

    pub(crate) fn log_records(&self) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|r| Payload::Logs(r.resource_logs.clone()).item_count())
            .sum()
    }

    fn check_up(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("backend down"));
        }
        Ok(())
    }
}

/// The OTLP services answering for an [`OtlpBackend`].
#[derive(Clone)]
pub(crate) struct OtlpSvc(pub(crate) Arc<OtlpBackend>);

#[async_trait::async_trait]
impl TraceService for OtlpSvc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.check_up()?;
        let reply = self
            .0
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(ExportTraceServiceResponse::default()));
        if reply.is_ok() {
            let metadata = request.metadata().clone();
            self.0
                .traces
                .lock()
                .unwrap()
                .push((metadata, request.into_inner()));
        }
        reply.map(Response::new)
    }
}

#[async_trait::async_trait]
impl LogsService for OtlpSvc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.0.check_up()?;
        self.0.logs.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Serves `backend` on 127.0.0.1:0; the listener is bound before this returns, so
/// connections queue until the server task runs.
pub(crate) async fn serve_otlp(backend: &Arc<OtlpBackend>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = OtlpSvc(Arc::clone(backend));
    tokio::spawn(
        Server::builder()
            .add_service(
                TraceServiceServer::new(svc.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .add_service(LogsServiceServer::new(svc).accept_compressed(CompressionEncoding::Gzip))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}
