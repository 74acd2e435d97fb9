//! The `filelog` scenario: one million seed-style JSON log lines (about 330 bytes each) read
//! from the beginning of a file through `filelog -> batch -> otlp` into the counting sink,
//! once with `parser: none` and once with `parser: {type: json}`. The process's CPU time
//! and peak RSS are read when the sink has counted every line. Baselines in the same run:
//! `wc -l` on the file, and reading and splitting it into lines in a child process
//! (`sightline-bench split-lines FILE`). Then 1,000 files being written at once (a line to
//! each every 100 ms for 10 s) through `filelog -> batch -> otlp`: the CPU of each poll
//! (glob walk, `stat` and the identity check of every changed file) and of reading, and,
//! after the writers stop, of polling the 1,000 idle files. `FILELOG_EXTRA` is appended
//! inside the receiver's config map, for trying settings
//! (`FILELOG_EXTRA=', max_in_flight_records: 16384'`).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::harness::{Sink, Target, free_port, serve_sink, start_sightline, usage, wait_for_port};

const LINES: u64 = 1_000_000;

/// Writes the file: the seed guide's `StructuredLogger` layout (`json.dumps` of timestamp,
/// level, service, message, module, function, line, then the request's extra fields).
fn generate(path: &Path) -> Result<u64> {
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR"];
    let paths = [
        "/api/users/{id}",
        "/api/orders/{id}/items",
        "/api/cart/{id}/checkout",
        "/health",
    ];
    let mut bytes = 0u64;
    for i in 0..LINES {
        let level = levels[(i % 6) as usize];
        let path = paths[(i % 4) as usize].replace("{id}", &format!("{}", i % 100_000));
        let (message, function, line) = if i % 2 == 0 {
            ("Request started", "before_request", 164)
        } else {
            ("Request completed", "after_request", 177)
        };
        let text = format!(
            "{{\"timestamp\": \"2024-01-15T10:{:02}:{:02}.{:06}\", \"level\": \"{level}\", \"service\": \"api\", \"message\": \"{message}\", \"module\": \"app\", \"function\": \"{function}\", \"line\": {line}, \"request_id\": \"{:08x}-7c1e-4b2a-9f3d-{:012x}\", \"method\": \"GET\", \"path\": \"{path}\", \"status_code\": {}, \"duration_seconds\": 0.{:06}, \"ip\": \"10.42.{}.{}\"}}\n",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1_000_000,
            i as u32,
            i * 7919,
            if i % 50 == 0 { 503 } else { 200 },
            (i * 37) % 1_000_000,
            (i / 256) % 256,
            i % 256,
        );
        bytes += text.len() as u64;
        f.write_all(text.as_bytes())?;
    }
    f.flush()?;
    Ok(bytes)
}

/// The `split-lines FILE` subcommand: reads the file in 256 KiB chunks and finds every
/// newline, then prints its line count, CPU seconds and peak RSS bytes.
pub(crate) fn split_lines(path: &str) -> Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let (mut lines, mut longest, mut current) = (0u64, 0usize, 0usize);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut rest = &buf[..n];
        while let Some(k) = memchr::memchr(b'\n', rest) {
            lines += 1;
            longest = longest.max(current + k);
            current = 0;
            rest = &rest[k + 1..];
        }
        current += rest.len();
    }
    let (cpu, rss) = usage(std::process::id())?;
    let cpu = cpu.total();
    println!("{lines} {cpu} {rss} {longest}");
    Ok(())
}

/// CPU seconds of `wc -l FILE`, from the waiting shell's children's times.
fn wc_cpu(path: &Path) -> Result<f64> {
    let out = Command::new("sh")
        .args(["-c", "wc -l \"$1\" >/dev/null && cat /proc/$$/stat", "sh"])
        .arg(path)
        .output()?;
    let stat = String::from_utf8(out.stdout)?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // cutime and cstime: fields 16 and 17 of the whole line.
    let ticks: f64 = f[13].parse::<f64>()? + f[14].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn row(name: &str, bytes: u64, wall: f64, cpu: f64, rss: Option<u64>, lost: &str) {
    let rss = rss.map_or("-".to_string(), |r| format!("{:.1}", r as f64 / 1048576.0));
    println!(
        "| {name} | {LINES} | {:.1} | {wall:.2} | {cpu:.2} | {:.0} | {:.0} | {rss} | {lost} |",
        bytes as f64 / 1e6,
        LINES as f64 / cpu.max(1e-9),
        bytes as f64 / 1e6 / cpu.max(1e-9),
    );
}

async fn run_sightline(
    sightline: &str,
    sink: &Sink,
    sink_addr: std::net::SocketAddr,
    file: &Path,
    dir: &Path,
    parser: &str,
    compression: &str,
) -> Result<(f64, f64, u64, u64)> {
    let (grpc, health, metrics) = (free_port()?, free_port()?, free_port()?);
    let storage: PathBuf = dir.join(format!("storage-{parser}-{compression}"));
    let _ = std::fs::remove_dir_all(&storage);
    let config = format!(
        "receivers:\n  otlp: {{ protocols: {{ grpc: {{ endpoint: '127.0.0.1:{grpc}' }} }} }}\n  filelog: {{ include: ['{file}'], start_at: beginning, storage: '{storage}', parser: {{ type: {parser} }} {extra} }}\n\
         processors: {{ batch: {{}} }}\n\
         exporters: {{ otlp: {{ endpoint: 'http://{sink_addr}', compression: {compression} }} }}\n\
         service:\n  telemetry: {{ logs: {{ level: warn }}, metrics: {{ endpoint: '127.0.0.1:{metrics}' }} }}\n  health: {{ endpoint: '127.0.0.1:{health}' }}\n  pipelines:\n    logs: {{ receivers: [otlp, filelog], processors: [batch], exporters: [otlp] }}\n",
        file = file.display(),
        storage = storage.display(),
        extra = std::env::var("FILELOG_EXTRA").unwrap_or_default(),
    );
    let config_path = dir.join(format!("filelog-{parser}-{compression}.yaml"));
    std::fs::write(&config_path, config)?;
    let before = sink.logs.load(Ordering::Relaxed);
    let start = Instant::now();
    let child = Command::new(sightline)
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let target = Target {
        name: format!("sightline (filelog, parser {parser})"),
        child,
        url: String::new(),
    };
    wait_for_port(grpc).await?;
    wait_for_lines(sink, before, LINES, &target.name).await?;
    let wall = start.elapsed().as_secs_f64();
    let (cpu, rss) = usage(target.child.id())?;
    let cpu = cpu.total();
    // Anything beyond the file is a duplicate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = sink.logs.load(Ordering::Relaxed) - before;
    Ok((wall, cpu, rss, delivered))
}

/// Waits until the sink counted `n` log records since it held `before`.
async fn wait_for_lines(sink: &Sink, before: u64, n: u64, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while sink.logs.load(Ordering::Relaxed) - before < n {
        if Instant::now() > deadline {
            bail!(
                "{name}: only {} of {n} lines arrived",
                sink.logs.load(Ordering::Relaxed) - before
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Runs the scenario and prints its table.
pub(crate) async fn run(sightline: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("sightline-bench-filelog-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("seed-1m.log");
    let bytes = generate(&file)?;
    eprintln!(
        "generated {} ({LINES} lines, {:.1} MB, {:.0} bytes per line)",
        file.display(),
        bytes as f64 / 1e6,
        bytes as f64 / LINES as f64
    );
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    println!(
        "| process | lines | MB | wall s | CPU s | lines per CPU-second | MB per CPU-second | peak RSS MiB | lost / duplicated |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // Warm the page cache so every row reads from memory.
    let _ = wc_cpu(&file)?;
    let start = Instant::now();
    let cpu = wc_cpu(&file)?;
    row(
        "baseline: `wc -l`",
        bytes,
        start.elapsed().as_secs_f64(),
        cpu,
        None,
        "-",
    );
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .arg("split-lines")
        .arg(&file)
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    let text = String::from_utf8(out.stdout)?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.first().and_then(|n| n.parse::<u64>().ok()) != Some(LINES) {
        bail!("split-lines counted {text:?}");
    }
    row(
        "baseline: read + split into lines (256 KiB reads, memchr)",
        bytes,
        wall,
        f[1].parse()?,
        Some(f[2].parse()?),
        "-",
    );
    for (parser, compression) in [("none", "none"), ("json", "none"), ("json", "gzip")] {
        let (wall, cpu, rss, delivered) = run_sightline(
            sightline,
            &sink,
            sink_addr,
            &file,
            &dir,
            parser,
            compression,
        )
        .await?;
        let name = format!(
            "sightline `filelog -> batch -> otlp`, parser {parser}, compression {compression}"
        );
        let lost = format!(
            "{} / {}",
            LINES.saturating_sub(delivered),
            delivered.saturating_sub(LINES)
        );
        row(&name, bytes, wall, cpu, Some(rss), &lost);
    }
    many_files(sightline, &sink, sink_addr, &dir).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Files written at once in the many-files run.
const FILES: usize = 1000;
/// Rounds of one line to every file, one every [`ROUND`].
const ROUNDS: usize = 100;
const ROUND: Duration = Duration::from_millis(100);
/// The receiver's default `poll_interval`.
const POLL: Duration = Duration::from_millis(200);

/// One seed-style line for file `f`, round `r`.
fn many_line(f: usize, r: usize) -> String {
    format!(
        "{{\"timestamp\": \"2024-01-15T10:30:{:02}.{:06}\", \"level\": \"INFO\", \"service\": \"worker-{f:04}\", \"message\": \"Request completed\", \"module\": \"app\", \"function\": \"after_request\", \"line\": 177, \"request_id\": \"{f:08x}-7c1e-4b2a-9f3d-{r:012x}\", \"method\": \"GET\", \"path\": \"/api/users/{r}\", \"status_code\": 200, \"duration_seconds\": 0.045}}\n",
        r % 60,
        f * 1000 + r % 1000,
    )
}

fn append_to(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// 1,000 files being written: CPU per poll while they change, and while they are idle.
async fn many_files(
    sightline: &str,
    sink: &Sink,
    sink_addr: std::net::SocketAddr,
    dir: &Path,
) -> Result<()> {
    let files = dir.join("many");
    let _ = std::fs::remove_dir_all(&files);
    std::fs::create_dir_all(&files)?;
    let path = |f: usize| files.join(format!("app-{f:04}.log"));
    for f in 0..FILES {
        append_to(&path(f), &many_line(f, 0))?;
    }
    let storage = dir.join("storage-many");
    let _ = std::fs::remove_dir_all(&storage);
    let config = format!(
        "receivers:\n  otlp: {{ protocols: {{ grpc: {{ endpoint: '127.0.0.1:{{GRPC}}' }} }} }}\n  filelog: {{ include: ['{files}/*.log'], start_at: beginning, storage: '{storage}' {extra} }}\n\
         processors: {{ batch: {{}} }}\n\
         exporters: {{ otlp: {{ endpoint: 'http://{{SINK}}', compression: none }} }}\n\
         service:\n  telemetry: {{ logs: {{ level: warn }}, metrics: {{ endpoint: '127.0.0.1:{{METRICS}}' }} }}\n  health: {{ endpoint: '127.0.0.1:{{HEALTH}}' }}\n  pipelines:\n    logs: {{ receivers: [otlp, filelog], processors: [batch], exporters: [otlp] }}\n",
        files = files.display(),
        storage = storage.display(),
        extra = std::env::var("FILELOG_EXTRA").unwrap_or_default(),
    );
    let before = sink.logs.load(Ordering::Relaxed);
    let target = start_sightline(sightline, "filelog-1000-files", &config, sink_addr).await?;
    let wait_for = |n: u64| wait_for_lines(sink, before, n, &target.name);
    wait_for(FILES as u64).await?;
    let pid = target.child.id();
    let (cpu0, _) = usage(pid)?;
    let start = Instant::now();
    let writer_paths: Vec<PathBuf> = (0..FILES).map(path).collect();
    let writer = std::thread::spawn(move || -> Result<u64> {
        let mut bytes = 0u64;
        let begin = Instant::now();
        for r in 1..=ROUNDS {
            for (f, p) in writer_paths.iter().enumerate() {
                let line = many_line(f, r);
                bytes += line.len() as u64;
                append_to(p, &line)?;
            }
            let next = begin + ROUND * r as u32;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        Ok(bytes)
    });
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    let lines = (FILES * (ROUNDS + 1)) as u64;
    wait_for(lines).await?;
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _) = usage(pid)?;
    let busy = cpu1.since(&cpu0);
    // Idle: the same files, no longer written.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu2, _) = usage(pid)?;
    let idle_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu3, rss) = usage(pid)?;
    let idle_wall = idle_start.elapsed().as_secs_f64();
    let idle = cpu3.since(&cpu2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = sink.logs.load(Ordering::Relaxed) - before;
    drop(target);
    let polls = |wall: f64| (wall / POLL.as_secs_f64()).max(1.0);
    let written_lines = (FILES * ROUNDS) as u64;
    println!();
    println!(
        "| {FILES} files, `filelog -> batch -> otlp`, parser none | lines | MB | wall s | CPU s | lines per CPU-second | MB per CPU-second | CPU ms per poll | peak RSS MiB | lost / duplicated |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| being written (a line to each file every 100 ms) | {written_lines} | {:.1} | {wall:.2} | {busy:.2} | {:.0} | {:.1} | {:.2} | {:.1} | {} / {} |",
        written as f64 / 1e6,
        written_lines as f64 / busy.max(1e-9),
        written as f64 / 1e6 / busy.max(1e-9),
        busy * 1e3 / polls(wall),
        rss as f64 / 1048576.0,
        lines.saturating_sub(delivered),
        delivered.saturating_sub(lines),
    );
    println!(
        "| idle (nothing written) | 0 | 0 | {idle_wall:.2} | {idle:.3} | - | - | {:.2} | - | - |",
        idle * 1e3 / polls(idle_wall),
    );
    Ok(())
}
