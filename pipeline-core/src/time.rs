//! Small time and process helpers shared by components: RFC 3339 timestamps without a
//! calendar crate, Unix nanoseconds, and the process's CPU time and resident memory.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, as OTLP timestamps are written.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Formats Unix nanoseconds as RFC 3339 UTC with microseconds: `2024-01-15T10:30:00.123456Z`.
pub fn rfc3339_micros(unix_nanos: u64) -> String {
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let micros = (unix_nanos % 1_000_000_000) / 1_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// CPU time and resident memory of this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub resident_bytes: u64,
}

/// Reads this process's usage from /proc (Linux); `None` elsewhere.
pub fn process_usage() -> Option<ProcessUsage> {
    process_usage_of("self")
}

/// Reads a process's usage from `/proc/<pid>`; `pid` may be `self`.
pub fn process_usage_of(pid: &str) -> Option<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(ProcessUsage {
        cpu_seconds: ticks / 100.0,
        resident_bytes: rss_pages * 4096,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_705_314_600_123_456_000),
            "2024-01-15T10:30:00.123456Z"
        );
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn reads_own_usage() {
        let u = process_usage().unwrap();
        assert!(u.resident_bytes > 0);
    }
}
