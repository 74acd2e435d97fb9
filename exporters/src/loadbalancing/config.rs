//! The `loadbalancing` exporter's config.

use pipeline_core::FieldError;
use pipeline_core::attributes::DEFAULT_REQUEST_ID_ATTRIBUTES;
use pipeline_core::config::HumanDuration;
use serde::Deserialize;
use serde_json::Value;

use crate::otlp::OtlpConfig;

/// `exporters.loadbalancing`.
///
/// ```yaml
/// exporters:
///   loadbalancing:
///     routing_key: trace_id
///     protocol:
///       otlp: { compression: gzip, sending_queue: { queue_size: 10000 } }
///     resolver:
///       static: { hostnames: ["gateway-0:4317", "gateway-1:4317", "gateway-2:4317"] }
///       # dns: { hostname: sightline-gateway-headless, port: 4317, interval: 5s }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    /// What decides the backend; unset: `trace_id` for traces, `service` for metrics and logs.
    #[serde(default)]
    pub routing_key: Option<RoutingKey>,
    /// Attributes holding the request ID for `routing_key: request_id`, the first present
    /// one wins (default: the `request_id` processor's list).
    #[serde(default = "default_request_id_attributes")]
    pub request_id_attributes: Vec<String>,
    /// How each backend is reached.
    #[serde(default)]
    pub protocol: Protocol,
    /// Where the list of backends comes from. Required.
    pub resolver: ResolverConfig,
    /// How long a backend whose data ran out of retries stays out of the ring (its keys
    /// and its data go to the others meanwhile; default `30s`).
    #[serde(default = "default_unhealthy_cooldown")]
    pub unhealthy_cooldown: HumanDuration,
}

fn default_request_id_attributes() -> Vec<String> {
    DEFAULT_REQUEST_ID_ATTRIBUTES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_unhealthy_cooldown() -> HumanDuration {
    HumanDuration::from_secs(30)
}

/// `routing_key`: what items with the same value of share a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingKey {
    /// The span's or log record's trace ID: every span of a trace on one backend.
    TraceId,
    /// The request ID attribute of the span or log record (`request_id_attributes`); items
    /// without one go by their trace ID, then by service.
    RequestId,
    /// The resource's `service.name`: all of a service's data on one backend.
    Service,
    /// All the resource's attributes: one backend per resource (per pod, per process).
    Resource,
}

impl RoutingKey {
    /// The key used for `signal` when the config names `configured`: metrics carry neither
    /// trace nor request IDs, so `trace_id` and `request_id` route them by service.
    pub fn for_signal(configured: Option<RoutingKey>, signal: pipeline_core::Signal) -> RoutingKey {
        use pipeline_core::Signal;
        match (configured, signal) {
            (None, Signal::Traces) => RoutingKey::TraceId,
            (None, _) => RoutingKey::Service,
            (Some(RoutingKey::TraceId | RoutingKey::RequestId), Signal::Metrics) => {
                RoutingKey::Service
            }
            (Some(key), _) => key,
        }
    }
}

/// `protocol`: how backends are reached.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// Options of the `otlp` exporter, all but `endpoint` (which comes from the resolver).
    pub otlp: Value,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            otlp: Value::Object(serde_json::Map::new()),
        }
    }
}

/// `resolver`: exactly one of `static` and `dns`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// A fixed list of backends.
    #[serde(default, rename = "static")]
    pub static_list: Option<StaticResolver>,
    /// Backends from a DNS name's A/AAAA records (a Kubernetes headless Service).
    #[serde(default)]
    pub dns: Option<DnsResolver>,
}

/// `resolver.static`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// `host:port` (or `host`, port 4317; or `http(s)://host:port`) of each backend.
    pub hostnames: Vec<String>,
}

/// `resolver.dns`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// The name to resolve; every address it has is a backend.
    pub hostname: String,
    /// The backends' port (default `4317`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// How often to resolve again (default `5s`).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Longest one resolution may take (default `1s`); a failed or slow one keeps the
    /// backends of the last one that worked.
    #[serde(default = "default_dns_timeout")]
    pub timeout: HumanDuration,
    /// A hosts(5)-style file read before DNS on every resolution (`address name...` per
    /// line): names it lists resolve to its addresses only. For tests and fixed setups.
    #[serde(default)]
    pub hosts_file: Option<String>,
}

/// The default backend port: OTLP/gRPC's 4317.
pub(crate) const DEFAULT_PORT: u16 = 4317;

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_dns_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}

impl pipeline_core::ComponentConfig for LoadBalancingConfig {
    fn default_config() -> Value {
        serde_json::json!({ "resolver": { "static": { "hostnames": ["localhost:4317"] } } })
    }

    fn validate(&self) -> Result<(), FieldError> {
        LoadBalancingConfig::check(self)
    }
}

impl LoadBalancingConfig {
    /// Checks everything that can be checked without the network.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.request_id_attributes.is_empty()
            || self.request_id_attributes.iter().any(|a| a.is_empty())
        {
            return Err(FieldError::new(
                "request_id_attributes",
                "must name at least one attribute, none empty",
            ));
        }
        if self.unhealthy_cooldown.get().is_zero() {
            return Err(FieldError::new("unhealthy_cooldown", "must be more than 0"));
        }
        let example = match (&self.resolver.static_list, &self.resolver.dns) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(FieldError::new(
                    "resolver",
                    "set exactly one of `static` and `dns`",
                ));
            }
            (Some(list), None) => {
                if list.hostnames.is_empty() {
                    return Err(FieldError::new(
                        "resolver.static.hostnames",
                        "must name at least one backend",
                    ));
                }
                // The options are checked first; an error after that is the hostname's.
                self.otlp_config(&backend_endpoint("localhost"))?;
                for (i, host) in list.hostnames.iter().enumerate() {
                    self.otlp_config(&backend_endpoint(host)).map_err(|e| {
                        FieldError::new(format!("resolver.static.hostnames[{i}]"), e.message)
                    })?;
                }
                list.hostnames[0].clone()
            }
            (None, Some(dns)) => {
                if dns.hostname.trim().is_empty() {
                    return Err(FieldError::new(
                        "resolver.dns.hostname",
                        "must not be empty",
                    ));
                }
                if dns.port == 0 {
                    return Err(FieldError::new("resolver.dns.port", "must not be 0"));
                }
                if dns.interval.get().is_zero() {
                    return Err(FieldError::new(
                        "resolver.dns.interval",
                        "must be more than 0",
                    ));
                }
                if dns.timeout.get().is_zero() {
                    return Err(FieldError::new(
                        "resolver.dns.timeout",
                        "must be more than 0",
                    ));
                }
                format!("{}:{}", dns.hostname.trim(), dns.port)
            }
        };
        self.otlp_config(&backend_endpoint(&example)).map(|_| ())
    }

    /// The `otlp` exporter config of the backend at `endpoint`: `protocol.otlp` with the
    /// endpoint added, checked as the `otlp` exporter checks its own.
    pub fn otlp_config(&self, endpoint: &str) -> Result<OtlpConfig, FieldError> {
        let Value::Object(options) = &self.protocol.otlp else {
            return Err(FieldError::new(
                "protocol.otlp",
                "must be a map of otlp exporter options",
            ));
        };
        if options.contains_key("endpoint") {
            return Err(FieldError::new(
                "protocol.otlp.endpoint",
                "comes from the resolver; remove it",
            ));
        }
        // A backend's persistent queue would be stranded on disk when the backend leaves the
        // ring (its exporter is gone, and a persistent queue keeps what it holds rather than
        // handing it over): refused rather than lost.
        if options
            .get("sending_queue")
            .and_then(|q| q.get("storage"))
            .is_some_and(|v| !v.is_null())
        {
            return Err(FieldError::new(
                "protocol.otlp.sending_queue.storage",
                "a persistent queue per backend is not supported (a backend that leaves the ring would strand it); put persistent queues on the gateways' exporters",
            ));
        }
        let mut options = options.clone();
        options.insert("endpoint".into(), Value::String(endpoint.to_string()));
        <OtlpConfig as pipeline_core::ComponentConfig>::parse(&Value::Object(options)).map_err(
            |e| {
                let path = if e.path.is_empty() {
                    "protocol.otlp".to_string()
                } else {
                    format!("protocol.otlp.{}", e.path)
                };
                FieldError::new(path, e.message)
            },
        )
    }
}

/// A backend's endpoint from a resolver's `host`, `host:port` or URL: the port defaults to
/// 4317.
pub(crate) fn backend_endpoint(host: &str) -> String {
    let host = host.trim();
    if host.contains("://") {
        return host.to_string();
    }
    let has_port = match host.rsplit_once(':') {
        // `[v6]:port` or `name:port`; a bare IPv6 address has more than one colon.
        Some((before, port)) => {
            port.parse::<u16>().is_ok() && (before.ends_with(']') || !before.contains(':'))
        }
        None => false,
    };
    if has_port {
        host.to_string()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{DEFAULT_PORT}")
    } else {
        format!("{host}:{DEFAULT_PORT}")
    }
}
