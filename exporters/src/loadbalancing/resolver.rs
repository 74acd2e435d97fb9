//! Where the list of backends comes from: a fixed list, or a DNS name whose A/AAAA records
//! are resolved again every `interval` (a Kubernetes headless Service has one record per
//! ready pod).
//!
//! Lookups go through [`Lookup`]: the system resolver in production, a table in tests, and
//! a hosts(5)-style file (`resolver.dns.hosts_file`) in front of either.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::config::{DnsResolver, ResolverConfig, backend_endpoint};

/// Resolves a host name to socket addresses.
#[async_trait]
pub trait Lookup: Send + Sync + 'static {
    /// Every address of `host`, with `port`.
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo` through tokio): A and AAAA records.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// A hosts(5)-style file in front of another lookup: a name the file lists resolves to the
/// file's addresses only. The file is read on every lookup, so rewriting it changes the
/// backends at the next interval.
pub struct HostsFileLookup {
    path: String,
    next: Arc<dyn Lookup>,
}

impl HostsFileLookup {
    /// Reads `path` before asking `next`.
    pub fn new(path: impl Into<String>, next: Arc<dyn Lookup>) -> HostsFileLookup {
        HostsFileLookup {
            path: path.into(),
            next,
        }
    }
}

/// The addresses `text` (hosts(5) format) gives `host`.
pub(crate) fn hosts_entries(text: &str, host: &str) -> Vec<IpAddr> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address: IpAddr = fields.next()?.parse().ok()?;
            fields
                .any(|name| name.eq_ignore_ascii_case(host))
                .then_some(address)
        })
        .collect()
}

#[async_trait]
impl Lookup for HostsFileLookup {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", self.path)))?;
        let listed = hosts_entries(&text, host);
        if listed.is_empty() {
            return self.next.lookup(host, port).await;
        }
        Ok(listed
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

/// The configured source of backends.
pub(crate) enum Resolver {
    /// `resolver.static`: the endpoints, fixed.
    Static(Vec<String>),
    /// `resolver.dns`.
    Dns {
        config: DnsResolver,
        lookup: Arc<dyn Lookup>,
    },
}

impl Resolver {
    /// The resolver `config` asks for; DNS lookups go to `lookup` (after the hosts file,
    /// if one is set).
    pub(crate) fn new(config: &ResolverConfig, lookup: Arc<dyn Lookup>) -> Resolver {
        match (&config.static_list, &config.dns) {
            (Some(list), _) => Resolver::Static(
                list.hostnames
                    .iter()
                    .map(|h| backend_endpoint(h))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ),
            (None, Some(dns)) => {
                let lookup = match &dns.hosts_file {
                    Some(path) => Arc::new(HostsFileLookup::new(path.clone(), lookup)),
                    None => lookup,
                };
                Resolver::Dns {
                    config: dns.clone(),
                    lookup,
                }
            }
            // Validation requires one of the two; an empty list resolves to nothing.
            (None, None) => Resolver::Static(Vec::new()),
        }
    }

    /// How often to resolve again; `None` for a fixed list.
    pub(crate) fn interval(&self) -> Option<Duration> {
        match self {
            Resolver::Static(_) => None,
            Resolver::Dns { config, .. } => Some(config.interval.get()),
        }
    }

    /// The backends' endpoints now, sorted, without duplicates. An error (a failed or slow
    /// lookup, or one with no address) leaves the caller with the last good list.
    pub(crate) async fn resolve(&self) -> Result<Vec<String>, String> {
        match self {
            Resolver::Static(list) => Ok(list.clone()),
            Resolver::Dns { config, lookup } => {
                let host = config.hostname.trim();
                let found =
                    tokio::time::timeout(config.timeout.get(), lookup.lookup(host, config.port))
                        .await
                        .map_err(|_| {
                            format!("resolving {host}: no answer within {}", config.timeout)
                        })?
                        .map_err(|e| format!("resolving {host}: {e}"))?;
                if found.is_empty() {
                    return Err(format!("resolving {host}: no address"));
                }
                Ok(found
                    .into_iter()
                    .map(|addr| addr.to_string())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect())
            }
        }
    }
}
