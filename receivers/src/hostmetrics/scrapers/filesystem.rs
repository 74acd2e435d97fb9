//! `filesystem` (the mount table and statvfs): space and inodes per mounted file system.

use super::{Host, ScrapeError};
use crate::hostmetrics::config::FilesystemOptions;
use crate::hostmetrics::emit::{Emitter, Num};

struct Mount {
    device: String,
    mountpoint: String,
    fs_type: String,
}

/// Undoes the mount table's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts(host: &Host, options: &FilesystemOptions) -> Result<Vec<Mount>, ScrapeError> {
    let text = host
        .read("filesystem", "/proc/self/mounts")
        .or_else(|_| host.read("filesystem", "/proc/mounts"))?;
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(device), Some(mountpoint), Some(fs_type)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mountpoint = unescape(mountpoint);
        if !options.includes(fs_type, &mountpoint) {
            continue;
        }
        // A later mount on the same point hides the earlier one.
        out.retain(|m| m.mountpoint != mountpoint);
        out.push(Mount {
            device: unescape(device),
            mountpoint,
            fs_type: fs_type.to_string(),
        });
    }
    Ok(out)
}

/// `system.filesystem.usage` (used + free + reserved = size), `.utilization`, `.inodes.usage`.
pub(crate) fn scrape(
    host: &Host,
    options: &FilesystemOptions,
    out: &mut Emitter,
) -> Vec<ScrapeError> {
    let mounts = match mounts(host, options) {
        Ok(m) => m,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let mut stats = Vec::new();
    for m in mounts {
        match rustix::fs::statvfs(host.path(&m.mountpoint)) {
            Ok(s) => stats.push((m, s)),
            Err(e) => errors.push(ScrapeError {
                scraper: "filesystem",
                message: format!("statvfs {}: {e}", m.mountpoint),
            }),
        }
    }
    let labels: Vec<[(&str, &str); 3]> = stats
        .iter()
        .map(|(m, _)| {
            [
                ("device", m.device.as_str()),
                ("mountpoint", m.mountpoint.as_str()),
                ("type", m.fs_type.as_str()),
            ]
        })
        .collect();
    let with_state: Vec<[[(&str, &str); 4]; 3]> = labels
        .iter()
        .map(|l| ["used", "free", "reserved"].map(|s| [l[0], l[1], l[2], ("state", s)]))
        .collect();
    let mut usage = Vec::new();
    let mut utilization = Vec::new();
    let mut inodes = Vec::new();
    for (i, (_, s)) in stats.iter().enumerate() {
        let unit = s.f_frsize.max(1);
        let used = s.f_blocks.saturating_sub(s.f_bfree) * unit;
        let free = s.f_bavail * unit;
        let reserved = s.f_bfree.saturating_sub(s.f_bavail) * unit;
        let [u, f, r] = &with_state[i];
        usage.extend([
            (&u[..], Num::Int(used as i64)),
            (&f[..], Num::Int(free as i64)),
            (&r[..], Num::Int(reserved as i64)),
        ]);
        // As df computes "Use%": used over what users can have.
        let share = if used + free == 0 {
            0.0
        } else {
            used as f64 / (used + free) as f64
        };
        utilization.push((&labels[i][..], Num::Double(share)));
        inodes.extend([
            (&u[..], Num::Int(s.f_files.saturating_sub(s.f_ffree) as i64)),
            (&f[..], Num::Int(s.f_ffree as i64)),
        ]);
    }
    out.sum(
        "system.filesystem.usage",
        "By",
        "File system space by state.",
        false,
        &usage,
    );
    out.gauge(
        "system.filesystem.utilization",
        "1",
        "Share of the space users can have that is used.",
        &utilization,
    );
    out.sum(
        "system.filesystem.inodes.usage",
        "{inode}",
        "Inodes by state.",
        false,
        &inodes,
    );
    errors
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mount_points() {
        assert_eq!(super::unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(super::unescape("/plain"), "/plain");
        assert_eq!(super::unescape("/tail\\04"), "/tail\\04");
    }
}
