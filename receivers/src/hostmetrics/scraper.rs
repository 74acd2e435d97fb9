//! One full scrape: every enabled scraper, under `root_path`, into one `ResourceMetrics` with
//! the host's resource attributes. Public so benchmarks can time a scrape by itself.

use pipeline_core::attributes::string;
use pipeline_core::proto::tonic::common::v1::InstrumentationScope;
use pipeline_core::proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::time::now_unix_nanos;

use super::config::HostMetricsConfig;
use super::emit::Emitter;
use super::scrapers::{Host, ScrapeError, ScraperSet, boot_time};

/// Scrapes a host; keeps what utilization needs between scrapes.
pub struct HostScraper {
    host: Host,
    scrapers: ScraperSet,
    resource: Resource,
    start_time: u64,
}

/// `host.arch` as the semantic conventions spell it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

impl HostScraper {
    /// A scraper for the host seen at `config.root_path`.
    pub fn new(config: &HostMetricsConfig) -> HostScraper {
        let host = Host::new(&config.root_path);
        let host_name = host
            .read("cpu", "/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_default());
        let resource = Resource {
            attributes: vec![
                string("host.name", host_name),
                string("host.arch", arch()),
                string("os.type", "linux"),
            ],
            ..Default::default()
        };
        // Cumulative host counters count from boot; without /proc/stat, from now.
        let start_time = boot_time(&host).unwrap_or_else(now_unix_nanos);
        HostScraper {
            scrapers: ScraperSet::new(config.scrapers.clone()),
            host,
            resource,
            start_time,
        }
    }

    /// Runs every enabled scraper once; returns the metrics and the problems met.
    pub fn scrape(&mut self) -> (ResourceMetrics, Vec<ScrapeProblem>) {
        let mut out = Emitter {
            start_time: self.start_time,
            now: now_unix_nanos(),
            metrics: Vec::new(),
        };
        let errors = self.scrapers.scrape(&self.host, &mut out);
        let rm = ResourceMetrics {
            resource: Some(self.resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "sightline/hostmetrics".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: out.metrics,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        };
        (rm, errors.into_iter().map(ScrapeProblem).collect())
    }
}

/// A problem one scraper met; the rest of the scrape went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeProblem(ScrapeError);

impl ScrapeProblem {
    /// The scraper's name (`cpu`, `disk`, ...).
    pub fn scraper(&self) -> &'static str {
        self.0.scraper
    }
}

impl std::fmt::Display for ScrapeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
