//! Forwarding without decoding (issue 19), through the real binary: what a pipeline that never
//! reads the data hands on is the bytes it received, and what arrives downstream is
//! field-for-field what was sent: with and without `send_batch_max_size` splits, fanned out to
//! two exporters, and next to a pipeline with a reading processor (which decodes its copy).

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

type Leaf = (Vec<u8>, Vec<u8>, Vec<u8>);

fn encoded<M: Message>(m: &Option<M>) -> Vec<u8> {
    m.as_ref().map(Message::encode_to_vec).unwrap_or_default()
}

/// Every item with its resource and scope, each encoded, sorted: two lists of resource groups
/// hold the same items in the same places exactly when these are equal, however the groups
/// were merged or cut.
macro_rules! leaves {
    ($groups:expr, $scopes:ident, $items:ident) => {{
        let mut out: Vec<Leaf> = Vec::new();
        for r in $groups {
            for s in &r.$scopes {
                for x in &s.$items {
                    out.push((encoded(&r.resource), encoded(&s.scope), x.encode_to_vec()));
                }
            }
        }
        out.sort();
        out
    }};
}

fn span_leaves(groups: &[ResourceSpans]) -> Vec<Leaf> {
    leaves!(groups, scope_spans, spans)
}

fn log_leaves(groups: &[ResourceLogs]) -> Vec<Leaf> {
    leaves!(groups, scope_logs, log_records)
}

fn metric_leaves(groups: &[ResourceMetrics]) -> Vec<Leaf> {
    leaves!(groups, scope_metrics, metrics)
}

/// What the test sends: several requests of each signal, with several resource groups.
struct Sent {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
}

impl Sent {
    fn new() -> Sent {
        let two_groups = |seed: u64, n: usize| {
            let mut r = traces_request(seed, n);
            r.resource_spans
                .extend(traces_request(seed + 100, n / 2).resource_spans);
            r
        };
        Sent {
            traces: (1..=4).map(|seed| two_groups(seed, 24)).collect(),
            metrics: (1..=4).map(metrics_request).collect(),
            logs: (1..=4)
                .map(|seed| {
                    let mut r = logs_request(seed, 18);
                    r.resource_logs
                        .extend(logs_request(seed + 100, 5).resource_logs);
                    r
                })
                .collect(),
        }
    }

    fn spans(&self) -> Vec<ResourceSpans> {
        self.traces
            .iter()
            .flat_map(|r| r.resource_spans.clone())
            .collect()
    }
    fn metrics(&self) -> Vec<ResourceMetrics> {
        self.metrics
            .iter()
            .flat_map(|r| r.resource_metrics.clone())
            .collect()
    }
    fn logs(&self) -> Vec<ResourceLogs> {
        self.logs
            .iter()
            .flat_map(|r| r.resource_logs.clone())
            .collect()
    }

    /// Sends everything over gRPC (and the last request of each signal over OTLP/HTTP
    /// protobuf), each answered with full success.
    async fn send(&self, sl: &Sightline) {
        let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
        let mut mc = MetricsServiceClient::connect(sl.grpc_url()).await.unwrap();
        let mut lc = LogsServiceClient::connect(sl.grpc_url()).await.unwrap();
        let (last_t, first_t) = self.traces.split_last().unwrap();
        let (last_m, first_m) = self.metrics.split_last().unwrap();
        let (last_l, first_l) = self.logs.split_last().unwrap();
        for r in first_t {
            let answer = tc.export(r.clone()).await.unwrap().into_inner();
            assert_eq!(answer.partial_success, None);
        }
        for r in first_m {
            mc.export(r.clone()).await.unwrap();
        }
        for r in first_l {
            lc.export(r.clone()).await.unwrap();
        }
        for (path, body) in [
            ("/v1/traces", last_t.encode_to_vec()),
            ("/v1/metrics", last_m.encode_to_vec()),
            ("/v1/logs", last_l.encode_to_vec()),
        ] {
            let (status, _, _) = http_post(
                &sl.http_url(path),
                &[("content-type", "application/x-protobuf")],
                body,
            )
            .await;
            assert_eq!(status, 200, "{path}");
        }
    }

    /// Waits for everything at `down` and checks it item for item.
    async fn arrived_at(&self, down: &Downstream, what: &str, sl: &Sightline) {
        let (spans, metrics, logs) = (self.spans(), self.metrics(), self.logs());
        let want_spans = pipeline_core::model::span_count(&spans);
        let want_logs = pipeline_core::model::log_record_count(&logs);
        let want_metrics = metric_leaves(&metrics).len();
        assert!(
            down.wait_until(|r| r.span_count() >= want_spans
                && pipeline_core::model::log_record_count(&r.resource_logs()) >= want_logs
                && metric_leaves(&r.resource_metrics()).len() >= want_metrics)
                .await,
            "{what}: not everything arrived; logs: {}",
            sl.logs()
        );
        let got = &down.received;
        assert_eq!(
            span_leaves(&got.resource_spans()),
            span_leaves(&spans),
            "{what}: spans"
        );
        assert_eq!(
            log_leaves(&got.resource_logs()),
            log_leaves(&logs),
            "{what}: logs"
        );
        assert_eq!(
            metric_leaves(&got.resource_metrics()),
            metric_leaves(&metrics),
            "{what}: metrics"
        );
    }
}

/// A config: the `otlp` receiver on `ports`, then `sections` (processors and exporters) and
/// `pipelines` (the entries under `service.pipelines`).
fn config(ports: Ports, sections: &str, pipelines: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
{sections}
service:
  telemetry:
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
{pipelines}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
    )
}

/// One pipeline per signal, `{signal}{suffix}: {rest}`.
fn per_signal(suffix: &str, rest: &str) -> String {
    ["traces", "metrics", "logs"]
        .iter()
        .map(|s| format!("    {s}{suffix}: {rest}\n"))
        .collect()
}

fn forwarded(page: &str, form: &str) -> f64 {
    sample(
        page,
        "sightline_receiver_requests_forwarded_total",
        &[("component_id", "otlp"), ("form", form)],
    )
    .unwrap_or(0.0)
}

fn received(page: &str, id: &str, kind: &str, signal: &str) -> f64 {
    sample(
        page,
        "sightline_component_items_received_total",
        &[
            ("component_id", id),
            ("component_kind", kind),
            ("signal", signal),
        ],
    )
    .unwrap_or(-1.0)
}

/// `otlp -> batch -> otlp`, once with the defaults and once with `send_batch_max_size: 7`
/// (most requests and groups are cut): every item arrives exactly as sent, the receiver
/// handed on bytes only, and the self-metrics count every item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_arrive_field_for_field_with_and_without_splits() {
    for batch in [
        "{ timeout: 50ms }",
        "{ timeout: 50ms, send_batch_size: 5, send_batch_max_size: 7 }",
    ] {
        let down = Downstream::start().await;
        let ports = Ports::new();
        let config = config(
            ports,
            &format!(
                "processors:\n  batch: {batch}\nexporters:\n  otlp: {{ endpoint: \"{}\", compression: none }}",
                down.url()
            ),
            &per_signal(
                "",
                "{ receivers: [otlp], processors: [batch], exporters: [otlp] }",
            ),
        );
        let sl = Sightline::start(&config, ports).await;
        let sent = Sent::new();
        sent.send(&sl).await;
        sent.arrived_at(&down, batch, &sl).await;

        let page = sl.metrics().await;
        assert_eq!(forwarded(&page, "bytes"), 12.0, "{batch}: {page}");
        assert_eq!(forwarded(&page, "decoded"), 0.0, "{batch}");
        let spans = pipeline_core::model::span_count(&sent.spans()) as f64;
        let points = pipeline_core::model::data_point_count(&sent.metrics()) as f64;
        let logs = pipeline_core::model::log_record_count(&sent.logs()) as f64;
        for (signal, n) in [("traces", spans), ("metrics", points), ("logs", logs)] {
            assert_eq!(
                received(&page, "otlp", "receiver", signal),
                n,
                "{batch} {signal}"
            );
            assert_eq!(
                received(&page, "batch", "processor", signal),
                n,
                "{batch} {signal}"
            );
            assert_eq!(
                received(&page, "otlp", "exporter", signal),
                n,
                "{batch} {signal}"
            );
        }
    }
}

/// One pipeline fans out to two exporters, a second pipeline from the same receiver reads the
/// data (`redaction`, matching nothing here). The receiver hands on bytes (one pipeline only
/// moves data); the reading pipeline decodes its own copy; all three backends get every item
/// as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_and_a_reading_pipeline_next_to_a_forwarding_one() {
    let (a, b, c) = (
        Downstream::start().await,
        Downstream::start().await,
        Downstream::start().await,
    );
    let ports = Ports::new();
    let sections = format!(
        r#"processors:
  batch: {{ timeout: 50ms, send_batch_size: 8, send_batch_max_size: 10 }}
  redaction:
    allow_all_keys: true
    blocked_values: ["nothing-in-this-data-matches-\\d{{40}}"]
exporters:
  otlp/a: {{ endpoint: "{a}", compression: none }}
  otlp/b: {{ endpoint: "{b}" }}
  otlp/c: {{ endpoint: "{c}", compression: none }}"#,
        a = a.url(),
        b = b.url(),
        c = c.url(),
    );
    let pipelines = per_signal(
        "/forward",
        "{ receivers: [otlp], processors: [batch], exporters: [otlp/a, otlp/b] }",
    ) + &per_signal(
        "/read",
        "{ receivers: [otlp], processors: [redaction, batch], exporters: [otlp/c] }",
    );
    let config = config(ports, &sections, &pipelines);
    let sl = Sightline::start(&config, ports).await;
    let sent = Sent::new();
    sent.send(&sl).await;
    sent.arrived_at(&a, "fan-out branch a", &sl).await;
    sent.arrived_at(&b, "fan-out branch b (gzip)", &sl).await;
    sent.arrived_at(&c, "the reading pipeline", &sl).await;
    let page = sl.metrics().await;
    assert_eq!(forwarded(&page, "bytes"), 12.0, "{page}");
    assert_eq!(forwarded(&page, "decoded"), 0.0);
}

/// When every pipeline of a receiver reads the data, it decodes requests itself, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_pipelines_all_read_decodes_itself() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(
        &pipeline_config(ports, &down.url(), "redaction, ", "compression: none").replace(
            "processors:\n",
            "processors:\n  redaction: { allow_all_keys: true }\n",
        ),
        ports,
    )
    .await;
    let sent = Sent::new();
    sent.send(&sl).await;
    sent.arrived_at(&down, "redaction -> batch", &sl).await;
    let page = sl.metrics().await;
    assert_eq!(forwarded(&page, "decoded"), 12.0, "{page}");
    assert_eq!(forwarded(&page, "bytes"), 0.0);
}
