//! The `scaleout` scenario: the capacity of each tier of the agent -> gateway deployment
//! (`configs/agent.yaml`, `configs/gateway.yaml`), in interleaved rounds, with the
//! `otlp -> batch -> otlp` forwarder as the baseline in the same run:
//!
//! * agent: `otlp -> batch -> loadbalancing` (trace ID routing over three backends, the
//!   three backend endpoints being three spellings of the sink's address, so each has its
//!   own exporter, queue and connection as three gateways would);
//! * gateway: `otlp -> redaction -> request_id -> batch -> jaeger (OTLP) + sli`, and
//!   `sli -> prometheus + slo` with the SLO state in a real `redis-server` (when installed;
//!   else the memory store, said in the row).
//!
//! The load is the traces scenario's: requests of 100 spans in traces of 5, each span with a
//! `request_id`.

use std::process::{Child, Command, Stdio};

use anyhow::Result;

use crate::Options;
use crate::harness::{Sink, config, free_port, print_header, run_loads, serve_sink, wait_for_port};
use crate::traces::requests;

/// Interleaved rounds per load; rows report the median.
const ROUNDS: usize = 3;

/// A `redis-server` for the gateway's SLO store; killed on drop.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis() -> Option<(Redis, u16)> {
    let port = free_port().ok()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child);
    wait_for_port(port).await.ok()?;
    Some((redis, port))
}

/// Runs the scenario and prints its table.
pub(crate) async fn run(o: &Options) -> Result<()> {
    let rounds = o.rounds.unwrap_or(ROUNDS);
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    let redis = start_redis().await;
    let store = match &redis {
        Some((_, port)) => format!(
            "{{ type: redis, url: 'redis://127.0.0.1:{port}', key_prefix: 'bench:{}' }}",
            std::process::id()
        ),
        None => "{ type: memory }".to_string(),
    };
    let store_name = if redis.is_some() { "redis" } else { "memory" };
    let (prometheus_port, slo_port) = (free_port()?, free_port()?);

    let baseline = config(
        "processors: { batch: {} }\nexporters: { otlp: { endpoint: 'http://{SINK}', compression: none } }",
        "    traces: { receivers: [otlp], processors: [batch], exporters: [otlp] }",
    );
    let agent = config(
        "processors: { batch: {} }\n\
         exporters:\n  loadbalancing:\n    routing_key: trace_id\n    protocol: { otlp: { compression: none } }\n    \
         resolver: { static: { hostnames: ['{SINK}', 'http://{SINK}', 'http://{SINK}/'] } }",
        "    traces: { receivers: [otlp], processors: [batch], exporters: [loadbalancing] }",
    );
    let gateway = config(
        &format!(
            "processors:\n  redaction: {{ allow_all_keys: true, blocked_keys: ['(?i)password', '(?i)secret'], \
             detectors: [email, credit_card, jwt, bearer_token], action: mask, hash_key: bench }}\n  \
             request_id: {{}}\n  batch: {{}}\n\
             connectors:\n  sli: {{ flush_interval: 1s }}\n\
             exporters:\n  jaeger: {{ endpoint: '{{SINK}}', compression: none }}\n  \
             prometheus: {{ endpoint: '127.0.0.1:{prometheus_port}' }}\n  \
             slo:\n    endpoint: '127.0.0.1:{slo_port}'\n    store: {store}\n    slos:\n      \
             - {{ name: checkout-availability, service: checkout, objective: 99.9, indicator: {{ availability: {{ matchers: {{ service: checkout }} }} }} }}"
        ),
        "    traces: { receivers: [otlp], processors: [redaction, request_id, batch], exporters: [jaeger, sli] }\n    \
         metrics: { receivers: [sli], exporters: [prometheus, slo] }",
    );
    let targets = [
        (
            "baseline: sightline otlp -> batch -> otlp".to_string(),
            baseline,
        ),
        (
            "agent: otlp -> batch -> loadbalancing (trace_id, 3 backends)".to_string(),
            agent,
        ),
        (
            format!(
                "gateway: otlp -> redaction, request_id, batch -> jaeger + sli -> prometheus, slo ({store_name})"
            ),
            gateway,
        ),
    ];
    print_header();
    run_loads(o, &targets, &sink, sink_addr, requests(), rounds, "spans").await?;
    drop(redis);
    Ok(())
}
