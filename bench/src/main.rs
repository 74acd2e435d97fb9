//! End-to-end throughput benchmark.
//!
//! Drives OTLP/gRPC traces (100 spans a request, realistic attributes) through
//! `otlp -> batch -> otlp` in a `sightline` process into a counting OTLP server, and through a
//! baseline process in the same run: a minimal tonic server that decodes each request and
//! forwards it unchanged (the floor any collector has to beat). Reports spans per CPU-second
//! of the process under test (utime + stime from /proc) and its peak RSS (VmHWM).
//!
//! Usage: `sightline-bench --sightline target/release/sightline [--seconds 10] [--rate 10000]`
//! (see bench/run.sh). `sightline-bench baseline LISTEN FORWARD` is the baseline process.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use tonic::transport::Channel;

const SPANS_PER_REQUEST: usize = 100;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("baseline") {
        let listen: SocketAddr = args.get(2).context("baseline LISTEN FORWARD")?.parse()?;
        let forward = args.get(3).context("baseline LISTEN FORWARD")?.clone();
        return rt.block_on(baseline(listen, forward));
    }
    let mut sightline = None;
    let mut seconds = 10u64;
    let mut rate = 10_000u64;
    let mut concurrency = 4usize;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sightline" => sightline = it.next().cloned(),
            "--seconds" => seconds = it.next().context("--seconds N")?.parse()?,
            "--rate" => rate = it.next().context("--rate N")?.parse()?,
            "--concurrency" => concurrency = it.next().context("--concurrency N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let sightline = sightline.context("--sightline PATH is required")?;
    rt.block_on(run(
        &sightline,
        Duration::from_secs(seconds),
        rate,
        concurrency,
    ))
}

/// Counts spans; decodes every request as a real backend would.
#[derive(Clone, Default)]
struct Sink {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = r
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn serve_sink(sink: Sink) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let svc = TraceServiceServer::new(sink)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(256 << 20);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
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

async fn baseline(listen: SocketAddr, forward: String) -> Result<()> {
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

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn sv(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// A request of 100 SERVER spans with HTTP semantic-convention attributes.
fn request(seed: u64) -> ExportTraceServiceRequest {
    let routes = [
        "/api/users/{id}",
        "/api/orders",
        "/api/cart/{id}/items",
        "/health",
    ];
    let spans = (0..SPANS_PER_REQUEST as u64)
        .map(|i| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(i + 1);
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.wrapping_add(1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(i / 5 + 1).to_be_bytes());
            let route = routes[(i % 4) as usize];
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: if i % 5 == 0 { vec![] } else { (id - 1).to_be_bytes().to_vec() },
                name: format!("GET {route}"),
                kind: if i % 5 == 0 { span::SpanKind::Server } else { span::SpanKind::Internal } as i32,
                start_time_unix_nano: 1_705_314_600_000_000_000 + i * 1_000_000,
                end_time_unix_nano: 1_705_314_600_045_000_000 + i * 1_000_000,
                attributes: vec![
                    kv("http.request.method", sv("GET")),
                    kv("http.route", sv(route)),
                    kv("url.path", sv(&format!("/api/users/{}", id % 10_000))),
                    kv("url.scheme", sv("https")),
                    kv("server.address", sv("api.example.com")),
                    kv("http.response.status_code", any_value::Value::IntValue(if i % 50 == 0 { 503 } else { 200 })),
                    kv("user_agent.original", sv("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)")),
                    kv("client.address", sv("10.42.7.19")),
                    kv("request_id", sv(&format!("{:016x}-{i}", seed))),
                    kv("network.protocol.version", sv("1.1")),
                ],
                status: Some(Status { code: if i % 50 == 0 { 2 } else { 0 }, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", sv("checkout")),
                    kv("service.version", sv("2.14.1")),
                    kv("deployment.environment", sv("production")),
                    kv("host.name", sv("ip-10-42-7-19")),
                    kv("k8s.pod.name", sv("checkout-7d9f8b6c5-x2x4q")),
                    kv("k8s.namespace.name", sv("shop")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    version: "0.48b0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// CPU seconds (user + system) and peak RSS in bytes of a process.
fn usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks / 100.0, hwm_kb * 1024))
}

struct Outcome {
    acked_spans: u64,
    delivered_spans: u64,
    wall: Duration,
    cpu: f64,
    peak_rss: u64,
}

/// Sends for `duration` at `rate` spans/s (0 = as fast as possible) to `target`.
async fn drive(
    target: &str,
    pid: u32,
    sink: &Sink,
    duration: Duration,
    rate: u64,
    concurrency: usize,
) -> Result<Outcome> {
    let channel = Channel::from_shared(target.to_string())?.connect().await?;
    let acked = Arc::new(AtomicU64::new(0));
    let before_sink = sink.spans.load(Ordering::Relaxed);
    let (cpu0, _) = usage(pid)?;
    let start = Instant::now();
    let per_task_interval = (rate > 0).then(|| {
        Duration::from_secs_f64(SPANS_PER_REQUEST as f64 * concurrency as f64 / rate as f64)
    });
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let mut client = TraceServiceClient::new(channel.clone());
        let acked = acked.clone();
        // Pre-built requests: the generator's own cost stays out of the measured process.
        let requests: Vec<ExportTraceServiceRequest> =
            (0..16).map(|i| request(t as u64 * 1000 + i)).collect();
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut next = Instant::now();
            while start.elapsed() < duration {
                if let Some(interval) = per_task_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                if client
                    .export(requests[i % requests.len()].clone())
                    .await
                    .is_ok()
                {
                    acked.fetch_add(SPANS_PER_REQUEST as u64, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let wall = start.elapsed();
    let acked = acked.load(Ordering::Relaxed);
    // Wait (bounded) for the pipeline to hand everything to the sink.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.spans.load(Ordering::Relaxed) - before_sink < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu1, peak_rss) = usage(pid)?;
    Ok(Outcome {
        acked_spans: acked,
        delivered_spans: sink.spans.load(Ordering::Relaxed) - before_sink,
        wall,
        cpu: cpu1 - cpu0,
        peak_rss,
    })
}

struct Target {
    name: String,
    child: Child,
    url: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(port: u16) -> Result<()> {
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

async fn start_sightline(path: &str, sink: SocketAddr, compression: &str) -> Result<Target> {
    let (grpc, health, metrics) = (free_port()?, free_port()?, free_port()?);
    let config = format!(
        "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: '127.0.0.1:{grpc}' }} }} }} }}\n\
         processors: {{ batch: {{}} }}\n\
         exporters: {{ otlp: {{ endpoint: 'http://{sink}', compression: {compression} }} }}\n\
         service:\n  telemetry: {{ logs: {{ level: warn }}, metrics: {{ endpoint: '127.0.0.1:{metrics}' }} }}\n  health: {{ endpoint: '127.0.0.1:{health}' }}\n\
         \x20 pipelines: {{ traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp] }} }}\n"
    );
    let dir = std::env::temp_dir().join(format!("sightline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("bench-{compression}.yaml"));
    std::fs::write(&file, config)?;
    let child = Command::new(path)
        .arg("--config")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    wait_for_port(grpc).await?;
    Ok(Target {
        name: format!("sightline (otlp -> batch -> otlp, compression {compression})"),
        child,
        url: format!("http://127.0.0.1:{grpc}"),
    })
}

async fn start_baseline(sink: SocketAddr) -> Result<Target> {
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

async fn run(sightline: &str, duration: Duration, rate: u64, concurrency: usize) -> Result<()> {
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    println!(
        "| process | load | spans/s delivered | CPU s | spans per CPU-second | peak RSS MiB | lost |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (load, r) in [("max", 0u64), ("rate", rate)] {
        let targets = [
            start_baseline(sink_addr).await?,
            start_sightline(sightline, sink_addr, "none").await?,
            start_sightline(sightline, sink_addr, "gzip").await?,
        ];
        for target in targets {
            let o = drive(
                &target.url,
                target.child.id(),
                &sink,
                duration,
                r,
                concurrency,
            )
            .await?;
            let load_text = if r == 0 {
                format!("{load} ({concurrency} clients)")
            } else {
                format!("{r} spans/s")
            };
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {} |",
                target.name,
                load_text,
                o.delivered_spans as f64 / o.wall.as_secs_f64(),
                o.cpu,
                o.delivered_spans as f64 / o.cpu.max(1e-9),
                o.peak_rss as f64 / (1024.0 * 1024.0),
                o.acked_spans.saturating_sub(o.delivered_spans)
            );
        }
    }
    Ok(())
}
