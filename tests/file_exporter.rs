//! The `file` exporter end to end: `filelog -> file` with the real binary. A kill -9 while
//! lines wait in the exporter's buffer loses nothing: the checkpoint moves only past lines
//! that reached the file, so the restart reads the buffered ones again.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn filelog_to_file(ports: Ports, dir: &Path, out: &Path, flush_interval: &str) -> String {
    format!(
        r#"
receivers:
  filelog:
    include: ["{dir}/*.log"]
    start_at: beginning
    poll_interval: 50ms
    storage: "{dir}/storage"
exporters:
  file: {{ path: "{out}", flush_interval: {flush_interval} }}
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    logs: {{ receivers: [filelog], exporters: [file] }}
"#,
        dir = dir.display(),
        out = out.display(),
        metrics = ports.metrics,
        health = ports.health,
    )
}

fn line_text(i: usize) -> String {
    format!("line-{i:06} GET /api/orders 200")
}

/// The value of a `sightline_component_items_*_total` series of one component.
fn component_counter(metrics: &str, name: &str, component_id: &str) -> f64 {
    let id = format!("component_id=\"{component_id}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&id))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_lines_wait_in_the_buffer_loses_none() {
    // About 370 bytes of OTLP/JSON each: well under the 256 KiB that force a write.
    const N: usize = 300;
    let dir = temp_dir("file-exporter-kill");
    let out = dir.join("out/export.jsonl");
    let mut f = std::fs::File::create(dir.join("app.log")).unwrap();
    for i in 0..N {
        writeln!(f, "{}", line_text(i)).unwrap();
    }
    drop(f);

    // A flush window of an hour (the lines stay under the 256 KiB that force a write): the
    // receiver hands everything over and the exporter holds it all in its buffer.
    let ports = Ports::new();
    let mut sl = Sightline::start(&filelog_to_file(ports, &dir, &out, "1h"), ports).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let accepted = component_counter(
            &sl.metrics().await,
            "sightline_component_items_sent_total",
            "filelog",
        );
        if accepted >= N as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "filelog passed on {accepted} of {N} lines: {}",
            sl.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sl.child.kill().unwrap();
    sl.child.wait().unwrap();
    let before_kill = read(&out).len();
    assert_eq!(
        before_kill, 0,
        "the exporter wrote {before_kill} bytes before the kill; the test must kill inside the flush window"
    );

    // The restart reads from the checkpoint, which must not be past any unwritten line.
    let ports = Ports::new();
    let sl = Sightline::start(&filelog_to_file(ports, &dir, &out, "50ms"), ports).await;
    let deadline = Instant::now() + DEADLINE;
    let missing = loop {
        let written = read(&out);
        let missing: Vec<usize> = (0..N)
            .filter(|i| !written.contains(&format!("\"{}\"", line_text(*i))))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {N} lines lost across kill -9 (first: line {}): {}",
        missing.len(),
        missing[0],
        sl.logs()
    );
}
