//! The `hostmetrics` scenario: CPU time of one full scrape (all scrapers) done in this
//! process, against Debian's `prometheus-node-exporter` answering one scrape, in the same
//! run; and the resident memory the scraper adds.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use receivers::hostmetrics::{HostMetricsConfig, HostScraper};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{free_port, usage, wait_for_port};

const SCRAPES: u32 = 2000;
const NODE_EXPORTER_SCRAPES: u32 = 200;

fn all_scrapers(connections: bool) -> HostMetricsConfig {
    let mut c = HostMetricsConfig::default();
    let on = serde_json::json!({ "cpu": null, "load": null, "memory": null, "paging": null,
        "filesystem": null, "disk": null, "network": { "connections": connections }, "processes": null });
    c.scrapers = serde_json::from_value(on).unwrap_or_default();
    c
}

/// One HTTP/1.0 GET, reading the whole answer.
async fn get(port: u16, path: &str) -> Result<usize> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await?;
    Ok(body.len())
}

async fn node_exporter() -> Result<Option<(f64, u64)>> {
    let Ok(path) = which("prometheus-node-exporter") else {
        return Ok(None);
    };
    let port = free_port()?;
    let mut child = Command::new(path)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = async {
        wait_for_port(port).await?;
        get(port, "/metrics").await?;
        let (cpu0, _) = usage(child.id())?;
        let mut bytes = 0;
        for _ in 0..NODE_EXPORTER_SCRAPES {
            bytes = get(port, "/metrics").await?;
        }
        let (cpu1, rss) = usage(child.id())?;
        anyhow::Ok((cpu1.since(&cpu0), rss, bytes))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (cpu, rss, bytes) = result?;
    anyhow::ensure!(bytes > 1000, "node_exporter answered only {bytes} bytes");
    Ok(Some((cpu / f64::from(NODE_EXPORTER_SCRAPES), rss)))
}

fn which(name: &str) -> Result<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()?;
    let path = String::from_utf8(out.stdout)?.trim().to_string();
    anyhow::ensure!(!path.is_empty(), "{name} not installed");
    Ok(path)
}

/// This process's resident memory now (not the peak), in bytes.
fn rss_now() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// Runs the scenario and prints its table.
pub(crate) async fn run() -> Result<()> {
    let rss_before = rss_now()?;
    let mut scraper = HostScraper::new(&all_scrapers(false));
    let (rm, problems) = scraper.scrape();
    let metrics = rm.scope_metrics.first().map_or(0, |s| s.metrics.len());
    let me = std::process::id();
    let (cpu0, _) = usage(me)?;
    let start = Instant::now();
    for _ in 0..SCRAPES {
        let _ = scraper.scrape();
    }
    let wall = start.elapsed();
    let (cpu1, _) = usage(me)?;
    let ours = cpu1.since(&cpu0) / f64::from(SCRAPES);
    let rss_added = rss_now()?.saturating_sub(rss_before);
    let mut with_connections = HostScraper::new(&all_scrapers(true));
    let (cpu2, _) = usage(me)?;
    for _ in 0..SCRAPES / 10 {
        let _ = with_connections.scrape();
    }
    let (cpu3, _) = usage(me)?;
    let connections = cpu3.since(&cpu2) / f64::from(SCRAPES / 10);
    let node = node_exporter()
        .await
        .context("running prometheus-node-exporter")?;

    println!("| what | CPU per scrape (ms) | notes |");
    println!("|---|---|---|");
    println!(
        "| sightline hostmetrics, all 8 scrapers ({metrics} metrics, {} problems) | {:.3} | {SCRAPES} scrapes in-process, {:.3} ms wall each |",
        problems.len(),
        ours * 1000.0,
        wall.as_secs_f64() * 1000.0 / f64::from(SCRAPES)
    );
    println!(
        "| the same with `network: {{ connections: true }}` | {:.3} | {} scrapes; reading /proc/net/tcp and tcp6 walks the kernel's TCP hash table |",
        connections * 1000.0,
        SCRAPES / 10
    );
    match node {
        Some((cpu, rss)) => println!(
            "| prometheus-node-exporter, one /metrics scrape | {:.3} | {NODE_EXPORTER_SCRAPES} scrapes; its peak RSS {:.1} MiB |",
            cpu * 1000.0,
            rss as f64 / 1048576.0
        ),
        None => println!(
            "| prometheus-node-exporter | n/a | not installed: apt-get install prometheus-node-exporter |"
        ),
    }
    println!();
    println!(
        "RSS added by the receiver's scraper (this process's VmRSS before creating it and after {SCRAPES} scrapes): {:.2} MiB",
        rss_added as f64 / 1048576.0
    );
    Ok(())
}
