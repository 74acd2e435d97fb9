//! The `slo` exporter's config: the endpoint, the store, the webhooks, the alert rules and
//! the SLO definitions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

use crate::helper::{Headers, RetryConfig};

/// The default `endpoint` of the JSON, status page and metrics server.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:8890";

/// Minute buckets cover this much of the recent past (the shortest alert windows).
pub const FINE_SPAN: Duration = Duration::from_secs(6 * 3600);

/// The longest SLO window accepted (hour buckets cover the window).
pub const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);

/// Config of the `slo` exporter.
///
/// ```yaml
/// exporters:
///   slo:
///     endpoint: 127.0.0.1:8890
///     store: { type: memory, snapshot_path: ./data/slo.snapshot }
///     webhooks: [ { url: "http://alertmanager:9093/api/v2/alerts" } ]
///     slos:
///       - name: api-availability
///         service: api
///         objective: 99.9
///         indicator:
///           availability: { matchers: { service: api } }
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SloExporterConfig {
    /// `host:port` of `GET /slo`, `GET /` and `GET /metrics`.
    pub endpoint: String,
    /// How often figures and alerts are evaluated (and the store read back).
    pub evaluation_interval: HumanDuration,
    /// Where the bucketed counts live.
    pub store: StoreConfig,
    /// Alertmanager v2 receivers of firing and resolved alerts.
    pub webhooks: Vec<WebhookConfig>,
    /// Budget-consumption alerts (default: the seed's 50% warning, 75% critical, 100% page).
    pub budget_alerts: Vec<BudgetAlertRule>,
    /// Multi-window, multi-burn-rate alerts (default: the SRE workbook's three).
    pub burn_rate_alerts: Vec<BurnRateRule>,
    /// How often a firing alert is sent again, so Alertmanager keeps it active.
    pub resend_interval: HumanDuration,
    /// Most cumulative series whose last value is remembered (to turn totals into
    /// increments); points of further series are dropped and counted.
    pub max_series: usize,
    /// The SLO definitions.
    pub slos: Vec<SloDefinition>,
}

impl Default for SloExporterConfig {
    fn default() -> Self {
        SloExporterConfig {
            endpoint: DEFAULT_ENDPOINT.into(),
            evaluation_interval: HumanDuration::from_secs(10),
            store: StoreConfig::default(),
            webhooks: Vec::new(),
            budget_alerts: BudgetAlertRule::defaults(),
            burn_rate_alerts: BurnRateRule::defaults(),
            resend_interval: HumanDuration::from_secs(60),
            max_series: 100_000,
            slos: Vec::new(),
        }
    }
}

/// `store`: where the per-SLO, per-bucket counters live.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    /// In this process, optionally snapshotted to a file.
    Memory(MemoryStoreConfig),
    /// In Redis, shared by every replica.
    Redis(RedisStoreConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Memory(MemoryStoreConfig::default())
    }
}

/// `store: { type: memory }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    /// Where the buckets are written so a restart keeps the window (none: not kept).
    pub snapshot_path: Option<PathBuf>,
    /// How often the snapshot is written (and always at shutdown).
    pub snapshot_interval: HumanDuration,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            snapshot_path: None,
            snapshot_interval: HumanDuration::from_secs(60),
        }
    }
}

/// `store: { type: redis }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host:port[/db]`, `redis+unix:///path`, or for a Redis
    /// Cluster `redis+cluster://[user:password@]host:port,host:port,...`.
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
    /// How often buffered increments are written.
    pub flush_interval: HumanDuration,
    /// Connect and command timeout.
    pub timeout: HumanDuration,
    /// Most buckets held locally while Redis is unreachable; increments into further
    /// buckets are dropped and counted.
    pub max_buffered_buckets: usize,
    /// Where this replica keeps its cumulative series' last values across a clean restart
    /// (one file per replica; none: series restart from a baseline).
    pub series_path: Option<PathBuf>,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        RedisStoreConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "sightline:slo".into(),
            flush_interval: HumanDuration::from_secs(1),
            timeout: HumanDuration::from_secs(2),
            max_buffered_buckets: 100_000,
            series_path: None,
        }
    }
}

/// One Alertmanager (or any receiver of its v2 alerts array).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http(s)://host:port/api/v2/alerts`.
    pub url: String,
    /// Extra request headers (an `Authorization`, say).
    #[serde(default)]
    pub headers: Headers,
    /// Timeout of one POST.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a failed POST, as the exporters' `retry_on_failure`.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// Fires when this share of the error budget is consumed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetAlertRule {
    /// Percent of the budget consumed, such as 75.
    pub consumed: f64,
    /// The `severity` label.
    pub severity: String,
}

impl BudgetAlertRule {
    /// The seed's thresholds: 50% warning, 75% critical, 100% page.
    pub fn defaults() -> Vec<BudgetAlertRule> {
        [(50.0, "warning"), (75.0, "critical"), (100.0, "page")]
            .into_iter()
            .map(|(consumed, severity)| BudgetAlertRule {
                consumed,
                severity: severity.into(),
            })
            .collect()
    }

    /// The `rule` label: `budget-75%`.
    pub fn rule_name(&self) -> String {
        format!("budget-{}%", self.consumed)
    }
}

/// Fires when the burn rate is above `rate` over both windows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BurnRateRule {
    /// The `severity` label (`page`, `ticket`).
    pub severity: String,
    /// The burn rate, a multiple of the rate that spends the budget exactly over the window.
    pub rate: f64,
    /// The long window (`1h`).
    pub long_window: HumanDuration,
    /// The short window (`5m`).
    pub short_window: HumanDuration,
}

impl BurnRateRule {
    /// The SRE workbook's rules: page at 14.4x over 1h and 5m, page at 6x over 6h and 30m,
    /// ticket at 1x over 3d and 6h.
    pub fn defaults() -> Vec<BurnRateRule> {
        [
            ("page", 14.4, 3600, 300),
            ("page", 6.0, 6 * 3600, 1800),
            ("ticket", 1.0, 3 * 86_400, 6 * 3600),
        ]
        .into_iter()
        .map(|(severity, rate, long, short)| BurnRateRule {
            severity: severity.into(),
            rate,
            long_window: HumanDuration::from_secs(long),
            short_window: HumanDuration::from_secs(short),
        })
        .collect()
    }

    /// The `rule` label: `burn-rate-14.4x-1h-5m`.
    pub fn rule_name(&self) -> String {
        format!(
            "burn-rate-{}x-{}-{}",
            self.rate,
            window_label(self.long_window.get()),
            window_label(self.short_window.get())
        )
    }
}

/// A window as the JSON and the metrics name it: `5m`, `1h`, `3d`, `90m`.
pub fn window_label(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// One SLO.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloDefinition {
    /// Unique name: letters, digits, `.`, `_`, `-`, `:`.
    pub name: String,
    /// The service it is about (the `service` label).
    pub service: String,
    /// Free text shown on the status page.
    #[serde(default)]
    pub description: String,
    /// The target in percent, such as 99.9.
    pub objective: f64,
    /// The rolling window (default `30d`, whole hours).
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// How good and bad events are counted.
    pub indicator: Indicator,
}

fn default_window() -> HumanDuration {
    HumanDuration::from_secs(30 * 86_400)
}

/// Attribute matchers: every key must be present with exactly this value, on the data point
/// or else on its resource.
pub type Matchers = BTreeMap<String, String>;

/// What the SLI is made of.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Indicator {
    /// Errors out of requests (two counters).
    Availability(AvailabilityIndicator),
    /// Requests at or under a latency threshold out of all (one histogram).
    Latency(LatencyIndicator),
    /// Any good and total counters.
    Ratio(RatioIndicator),
}

/// `indicator: { availability: ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AvailabilityIndicator {
    /// The counter of all requests (default `http.requests`, from `sli`).
    pub total: String,
    /// The counter of failed requests (default `http.errors`, from `sli`).
    pub errors: String,
    /// Which series of both count.
    pub matchers: Matchers,
}

impl Default for AvailabilityIndicator {
    fn default() -> Self {
        AvailabilityIndicator {
            total: connectors::sli::REQUESTS.into(),
            errors: connectors::sli::ERRORS.into(),
            matchers: Matchers::new(),
        }
    }
}

/// `indicator: { latency: ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LatencyIndicator {
    /// The histogram (default `http.request.duration`, from `sli`).
    #[serde(default = "default_histogram")]
    pub histogram: String,
    /// Requests at or under this are good; must be a bucket boundary of the histogram.
    pub threshold: HumanDuration,
    /// Which series count.
    #[serde(default)]
    pub matchers: Matchers,
    /// The histogram's boundaries in seconds, to check the threshold against at validation.
    /// Unset: the `histogram.buckets` of the `sli` connectors feeding the exporter, if any;
    /// otherwise (and with `[]`) the check happens at run time on the data.
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
}

fn default_histogram() -> String {
    connectors::sli::DURATION.into()
}

/// `indicator: { ratio: ... }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RatioIndicator {
    /// The counter of good events.
    pub good: Selector,
    /// The counter of all events.
    pub total: Selector,
}

/// A counter and its matchers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The metric name.
    pub metric: String,
    /// Which series count.
    #[serde(default)]
    pub matchers: Matchers,
}

/// `0.5` -> `500ms`, `2.5` -> `2.5s`: a boundary in seconds as a user writes it.
pub fn seconds_label(s: f64) -> String {
    if s < 1.0 {
        format!("{}ms", (s * 1e6).round() / 1e3)
    } else {
        format!("{s}s")
    }
}

/// Whether `threshold` (seconds) is one of `bounds` (seconds), to a nanosecond.
pub fn bound_index(bounds: &[f64], threshold: f64) -> Option<usize> {
    bounds.iter().position(|b| (b - threshold).abs() < 1e-9)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

impl ComponentConfig for SloExporterConfig {
    fn listen_addresses(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    fn validate_upstream(&self, upstream: &[(&str, &serde_json::Value)]) -> Result<(), FieldError> {
        SloExporterConfig::validate_upstream(self, upstream)
    }

    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), FieldError> {
        if self.endpoint.rsplit_once(':').is_none() {
            return Err(FieldError::new("endpoint", "must be host:port"));
        }
        let positive = |d: HumanDuration, path: &str| {
            if d.get().is_zero() {
                Err(FieldError::new(path, "must be greater than 0"))
            } else {
                Ok(())
            }
        };
        positive(self.evaluation_interval, "evaluation_interval")?;
        positive(self.resend_interval, "resend_interval")?;
        if self.max_series == 0 {
            return Err(FieldError::new("max_series", "must be at least 1"));
        }
        self.store.validate()?;
        for (i, w) in self.webhooks.iter().enumerate() {
            let path = format!("webhooks[{i}]");
            let uri: http::Uri = w
                .url
                .parse()
                .map_err(|e| FieldError::new(format!("{path}.url"), format!("{e}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(FieldError::new(
                    format!("{path}.url"),
                    "must be an http:// or https:// URL, such as http://alertmanager:9093/api/v2/alerts",
                ));
            }
            w.headers.validate(&format!("{path}.headers"))?;
            positive(w.timeout, &format!("{path}.timeout"))?;
            w.retry_on_failure
                .validate(&format!("{path}.retry_on_failure"))?;
        }
        for (i, b) in self.budget_alerts.iter().enumerate() {
            if !(b.consumed.is_finite() && b.consumed > 0.0) {
                return Err(FieldError::new(
                    format!("budget_alerts[{i}].consumed"),
                    "must be a percentage above 0 (100 is the whole budget)",
                ));
            }
            if b.severity.trim().is_empty() {
                return Err(FieldError::new(
                    format!("budget_alerts[{i}].severity"),
                    "must not be empty",
                ));
            }
        }
        for (i, r) in self.burn_rate_alerts.iter().enumerate() {
            let path = format!("burn_rate_alerts[{i}]");
            if !(r.rate.is_finite() && r.rate > 0.0) {
                return Err(FieldError::new(format!("{path}.rate"), "must be above 0"));
            }
            if r.severity.trim().is_empty() {
                return Err(FieldError::new(
                    format!("{path}.severity"),
                    "must not be empty",
                ));
            }
            check_alert_window(r.long_window.get(), &format!("{path}.long_window"))?;
            check_alert_window(r.short_window.get(), &format!("{path}.short_window"))?;
            if r.short_window.get() > r.long_window.get() {
                return Err(FieldError::new(
                    format!("{path}.short_window"),
                    "must not be longer than long_window",
                ));
            }
        }
        for (i, slo) in self.slos.iter().enumerate() {
            slo.validate(&format!("slos[{i}]"))?;
            if self.slos[..i].iter().any(|o| o.name == slo.name) {
                return Err(FieldError::new(
                    format!("slos[{i}].name"),
                    format!("{:?} is defined twice", slo.name),
                ));
            }
            for r in &self.burn_rate_alerts {
                if r.long_window.get() > slo.window.get() {
                    return Err(FieldError::new(
                        format!("slos[{i}].window"),
                        format!(
                            "is shorter than the alert window {} of rule {}",
                            r.long_window,
                            r.rule_name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Alert windows up to 6 hours are whole minutes (minute buckets), longer ones whole hours.
fn check_alert_window(d: Duration, path: &str) -> Result<(), FieldError> {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s < 60 {
        return Err(FieldError::new(
            path,
            "must be at least 1m, in whole minutes",
        ));
    }
    if d <= FINE_SPAN && !s.is_multiple_of(60) {
        return Err(FieldError::new(path, "must be whole minutes"));
    }
    if d > FINE_SPAN && !s.is_multiple_of(3600) {
        return Err(FieldError::new(
            path,
            "must be whole hours when longer than 6h (older counts are kept per hour)",
        ));
    }
    Ok(())
}

impl LatencyIndicator {
    /// Whether the threshold is one of `bounds` (seconds; an empty list passes); the error
    /// names the boundaries and where they came from (`source`).
    pub fn check_threshold(&self, bounds: &[f64], source: &str) -> Result<(), String> {
        if bounds.is_empty() || bound_index(bounds, self.threshold.get().as_secs_f64()).is_some() {
            return Ok(());
        }
        let available: Vec<String> = bounds.iter().map(|b| seconds_label(*b)).collect();
        Err(format!(
            "{} is not a bucket boundary of {}; the boundaries ({source}) are {}",
            self.threshold,
            self.histogram,
            available.join(", ")
        ))
    }
}

impl SloExporterConfig {
    /// Checks every latency threshold without `buckets` against the `histogram.buckets` of
    /// the `sli` connectors feeding the exporter (`upstream`: type name and config).
    pub fn validate_upstream(
        &self,
        upstream: &[(&str, &serde_json::Value)],
    ) -> Result<(), FieldError> {
        let sli_buckets: Vec<Vec<f64>> = upstream
            .iter()
            .filter(|(t, _)| *t == "sli")
            .filter_map(|(_, v)| pipeline_core::parse_config::<connectors::sli::SliConfig>(v).ok())
            .map(|c| c.histogram.buckets)
            .collect();
        for (i, slo) in self.slos.iter().enumerate() {
            let Indicator::Latency(l) = &slo.indicator else {
                continue;
            };
            if l.buckets.is_some() || l.histogram != connectors::sli::DURATION {
                continue;
            }
            for b in &sli_buckets {
                l.check_threshold(b, "the sli connector's histogram.buckets")
                    .map_err(|m| {
                        FieldError::new(format!("slos[{i}].indicator.latency.threshold"), m)
                    })?;
            }
        }
        Ok(())
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), FieldError> {
        match self {
            StoreConfig::Memory(m) => {
                if m.snapshot_interval.get().is_zero() {
                    return Err(FieldError::new(
                        "store.snapshot_interval",
                        "must be greater than 0",
                    ));
                }
                Ok(())
            }
            StoreConfig::Redis(r) => {
                let url = r.url.as_str();
                match super::store::redis::cluster_nodes(url) {
                    Some(nodes) if nodes.is_empty() => {
                        return Err(FieldError::new(
                            "store.url",
                            "list the cluster's nodes: redis+cluster://host:port,host:port",
                        ));
                    }
                    Some(nodes) => {
                        redis::cluster::ClusterClient::new(nodes)
                            .map_err(|e| FieldError::new("store.url", format!("{e}")))?;
                    }
                    None => {
                        redis::Client::open(url).map_err(|e| {
                            FieldError::new(
                                "store.url",
                                format!("{e} (expected redis://host:port or redis+cluster://host:port,host:port)"),
                            )
                        })?;
                    }
                }
                if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}', ' ']) {
                    return Err(FieldError::new(
                        "store.key_prefix",
                        "must be non-empty, without braces or spaces",
                    ));
                }
                if r.flush_interval.get().is_zero() {
                    return Err(FieldError::new(
                        "store.flush_interval",
                        "must be greater than 0",
                    ));
                }
                if r.timeout.get().is_zero() {
                    return Err(FieldError::new("store.timeout", "must be greater than 0"));
                }
                if r.max_buffered_buckets == 0 {
                    return Err(FieldError::new(
                        "store.max_buffered_buckets",
                        "must be at least 1",
                    ));
                }
                Ok(())
            }
        }
    }
}

impl SloDefinition {
    /// The objective as a ratio, rounded to 1e-12 so that 99.9 gives exactly 0.999 (a plain
    /// division gives 0.9990000000000001).
    pub fn objective_ratio(&self) -> f64 {
        (self.objective * 1e10).round() / 1e12
    }

    /// The error budget as a ratio, rounded to 1e-12 so that 99.9 gives exactly 0.001.
    pub fn budget_ratio(&self) -> f64 {
        ((100.0 - self.objective) * 1e10).round() / 1e12
    }

    fn validate(&self, path: &str) -> Result<(), FieldError> {
        if !valid_name(&self.name) {
            return Err(FieldError::new(
                format!("{path}.name"),
                "must be 1 to 128 letters, digits, '.', '_', '-' or ':'",
            ));
        }
        if self.service.trim().is_empty() {
            return Err(FieldError::new(
                format!("{path}.service"),
                "must not be empty",
            ));
        }
        if !(self.objective.is_finite() && self.objective > 0.0 && self.objective < 100.0) {
            return Err(FieldError::new(
                format!("{path}.objective"),
                "must be a percentage above 0 and below 100, such as 99.9",
            ));
        }
        let w = self.window.get();
        if w < Duration::from_secs(3600) || w > MAX_WINDOW || !w.as_secs().is_multiple_of(3600) {
            return Err(FieldError::new(
                format!("{path}.window"),
                "must be whole hours, from 1h to 400d (such as 28d or 30d)",
            ));
        }
        let empty_metric = |m: &str, p: &str| {
            if m.trim().is_empty() {
                Err(FieldError::new(
                    format!("{path}.indicator.{p}"),
                    "must name a metric",
                ))
            } else {
                Ok(())
            }
        };
        match &self.indicator {
            Indicator::Availability(a) => {
                empty_metric(&a.total, "availability.total")?;
                empty_metric(&a.errors, "availability.errors")?;
            }
            Indicator::Ratio(r) => {
                empty_metric(&r.good.metric, "ratio.good.metric")?;
                empty_metric(&r.total.metric, "ratio.total.metric")?;
            }
            Indicator::Latency(l) => {
                empty_metric(&l.histogram, "latency.histogram")?;
                let threshold = l.threshold.get().as_secs_f64();
                if threshold <= 0.0 {
                    return Err(FieldError::new(
                        format!("{path}.indicator.latency.threshold"),
                        "must be greater than 0",
                    ));
                }
                if let Some(buckets) = &l.buckets {
                    l.check_threshold(buckets, "its `buckets`").map_err(|m| {
                        FieldError::new(format!("{path}.indicator.latency.threshold"), m)
                    })?;
                }
            }
        }
        Ok(())
    }
}
