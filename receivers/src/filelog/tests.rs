//! Tests of the `filelog` receiver, in process: a real receiver reading real files into a
//! recording consumer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline_core::proto::tonic::common::v1::any_value::Value as V;
use pipeline_core::proto::tonic::logs::v1::LogRecord;
use pipeline_core::telemetry::Telemetry;
use pipeline_core::testing::check_receiver;
use pipeline_core::{
    AckToken, Batch, ComponentId, ComponentKind, ConsumeError, Consumer, Payload, PerSignal,
};
use serde_json::{Value, json};

use super::*;
use pipeline_core::{ComponentConfig as _, DynReceiverFactory};

static DIRS: AtomicUsize = AtomicUsize::new(0);

fn scratch(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "sightline-filelog-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One received record with its resource's service name.
#[derive(Debug, Clone)]
struct Got {
    service: Option<String>,
    record: LogRecord,
}

impl Got {
    fn body(&self) -> String {
        match self.record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(V::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    }
    fn attr(&self, key: &str) -> Option<V> {
        self.record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    }
}

/// Records what it accepts and resolves the batch's ack tokens as delivered at once, unless
/// told to refuse or to hold the tokens.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<Got>>,
    refuse: AtomicUsize,
    refused: AtomicUsize,
    hold: Mutex<Option<Vec<AckToken>>>,
    /// The next this many batches have their tokens dropped unresolved (a buggy consumer).
    lose_acks: AtomicUsize,
}

#[async_trait::async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.refuse.load(Ordering::SeqCst) > 0 {
            self.refuse.fetch_sub(1, Ordering::SeqCst);
            self.refused.fetch_add(1, Ordering::SeqCst);
            batch.dropped();
            return Err(ConsumeError::Full);
        }
        let (payload, ctx) = batch.into_parts();
        if self
            .lose_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            // Neither delivered nor dropped: the handles just go.
            drop(ctx.acks);
        } else {
            match self.hold.lock().unwrap().as_mut() {
                Some(held) => held.extend(ctx.acks),
                None => ctx.delivered(),
            }
        }
        let Payload::Logs(rl) = payload else {
            panic!("logs expected")
        };
        let mut got = self.got.lock().unwrap();
        for r in rl {
            let service = r.resource.as_ref().and_then(|res| {
                res.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        V::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
            });
            for s in r.scope_logs {
                for record in s.log_records {
                    got.push(Got {
                        service: service.clone(),
                        record,
                    });
                }
            }
        }
        Ok(())
    }
}

impl Recorder {
    /// Resolves the held tokens as delivered and holds no more.
    fn release(&self) {
        for token in self.hold.lock().unwrap().take().into_iter().flatten() {
            token.delivered();
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
    fn bodies(&self) -> Vec<String> {
        self.got().iter().map(Got::body).collect()
    }
    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
    async fn wait_for(&self, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.count()
    }
}

struct Rx {
    rx: Arc<FileLogReceiver>,
    rec: Arc<Recorder>,
    telemetry: Telemetry,
}

impl Rx {
    async fn start(config: Value) -> Rx {
        Rx::start_with(config, Arc::new(Recorder::default())).await
    }

    async fn start_with(config: Value, rec: Arc<Recorder>) -> Rx {
        let rx = Rx::build(config, rec);
        rx.rx.start(&Host::new(std::env::temp_dir())).await.unwrap();
        rx
    }

    /// The receiver, not started.
    fn build(config: Value, rec: Arc<Recorder>) -> Rx {
        let telemetry = Telemetry::new();
        let mut ctx = CreateContext::for_tests(ComponentKind::Receiver, "filelog/test");
        ctx.telemetry = telemetry.component(
            ComponentKind::Receiver,
            &ComponentId::parse("filelog/test").unwrap(),
        );
        let next = PerSignal::from_fn(|s| {
            (s == Signal::Logs).then(|| rec.clone() as Arc<dyn pipeline_core::Consumer>)
        });
        let rx = Factory
            .build_receiver(ctx, FileLogConfig::parse(&config).unwrap(), next)
            .unwrap();
        Rx { rx, rec, telemetry }
    }

    async fn stop(&self) {
        self.rx
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
    }

    fn metric(&self, name: &str) -> f64 {
        self.telemetry
            .render()
            .lines()
            .find(|l| l.starts_with(name) && l.contains("filelog/test"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A fast config reading `include` from the beginning, checkpoints in `dir/storage`.
fn config(dir: &Path, include: &[&str], extra: Value) -> Value {
    let mut c = json!({
        "include": include.iter().map(|p| dir.join(p)).collect::<Vec<_>>(),
        "start_at": "beginning",
        "poll_interval": "20ms",
        "force_flush_period": "100ms",
        "storage": dir.join("storage"),
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}-{i:06}\n")).collect()
}

/// Every body exactly once.
fn assert_exactly(bodies: &[String], expected: impl IntoIterator<Item = String>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in bodies {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    let expected: Vec<String> = expected.into_iter().collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !counts.contains_key(e.as_str()))
        .collect();
    let dups: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        dups.is_empty(),
        "duplicates: {:?}",
        dups.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(bodies.len(), expected.len());
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:06}")).collect()
}

#[tokio::test]
async fn conformance() {
    let dir = scratch("conformance");
    check_receiver(&Factory, &config(&dir, &["*.log"], json!({}))).await;
}

#[test]
fn config_defaults_and_errors() {
    let c = FileLogConfig::parse(&json!({"include": ["/var/log/*.log"]})).unwrap();
    assert_eq!(c.start_at, StartAt::End);
    assert_eq!(c.poll_interval.get(), Duration::from_millis(200));
    assert_eq!(c.max_concurrent_files, 1024);
    assert_eq!(c.max_in_flight_records, 8192);
    assert_eq!(c.fingerprint_size, ByteSize(1024));
    assert_eq!(c.max_log_size, ByteSize(1 << 20));
    assert_eq!(c.force_flush_period.get(), Duration::from_millis(500));
    assert!(c.include_file_name && !c.include_file_path);
    assert_eq!(c.parser.kind, ParserKind::None);
    let c = FileLogConfig::parse(
        &json!({"include": ["/x"], "fingerprint_size": "2KiB", "max_log_size": "64kb"}),
    )
    .unwrap();
    assert_eq!(c.fingerprint_size, ByteSize(2048));
    assert_eq!(c.max_log_size, ByteSize(64_000));

    let err = |v: Value| Factory.validate(&v).unwrap_err();
    assert_eq!(err(json!({})).path, "include");
    assert_eq!(err(json!({"include": ["/a/[x"]})).path, "include[0]");
    assert_eq!(
        err(json!({"include": ["/a"], "exclude": ["/b/{x"]})).path,
        "exclude[0]"
    );
    let e = err(json!({"include": ["/a"], "start_at": "middle"}));
    assert_eq!(e.path, "start_at");
    let e = err(json!({"include": ["/a"], "polll_interval": "1s"}));
    assert!(e.message.contains("did you mean \"poll_interval\""), "{e}");
    assert_eq!(
        err(json!({"include": ["/a"], "poll_interval": "0"})).path,
        "poll_interval"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "fingerprint_size": 4})).path,
        "fingerprint_size"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "max_log_size": "1 parsec"})).path,
        "max_log_size"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "multiline": {}})).path,
        "multiline"
    );
    let both = json!({"include": ["/a"], "multiline": {"line_start_pattern": "a", "line_end_pattern": "b"}});
    assert_eq!(err(both).path, "multiline");
    let bad = json!({"include": ["/a"], "multiline": {"line_start_pattern": "("}});
    assert_eq!(err(bad).path, "multiline.line_start_pattern");
    assert_eq!(
        err(json!({"include": ["/a"], "parser": {"type": "regex"}})).path,
        "parser.regex"
    );
    let e = err(json!({"include": ["/a"], "parser": {"type": "regex", "regex": "(.*)"}}));
    assert!(e.message.contains("named capture"), "{e}");
    assert_eq!(
        err(json!({"include": ["/a"], "parser": {"type": "json", "regex": "(?P<a>.)"}})).path,
        "parser.regex"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "parser": {"type": "json", "timestamp_layout": "%Q"}})).path,
        "parser.timestamp_layout"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "parser": {"type": "xml"}})).path,
        "parser.type"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "storage": ""})).path,
        "storage"
    );
    assert_eq!(
        err(json!({"include": ["/a"], "max_in_flight_records": 0})).path,
        "max_in_flight_records"
    );
}

#[test]
fn severity_numbers() {
    for (level, n) in [
        ("DEBUG", 5),
        ("info", 9),
        ("Warning", 13),
        ("WARN", 13),
        ("ERROR", 17),
        ("critical", 21),
        ("FATAL", 21),
        ("chatty", 0),
    ] {
        assert_eq!(parser::severity_number(level), n, "{level}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_the_beginning_and_follows_appends() {
    let dir = scratch("basic");
    let path = dir.join("app.log");
    append(&path, &lines("a", 0..100));
    let rx = Rx::start(config(&dir, &["*.log"], json!({"include_file_path": true}))).await;
    assert_eq!(rx.rec.wait_for(100).await, 100);
    append(&path, &lines("a", 100..250));
    assert_eq!(rx.rec.wait_for(250).await, 250);
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("a", 0..250));
    let g = &rx.rec.got()[0];
    assert_eq!(
        g.attr("log.file.name"),
        Some(V::StringValue("app.log".into()))
    );
    assert_eq!(
        g.attr("log.file.path"),
        Some(V::StringValue(path.to_string_lossy().into()))
    );
    assert!(g.record.observed_time_unix_nano > 0);
    assert!(rx.metric("sightline_filelog_bytes_read_total") >= (250 * 9) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_what_was_there() {
    let dir = scratch("end");
    let path = dir.join("app.log");
    append(&path, &lines("old", 0..50));
    let rx = Rx::start(config(&dir, &["*.log"], json!({"start_at": "end"}))).await;
    // The first poll has happened once the checkpoint names the file.
    let cp = dir.join("storage/checkpoints.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common_read(&cp).contains("app.log") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    append(&path, &lines("new", 0..10));
    assert_eq!(rx.rec.wait_for(10).await, 10);
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("new", 0..10));
}

fn common_read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint_even_with_start_at_end() {
    let dir = scratch("restart");
    let path = dir.join("app.log");
    append(&path, &lines("a", 0..100));
    let cfg = config(&dir, &["*.log"], json!({}));
    let rx = Rx::start(cfg.clone()).await;
    assert_eq!(rx.rec.wait_for(100).await, 100);
    rx.stop().await;
    // Written while stopped: read after the restart, with start_at: end.
    append(&path, &lines("a", 100..160));
    let mut cfg = cfg;
    cfg["start_at"] = json!("end");
    let rx2 = Rx::start(cfg).await;
    assert_eq!(rx2.rec.wait_for(60).await, 60);
    tokio::time::sleep(Duration::from_millis(100)).await;
    rx2.stop().await;
    assert_exactly(&rx2.rec.bodies(), names("a", 100..160));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_is_reported_and_ignored() {
    let dir = scratch("corrupt");
    std::fs::create_dir_all(dir.join("storage")).unwrap();
    std::fs::write(dir.join("storage/checkpoints.json"), "{not json").unwrap();
    append(&dir.join("app.log"), &lines("a", 0..5));
    let rx = Rx::start(config(&dir, &["*.log"], json!({}))).await;
    assert_eq!(rx.rec.wait_for(5).await, 5);
    rx.stop().await;
    assert!(dir.join("storage/checkpoints.json.corrupt").exists());
    assert!(common_read(&dir.join("storage/checkpoints.json")).contains("\"offset\":"));
    let errors = rx.telemetry.render().lines().any(|l| {
        l.starts_with("sightline_filelog_checkpoint_errors_total")
            && l.contains("op=\"load\"")
            && l.ends_with(" 1")
    });
    assert!(errors, "{}", rx.telemetry.render());
}

/// Waits (up to 10 s) until the checkpoint file contains `text`.
async fn checkpoint_reaches(cp: &Path, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common_read(cp).contains(text) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    common_read(cp).contains(text)
}

/// A receiver that read ten lines `a-…` into a recorder that holds their tokens.
async fn holding_ten_lines(tag: &str) -> (PathBuf, Arc<Recorder>, Rx) {
    let dir = scratch(tag);
    append(&dir.join("app.log"), &lines("a", 0..10));
    let rec = Arc::new(Recorder::default());
    *rec.hold.lock().unwrap() = Some(Vec::new());
    let rx = Rx::start_with(config(&dir, &["*.log"], json!({})), rec.clone()).await;
    assert_eq!(rx.rec.wait_for(10).await, 10);
    (dir, rec, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_waits_for_the_acknowledgement() {
    let (dir, rec, rx) = holding_ten_lines("ack").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cp = common_read(&dir.join("storage/checkpoints.json"));
    assert!(cp.contains("\"offset\":0"), "not delivered yet: {cp}");
    // Delivered: the tokens go.
    rec.release();
    let done = format!("\"offset\":{}", 10 * 9);
    let cp = dir.join("storage/checkpoints.json");
    assert!(checkpoint_reaches(&cp, &done).await, "{}", common_read(&cp));
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_pauses_reading_and_loses_nothing() {
    let dir = scratch("full");
    let path = dir.join("app.log");
    append(&path, &lines("a", 0..5000));
    let rec = Arc::new(Recorder::default());
    rec.refuse.store(5, Ordering::SeqCst);
    let rx = Rx::start_with(config(&dir, &["*.log"], json!({})), rec.clone()).await;
    assert_eq!(rx.rec.wait_for(5000).await, 5000);
    rx.stop().await;
    assert_eq!(rec.refused.load(Ordering::SeqCst), 5);
    assert_exactly(&rx.rec.bodies(), names("a", 0..5000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_refused_the_reader_stands_still() {
    let dir = scratch("still");
    let path = dir.join("app.log");
    append(&path, &lines("a", 0..100_000));
    let rec = Arc::new(Recorder::default());
    rec.refuse.store(usize::MAX, Ordering::SeqCst);
    let rx = Rx::start_with(config(&dir, &["*.log"], json!({})), rec.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rec.refused.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = rx.metric("sightline_filelog_bytes_read_total");
    // One staged hand-off's worth (and one read chunk), not the 1.1 MB file.
    assert!(read > 0.0 && read <= 512.0 * 1024.0, "{read}");
    rec.refuse.store(0, Ordering::SeqCst);
    assert_eq!(rx.rec.wait_for(100_000).await, 100_000);
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("a", 0..100_000));
}

/// A receiver started on `include` (with `extra` settings) in a fresh directory whose
/// `app.log` holds `text`: (the directory, `app.log`, the receiver).
async fn reading_app_log(
    tag: &str,
    text: &str,
    include: &[&str],
    extra: Value,
) -> (PathBuf, PathBuf, Rx) {
    let dir = scratch(tag);
    let path = dir.join("app.log");
    append(&path, text);
    let rx = Rx::start(config(&dir, include, extra)).await;
    (dir, path, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_last_line_waits_for_force_flush_period() {
    let (_, path, rx) = reading_app_log(
        "partial",
        "complete\nhalf a li",
        &["*.log"],
        json!({"force_flush_period": "300ms"}),
    )
    .await;
    assert_eq!(rx.rec.wait_for(1).await, 1);
    // The writer finishes the line before the period ends: one record, whole.
    tokio::time::sleep(Duration::from_millis(50)).await;
    append(&path, "ne\nno newline at all");
    assert_eq!(rx.rec.wait_for(3).await, 3);
    rx.stop().await;
    assert_eq!(
        rx.rec.bodies(),
        ["complete", "half a line", "no newline at all"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_python_tracebacks() {
    let dir = scratch("multiline");
    let path = dir.join("app.log");
    let text = "2024-01-15 10:30:00,123 INFO api Request started\n\
2024-01-15 10:30:00,456 ERROR api Request failed\n\
Traceback (most recent call last):\n  File \"/app/views.py\", line 42, in get_user\n    user = db.fetch(user_id)\n\
ValueError: user 42 not found\n\
2024-01-15 10:30:01,000 INFO api Request completed\n";
    append(&path, text);
    let cfg = config(
        &dir,
        &["*.log"],
        json!({
            "multiline": {"line_start_pattern": r"^\d{4}-\d{2}-\d{2} "},
            "parser": {
                "type": "regex",
                "regex": r"(?s)^(?P<timestamp>\S+ \S+) (?P<level>\w+) (?P<service>\S+) (?P<message>.*)$",
                "timestamp_layout": "%Y-%m-%d %H:%M:%S,%f"
            }
        }),
    );
    let rx = Rx::start(cfg).await;
    // The last record is emitted after force_flush_period (no next start line).
    assert_eq!(rx.rec.wait_for(3).await, 3);
    rx.stop().await;
    let got = rx.rec.got();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].record.severity_number, 17);
    assert_eq!(got[1].record.severity_text, "ERROR");
    assert_eq!(got[1].service.as_deref(), Some("api"));
    assert_eq!(
        got[1].body(),
        "Request failed\nTraceback (most recent call last):\n  File \"/app/views.py\", line 42, in get_user\n    user = db.fetch(user_id)\nValueError: user 42 not found"
    );
    assert_eq!(got[1].record.time_unix_nano, 1_705_314_600_456_000_000);
    assert_eq!(got[2].body(), "Request completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_end_pattern() {
    let dir = scratch("endpat");
    append(&dir.join("a.log"), "one\ntwo;\nthree;\nfour\n");
    let cfg = config(
        &dir,
        &["*.log"],
        json!({"multiline": {"line_end_pattern": ";$"}}),
    );
    let rx = Rx::start(cfg).await;
    assert_eq!(rx.rec.wait_for(3).await, 3);
    rx.stop().await;
    assert_eq!(rx.rec.bodies(), ["one\ntwo;", "three;", "four"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_and_counted() {
    let dir = scratch("utf8");
    let mut bytes = b"ok line\nbad \xff\xfe bytes\n".to_vec();
    bytes.extend_from_slice("caf\u{e9}\n".as_bytes());
    std::fs::write(dir.join("a.log"), bytes).unwrap();
    let rx = Rx::start(config(&dir, &["*.log"], json!({}))).await;
    assert_eq!(rx.rec.wait_for(3).await, 3);
    rx.stop().await;
    assert_eq!(
        rx.rec.bodies(),
        ["ok line", "bad \u{fffd}\u{fffd} bytes", "café"]
    );
    assert_eq!(rx.metric("sightline_filelog_invalid_utf8_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mib_line_is_cut_marked_and_counted() {
    let dir = scratch("long");
    let mut text = String::from("before\n");
    text.push_str(&"x".repeat(5 << 20));
    text.push_str("\nafter\n");
    std::fs::write(dir.join("a.log"), text).unwrap();
    let rx = Rx::start(config(&dir, &["*.log"], json!({}))).await;
    assert_eq!(rx.rec.wait_for(3).await, 3);
    rx.stop().await;
    let got = rx.rec.got();
    assert_eq!(got[0].body(), "before");
    assert_eq!(got[1].body().len(), 1 << 20);
    assert_eq!(
        got[1].attr("log.record.truncated"),
        Some(V::BoolValue(true))
    );
    assert_eq!(got[2].body(), "after");
    assert_eq!(got[2].attr("log.record.truncated"), None);
    assert_eq!(rx.metric("sightline_filelog_records_truncated_total"), 1.0);
    assert_eq!(
        rx.metric("sightline_filelog_truncated_bytes_total"),
        (4 << 20) as f64
    );
}

/// Writes `n` lines with a pause every 50, calling `rotate` once half-way.
fn write_with_rotation(
    path: &Path,
    prefix: &str,
    n: usize,
    rotate: impl FnOnce(&mut std::fs::File) -> std::fs::File,
) {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
    };
    let mut f = open();
    let mut rotate = Some(rotate);
    for i in 0..n {
        if i == n / 2
            && let Some(r) = rotate.take()
        {
            f = r(&mut f);
        }
        writeln!(f, "{prefix}-{i:06}").unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_create_rotation_while_writing() {
    let dir = scratch("rename");
    let path = dir.join("app.log");
    append(&path, "rename-first line, before start\n");
    // Only the live name is included: the renamed file is read to its end by handle.
    let rx = Rx::start(config(&dir, &["app.log"], json!({}))).await;
    assert_eq!(rx.rec.wait_for(1).await, 1);
    let p = path.clone();
    let writer = std::thread::spawn(move || {
        write_with_rotation(&p, "r", 4000, |_old| {
            std::fs::rename(&p, p.with_extension("log.1")).unwrap();
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap()
        })
    });
    writer.join().unwrap();
    assert_eq!(rx.rec.wait_for(4001).await, 4001);
    tokio::time::sleep(Duration::from_millis(200)).await;
    rx.stop().await;
    let mut expected = names("r", 0..4000);
    expected.push("rename-first line, before start".into());
    assert_exactly(&rx.rec.bodies(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_truncate_rotation_while_writing() {
    let dir = scratch("copytrunc");
    let path = dir.join("app.log");
    let rx = Rx::start(config(&dir, &["app.log*"], json!({}))).await;
    let p = path.clone();
    let writer = std::thread::spawn(move || {
        write_with_rotation(&p, "c", 4000, |f| {
            f.flush().unwrap();
            std::fs::copy(&p, p.with_extension("log.1")).unwrap();
            f.set_len(0).unwrap();
            std::fs::OpenOptions::new().append(true).open(&p).unwrap()
        })
    });
    writer.join().unwrap();
    assert_eq!(rx.rec.wait_for(4000).await, 4000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("c", 0..4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_truncate_to_a_matched_name_and_regrown_to_the_same_size_within_one_poll() {
    let (dir, path, rx) = reading_app_log(
        "copytrunc-regrow",
        &lines("g", 0..100),
        &["app.log*"],
        json!({"poll_interval": "500ms"}),
    )
    .await;
    assert_eq!(rx.rec.wait_for(100).await, 100);
    // Written, copied to a name the globs match, truncated and written to the copy's size,
    // all between two polls: the copy continues at the offset read (lines 100..150), the
    // truncated file is read from its start (150..300).
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    writer.write_all(lines("g", 100..150).as_bytes()).unwrap();
    std::fs::copy(&path, dir.join("app.log.1")).unwrap();
    writer.set_len(0).unwrap();
    writer.write_all(lines("g", 150..300).as_bytes()).unwrap();
    assert_eq!(rx.rec.wait_for(300).await, 300);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("g", 0..300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_rotations_are_skipped_unless_included() {
    let dir = scratch("gz");
    let gz = |name: &str, text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        std::fs::write(dir.join(name), e.finish().unwrap()).unwrap();
    };
    gz("app.log.1.gz", &lines("gz", 0..20));
    append(&dir.join("app.log"), &lines("plain", 0..5));
    let rx = Rx::start(config(&dir, &["app.log*"], json!({}))).await;
    assert_eq!(rx.rec.wait_for(5).await, 5);
    tokio::time::sleep(Duration::from_millis(150)).await;
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("plain", 0..5));

    // Named explicitly: decompressed and read once.
    let dir2 = scratch("gz2");
    std::fs::rename(dir.join("app.log.1.gz"), dir2.join("old.log.gz")).unwrap();
    let cfg = config(&dir2, &["*.log.gz"], json!({}));
    let rx = Rx::start(cfg.clone()).await;
    assert_eq!(rx.rec.wait_for(20).await, 20);
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("gz", 0..20));
    let rx = Rx::start(cfg).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    rx.stop().await;
    assert_eq!(rx.rec.count(), 0, "read again after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_still_open_is_read_to_its_end() {
    let dir = scratch("deleted");
    let path = dir.join("app.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(lines("d", 0..10).as_bytes()).unwrap();
    let rx = Rx::start(config(&dir, &["*.log"], json!({}))).await;
    assert_eq!(rx.rec.wait_for(10).await, 10);
    // Deleted, then written through the writer's handle before the next poll.
    std::fs::remove_file(&path).unwrap();
    f.write_all(lines("d", 10..3000).as_bytes()).unwrap();
    drop(f);
    assert_eq!(rx.rec.wait_for(3000).await, 3000);
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("d", 0..3000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_files_at_once() {
    let dir = scratch("many");
    for f in 0..2000 {
        append(
            &dir.join(format!("f{f:04}.log")),
            &lines(&format!("file{f:04}"), 0..3),
        );
    }
    let rx = Rx::start(config(
        &dir,
        &["*.log"],
        json!({"max_concurrent_files": 256}),
    ))
    .await;
    assert_eq!(rx.rec.wait_for(6000).await, 6000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.metric("sightline_filelog_files_open") <= 256.0);
    rx.stop().await;
    let expected = (0..2000).flat_map(|f| names(&format!("file{f:04}"), 0..3));
    assert_exactly(&rx.rec.bodies(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_matching_nothing_picks_up_a_file_created_later() {
    let dir = scratch("later");
    let sub = dir.join("sub");
    // start_at: end only applies to files found at the first poll.
    let rx = Rx::start(config(&dir, &["**/*.log"], json!({"start_at": "end"}))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::create_dir_all(&sub).unwrap();
    append(&sub.join("new.log"), &lines("late", 0..7));
    append(&dir.join("excluded.txt"), "not included\n");
    assert_eq!(rx.rec.wait_for(7).await, 7);
    tokio::time::sleep(Duration::from_millis(100)).await;
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("late", 0..7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_wins_over_include() {
    let dir = scratch("exclude");
    append(&dir.join("a.log"), "keep\n");
    append(&dir.join("debug-a.log"), "drop\n");
    let cfg = config(
        &dir,
        &["*.log"],
        json!({"exclude": [dir.join("debug-*.log")]}),
    );
    let rx = Rx::start(cfg).await;
    assert_eq!(rx.rec.wait_for(1).await, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    rx.stop().await;
    assert_eq!(rx.rec.bodies(), ["keep"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_seed_layout_maps_to_the_record() {
    let dir = scratch("json");
    let lines = [
        r#"{"timestamp": "2024-01-15T10:30:00.123456", "level": "INFO", "service": "api-service", "message": "User login successful", "module": "auth", "function": "login", "line": 42, "user_id": 12345, "ip_address": "192.168.1.1", "session_id": "abc-123", "ok": true, "ratio": 0.5, "ctx": {"a": [1, "b"]}, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}"#,
        r#"{"timestamp": 1705314600123, "level": "error", "service": "api", "message": "boom", "exception": {"type": "ValueError", "message": "bad id", "traceback": ["Traceback (most recent call last):\n", "  File \"x.py\", line 1, in <module>\n", "ValueError: bad id\n"]}}"#,
        r#"{"timestamp": "not a time", "level": "WARNING", "message": "odd"}"#,
        "this is not json",
        r#"{"level": "ERROR", "service": "half", "message": "cut", "user": 1, "broken": tru}"#,
    ];
    append(&dir.join("a.log"), &format!("{}\n", lines.join("\n")));
    let rx = Rx::start(config(
        &dir,
        &["*.log"],
        json!({"parser": {"type": "json"}}),
    ))
    .await;
    assert_eq!(rx.rec.wait_for(5).await, 5);
    rx.stop().await;
    let got = rx.rec.got();
    let g = &got[0];
    assert_eq!(g.service.as_deref(), Some("api-service"));
    assert_eq!(g.body(), "User login successful");
    assert_eq!(g.record.severity_text, "INFO");
    assert_eq!(g.record.severity_number, 9);
    assert_eq!(g.record.time_unix_nano, 1_705_314_600_123_456_000);
    assert_eq!(g.record.trace_id, hex("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(g.record.span_id, hex("00f067aa0ba902b7"));
    assert_eq!(g.attr("line"), Some(V::IntValue(42)));
    assert_eq!(g.attr("user_id"), Some(V::IntValue(12345)));
    assert_eq!(g.attr("module"), Some(V::StringValue("auth".into())));
    assert_eq!(g.attr("ok"), Some(V::BoolValue(true)));
    assert_eq!(g.attr("ratio"), Some(V::DoubleValue(0.5)));
    assert!(matches!(g.attr("ctx"), Some(V::KvlistValue(_))));
    for gone in [
        "timestamp",
        "level",
        "service",
        "message",
        "trace_id",
        "span_id",
    ] {
        assert_eq!(g.attr(gone), None, "{gone}");
    }
    assert_eq!(
        g.attr("log.file.name"),
        Some(V::StringValue("a.log".into()))
    );
    let g = &got[1];
    assert_eq!(g.service.as_deref(), Some("api"));
    assert_eq!(g.record.severity_number, 17);
    assert_eq!(g.record.time_unix_nano, 1_705_314_600_123_000_000);
    assert_eq!(
        g.attr("exception.type"),
        Some(V::StringValue("ValueError".into()))
    );
    assert_eq!(
        g.attr("exception.message"),
        Some(V::StringValue("bad id".into()))
    );
    assert_eq!(
        g.attr("exception.stacktrace"),
        Some(V::StringValue(
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: bad id\n".into()
        ))
    );
    let g = &got[2];
    assert_eq!(g.service, None);
    assert_eq!(g.record.severity_number, 13);
    assert_eq!(g.record.time_unix_nano, 0);
    assert_eq!(
        g.attr("timestamp"),
        Some(V::StringValue("not a time".into()))
    );
    let g = &got[3];
    assert_eq!(g.body(), "this is not json");
    assert!(matches!(g.attr("log.parse_error"), Some(V::StringValue(_))));
    // Half-parsed: nothing of it stays but the raw line.
    let g = &got[4];
    assert_eq!(g.body(), lines[4]);
    assert_eq!((g.service.as_deref(), g.record.severity_number), (None, 0));
    assert_eq!(g.attr("user"), None);
    assert_eq!(g.record.attributes.len(), 2, "{:?}", g.record.attributes);
    assert_eq!(rx.metric("sightline_filelog_parse_errors_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_field_names_are_configurable() {
    let dir = scratch("jsonnames");
    append(
        &dir.join("a.log"),
        "{\"ts\": 1705314600, \"severity\": \"warn\", \"msg\": \"hi\", \"app\": \"svc\", \"level\": \"kept\"}\n",
    );
    let cfg = config(
        &dir,
        &["*.log"],
        json!({"parser": {"type": "json", "timestamp_field": "ts", "level_field": "severity", "message_field": "msg", "service_field": "app"}}),
    );
    let rx = Rx::start(cfg).await;
    assert_eq!(rx.rec.wait_for(1).await, 1);
    rx.stop().await;
    let g = &rx.rec.got()[0];
    assert_eq!(g.body(), "hi");
    assert_eq!(g.record.severity_number, 13);
    assert_eq!(g.record.time_unix_nano, 1_705_314_600_000_000_000);
    assert_eq!(g.service.as_deref(), Some("svc"));
    assert_eq!(g.attr("level"), Some(V::StringValue("kept".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_parser_maps_captures() {
    let dir = scratch("regex");
    append(
        &dir.join("a.log"),
        "127.0.0.1 [15/Jan/2024:10:30:00 +0000] WARN GET /api/users 503\nnonsense\n",
    );
    let cfg = config(
        &dir,
        &["*.log"],
        json!({"parser": {
            "type": "regex",
            "regex": r"^(?P<ip>\S+) \[(?P<timestamp>[^\]]+)\] (?P<level>\w+) (?P<method>\w+) (?P<path>\S+) (?P<status>\d+)$",
            "timestamp_layout": "%d/%b/%Y:%H:%M:%S %z"
        }}),
    );
    let rx = Rx::start(cfg).await;
    assert_eq!(rx.rec.wait_for(2).await, 2);
    rx.stop().await;
    let got = rx.rec.got();
    assert_eq!(got[0].record.time_unix_nano, 1_705_314_600_000_000_000);
    assert_eq!(got[0].record.severity_number, 13);
    assert_eq!(
        got[0].attr("path"),
        Some(V::StringValue("/api/users".into()))
    );
    assert_eq!(got[0].attr("status"), Some(V::StringValue("503".into())));
    assert_eq!(
        got[0].body(),
        "127.0.0.1 [15/Jan/2024:10:30:00 +0000] WARN GET /api/users 503"
    );
    assert_eq!(got[1].body(), "nonsense");
    assert!(got[1].attr("log.parse_error").is_some());
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn storage_defaults_under_the_data_dir() {
    assert_eq!(
        default_storage(Path::new("./data"), "filelog/app"),
        PathBuf::from("./data/filelog/filelog_app")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_held_downstream_are_bounded_by_max_in_flight_records() {
    let dir = scratch("inflight");
    append(&dir.join("app.log"), &lines("a", 0..5000));
    let rec = Arc::new(Recorder::default());
    *rec.hold.lock().unwrap() = Some(Vec::new());
    let cfg = config(&dir, &["*.log"], json!({"max_in_flight_records": 700}));
    let rx = Rx::start_with(cfg, rec.clone()).await;
    assert_eq!(rx.rec.wait_for(700).await, 700);
    // Nothing is released downstream: the reader waits at the limit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.rec.count(), 700);
    // Released: everything follows.
    rec.release();
    assert_eq!(rx.rec.wait_for(5000).await, 5000);
    rx.stop().await;
    assert_exactly(&rx.rec.bodies(), names("a", 0..5000));
}

/// A hook that, the first time it runs, blocks the thread it runs on until another task of
/// the test's runtime made progress (it answers `entered`). Whether it gave up waiting is in
/// `stalled`: on a current-thread runtime that can only happen when the hook runs on the
/// runtime's own thread, which the other task then cannot get.
struct Gate {
    stalled: Arc<std::sync::atomic::AtomicBool>,
    /// Completes once the hook runs; the other task answers through `progress`.
    entered: tokio::sync::oneshot::Receiver<()>,
    progress: std::sync::mpsc::Sender<()>,
}

impl Gate {
    fn new() -> (Gate, Box<dyn FnMut() + Send>) {
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        let (progress, progress_rx) = std::sync::mpsc::channel();
        let mut entered_tx = Some(entered_tx);
        let flag = Arc::clone(&stalled);
        let hook = Box::new(move || {
            if let Some(tx) = entered_tx.take() {
                let _ = tx.send(());
                // Only a failure waits this long: a passing run goes on at the other
                // task's answer.
                if progress_rx.recv_timeout(Duration::from_secs(10)).is_err() {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        });
        (
            Gate {
                stalled,
                entered,
                progress,
            },
            hook,
        )
    }

    /// The other task: answers the hook once it ran.
    fn answer(
        self,
    ) -> (
        Arc<std::sync::atomic::AtomicBool>,
        tokio::task::JoinHandle<()>,
    ) {
        let Gate {
            stalled,
            entered,
            progress,
        } = self;
        let task = tokio::spawn(async move {
            if entered.await.is_ok() {
                let _ = progress.send(());
            }
        });
        (stalled, task)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocked_step_stalls_no_async_task() {
    let dir = scratch("step-thread");
    append(&dir.join("app.log"), &lines("s", 0..10));
    let rx = Rx::build(
        config(&dir, &["*.log"], json!({})),
        Arc::new(Recorder::default()),
    );
    let (gate, hook) = Gate::new();
    *rx.rx.before_step.lock().unwrap() = Some(hook);
    let (stalled, other) = gate.answer();
    rx.rx.start(&Host::new(std::env::temp_dir())).await.unwrap();
    // The first step waits for `other`, which only this runtime's one thread can run.
    other.await.unwrap();
    assert_eq!(rx.rec.wait_for(10).await, 10);
    rx.stop().await;
    assert!(
        !stalled.load(Ordering::SeqCst),
        "a step ran on the async runtime's thread and stalled its other tasks"
    );
    assert_exactly(&rx.rec.bodies(), names("s", 0..10));
}

#[tokio::test(flavor = "current_thread")]
async fn an_acknowledgement_writes_no_file_in_the_task_that_releases_it() {
    let (dir, rec, rx) = holding_ten_lines("ack-thread").await;
    // The file is known and on disk; with the tokens held nothing else changes.
    let cp = dir.join("storage/checkpoints.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(common_read(&cp).contains("\"offset\":0") && rx.rx.inner.checkpoints.writer_idle())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (gate, hook) = Gate::new();
    *rx.rx.inner.checkpoints.before_write.lock().unwrap() = Some(hook);
    let (stalled, other) = gate.answer();
    // Delivered: the callback runs here, in this task, on the runtime's one thread.
    rec.release();
    other.await.unwrap();
    let done = format!("\"offset\":{}", 10 * 9);
    assert!(checkpoint_reaches(&cp, &done).await, "{}", common_read(&cp));
    assert!(
        !stalled.load(Ordering::SeqCst),
        "the acknowledgement wrote the checkpoint on the async runtime's thread"
    );
    rx.stop().await;
}

/// The offsets `checkpoints.json` in `dir/storage` holds for `path` (a file rewritten while
/// stopped has two entries for a while: the old content's and the new one's).
fn checkpointed_offsets(dir: &Path, path: &Path) -> Vec<u64> {
    let cp: Value = serde_json::from_str(&common_read(&dir.join("storage/checkpoints.json")))
        .unwrap_or_default();
    cp["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["path"] == json!(path))
        .filter_map(|f| f["offset"].as_u64())
        .collect()
}

/// Waits (up to 10 s) until the checkpoint holds `offset` for `path`.
async fn checkpoint_at(dir: &Path, path: &Path, offset: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !checkpointed_offsets(dir, path).contains(&offset) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    checkpointed_offsets(dir, path).contains(&offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_whose_acknowledgement_is_dropped_unresolved_are_offered_again() {
    let dir = scratch("unresolved");
    let app = dir.join("app.log");
    append(&app, &lines("a", 0..10));
    let rec = Arc::new(Recorder::default());
    // The first batch (a-0..10) reaches a consumer that loses its acknowledgement.
    rec.lose_acks.store(1, Ordering::SeqCst);
    let cfg = config(&dir, &["*.log"], json!({"max_in_flight_records": 10}));
    let rx = Rx::start_with(cfg, rec.clone()).await;
    // Offered again at once, and delivered: then the checkpoint passes them.
    assert_eq!(rx.rec.wait_for(20).await, 20);
    assert!(checkpoint_at(&dir, &app, 10 * 9).await);
    append(&app, &lines("b", 0..10));
    assert_eq!(rx.rec.wait_for(30).await, 30);
    assert!(checkpoint_at(&dir, &app, 20 * 9).await);
    rx.stop().await;
    let bodies = rx.rec.bodies();
    let (a, b): (Vec<String>, Vec<String>) = bodies.into_iter().partition(|x| x.starts_with('a'));
    assert_exactly(&a[..10], names("a", 0..10));
    assert_exactly(&a[10..], names("a", 0..10));
    assert_exactly(&b, names("b", 0..10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lost_downstream_again_and_again_are_read_again_after_a_restart() {
    let dir = scratch("unresolved-restart");
    let (app, other) = (dir.join("app.log"), dir.join("other.log"));
    append(&app, &lines("a", 0..10));
    let rec = Arc::new(Recorder::default());
    // a-0..10 reaches a consumer that loses its acknowledgement, every time it is offered
    // again too, until the receiver stops offering it.
    let offers = tailer::MAX_REWINDS as usize + 1;
    rec.lose_acks.store(offers, Ordering::SeqCst);
    // One hand-off per window, and no room downstream unless the lost batch's is released.
    let cfg = config(&dir, &["*.log"], json!({"max_in_flight_records": 10}));
    let rx = Rx::start_with(cfg.clone(), rec.clone()).await;
    assert_eq!(rx.rec.wait_for(10 * offers).await, 10 * offers);
    // Reading goes on behind the lost batch, and what follows is delivered...
    append(&app, &lines("b", 0..30));
    assert_eq!(rx.rec.wait_for(10 * offers + 30).await, 10 * offers + 30);
    // ...and checkpointed where no lost batch is before it.
    append(&other, &lines("o", 0..5));
    assert_eq!(rx.rec.wait_for(10 * offers + 35).await, 10 * offers + 35);
    assert!(checkpoint_at(&dir, &other, 5 * 9).await);
    // app.log's checkpoint never passes the lost batch, whatever was delivered after it.
    assert_eq!(checkpointed_offsets(&dir, &app), vec![0]);
    rx.stop().await;
    assert_eq!(checkpointed_offsets(&dir, &app), vec![0]);

    // After a restart, the lost records come again (with what followed them: duplicates,
    // never a loss), and then the checkpoint moves.
    let rx2 = Rx::start(cfg).await;
    assert_eq!(rx2.rec.wait_for(40).await, 40);
    assert!(checkpoint_at(&dir, &app, 40 * 9).await);
    rx2.stop().await;
    assert_exactly(
        &rx2.rec.bodies(),
        names("a", 0..10).into_iter().chain(names("b", 0..30)),
    );
}

#[test]
fn behind_a_held_emit_other_files_advance_and_the_emits_stay_few() {
    let dir = scratch("held");
    let errors =
        prometheus::IntCounterVec::new(prometheus::Opts::new("e", "e"), &["id", "op"]).unwrap();
    let cp = Arc::new(Checkpoints::new(dir.clone(), errors, "t".into()));
    cp.set_identity(1, 16, 1, &dir.join("a.log"), Some(0));
    cp.set_identity(2, 16, 2, &dir.join("b.log"), Some(0));
    let emit = |updates: Vec<(u64, u64)>| {
        let (window, token) = cp.window();
        let seq = cp.register(window, updates, 10);
        cp.confirm(seq);
        token
    };
    // a.log's first emit is dropped unresolved.
    drop(emit(vec![(1, 100)]));
    assert_eq!(
        cp.take_rewinds(),
        vec![(1, 0)],
        "to be read again from its start"
    );
    assert_eq!(cp.unreleased(), 0, "its records no longer count");
    for i in 1..=100u64 {
        emit(vec![(1, 100 + i), (2, i)]).delivered();
        emit(vec![(2, 1000 + i)]).delivered();
    }
    // One waiting: b.log's checkpoint stops before it until it is resolved.
    let waiting = emit(vec![(1, 5000), (2, 5000)]);
    emit(vec![(2, 6000)]).delivered();
    assert_eq!(cp.committed(1), Some(0), "never past the held emit");
    assert_eq!(cp.committed(2), Some(1100));
    assert!(cp.emits_remembered() <= 3, "{}", cp.emits_remembered());
    waiting.delivered();
    assert_eq!(cp.committed(1), Some(0));
    assert_eq!(cp.committed(2), Some(6000));
    assert!(cp.emits_remembered() <= 1, "{}", cp.emits_remembered());
    assert_eq!(cp.unreleased(), 0);
    // Dropped (and counted by the dropper) while running: decided, passed.
    emit(vec![(2, 7000)]).dropped();
    assert_eq!(cp.committed(2), Some(7000));
    // Dropped after shutdown began (a drain deadline passed): held for the restart.
    let late = emit(vec![(2, 8000)]);
    cp.close();
    late.dropped();
    assert_eq!(cp.committed(2), Some(7000));
    assert_eq!(cp.unreleased(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_file_rewritten_shorter_while_stopped_is_read_from_its_start() {
    let dir = scratch("rewritten");
    let path = dir.join("app.csv");
    // The same first bytes (a header longer than the fingerprint) in both versions.
    let header = "timestamp,level,service,message,trace_id,span_id,host,region\n";
    append(&path, header);
    append(&path, &lines("old", 0..100));
    let cfg = config(&dir, &["*.csv"], json!({"fingerprint_size": 32}));
    let rx = Rx::start(cfg.clone()).await;
    assert_eq!(rx.rec.wait_for(101).await, 101);
    rx.stop().await;
    // Truncated and written again, shorter than the checkpoint, while stopped.
    std::fs::write(&path, format!("{header}{}", lines("new", 0..10))).unwrap();
    let rx2 = Rx::build(cfg, Arc::new(Recorder::default()));
    let steps = Arc::new(AtomicUsize::new(0));
    let counter = steps.clone();
    *rx2.rx.before_step.lock().unwrap() = Some(Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    rx2.rx
        .start(&Host::new(std::env::temp_dir()))
        .await
        .unwrap();
    // Once the first step (the first poll) is over, the file grows past the old offset.
    let deadline = Instant::now() + Duration::from_secs(10);
    while steps.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    append(&path, &lines("new", 10..200));
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(rx2.rec.wait_for(201).await, 201);
    assert!(checkpoint_at(&dir, &path, size).await);
    rx2.stop().await;
    let expected = std::iter::once(header.trim_end().to_string()).chain(names("new", 0..200));
    assert_exactly(&rx2.rec.bodies(), expected);
}
