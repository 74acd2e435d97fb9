//! Shared helpers for the end-to-end tests: the real `sightline` binary on free ports, a
//! downstream OTLP/gRPC server that records what it receives, an HTTP client, and
//! realistic telemetry. Every wait polls with a deadline.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

pub mod pki;
pub mod prometheus;
pub mod redis;

pub const DEADLINE: Duration = Duration::from_secs(20);

static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A port nobody listens on right now, for a `sightline` process to bind later. Taken from
/// 15000-31999, below Linux's ephemeral range (32768 and up), so an outgoing connection of
/// a test running alongside cannot take it in between (a port from binding port 0 can be,
/// and was); each port is handed out once per test process, from a per-process start.
pub fn free_port() -> u16 {
    const FIRST: usize = 15_000;
    const SPAN: usize = 17_000;
    let start = (std::process::id() as usize).wrapping_mul(97) % SPAN;
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port left in {FIRST}..{}", FIRST + SPAN);
        let port = u16::try_from(FIRST + (start + n) % SPAN).expect("port in range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sightline-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `sightline validate` on `yaml`, written to `broken.yaml` in a fresh temp dir tagged
/// `tag`; returns the exit code and what it printed on stderr.
pub fn validate_yaml(tag: &str, yaml: &str) -> (Option<i32>, String) {
    let path = temp_dir(tag).join("broken.yaml");
    std::fs::write(&path, yaml).expect("write the config");
    let o = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run sightline validate");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A config: OTLP in (gRPC and HTTP on `ports`), `processors` (a YAML block under
/// `processors:`) chained as `chain` in all three pipelines, the `file` exporter to `out`.
pub fn file_export_config(
    ports: Ports,
    processors: &str,
    chain: &str,
    out: &std::path::Path,
) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
{processors}
exporters:
  file: {{ path: "{path}" }}
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    traces:  {{ receivers: [otlp], processors: [{chain}], exporters: [file] }}
    metrics: {{ receivers: [otlp], processors: [{chain}], exporters: [file] }}
    logs:    {{ receivers: [otlp], processors: [{chain}], exporters: [file] }}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
        path = out.display()
    )
}

/// The distribution under test: `sightline`, or the example plugin distribution for the
/// tests of `examples/plugin` (which include this module by path).
pub fn bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_sightline-attributes")
        .or(option_env!("CARGO_BIN_EXE_sightline"))
        .expect("cargo test builds the binary")
}

/// Ports of one Sightline instance.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
    pub health: u16,
    pub metrics: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            grpc: free_port(),
            http: free_port(),
            health: free_port(),
            metrics: free_port(),
        }
    }
}

/// A config: OTLP in on `ports`, `processors`, OTLP/gRPC out to `downstream`, all signals.
pub fn pipeline_config(
    ports: Ports,
    downstream: &str,
    extra_processors: &str,
    exporter_extra: &str,
) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}", max_request_body_size: 1048576 }}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp:
    endpoint: "{downstream}"
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s }}
    {exporter_extra}
service:
  telemetry:
    logs: {{ level: info }}
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  shutdown_timeout: 10s
  pipelines:
    traces:  {{ receivers: [otlp], processors: [{extra_processors}batch], exporters: [otlp] }}
    metrics: {{ receivers: [otlp], processors: [{extra_processors}batch], exporters: [otlp] }}
    logs:    {{ receivers: [otlp], processors: [{extra_processors}batch], exporters: [otlp] }}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
    )
}

/// A config: the `otlp` receiver on `ports` with extra keys per protocol (`grpc_extra`,
/// `http_extra`, written inside the protocol's flow map, e.g. `tls: {...}`) and for the
/// receiver (`receiver_extra`, a YAML line at the receiver's indentation), traces to an
/// OTLP/gRPC `downstream`; debug logs.
pub fn receiver_config(
    ports: Ports,
    downstream: &str,
    grpc_extra: &str,
    http_extra: &str,
    receiver_extra: &str,
) -> String {
    let sep = |extra: &str| {
        if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        }
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}"{grpc_extra} }}
      http: {{ endpoint: "127.0.0.1:{http}"{http_extra} }}
    {receiver_extra}
exporters:
  otlp:
    endpoint: "{downstream}"
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s }}
service:
  telemetry:
    logs: {{ level: debug }}
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp] }}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
        grpc_extra = sep(grpc_extra),
        http_extra = sep(http_extra),
    )
}

/// The value of `sightline_receiver_requests_rejected_total` for `protocol` and `reason`
/// (0 when absent).
pub async fn rejected(sl: &Sightline, protocol: &str, reason: &str) -> f64 {
    let page = sl.metrics().await;
    sample(
        &page,
        "sightline_receiver_requests_rejected_total",
        &[
            ("component_id", "otlp"),
            ("protocol", protocol),
            ("reason", reason),
        ],
    )
    .unwrap_or(0.0)
}

/// Polls `rejected` until it reaches `at_least`; false at the deadline.
pub async fn wait_rejected(sl: &Sightline, protocol: &str, reason: &str, at_least: f64) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if rejected(sl, protocol, reason).await >= at_least {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A running `sightline` process; killed on drop.
pub struct Sightline {
    pub child: Child,
    pub ports: Ports,
    pub dir: PathBuf,
}

impl Sightline {
    /// Starts the binary on `config` and waits until `/health/ready` answers 200.
    pub async fn start(config: &str, ports: Ports) -> Sightline {
        Sightline::start_with_env(config, ports, &[]).await
    }

    /// Like [`Sightline::start`], with extra environment variables for the process.
    pub async fn start_with_env(config: &str, ports: Ports, env: &[(&str, &str)]) -> Sightline {
        Sightline::start_with(config, ports, env, &[]).await
    }

    /// Like [`Sightline::start`], with extra environment variables and arguments.
    pub async fn start_with(
        config: &str,
        ports: Ports,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Sightline {
        let dir = temp_dir("run");
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).expect("write config");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("log file");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&path)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sightline");
        let mut s = Sightline { child, ports, dir };
        let url = format!("http://127.0.0.1:{}/health/ready", ports.health);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("sightline exited early with {status}: {}", s.logs());
            }
            if let Ok((200, _)) = http_get(&url).await {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sightline not ready in time: {}",
                s.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The config file it runs (rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// Sends a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.grpc)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.http)
    }

    /// Sends SIGTERM and waits for the exit status (without blocking the runtime, which may
    /// be serving the downstream the process is draining into).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sightline did not exit after SIGTERM: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's peak resident memory (`VmHWM`) in bytes.
    pub fn peak_rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// kill -9: no shutdown, no flush.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The self-metrics page.
    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.ports.metrics))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

impl Drop for Sightline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET returning (status, body).
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let res = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A POST with headers, returning (status, headers, body).
pub async fn http_post(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, Bytes) {
    http_request("POST", url, headers, body).await
}

pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let res = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .expect("timeout")
        .expect("http request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// What the downstream OTLP server received.
#[derive(Default)]
pub struct Received {
    /// Spans per second the downstream takes at most (0: as fast as they come): a slow
    /// backend, which defines the sustainable rate.
    pub spans_per_second: std::sync::atomic::AtomicU64,
    /// Held while a paced request waits its turn.
    pub pacer: tokio::sync::Mutex<()>,
    pub traces: Mutex<Vec<ExportTraceServiceRequest>>,
    pub metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    pub logs: Mutex<Vec<ExportLogsServiceRequest>>,
    pub headers: Mutex<Vec<tonic::metadata::MetadataMap>>,
}

impl Received {
    pub fn resource_spans(&self) -> Vec<ResourceSpans> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.clone())
            .collect()
    }
    pub fn resource_metrics(&self) -> Vec<ResourceMetrics> {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_metrics.clone())
            .collect()
    }
    pub fn resource_logs(&self) -> Vec<ResourceLogs> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_logs.clone())
            .collect()
    }
    pub fn span_count(&self) -> usize {
        pipeline_core::model::span_count(&self.resource_spans())
    }
    pub fn span_ids(&self) -> std::collections::HashSet<Vec<u8>> {
        self.resource_spans()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.span_id.clone())
            .collect()
    }
}

#[derive(Clone)]
struct Recorder(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let rate = self
            .0
            .spans_per_second
            .load(std::sync::atomic::Ordering::Relaxed);
        if rate > 0 {
            let spans: usize = r
                .get_ref()
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum();
            let _turn = self.0.pacer.lock().await;
            tokio::time::sleep(Duration::from_secs_f64(spans as f64 / rate as f64)).await;
        }
        self.0.headers.lock().unwrap().push(r.metadata().clone());
        self.0.traces.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.metrics.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Recorder {
    async fn export(
        &self,
        r: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.logs.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A downstream OTLP/gRPC server on a free port that records every request.
pub struct Downstream {
    pub addr: std::net::SocketAddr,
    pub received: Arc<Received>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Downstream {
    pub async fn start() -> Downstream {
        Downstream::start_on("127.0.0.1:0").await
    }

    /// A downstream listening on `addr` (another loopback address, a fixed port: a "down"
    /// backend brought up where Sightline sends).
    pub async fn start_on(addr: &str) -> Downstream {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind downstream");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Received::default());
        let r = Recorder(received.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(r.clone())
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                        .max_decoding_message_size(64 << 20),
                )
                .add_service(
                    MetricsServiceServer::new(r.clone())
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                        .max_decoding_message_size(64 << 20),
                )
                .add_service(
                    LogsServiceServer::new(r)
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                        .max_decoding_message_size(64 << 20),
                )
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Downstream {
            addr,
            received,
            stop: Some(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `pred` holds or the deadline passes; returns whether it held.
    pub async fn wait_until(&self, pred: impl Fn(&Received) -> bool) -> bool {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if pred(&self.received) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pred(&self.received)
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

use pipeline_core::testing::attribute as kv;

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.4.2")),
            kv("host.name", s("node-7")),
            kv("k8s.pod.uid", s("0b9d5f1e-2a77-4c3e-9a51-5d1b8e0c4f21")),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "io.opentelemetry.flask".into(),
        version: "0.48b0".into(),
        ..Default::default()
    }
}

/// A realistic traces request: `n` SERVER spans with HTTP attributes, IDs derived from `seed`.
pub fn traces_request(seed: u64, n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n as u64)
        .map(|i| {
            let id = seed * 1_000_000 + i + 1;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.wrapping_add(1).to_be_bytes());
            trace_id[8..].copy_from_slice(&id.to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: if i % 3 == 0 {
                    vec![]
                } else {
                    (id - 1).to_be_bytes().to_vec()
                },
                name: "GET /api/users/{id}".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: 1_705_314_600_000_000_000 + i * 1000,
                end_time_unix_nano: 1_705_314_600_045_000_000 + i * 1000,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/api/users/{id}")),
                    kv("url.path", s(&format!("/api/users/{i}"))),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(if i % 10 == 0 { 500 } else { 200 }),
                    ),
                    kv("request_id", s(&format!("req-{seed}-{i}"))),
                    kv("client.address", s("10.1.2.3")),
                    kv("duration_ok", any_value::Value::BoolValue(i % 2 == 0)),
                    kv("ratio", any_value::Value::DoubleValue(0.25)),
                ],
                events: vec![span::Event {
                    time_unix_nano: 1_705_314_600_010_000_000,
                    name: "cache.miss".into(),
                    attributes: vec![kv("cache.key", s("user:42"))],
                    ..Default::default()
                }],
                status: Some(Status {
                    code: if i % 10 == 0 { 2 } else { 1 },
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource("api-service")),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A metrics request with a sum, a gauge and a histogram.
pub fn metrics_request(seed: u64) -> ExportMetricsServiceRequest {
    let attrs = vec![
        kv("method", s("GET")),
        kv("endpoint", s("/api/users")),
        kv("status_code", s("200")),
    ];
    let t0 = 1_705_314_600_000_000_000u64;
    let metrics = vec![
        Metric {
            name: "http_requests_total".into(),
            description: "Total HTTP requests".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    attributes: attrs.clone(),
                    start_time_unix_nano: t0,
                    time_unix_nano: t0 + 15_000_000_000,
                    value: Some(number_data_point::Value::AsInt(1000 + seed as i64)),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "active_requests".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: attrs.clone(),
                    time_unix_nano: t0 + 15_000_000_000,
                    value: Some(number_data_point::Value::AsDouble(7.5)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
        Metric {
            name: "http_request_duration_seconds".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attrs,
                    start_time_unix_nano: t0,
                    time_unix_nano: t0 + 15_000_000_000,
                    count: 10,
                    sum: Some(1.25),
                    bucket_counts: vec![2, 5, 3, 0],
                    explicit_bounds: vec![0.05, 0.1, 0.5],
                    min: Some(0.01),
                    max: Some(0.4),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource("api-service")),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A logs request in the seed guide's request-log shape.
pub fn logs_request(seed: u64, n: usize) -> ExportLogsServiceRequest {
    let log_records = (0..n as u64)
        .map(|i| LogRecord {
            time_unix_nano: 1_705_314_600_123_456_000 + i,
            observed_time_unix_nano: 1_705_314_600_200_000_000 + i,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(s("Request completed")),
            }),
            attributes: vec![
                kv("request_id", s(&format!("req-{seed}-{i}"))),
                kv("status_code", any_value::Value::IntValue(200)),
                kv("duration_seconds", any_value::Value::DoubleValue(0.045)),
                kv("method", s("GET")),
                kv("path", s("/api/users/42")),
            ],
            trace_id: {
                let mut t = vec![7u8; 16];
                t[15] = i as u8;
                t
            },
            span_id: vec![3u8; 8],
            flags: 1,
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("api-service")),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The samples of `name` on a Prometheus text page, as (labels, value).
pub fn samples(page: &str, name: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    page.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (labels, value.trim().parse::<f64>().unwrap())
        })
        .collect()
}

/// The value of the sample of `name` whose labels are exactly `labels`.
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: std::collections::BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples(page, name)
        .into_iter()
        .find(|(l, _)| *l == want)
        .map(|(_, v)| v)
}

/// Sends a traces request over OTLP/gRPC to `url` and expects success.
pub async fn export_traces(url: &str, request: ExportTraceServiceRequest) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let mut client = TraceServiceClient::connect(url.to_string())
        .await
        .expect("connect");
    client.export(request).await.expect("export traces");
}

/// Sends a logs request over OTLP/gRPC to `url` and expects success.
pub async fn export_logs(url: &str, request: ExportLogsServiceRequest) {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let mut client = LogsServiceClient::connect(url.to_string())
        .await
        .expect("connect");
    client.export(request).await.expect("export logs");
}

/// Renders `url` and a blank page in headless Chromium and checks the page's PNG carries
/// far more than the blank one's; returns the page's PNG. Skipped (`None`) only when Chromium
/// is missing outside CI.
pub async fn screenshot_is_not_blank(url: &str) -> Option<PathBuf> {
    if Command::new("chromium").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI (.ci/run installs it)"
        );
        eprintln!("chromium not installed: skipping the screenshot");
        return None;
    }
    let dir = temp_dir("chromium");
    let profile = dir.join("profile");
    let shoot = move |target: &str, png: &Path| {
        let status = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=900,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run chromium");
        assert!(status.success(), "chromium failed on {target}");
        std::fs::read(png).expect("screenshot written")
    };
    let url = url.to_string();
    let page_png = dir.join("page.png");
    let png = page_png.clone();
    let (page, blank) = tokio::task::spawn_blocking(move || {
        let page = shoot(&url, &png);
        let blank = shoot(
            "data:text/html,<html><body></body></html>",
            &dir.join("blank.png"),
        );
        (page, blank)
    })
    .await
    .unwrap();
    assert!(page.starts_with(b"\x89PNG\r\n\x1a\n") && blank.starts_with(b"\x89PNG"));
    // Same size, same compression: text, tables and two charts compress far worse than
    // a white page.
    assert!(
        page.len() > blank.len() * 3,
        "page {} bytes vs blank {} bytes",
        page.len(),
        blank.len()
    );
    Some(page_png)
}
