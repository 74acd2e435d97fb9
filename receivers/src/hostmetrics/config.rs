//! The `hostmetrics` receiver's config, with the OpenTelemetry Collector's key names.

use std::path::PathBuf;

use pipeline_core::config::{HumanDuration, present_means_enabled};
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

/// `receivers.hostmetrics`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsConfig {
    /// Time between scrapes.
    pub collection_interval: HumanDuration,
    /// Wait before the first scrape.
    pub initial_delay: HumanDuration,
    /// Where the host's `/` is mounted (`/hostfs` in a DaemonSet); every /proc, /sys and
    /// mount path is read under it.
    pub root_path: PathBuf,
    /// The scrapers to run; a key that is present (even empty) turns one on.
    pub scrapers: Scrapers,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        HostMetricsConfig {
            collection_interval: HumanDuration::from_secs(10),
            initial_delay: HumanDuration::from_secs(1),
            root_path: PathBuf::from("/"),
            scrapers: Scrapers::default(),
        }
    }
}

/// `scrapers`: each key enables one.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Scrapers {
    /// `system.cpu.*` from /proc/stat.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub cpu: Option<NoOptions>,
    /// `system.cpu.load_average.*` from /proc/loadavg.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub load: Option<NoOptions>,
    /// `system.memory.*` from /proc/meminfo.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub memory: Option<NoOptions>,
    /// `system.paging.*` from /proc/meminfo and /proc/vmstat.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub paging: Option<NoOptions>,
    /// `system.filesystem.*` from the mount table and statvfs.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub filesystem: Option<FilesystemOptions>,
    /// `system.disk.*` from /proc/diskstats.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub disk: Option<DiskOptions>,
    /// `system.network.*` from /proc/net/dev and /proc/net/tcp{,6}.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub network: Option<NetworkOptions>,
    /// `system.processes.*` from /proc/stat.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub processes: Option<NoOptions>,
}

/// A scraper without options.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// File systems that hold no disk data, skipped unless `include_fs_types` names them.
pub const PSEUDO_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// `scrapers.filesystem`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemOptions {
    /// Only these types (when not empty); overrides the pseudo file system exclusion.
    pub include_fs_types: Vec<String>,
    /// Types to skip, in addition to the pseudo file systems.
    pub exclude_fs_types: Vec<String>,
    /// Mount points to skip.
    pub exclude_mount_points: Vec<String>,
}

impl FilesystemOptions {
    /// Whether a mount of `fs_type` at `mountpoint` is reported.
    pub fn includes(&self, fs_type: &str, mountpoint: &str) -> bool {
        if self.exclude_mount_points.iter().any(|m| m == mountpoint) {
            return false;
        }
        if self.exclude_fs_types.iter().any(|t| t == fs_type) {
            return false;
        }
        if self.include_fs_types.is_empty() {
            !PSEUDO_FS_TYPES.contains(&fs_type)
        } else {
            self.include_fs_types.iter().any(|t| t == fs_type)
        }
    }
}

/// `scrapers.disk`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DiskOptions {
    /// Also report partitions (by default only whole devices).
    pub include_partitions: bool,
    /// Also report loop and ram devices.
    pub include_virtual: bool,
    /// Device names to skip.
    pub exclude_devices: Vec<String>,
}

/// `scrapers.network`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkOptions {
    /// Interface names to skip (`lo`, ...).
    pub exclude_devices: Vec<String>,
    /// Also report `system.network.connections` by TCP state. Off by default: the kernel
    /// walks its whole TCP hash table for each of /proc/net/tcp and /proc/net/tcp6, about
    /// 4.5 ms of CPU each on a 24 GiB machine whatever the number of sockets (BENCHMARKS.md).
    pub connections: bool,
}

impl ComponentConfig for HostMetricsConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "scrapers": { "cpu": null, "load": null, "memory": null, "paging": null,
            "filesystem": null, "disk": null, "network": null, "processes": null } })
    }

    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), FieldError> {
        if self.collection_interval.get().is_zero() {
            return Err(FieldError::new(
                "collection_interval",
                "must be greater than 0",
            ));
        }
        if !self.root_path.is_absolute() {
            return Err(FieldError::new("root_path", "must be an absolute path"));
        }
        let s = &self.scrapers;
        if s.cpu.is_none()
            && s.load.is_none()
            && s.memory.is_none()
            && s.paging.is_none()
            && s.filesystem.is_none()
            && s.disk.is_none()
            && s.network.is_none()
            && s.processes.is_none()
        {
            return Err(FieldError::new(
                "scrapers",
                "enable at least one of cpu, load, memory, paging, filesystem, disk, network, processes",
            ));
        }
        Ok(())
    }
}
