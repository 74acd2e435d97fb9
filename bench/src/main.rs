//! End-to-end benchmarks of the `sightline` process, each with a baseline measured in the
//! same run. Reports items per CPU-second of the process under test (utime + stime from
//! /proc) and its peak RSS (VmHWM) as a markdown table for BENCHMARKS.md.
//!
//! Usage (see bench/run.sh):
//! ```text
//!   sightline-bench --sightline PATH [SCENARIO] [--seconds N] [--rate N] [--concurrency N]
//!     [--rounds N] [--load max|rate|both]   (the last two: `redaction` and `loki` only)
//! ```
//! Scenarios: `traces` (default): OTLP/gRPC traces through `otlp -> batch -> otlp` against a
//! minimal tonic forwarder. `hostmetrics`: CPU per full scrape against prometheus-node-exporter,
//! and the RSS the receiver adds. `redaction`: traces through `otlp -> redaction -> batch ->
//! otlp` against the same pipeline without it. `sli`: traces fanned out to `sli` and `otlp`
//! with 1,000 series against the same pipeline without `sli`. `filelog`: a million
//! seed-style JSON lines read from a file through `filelog -> batch -> otlp` (parser none and
//! json) against `wc -l` and a read-and-split child (`sightline-bench split-lines FILE`), then
//! 1,000 files being written at once (CPU per poll while written and while idle).
//! `request_id`: logs through `otlp -> request_id -> batch -> otlp` with 100,000 live request
//! IDs against the same pipeline without it, and memory per entry with a million entries.
//! `prometheus`: CPU per scrape of 100,000 series from the `prometheus` exporter against the
//! `prometheus` crate's text encoder, and remote-write samples per CPU-second against the
//! same points forwarded as OTLP and against the raw encoding of the same requests.
//! `loki`: seed-style request logs through `otlp -> batch -> loki` against
//! `otlp -> batch -> otlp` (gzip), with a Loki push sink that decodes every request.
//! `scaleout`: the agent tier (`otlp -> batch -> loadbalancing` over three backends) and the
//! gateway tier (`redaction`, `request_id`, `jaeger`, `sli`, `prometheus`, `slo` on Redis)
//! against `otlp -> batch -> otlp`. `sightline-bench baseline LISTEN FORWARD` is that forwarder.

mod filelog;
mod harness;
mod hostmetrics;
mod loki;
mod prometheus;
mod redaction;
mod request_id;
mod scaleout;
mod sli;
mod traces;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Options every scenario takes.
pub(crate) struct Options {
    pub(crate) sightline: String,
    pub(crate) duration: Duration,
    pub(crate) rate: u64,
    pub(crate) concurrency: usize,
    /// Interleaved rounds per load, where a scenario runs rounds (`--rounds`).
    pub(crate) rounds: Option<usize>,
    /// Which loads to run (`--load max|rate|both`, default both).
    pub(crate) loads: Vec<u64>,
    /// `traces`: send the PII-heavy spans of the `redaction` scenario (`--pii`).
    pub(crate) pii: bool,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("split-lines") {
        return filelog::split_lines(args.get(2).context("split-lines FILE")?);
    }
    if args.get(1).map(String::as_str) == Some("baseline") {
        let listen: SocketAddr = args.get(2).context("baseline LISTEN FORWARD")?.parse()?;
        let forward = args.get(3).context("baseline LISTEN FORWARD")?.clone();
        return rt.block_on(harness::baseline(listen, forward));
    }
    let mut sightline = None;
    let mut scenario = "traces".to_string();
    let mut seconds = 10u64;
    let mut rate = 10_000u64;
    let mut concurrency = 4usize;
    let mut rounds = None;
    let mut load = "both".to_string();
    let mut pii = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sightline" => sightline = it.next().cloned(),
            "--seconds" => seconds = it.next().context("--seconds N")?.parse()?,
            "--rate" => rate = it.next().context("--rate N")?.parse()?,
            "--concurrency" => concurrency = it.next().context("--concurrency N")?.parse()?,
            "--rounds" => rounds = Some(it.next().context("--rounds N")?.parse()?),
            "--load" => load = it.next().context("--load max|rate|both")?.clone(),
            "--pii" => pii = true,
            other if !other.starts_with('-') => scenario = other.to_string(),
            other => bail!("unknown argument {other}"),
        }
    }
    let o = Options {
        sightline: sightline.context("--sightline PATH is required")?,
        duration: Duration::from_secs(seconds),
        rate,
        concurrency,
        rounds,
        loads: match load.as_str() {
            "both" => vec![0, rate],
            "max" => vec![0],
            "rate" => vec![rate],
            other => bail!("--load {other}: expected max, rate or both"),
        },
        pii,
    };
    rt.block_on(async {
        match scenario.as_str() {
            "traces" => traces::run(&o).await,
            "hostmetrics" => hostmetrics::run().await,
            "filelog" => filelog::run(&o.sightline).await,
            "redaction" => redaction::run(&o).await,
            "request_id" => request_id::run(&o.sightline, o.duration, o.rate, o.concurrency).await,
            "sli" => sli::run(&o.sightline, o.duration, o.rate, o.concurrency).await,
            "prometheus" => prometheus::run(&o.sightline).await,
            "loki" => loki::run(&o).await,
            "scaleout" => scaleout::run(&o).await,
            other => bail!("unknown scenario {other}"),
        }
    })
}
