//! Nothing lost (issue 16), against the real binary: a backend down for 30 seconds, kill -9
//! with a persistent queue, damaged queue segments, and a flood against `memory_limiter`.
//! Every test counts what the clients were told was accepted and checks that exactly that
//! arrived.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

/// A config: OTLP in, `processors`, one `otlp` exporter to `backend` with `queue` (the
/// `sending_queue` section) and fast retries that never give up.
fn config(ports: Ports, backend: u16, processors: &str, queue: &str) -> String {
    let list = if processors.is_empty() {
        "batch".to_string()
    } else {
        format!("{processors}, batch")
    };
    let defined = if processors.starts_with("memory_limiter") {
        "  memory_limiter: { check_interval: 100ms, limit_mib: 100, spike_limit_mib: 20 }\n"
    } else {
        ""
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", max_recv_msg_size_mib: 8 }}
      http: {{ endpoint: "127.0.0.1:{http}", max_request_body_size: 8388608 }}
processors:
{defined}  batch: {{ timeout: 50ms }}
exporters:
  otlp:
    endpoint: "http://127.0.0.1:{backend}"
    compression: none
    timeout: 2s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s }}
    sending_queue: {queue}
service:
  telemetry:
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  shutdown_timeout: 5s
  pipelines:
    traces: {{ receivers: [otlp], processors: [{list}], exporters: [otlp] }}
    logs: {{ receivers: [otlp], processors: [{list}], exporters: [otlp] }}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
    )
}

/// Sends `requests` traces requests of 100 spans; returns the span IDs Sightline accepted
/// (answered OK), and how many answers were retryable refusals.
async fn send_spans(sl: &Sightline, first_seed: u64, requests: u64) -> (HashSet<Vec<u8>>, usize) {
    let mut client = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    let mut accepted = HashSet::new();
    let mut refused = 0;
    for seed in first_seed..first_seed + requests {
        let request = traces_request(seed, 100);
        match client.export(request.clone()).await {
            Ok(_) => {
                for s in request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    accepted.insert(s.span_id.clone());
                }
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    tonic::Code::Unavailable,
                    "a refusal is retryable: {status:?}"
                );
                refused += 1;
            }
        }
    }
    (accepted, refused)
}

/// One row of the README's fault table, printed for `cargo test --test reliability --
/// --nocapture`.
fn report(
    fault: &str,
    sent: usize,
    accepted: usize,
    delivered: usize,
    duplicates: usize,
    peak: u64,
) {
    println!(
        "| {fault} | {sent} | {accepted} | {delivered} | {duplicates} | {:.1} |",
        peak as f64 / (1 << 20) as f64
    );
}

/// Waits (up to `limit`) until every accepted span is at `down`; then checks none arrived
/// twice.
async fn all_arrive(down: &Downstream, accepted: &HashSet<Vec<u8>>, limit: Duration, sl: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let got = down.received.span_ids();
        if accepted.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted spans arrived; logs: {sl}",
            accepted.intersection(&got).count(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spans = down.received.span_count();
    let distinct = down.received.span_ids().len();
    assert_eq!(spans, distinct, "spans delivered twice");
}

/// The backend is down for 30 seconds while clients send; when it comes back every span
/// Sightline accepted arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_for_30_seconds_loses_nothing_it_accepted() {
    let ports = Ports::new();
    let backend = free_port();
    let sl = Sightline::start(&config(ports, backend, "", "{ queue_size: 50000 }"), ports).await;
    let down_since = Instant::now();
    let (accepted, _) = send_spans(&sl, 1, 20).await;
    assert!(!accepted.is_empty());
    let left = Duration::from_secs(30).saturating_sub(down_since.elapsed());
    tokio::time::sleep(left).await;
    let down = Downstream::start_on(&format!("127.0.0.1:{backend}")).await;
    all_arrive(&down, &accepted, Duration::from_secs(30), &sl.logs()).await;
    report(
        "backend down 30 s, then back (memory queue)",
        2000,
        accepted.len(),
        down.received.span_count(),
        0,
        sl.peak_rss(),
    );
    let page = sl.metrics().await;
    assert_eq!(
        sample(
            &page,
            "sightline_component_items_dropped_total",
            &[
                ("component_id", "otlp"),
                ("component_kind", "exporter"),
                ("signal", "traces"),
                ("reason", "retries_exhausted")
            ]
        )
        .unwrap_or(0.0),
        0.0
    );
}

/// Waits for flooding clients and adds up what each returned: what it had accepted, its
/// retryable refusals, the items it sent.
async fn join_clients<A>(
    clients: Vec<tokio::task::JoinHandle<(A, usize, usize)>>,
) -> (A, usize, usize)
where
    A: Default + IntoIterator + Extend<<A as IntoIterator>::Item>,
{
    let (mut accepted, mut refused, mut sent) = (A::default(), 0, 0);
    for c in clients {
        let (a, r, s) = c.await.unwrap();
        accepted.extend(a);
        refused += r;
        sent += s;
    }
    (accepted, refused, sent)
}

/// Clients send plain spans at three times what the backend takes, `memory_limiter` at 100
/// MiB: they get retryable refusals (the queue is full, or memory is), resident memory stays
/// under 120 MiB, and every span accepted arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_three_times_the_sustainable_rate() {
    const BACKEND_RATE: u64 = 4_000;
    let ports = Ports::new();
    let down = Downstream::start().await;
    down.received
        .spans_per_second
        .store(BACKEND_RATE, std::sync::atomic::Ordering::Relaxed);
    // A full batch takes the backend two seconds: the exporter waits for it.
    let cfg = config(
        ports,
        down.addr.port(),
        "memory_limiter",
        "{ queue_size: 10000 }",
    )
    .replace("timeout: 2s", "timeout: 20s");
    let sl = Sightline::start(&cfg, ports).await;
    // Six clients, each sending a 100-span request every 50 ms: 12,000 spans/s for 8 s.
    let flood = Duration::from_secs(8);
    let mut clients = Vec::new();
    for c in 0..6u64 {
        let url = sl.grpc_url();
        clients.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.unwrap();
            let (mut accepted, mut refused, mut sent) = (HashSet::new(), 0usize, 0usize);
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let stop = Instant::now() + flood;
            let mut seed = c * 1_000_000;
            while Instant::now() < stop {
                tick.tick().await;
                seed += 1;
                let request = traces_request(seed, 100);
                sent += 100;
                match client.export(request.clone()).await {
                    Ok(_) => accepted.extend(
                        request
                            .resource_spans
                            .iter()
                            .flat_map(|r| &r.scope_spans)
                            .flat_map(|s| &s.spans)
                            .map(|s| s.span_id.clone()),
                    ),
                    Err(s) => {
                        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                        refused += 1;
                    }
                }
            }
            (accepted, refused, sent)
        }));
    }
    let (accepted, refused, sent) = join_clients(clients).await;
    let peak = sl.peak_rss();
    assert!(refused > 0, "the flood was never refused");
    assert!(peak < 120 << 20, "peak RSS {} MiB", peak >> 20);
    // What was accepted is at most what the backend took plus what the queues hold.
    assert!(accepted.len() < sent, "{} of {sent}", accepted.len());
    all_arrive(&down, &accepted, Duration::from_secs(60), &sl.logs()).await;
    report(
        "clients sending plain spans at 3x what the backend takes, memory_limiter 100 MiB",
        sent,
        accepted.len(),
        down.received.span_count(),
        0,
        peak,
    );
}

/// A logs request of `records` records whose bodies are `body_bytes` long.
fn big_logs(seed: u64, records: usize, body_bytes: usize) -> ExportLogsServiceRequest {
    let mut request = logs_request(seed, records);
    for r in request
        .resource_logs
        .iter_mut()
        .flat_map(|r| &mut r.scope_logs)
        .flat_map(|s| &mut s.log_records)
    {
        r.body = Some(AnyValue {
            value: Some(any_value::Value::StringValue("y".repeat(body_bytes))),
        });
    }
    request
}

/// Brings the backend up on `port` and waits (30 s) until `want` log records arrived, and
/// no more (nothing twice).
async fn logs_arrive(port: u16, want: usize, sl: &Sightline) {
    let down = Downstream::start_on(&format!("127.0.0.1:{port}")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = pipeline_core::model::log_record_count(&down.received.resource_logs());
        if got >= want {
            assert_eq!(got, want, "delivered twice");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {want} accepted log records arrived: {}",
            sl.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn persistent(dir: &Path, fsync: &str) -> String {
    format!(
        "{{ storage: \"{}\", fsync: {fsync}, fsync_interval: 200ms }}",
        dir.display()
    )
}

/// kill -9 while data waits in a persistent queue (the backend is down); after a restart
/// every span that was accepted arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_persistent_queue_then_restart_delivers_everything_accepted() {
    let storage = temp_dir("pq-kill");
    let ports = Ports::new();
    let backend = free_port();
    let cfg = config(ports, backend, "", &persistent(&storage, "interval"));
    let mut sl = Sightline::start(&cfg, ports).await;
    let (accepted, _) = send_spans(&sl, 1, 30).await;
    assert_eq!(accepted.len(), 3000);
    let peak = sl.peak_rss();
    sl.kill_9();
    let down = Downstream::start_on(&format!("127.0.0.1:{backend}")).await;
    let sl = Sightline::start(&cfg, ports).await;
    all_arrive(&down, &accepted, Duration::from_secs(20), &sl.logs()).await;
    report(
        "kill -9 with 3,000 spans queued (persistent queue, fsync interval), restart",
        3000,
        accepted.len(),
        down.received.span_count(),
        0,
        peak.max(sl.peak_rss()),
    );
}

/// A queue segment with bytes flipped and another cut mid-record: `validate
/// --check-storage` reports the damage, start-up succeeds, counts it, and delivers the
/// records before the damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_queue_segments_are_reported_and_start_up_goes_on() {
    let storage = temp_dir("pq-damage");
    let ports = Ports::new();
    let backend = free_port();
    let cfg = config(ports, backend, "", &persistent(&storage, "always"));
    let mut sl = Sightline::start(&cfg, ports).await;
    // Each request is answered once written (end-to-end acknowledgement): one record each.
    let (accepted, _) = send_spans(&sl, 1, 10).await;
    assert_eq!(accepted.len(), 1000);
    sl.terminate().await;
    let queue_dir = storage.join("otlp");
    let mut segments: Vec<_> = std::fs::read_dir(&queue_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    assert!(bytes.len() > 200, "the batches are in the segment");
    let cut = bytes.len() - 100;
    bytes.truncate(cut);
    std::fs::write(&last, &bytes).unwrap();

    let cfg_path = sl.dir.join("config.yaml");
    let out = std::process::Command::new(bin())
        .args(["validate", "--check-storage", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("exporter otlp: queue") && text.contains("DAMAGED: 1 torn or corrupt record"),
        "{text}"
    );

    let down = Downstream::start_on(&format!("127.0.0.1:{backend}")).await;
    let sl = Sightline::start(&cfg, ports).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while down.received.span_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing delivered: {}",
            sl.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report(
        "last queue record torn (100 bytes cut), restart",
        1000,
        accepted.len(),
        down.received.span_count(),
        0,
        sl.peak_rss(),
    );
    let page = sl.metrics().await;
    assert_eq!(
        sample(
            &page,
            "sightline_queue_corrupt_records_total",
            &[("component_id", "otlp")]
        ),
        Some(1.0),
        "{page}"
    );
    assert!(sl.logs().contains("damaged"), "{}", sl.logs());
    let after = std::process::Command::new(bin())
        .args(["validate", "--check-storage", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&after.stdout).contains("integrity ok"));
}

/// 64 KiB log bodies from 40 concurrent clients, the backend down, `memory_limiter` at 100
/// MiB: clients get retryable refusals, resident memory stays under 120 MiB, and once the
/// backend is up everything accepted arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_logs_against_the_memory_limiter() {
    let ports = Ports::new();
    let backend = free_port();
    let cfg = config(
        ports,
        backend,
        "memory_limiter",
        "{ queue_size: 8388608, sizer: bytes }",
    );
    let sl = Sightline::start(&cfg, ports).await;
    let stop = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for c in 0..40u64 {
        let url = sl.grpc_url();
        clients.push(tokio::spawn(async move {
            let mut client = LogsServiceClient::connect(url)
                .await
                .unwrap()
                .max_encoding_message_size(16 << 20);
            let (mut accepted, mut refused) = (Vec::new(), 0usize);
            let mut sent = 0usize;
            let mut n = 0u64;
            while Instant::now() < stop {
                let request = big_logs(c * 1_000_000 + n, 8, 64 * 1024);
                n += 1;
                sent += 8;
                match client.export(request.clone()).await {
                    Ok(_) => accepted.push(request),
                    Err(s) => {
                        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (accepted, refused, sent)
        }));
    }
    let (accepted, refused, sent_records) = join_clients(clients).await;
    let peak = sl.peak_rss();
    assert!(refused > 0, "the flood was never refused");
    assert!(
        peak < 120 << 20,
        "peak RSS {} MiB; logs: {}",
        peak >> 20,
        sl.logs()
    );
    let want: usize = accepted
        .iter()
        .map(|r| pipeline_core::model::log_record_count(&r.resource_logs))
        .sum();
    assert!(want > 0);
    logs_arrive(backend, want, &sl).await;
    report(
        "40 clients flooding 64 KiB logs, backend down, memory_limiter 100 MiB",
        sent_records,
        want,
        want,
        0,
        peak,
    );
}

/// 500 clients at once, each sending a 4 MiB OTLP/HTTP request, the backend down,
/// `memory_limiter` at 100 MiB, the receiver's defaults: the receiver reads a body only while
/// resident memory plus the bodies in flight stay under the limiter's soft limit, the rest get
/// 503 before their bodies are read, resident memory stays under 120 MiB, and what was
/// accepted arrives once the backend is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_with_4_mib_requests() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let ports = Ports::new();
    let backend = free_port();
    // The receiver's defaults (64 MiB of bodies in flight): the memory limiter's soft limit
    // is what keeps the bodies read at once small.
    let cfg = config(
        ports,
        backend,
        "memory_limiter",
        "{ queue_size: 8388608, sizer: bytes }",
    )
    .replace(
        "batch: { timeout: 50ms }",
        "batch: { timeout: 50ms, pending_limit_mib: 8 }",
    );
    let sl = Sightline::start(&cfg, ports).await;
    // 16 records of 256 KiB: a 4 MiB request.
    let request = big_logs(1, 16, 256 * 1024);
    let body = bytes::Bytes::from(prost::Message::encode_to_vec(&request));
    assert!(body.len() >= 4 << 20);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<bytes::Bytes>>();
    let url = sl.http_url("/v1/logs");
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            // As an OTLP client does: a 503 is retried after its Retry-After, a few times.
            let mut refused = 0;
            for _ in 0..4 {
                let req = hyper::Request::post(url.clone())
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let status = match tokio::time::timeout(
                    Duration::from_secs(30),
                    client.request(req),
                )
                .await
                {
                    Ok(Ok(res)) => {
                        let status = res.status().as_u16();
                        let _ = res.into_body().collect().await;
                        status
                    }
                    _ => 0,
                };
                if status != 503 {
                    return (status, refused);
                }
                refused += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (503, refused)
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    let mut refusals = 0;
    for t in tasks {
        let (status, refused) = t.await.unwrap();
        *statuses.entry(status).or_insert(0usize) += 1;
        refusals += refused;
    }
    let peak = sl.peak_rss();
    let accepted = statuses.get(&200).copied().unwrap_or(0);
    let own_metrics = || async {
        sl.metrics()
            .await
            .lines()
            .filter(|l| {
                l.starts_with("sightline_receiver_requests_rejected")
                    || l.starts_with("sightline_queue_size")
                    || l.starts_with("sightline_memory_limiter")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        accepted > 0,
        "{statuses:?}, peak {} MiB: {}",
        peak >> 20,
        own_metrics().await
    );
    assert!(refusals > 0, "{statuses:?}");
    assert_eq!(
        statuses.keys().filter(|s| **s != 200 && **s != 503).count(),
        0,
        "only success or retryable refusals: {statuses:?}"
    );
    assert!(
        peak < 120 << 20,
        "peak RSS {} MiB; answers {statuses:?}; {}",
        peak >> 20,
        own_metrics().await
    );
    let refused_unread = pipeline_core::testing::metric_sum(
        &sl.metrics().await,
        "sightline_receiver_requests_rejected_total",
        &[("reason", "memory_limit")],
    );
    assert!(refused_unread > 0.0, "the memory check refused nothing");
    let want = accepted * 16;
    logs_arrive(backend, want, &sl).await;
    report(
        "500 clients at once, 4 MiB OTLP/HTTP requests each, backend down, `memory_limiter` at 100 MiB (the rest answered 503), then the backend back",
        500 * 16,
        want,
        want,
        0,
        peak,
    );
}
