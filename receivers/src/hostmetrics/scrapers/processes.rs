//! `processes` (/proc/stat): how many processes run or wait, and how many were created.

use super::{Host, ScrapeError, malformed};
use crate::hostmetrics::emit::{Emitter, Num};

/// `system.processes.count` by status and `system.processes.created`.
pub(crate) fn scrape(host: &Host, out: &mut Emitter) -> Result<(), ScrapeError> {
    let stat = host.read("processes", "/proc/stat")?;
    let get = |key: &str| {
        stat.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let (Some(running), Some(blocked), Some(created)) = (
        get("procs_running "),
        get("procs_blocked "),
        get("processes "),
    ) else {
        return Err(malformed(
            "processes",
            "/proc/stat: no procs_running/procs_blocked/processes",
        ));
    };
    out.sum(
        "system.processes.count",
        "{process}",
        "Processes by status.",
        false,
        &[
            (&[("status", "running")], Num::Int(running)),
            (&[("status", "blocked")], Num::Int(blocked)),
        ],
    );
    out.sum(
        "system.processes.created",
        "{process}",
        "Processes created since boot.",
        true,
        &[(&[], Num::Int(created))],
    );
    Ok(())
}
