//! Config reload: a steady OTLP/gRPC stream into the real binary across three SIGHUP reloads
//! (an exporter added, a processor changed, an invalid config), and a `--watch-config`
//! reload. The receiver's port never closes (every export succeeds at the first try) and every
//! span sent reaches the downstream OTLP server.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use pipeline_core::testing::metric_sum;

/// OTLP in, `batch` with `batch_timeout`, OTLP out to `first` and, when given, `second`.
fn config(ports: Ports, first: &str, second: Option<&str>, batch_timeout: &str) -> String {
    let base = pipeline_config(ports, first, "", "").replace(
        "batch: { timeout: 50ms }",
        &format!("batch: {{ timeout: {batch_timeout}, send_batch_size: 64 }}"),
    );
    match second {
        None => base,
        Some(url) => base
            .replace(
                "exporters:\n",
                &format!("exporters:\n  otlp/second: {{ endpoint: \"{url}\" }}\n"),
            )
            .replace("exporters: [otlp]", "exporters: [otlp, otlp/second]"),
    }
}

/// Sends small trace requests one after another until stopped; returns the span IDs of the
/// requests that succeeded and the number that failed.
fn steady_stream(
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(HashSet<Vec<u8>>, usize)> {
    tokio::spawn(async move {
        let mut client = TraceServiceClient::connect(url).await.expect("connect");
        let mut sent = HashSet::new();
        let mut failed = 0;
        let mut seed = 1;
        while !stop.load(Ordering::Relaxed) {
            let request = traces_request(seed, 5);
            seed += 1;
            match client.export(request.clone()).await {
                Ok(_) => {
                    for rs in &request.resource_spans {
                        for ss in &rs.scope_spans {
                            sent.extend(ss.spans.iter().map(|s| s.span_id.clone()));
                        }
                    }
                }
                Err(e) => {
                    eprintln!("export failed: {e}");
                    failed += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (sent, failed)
    })
}

/// Waits until `sightline_config_reloads_total{outcome}` reaches `n`.
async fn wait_reloads(sl: &Sightline, outcome: &str, n: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = metric_sum(
            &sl.metrics().await,
            "sightline_config_reloads_total",
            &[("outcome", outcome)],
        );
        if got >= n {
            assert_eq!(
                got,
                n,
                "more {outcome} reloads than triggered: {}",
                sl.logs()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {outcome} reload #{n}: {}",
            sl.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_survives_three_reloads_with_every_item_delivered() {
    let first = Downstream::start().await;
    let second = Downstream::start().await;
    let ports = Ports::new();
    let mut sl = Sightline::start(&config(ports, &first.url(), None, "50ms"), ports).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = steady_stream(sl.grpc_url(), stop.clone());
    let flowing = |d: &Downstream, at_least: usize| {
        let d = d.received.clone();
        async move {
            let deadline = Instant::now() + DEADLINE;
            while d.span_count() < at_least && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            d.span_count() >= at_least
        }
    };
    assert!(flowing(&first, 50).await, "{}", sl.logs());

    // 1. An exporter added: the second downstream starts receiving.
    std::fs::write(
        sl.config_path(),
        config(ports, &first.url(), Some(&second.url()), "50ms"),
    )
    .unwrap();
    sl.signal("HUP");
    wait_reloads(&sl, "success", 1.0).await;
    assert!(flowing(&second, 50).await, "{}", sl.logs());

    // 2. A processor changed (the batch timeout).
    let before = first.received.span_count();
    std::fs::write(
        sl.config_path(),
        config(ports, &first.url(), Some(&second.url()), "20ms"),
    )
    .unwrap();
    sl.signal("HUP");
    wait_reloads(&sl, "success", 2.0).await;
    assert!(flowing(&first, before + 50).await, "{}", sl.logs());

    // 3. An invalid config: rejected, logged, the running graph goes on.
    std::fs::write(
        sl.config_path(),
        config(ports, &first.url(), Some(&second.url()), "20ms")
            .replace("send_batch_size", "send_batch_sise"),
    )
    .unwrap();
    sl.signal("HUP");
    wait_reloads(&sl, "rejected", 1.0).await;
    let before = first.received.span_count();
    assert!(flowing(&first, before + 50).await, "{}", sl.logs());
    let logs = sl.logs();
    assert!(
        logs.contains("configuration reload rejected") && logs.contains("send_batch_sise"),
        "the rejection and its error are logged: {logs}"
    );

    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = stream.await.unwrap();
    assert_eq!(
        failed, 0,
        "the receiver kept its port and accepted everything"
    );
    assert!(sent.len() > 200, "a steady stream: {} spans", sent.len());
    assert!(
        first
            .wait_until(|r| sent.iter().all(|id| r.span_ids().contains(id)))
            .await,
        "lost {} of {} spans across the reloads: {}",
        sent.len()
            - sent
                .iter()
                .filter(|id| first.received.span_ids().contains(*id))
                .count(),
        sent.len(),
        sl.logs()
    );
    assert_eq!(
        metric_sum(
            &sl.metrics().await,
            "sightline_component_items_dropped_total",
            &[]
        ),
        0.0,
        "nothing dropped"
    );
    assert!(sl.is_running());
    assert!(sl.terminate().await.success(), "{}", sl.logs());
    // Every span that reached the first downstream was sent (no stray data), and the spans
    // sent while the second exporter existed reached it too.
    assert!(first.received.span_ids().is_subset(&sent));
    assert!(second.received.span_ids().is_subset(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_when_the_file_changes() {
    let first = Downstream::start().await;
    let second = Downstream::start().await;
    let ports = Ports::new();
    let mut sl = Sightline::start_with(
        &config(ports, &first.url(), None, "50ms"),
        ports,
        &[],
        &["--watch-config"],
    )
    .await;
    std::fs::write(
        sl.config_path(),
        config(ports, &first.url(), Some(&second.url()), "50ms"),
    )
    .unwrap();
    wait_reloads(&sl, "success", 1.0).await;
    export_traces(&sl.grpc_url(), traces_request(3, 10)).await;
    assert!(
        second.wait_until(|r| r.span_count() == 10).await,
        "{}",
        sl.logs()
    );
    assert!(first.wait_until(|r| r.span_count() == 10).await);
    assert!(sl.terminate().await.success(), "{}", sl.logs());
}
