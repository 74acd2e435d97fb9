//! The `filelog` receiver end to end: the real binary tails files into a downstream OTLP
//! server. kill -9 in the middle of a large file loses nothing and repeats at most what was
//! in flight; a restart with `start_at: end` resumes from the checkpoint; the seed guide's
//! Flask logging output arrives as records with severity, body, trace context and
//! attributes; a file copy-truncated (or rewritten in place) and written again before the
//! next poll, even to its old size or beyond, is read again from its start.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

fn filelog_config(ports: Ports, dir: &Path, downstream: &str, receiver_extra: &str) -> String {
    filelog_config_with(ports, dir, downstream, receiver_extra, "")
}

fn filelog_config_with(
    ports: Ports,
    dir: &Path,
    downstream: &str,
    receiver_extra: &str,
    exporter_extra: &str,
) -> String {
    format!(
        r#"
receivers:
  filelog:
    include: ["{dir}/*.log"]
    poll_interval: 50ms
    storage: "{dir}/storage"
    {receiver_extra}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp:
    endpoint: "{downstream}"
    compression: none
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s }}
    {exporter_extra}
service:
  telemetry:
    logs: {{ level: info }}
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    logs: {{ receivers: [filelog], processors: [batch], exporters: [otlp] }}
"#,
        dir = dir.display(),
        metrics = ports.metrics,
        health = ports.health,
    )
}

fn records(received: &Received) -> Vec<(Option<String>, LogRecord)> {
    received
        .resource_logs()
        .into_iter()
        .flat_map(|rl| {
            let service = rl.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        V::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
            });
            rl.scope_logs
                .into_iter()
                .flat_map(|s| s.log_records)
                .map(move |r| (service.clone(), r))
        })
        .collect()
}

fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn attr(r: &LogRecord, key: &str) -> Option<V> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone())
}

fn log_count(received: &Received) -> usize {
    received
        .logs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Counts of each body received.
fn body_counts(received: &Received) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, r) in records(received) {
        *counts.entry(body(&r)).or_insert(0) += 1;
    }
    counts
}

fn write_lines(path: &Path, range: std::ops::Range<usize>) {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    for i in range {
        writeln!(
            f,
            "line-{i:07} GET /api/users/{} 200 request_id=req-{i:07} padding-to-look-like-a-real-access-log-line",
            i % 1000
        )
        .unwrap();
    }
    f.flush().unwrap();
}

fn line_text(i: usize) -> String {
    format!(
        "line-{i:07} GET /api/users/{} 200 request_id=req-{i:07} padding-to-look-like-a-real-access-log-line",
        i % 1000
    )
}

async fn wait_for_bodies(downstream: &Downstream, n: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = body_counts(&downstream.received);
        if counts.len() >= n || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_large_file_loses_nothing() {
    const N: usize = 150_000;
    let downstream = Downstream::start().await;
    let dir = temp_dir("filelog-kill");
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("big.log")).unwrap());
    for i in 0..N {
        writeln!(f, "{}", line_text(i)).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    // One sender, so exactly one batch is in flight at a time.
    let one_sender = "sending_queue: { num_consumers: 1 }";
    let ports = Ports::new();
    let config = filelog_config_with(
        ports,
        &dir,
        &downstream.url(),
        "start_at: beginning",
        one_sender,
    );
    let mut sl = Sightline::start(&config, ports).await;
    // Mid-file: some delivered, most not.
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_count(&downstream.received) < N / 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sl.child.kill().unwrap();
    sl.child.wait().unwrap();
    let at_kill = log_count(&downstream.received);
    assert!(at_kill >= N / 5, "only {at_kill} delivered: {}", sl.logs());
    assert!(
        at_kill < N,
        "the whole file was delivered before the kill; make it larger"
    );

    let largest_batch = downstream
        .received
        .logs
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            r.resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    // The restart resumes at the checkpoint.
    let ports = Ports::new();
    let config = filelog_config_with(
        ports,
        &dir,
        &downstream.url(),
        "start_at: beginning",
        one_sender,
    );
    let sl = Sightline::start(&config, ports).await;
    wait_for_bodies(&downstream, N).await;
    // Settle: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = body_counts(&downstream.received);
    let missing = (0..N)
        .filter(|i| !counts.contains_key(&line_text(*i)))
        .count();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9 with {at_kill} of {N} lines delivered (largest batch {largest_batch}); duplicates after restart: {duplicates}"
    );
    assert_eq!(missing, 0, "lines lost across kill -9: {}", sl.logs());
    assert_eq!(counts.len(), N, "unexpected lines");
    // Nothing beyond the batch in flight when the process died.
    assert!(
        duplicates <= largest_batch,
        "{duplicates} duplicates is more than the batch in flight ({largest_batch})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_start_at_end_resumes_from_the_checkpoint() {
    let downstream = Downstream::start().await;
    let dir = temp_dir("filelog-restart");
    let path = dir.join("app.log");
    write_lines(&path, 0..100); // there before the first start: skipped (start_at: end)
    let ports = Ports::new();
    let config = filelog_config(ports, &dir, &downstream.url(), "start_at: end");
    let mut sl = Sightline::start(&config, ports).await;
    // The file is known (checkpointed at its end) once the first poll ran.
    let cp = dir.join("storage/checkpoints.json");
    let deadline = Instant::now() + DEADLINE;
    while !read(&cp).contains("app.log") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_lines(&path, 100..300);
    assert!(
        downstream.wait_until(|r| log_count(r) >= 200).await,
        "{}",
        sl.logs()
    );
    assert!(sl.terminate().await.success());
    write_lines(&path, 300..450); // written while stopped
    let ports = Ports::new();
    let config = filelog_config(ports, &dir, &downstream.url(), "start_at: end");
    let sl = Sightline::start(&config, ports).await;
    assert!(
        downstream.wait_until(|r| log_count(r) >= 350).await,
        "{}",
        sl.logs()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = body_counts(&downstream.received);
    assert_eq!(counts.len(), 350, "{}", sl.logs());
    assert!(
        counts.values().all(|n| *n == 1),
        "duplicates after a clean restart"
    );
    assert!((100..450).all(|i| counts.contains_key(&line_text(i))));
}

/// What the seed guide's `StructuredLogger` (`json.dumps` of its `log_data`) writes for the
/// Flask example's `before_request` / `after_request` hooks, plus an error logged with
/// `exc_info` and trace context passed as extra fields.
fn flask_output() -> String {
    [
        r#"{"timestamp": "2024-01-15T10:30:00.123456", "level": "INFO", "service": "api", "message": "Request started", "module": "app", "function": "before_request", "line": 164, "request_id": "5f0c6a8e-8a7e-4c1b-9d0e-2b7f3c9a1d42", "method": "GET", "path": "/api/users/42", "ip": "10.1.2.3", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}"#,
        r#"{"timestamp": "2024-01-15T10:30:00.168456", "level": "INFO", "service": "api", "message": "Request completed", "module": "app", "function": "after_request", "line": 177, "request_id": "5f0c6a8e-8a7e-4c1b-9d0e-2b7f3c9a1d42", "status_code": 200, "duration_seconds": 0.045, "method": "GET", "path": "/api/users/42", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}"#,
        r#"{"timestamp": "2024-01-15T10:30:01.000001", "level": "ERROR", "service": "api", "message": "Request failed", "module": "app", "function": "get_user", "line": 88, "request_id": "77aa1c2e-0000-4c1b-9d0e-2b7f3c9a1d42", "user_id": null, "exception": {"type": "KeyError", "message": "'42'", "traceback": ["Traceback (most recent call last):\n", "  File \"/srv/app.py\", line 86, in get_user\n    return users[user_id]\n", "KeyError: '42'\n"]}}"#,
        r#"{"timestamp": "2024-01-15T10:30:02.500000", "level": "WARNING", "service": "api-service", "message": "Deprecated API used", "module": "legacy", "function": "v1_handler", "line": 12}"#,
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_structured_logs_become_records() {
    let downstream = Downstream::start().await;
    let dir = temp_dir("filelog-flask");
    std::fs::write(dir.join("api.log"), flask_output()).unwrap();
    let ports = Ports::new();
    let config = filelog_config(
        ports,
        &dir,
        &downstream.url(),
        "start_at: beginning\n    parser: { type: json }",
    );
    let sl = Sightline::start(&config, ports).await;
    assert!(
        downstream.wait_until(|r| log_count(r) >= 4).await,
        "{}",
        sl.logs()
    );
    let mut got = records(&downstream.received);
    got.sort_by_key(|(_, r)| r.time_unix_nano);
    assert_eq!(got.len(), 4);

    let (service, r) = &got[0];
    assert_eq!(service.as_deref(), Some("api"));
    assert_eq!(body(r), "Request started");
    assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
    assert_eq!(r.time_unix_nano, 1_705_314_600_123_456_000);
    assert_eq!(hex(&r.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&r.span_id), "00f067aa0ba902b7");
    assert_eq!(
        attr(r, "function"),
        Some(V::StringValue("before_request".into()))
    );
    assert_eq!(attr(r, "line"), Some(V::IntValue(164)));
    assert_eq!(attr(r, "ip"), Some(V::StringValue("10.1.2.3".into())));
    assert_eq!(
        attr(r, "log.file.name"),
        Some(V::StringValue("api.log".into()))
    );

    let (_, r) = &got[1];
    assert_eq!(body(r), "Request completed");
    assert_eq!(attr(r, "status_code"), Some(V::IntValue(200)));
    assert_eq!(attr(r, "duration_seconds"), Some(V::DoubleValue(0.045)));
    assert_eq!(
        attr(r, "request_id"),
        Some(V::StringValue(
            "5f0c6a8e-8a7e-4c1b-9d0e-2b7f3c9a1d42".into()
        ))
    );

    let (_, r) = &got[2];
    assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
    assert!(r.trace_id.is_empty());
    assert_eq!(
        attr(r, "exception.type"),
        Some(V::StringValue("KeyError".into()))
    );
    assert_eq!(
        attr(r, "exception.message"),
        Some(V::StringValue("'42'".into()))
    );
    assert_eq!(
        attr(r, "exception.stacktrace"),
        Some(V::StringValue(
            "Traceback (most recent call last):\n  File \"/srv/app.py\", line 86, in get_user\n    return users[user_id]\nKeyError: '42'\n".into()
        ))
    );

    let (service, r) = &got[3];
    assert_eq!(service.as_deref(), Some("api-service"));
    assert_eq!(r.severity_number, 13);

    let metrics = sl.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with(r#"sightline_component_items_sent_total{component_id="filelog",component_kind="receiver",signal="logs"} 4"#)),
        "{metrics}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A seed-style JSON line of fixed length (every `i` below 10,000,000 gives the same length).
fn seed_line(i: usize) -> String {
    format!(
        r#"{{"timestamp": "2024-01-15T10:{:02}:{:02}.{:06}", "level": "INFO", "service": "api", "message": "Request completed", "module": "app", "function": "after_request", "line": 177, "request_id": "req-{i:07}", "method": "GET", "path": "/api/users/{:05}", "status_code": 200}}"#,
        (i / 60_000) % 60,
        (i / 1000) % 60,
        i % 1_000_000,
        i % 100_000
    )
}

fn seed_lines(range: std::ops::Range<usize>) -> Vec<u8> {
    range
        .flat_map(|i| format!("{}\n", seed_line(i)).into_bytes())
        .collect()
}

/// The rotation tests' config: `*.log` from the beginning, polled every 200 ms (the default),
/// so a rotation and the writes after it fall between two polls.
fn rotation_config(ports: Ports, dir: &Path, downstream: &str) -> String {
    filelog_config(ports, dir, downstream, "start_at: beginning")
        .replace("poll_interval: 50ms", "poll_interval: 200ms")
}

/// Waits until the downstream holds `n` distinct seed lines, lets the pipeline settle, and
/// checks each of `expected` arrived exactly once and nothing else did.
async fn assert_seed_lines_once(
    downstream: &Downstream,
    sl: &Sightline,
    expected: std::ops::Range<usize>,
) {
    let n = expected.len();
    wait_for_bodies_within(downstream, n, DEADLINE).await;
    // Settle: a late duplicate would arrive within a few polls.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let counts = body_counts(&downstream.received);
    let missing: Vec<usize> = expected
        .clone()
        .filter(|i| !counts.contains_key(&seed_line(*i)))
        .collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "missing {} lines (first {:?}, last {:?}): {}",
        missing.len(),
        missing.first(),
        missing.last(),
        sl.logs()
    );
    assert!(
        duplicated.is_empty(),
        "{} lines duplicated, e.g. {:?}",
        duplicated.len(),
        duplicated.first()
    );
    assert_eq!(counts.len(), n, "unexpected lines: {}", sl.logs());
}

async fn wait_for_bodies_within(downstream: &Downstream, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while body_counts(&downstream.received).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// logrotate's `copytruncate`: copies the file to a name the globs do not match, truncates
/// it, and the application (appending) writes `next` at once, before the next poll.
fn copy_truncate_and_write(path: &Path, next: &[u8]) {
    let mut writer = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    std::fs::copy(path, path.with_extension("copy")).unwrap();
    writer.set_len(0).unwrap();
    writer.write_all(next).unwrap();
}

/// A downstream, and Sightline tailing `app.log` in a fresh directory once it holds seed
/// lines `0..n` and they all arrived.
async fn tailing_seed_lines(tag: &str, n: usize) -> (Downstream, std::path::PathBuf, Sightline) {
    let downstream = Downstream::start().await;
    let dir = temp_dir(tag);
    std::fs::write(dir.join("app.log"), seed_lines(0..n)).unwrap();
    let ports = Ports::new();
    let sl = Sightline::start(&rotation_config(ports, &dir, &downstream.url()), ports).await;
    wait_for_bodies_within(&downstream, n, DEADLINE).await;
    (downstream, dir, sl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_truncate_then_more_bytes_than_before_within_one_poll() {
    let (downstream, dir, sl) = tailing_seed_lines("filelog-ct-more", 1000).await;
    let path = dir.join("app.log");
    // Half as much again as the file held: the size passes the offset read.
    copy_truncate_and_write(&path, &seed_lines(1000..2500));
    assert_seed_lines_once(&downstream, &sl, 0..2500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_then_copy_truncate_with_as_many_bytes_as_before() {
    // The issue's scenario: 1,000 lines, renamed away, 1,000 more, copy-truncated, and
    // 1,000 more of the same length: the file ends at exactly the offset already read.
    let (downstream, dir, sl) = tailing_seed_lines("filelog-ct-same", 1000).await;
    let path = dir.join("app.log");
    std::fs::rename(&path, dir.join("app.log.1")).unwrap();
    std::fs::write(&path, seed_lines(1000..2000)).unwrap();
    wait_for_bodies_within(&downstream, 2000, DEADLINE).await;
    let before = std::fs::metadata(&path).unwrap().len();
    copy_truncate_and_write(&path, &seed_lines(2000..3000));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    assert_seed_lines_once(&downstream, &sl, 0..3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_in_place_with_the_same_length_is_read_again() {
    use std::os::unix::fs::FileExt;
    let (downstream, dir, sl) = tailing_seed_lines("filelog-rewrite", 500).await;
    let path = dir.join("app.log");
    // Overwritten from offset 0, never shorter: same inode, same size, new content.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&seed_lines(500..1000), 0).unwrap();
    drop(f);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        seed_lines(0..500).len() as u64
    );
    assert_seed_lines_once(&downstream, &sl, 0..1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_file_rewritten_while_stopped_is_read_again_at_start_up() {
    let (downstream, dir, mut sl) = tailing_seed_lines("filelog-ct-restart", 1000).await;
    let path = dir.join("app.log");
    assert!(sl.terminate().await.success(), "{}", sl.logs());
    // While stopped: copy-truncated and written to the size it had.
    copy_truncate_and_write(&path, &seed_lines(1000..2000));
    let ports = Ports::new();
    let sl = Sightline::start(&rotation_config(ports, &dir, &downstream.url()), ports).await;
    assert_seed_lines_once(&downstream, &sl, 0..2000).await;
}
