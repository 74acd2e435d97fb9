//! `memory` and `paging` (/proc/meminfo, /proc/vmstat).

use std::collections::HashMap;

use super::{Host, ScrapeError, malformed};
use crate::hostmetrics::emit::{Emitter, Num};

/// /proc/meminfo in bytes, by key.
fn meminfo(host: &Host, scraper: &'static str) -> Result<HashMap<String, u64>, ScrapeError> {
    let text = host.read(scraper, "/proc/meminfo")?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(value) = parts.next().and_then(|v| v.parse::<u64>().ok()) else {
            return Err(malformed(scraper, &format!("/proc/meminfo line {key:?}")));
        };
        let bytes = if parts.next() == Some("kB") {
            value * 1024
        } else {
            value
        };
        out.insert(key.to_string(), bytes);
    }
    Ok(out)
}

fn field(m: &HashMap<String, u64>, scraper: &'static str, key: &str) -> Result<u64, ScrapeError> {
    m.get(key)
        .copied()
        .ok_or_else(|| malformed(scraper, &format!("/proc/meminfo: no {key}")))
}

/// `system.memory.usage` by state (summing to MemTotal), `.utilization`, `.limit`.
pub(crate) fn scrape_memory(host: &Host, out: &mut Emitter) -> Result<(), ScrapeError> {
    let m = meminfo(host, "memory")?;
    let total = field(&m, "memory", "MemTotal")?;
    let free = field(&m, "memory", "MemFree")?;
    let buffered = m.get("Buffers").copied().unwrap_or(0);
    let cached = m.get("Cached").copied().unwrap_or(0);
    let slab_reclaimable = m.get("SReclaimable").copied().unwrap_or(0);
    let slab_unreclaimable = m.get("SUnreclaim").copied().unwrap_or(0);
    let others = free + buffered + cached + slab_reclaimable + slab_unreclaimable;
    let used = total.saturating_sub(others);
    let states = [
        ("used", used),
        ("free", free),
        ("buffered", buffered),
        ("cached", cached),
        ("slab_reclaimable", slab_reclaimable),
        ("slab_unreclaimable", slab_unreclaimable),
    ];
    let labels: Vec<[(&str, &str); 1]> = states.iter().map(|(s, _)| [("state", *s)]).collect();
    let usage: Vec<_> = states
        .iter()
        .zip(&labels)
        .map(|((_, v), l)| (&l[..], Num::Int(*v as i64)))
        .collect();
    let utilization: Vec<_> = states
        .iter()
        .zip(&labels)
        .map(|((_, v), l)| {
            (
                &l[..],
                Num::Double(if total == 0 {
                    0.0
                } else {
                    *v as f64 / total as f64
                }),
            )
        })
        .collect();
    out.sum(
        "system.memory.usage",
        "By",
        "Bytes of memory in use, by state.",
        false,
        &usage,
    );
    out.gauge(
        "system.memory.utilization",
        "1",
        "Share of memory in each state.",
        &utilization,
    );
    out.sum(
        "system.memory.limit",
        "By",
        "Total memory (MemTotal).",
        false,
        &[(&[], Num::Int(total as i64))],
    );
    Ok(())
}

/// `system.paging.usage` by state and `system.paging.operations` by direction.
pub(crate) fn scrape_paging(host: &Host, out: &mut Emitter) -> Result<(), ScrapeError> {
    let m = meminfo(host, "paging")?;
    let total = field(&m, "paging", "SwapTotal")?;
    let free = field(&m, "paging", "SwapFree")?;
    out.sum(
        "system.paging.usage",
        "By",
        "Swap space in use, by state.",
        false,
        &[
            (
                &[("state", "used")],
                Num::Int(total.saturating_sub(free) as i64),
            ),
            (&[("state", "free")], Num::Int(free as i64)),
        ],
    );
    let vmstat = host.read("paging", "/proc/vmstat")?;
    let get = |key: &str| {
        vmstat.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
    };
    let (Some(pin), Some(pout)) = (get("pswpin"), get("pswpout")) else {
        return Err(malformed("paging", "/proc/vmstat: no pswpin/pswpout"));
    };
    out.sum(
        "system.paging.operations",
        "{operation}",
        "Pages swapped in and out.",
        true,
        &[
            (&[("direction", "in")], Num::Int(pin)),
            (&[("direction", "out")], Num::Int(pout)),
        ],
    );
    Ok(())
}
