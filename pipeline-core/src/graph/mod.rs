//! From a validated [`Config`] to a running graph, and its lifecycle.
//!
//! [`validate`] checks a config against a [`Registry`] and returns every problem at once.
//! [`Graph::build`] then creates one instance per component ID (one per pipeline for
//! processors), sink-first so each node receives its built `next`, and wraps every edge in
//! [`Instrumented`]. Pipelines are joined by connectors; each pipeline's head is a
//! [`SwitchConsumer`], and so is each receiver's output per signal, so that a reloaded graph
//! ([`Graph::build_next`], [`Graph::take_over`]) can be swapped in behind running receivers.
//! [`Graph::start`] starts downstream-first; [`Graph::shutdown`] stops receivers first, then
//! drains processors and connectors in data-flow order, exporters last, within a deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use tokio::time::{Duration, Instant};

use crate::component::{Component, ComponentId, ComponentKind, Host};
use crate::config::{Config, ConfigError, did_you_mean, section_name};
use crate::consumer::{Capabilities, Consumer, Fanout, SharedConsumer, SwitchConsumer};
use crate::factory::{CreateContext, FieldError, SharedState, SignalConsumers};
use crate::health::{ComponentStatus, HealthRegistry, HealthReporter};
use crate::registry::Registry;
use crate::signal::{PerSignal, Signal};
use crate::telemetry::{ComponentTelemetry, Instrumented, Telemetry};

/// A pipeline ID parsed: `traces`, `metrics/backend`, ...
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PipelineId {
    /// The signal.
    pub signal: Signal,
    /// The whole ID as written.
    pub id: String,
}

impl PipelineId {
    /// Parses `<signal>` or `<signal>/<name>`.
    pub fn parse(s: &str) -> Result<PipelineId, String> {
        let (sig, name) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let signal = Signal::parse(sig).ok_or_else(|| {
            format!(
                "pipeline ID {s:?} must start with traces, metrics or logs{}",
                did_you_mean(sig, ["traces", "metrics", "logs"])
            )
        })?;
        if name.is_some_and(str::is_empty) {
            return Err(format!("pipeline ID {s:?} has an empty name after '/'"));
        }
        Ok(PipelineId {
            signal,
            id: s.to_string(),
        })
    }
}

/// The outcome of [`validate`].
#[derive(Debug, Default)]
pub struct Validation {
    /// Problems that make the config unusable.
    pub errors: Vec<ConfigError>,
    /// Things worth knowing (unused components).
    pub warnings: Vec<String>,
}

struct PipelineRef {
    id: PipelineId,
    /// Connectors among the exporters: the edges to other pipelines.
    connectors_out: Vec<ComponentId>,
    receivers: Vec<ComponentId>,
    processors: Vec<ComponentId>,
    exporters: Vec<ComponentId>,
}

fn field_error(
    config: &Config,
    kind: ComponentKind,
    id: &ComponentId,
    e: FieldError,
) -> ConfigError {
    let key = format!("{}::{id}", section_name(kind));
    ConfigError {
        file: config.origin(&key).to_string(),
        component: key,
        path: e.path,
        message: e.message,
    }
}

fn validate_component(
    registry: &Registry,
    kind: ComponentKind,
    id: &ComponentId,
    value: &Value,
) -> Result<(), FieldError> {
    let t = id.type_name();
    let result = match kind {
        ComponentKind::Receiver => registry.receiver(t).map(|f| f.validate(value)),
        ComponentKind::Processor => registry.processor(t).map(|f| f.validate(value)),
        ComponentKind::Exporter => registry.exporter(t).map(|f| f.validate(value)),
        ComponentKind::Connector => registry.connector(t).map(|f| f.validate(value)),
    };
    result.unwrap_or_else(|| {
        let known = registry.type_names(kind);
        Err(FieldError::new(
            "",
            format!(
                "unknown {kind} type {t:?}{}; known types: {}",
                did_you_mean(t, known.iter().copied()),
                known.join(", ")
            ),
        ))
    })
}

fn listen_addresses(
    registry: &Registry,
    kind: ComponentKind,
    id: &ComponentId,
    value: &Value,
) -> Vec<String> {
    match kind {
        ComponentKind::Receiver => registry
            .receiver(id.type_name())
            .map(|f| f.listen_addresses(value)),
        ComponentKind::Exporter => registry
            .exporter(id.type_name())
            .map(|f| f.listen_addresses(value)),
        ComponentKind::Connector => registry
            .connector(id.type_name())
            .map(|f| f.listen_addresses(value)),
        ComponentKind::Processor => None,
    }
    .unwrap_or_default()
}

/// The port of `host:port`, and whether the host is a wildcard.
fn split_port(addr: &str) -> Option<(&str, &str)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
}

fn addresses_clash(a: &str, b: &str) -> bool {
    match (split_port(a), split_port(b)) {
        (Some((ha, pa)), Some((hb, pb))) => {
            let wildcard = |h: &str| h.is_empty() || h == "0.0.0.0" || h == "::";
            let local = |h: &str| h == "localhost" || h == "127.0.0.1" || h == "::1";
            pa == pb
                && pa != "0"
                && (ha == hb || wildcard(ha) || wildcard(hb) || (local(ha) && local(hb)))
        }
        _ => a == b,
    }
}

/// Checks `config` against `registry`: every component type known and its config valid,
/// every pipeline well-formed, connectors used on both sides without cycles, no two
/// listeners on one port. Unused components are warnings. Values substituted from the
/// environment appear in messages as their `${env:VAR}` reference.
pub fn validate(config: &Config, registry: &Registry) -> Validation {
    let mut v = Validation::default();
    for (kind, section) in &config.components {
        for (id, value) in section {
            if let Err(e) = validate_component(registry, *kind, id, value) {
                v.errors.push(field_error(config, *kind, id, e));
            }
        }
    }
    let pipelines = resolve_pipelines(config, registry, &mut v.errors);
    if config.service.pipelines.is_empty() {
        v.errors.push(ConfigError {
            file: config.origin("service").to_string(),
            component: "service".into(),
            path: "pipelines".into(),
            message: "no pipelines are defined; at least one is required".into(),
        });
    }
    check_connectors(config, registry, &pipelines, &mut v.errors);
    if let Some(cycle) = find_cycle(&pipelines) {
        v.errors.push(ConfigError {
            file: config.origin("service").to_string(),
            component: "service::pipelines".into(),
            path: String::new(),
            message: format!(
                "pipelines form a cycle through connectors: {}",
                cycle.join(" -> ")
            ),
        });
    }
    check_ports(config, registry, &pipelines, &mut v.errors);
    check_upstream(config, registry, &pipelines, &mut v.errors);
    let mut used: BTreeSet<(ComponentKind, &ComponentId)> = BTreeSet::new();
    for p in &pipelines {
        for (ids, kind) in [
            (&p.receivers, ComponentKind::Receiver),
            (&p.processors, ComponentKind::Processor),
            (&p.exporters, ComponentKind::Exporter),
        ] {
            for id in ids {
                let connector = kind != ComponentKind::Processor
                    && is_defined(config, ComponentKind::Connector, id);
                used.insert((
                    if connector {
                        ComponentKind::Connector
                    } else {
                        kind
                    },
                    id,
                ));
            }
        }
    }
    for (kind, section) in &config.components {
        for id in section.keys() {
            if !used.contains(&(*kind, id)) {
                v.warnings.push(format!(
                    "{}::{id} is defined but not used in any pipeline",
                    section_name(*kind)
                ));
            }
        }
    }
    // Messages may quote config values (serde's "invalid type: integer `...`", a URL that
    // does not parse); none may quote what came from the environment.
    config.env_values.redact_errors(&mut v.errors);
    v
}

fn is_defined(config: &Config, kind: ComponentKind, id: &ComponentId) -> bool {
    config
        .components
        .get(&kind)
        .is_some_and(|s| s.contains_key(id))
}

fn resolve_pipelines(
    config: &Config,
    registry: &Registry,
    errors: &mut Vec<ConfigError>,
) -> Vec<PipelineRef> {
    let mut out = Vec::new();
    for (name, p) in &config.service.pipelines {
        let key = format!("service::pipelines::{name}");
        let file = config.origin(&key).to_string();
        let mut error = |path: &str, message: String| {
            errors.push(ConfigError {
                file: file.clone(),
                component: key.clone(),
                path: path.to_string(),
                message,
            })
        };
        let id = match PipelineId::parse(name) {
            Ok(id) => id,
            Err(m) => {
                error("", m);
                continue;
            }
        };
        if p.receivers.is_empty() {
            error("receivers", "a pipeline needs at least one receiver".into());
        }
        if p.exporters.is_empty() {
            error("exporters", "a pipeline needs at least one exporter".into());
        }
        let mut resolve = |field: &str, list: &[String], kinds: &[ComponentKind]| {
            let mut ids = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, raw) in list.iter().enumerate() {
                let path = format!("{field}[{i}]");
                let cid = match ComponentId::parse(raw) {
                    Ok(c) => c,
                    Err(m) => {
                        error(&path, m);
                        continue;
                    }
                };
                if !seen.insert(cid.clone()) {
                    error(&path, format!("{raw:?} is listed twice"));
                    continue;
                }
                let Some(kind) = kinds.iter().copied().find(|k| is_defined(config, *k, &cid))
                else {
                    let known: Vec<String> = kinds
                        .iter()
                        .flat_map(|k| {
                            config
                                .components
                                .get(k)
                                .into_iter()
                                .flat_map(|s| s.keys().map(|c| c.to_string()))
                        })
                        .collect();
                    let where_ = kinds
                        .iter()
                        .map(|k| section_name(*k))
                        .collect::<Vec<_>>()
                        .join(" or ");
                    error(
                        &path,
                        format!(
                            "{raw:?} is not defined under {where_}{}",
                            did_you_mean(raw, known.iter().map(String::as_str))
                        ),
                    );
                    continue;
                };
                let as_input = field == "exporters";
                let factory_known = registry.type_names(kind).contains(&cid.type_name());
                if factory_known && !registry.supports(kind, cid.type_name(), id.signal, as_input) {
                    let role = if kind == ComponentKind::Connector {
                        if as_input {
                            " as an exporter"
                        } else {
                            " as a receiver"
                        }
                    } else {
                        ""
                    };
                    error(
                        &path,
                        format!(
                            "{kind} {raw:?} does not support the {} signal{role}",
                            id.signal
                        ),
                    );
                }
                ids.push(cid);
            }
            ids
        };
        let receivers = resolve(
            "receivers",
            &p.receivers,
            &[ComponentKind::Receiver, ComponentKind::Connector],
        );
        let processors = resolve("processors", &p.processors, &[ComponentKind::Processor]);
        let exporters = resolve(
            "exporters",
            &p.exporters,
            &[ComponentKind::Exporter, ComponentKind::Connector],
        );
        let connectors_out = exporters
            .iter()
            .filter(|e| {
                is_defined(config, ComponentKind::Connector, e)
                    && !is_defined(config, ComponentKind::Exporter, e)
            })
            .cloned()
            .collect();
        out.push(PipelineRef {
            id,
            connectors_out,
            receivers,
            processors,
            exporters,
        });
    }
    out
}

fn check_connectors(
    config: &Config,
    registry: &Registry,
    pipelines: &[PipelineRef],
    errors: &mut Vec<ConfigError>,
) {
    for (id, _) in config.section(ComponentKind::Connector) {
        let key = format!("connectors::{id}");
        let file = config.origin(&key).to_string();
        let feeds: Vec<&PipelineRef> = pipelines
            .iter()
            .filter(|p| p.exporters.contains(id))
            .collect();
        let fed: Vec<&PipelineRef> = pipelines
            .iter()
            .filter(|p| p.receivers.contains(id))
            .collect();
        if feeds.is_empty() && fed.is_empty() {
            continue; // unused: a warning
        }
        if feeds.is_empty() || fed.is_empty() {
            let missing = if feeds.is_empty() {
                "exporter"
            } else {
                "receiver"
            };
            errors.push(ConfigError {
                file,
                component: key,
                path: String::new(),
                message: format!("connector {id:?} must be used both as an exporter and as a receiver; it is never used as an {missing}"),
            });
            continue;
        }
        let Some(f) = registry.connector(id.type_name()) else {
            continue;
        };
        for a in &feeds {
            for b in &fed {
                if !f.signal_pairs().contains(&(a.id.signal, b.id.signal)) {
                    errors.push(ConfigError {
                        file: file.clone(),
                        component: key.clone(),
                        path: String::new(),
                        message: format!(
                            "connector {id:?} cannot connect {} (pipeline {}) to {} (pipeline {})",
                            a.id.signal, a.id.id, b.id.signal, b.id.id
                        ),
                    });
                }
            }
        }
    }
}

/// Edges between pipelines through connectors: (from pipeline index, to pipeline index).
fn pipeline_edges(pipelines: &[PipelineRef]) -> Vec<Vec<usize>> {
    pipelines
        .iter()
        .map(|p| {
            pipelines
                .iter()
                .enumerate()
                .filter(|(_, q)| q.receivers.iter().any(|r| p.connectors_out.contains(r)))
                .map(|(j, _)| j)
                .collect()
        })
        .collect()
}

fn find_cycle(pipelines: &[PipelineRef]) -> Option<Vec<String>> {
    let edges = pipeline_edges(pipelines);
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state = vec![0u8; pipelines.len()];
    let mut stack = Vec::new();
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        stack.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let start = stack.iter().position(|&x| x == m).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(m);
                return Some(cycle);
            }
            if state[m] == 0
                && let Some(c) = visit(m, edges, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[n] = 2;
        None
    }
    for n in 0..pipelines.len() {
        if state[n] == 0
            && let Some(c) = visit(n, &edges, &mut state, &mut stack)
        {
            return Some(c.into_iter().map(|i| pipelines[i].id.id.clone()).collect());
        }
    }
    None
}

/// Pipeline indices in data-flow order (a pipeline before those its connectors feed).
fn flow_order(pipelines: &[PipelineRef]) -> Vec<usize> {
    let edges = pipeline_edges(pipelines);
    let mut indegree = vec![0usize; pipelines.len()];
    for targets in &edges {
        for &t in targets {
            indegree[t] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..pipelines.len())
        .filter(|&i| indegree[i] == 0)
        .rev()
        .collect();
    let mut order = Vec::new();
    while let Some(n) = ready.pop() {
        order.push(n);
        for &t in &edges[n] {
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.push(t);
            }
        }
    }
    order
}

fn check_ports(
    config: &Config,
    registry: &Registry,
    pipelines: &[PipelineRef],
    errors: &mut Vec<ConfigError>,
) {
    let mut listeners: Vec<(String, String)> = Vec::new();
    for (name, addr) in [
        ("service::health", &config.service.health.endpoint),
        (
            "service::telemetry::metrics",
            &config.service.telemetry.metrics.endpoint,
        ),
    ] {
        if !addr.is_empty() && addr != "none" {
            listeners.push((name.to_string(), addr.clone()));
        }
    }
    let mut seen = BTreeSet::new();
    for p in pipelines {
        for (kind, id) in p
            .receivers
            .iter()
            .map(|r| (ComponentKind::Receiver, r))
            .chain(p.exporters.iter().map(|e| (ComponentKind::Exporter, e)))
        {
            // A connector is named among a pipeline's receivers and exporters.
            let connector = config
                .components
                .get(&ComponentKind::Connector)
                .and_then(|s| s.get(id));
            let kind = if connector.is_some() {
                ComponentKind::Connector
            } else {
                kind
            };
            if !seen.insert((kind, id.clone())) {
                continue;
            }
            if let Some(value) = config.components.get(&kind).and_then(|s| s.get(id)) {
                for addr in listen_addresses(registry, kind, id, value) {
                    listeners.push((format!("{}::{id}", section_name(kind)), addr));
                }
            }
        }
    }
    for (i, (a_name, a)) in listeners.iter().enumerate() {
        for (b_name, b) in &listeners[..i] {
            if addresses_clash(a, b) {
                errors.push(ConfigError {
                    file: config.origin(a_name).to_string(),
                    component: a_name.clone(),
                    path: String::new(),
                    message: format!(
                        "{a} is already used by {b_name} ({b}); two listeners cannot share a port"
                    ),
                });
            }
        }
    }
}

/// Runs every exporter's and connector's `validate_upstream` (see
/// [`crate::factory::ExporterFactory::validate_upstream`]) with the connectors feeding it, for those whose
/// own config is valid.
fn check_upstream(
    config: &Config,
    registry: &Registry,
    pipelines: &[PipelineRef],
    errors: &mut Vec<ConfigError>,
) {
    type Check<'r> = Box<dyn Fn(&Value, &[(&str, &Value)]) -> Result<(), FieldError> + 'r>;
    let sections = [ComponentKind::Exporter, ComponentKind::Connector];
    for (kind, id, value) in sections
        .into_iter()
        .flat_map(|k| config.section(k).map(move |(id, v)| (k, id, v)))
    {
        let check: Check<'_> = match kind {
            ComponentKind::Exporter => match registry.exporter(id.type_name()) {
                Some(f) if f.validate(value).is_ok() => {
                    Box::new(move |v, u| f.validate_upstream(v, u))
                }
                _ => continue,
            },
            _ => match registry.connector(id.type_name()) {
                Some(f) if f.validate(value).is_ok() => {
                    Box::new(move |v, u| f.validate_upstream(v, u))
                }
                _ => continue,
            },
        };
        let mut upstream: Vec<(&str, &Value)> = Vec::new();
        let mut seen = BTreeSet::new();
        for p in pipelines.iter().filter(|p| p.exporters.contains(id)) {
            for r in &p.receivers {
                if let Some(v) = config
                    .components
                    .get(&ComponentKind::Connector)
                    .and_then(|s| s.get(r))
                    && seen.insert(r.clone())
                {
                    upstream.push((r.type_name(), v));
                }
            }
        }
        if let Err(e) = check(value, &upstream) {
            errors.push(field_error(config, kind, id, e));
        }
    }
}

/// One built component instance (one per pipeline for processors).
#[derive(Clone)]
struct Node {
    /// `receivers::otlp`, `processors::batch (pipeline traces)`.
    key: String,
    kind: ComponentKind,
    id: ComponentId,
    /// Its raw config, to tell on reload whether it changed.
    raw: Value,
    component: Arc<dyn Component>,
    health: HealthReporter,
    /// Exporters: the instance pipelines feed and its telemetry, to reuse it on reload.
    leaf: Option<(
        Arc<dyn crate::factory::ConsumerComponent>,
        ComponentTelemetry,
    )>,
    /// Receivers: the switchable output per signal it feeds.
    outputs: Vec<(Signal, Arc<SwitchConsumer>)>,
}

impl Node {
    fn signals(&self) -> Vec<Signal> {
        self.outputs.iter().map(|(s, _)| *s).collect()
    }
}

/// The components of one pipeline, for views of the running graph (the live page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineLayout {
    /// `traces`, `metrics/backend`.
    pub id: String,
    /// Receivers (and connectors) feeding it.
    pub receivers: Vec<(ComponentKind, ComponentId)>,
    /// Processors in order.
    pub processors: Vec<ComponentId>,
    /// Exporters (and connectors) it feeds.
    pub exporters: Vec<(ComponentKind, ComponentId)>,
}

/// A built graph: its nodes in shutdown order and its pipeline heads.
pub struct Graph {
    nodes: Vec<Node>,
    heads: BTreeMap<String, Arc<SwitchConsumer>>,
    health: HealthRegistry,
    layout: Vec<PipelineLayout>,
    /// Node keys taken over from the graph this one replaces (already running).
    adopted: BTreeSet<String>,
    /// Outputs of adopted receivers and what they switch to when this graph takes over.
    switches: Vec<(Arc<SwitchConsumer>, SharedConsumer)>,
}

/// Why a graph could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The config did not validate.
    #[error("invalid configuration:\n{0}")]
    Invalid(crate::config::ConfigErrors),
    /// A factory failed to build a component.
    #[error("cannot build {component}: {source}")]
    Build {
        /// `receivers::otlp`.
        component: String,
        /// The cause.
        source: crate::factory::BuildError,
    },
    /// A component failed to start.
    #[error("cannot start {component}: {source}")]
    Start {
        /// `receivers::otlp`.
        component: String,
        /// The cause.
        source: crate::component::ComponentError,
    },
}

/// A pipeline's head, declaring what the pipeline as a whole does with the data (its first
/// processor alone would only say what it does itself).
struct Declared {
    capabilities: Capabilities,
    /// Every exporter of the pipeline acknowledges once the data is durable.
    durable: bool,
    inner: SharedConsumer,
}

#[async_trait::async_trait]
impl Consumer for Declared {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn acks_durably(&self) -> bool {
        self.durable
    }

    async fn consume(&self, batch: crate::Batch) -> Result<(), crate::ConsumeError> {
        self.inner.consume(batch).await
    }

    fn reads_by_ref(&self) -> bool {
        self.inner.reads_by_ref()
    }

    async fn consume_ref(&self, batch: &crate::Batch) -> Result<(), crate::ConsumeError> {
        self.inner.consume_ref(batch).await
    }
}

fn join(consumers: Vec<SharedConsumer>) -> SharedConsumer {
    if consumers.len() == 1 {
        consumers
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!())
    } else {
        Arc::new(Fanout::new(consumers))
    }
}

struct Builder<'a> {
    config: &'a Config,
    telemetry: &'a Telemetry,
    health: &'a HealthRegistry,
    /// The running graph this one will replace (a reload), whose unchanged receivers and
    /// exporters are taken over.
    previous: Option<&'a Graph>,
    shared: SharedState,
    /// Exporters and connectors by ID, with the instrumented entry pipelines call.
    leaves: HashMap<
        (ComponentKind, ComponentId),
        (
            Arc<dyn crate::factory::ConsumerComponent>,
            ComponentTelemetry,
        ),
    >,
    heads: BTreeMap<String, Arc<SwitchConsumer>>,
}

impl<'a> Builder<'a> {
    fn ctx(&self, kind: ComponentKind, id: &ComponentId) -> (CreateContext, HealthReporter) {
        let key = format!("{kind}/{id}");
        // A reload builds beside the running graph: its statuses stay until it takes over.
        let health = if self.previous.is_some() {
            self.health.reporter_quiet(key)
        } else {
            self.health.reporter_for_key(key)
        };
        let ctx = CreateContext {
            id: id.clone(),
            kind,
            telemetry: self.telemetry.component(kind, id),
            health: health.clone(),
            shared: self.shared.clone(),
            data_dir: self.config.service.data_dir.0.clone(),
        };
        (ctx, health)
    }

    fn raw(&self, kind: ComponentKind, id: &ComponentId) -> Value {
        self.config
            .components
            .get(&kind)
            .and_then(|s| s.get(id))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The heads of every pipeline where `id` is a receiver, joined per signal.
    fn joined_heads(
        &self,
        pipelines: &[PipelineRef],
        id: &ComponentId,
    ) -> Vec<(Signal, SharedConsumer)> {
        let mut per: PerSignal<Vec<SharedConsumer>> = PerSignal::default();
        for p in pipelines.iter().filter(|p| p.receivers.contains(id)) {
            if let Some(head) = self.heads.get(&p.id.id) {
                per.get_mut(p.id.signal)
                    .push(head.clone() as SharedConsumer);
            }
        }
        Signal::ALL
            .iter()
            .filter(|s| !per.get(**s).is_empty())
            .map(|s| (*s, join(per.get(*s).clone())))
            .collect()
    }

    /// The consumers a connector feeds, per signal.
    fn targets_of(
        &self,
        pipelines: &[PipelineRef],
        id: &ComponentId,
        upstream: &ComponentTelemetry,
    ) -> SignalConsumers {
        let mut out = PerSignal::default();
        for (signal, joined) in self.joined_heads(pipelines, id) {
            *out.get_mut(signal) = Some(Arc::new(Instrumented::new(
                Some(upstream.clone()),
                None,
                joined,
            )) as SharedConsumer);
        }
        out
    }

    /// A running node of the previous graph that can be taken over as it is: same kind, ID
    /// and config (and, for receivers, feeding the same signals).
    fn reusable(&self, kind: ComponentKind, id: &ComponentId, raw: &Value) -> Option<&'a Node> {
        self.previous?
            .nodes
            .iter()
            .find(|n| n.kind == kind && &n.id == id && &n.raw == raw)
    }
}

impl Graph {
    /// Builds every component of a config that passed [`validate`].
    pub fn build(
        config: &Config,
        registry: &Registry,
        telemetry: &Telemetry,
        health: &HealthRegistry,
    ) -> Result<Graph, GraphError> {
        Graph::build_with(config, registry, telemetry, health, None)
    }

    /// Builds the graph of `config` to replace `previous` (a reload): receivers and exporters
    /// whose config did not change are taken over from `previous` as they run, the rest is
    /// new. Nothing runs until [`Graph::take_over`].
    pub fn build_next(
        config: &Config,
        registry: &Registry,
        telemetry: &Telemetry,
        health: &HealthRegistry,
        previous: &Graph,
    ) -> Result<Graph, GraphError> {
        Graph::build_with(config, registry, telemetry, health, Some(previous))
    }

    fn build_with(
        config: &Config,
        registry: &Registry,
        telemetry: &Telemetry,
        health: &HealthRegistry,
        previous: Option<&Graph>,
    ) -> Result<Graph, GraphError> {
        let validation = validate(config, registry);
        if !validation.errors.is_empty() {
            return Err(GraphError::Invalid(crate::config::ConfigErrors(
                validation.errors,
            )));
        }
        let mut errors = Vec::new();
        let pipelines = resolve_pipelines(config, registry, &mut errors);
        let order = flow_order(&pipelines);
        let mut adopted = BTreeSet::new();
        let mut switches = Vec::new();
        let mut b = Builder {
            config,
            telemetry,
            health,
            previous,
            shared: SharedState::default(),
            leaves: HashMap::new(),
            heads: BTreeMap::new(),
        };
        let build_err = |kind: ComponentKind, id: &ComponentId, source| GraphError::Build {
            component: format!("{}::{id}", section_name(kind)),
            source,
        };
        let mut processor_nodes: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
        let mut connector_nodes: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
        let mut exporter_nodes = Vec::new();
        // Sink-first: walk the flow order backwards.
        for &pi in order.iter().rev() {
            let p = &pipelines[pi];
            let mut branches = Vec::new();
            for eid in &p.exporters {
                let kind = if p.connectors_out.contains(eid) {
                    ComponentKind::Connector
                } else {
                    ComponentKind::Exporter
                };
                let reused = (kind == ComponentKind::Exporter)
                    .then(|| b.reusable(kind, eid, &b.raw(kind, eid)))
                    .flatten()
                    .filter(|_| !b.leaves.contains_key(&(kind, eid.clone())));
                if let Some(node) = reused
                    && let Some((instance, tel)) = &node.leaf
                {
                    adopted.insert(node.key.clone());
                    exporter_nodes.push(node.clone());
                    b.leaves
                        .insert((kind, eid.clone()), (instance.clone(), tel.clone()));
                }
                if !b.leaves.contains_key(&(kind, eid.clone())) {
                    let (ctx, health_reporter) = b.ctx(kind, eid);
                    let tel = ctx.telemetry.clone();
                    let raw = b.raw(kind, eid);
                    let instance = if kind == ComponentKind::Connector {
                        let next = b.targets_of(&pipelines, eid, &tel);
                        let f = registry.connector(eid.type_name()).ok_or_else(|| {
                            build_err(
                                kind,
                                eid,
                                crate::factory::BuildError::Other("unknown type".into()),
                            )
                        })?;
                        f.create(ctx, &raw, next)
                            .map_err(|e| build_err(kind, eid, e))?
                    } else {
                        let f = registry.exporter(eid.type_name()).ok_or_else(|| {
                            build_err(
                                kind,
                                eid,
                                crate::factory::BuildError::Other("unknown type".into()),
                            )
                        })?;
                        f.create(ctx, &raw).map_err(|e| build_err(kind, eid, e))?
                    };
                    let node = Node {
                        key: format!("{}::{eid}", section_name(kind)),
                        kind,
                        id: eid.clone(),
                        raw,
                        component: instance.clone(),
                        health: health_reporter,
                        leaf: Some((instance.clone(), tel.clone())),
                        outputs: Vec::new(),
                    };
                    if kind == ComponentKind::Connector {
                        // Shut down once the last pipeline feeding it has drained.
                        let last_feeder = order
                            .iter()
                            .rposition(|&i| pipelines[i].exporters.contains(eid))
                            .unwrap_or(0);
                        connector_nodes.entry(last_feeder).or_default().push(node);
                    } else {
                        exporter_nodes.push(node);
                    }
                    b.leaves.insert((kind, eid.clone()), (instance, tel));
                }
                let (instance, tel) = &b.leaves[&(kind, eid.clone())];
                branches.push(Arc::new(Instrumented::new(
                    None,
                    Some(tel.clone()),
                    instance.clone() as SharedConsumer,
                )) as SharedConsumer);
            }
            let mut next = join(branches);
            // Processors pass acknowledgement handles on with the data (the contract), so
            // the pipeline is durable when its exporters are.
            let durable = next.acks_durably();
            // What the pipeline as a whole declares: it reads if any processor reads or its
            // exporters do (a fanout reads only if every branch does).
            let mut pipeline_caps = next.capabilities();
            let mut nodes = Vec::new();
            for pid in p.processors.iter().rev() {
                let (ctx, health_reporter) = b.ctx(ComponentKind::Processor, pid);
                let tel = ctx.telemetry.clone();
                let raw = b.raw(ComponentKind::Processor, pid);
                let f = registry.processor(pid.type_name()).ok_or_else(|| {
                    build_err(
                        ComponentKind::Processor,
                        pid,
                        crate::factory::BuildError::Other("unknown type".into()),
                    )
                })?;
                let out =
                    Arc::new(Instrumented::new(Some(tel.clone()), None, next)) as SharedConsumer;
                let instance = f
                    .create(ctx, &raw, p.id.signal, out)
                    .map_err(|e| build_err(ComponentKind::Processor, pid, e))?;
                pipeline_caps = instance.capabilities().then(pipeline_caps);
                next = Arc::new(Instrumented::new(
                    None,
                    Some(tel),
                    instance.clone() as SharedConsumer,
                ));
                nodes.push(Node {
                    key: format!("processors::{pid} (pipeline {})", p.id.id),
                    kind: ComponentKind::Processor,
                    id: pid.clone(),
                    raw,
                    component: instance,
                    health: health_reporter,
                    leaf: None,
                    outputs: Vec::new(),
                });
            }
            nodes.reverse();
            let position = order.iter().position(|&i| i == pi).unwrap_or(0);
            processor_nodes.insert(position, nodes);
            let head = Arc::new(Declared {
                capabilities: pipeline_caps,
                durable,
                inner: next,
            });
            b.heads
                .insert(p.id.id.clone(), Arc::new(SwitchConsumer::new(head)));
        }
        let mut receiver_nodes = Vec::new();
        for (rid, _) in config.section(ComponentKind::Receiver) {
            if !pipelines.iter().any(|p| p.receivers.contains(rid)) {
                continue;
            }
            let raw = b.raw(ComponentKind::Receiver, rid);
            let joined = b.joined_heads(&pipelines, rid);
            let signals: Vec<Signal> = joined.iter().map(|(s, _)| *s).collect();
            if let Some(node) = b
                .reusable(ComponentKind::Receiver, rid, &raw)
                .filter(|n| n.signals() == signals)
            {
                // Unchanged: it keeps running (and its ports open); its outputs switch to
                // this graph's pipelines when this graph takes over.
                for ((_, output), (_, target)) in node.outputs.iter().zip(joined) {
                    switches.push((output.clone(), target));
                }
                adopted.insert(node.key.clone());
                receiver_nodes.push(node.clone());
                continue;
            }
            let (ctx, health_reporter) = b.ctx(ComponentKind::Receiver, rid);
            let tel = ctx.telemetry.clone();
            let mut next = SignalConsumers::default();
            let mut outputs = Vec::new();
            for (signal, target) in joined {
                let output = Arc::new(SwitchConsumer::new(target));
                *next.get_mut(signal) = Some(Arc::new(Instrumented::new(
                    Some(tel.clone()),
                    Some(tel.clone()),
                    output.clone() as SharedConsumer,
                )) as SharedConsumer);
                outputs.push((signal, output));
            }
            let f = registry.receiver(rid.type_name()).ok_or_else(|| {
                build_err(
                    ComponentKind::Receiver,
                    rid,
                    crate::factory::BuildError::Other("unknown type".into()),
                )
            })?;
            let instance = f
                .create(ctx, &raw, next)
                .map_err(|e| build_err(ComponentKind::Receiver, rid, e))?;
            receiver_nodes.push(Node {
                key: format!("receivers::{rid}"),
                kind: ComponentKind::Receiver,
                id: rid.clone(),
                raw,
                component: instance,
                health: health_reporter,
                leaf: None,
                outputs,
            });
        }
        // Shutdown order: receivers, then each pipeline's processors in flow order with the
        // connectors it was the last feeder of, then exporters.
        let mut nodes = receiver_nodes;
        for position in 0..order.len() {
            nodes.extend(processor_nodes.remove(&position).unwrap_or_default());
            nodes.extend(connector_nodes.remove(&position).unwrap_or_default());
        }
        nodes.extend(exporter_nodes);
        let layout = pipelines
            .iter()
            .map(|p| {
                let kind_of = |id: &ComponentId, other: ComponentKind| {
                    if is_defined(config, ComponentKind::Connector, id) {
                        (ComponentKind::Connector, id.clone())
                    } else {
                        (other, id.clone())
                    }
                };
                PipelineLayout {
                    id: p.id.id.clone(),
                    receivers: p
                        .receivers
                        .iter()
                        .map(|r| kind_of(r, ComponentKind::Receiver))
                        .collect(),
                    processors: p.processors.clone(),
                    exporters: p
                        .exporters
                        .iter()
                        .map(|e| kind_of(e, ComponentKind::Exporter))
                        .collect(),
                }
            })
            .collect();
        Ok(Graph {
            nodes,
            heads: b.heads,
            health: health.clone(),
            layout,
            adopted,
            switches,
        })
    }

    /// Starts every component, exporters first and receivers last. On failure, stops what
    /// had started.
    pub async fn start(&self, host: &Host) -> Result<(), GraphError> {
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if let Err(e) = node.component.start(host).await {
                node.health
                    .report(ComponentStatus::PermanentError(e.to_string()));
                let deadline = Instant::now() + Duration::from_secs(5);
                for started in &self.nodes[i + 1..] {
                    let _ = tokio::time::timeout_at(deadline, started.component.shutdown(deadline))
                        .await;
                }
                return Err(GraphError::Start {
                    component: node.key.clone(),
                    source: e,
                });
            }
            node.health.report(ComponentStatus::Ok);
        }
        self.health.set_started(true);
        Ok(())
    }

    /// Stops receivers first, then drains processors, connectors and exporters in data-flow
    /// order. Components see `deadline` and count what they cannot deliver by then.
    pub async fn shutdown(&self, deadline: Instant) {
        self.health.set_started(false);
        for node in &self.nodes {
            reload::stop(node, deadline).await;
            node.health.report(ComponentStatus::Stopped);
        }
    }

    /// The head of a pipeline (by its ID), for tests and taps.
    pub fn head(&self, pipeline: &str) -> Option<Arc<SwitchConsumer>> {
        self.heads.get(pipeline).cloned()
    }

    /// The pipelines and their components.
    pub fn layout(&self) -> &[PipelineLayout] {
        &self.layout
    }

    /// Node names in shutdown order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.key.clone()).collect()
    }

    /// The health registry the graph reports into.
    pub fn health(&self) -> &HealthRegistry {
        &self.health
    }
}

mod reload;

pub use reload::Rejected;

#[cfg(test)]
mod tests;
