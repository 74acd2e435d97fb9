//! The `loadbalancing` exporter in the real binary: an agent in front of three OTLP/gRPC
//! backends keeps every trace and every request's logs on one backend; a backend that dies
//! (a SIGKILLed gateway process) or leaves the list hands over only its own keys and nothing
//! acknowledged is lost; DNS names resolve through a hosts file that changes under the
//! running agent; and three gateways behind an agent, sharing SLO state in a real
//! `redis-server`, report the figures of one gateway fed everything.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::redis::{Redis, slo_figures};
use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use serde_json::Value;

/// Traces of 20 trace IDs, each with spans in every one of the `requests` requests (so a
/// trace is kept together by key, not by request); 30 spans per request, `round` makes the
/// span IDs of one call differ from another's.
fn traces(round: u64, requests: u64) -> Vec<ExportTraceServiceRequest> {
    (1..=requests)
        .map(|seed| {
            let mut r = traces_request(round * 100 + seed, 30);
            for (i, span) in r.resource_spans[0].scope_spans[0]
                .spans
                .iter_mut()
                .enumerate()
            {
                span.trace_id = trace_id(i as u8 % 20);
            }
            r
        })
        .collect()
}

fn trace_id(t: u8) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[15] = t + 1;
    id
}

/// Logs of 15 requests, each request's records spread over every one of 4 requests.
fn request_logs() -> Vec<ExportLogsServiceRequest> {
    (1..=4)
        .map(|seed| {
            let mut r = logs_request(seed, 30);
            for (i, rec) in r.resource_logs[0].scope_logs[0]
                .log_records
                .iter_mut()
                .enumerate()
            {
                let value = any_value::Value::StringValue(format!("req-{}", i % 15));
                let attr = rec
                    .attributes
                    .iter_mut()
                    .find(|a| a.key == "request_id")
                    .unwrap();
                attr.value = Some(AnyValue { value: Some(value) });
            }
            r
        })
        .collect()
}

async fn send_traces(agent: &Sightline, requests: Vec<ExportTraceServiceRequest>) {
    let mut client = TraceServiceClient::connect(agent.grpc_url()).await.unwrap();
    for r in requests {
        client.export(r).await.expect("the agent accepts the spans");
    }
}

/// OTLP/gRPC in, `loadbalancing` out (traces by trace ID, logs by request ID) over
/// `resolver`, retries short enough for a test.
fn agent_config(ports: Ports, resolver: &str) -> String {
    let exporter = |key: &str| {
        format!(
            r#"
    {key}
    protocol:
      otlp:
        compression: none
        timeout: 2s
        retry_on_failure: {{ initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 1s }}
    resolver: {resolver}"#
        )
    };
    otlp_in(
        ports,
        &format!(
            r#"
processors:
  batch: {{ timeout: 20ms }}
exporters:
  loadbalancing:{traces}
  loadbalancing/logs:{logs}"#,
            traces = exporter("routing_key: trace_id"),
            logs = exporter("routing_key: request_id"),
        ),
        r#"
    traces: { receivers: [otlp], processors: [batch], exporters: [loadbalancing] }
    logs:   { receivers: [otlp], processors: [batch], exporters: [loadbalancing/logs] }"#,
    )
}

/// A config with OTLP/gRPC in on `ports`, the components of `middle`, and `pipelines`.
fn otlp_in(ports: Ports, middle: &str, pipelines: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
{middle}
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:{pipelines}
"#,
        grpc = ports.grpc,
        metrics = ports.metrics,
        health = ports.health,
    )
}

fn static_resolver(backends: &[&Downstream]) -> String {
    let hosts: Vec<String> = backends.iter().map(|d| format!("\"{}\"", d.addr)).collect();
    format!("{{ static: {{ hostnames: [{}] }} }}", hosts.join(", "))
}

/// Trace ID -> (backend index -> spans received there).
fn trace_owners(backends: &[&Downstream]) -> BTreeMap<Vec<u8>, BTreeMap<usize, usize>> {
    let mut out: BTreeMap<Vec<u8>, BTreeMap<usize, usize>> = BTreeMap::new();
    for (i, d) in backends.iter().enumerate() {
        for rs in d.received.resource_spans() {
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                *out.entry(span.trace_id.clone())
                    .or_default()
                    .entry(i)
                    .or_default() += 1;
            }
        }
    }
    out
}

/// Each trace's single backend; fails if a trace is on two.
fn single_owner(owners: &BTreeMap<Vec<u8>, BTreeMap<usize, usize>>) -> BTreeMap<Vec<u8>, usize> {
    owners
        .iter()
        .map(|(t, at)| {
            assert_eq!(at.len(), 1, "trace {t:?} on backends {at:?}");
            (t.clone(), *at.keys().next().unwrap())
        })
        .collect()
}

fn spans_at(backends: &[&Downstream]) -> usize {
    backends.iter().map(|d| d.received.span_count()).sum()
}

async fn wait_for(what: &str, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dropped(metrics: &str) -> f64 {
    pipeline_core::testing::metric_sum(metrics, "sightline_component_items_dropped_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_and_every_request_lands_on_exactly_one_backend() {
    let (a, b, c) = (
        Downstream::start().await,
        Downstream::start().await,
        Downstream::start().await,
    );
    let backends = [&a, &b, &c];
    let ports = Ports::new();
    let agent = Sightline::start(&agent_config(ports, &static_resolver(&backends)), ports).await;

    send_traces(&agent, traces(1, 6)).await;
    let mut logs = LogsServiceClient::connect(agent.grpc_url()).await.unwrap();
    for r in request_logs() {
        logs.export(r).await.unwrap();
    }
    wait_for("every span", async || spans_at(&backends) == 180).await;
    let owners = single_owner(&trace_owners(&backends));
    assert_eq!(owners.len(), 20);
    assert!(
        owners.values().collect::<BTreeSet<_>>().len() > 1,
        "20 traces spread over the backends: {owners:?}"
    );
    // Each trace has all its spans (2 or 1 of each request's 30) on its backend.
    for (t, at) in trace_owners(&backends) {
        let want = if t[15] <= 10 { 12 } else { 6 };
        assert_eq!(at.values().sum::<usize>(), want, "trace {t:?}");
    }

    let records = |d: &Downstream| -> Vec<String> {
        d.received
            .resource_logs()
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|r| {
                let a = r.attributes.iter().find(|a| a.key == "request_id").unwrap();
                match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    };
    wait_for("every log record", async || {
        backends.iter().map(|d| records(d).len()).sum::<usize>() == 120
    })
    .await;
    let mut request_owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, d) in backends.iter().enumerate() {
        for id in records(d) {
            assert_eq!(
                *request_owner.entry(id.clone()).or_insert(i),
                i,
                "{id} split"
            );
        }
    }
    assert_eq!(request_owner.len(), 15);
    assert!(request_owner.values().collect::<BTreeSet<_>>().len() > 1);
    assert_eq!(dropped(&agent.metrics().await), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_hands_over_only_its_keys_and_nothing_is_lost() {
    // Three real gateway processes (otlp -> batch -> otlp), each forwarding to its own
    // recording server, so where a span went shows which gateway took it.
    let downstreams = [
        Downstream::start().await,
        Downstream::start().await,
        Downstream::start().await,
    ];
    let mut gateways = Vec::new();
    for d in &downstreams {
        let ports = Ports::new();
        gateways.push(Sightline::start(&pipeline_config(ports, &d.url(), "", ""), ports).await);
    }
    let hosts: Vec<String> = gateways
        .iter()
        .map(|g| format!("\"127.0.0.1:{}\"", g.ports.grpc))
        .collect();
    let resolver = format!("{{ static: {{ hostnames: [{}] }} }}", hosts.join(", "));
    let ports = Ports::new();
    let agent = Sightline::start(&agent_config(ports, &resolver), ports).await;
    let all: Vec<&Downstream> = downstreams.iter().collect();
    send_traces(&agent, traces(1, 3)).await;
    wait_for("the first round", async || spans_at(&all) == 90).await;
    let before = single_owner(&trace_owners(&all));
    // The victim: the gateway owning the most traces (so it surely owns some).
    let victim = (0..3)
        .max_by_key(|i| before.values().filter(|o| *o == i).count())
        .unwrap();
    assert!(before.values().filter(|o| **o == victim).count() < 20);

    // SIGKILL it; the next round's spans of its traces fail, run out of retries (1s), and
    // move to the gateways that own those traces now.
    gateways[victim].child.kill().unwrap();
    gateways[victim].child.wait().unwrap();
    let victim_had = downstreams[victim].received.span_count();
    let first = spans_at(&all);
    send_traces(&agent, traces(2, 3)).await;
    wait_for("the second round", async || spans_at(&all) == first + 90).await;
    assert_eq!(downstreams[victim].received.span_count(), victim_had);
    let metrics = agent.metrics().await;
    assert_eq!(dropped(&metrics), 0.0, "{metrics}");
    let logs = agent.logs();
    assert!(logs.contains("backend ran out of retries"), "{logs}");
    assert!(
        logs.contains("re-routing data another backend gave up"),
        "{logs}"
    );
    // Only the victim's traces moved: the others' stayed where they were, whole.
    let after = trace_owners(&all);
    for (t, owner) in &before {
        let now: BTreeSet<usize> = after[t].keys().copied().filter(|i| *i != victim).collect();
        assert_eq!(now.len(), 1, "trace {t:?} split");
        if *owner != victim {
            assert_eq!(
                now,
                BTreeSet::from([*owner]),
                "trace {t:?} of a live gateway moved"
            );
        }
    }
    // New data of the victim's traces goes straight to their new owners.
    send_traces(&agent, traces(3, 3)).await;
    wait_for("the third round", async || spans_at(&all) == first + 180).await;
    assert_eq!(downstreams[victim].received.span_count(), victim_had);
    assert_eq!(dropped(&agent.metrics().await), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_removed_from_the_list_moves_only_its_share() {
    let (a, b, c) = (
        Downstream::start().await,
        Downstream::start().await,
        Downstream::start().await,
    );
    let ports = Ports::new();
    let mut agent =
        Sightline::start(&agent_config(ports, &static_resolver(&[&a, &b, &c])), ports).await;
    send_traces(&agent, traces(1, 3)).await;
    // SIGTERM drains: everything acknowledged reaches a backend.
    assert!(agent.terminate().await.success(), "{}", agent.logs());
    assert_eq!(spans_at(&[&a, &b, &c]), 90, "{}", agent.logs());
    let before = single_owner(&trace_owners(&[&a, &b, &c]));

    // Restarted without b (config reload is not there yet).
    let ports = Ports::new();
    let agent = Sightline::start(&agent_config(ports, &static_resolver(&[&a, &c])), ports).await;
    let b_had = b.received.span_count();
    send_traces(&agent, traces(2, 3)).await;
    wait_for("the second round", async || {
        spans_at(&[&a, &c]) + b_had == 180
    })
    .await;
    assert_eq!(b.received.span_count(), b_had);
    let after = trace_owners(&[&a, &b, &c]);
    let mut moved = 0;
    for (t, owner) in &before {
        let now: BTreeSet<usize> = after[t].keys().copied().filter(|i| *i != 1).collect();
        assert_eq!(now.len(), 1, "trace {t:?} split");
        if *owner == 1 {
            moved += 1;
        } else {
            assert_eq!(
                now,
                BTreeSet::from([*owner]),
                "trace {t:?} of a remaining backend moved"
            );
        }
    }
    assert!(moved > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_resolution_follows_a_changing_hosts_file() {
    // Three backends on one port, at 127.0.0.1-3 (all loopback on Linux), as the pods of a
    // headless Service have one port and an address each.
    let port = free_port();
    let at = |n: u8| format!("127.0.0.{n}:{port}");
    let (d1, d2, d3) = (
        Downstream::start_on(&at(1)).await,
        Downstream::start_on(&at(2)).await,
        Downstream::start_on(&at(3)).await,
    );
    let dir = temp_dir("lb-hosts");
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 gateways\n127.0.0.2 gateways # two for now\n",
    )
    .unwrap();
    let resolver = format!(
        "{{ dns: {{ hostname: gateways, port: {port}, interval: 100ms, hosts_file: \"{}\" }} }}",
        hosts.display()
    );
    let ports = Ports::new();
    let agent = Sightline::start(&agent_config(ports, &resolver), ports).await;
    send_traces(&agent, traces(1, 3)).await;
    wait_for("spans on the two", async || spans_at(&[&d1, &d2]) == 90).await;
    single_owner(&trace_owners(&[&d1, &d2, &d3]));
    assert!(d1.received.span_count() > 0 && d2.received.span_count() > 0);
    assert_eq!(d3.received.span_count(), 0);

    // A third address appears, then the first goes away.
    std::fs::write(
        &hosts,
        "127.0.0.1 gateways\n127.0.0.2 gateways\n127.0.0.3 gateways\n",
    )
    .unwrap();
    let mut round = 2;
    wait_for("the third backend taking its share", async || {
        send_traces(&agent, traces(round, 1)).await;
        round += 1;
        d3.received.span_count() > 0
    })
    .await;
    let sent = 90 + 30 * (round as usize - 2);
    wait_for("every round so far", async || {
        spans_at(&[&d1, &d2, &d3]) == sent
    })
    .await;
    std::fs::write(&hosts, "127.0.0.2 gateways\n127.0.0.3 gateways\n").unwrap();
    // Every round has all 20 traces, some of them the first address's while it is listed.
    wait_for("the first address to leave", async || {
        let (had, total) = (d1.received.span_count(), spans_at(&[&d1, &d2, &d3]));
        send_traces(&agent, traces(round, 1)).await;
        round += 1;
        wait_for("the round", async || {
            spans_at(&[&d1, &d2, &d3]) == total + 30
        })
        .await;
        d1.received.span_count() == had
    })
    .await;
    let d1_had = d1.received.span_count();
    let total = spans_at(&[&d1, &d2, &d3]);
    send_traces(&agent, traces(50, 3)).await;
    wait_for("the last round", async || {
        spans_at(&[&d1, &d2, &d3]) >= total + 90
    })
    .await;
    assert_eq!(
        d1.received.span_count(),
        d1_had,
        "a removed address still gets data"
    );
    assert_eq!(spans_at(&[&d1, &d2, &d3]), total + 90);
    assert_eq!(dropped(&agent.metrics().await), 0.0);
}

/// A gateway: OTLP in, `sli` -> `slo` with SLO state in `redis` under `prefix`.
fn gateway_config(ports: Ports, slo_port: u16, redis: &Redis, prefix: &str) -> String {
    otlp_in(
        ports,
        &format!(
            r#"
connectors:
  sli: {{ flush_interval: 100ms }}
exporters:
  slo:
    endpoint: "127.0.0.1:{slo_port}"
    evaluation_interval: 100ms
    store: {{ type: redis, url: "{url}", key_prefix: "{prefix}", flush_interval: 100ms }}
    slos:
      - name: checkout-availability
        service: api-service
        objective: 99.9
        indicator:
          availability: {{ matchers: {{ service: api-service }} }}
      - name: checkout-latency
        service: api-service
        objective: 95
        window: 28d
        indicator:
          latency: {{ threshold: 50ms, matchers: {{ service: api-service }} }}"#,
            url = redis.url(),
        ),
        r#"
    traces: { receivers: [otlp], exporters: [sli] }
    metrics: { receivers: [sli], exporters: [slo] }"#,
    )
}

async fn slo(port: u16) -> Value {
    match http_get(&format!("http://127.0.0.1:{port}/slo")).await {
        Ok((200, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_sharing_redis_report_what_one_gateway_fed_everything_does() {
    let redis = Redis::start();
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let (ports, slo_port) = (Ports::new(), free_port());
        let config = gateway_config(ports, slo_port, &redis, "sightline:scaled");
        gateways.push((Sightline::start(&config, ports).await, slo_port));
    }
    let (ports, single_port) = (Ports::new(), free_port());
    let single = Sightline::start(
        &gateway_config(ports, single_port, &redis, "sightline:single"),
        ports,
    )
    .await;
    let hosts: Vec<String> = gateways
        .iter()
        .map(|(g, _)| format!("\"127.0.0.1:{}\"", g.ports.grpc))
        .collect();
    let ports = Ports::new();
    let resolver = format!("{{ static: {{ hostnames: [{}] }} }}", hosts.join(", "));
    let agent = Sightline::start(&agent_config(ports, &resolver), ports).await;

    // The same 180 SERVER spans (every tenth a 500), through the agent and straight in.
    send_traces(&agent, traces(1, 6)).await;
    send_traces(&single, traces(1, 6)).await;
    let counted = |v: &Value| v[0]["total_events"] == 180 && v[1]["total_events"] == 180;
    wait_for("the single gateway's figures", async || {
        counted(&slo(single_port).await)
    })
    .await;
    for (_, port) in &gateways {
        wait_for("the shared figures", async || counted(&slo(*port).await)).await;
    }
    let want = slo_figures(&slo(single_port).await);
    assert_eq!(want[0]["bad_events"], 18, "{want}");
    for (gateway, port) in &gateways {
        let received = pipeline_core::testing::metric_sum(
            &gateway.metrics().await,
            "sightline_component_items_received_total",
            &[("component_kind", "receiver"), ("signal", "traces")],
        );
        assert!(received > 0.0, "a gateway got no spans");
        assert_eq!(slo_figures(&slo(*port).await), want);
    }
}
