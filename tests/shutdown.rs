//! SIGTERM during a steady stream: every span acknowledged to a client reaches the
//! downstream server, and the process exits 0.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_everything_acknowledged() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    // A long batch timeout, so data is sitting in the batch processor when the signal comes.
    let config = pipeline_config(ports, &down.url(), "", "").replace(
        "batch: { timeout: 50ms }",
        "batch: { timeout: 5s, send_batch_size: 100000 }",
    );
    let mut sl = Sightline::start(&config, ports).await;
    let acked: Arc<Mutex<HashSet<Vec<u8>>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let acked = acked.clone();
        let url = sl.grpc_url();
        clients.push(tokio::spawn(async move {
            let Ok(mut client) = TraceServiceClient::connect(url).await else {
                return;
            };
            for i in 0..2000u64 {
                let req = traces_request(c * 10_000 + i, 20);
                let ids: Vec<Vec<u8>> = req.resource_spans[0].scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| s.span_id.clone())
                    .collect();
                match client.export(req).await {
                    Ok(_) => acked.lock().unwrap().extend(ids),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the stream run until a good amount was acknowledged, then stop.
    let deadline = std::time::Instant::now() + DEADLINE;
    while acked.lock().unwrap().len() < 2000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = sl.terminate().await;
    for c in clients {
        let _ = c.await;
    }
    assert!(status.success(), "exit status {status}: {}", sl.logs());
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 2000,
        "only {} spans acknowledged",
        acked.len()
    );
    let received = down.received.span_ids();
    let missing = acked.difference(&received).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged spans never reached the downstream; logs: {}",
        acked.len(),
        sl.logs()
    );
}
