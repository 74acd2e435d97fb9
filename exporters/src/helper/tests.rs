//! Tests of the queued exporter against a scripted sender.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::config::HumanDuration;
use pipeline_core::telemetry::reason;
use pipeline_core::testing::AckProbe;
use pipeline_core::testing::{log_batch, span_batch};
use pipeline_core::{AckOutcome, AckToken, Batch, Component, ConsumeError, Consumer, Host};
use tokio::time::Instant;

use super::testutil::{TestCtx, eventually, fast_retry, fast_settings, in_secs};
use super::*;

enum Step {
    Reply(Result<Delivered, SendError>),
    Hang,
}

#[derive(Default)]
struct Scripted {
    steps: Mutex<VecDeque<Step>>,
    otherwise: Mutex<Option<SendError>>,
    attempts: AtomicUsize,
    delivered_items: AtomicUsize,
    started: AtomicBool,
    stopped: AtomicBool,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Scripted {
        Scripted {
            steps: Mutex::new(steps.into()),
            ..Default::default()
        }
    }

    fn failing(e: SendError) -> Scripted {
        let s = Scripted::default();
        *s.otherwise.lock().unwrap() = Some(e);
        s
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Sender for Scripted {
    async fn start(&self) -> Result<(), pipeline_core::ComponentError> {
        self.started.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let step = self.steps.lock().unwrap().pop_front();
        let result = match step {
            Some(Step::Reply(r)) => r,
            Some(Step::Hang) => std::future::pending().await,
            None => match self.otherwise.lock().unwrap().clone() {
                Some(e) => Err(e),
                None => Ok(Delivered::all()),
            },
        };
        if result.is_ok() {
            self.delivered_items
                .fetch_add(batch.item_count(), Ordering::SeqCst);
        }
        result
    }

    async fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn host() -> Host {
    Host::new(std::env::temp_dir())
}

fn unavailable() -> SendError {
    SendError::retryable("backend unavailable")
}

fn exporter(t: &TestCtx, settings: ExporterSettings, s: Scripted) -> QueuedExporter<Scripted> {
    QueuedExporter::new(&t.ctx, settings, s)
}

#[tokio::test]
async fn sends_queued_batches_and_counts_them() {
    let t = TestCtx::new("otlp/q");
    let x = exporter(&t, fast_settings(), Scripted::default());
    x.start(&host()).await.unwrap();
    assert!(x.sender().started.load(Ordering::SeqCst));
    assert_eq!(t.health(), "ok");
    for _ in 0..3 {
        x.consume(span_batch(4)).await.unwrap();
    }
    x.consume(log_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.sent("traces") == 12.0
        })
        .await
    );
    assert!(eventually(Duration::from_secs(5), || async { t.sent("logs") == 2.0 }).await);
    assert_eq!(t.send_attempts("success"), 4.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert!(x.sender().stopped.load(Ordering::SeqCst));
    assert_eq!(t.health(), "stopped");
    assert!(matches!(
        x.consume(span_batch(1)).await,
        Err(ConsumeError::ShuttingDown)
    ));
}

#[tokio::test]
async fn retryable_errors_are_retried_until_success() {
    let t = TestCtx::new("otlp/retry");
    let s = Scripted::new(vec![
        Step::Reply(Err(unavailable())),
        Step::Reply(Err(unavailable())),
    ]);
    let x = exporter(&t, fast_settings(), s);
    x.start(&host()).await.unwrap();
    x.consume(span_batch(5)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { t.sent("traces") == 5.0 }).await);
    assert_eq!(x.sender().attempts(), 3);
    assert_eq!(t.send_attempts("failure"), 2.0);
    assert_eq!(t.send_attempts("success"), 1.0);
    assert_eq!(t.health(), "ok", "back to ok after a success");
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::RETRIES_EXHAUSTED), 0.0);
}

#[tokio::test]
async fn health_is_recoverable_while_failing() {
    let t = TestCtx::new("otlp/down");
    let mut settings = fast_settings();
    settings.retry_on_failure.max_elapsed_time = HumanDuration::from_secs(0);
    let x = exporter(&t, settings, Scripted::failing(unavailable()));
    x.start(&host()).await.unwrap();
    x.consume(span_batch(1)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            x.sender().attempts() >= 2
        })
        .await
    );
    assert!(
        t.health().starts_with("recoverable error"),
        "{}",
        t.health()
    );
    assert!(t.health().contains("backend unavailable"));
    x.shutdown(in_secs(0.05)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 1.0);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let t = TestCtx::new("otlp/perm");
    let s = Scripted::new(vec![
        Step::Reply(Err(SendError::permanent("HTTP 400: bad data"))),
        Step::Reply(Err(SendError::permanent_health("HTTP 401: unauthorized"))),
    ]);
    let x = exporter(&t, fast_settings(), s);
    x.start(&host()).await.unwrap();
    x.consume(span_batch(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", reason::REJECTED) == 3.0
        })
        .await
    );
    assert_eq!(x.sender().attempts(), 1);
    assert_eq!(t.health(), "ok", "bad data says nothing about the backend");
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", reason::REJECTED) == 5.0
        })
        .await
    );
    assert_eq!(x.sender().attempts(), 2);
    assert!(t.health().starts_with("permanent error"), "{}", t.health());
    // A later success brings it back.
    x.consume(span_batch(1)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { t.sent("traces") == 1.0 }).await);
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn gives_up_after_max_elapsed_time() {
    let t = TestCtx::new("otlp/exhaust");
    let mut settings = fast_settings();
    settings.retry_on_failure = fast_retry(Duration::from_millis(150));
    let x = exporter(&t, settings, Scripted::failing(unavailable()));
    x.start(&host()).await.unwrap();
    let begun = Instant::now();
    x.consume(span_batch(7)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", reason::RETRIES_EXHAUSTED) == 7.0
        })
        .await
    );
    assert!(begun.elapsed() < Duration::from_secs(2));
    // 20 + 30 + 45 = 95ms fits in 150ms, the next 67.5ms does not.
    assert_eq!(x.sender().attempts(), 4);
    assert_eq!(t.sent("traces"), 0.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn retry_disabled_drops_at_the_first_failure() {
    let t = TestCtx::new("otlp/noretry");
    let mut settings = fast_settings();
    settings.retry_on_failure.enabled = false;
    let x = exporter(&t, settings, Scripted::failing(unavailable()));
    x.start(&host()).await.unwrap();
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", reason::RETRIES_EXHAUSTED) == 2.0
        })
        .await
    );
    assert_eq!(x.sender().attempts(), 1);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn retry_after_overrides_the_backoff() {
    let t = TestCtx::new("otlp/hint");
    let mut settings = fast_settings();
    // Without the hint the retry would wait 10s.
    settings.retry_on_failure.initial_interval = HumanDuration::from_secs(10);
    settings.retry_on_failure.max_interval = HumanDuration::from_secs(10);
    let s = Scripted::new(vec![Step::Reply(Err(SendError::Retryable {
        reason: "HTTP 429".into(),
        retry_after: Some(Duration::from_millis(20)),
    }))]);
    let x = exporter(&t, settings, s);
    x.start(&host()).await.unwrap();
    x.consume(span_batch(1)).await.unwrap();
    assert!(eventually(Duration::from_secs(3), || async { t.sent("traces") == 1.0 }).await);
    assert_eq!(x.sender().attempts(), 2);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    let t = TestCtx::new("otlp/timeout");
    let mut settings = fast_settings();
    settings.timeout = HumanDuration::from_millis(50);
    let x = exporter(&t, settings, Scripted::new(vec![Step::Hang]));
    x.start(&host()).await.unwrap();
    x.consume(span_batch(2)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { t.sent("traces") == 2.0 }).await);
    assert_eq!(x.sender().attempts(), 2);
    assert_eq!(t.send_attempts("failure"), 1.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn partial_success_counts_rejected_items() {
    let t = TestCtx::new("otlp/partial");
    let s = Scripted::new(vec![Step::Reply(Ok(Delivered {
        rejected_items: 2,
        message: "2 spans too old".into(),
    }))]);
    let x = exporter(&t, fast_settings(), s);
    x.start(&host()).await.unwrap();
    x.consume(span_batch(5)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { t.sent("traces") == 3.0 }).await);
    assert_eq!(t.dropped("traces", reason::REJECTED), 2.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn full_queue_refuses_at_once_without_blocking() {
    let t = TestCtx::new("otlp/refuse");
    let mut settings = fast_settings();
    settings.sending_queue.queue_size = 10;
    settings.sending_queue.block_on_overflow = false;
    // Not started: nothing drains the queue.
    let x = exporter(&t, settings, Scripted::default());
    x.consume(span_batch(8)).await.unwrap();
    assert!(matches!(
        x.consume(span_batch(5)).await,
        Err(ConsumeError::Full)
    ));
    assert_eq!(x.queued_items(), 8);
    assert_eq!(
        t.metric("sightline_queue_size", &[("component_id", "otlp/refuse")]),
        8.0
    );
    assert_eq!(
        t.metric(
            "sightline_queue_capacity",
            &[("component_id", "otlp/refuse")]
        ),
        10.0
    );
    // Shutdown without start: safe, and what was accepted is counted.
    x.shutdown(in_secs(1.0)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 8.0);
}

#[tokio::test]
async fn full_queue_blocks_until_room() {
    let t = TestCtx::new("otlp/block");
    let mut settings = fast_settings();
    settings.sending_queue.queue_size = 10;
    let x = Arc::new(exporter(&t, settings, Scripted::default()));
    x.consume(span_batch(8)).await.unwrap();
    let x2 = Arc::clone(&x);
    let blocked = tokio::spawn(async move { x2.consume(span_batch(5)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !blocked.is_finished(),
        "consume must wait while the queue is full"
    );
    x.start(&host()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.sent("traces") == 13.0
        })
        .await
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_the_queue_before_the_deadline() {
    let t = TestCtx::new("otlp/drain");
    let mut settings = fast_settings();
    settings.sending_queue.num_consumers = 1;
    // One retry per batch on the way, so draining takes a while.
    let steps = (0..5).map(|_| Step::Reply(Err(unavailable()))).collect();
    let x = exporter(&t, settings, Scripted::new(steps));
    for _ in 0..5 {
        x.consume(span_batch(2)).await.unwrap();
    }
    x.start(&host()).await.unwrap();
    x.shutdown(in_secs(10.0)).await.unwrap();
    assert_eq!(t.sent("traces"), 10.0);
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 0.0);
    assert_eq!(x.queued_items(), 0);
}

#[tokio::test]
async fn shutdown_deadline_aborts_and_counts_everything_left() {
    let t = TestCtx::new("otlp/deadline");
    let mut settings = fast_settings();
    settings.retry_on_failure.max_elapsed_time = HumanDuration::from_secs(0);
    let x = exporter(&t, settings, Scripted::failing(unavailable()));
    x.start(&host()).await.unwrap();
    for _ in 0..4 {
        x.consume(span_batch(3)).await.unwrap();
    }
    // Two workers hold a batch each, two batches wait in the queue.
    assert!(
        eventually(Duration::from_secs(5), || async {
            x.sender().attempts() >= 2
        })
        .await
    );
    let begun = Instant::now();
    x.shutdown(in_secs(0.3)).await.unwrap();
    let took = begun.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 12.0);
    assert_eq!(t.sent("traces"), 0.0);
    assert_eq!(x.queued_items(), 0);
}

#[tokio::test]
async fn hanging_send_is_aborted_at_the_deadline() {
    let t = TestCtx::new("otlp/hang");
    let mut settings = fast_settings();
    settings.timeout = HumanDuration::from_secs(0);
    let x = exporter(&t, settings, Scripted::new(vec![Step::Hang]));
    x.start(&host()).await.unwrap();
    x.consume(span_batch(4)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            x.sender().attempts() == 1
        })
        .await
    );
    x.shutdown(in_secs(0.1)).await.unwrap();
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 4.0);
}

#[tokio::test]
async fn every_batch_is_resolved_delivered_or_dropped() {
    let t = TestCtx::new("otlp/ack");
    let x = exporter(
        &t,
        fast_settings(),
        Scripted::new(vec![
            Step::Reply(Ok(Delivered::all())),
            Step::Reply(Err(SendError::permanent("bad"))),
        ]),
    );
    x.start(&host()).await.unwrap();
    let probe = AckProbe::new();
    x.consume(probe.track(span_batch(1))).await.unwrap();
    x.consume(probe.track(span_batch(1))).await.unwrap();
    assert!(probe.wait_settled(Duration::from_secs(5)).await);
    assert_eq!(probe.count(AckOutcome::Delivered), 1);
    assert_eq!(probe.count(AckOutcome::Dropped), 1);
    x.shutdown(in_secs(5.0)).await.unwrap();
    // Refused after shutdown: resolved as dropped, the caller told so.
    let refused = x.consume(probe.track(span_batch(1))).await;
    assert!(matches!(refused, Err(ConsumeError::ShuttingDown)));
    assert_eq!(probe.outcome(2), Some(AckOutcome::Dropped));
    probe.assert_resolved();

    // Without a queue the caller's call carries the outcome and the resolution.
    let t = TestCtx::new("otlp/ack_sync");
    let x = exporter(
        &t,
        sync_settings(),
        Scripted::new(vec![
            Step::Reply(Ok(Delivered::all())),
            Step::Reply(Err(SendError::permanent("bad"))),
        ]),
    );
    let probe = AckProbe::new();
    x.consume(probe.track(span_batch(1))).await.unwrap();
    assert!(x.consume(probe.track(span_batch(1))).await.is_err());
    assert_eq!(probe.outcome(0), Some(AckOutcome::Delivered));
    assert_eq!(probe.outcome(1), Some(AckOutcome::Dropped));
    probe.assert_resolved();
}

fn sync_settings() -> ExporterSettings {
    let mut s = fast_settings();
    s.sending_queue.enabled = false;
    s.retry_on_failure = fast_retry(Duration::from_millis(100));
    s
}

#[tokio::test]
async fn without_a_queue_consume_returns_the_outcome() {
    let t = TestCtx::new("otlp/sync");
    let s = Scripted::new(vec![
        Step::Reply(Err(unavailable())),
        Step::Reply(Ok(Delivered::all())),
        Step::Reply(Err(SendError::permanent("HTTP 400"))),
    ]);
    *s.otherwise.lock().unwrap() = Some(SendError::Retryable {
        reason: "HTTP 503".into(),
        retry_after: Some(Duration::from_millis(30)),
    });
    let x = exporter(&t, sync_settings(), s);
    // Works before start too: nothing to spawn.
    x.consume(span_batch(2)).await.unwrap();
    assert_eq!(t.sent("traces"), 2.0);
    assert_eq!(x.sender().attempts(), 2);
    assert!(matches!(
        x.consume(span_batch(2)).await,
        Err(ConsumeError::Permanent(_))
    ));
    assert_eq!(x.sender().attempts(), 3);
    match x.consume(span_batch(2)).await {
        Err(ConsumeError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_millis(30)));
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    // The caller kept responsibility: nothing counted as dropped.
    assert_eq!(t.dropped("traces", reason::REJECTED), 0.0);
    assert_eq!(t.dropped("traces", reason::RETRIES_EXHAUSTED), 0.0);
    x.shutdown(in_secs(1.0)).await.unwrap();
}

#[tokio::test]
async fn without_a_queue_shutdown_waits_then_aborts_callers() {
    let t = TestCtx::new("otlp/syncstop");
    let mut settings = sync_settings();
    settings.timeout = HumanDuration::from_secs(0);
    let x = Arc::new(exporter(&t, settings, Scripted::new(vec![Step::Hang])));
    x.start(&host()).await.unwrap();
    let x2 = Arc::clone(&x);
    let caller = tokio::spawn(async move { x2.consume(span_batch(1)).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            x.sender().attempts() == 1
        })
        .await
    );
    x.shutdown(in_secs(0.1)).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(2), caller)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(ConsumeError::ShuttingDown)),
        "{result:?}"
    );
    assert_eq!(t.dropped("traces", reason::SHUTDOWN_TIMEOUT), 0.0);
}

#[tokio::test]
async fn start_twice_and_shutdown_twice_are_harmless() {
    let t = TestCtx::new("otlp/twice");
    let x = exporter(&t, fast_settings(), Scripted::default());
    x.start(&host()).await.unwrap();
    x.start(&host()).await.unwrap();
    x.consume(span_batch(1)).await.unwrap();
    x.shutdown(in_secs(5.0)).await.unwrap();
    x.shutdown(in_secs(5.0)).await.unwrap();
    assert_eq!(t.sent("traces"), 1.0);
    // Start after shutdown does not revive it.
    x.start(&host()).await.unwrap();
    assert!(matches!(
        x.consume(span_batch(1)).await,
        Err(ConsumeError::ShuttingDown)
    ));
}

#[test]
fn config_defaults_match_the_collector() {
    let r: RetryConfig = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(r, RetryConfig::default());
    assert!(r.enabled);
    assert_eq!(r.initial_interval, HumanDuration::from_secs(5));
    assert_eq!(r.max_interval, HumanDuration::from_secs(30));
    assert_eq!(r.max_elapsed_time, HumanDuration::from_secs(300));
    assert_eq!(r.multiplier, 1.5);
    assert_eq!(r.randomization_factor, 0.5);
    let q: QueueConfig = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(q, QueueConfig::default());
    assert_eq!((q.num_consumers, q.queue_size), (10, 10_000));
    assert!(q.enabled && q.block_on_overflow);
    assert!(
        serde_json::from_value::<RetryConfig>(serde_json::json!({"initial_intervl": "1s"}))
            .is_err()
    );
    let bad = RetryConfig {
        multiplier: 0.5,
        ..RetryConfig::default()
    };
    assert_eq!(
        bad.validate("retry_on_failure").unwrap_err().path,
        "retry_on_failure.multiplier"
    );
    let bad = QueueConfig {
        num_consumers: 0,
        ..QueueConfig::default()
    };
    assert_eq!(
        bad.validate("sending_queue").unwrap_err().path,
        "sending_queue.num_consumers"
    );
}

#[test]
fn endpoints_and_headers() {
    assert_eq!(
        parse_endpoint("collector:4317", "endpoint", true)
            .unwrap()
            .to_string(),
        "http://collector:4317/"
    );
    assert!(parse_endpoint("collector:4317", "endpoint", false).is_err());
    assert_eq!(
        parse_endpoint("https://x.example/otlp", "endpoint", false)
            .unwrap()
            .path(),
        "/otlp"
    );
    assert!(parse_endpoint("ftp://x", "endpoint", true).is_err());
    assert!(parse_endpoint("", "endpoint", true).is_err());
    assert!(parse_endpoint("http://u:p@x:1", "endpoint", true).is_err());

    let mut h = Headers::default();
    h.0.insert("X-Api-Key".into(), "secret".into());
    let map = h.to_header_map("headers").unwrap();
    assert_eq!(map["x-api-key"], "secret");
    h.0.insert("bad header".into(), "v".into());
    assert_eq!(
        h.validate("headers").unwrap_err().path,
        "headers.bad header"
    );
}

#[test]
fn gzip_round_trips() {
    use std::io::Read;
    let data = b"hello hello hello hello".repeat(100);
    let z = Compression::Gzip.compress(data.clone()).unwrap();
    assert!(z.len() < data.len());
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    assert_eq!(Compression::None.compress(data.clone()).unwrap(), data);
    let c: Compression = serde_json::from_value(serde_json::json!("none")).unwrap();
    assert_eq!(c, Compression::None);
    assert!(serde_json::from_value::<Compression>(serde_json::json!("zstd")).is_err());
}

#[tokio::test]
async fn dropping_without_shutdown_stops_workers_and_counts() {
    let t = TestCtx::new("otlp/dropped");
    let mut settings = fast_settings();
    settings.sending_queue.num_consumers = 1;
    settings.retry_on_failure.max_elapsed_time = HumanDuration::from_secs(0);
    let x = exporter(&t, settings, Scripted::failing(unavailable()));
    x.start(&host()).await.unwrap();
    x.consume(span_batch(2)).await.unwrap();
    x.consume(span_batch(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            x.sender().attempts() >= 1
        })
        .await
    );
    drop(x);
    // The queued batch at once, the one in the worker's hands when it sees the abort.
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", reason::SHUTDOWN_TIMEOUT) == 5.0
        })
        .await
    );
}

/// Sends a batch as one part per log record; part `fail_at` always fails retryably, and
/// part `reject` is refused for good.
struct PerRecord {
    fail_at: Option<usize>,
    reject: Option<usize>,
    sent_parts: Mutex<Vec<usize>>,
}

#[async_trait]
impl Sender for PerRecord {
    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        self.send_resuming(batch, &mut SendProgress::starting_now())
            .await
    }

    async fn send_resuming(
        &self,
        batch: &Batch,
        progress: &mut SendProgress,
    ) -> Result<Delivered, SendError> {
        let parts: Vec<usize> = (0..batch.item_count()).collect();
        send_in_parts(
            parts,
            |_| 1,
            progress,
            |part| async move {
                if Some(part) == self.fail_at {
                    return Err(unavailable());
                }
                self.sent_parts.lock().unwrap().push(part);
                Ok(if Some(part) == self.reject {
                    PartAnswer::Rejected {
                        items: 1,
                        message: "too old".into(),
                    }
                } else {
                    PartAnswer::Accepted
                })
            },
        )
        .await
    }
}

fn tracked(n: usize) -> (Batch, Arc<Mutex<Option<bool>>>) {
    let outcome = Arc::new(Mutex::new(None));
    let o = Arc::clone(&outcome);
    let mut batch = log_batch(n);
    batch
        .ctx
        .acks
        .push(AckToken::new(move |ok| *o.lock().unwrap() = Some(ok)));
    (batch, outcome)
}

#[tokio::test]
async fn multi_part_batches_resume_and_count_each_part() {
    // Part 2 of 4 never gets through: parts 0 and 1 are sent once each despite the retries,
    // counted as sent; 2 and 3 are dropped; the token fails.
    let t = TestCtx::new("otlp/parts");
    let mut settings = fast_settings();
    settings.retry_on_failure = fast_retry(Duration::from_millis(200));
    let x = QueuedExporter::new(
        &t.ctx,
        settings,
        PerRecord {
            fail_at: Some(2),
            reject: None,
            sent_parts: Mutex::new(Vec::new()),
        },
    );
    x.start(&host()).await.unwrap();
    let (batch, outcome) = tracked(4);
    x.consume(batch).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("logs", reason::RETRIES_EXHAUSTED) == 2.0
        })
        .await
    );
    assert_eq!(t.sent("logs"), 2.0);
    assert_eq!(*x.sender().sent_parts.lock().unwrap(), [0, 1]);
    assert_eq!(*outcome.lock().unwrap(), Some(false));

    // A part refused for good is counted as rejected; the others are sent; the token fails.
    let t = TestCtx::new("otlp/parts2");
    let x = QueuedExporter::new(
        &t.ctx,
        fast_settings(),
        PerRecord {
            fail_at: None,
            reject: Some(1),
            sent_parts: Mutex::new(Vec::new()),
        },
    );
    x.start(&host()).await.unwrap();
    let (batch, outcome) = tracked(3);
    x.consume(batch).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { t.sent("logs") == 2.0 }).await);
    assert_eq!(t.dropped("logs", reason::REJECTED), 1.0);
    assert!(
        eventually(Duration::from_secs(5), || async {
            outcome.lock().unwrap().is_some()
        })
        .await
    );
    assert_eq!(*outcome.lock().unwrap(), Some(false));

    // All parts accepted: delivered.
    let (batch, outcome) = tracked(2);
    let t = TestCtx::new("otlp/parts3");
    let x = QueuedExporter::new(
        &t.ctx,
        fast_settings(),
        PerRecord {
            fail_at: None,
            reject: None,
            sent_parts: Mutex::new(Vec::new()),
        },
    );
    x.start(&host()).await.unwrap();
    x.consume(batch).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            outcome.lock().unwrap().is_some()
        })
        .await
    );
    assert_eq!(*outcome.lock().unwrap(), Some(true));
    x.shutdown(in_secs(1.0)).await.unwrap();
}
