//! `disk` (/proc/diskstats): throughput, operations, busy time and queue of block devices.

use super::{Host, ScrapeError, malformed, numbers};
use crate::hostmetrics::config::DiskOptions;
use crate::hostmetrics::emit::{Emitter, Num};

const SECTOR_BYTES: u64 = 512;

struct Device {
    name: String,
    /// reads, reads merged, sectors read, ms reading, writes, writes merged, sectors written,
    /// ms writing, in progress, ms doing I/O.
    f: [u64; 10],
}

fn wanted(host: &Host, options: &DiskOptions, name: &str) -> bool {
    if options.exclude_devices.iter().any(|d| d == name) {
        return false;
    }
    if !options.include_virtual && (name.starts_with("loop") || name.starts_with("ram")) {
        return false;
    }
    if options.include_partitions {
        return true;
    }
    // Whole devices are listed in /sys/block; partitions are not. Without /sys (a fixture
    // tree), every device counts.
    let sys_block = host.path("/sys/block");
    !sys_block.is_dir() || sys_block.join(name).exists()
}

/// `system.disk.io`, `.operations`, `.io_time`, `.operation_time`, `.pending_operations`.
pub(crate) fn scrape(
    host: &Host,
    options: &DiskOptions,
    out: &mut Emitter,
) -> Result<(), ScrapeError> {
    let text = host.read("disk", "/proc/diskstats")?;
    let mut devices = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 14 {
            continue;
        }
        let name = fields[2];
        if !wanted(host, options, name) {
            continue;
        }
        let n = numbers(&fields[3..13]).ok_or_else(|| malformed("disk", "/proc/diskstats line"))?;
        let mut f = [0u64; 10];
        f.copy_from_slice(&n);
        devices.push(Device {
            name: name.to_string(),
            f,
        });
    }
    let dir = |d: &Device, direction: &'static str| {
        [
            ("device", d.name.clone()),
            ("direction", direction.to_string()),
        ]
    };
    let rw: Vec<[(&str, String); 2]> = devices
        .iter()
        .flat_map(|d| [dir(d, "read"), dir(d, "write")])
        .collect();
    let rw_ref: Vec<[(&str, &str); 2]> = rw
        .iter()
        .map(|[a, b]| [(a.0, a.1.as_str()), (b.0, b.1.as_str())])
        .collect();
    let dev: Vec<[(&str, &str); 1]> = devices
        .iter()
        .map(|d| [("device", d.name.as_str())])
        .collect();
    let per_direction = |read: fn(&[u64; 10]) -> Num,
                         write: fn(&[u64; 10]) -> Num|
     -> Vec<(&[(&str, &str)], Num)> {
        devices
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                [
                    (&rw_ref[2 * i][..], read(&d.f)),
                    (&rw_ref[2 * i + 1][..], write(&d.f)),
                ]
            })
            .collect()
    };
    out.sum(
        "system.disk.io",
        "By",
        "Bytes read from and written to each device.",
        true,
        &per_direction(
            |f| Num::Int((f[2] * SECTOR_BYTES) as i64),
            |f| Num::Int((f[6] * SECTOR_BYTES) as i64),
        ),
    );
    out.sum(
        "system.disk.operations",
        "{operation}",
        "Completed reads and writes.",
        true,
        &per_direction(|f| Num::Int(f[0] as i64), |f| Num::Int(f[4] as i64)),
    );
    out.sum(
        "system.disk.operation_time",
        "s",
        "Time spent in reads and writes (summed over operations in flight).",
        true,
        &per_direction(
            |f| Num::Double(f[3] as f64 / 1000.0),
            |f| Num::Double(f[7] as f64 / 1000.0),
        ),
    );
    let io_time: Vec<_> = devices
        .iter()
        .zip(&dev)
        .map(|(d, l)| (&l[..], Num::Double(d.f[9] as f64 / 1000.0)))
        .collect();
    out.sum(
        "system.disk.io_time",
        "s",
        "Time each device was busy with I/O.",
        true,
        &io_time,
    );
    let pending: Vec<_> = devices
        .iter()
        .zip(&dev)
        .map(|(d, l)| (&l[..], Num::Int(d.f[8] as i64)))
        .collect();
    out.sum(
        "system.disk.pending_operations",
        "{operation}",
        "I/O operations in flight.",
        false,
        &pending,
    );
    Ok(())
}
