//! Tests of the `loadbalancing` exporter: config, the ring's key movement, splitting by
//! key, and the runtime against in-process OTLP backends (routing, a backend running out of
//! retries, DNS changes through an injected resolver).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::attributes::string as kv;
use pipeline_core::model::{AckOutcome, Payload};
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use pipeline_core::telemetry::reason;
use pipeline_core::testing::{AckProbe, check_exporter};
use pipeline_core::{Batch, Component, ConsumeError, Consumer, Host, Signal};
use serde_json::{Value, json};

use super::config::backend_endpoint;
use super::exporter::LoadBalancer;
use super::resolver::{Lookup, hosts_entries};
use super::ring::{Ring, stable_hash};
use super::route::KeyReader;
use super::{Factory, LoadBalancingConfig, RoutingKey};
use crate::helper::testutil::{OtlpBackend, TestCtx, eventually, in_secs, serve_otlp};

// ---- config -------------------------------------------------------------------------------

fn parse(v: Value) -> Result<LoadBalancingConfig, pipeline_core::FieldError> {
    <LoadBalancingConfig as pipeline_core::ComponentConfig>::parse(&v)
}

fn static_list(hosts: &[&str]) -> Value {
    json!({ "static": { "hostnames": hosts } })
}

#[test]
fn config_as_otelcol_spells_it_and_clear_errors() {
    let c = parse(json!({
        "routing_key": "trace_id",
        "protocol": { "otlp": { "compression": "gzip", "sending_queue": { "queue_size": 10000 } } },
        "resolver": static_list(&["gateway-0:4317", "gateway-1:4317", "gateway-2:4317"]),
    }))
    .unwrap();
    assert_eq!(c.routing_key, Some(RoutingKey::TraceId));
    let otlp = c.otlp_config("gateway-0:4317").unwrap();
    assert_eq!(otlp.sending_queue.queue_size, 10000);
    assert_eq!(otlp.endpoint, "gateway-0:4317");

    let c = parse(json!({ "resolver": { "dns": { "hostname": "gw-headless" } } })).unwrap();
    let dns = c.resolver.dns.unwrap();
    assert_eq!(
        (dns.port, dns.interval.get()),
        (4317, Duration::from_secs(5))
    );
    assert_eq!(c.routing_key, None);

    let err = |v: Value| parse(v).unwrap_err();
    let e = err(json!({ "resolver": {} }));
    assert_eq!(e.path, "resolver");
    let e = err(
        json!({ "resolver": { "static": { "hostnames": ["a"] }, "dns": { "hostname": "b" } } }),
    );
    assert!(e.message.contains("exactly one"), "{e}");
    let e = err(json!({ "resolver": static_list(&[]) }));
    assert_eq!(e.path, "resolver.static.hostnames");
    let e = err(json!({ "resolver": static_list(&["a"]), "routing_key": "traceID" }));
    assert!(e.message.contains("trace_id"), "{e}");
    let e = err(
        json!({ "resolver": static_list(&["a"]), "protocol": { "otlp": { "endpoint": "x:1" } } }),
    );
    assert_eq!(e.path, "protocol.otlp.endpoint");
    let e = err(
        json!({ "resolver": static_list(&["a"]), "protocol": { "otlp": { "compresion": "gzip" } } }),
    );
    assert!(e.path.starts_with("protocol.otlp"), "{e}");
    assert!(e.message.contains("compression"), "{e}");
    let e = err(
        json!({ "resolver": static_list(&["a"]), "protocol": { "otlp": { "sending_queue": { "queue_size": 0 } } } }),
    );
    assert_eq!(e.path, "protocol.otlp.sending_queue.queue_size");
    let e = err(json!({ "resolver": static_list(&["ftp://a:1"]) }));
    assert_eq!(e.path, "resolver.static.hostnames[0]");
    let e = err(json!({ "resolver": { "dns": { "hostname": "gw", "interval": "0s" } } }));
    assert_eq!(e.path, "resolver.dns.interval");
    let e = err(json!({ "resolver": static_list(&["a"]), "resolvr": {} }));
    assert!(e.message.contains("resolver"), "{e}");
}

#[test]
fn routing_key_defaults_per_signal() {
    use RoutingKey::*;
    assert_eq!(RoutingKey::for_signal(None, Signal::Traces), TraceId);
    assert_eq!(RoutingKey::for_signal(None, Signal::Logs), Service);
    assert_eq!(RoutingKey::for_signal(None, Signal::Metrics), Service);
    assert_eq!(
        RoutingKey::for_signal(Some(RequestId), Signal::Logs),
        RequestId
    );
    assert_eq!(
        RoutingKey::for_signal(Some(TraceId), Signal::Metrics),
        Service
    );
    assert_eq!(
        RoutingKey::for_signal(Some(Resource), Signal::Metrics),
        Resource
    );
}

#[test]
fn backend_endpoints_get_the_default_port() {
    assert_eq!(backend_endpoint("gw-0"), "gw-0:4317");
    assert_eq!(backend_endpoint(" gw-0:5317 "), "gw-0:5317");
    assert_eq!(backend_endpoint("10.0.0.7"), "10.0.0.7:4317");
    assert_eq!(backend_endpoint("::1"), "[::1]:4317");
    assert_eq!(backend_endpoint("[::1]:4000"), "[::1]:4000");
    assert_eq!(backend_endpoint("https://gw:443"), "https://gw:443");
}

#[test]
fn hosts_file_lines() {
    let text = "# comment\n127.0.0.2 gw gw.local # trailing\n\n::1 other\n127.0.0.3\tGW\nbad gw\n";
    let found: Vec<String> = hosts_entries(text, "gw")
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(found, ["127.0.0.2", "127.0.0.3"]);
    assert!(hosts_entries(text, "nothere").is_empty());
}

// ---- the ring -------------------------------------------------------------------------------

#[test]
fn the_hash_is_the_same_in_every_process() {
    // Agents route the same key to the same gateway only if this never changes.
    assert_eq!(
        stable_hash(&[b"trace_id", &[1u8; 16]]),
        0x3185_0c51_1ce1_5438
    );
    assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:4317")).collect()
}

fn ring_of(names: &[String]) -> Ring<String> {
    Ring::new(names.iter().map(|n| (n.as_str(), n.clone())))
}

/// The owner of each of `keys` key hashes.
fn owners(ring: &Ring<String>, keys: u64) -> Vec<String> {
    (0..keys)
        .map(|k| {
            let i = ring.owner_index(stable_hash(&[&k.to_le_bytes()])).unwrap();
            ring.members()[i].clone()
        })
        .collect()
}

#[test]
fn adding_or_removing_a_backend_moves_about_one_nth_of_the_keys() {
    const KEYS: u64 = 20_000;
    for n in [3usize, 5, 10] {
        let before = names(n);
        let after: Vec<String> = names(n + 1);
        let (a, b) = (
            owners(&ring_of(&before), KEYS),
            owners(&ring_of(&after), KEYS),
        );
        let moved: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        let share = moved.len() as f64 / KEYS as f64;
        let ideal = 1.0 / (n + 1) as f64;
        println!(
            "{n} -> {} backends: {:.1}% of keys moved (ideal {:.1}%)",
            n + 1,
            share * 100.0,
            ideal * 100.0
        );
        assert!(
            (share - ideal).abs() < ideal * 0.25,
            "{n}+1: moved {share}, ideal {ideal}"
        );
        // Every key that moved went to the new backend: nothing shuffles between the others.
        assert!(moved.iter().all(|&i| b[i] == after[n]));

        // Removing a backend moves exactly its keys.
        let gone = &before[1];
        let fewer: Vec<String> = before.iter().filter(|x| *x != gone).cloned().collect();
        let c = owners(&ring_of(&fewer), KEYS);
        for i in 0..a.len() {
            if a[i] == *gone {
                assert_ne!(c[i], *gone);
            } else {
                assert_eq!(c[i], a[i], "a key of a remaining backend moved");
            }
        }
    }
}

#[test]
fn shares_are_even() {
    let n = 5;
    let all = names(n);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for o in owners(&ring_of(&all), 50_000) {
        *counts.entry(o).or_default() += 1;
    }
    for (name, c) in counts {
        let share = c as f64 / 50_000.0;
        assert!((share - 0.2).abs() < 0.05, "{name} owns {share}");
    }
}

// ---- splitting ------------------------------------------------------------------------------

fn span(trace: u8, i: u8, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace, i, 0, 0, 0, 0, 0, 1],
        name: format!("op-{i}"),
        attributes: attrs,
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("host.name", "node-1")],
        ..Default::default()
    })
}

/// Traces of `traces` IDs, 3 spans each, spread over two resources and two scopes each.
fn traces(traces: u8) -> Payload {
    let mut groups = Vec::new();
    for svc in ["api", "db"] {
        let mut scopes = Vec::new();
        for scope in 0..2u8 {
            let spans = (1..=traces)
                .flat_map(|t| (0..3).map(move |i| span(t, i + scope * 3, vec![])))
                .collect();
            scopes.push(ScopeSpans {
                spans,
                ..Default::default()
            });
        }
        groups.push(ResourceSpans {
            resource: resource(svc),
            scope_spans: scopes,
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        });
    }
    Payload::Traces(groups)
}

fn reader(key: Option<RoutingKey>) -> KeyReader {
    KeyReader::new(key, vec!["request_id".into(), "http.request_id".into()])
}

#[test]
fn split_by_trace_id_keeps_each_trace_on_one_backend_and_every_span() {
    let ring = ring_of(&names(3));
    let owner = |h: u64| ring.owner_index(h).unwrap();
    let payload = traces(60);
    let total = payload.item_count();
    let parts = reader(None).split(payload, &owner);
    assert_eq!(parts.len(), 3, "60 traces reach all 3 backends");
    let mut trace_owner: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut spans = BTreeSet::new();
    for (o, p) in &parts {
        let Payload::Traces(groups) = p else { panic!() };
        for g in groups {
            assert!(g.resource.is_some());
            assert_eq!(g.schema_url, "https://opentelemetry.io/schemas/1.26.0");
            for s in &g.scope_spans {
                assert!(!s.spans.is_empty(), "no empty scopes");
                for sp in &s.spans {
                    let prev = trace_owner.insert(sp.trace_id.clone(), *o);
                    assert!(prev.is_none_or(|p| p == *o), "a trace on two backends");
                    let service = format!("{:?}", g.resource.as_ref().unwrap().attributes[0]);
                    spans.insert((service, sp.span_id.clone()));
                }
            }
        }
    }
    assert_eq!(spans.len(), total, "every span once");
}

fn log(trace: u8, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        trace_id: if trace == 0 { vec![] } else { vec![trace; 16] },
        attributes: attrs,
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>, service: &str) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        resource: resource(service),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

/// Where each record went, by its `n` attribute.
fn log_owners(parts: &[(usize, Payload)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (o, p) in parts {
        let Payload::Logs(groups) = p else { panic!() };
        for r in groups
            .iter()
            .flat_map(|g| &g.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            let n = pipeline_core::attributes::find(&r.attributes, "n").unwrap();
            out.insert(
                pipeline_core::attributes::to_text(n).unwrap().into_owned(),
                *o,
            );
        }
    }
    out
}

#[test]
fn split_by_request_id_falls_back_to_trace_id_then_service() {
    let ring = ring_of(&names(4));
    let owner = |h: u64| ring.owner_index(h).unwrap();
    let mut records = Vec::new();
    for r in 0..40 {
        // Records of one request: one via the first attribute name, one via the second, one
        // with a different trace ID each (the request ID wins).
        records.push(log(
            r as u8 + 1,
            vec![
                kv("n", format!("a{r}")),
                kv("request_id", format!("req-{r}")),
            ],
        ));
        records.push(log(
            r as u8 + 101,
            vec![
                kv("n", format!("b{r}")),
                kv("http.request_id", format!("req-{r}")),
            ],
        ));
    }
    records.push(log(7, vec![kv("n", "t1")]));
    records.push(log(7, vec![kv("n", "t2"), kv("request_id", "")]));
    records.push(log(0, vec![kv("n", "s1")]));
    let parts = reader(Some(RoutingKey::RequestId)).split(logs(records, "api"), &owner);
    let at = log_owners(&parts);
    assert_eq!(at.len(), 83);
    for r in 0..40 {
        assert_eq!(
            at[&format!("a{r}")],
            at[&format!("b{r}")],
            "request {r} split"
        );
    }
    assert!(
        BTreeSet::from_iter(at.values()).len() > 1,
        "requests spread"
    );
    assert_eq!(at["t1"], at["t2"], "no request ID: by trace ID");
    let by_trace = owner(stable_hash(&[b"trace_id", &[7u8; 16]]));
    assert_eq!(at["t1"], by_trace);
    let by_service = owner(stable_hash(&[b"service", b"api"]));
    assert_eq!(at["s1"], by_service, "neither: by service");
}

#[test]
fn split_by_service_or_resource_moves_whole_groups() {
    let ring = ring_of(&names(5));
    let owner = |h: u64| ring.owner_index(h).unwrap();
    let services: Vec<String> = (0..30).map(|i| format!("svc-{i}")).collect();
    let groups: Vec<ResourceLogs> = services
        .iter()
        .flat_map(|s| {
            let Payload::Logs(g) = logs(
                (1..=4)
                    .map(|t| log(t, vec![kv("n", format!("{s}-{t}"))]))
                    .collect(),
                s,
            ) else {
                unreachable!()
            };
            g
        })
        .collect();
    for key in [RoutingKey::Service, RoutingKey::Resource] {
        let parts = reader(Some(key)).split(Payload::Logs(groups.clone()), &owner);
        let at = log_owners(&parts);
        assert_eq!(at.len(), 120);
        for s in &services {
            let o: BTreeSet<_> = (1..=4).map(|t| at[&format!("{s}-{t}")]).collect();
            assert_eq!(o.len(), 1, "{key:?}: {s} split");
        }
        assert!(parts.len() > 1, "{key:?}: services spread");
    }
    // Logs by default go by service too.
    let parts = reader(None).split(Payload::Logs(groups), &owner);
    let total: usize = parts.iter().map(|(_, p)| p.item_count()).sum();
    assert_eq!(total, 120);
}

// ---- the runtime ---------------------------------------------------------------------------

#[tokio::test]
async fn conformance() {
    check_exporter(
        &Factory,
        &json!({ "resolver": static_list(&["127.0.0.1:1"]) }),
    )
    .await;
}

/// A resolver whose answer the test sets.
struct TableLookup(Mutex<Result<Vec<SocketAddr>, String>>);

impl Default for TableLookup {
    fn default() -> Self {
        TableLookup(Mutex::new(Ok(Vec::new())))
    }
}

impl TableLookup {
    fn set(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = Ok(addrs.to_vec());
    }
    fn fail(&self) {
        *self.0.lock().unwrap() = Err("SERVFAIL".into());
    }
}

#[async_trait]
impl Lookup for TableLookup {
    async fn lookup(&self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        self.0.lock().unwrap().clone().map_err(io::Error::other)
    }
}

fn fast_otlp(max_elapsed: &str) -> Value {
    json!({
        "compression": "none",
        "timeout": "2s",
        "retry_on_failure": { "initial_interval": "20ms", "max_interval": "50ms", "max_elapsed_time": max_elapsed },
        "sending_queue": { "num_consumers": 2 },
    })
}

async fn backends(n: usize) -> (Vec<Arc<OtlpBackend>>, Vec<SocketAddr>) {
    let mut b = Vec::new();
    let mut a = Vec::new();
    for _ in 0..n {
        let backend = Arc::new(OtlpBackend::default());
        a.push(serve_otlp(&backend).await);
        b.push(backend);
    }
    (b, a)
}

/// A started exporter over the backends at `addrs` (static list), retrying for at most
/// `max_elapsed`, with the other keys of `extra`.
async fn over_static(
    t: &TestCtx,
    addrs: &[SocketAddr],
    max_elapsed: &str,
    extra: Value,
) -> LoadBalancer {
    let hosts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut config = json!({
        "resolver": { "static": { "hostnames": hosts } },
        "protocol": { "otlp": fast_otlp(max_elapsed) },
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    started(t, config, Arc::new(TableLookup::default())).await
}

/// Sends traces batches of 60 traces starting at each of `firsts`, tracked by `probe`.
async fn send_traces(lb: &LoadBalancer, probe: &AckProbe, firsts: &[u8]) {
    for &first in firsts {
        lb.consume(probe.track(traces_batch(first, 60)))
            .await
            .unwrap();
    }
}

async fn started(t: &TestCtx, config: Value, lookup: Arc<dyn Lookup>) -> LoadBalancer {
    let config = parse(config).unwrap();
    let lb = LoadBalancer::new(&t.ctx, config, lookup);
    lb.start(&Host::new(std::env::temp_dir())).await.unwrap();
    lb
}

/// The trace IDs each backend received.
fn traces_at(backend: &OtlpBackend) -> BTreeSet<Vec<u8>> {
    backend
        .traces
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r.resource_spans.clone())
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .map(|s| s.trace_id)
        .collect()
}

fn traces_batch(first: u8, count: u8) -> Batch {
    let spans = (first..first + count).flat_map(|t| (0..4).map(move |i| span(t, i, vec![])));
    Batch::new(Payload::Traces(vec![ResourceSpans {
        resource: resource("api"),
        scope_spans: vec![ScopeSpans {
            spans: spans.collect(),
            ..Default::default()
        }],
        schema_url: String::new(),
    }]))
}

#[tokio::test]
async fn every_trace_lands_on_one_backend_and_acks_wait_for_all_parts() {
    let (bs, addrs) = backends(3).await;
    let t = TestCtx::new("loadbalancing");
    let lb = over_static(&t, &addrs, "5s", json!({})).await;
    let probe = AckProbe::new();
    send_traces(&lb, &probe, &[1u8, 61, 121]).await;
    assert!(
        t.wait_sent("traces", 720.0).await,
        "sent {}",
        t.sent("traces")
    );
    assert!(probe.wait_settled(Duration::from_secs(5)).await);
    assert_eq!(probe.count(AckOutcome::Delivered), 3);
    let sets: Vec<_> = bs.iter().map(|b| traces_at(b)).collect();
    for (i, s) in sets.iter().enumerate() {
        assert!(s.len() > 20, "backend {i} got {} traces", s.len());
        for other in &sets[i + 1..] {
            assert!(s.is_disjoint(other), "a trace on two backends");
        }
    }
    assert_eq!(sets.iter().map(BTreeSet::len).sum::<usize>(), 180);
    assert_eq!(bs.iter().map(|b| b.spans()).sum::<usize>(), 720);
    lb.shutdown(in_secs(5.0)).await.unwrap();
    probe.assert_resolved();
}

#[tokio::test]
async fn a_backend_out_of_retries_hands_its_keys_and_data_to_the_others() {
    let (bs, addrs) = backends(3).await;
    bs[1].down.store(true, Ordering::SeqCst);
    let t = TestCtx::new("loadbalancing");
    let lb = over_static(&t, &addrs, "300ms", json!({})).await;
    let probe = AckProbe::new();
    send_traces(&lb, &probe, &[1u8, 61]).await;
    assert!(
        t.wait_sent("traces", 480.0).await,
        "sent {}",
        t.sent("traces")
    );
    assert!(probe.wait_settled(Duration::from_secs(5)).await);
    assert_eq!(
        probe.count(AckOutcome::Delivered),
        2,
        "nothing acknowledged was lost"
    );
    assert_eq!(
        t.metric("sightline_component_items_dropped_total", &[]),
        0.0
    );
    assert_eq!(bs[1].spans(), 0);
    assert!(bs[1].calls() > 0, "the down backend was tried first");
    let (_, down) = lb.backends();
    assert_eq!(down, [addrs[1].to_string()]);
    assert!(t.health().contains("out of the ring"), "{}", t.health());
    // New data goes to the healthy two at once, and traces stay whole.
    lb.consume(probe.track(traces_batch(121, 60)))
        .await
        .unwrap();
    assert!(t.wait_sent("traces", 720.0).await);
    assert!(traces_at(&bs[0]).is_disjoint(&traces_at(&bs[2])));
    lb.shutdown(in_secs(5.0)).await.unwrap();
    probe.assert_resolved();
}

#[tokio::test]
async fn with_every_backend_down_data_is_dropped_and_counted_once_retries_run_out() {
    let (bs, addrs) = backends(2).await;
    for b in &bs {
        b.down.store(true, Ordering::SeqCst);
    }
    let t = TestCtx::new("loadbalancing");
    let lb = over_static(&t, &addrs, "200ms", json!({})).await;
    let probe = AckProbe::new();
    lb.consume(probe.track(traces_batch(1, 40))).await.unwrap();
    assert!(probe.wait_settled(Duration::from_secs(10)).await);
    assert_eq!(probe.count(AckOutcome::Dropped), 1);
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", reason::RETRIES_EXHAUSTED) == 160.0
        })
        .await,
        "dropped {}",
        t.dropped("traces", reason::RETRIES_EXHAUSTED)
    );
    lb.shutdown(in_secs(5.0)).await.unwrap();
    probe.assert_resolved();
}

#[tokio::test]
async fn dns_changes_add_and_retire_backends_and_move_their_data() {
    let (bs, addrs) = backends(3).await;
    let lookup = Arc::new(TableLookup::default());
    lookup.fail();
    let t = TestCtx::new("loadbalancing");
    let lb = started(
        &t,
        json!({
            "resolver": { "dns": { "hostname": "gateways", "interval": "20ms" } },
            "protocol": { "otlp": fast_otlp("60s") },
        }),
        Arc::clone(&lookup) as Arc<dyn Lookup>,
    )
    .await;
    // Nothing resolved: refused back to the caller, handles failed.
    let probe = AckProbe::new();
    let e = lb
        .consume(probe.track(traces_batch(1, 10)))
        .await
        .unwrap_err();
    assert!(matches!(e, ConsumeError::Retryable { .. }), "{e}");
    assert_eq!(probe.count(AckOutcome::Dropped), 1);

    lookup.set(&addrs[..2]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            lb.backends().0.len() == 2
        })
        .await
    );
    // Backend 1 stalls (keeps failing retryably, long retries): its data waits in its queue.
    bs[1].down.store(true, Ordering::SeqCst);
    lb.consume(probe.track(traces_batch(1, 60))).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { bs[1].calls() > 0 }).await);
    assert_eq!(bs[2].spans(), 0);
    // The name now points at 0 and 2: 1 is retired, its data goes to the new owners.
    lookup.set(&[addrs[0], addrs[2]]);
    assert!(
        t.wait_sent("traces", 240.0).await,
        "sent {}",
        t.sent("traces")
    );
    assert!(probe.wait_settled(Duration::from_secs(10)).await);
    assert_eq!(probe.count(AckOutcome::Delivered), 1);
    assert_eq!(bs[1].spans(), 0);
    assert!(bs[2].spans() > 0, "the new backend took its share");
    let (now, _) = lb.backends();
    assert_eq!(
        now,
        BTreeSet::from([addrs[0].to_string(), addrs[2].to_string()])
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert!(traces_at(&bs[0]).is_disjoint(&traces_at(&bs[2])));
    // A failing lookup keeps the last backends.
    lookup.fail();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(lb.backends().0.len(), 2);
    lb.shutdown(in_secs(5.0)).await.unwrap();
    probe.assert_resolved();
}

#[tokio::test]
async fn logs_by_request_id_stay_together() {
    let (bs, addrs) = backends(3).await;
    let t = TestCtx::new("loadbalancing");
    let lb = over_static(&t, &addrs, "5s", json!({ "routing_key": "request_id" })).await;
    let records = (0..300)
        .map(|i| {
            log(
                0,
                vec![
                    kv("request_id", format!("req-{}", i % 50)),
                    kv("n", i.to_string()),
                ],
            )
        })
        .collect();
    lb.consume(Batch::new(logs(records, "api"))).await.unwrap();
    assert!(t.wait_sent("logs", 300.0).await);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, b) in bs.iter().enumerate() {
        for r in b.logs.lock().unwrap().iter() {
            for rec in r
                .resource_logs
                .iter()
                .flat_map(|g| &g.scope_logs)
                .flat_map(|s| &s.log_records)
            {
                let id = pipeline_core::attributes::find(&rec.attributes, "request_id").unwrap();
                let id = pipeline_core::attributes::to_text(id).unwrap().into_owned();
                assert_eq!(*seen.entry(id).or_insert(i), i, "a request on two backends");
            }
        }
    }
    assert_eq!(seen.len(), 50);
    assert!(bs.iter().all(|b| b.log_records() > 0));
    lb.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn a_consume_cut_off_while_waiting_for_room_refuses_its_parts() {
    // One backend, down, with a queue of two batches (the one being sent counts) and long
    // retries: the third batch waits for room, and the caller gives up on it.
    let (bs, addrs) = backends(1).await;
    bs[0].down.store(true, Ordering::SeqCst);
    let t = TestCtx::new("loadbalancing");
    let mut otlp = fast_otlp("60s");
    otlp["sending_queue"] = json!({ "num_consumers": 1, "queue_size": 8 });
    let lb = started(
        &t,
        json!({ "resolver": static_list(&[&addrs[0].to_string()]), "protocol": { "otlp": otlp } }),
        Arc::new(TableLookup::default()),
    )
    .await;
    let probe = AckProbe::new();
    // In flight (retrying), then queued, then waiting for room.
    for first in [1u8, 2] {
        lb.consume(probe.track(traces_batch(first, 1)))
            .await
            .unwrap();
    }
    let waiting = tokio::time::timeout(
        Duration::from_millis(200),
        lb.consume(probe.track(traces_batch(3, 1))),
    )
    .await;
    assert!(waiting.is_err(), "the queue had room");
    assert_eq!(
        probe.outcome(2),
        Some(AckOutcome::Dropped),
        "refused, not unresolved"
    );
    lb.shutdown(in_secs(0.5)).await.unwrap();
    assert!(probe.wait_settled(Duration::from_secs(5)).await);
    probe.assert_resolved();
    assert_eq!(probe.count(AckOutcome::Dropped), 3);
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 8.0);
}

#[test]
fn a_persistent_queue_per_backend_is_refused_not_stranded() {
    let err = parse(json!({
        "resolver": static_list(&["127.0.0.1:4317"]),
        "protocol": { "otlp": { "sending_queue": { "storage": "/var/lib/sightline" } } }
    }))
    .unwrap_err();
    assert_eq!(err.path, "protocol.otlp.sending_queue.storage");
    assert!(err.message.contains("strand"), "{}", err.message);
}
