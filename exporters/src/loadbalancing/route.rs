//! Splitting a batch by routing key: one payload per backend that owns some of its keys.
//!
//! Keys by resource (`service`, `resource`, and every key for metrics) move whole resource
//! groups; keys by item (`trace_id`, `request_id`) split groups down to the spans or log
//! records, each part keeping a copy of its resource and scope.

use std::hash::Hasher;

use pipeline_core::Signal;
use pipeline_core::attributes::{find, hash_attributes, to_text};
use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::config::RoutingKey;
use super::ring::{StableHasher, stable_hash};

/// How keys are read from items: the key per signal and the request ID attributes.
#[derive(Debug, Clone)]
pub(crate) struct KeyReader {
    configured: Option<RoutingKey>,
    request_id_attributes: Vec<String>,
}

impl KeyReader {
    pub(crate) fn new(configured: Option<RoutingKey>, request_id_attributes: Vec<String>) -> Self {
        KeyReader {
            configured,
            request_id_attributes,
        }
    }

    /// The key used for `signal`.
    pub(crate) fn key(&self, signal: Signal) -> RoutingKey {
        RoutingKey::for_signal(self.configured, signal)
    }

    /// The hash of a resource's key (`service` or `resource`).
    fn resource_hash(&self, key: RoutingKey, resource: Option<&Resource>) -> u64 {
        let attributes = resource.map_or(&[][..], |r| &r.attributes[..]);
        if key == RoutingKey::Resource {
            let mut h = StableHasher::default();
            h.write(b"resource");
            hash_attributes(attributes, &mut h);
            return h.finish();
        }
        let service = find(attributes, "service.name")
            .and_then(to_text)
            .unwrap_or_default();
        stable_hash(&[b"service", service.as_bytes()])
    }

    /// The hash of one span's or record's key: its request ID, its trace ID, else its
    /// resource's service.
    fn item_hash(
        &self,
        key: RoutingKey,
        trace_id: &[u8],
        attributes: &[KeyValue],
        resource: Option<&Resource>,
    ) -> u64 {
        if key == RoutingKey::RequestId {
            let request_id = self
                .request_id_attributes
                .iter()
                .find_map(|name| find(attributes, name).and_then(to_text));
            if let Some(id) = request_id.filter(|id| !id.is_empty()) {
                return stable_hash(&[b"request_id", id.as_bytes()]);
            }
        }
        if !trace_id.is_empty() && trace_id.iter().any(|&b| b != 0) {
            return stable_hash(&[b"trace_id", trace_id]);
        }
        self.resource_hash(RoutingKey::Service, resource)
    }

    /// Splits `payload` into parts per owner; `owner` maps a key hash to a backend index.
    /// The parts come in the order their owners first appear.
    pub(crate) fn split(
        &self,
        payload: Payload,
        owner: &impl Fn(u64) -> usize,
    ) -> Vec<(usize, Payload)> {
        let key = self.key(payload.signal());
        match payload {
            Payload::Metrics(groups) => by_resource(groups, |g| {
                owner(self.resource_hash(key, g.resource.as_ref()))
            })
            .into_iter()
            .map(|(o, g)| (o, Payload::Metrics(g)))
            .collect(),
            Payload::Traces(groups) => self
                .split_groups(groups, key, owner)
                .into_iter()
                .map(|(o, g)| (o, Payload::Traces(g)))
                .collect(),
            Payload::Logs(groups) => self
                .split_groups(groups, key, owner)
                .into_iter()
                .map(|(o, g)| (o, Payload::Logs(g)))
                .collect(),
            other => vec![(owner(0), other)],
        }
    }

    fn split_groups<G: Group>(
        &self,
        groups: Vec<G>,
        key: RoutingKey,
        owner: &impl Fn(u64) -> usize,
    ) -> Vec<(usize, Vec<G>)> {
        if matches!(key, RoutingKey::Service | RoutingKey::Resource) {
            return by_resource(groups, |g| owner(self.resource_hash(key, g.resource())));
        }
        let mut out: Vec<(usize, Vec<G>)> = Vec::new();
        for group in groups {
            let (shell, scopes) = group.into_shell();
            let mut parts: Vec<(usize, G)> = Vec::new();
            for scope in scopes {
                let (scope_shell, items) = scope.into_shell();
                let owners: Vec<usize> = items
                    .iter()
                    .map(|item| {
                        owner(self.item_hash(
                            key,
                            item.trace_id(),
                            item.attributes(),
                            shell.resource(),
                        ))
                    })
                    .collect();
                let scope_parts = partition(items, &owners);
                for (o, items) in scope_parts {
                    entry(&mut parts, o, || shell.with_scopes(Vec::new()))
                        .scopes_mut()
                        .push(scope_shell.with_items(items));
                }
            }
            for (o, part) in parts {
                entry(&mut out, o, Vec::new).push(part);
            }
        }
        out
    }
}

/// `items` per owner (`owners[i]` is the owner of `items[i]`), in order. All of one owner
/// (the common case for small scopes) keeps the vector as it is; otherwise each part is
/// allocated at its final size, so every item moves once.
fn partition<T>(items: Vec<T>, owners: &[usize]) -> Vec<(usize, Vec<T>)> {
    let Some(&first) = owners.first() else {
        return Vec::new();
    };
    if owners.iter().all(|&o| o == first) {
        return vec![(first, items)];
    }
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for &o in owners {
        *entry(&mut counts, o, || 0) += 1;
    }
    let mut parts: Vec<(usize, Vec<T>)> = counts
        .into_iter()
        .map(|(o, n)| (o, Vec::with_capacity(n)))
        .collect();
    for (item, &o) in items.into_iter().zip(owners) {
        entry(&mut parts, o, Vec::new).push(item);
    }
    parts
}

/// Whole groups per owner of their resource.
fn by_resource<G>(groups: Vec<G>, owner: impl Fn(&G) -> usize) -> Vec<(usize, Vec<G>)> {
    let mut out: Vec<(usize, Vec<G>)> = Vec::new();
    for group in groups {
        let o = owner(&group);
        entry(&mut out, o, Vec::new).push(group);
    }
    out
}

/// The value for `owner` in a short list of (owner, value), made by `make` if missing. The
/// list holds one entry per backend the batch touches: a linear scan beats a map.
fn entry<T>(list: &mut Vec<(usize, T)>, owner: usize, make: impl FnOnce() -> T) -> &mut T {
    let at = match list.iter().position(|(o, _)| *o == owner) {
        Some(at) => at,
        None => {
            list.push((owner, make()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// A resource group (`ResourceSpans`, `ResourceLogs`) seen as a shell plus its scopes.
pub(crate) trait Group: Sized {
    /// Its scope groups.
    type Scope: Scope;
    /// The resource.
    fn resource(&self) -> Option<&Resource>;
    /// The group without its scopes, and the scopes.
    fn into_shell(self) -> (Self, Vec<Self::Scope>);
    /// A copy of the shell holding `scopes`.
    fn with_scopes(&self, scopes: Vec<Self::Scope>) -> Self;
    /// The scopes, to add to.
    fn scopes_mut(&mut self) -> &mut Vec<Self::Scope>;
}

/// A scope group (`ScopeSpans`, `ScopeLogs`) seen as a shell plus its items.
pub(crate) trait Scope: Sized {
    /// The spans or records.
    type Item: Item;
    /// The scope without its items, and the items.
    fn into_shell(self) -> (Self, Vec<Self::Item>);
    /// A copy of the shell holding `items`.
    fn with_items(&self, items: Vec<Self::Item>) -> Self;
}

/// What routing reads from a span or log record.
pub(crate) trait Item {
    /// Its trace ID (empty when it has none).
    fn trace_id(&self) -> &[u8];
    /// Its attributes.
    fn attributes(&self) -> &[KeyValue];
}

macro_rules! groups {
    ($group:ty, $scopes:ident, $scope:ty, $items:ident, $item:ty) => {
        impl Group for $group {
            type Scope = $scope;
            fn resource(&self) -> Option<&Resource> {
                self.resource.as_ref()
            }
            fn into_shell(mut self) -> (Self, Vec<$scope>) {
                let scopes = std::mem::take(&mut self.$scopes);
                (self, scopes)
            }
            fn with_scopes(&self, $scopes: Vec<$scope>) -> Self {
                Self {
                    resource: self.resource.clone(),
                    $scopes,
                    schema_url: self.schema_url.clone(),
                }
            }
            fn scopes_mut(&mut self) -> &mut Vec<$scope> {
                &mut self.$scopes
            }
        }

        impl Scope for $scope {
            type Item = $item;
            fn into_shell(mut self) -> (Self, Vec<$item>) {
                let items = std::mem::take(&mut self.$items);
                (self, items)
            }
            fn with_items(&self, $items: Vec<$item>) -> Self {
                Self {
                    scope: self.scope.clone(),
                    $items,
                    schema_url: self.schema_url.clone(),
                }
            }
        }

        impl Item for $item {
            fn trace_id(&self) -> &[u8] {
                &self.trace_id
            }
            fn attributes(&self) -> &[KeyValue] {
                &self.attributes
            }
        }
    };
}

groups!(ResourceSpans, scope_spans, ScopeSpans, spans, Span);
groups!(ResourceLogs, scope_logs, ScopeLogs, log_records, LogRecord);
