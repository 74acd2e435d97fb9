//! What every scenario shares: a counting OTLP sink, the baseline forwarder process, starting
//! `sightline` on a config, driving OTLP/gRPC load, and reading a process's CPU time and peak
//! RSS from /proc.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
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
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use pipeline_core::model::{data_point_count, log_record_count, span_count};
use tonic::transport::Channel;

/// Counts spans and metric data points; decodes every request as a real backend would.
#[derive(Clone, Default)]
pub(crate) struct Sink {
    /// Spans received so far.
    pub(crate) spans: Arc<AtomicU64>,
    /// Metric data points received so far.
    pub(crate) points: Arc<AtomicU64>,
    /// Log records received so far.
    pub(crate) logs: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let n = log_record_count(&r.get_ref().resource_logs);
        self.logs.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let n = data_point_count(&r.get_ref().resource_metrics);
        self.points.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n = span_count(&r.get_ref().resource_spans);
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves `sink` on a free port.
pub(crate) async fn serve_sink(sink: Sink) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let metrics = MetricsServiceServer::new(sink.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(256 << 20);
        let logs = LogsServiceServer::new(sink.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(256 << 20);
        let svc = TraceServiceServer::new(sink)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(256 << 20);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(metrics)
            .add_service(logs)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(addr)
}

/// The baseline: decode, forward unchanged, answer.
#[derive(Clone)]
struct Forwarder {
    client: TraceServiceClient<Channel>,
}

#[tonic::async_trait]
impl TraceService for Forwarder {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut client = self.client.clone();
        client.export(r.into_inner()).await
    }
}

/// Runs the baseline forwarder (the `baseline` subcommand).
pub(crate) async fn baseline(listen: SocketAddr, forward: String) -> Result<()> {
    let channel = Channel::from_shared(forward)?.connect_lazy();
    let svc = TraceServiceServer::new(Forwarder {
        client: TraceServiceClient::new(channel),
    })
    .max_decoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve(listen)
        .await?;
    Ok(())
}

/// Current RSS (VmRSS) of a process in bytes.
pub(crate) fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// The self-metrics page of a `sightline` whose metrics endpoint is `127.0.0.1:{port}`
/// (plain HTTP/1.0, no client library needed).
pub(crate) async fn scrape(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    Ok(text)
}

/// The value of the sample whose name and labels are `series` (as written in the text
/// format, e.g. `x_total{component_id="a"}`), if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// CPU time of a process: clock ticks of user + system time (whole process, also threads
/// that ended) and, per live thread, nanoseconds on a CPU from `schedstat`.
pub(crate) struct CpuTime {
    ticks: f64,
    threads: Vec<(u32, u64)>,
}

impl CpuTime {
    /// Seconds of CPU from `earlier` to `self`: nanosecond-exact from the threads' schedstat
    /// when every thread of `earlier` is still there (at 10,000 spans/s a run uses about half
    /// a CPU-second, where a 10 ms tick is 2%), else from the ticks.
    pub(crate) fn since(&self, earlier: &CpuTime) -> f64 {
        let mut ns = 0u64;
        for (tid, t0) in &earlier.threads {
            match self.threads.iter().find(|(t, _)| t == tid) {
                Some((_, t1)) => ns += t1.saturating_sub(*t0),
                None => return (self.ticks - earlier.ticks) / 100.0,
            }
        }
        for (tid, t1) in &self.threads {
            if !earlier.threads.iter().any(|(t, _)| t == tid) {
                ns += t1;
            }
        }
        ns as f64 / 1e9
    }

    /// Seconds of CPU since the process started (tick resolution).
    pub(crate) fn total(&self) -> f64 {
        self.ticks / 100.0
    }
}

fn thread_times(pid: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid: u32 = e.file_name().to_str()?.parse().ok()?;
        let text = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
        Some((tid, text.split_whitespace().next()?.parse().ok()?))
    })
    .collect()
}

/// CPU time and peak RSS in bytes of a process.
pub(crate) fn usage(pid: u32) -> Result<(CpuTime, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let threads = thread_times(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((CpuTime { ticks, threads }, hwm_kb * 1024))
}

/// What one measured run gave.
pub(crate) struct Outcome {
    /// Items (spans, or log records for a logs load) the clients got success for.
    pub(crate) acked_spans: u64,
    /// Items the sink counted.
    pub(crate) delivered_spans: u64,
    /// Wall time of the load.
    pub(crate) wall: Duration,
    /// CPU seconds of the process under test.
    pub(crate) cpu: f64,
    /// Its peak RSS in bytes.
    pub(crate) peak_rss: u64,
}

/// A request the load generator can send over OTLP/gRPC: traces or logs.
pub(crate) trait Load: Clone + Send + Sync + 'static {
    /// Items in the request (spans, log records).
    fn items(&self) -> usize;
    /// The sink's count of delivered items of this kind.
    fn delivered(sink: &Sink) -> &AtomicU64;
    /// Sends the request; whether it was accepted.
    fn send(channel: &Channel, request: Self) -> impl Future<Output = bool> + Send;
}

impl Load for ExportTraceServiceRequest {
    fn items(&self) -> usize {
        span_count(&self.resource_spans)
    }

    fn delivered(sink: &Sink) -> &AtomicU64 {
        &sink.spans
    }

    async fn send(channel: &Channel, request: Self) -> bool {
        let mut client = TraceServiceClient::new(channel.clone());
        client.export(request).await.is_ok()
    }
}

impl Load for ExportLogsServiceRequest {
    fn items(&self) -> usize {
        log_record_count(&self.resource_logs)
    }

    fn delivered(sink: &Sink) -> &AtomicU64 {
        &sink.logs
    }

    async fn send(channel: &Channel, request: Self) -> bool {
        let mut client = LogsServiceClient::new(channel.clone());
        client.export(request).await.is_ok()
    }
}

/// Sends `requests` round-robin for `duration` at `rate` items/s (0 = as fast as possible)
/// from `concurrency` clients to `target`, then waits (bounded) for the sink to catch up.
pub(crate) async fn drive<R: Load>(
    target: &Target,
    sink: &Sink,
    requests: Arc<Vec<R>>,
    duration: Duration,
    rate: u64,
    concurrency: usize,
) -> Result<Outcome> {
    let pid = target.child.id();
    let spans_per_request: usize = requests[0].items();
    let channel = Channel::from_shared(target.url.clone())?.connect().await?;
    let acked = Arc::new(AtomicU64::new(0));
    let before_sink = R::delivered(sink).load(Ordering::Relaxed);
    let (cpu0, _) = usage(pid)?;
    let start = Instant::now();
    let per_task_interval = (rate > 0).then(|| {
        Duration::from_secs_f64(spans_per_request as f64 * concurrency as f64 / rate as f64)
    });
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let channel = channel.clone();
        let acked = acked.clone();
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            let mut next = Instant::now();
            while start.elapsed() < duration {
                if let Some(interval) = per_task_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                if R::send(&channel, requests[i % requests.len()].clone()).await {
                    acked.fetch_add(spans_per_request as u64, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let wall = start.elapsed();
    let acked = acked.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivered = || R::delivered(sink).load(Ordering::Relaxed) - before_sink;
    while delivered() < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu1, peak_rss) = usage(pid)?;
    Ok(Outcome {
        acked_spans: acked,
        delivered_spans: delivered(),
        wall,
        cpu: cpu1.since(&cpu0),
        peak_rss,
    })
}

/// A process under test; killed on drop.
pub(crate) struct Target {
    /// The row label.
    pub(crate) name: String,
    /// The process.
    pub(crate) child: Child,
    /// Its OTLP/gRPC URL.
    pub(crate) url: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `port`.
pub(crate) async fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("nothing listens on port {port}")
}

/// Starts `sightline` on `config`, where `{GRPC}` (the OTLP/gRPC listen port), `{SINK}` (the
/// sink's address), `{HEALTH}` and `{METRICS}` are replaced, and waits for the gRPC port
/// (receivers start last, so the graph is up).
pub(crate) async fn start_sightline(
    path: &str,
    name: &str,
    config: &str,
    sink: SocketAddr,
) -> Result<Target> {
    let (grpc, health, metrics) = (free_port()?, free_port()?, free_port()?);
    let config = config
        .replace("{GRPC}", &grpc.to_string())
        .replace("{SINK}", &sink.to_string())
        .replace("{HEALTH}", &health.to_string())
        .replace("{METRICS}", &metrics.to_string());
    let dir = std::env::temp_dir().join(format!("sightline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!(
        "{}.yaml",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    std::fs::write(&file, config)?;
    let child = Command::new(path)
        .arg("--config")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    wait_for_port(grpc).await?;
    Ok(Target {
        name: name.to_string(),
        child,
        url: format!("http://127.0.0.1:{grpc}"),
    })
}

/// Starts the baseline forwarder process, forwarding to `sink`.
pub(crate) async fn start_baseline(sink: SocketAddr) -> Result<Target> {
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args([
            "baseline",
            &format!("127.0.0.1:{port}"),
            &format!("http://{sink}"),
        ])
        .stdin(Stdio::null())
        .spawn()?;
    wait_for_port(port).await?;
    Ok(Target {
        name: "baseline (tonic decode + forward)".into(),
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

/// The table header every OTLP-load scenario prints.
pub(crate) fn print_header() {
    print_header_for("spans");
}

/// The table header, with the items named (`spans`, `log records`).
pub(crate) fn print_header_for(items: &str) {
    println!(
        "| process | load | {items}/s delivered | CPU s | {items} per CPU-second | peak RSS MiB | lost |"
    );
    println!("|---|---|---|---|---|---|---|");
}

/// One table row.
pub(crate) fn print_row(target: &Target, load: &str, o: &Outcome) {
    print_named_row(&target.name, load, o);
}

/// One table row for a process that is gone (a scenario that repeats runs and reports
/// the median one).
pub(crate) fn print_named_row(name: &str, load: &str, o: &Outcome) {
    println!(
        "| {} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {} |",
        name,
        load,
        o.delivered_spans as f64 / o.wall.as_secs_f64(),
        o.cpu,
        o.delivered_spans as f64 / o.cpu.max(1e-9),
        o.peak_rss as f64 / (1024.0 * 1024.0),
        o.acked_spans.saturating_sub(o.delivered_spans)
    );
}

/// A config skeleton: an `otlp` receiver on `{GRPC}`, health and metrics on their
/// placeholders, plus `components` (processors, exporters, connectors sections) and
/// `pipelines` (the body of `service.pipelines`, one pipeline per line, indented 4).
pub(crate) fn config(components: &str, pipelines: &str) -> String {
    format!(
        "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: '127.0.0.1:{{GRPC}}' }} }} }} }}\n{components}\n\
         service:\n  telemetry: {{ logs: {{ level: warn }}, metrics: {{ endpoint: '127.0.0.1:{{METRICS}}' }} }}\n  health: {{ endpoint: '127.0.0.1:{{HEALTH}}' }}\n  pipelines:\n{pipelines}\n"
    )
}

/// Items (spans, log records) delivered per CPU-second of the process under test.
pub(crate) fn items_per_cpu_second(o: &Outcome) -> f64 {
    o.delivered_spans as f64 / o.cpu.max(1e-9)
}

/// Runs every `(name, config)` target `rounds` times, interleaved (each target's first run,
/// then each target's second, ...), a fresh `sightline` process per run, so a burst of load
/// from elsewhere on this shared machine hits all targets alike. Returns each target's runs
/// sorted by items per CPU-second: the median is `runs[runs.len() / 2]`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn interleaved_runs<R: Load>(
    sightline: &str,
    targets: &[(String, String)],
    sink: &Sink,
    sink_addr: SocketAddr,
    requests: Arc<Vec<R>>,
    duration: Duration,
    rate: u64,
    concurrency: usize,
    rounds: usize,
) -> Result<Vec<Vec<Outcome>>> {
    let mut runs: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (name, config)) in targets.iter().enumerate() {
            let target = start_sightline(sightline, name, config, sink_addr).await?;
            runs[i]
                .push(drive(&target, sink, requests.clone(), duration, rate, concurrency).await?);
        }
    }
    for r in &mut runs {
        r.sort_by(|a, b| items_per_cpu_second(a).total_cmp(&items_per_cpu_second(b)));
    }
    Ok(runs)
}

/// Runs `targets` in `rounds` interleaved rounds at each of `o.loads` and prints each
/// load's median rows; `unit` names the items (`spans`, `log records`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_loads<R: Load>(
    o: &crate::Options,
    targets: &[(String, String)],
    sink: &Sink,
    sink_addr: SocketAddr,
    requests: Arc<Vec<R>>,
    rounds: usize,
    unit: &str,
) -> Result<()> {
    for &r in &o.loads {
        let runs = interleaved_runs(
            &o.sightline,
            targets,
            sink,
            sink_addr,
            requests.clone(),
            o.duration,
            r,
            o.concurrency,
            rounds,
        )
        .await?;
        print_rounds(targets, &runs, &load_label(r, o.concurrency, unit));
    }
    Ok(())
}

/// The load's label in a table row: `max (N clients)` for `rate` 0, else `N <unit>/s`.
pub(crate) fn load_label(rate: u64, concurrency: usize, unit: &str) -> String {
    if rate == 0 {
        format!("max ({concurrency} clients)")
    } else {
        format!("{rate} {unit}/s")
    }
}

/// Prints each target's median run (as [`interleaved_runs`] sorted them) as a table row, and
/// on stderr every run's items per CPU-second with the median's ratio to the first target's.
pub(crate) fn print_rounds(targets: &[(String, String)], runs: &[Vec<Outcome>], load: &str) {
    let median = |r: &Vec<Outcome>| r.get(r.len() / 2).map_or(0.0, items_per_cpu_second);
    let first = runs.first().map_or(0.0, median).max(1e-9);
    for ((name, _), runs) in targets.iter().zip(runs) {
        if let Some(o) = runs.get(runs.len() / 2) {
            print_named_row(name, load, o);
        }
        let all: Vec<String> = runs
            .iter()
            .map(|o| format!("{:.0}", items_per_cpu_second(o)))
            .collect();
        eprintln!(
            "  {name} @ {load}: items per CPU-second per round {}; median {:.2}x the first row",
            all.join(", "),
            median(runs) / first
        );
    }
}
