//! `cpu` (/proc/stat) and `load` (/proc/loadavg): utilization and saturation of the CPUs.

use std::collections::HashMap;

use super::{Host, ScrapeError, malformed, numbers};
use crate::hostmetrics::emit::{Emitter, Num};

const STATES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
/// /proc/stat counts in USER_HZ, 100 on every Linux architecture that matters here.
const TICKS_PER_SECOND: f64 = 100.0;

/// Per-CPU tick counts from the previous scrape, for utilization between scrapes.
#[derive(Default)]
pub(crate) struct CpuState {
    previous: HashMap<String, [u64; 8]>,
}

fn parse_stat(text: &str) -> Result<Vec<(String, [u64; 8])>, ScrapeError> {
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        // "cpu" alone is the total; "cpu0", "cpu1", ... are the logical CPUs.
        let Some(index) = name.strip_prefix("cpu").filter(|i| !i.is_empty()) else {
            continue;
        };
        let values: Vec<&str> = fields.take(8).collect();
        let nums = numbers(&values)
            .filter(|n| n.len() >= 4)
            .ok_or_else(|| malformed("cpu", "/proc/stat cpu line"))?;
        let mut ticks = [0u64; 8];
        ticks[..nums.len()].copy_from_slice(&nums);
        cpus.push((index.to_string(), ticks));
    }
    if cpus.is_empty() {
        return Err(malformed("cpu", "/proc/stat: no per-CPU lines"));
    }
    Ok(cpus)
}

impl CpuState {
    /// `system.cpu.time`, `system.cpu.utilization`, `system.cpu.logical.count`.
    pub(crate) fn scrape(&mut self, host: &Host, out: &mut Emitter) -> Result<(), ScrapeError> {
        let cpus = parse_stat(&host.read("cpu", "/proc/stat")?)?;
        let mut time = Vec::with_capacity(cpus.len() * 8);
        let mut utilization = Vec::with_capacity(cpus.len() * 8);
        let labels: Vec<[(&str, &str); 2]> = cpus
            .iter()
            .flat_map(|(cpu, _)| {
                STATES
                    .iter()
                    .map(move |s| [("cpu", cpu.as_str()), ("state", *s)])
            })
            .collect();
        let mut next = HashMap::with_capacity(cpus.len());
        for (i, (cpu, ticks)) in cpus.iter().enumerate() {
            let before = self.previous.get(cpu).copied().unwrap_or([0; 8]);
            let delta: Vec<u64> = ticks
                .iter()
                .zip(before)
                .map(|(now, was)| now.saturating_sub(was))
                .collect();
            let total: u64 = delta.iter().sum();
            for (s, _) in STATES.iter().enumerate() {
                let l = &labels[i * 8 + s][..];
                time.push((l, Num::Double(ticks[s] as f64 / TICKS_PER_SECOND)));
                let share = if total == 0 {
                    0.0
                } else {
                    delta[s] as f64 / total as f64
                };
                utilization.push((l, Num::Double(share)));
            }
            next.insert(cpu.clone(), *ticks);
        }
        self.previous = next;
        out.sum(
            "system.cpu.time",
            "s",
            "Seconds each logical CPU spent in each state.",
            true,
            &time,
        );
        out.gauge(
            "system.cpu.utilization",
            "1",
            "Share of each logical CPU's time in each state since the last scrape.",
            &utilization,
        );
        out.sum(
            "system.cpu.logical.count",
            "{cpu}",
            "Logical CPUs.",
            false,
            &[(&[], Num::Int(cpus.len() as i64))],
        );
        Ok(())
    }
}

/// `system.cpu.load_average.1m`, `.5m`, `.15m`.
pub(crate) fn scrape_load(host: &Host, out: &mut Emitter) -> Result<(), ScrapeError> {
    let text = host.read("load", "/proc/loadavg")?;
    let values: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| malformed("load", "/proc/loadavg"))?;
    if values.len() < 3 {
        return Err(malformed("load", "/proc/loadavg"));
    }
    for (name, v) in [
        "system.cpu.load_average.1m",
        "system.cpu.load_average.5m",
        "system.cpu.load_average.15m",
    ]
    .iter()
    .zip(values)
    {
        out.gauge(
            name,
            "{thread}",
            "Average number of runnable and uninterruptible threads.",
            &[(&[], Num::Double(v))],
        );
    }
    Ok(())
}
