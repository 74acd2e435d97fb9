//! Tests of the debug exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline_core::proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use pipeline_core::telemetry::reason;
use pipeline_core::testing::{check_exporter, log_batch, span_batch};
use pipeline_core::{Batch, Component, ConsumeError, Consumer};
use serde_json::json;

use super::exporter::{DebugExporter, Output};
use super::{DebugConfig, Factory, Verbosity};
use crate::helper::WRITE_FAILED;
use crate::helper::testutil::{Acks, TestCtx, eventually, in_secs};

/// A stream into memory the test can read, optionally held shut by a [`Gate`].
#[derive(Clone, Default)]
struct Captured {
    text: Arc<Mutex<Vec<u8>>>,
    gate: Option<Gate>,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.text.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        self.text.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Blocks writers (as a full pipe would) until opened, or for 5 s at most, remembering
/// whether anyone had to give up waiting.
#[derive(Clone, Default)]
struct Gate {
    state: Arc<(Mutex<bool>, Condvar)>,
    waited_out: Arc<AtomicBool>,
}

impl Gate {
    fn open(&self) {
        *self.state.0.lock().unwrap() = true;
        self.state.1.notify_all();
    }

    fn pass(&self) {
        let (open, changed) = &*self.state;
        let (open, timeout) = changed
            .wait_timeout_while(open.lock().unwrap(), Duration::from_secs(5), |o| !*o)
            .unwrap();
        if timeout.timed_out() && !*open {
            self.waited_out.store(true, Ordering::SeqCst);
        }
    }
}

fn exporter_to(t: &TestCtx, verbosity: Verbosity, out: Output) -> DebugExporter {
    DebugExporter::new(
        "debug".into(),
        &DebugConfig { verbosity },
        t.ctx.telemetry.clone(),
        out,
    )
    .unwrap()
}

fn exporter(t: &TestCtx, verbosity: Verbosity) -> (DebugExporter, Captured) {
    let out = Captured::default();
    (exporter_to(t, verbosity, Box::new(out.clone())), out)
}

/// A basic exporter whose stream blocks until the gate opens.
fn gated(t: &TestCtx) -> (DebugExporter, Captured, Gate) {
    let gate = Gate::default();
    let out = Captured {
        gate: Some(gate.clone()),
        ..Captured::default()
    };
    let x = exporter_to(t, Verbosity::Basic, Box::new(out.clone()));
    (x, out, gate)
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
    // Shutdown waits for the writer thread to write everything queued.
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(
        buf.text(),
        "debug: traces: 1 resource spans, 3 spans\n\
         debug: logs: 1 resource logs, 2 log records\n\
         debug: metrics: 1 resource metrics, 2 metrics, 5 data points\n"
    );
    assert_eq!(t.sent("traces"), 3.0);
    assert_eq!(t.sent("logs"), 2.0);
    assert_eq!(t.sent("metrics"), 5.0);
    assert!(matches!(
        x.consume(span_batch(1)).await,
        Err(ConsumeError::ShuttingDown)
    ));
}

#[tokio::test]
async fn detailed_adds_the_batch_as_otlp_json() {
    let t = TestCtx::new("debug");
    let (x, buf) = exporter(&t, Verbosity::Detailed);
    let batch = span_batch(2);
    x.consume(batch.clone()).await.unwrap();
    x.shutdown(in_secs(5.0)).await.unwrap();
    let out = buf.text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "debug: traces: 1 resource spans, 2 spans");
    let request: ExportTraceServiceRequest = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        Payload::Traces(request.resource_spans),
        batch.into_parts().0
    );
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
async fn a_broken_stream_counts_drops_and_fails_the_tokens() {
    let t = TestCtx::new("debug");
    let x = exporter_to(&t, Verbosity::Basic, Box::new(Broken));
    let acks = Acks::default();
    x.consume(acks.track(span_batch(4))).await.unwrap();
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(t.dropped("traces", WRITE_FAILED), 4.0);
    assert_eq!(t.sent("traces"), 0.0);
    assert_eq!(acks.outcomes(), vec![false]);
}

/// One runtime thread, as on a small node: a write that blocks (stderr into a full pipe)
/// must leave it free for everything else, and the tokens must wait for the write.
#[tokio::test(flavor = "current_thread")]
async fn a_blocked_stderr_never_blocks_the_runtime() {
    let t = TestCtx::new("debug");
    let (x, out, gate) = gated(&t);
    let acks = Acks::default();
    // Can only run while consume does not hold the one runtime thread.
    let opener = tokio::spawn({
        let gate = gate.clone();
        let acks = acks.clone();
        async move {
            let resolved_before_the_write = acks.outcomes();
            gate.open();
            resolved_before_the_write
        }
    });
    x.consume(acks.track(span_batch(1))).await.unwrap();
    x.consume(acks.track(log_batch(2))).await.unwrap();
    assert_eq!(opener.await.unwrap(), Vec::<bool>::new());
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert!(
        !gate.waited_out.load(Ordering::SeqCst),
        "consume blocked the runtime thread while stderr was blocked"
    );
    assert_eq!(
        out.text(),
        "debug: traces: 1 resource spans, 1 spans\ndebug: logs: 1 resource logs, 2 log records\n"
    );
    assert_eq!(acks.outcomes(), vec![true, true]);
}

#[tokio::test]
async fn what_is_still_queued_at_the_shutdown_deadline_is_counted() {
    let t = TestCtx::new("debug");
    let (x, _, gate) = gated(&t);
    let acks = Acks::default();
    x.consume(acks.track(span_batch(1))).await.unwrap();
    x.consume(acks.track(span_batch(2))).await.unwrap();
    x.shutdown(in_secs(0.05)).await.unwrap();
    gate.open();
    // The write in progress finishes; the batch behind it is dropped and counted.
    assert!(
        eventually(Duration::from_secs(5), || async {
            acks.outcomes().len() == 2
        })
        .await
    );
    assert_eq!(acks.outcomes(), vec![true, false]);
    assert_eq!(t.sent("traces"), 1.0);
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 2.0);
}
