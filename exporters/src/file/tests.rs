//! Tests of the file exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline_core::testing::{check_exporter, log_batch, span_batch};
use pipeline_core::{ConsumeError, DynExporterFactory, Host};
use serde_json::{Value, json};

use super::{Factory, FileConfig};
use crate::helper::WRITE_FAILED;
use crate::helper::testutil::{Acks, TestCtx, eventually, in_secs};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sightline-file-exporter-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn host() -> Host {
    Host::new(std::env::temp_dir())
}

async fn started(t: &TestCtx, config: Value) -> std::sync::Arc<dyn ConsumerComponent> {
    let x = Factory.create(t.ctx.clone(), &config).unwrap();
    x.start(&host()).await.unwrap();
    x
}

#[tokio::test]
async fn conformance() {
    let dir = scratch("conformance");
    check_exporter(&Factory, &json!({"path": dir.join("out.jsonl")})).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config() {
    let c: FileConfig = pipeline_core::parse_config(&json!({"path": "x.jsonl"})).unwrap();
    assert_eq!(c.flush_interval.get(), Duration::from_secs(1));
    let e = pipeline_core::parse_config::<FileConfig>(&json!({})).unwrap_err();
    assert!(e.message.contains("path"), "{e}");
    let e = pipeline_core::parse_config::<FileConfig>(&json!({"path": "x", "rotate": true}))
        .unwrap_err();
    assert_eq!(e.path, "rotate");
    assert!(Factory.validate(&json!({"path": ""})).is_err());
    assert!(Factory.validate(&json!({"path": "/tmp/dir/"})).is_err());
}

#[tokio::test]
async fn writes_one_export_request_per_line_and_flushes_at_shutdown() {
    let dir = scratch("lines");
    let path = dir.join("nested/deeper/out.jsonl");
    let t = TestCtx::new("file");
    let x = started(&t, json!({"path": path, "flush_interval": "1h"})).await;
    let spans = span_batch(2);
    let logs = log_batch(3);
    x.consume(spans.clone()).await.unwrap();
    x.consume(logs.clone()).await.unwrap();
    // Buffered: nothing on disk, nothing counted yet.
    assert!(lines(&path).is_empty());
    assert_eq!(t.sent("traces"), 0.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
    let written = lines(&path);
    assert_eq!(written.len(), 2);
    let traces: ExportTraceServiceRequest = serde_json::from_str(&written[0]).unwrap();
    assert_eq!(Payload::Traces(traces.resource_spans), spans.into_parts().0);
    let logs_back: ExportLogsServiceRequest = serde_json::from_str(&written[1]).unwrap();
    assert_eq!(Payload::Logs(logs_back.resource_logs), logs.into_parts().0);
    assert!(written[0].starts_with("{\"resourceSpans\":"));
    assert_eq!(t.sent("traces"), 2.0);
    assert_eq!(t.sent("logs"), 3.0);
    assert!(matches!(
        x.consume(span_batch(1)).await,
        Err(ConsumeError::ShuttingDown)
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn flushes_periodically_and_appends() {
    let dir = scratch("periodic");
    let path = dir.join("out.jsonl");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let t = TestCtx::new("file");
    let x = started(&t, json!({"path": path, "flush_interval": "20ms"})).await;
    x.consume(span_batch(1)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { lines(&path).len() == 2 }).await);
    assert_eq!(lines(&path)[0], "{\"earlier\":true}");
    assert!(eventually(Duration::from_secs(5), || async { t.sent("traces") == 1.0 }).await);
    x.shutdown(in_secs(5.0)).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn zero_interval_writes_every_batch() {
    let dir = scratch("zero");
    let path = dir.join("out.jsonl");
    let t = TestCtx::new("file");
    let x = started(&t, json!({"path": path, "flush_interval": "0"})).await;
    x.consume(span_batch(1)).await.unwrap();
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(t.sent("traces"), 1.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_fails_the_start() {
    let dir = scratch("blocked");
    std::fs::create_dir_all(&dir).unwrap();
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let t = TestCtx::new("file");
    let x = Factory
        .create(t.ctx.clone(), &json!({"path": blocker.join("out.jsonl")}))
        .unwrap();
    let e = x.start(&host()).await.unwrap_err().to_string();
    assert!(e.contains("a-file"), "{e}");
    // Not started: data is refused, not lost.
    assert!(matches!(
        x.consume(span_batch(1)).await,
        Err(ConsumeError::Retryable { .. })
    ));
    x.shutdown(in_secs(1.0)).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn acknowledges_a_batch_only_once_its_line_is_written() {
    let dir = scratch("acks");
    let path = dir.join("out.jsonl");
    let t = TestCtx::new("file");
    let x = started(&t, json!({"path": path, "flush_interval": "1h"})).await;
    let acks = Acks::default();
    x.consume(acks.track(span_batch(2))).await.unwrap();
    x.consume(acks.track(log_batch(1))).await.unwrap();
    // Accepted, buffered, not written: a kill -9 now must not have moved any checkpoint.
    assert!(lines(&path).is_empty());
    assert_eq!(acks.outcomes(), Vec::<bool>::new());
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(lines(&path).len(), 2);
    assert_eq!(acks.outcomes(), vec![true, true]);
    // Refused after shutdown: the token fails, the caller is told.
    assert!(matches!(
        x.consume(acks.track(span_batch(1))).await,
        Err(ConsumeError::ShuttingDown)
    ));
    assert_eq!(acks.outcomes(), vec![true, true, false]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failed_write_counts_the_items_and_fails_their_tokens() {
    // /dev/full opens for appending and fails every write with ENOSPC: a full disk.
    let t = TestCtx::new("file");
    let x = started(&t, json!({"path": "/dev/full", "flush_interval": "1h"})).await;
    let acks = Acks::default();
    x.consume(acks.track(span_batch(3))).await.unwrap();
    x.consume(acks.track(span_batch(2))).await.unwrap();
    assert_eq!(acks.outcomes(), Vec::<bool>::new());
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(acks.outcomes(), vec![false, false]);
    assert_eq!(t.dropped("traces", WRITE_FAILED), 5.0);
    assert_eq!(t.sent("traces"), 0.0);

    // Also when the write happens inside consume (flush_interval 0).
    let t = TestCtx::new("file");
    let x = started(&t, json!({"path": "/dev/full", "flush_interval": "0"})).await;
    let acks = Acks::default();
    x.consume(acks.track(log_batch(4))).await.unwrap();
    assert_eq!(acks.outcomes(), vec![false]);
    assert_eq!(t.dropped("logs", WRITE_FAILED), 4.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn a_write_cancelled_at_any_point_neither_tears_nor_repeats_a_line() {
    // 4 MiB of numbered lines, written by calls that are cut off after a few polls each (at
    // whatever await they reached), then once to the end: the file holds every line exactly
    // once, in order. The calls are few, so a regression that rewrites the whole buffer
    // each time stays small on disk. On a loaded machine every call may happen to finish
    // within its polls, which proves nothing: such a round is run again.
    for round in 0..5 {
        let (cut_off, got, expected) = cancelled_writes(round).await;
        assert_eq!(got.len(), expected.len(), "lines torn or repeated");
        let first_wrong = got.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_wrong, None, "lines out of order or torn");
        if cut_off > 0 {
            return;
        }
    }
    panic!("no call was cut off in five rounds: the test proves nothing");
}

/// One round of the test above: how many calls were cut off, the lines in the file, the
/// lines written.
async fn cancelled_writes(round: usize) -> (usize, Vec<String>, Vec<String>) {
    let dir = scratch(&format!("cancelled-writes-{round}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.jsonl");
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .unwrap();
    let expected: Vec<String> = (0..40_000).map(|i| format!("{i:0>100}")).collect();
    let mut buf: Vec<u8> = expected
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    let mut cut_off = 0;
    for polls in 1..20 {
        if buf.is_empty() {
            break;
        }
        // Polled a few times, yielding in between, then dropped wherever it is (timers are
        // too coarse to cut a fast write off reliably).
        let mut call = Box::pin(super::writer::write_out(&mut file, &mut buf));
        let mut finished = false;
        for _ in 0..polls {
            let ready = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(call.as_mut().poll(cx).is_ready())
            })
            .await;
            if ready {
                finished = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        if !finished {
            cut_off += 1;
        }
    }
    super::writer::write_out(&mut file, &mut buf).await.unwrap();
    let got = lines(&path);
    let _ = std::fs::remove_dir_all(&dir);
    (cut_off, got, expected)
}
