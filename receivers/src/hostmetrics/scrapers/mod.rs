//! One scraper per area of the USE method. Each reads its files under `root_path`, adds what
//! it could read to the [`Emitter`], and returns the problems it met; a failing scraper never
//! stops the others or the receiver.

mod cpu;
mod disk;
mod filesystem;
mod memory;
mod network;
mod processes;

use std::path::{Path, PathBuf};

use super::config::Scrapers;
use super::emit::Emitter;

/// A problem one scraper met (the scrape goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scraper}: {message}")]
pub(crate) struct ScrapeError {
    /// The scraper's name (`cpu`, `disk`, ...).
    pub(crate) scraper: &'static str,
    /// What went wrong.
    pub(crate) message: String,
}

/// The host's file system, seen from `root`.
pub(crate) struct Host {
    root: PathBuf,
}

impl Host {
    pub(crate) fn new(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
        }
    }

    /// `root` + an absolute host path.
    pub(crate) fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Reads a host file; the error names it.
    pub(crate) fn read(
        &self,
        scraper: &'static str,
        host_path: &str,
    ) -> Result<String, ScrapeError> {
        std::fs::read_to_string(self.path(host_path)).map_err(|e| ScrapeError {
            scraper,
            message: format!("cannot read {}: {e}", self.path(host_path).display()),
        })
    }
}

/// A parse problem in a file.
pub(crate) fn malformed(scraper: &'static str, what: &str) -> ScrapeError {
    ScrapeError {
        scraper,
        message: format!("malformed {what}"),
    }
}

/// The enabled scrapers and their state between scrapes.
pub(crate) struct ScraperSet {
    config: Scrapers,
    cpu: cpu::CpuState,
}

impl ScraperSet {
    pub(crate) fn new(config: Scrapers) -> ScraperSet {
        ScraperSet {
            config,
            cpu: cpu::CpuState::default(),
        }
    }

    /// Runs every enabled scraper once.
    pub(crate) fn scrape(&mut self, host: &Host, out: &mut Emitter) -> Vec<ScrapeError> {
        let mut errors: Vec<ScrapeError> = Vec::new();
        let run = |errors: &mut Vec<ScrapeError>, r: Result<(), ScrapeError>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        let c = &self.config;
        if c.cpu.is_some() {
            run(&mut errors, self.cpu.scrape(host, out));
        }
        if c.load.is_some() {
            run(&mut errors, cpu::scrape_load(host, out));
        }
        if c.memory.is_some() {
            run(&mut errors, memory::scrape_memory(host, out));
        }
        if c.paging.is_some() {
            run(&mut errors, memory::scrape_paging(host, out));
        }
        if let Some(o) = &c.filesystem {
            errors.extend(filesystem::scrape(host, o, out));
        }
        if let Some(o) = &c.disk {
            run(&mut errors, disk::scrape(host, o, out));
        }
        if let Some(o) = &c.network {
            errors.extend(network::scrape(host, o, out));
        }
        if c.processes.is_some() {
            run(&mut errors, processes::scrape(host, out));
        }
        errors
    }
}

/// Boot time from /proc/stat (`btime`), Unix nanoseconds: the start of every cumulative
/// host counter.
pub(crate) fn boot_time(host: &Host) -> Option<u64> {
    let stat = host.read("cpu", "/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(secs * 1_000_000_000)
}

/// Whitespace-separated unsigned fields of a line.
pub(crate) fn numbers(fields: &[&str]) -> Option<Vec<u64>> {
    fields.iter().map(|f| f.parse().ok()).collect()
}
