//! The `prometheus` scenario: the two Prometheus exporters, each against a baseline measured
//! in the same run.
//!
//! - **Scrape:** `sightline` (`otlp -> prometheus`) holding 100,000 counter series, fed over
//!   OTLP/gRPC; CPU time of the process and wall time per `GET /metrics` (0.0.4 text and
//!   OpenMetrics), against the `prometheus` crate's `TextEncoder` writing the same 100,000
//!   series in this process.
//! - **Remote write:** `sightline` (`otlp -> prometheusremotewrite`) writing to a sink in this
//!   process that decodes every request (snappy, protobuf) and counts samples; samples per
//!   CPU-second of the process, against the same points forwarded as OTLP
//!   (`otlp -> otlp`). In this process: the exporter's translation and encoding
//!   (`build_requests` + protobuf + snappy) against the raw protobuf + snappy encoding of the
//!   same requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use exporters::prometheusremotewrite::{RequestLayout, WriteRequest, build_requests};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::harness::{Sink, config, free_port, serve_sink, start_sightline, usage, wait_for_port};

const SERVICES: usize = 10;
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const ENDPOINTS: usize = 250;
const CODES: [&str; 10] = [
    "200", "201", "204", "301", "400", "401", "404", "429", "500", "503",
];
/// 10 services x 4 methods x 250 endpoints x 10 status codes.
const SERIES: usize = SERVICES * METHODS.len() * ENDPOINTS * CODES.len();
const SCRAPES: u32 = 20;

use pipeline_core::attributes::string as kv;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// One request per service: `http.requests` with 10,000 points (every method, endpoint and
/// status code) at `t`.
fn scrape_requests(t: u64) -> Vec<ExportMetricsServiceRequest> {
    (0..SERVICES)
        .map(|s| {
            let mut points = Vec::with_capacity(SERIES / SERVICES);
            for m in METHODS {
                for e in 0..ENDPOINTS {
                    for c in CODES {
                        points.push(NumberDataPoint {
                            attributes: vec![
                                kv("method", m),
                                kv("endpoint", format!("/api/v1/resource{e}/{{id}}")),
                                kv("status_code", c),
                            ],
                            start_time_unix_nano: t - 1_000_000_000,
                            time_unix_nano: t,
                            value: Some(number_data_point::Value::AsInt((e * 7) as i64)),
                            ..Default::default()
                        });
                    }
                }
            }
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", format!("service-{s}"))],
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "http.requests".into(),
                            description: "Total HTTP requests".into(),
                            unit: "{request}".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: points,
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        })
        .collect()
}

/// One `GET /metrics` with `accept`; the body's length.
async fn get_metrics(port: u16, accept: &str) -> Result<usize> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!("GET /metrics HTTP/1.0\r\nHost: localhost\r\nAccept: {accept}\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await?;
    Ok(body.len())
}

/// Lines of samples of `http_requests_total` in a text page.
async fn sample_lines(port: u16) -> Result<usize> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count())
}

async fn scrape_scenario(sightline: &str, sink_addr: SocketAddr) -> Result<()> {
    let port = free_port()?;
    let yaml = config(
        &format!(
            "exporters: {{ prometheus: {{ endpoint: '127.0.0.1:{port}', max_series: 200000 }} }}"
        ),
        "    metrics: { receivers: [otlp], exporters: [prometheus] }",
    );
    let target = start_sightline(sightline, "prometheus-scrape", &yaml, sink_addr).await?;
    wait_for_port(port).await?;
    let mut client = MetricsServiceClient::connect(target.url.clone())
        .await?
        .max_encoding_message_size(64 << 20);
    for r in scrape_requests(now_ns()) {
        client.export(r).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample_lines(port).await? < SERIES {
        if Instant::now() > deadline {
            bail!("the exporter never held {SERIES} series");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("| what | CPU ms per scrape | wall ms per scrape | page MiB | peak RSS MiB |");
    println!("|---|---|---|---|---|");
    let pid = target.child.id();
    for (name, accept) in [
        (
            "sightline `prometheus` exporter, text 0.0.4",
            "text/plain;version=0.0.4",
        ),
        (
            "sightline `prometheus` exporter, OpenMetrics 1.0",
            "application/openmetrics-text;version=1.0.0",
        ),
    ] {
        let (cpu0, _) = usage(pid)?;
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..SCRAPES {
            bytes = get_metrics(port, accept).await?;
        }
        let wall = started.elapsed();
        let (cpu1, rss) = usage(pid)?;
        println!(
            "| {name}, {SERIES} series | {:.1} | {:.1} | {:.1} | {:.0} |",
            cpu1.since(&cpu0) * 1000.0 / f64::from(SCRAPES),
            wall.as_secs_f64() * 1000.0 / f64::from(SCRAPES),
            bytes as f64 / (1024.0 * 1024.0),
            rss as f64 / (1024.0 * 1024.0)
        );
    }
    drop(target);
    baseline_text_encoder()
}

/// The `prometheus` crate's registry and `TextEncoder` with the same 100,000 series, in
/// this process (no HTTP).
fn baseline_text_encoder() -> Result<()> {
    use ::prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
    let registry = Registry::new();
    let counter = IntCounterVec::new(
        Opts::new("http_requests_total", "Total HTTP requests"),
        &["job", "service", "method", "endpoint", "status_code"],
    )?;
    registry.register(Box::new(counter.clone()))?;
    for s in 0..SERVICES {
        let service = format!("service-{s}");
        for m in METHODS {
            for e in 0..ENDPOINTS {
                let endpoint = format!("/api/v1/resource{e}/{{id}}");
                for c in CODES {
                    counter
                        .with_label_values(&[&service, &service, m, &endpoint, c])
                        .inc_by((e * 7) as u64);
                }
            }
        }
    }
    let encoder = TextEncoder::new();
    let (cpu0, _) = usage(std::process::id())?;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let mut out = Vec::new();
        encoder.encode(&registry.gather(), &mut out)?;
        bytes = out.len();
    }
    let wall = started.elapsed();
    let (cpu1, _) = usage(std::process::id())?;
    println!(
        "| baseline: `prometheus` crate gather + TextEncoder in-process (no HTTP), {SERIES} series | {:.1} | {:.1} | {:.1} | - |",
        cpu1.since(&cpu0) * 1000.0 / f64::from(SCRAPES),
        wall.as_secs_f64() * 1000.0 / f64::from(SCRAPES),
        bytes as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}

/// Counters and histograms of `SERIES_RW` series at `t`: 2,000 counter points and 200
/// histogram points (8 bounds: 11 samples each) per request.
const RW_COUNTERS: usize = 2_000;
const RW_HISTOGRAMS: usize = 200;
const RW_SAMPLES_PER_REQUEST: u64 = (RW_COUNTERS + RW_HISTOGRAMS * 11) as u64;

fn rw_request(t: u64) -> ExportMetricsServiceRequest {
    let counters = (0..RW_COUNTERS)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("method", METHODS[i % 4]),
                kv("endpoint", format!("/api/v1/resource{}/{{id}}", i / 4)),
                kv("status_code", "200"),
            ],
            start_time_unix_nano: t - 1_000_000_000,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsInt(i as i64)),
            ..Default::default()
        })
        .collect();
    let histograms = (0..RW_HISTOGRAMS)
        .map(|i| HistogramDataPoint {
            attributes: vec![
                kv("method", METHODS[i % 4]),
                kv("endpoint", format!("/api/v1/resource{}/{{id}}", i / 4)),
            ],
            start_time_unix_nano: t - 1_000_000_000,
            time_unix_nano: t,
            count: 45,
            sum: Some(3.5),
            bucket_counts: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            explicit_bounds: vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "http.requests".into(),
                        unit: "{request}".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: counters,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "http.request.duration".into(),
                        unit: "s".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: histograms,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A remote-write receiver that decodes every request (snappy, protobuf) and counts its
/// samples; plain HTTP/1.1 with keep-alive.
async fn serve_remote_write(samples: Arc<AtomicU64>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let samples = Arc::clone(&samples);
            tokio::spawn(async move {
                let _ = serve_conn(stream, samples).await;
            });
        }
    });
    Ok(addr)
}

async fn serve_conn(stream: tokio::net::TcpStream, samples: Arc<AtomicU64>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; length];
        read.read_exact(&mut body).await?;
        let raw = snap::raw::Decoder::new().decompress_vec(&body)?;
        let request = WriteRequest::decode(raw.as_slice())?;
        let n: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
        samples.fetch_add(n as u64, Ordering::Relaxed);
        write
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

const RW_REQUESTS: u64 = 300;

async fn remote_write_scenario(sightline: &str, sink: &Sink, sink_addr: SocketAddr) -> Result<()> {
    let samples = Arc::new(AtomicU64::new(0));
    let rw_addr = serve_remote_write(Arc::clone(&samples)).await?;
    let t0 = now_ns();
    let requests: Vec<ExportMetricsServiceRequest> = (0..RW_REQUESTS)
        .map(|i| rw_request(t0 + i * 1_000_000))
        .collect();
    let total = RW_SAMPLES_PER_REQUEST * RW_REQUESTS;
    println!();
    println!("| process | samples | CPU s | samples per CPU-second | peak RSS MiB |");
    println!("|---|---|---|---|---|");
    let remote_write = config(
        &format!(
            "exporters: {{ prometheusremotewrite: {{ endpoint: 'http://{rw_addr}/api/v1/write', target_info: {{ enabled: false }} }} }}"
        ),
        "    metrics: { receivers: [otlp], exporters: [prometheusremotewrite] }",
    );
    let forward = config(
        "exporters: { otlp: { endpoint: 'http://{SINK}', compression: none } }",
        "    metrics: { receivers: [otlp], exporters: [otlp] }",
    );
    for (name, yaml, remote) in [
        (
            "sightline (otlp -> prometheusremotewrite, 4 shards)",
            remote_write,
            true,
        ),
        (
            "baseline: sightline (otlp -> otlp, the same points forwarded)",
            forward,
            false,
        ),
    ] {
        let target = start_sightline(sightline, name, &yaml, sink_addr).await?;
        let mut client = MetricsServiceClient::connect(target.url.clone())
            .await?
            .max_encoding_message_size(64 << 20);
        let samples_before = samples.load(Ordering::Relaxed);
        let points_before = sink.points.load(Ordering::Relaxed);
        let points_total = ((RW_COUNTERS + RW_HISTOGRAMS) as u64) * RW_REQUESTS;
        let (cpu0, _) = usage(target.child.id())?;
        for r in &requests {
            client.export(r.clone()).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = if remote {
                samples.load(Ordering::Relaxed) - samples_before >= total
            } else {
                sink.points.load(Ordering::Relaxed) - points_before >= points_total
            };
            if done {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name}: not everything arrived");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (cpu1, rss) = usage(target.child.id())?;
        let cpu = cpu1.since(&cpu0);
        println!(
            "| {name} | {total} | {cpu:.2} | {:.0} | {:.0} |",
            total as f64 / cpu.max(1e-9),
            rss as f64 / (1024.0 * 1024.0)
        );
    }
    encode_in_process(&requests)
}

/// The exporter's translation and encoding against the plain encoding (prost messages,
/// protobuf, snappy) of the same requests.
fn encode_in_process(requests: &[ExportMetricsServiceRequest]) -> Result<()> {
    let layout = RequestLayout {
        translation: exporters::helper::prometheus::TranslationConfig {
            add_metric_suffixes: true,
            ..Default::default()
        },
        target_info: false,
        num_shards: 4,
        max_request_bytes: 3_000_000,
    };
    let me = std::process::id();
    let mut encoder = snap::raw::Encoder::new();
    let (cpu0, _) = usage(me)?;
    let mut samples = 0usize;
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for r in requests {
        let out = build_requests(&r.resource_metrics, &layout);
        samples += out.samples;
        for body in out.shards.into_iter().flatten() {
            std::hint::black_box(encoder.compress_vec(&body)?);
            bodies.push(body);
        }
    }
    let (cpu1, _) = usage(me)?;
    let full = cpu1.since(&cpu0);
    // The same requests as prost messages (decoded outside the measurement).
    let messages: Vec<WriteRequest> = bodies
        .iter()
        .map(|b| WriteRequest::decode(b.as_slice()))
        .collect::<Result<_, _>>()?;
    let (cpu2, _) = usage(me)?;
    for w in &messages {
        std::hint::black_box(exporters::prometheusremotewrite::encode_request(w)?);
    }
    let (cpu3, _) = usage(me)?;
    let raw = cpu3.since(&cpu2);
    println!(
        "| in-process: translate + encode + snappy (`build_requests`) | {samples} | {full:.2} | {:.0} | - |",
        samples as f64 / full.max(1e-9)
    );
    println!(
        "| in-process baseline: prost encode + snappy of the same `WriteRequest`s (no translation) | {samples} | {raw:.2} | {:.0} | - |",
        samples as f64 / raw.max(1e-9)
    );
    Ok(())
}

/// Runs both parts and prints their tables.
pub(crate) async fn run(sightline: &str) -> Result<()> {
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await.context("OTLP sink")?;
    scrape_scenario(sightline, sink_addr).await?;
    remote_write_scenario(sightline, &sink, sink_addr).await
}
