//! Tests of the debug exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline_core::proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use pipeline_core::testing::{check_exporter, log_batch, span_batch};
use pipeline_core::{Batch, Component, Consumer};
use serde_json::json;

use super::exporter::{DebugExporter, Output};
use super::{DebugConfig, Factory, Verbosity};
use crate::helper::WRITE_FAILED;
use crate::helper::testutil::{TestCtx, in_secs};

fn exporter(t: &TestCtx, verbosity: Verbosity) -> (DebugExporter, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out: Output = buf.clone();
    let x = DebugExporter::new(
        "debug".into(),
        &DebugConfig { verbosity },
        t.ctx.telemetry.clone(),
        out,
    );
    (x, buf)
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8(buf.lock().unwrap().clone()).unwrap()
}

fn metric_batch() -> Batch {
    let gauge = |points: usize| Metric {
        name: "queue.depth".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default(); points],
        })),
        ..Default::default()
    };
    Batch::new(Payload::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![gauge(2), gauge(3)],
            ..Default::default()
        }],
        ..Default::default()
    }]))
}

#[tokio::test]
async fn conformance() {
    check_exporter(&Factory, &json!({})).await;
    check_exporter(&Factory, &json!({"verbosity": "detailed"})).await;
}

#[test]
fn config() {
    let c: DebugConfig = pipeline_core::parse_config(&json!({})).unwrap();
    assert_eq!(c.verbosity, Verbosity::Basic);
    let e =
        pipeline_core::parse_config::<DebugConfig>(&json!({"verbosity": "detailled"})).unwrap_err();
    assert_eq!(e.path, "verbosity");
    assert!(e.message.contains("did you mean \"detailed\""), "{e}");
}

#[tokio::test]
async fn basic_writes_one_line_of_counts() {
    let t = TestCtx::new("debug");
    let (x, buf) = exporter(&t, Verbosity::Basic);
    x.consume(span_batch(3)).await.unwrap();
    x.consume(log_batch(2)).await.unwrap();
    x.consume(metric_batch()).await.unwrap();
    assert_eq!(
        text(&buf),
        "debug: traces: 1 resource spans, 3 spans\n\
         debug: logs: 1 resource logs, 2 log records\n\
         debug: metrics: 1 resource metrics, 2 metrics, 5 data points\n"
    );
    assert_eq!(t.sent("traces"), 3.0);
    assert_eq!(t.sent("logs"), 2.0);
    assert_eq!(t.sent("metrics"), 5.0);
    x.shutdown(in_secs(1.0)).await.unwrap();
}

#[tokio::test]
async fn detailed_adds_the_batch_as_otlp_json() {
    let t = TestCtx::new("debug");
    let (x, buf) = exporter(&t, Verbosity::Detailed);
    let batch = span_batch(2);
    x.consume(batch.clone()).await.unwrap();
    let out = text(&buf);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "debug: traces: 1 resource spans, 2 spans");
    let request: ExportTraceServiceRequest = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(Payload::Traces(request.resource_spans), batch.payload);
}

struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "closed",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_broken_stream_counts_drops() {
    let t = TestCtx::new("debug");
    let out: Output = Arc::new(Mutex::new(Broken));
    let x = DebugExporter::new(
        "debug".into(),
        &DebugConfig::default(),
        t.ctx.telemetry.clone(),
        out,
    );
    x.consume(span_batch(4)).await.unwrap();
    assert_eq!(t.dropped("traces", WRITE_FAILED), 4.0);
    assert_eq!(t.sent("traces"), 0.0);
}
