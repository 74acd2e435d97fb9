//! A test kit for component authors: consumers that collect or discard, batch builders, and
//! the conformance check every factory runs (default config validates; builds against a nop
//! consumer; shutdown without start; start then shutdown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::component::{ComponentKind, Host};
use crate::consumer::{ConsumeError, Consumer, SharedConsumer};
use crate::factory::{
    CreateContext, DynConnectorFactory, DynExporterFactory, DynProcessorFactory, DynReceiverFactory,
};
use crate::model::{AckOutcome, AckToken, Batch, Payload};
use crate::proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use crate::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use crate::proto::tonic::resource::v1::Resource;
use crate::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use crate::signal::{PerSignal, Signal};

/// Accepts and discards everything, resolving it as delivered.
#[derive(Debug, Default, Clone, Copy)]
pub struct NopConsumer;

#[async_trait]
impl Consumer for NopConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        batch.delivered();
        Ok(())
    }
}

/// Keeps every batch it is given: the data, with its acknowledgement handles resolved as
/// delivered (the kept batches carry none).
#[derive(Default)]
pub struct CollectingConsumer {
    batches: Mutex<Vec<Batch>>,
    notify: Notify,
}

impl CollectingConsumer {
    /// A new, empty collector.
    pub fn new() -> Arc<CollectingConsumer> {
        Arc::new(CollectingConsumer::default())
    }

    /// Everything collected so far.
    pub fn batches(&self) -> Vec<Batch> {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Items collected so far.
    pub fn item_count(&self) -> usize {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(Batch::item_count)
            .sum()
    }

    /// Waits until at least `items` items arrived or `timeout` passed; returns the count.
    pub async fn wait_for_items(&self, items: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let n = self.item_count();
            if n >= items || Instant::now() >= deadline {
                return n;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

#[async_trait]
impl Consumer for CollectingConsumer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (payload, ctx) = batch.into_parts();
        ctx.delivered();
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Batch::new(payload));
        self.notify.notify_waiters();
        Ok(())
    }
}

/// Hands out acknowledgement tokens and records how each ended, so a test can check that
/// every handle was resolved (none dropped unresolved) and what was delivered. Its tokens are
/// strict: a handle dropped unresolved also panics where it is dropped (debug builds), which
/// fails the test when that happens in the test's own task, and is recorded here when it
/// happens in a task whose panic nobody sees.
#[derive(Clone, Default)]
pub struct AckProbe {
    state: Arc<Mutex<ProbeState>>,
    settled: Arc<Notify>,
}

#[derive(Default)]
struct ProbeState {
    issued: usize,
    outcomes: Vec<(usize, AckOutcome)>,
}

impl AckProbe {
    /// A probe with no tokens yet.
    pub fn new() -> AckProbe {
        AckProbe::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new token; its outcome is recorded under the returned index order (0, 1, ...).
    pub fn token(&self) -> AckToken {
        let index = {
            let mut s = self.lock();
            s.issued += 1;
            s.issued - 1
        };
        let state = Arc::clone(&self.state);
        let settled = Arc::clone(&self.settled);
        AckToken::strict(move |outcome| {
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .outcomes
                .push((index, outcome));
            settled.notify_waiters();
        })
    }

    /// `batch` with a new token of this probe attached.
    pub fn track(&self, mut batch: Batch) -> Batch {
        batch.ctx.acks.push(self.token());
        batch
    }

    /// The outcome of token `index`, once its last handle is gone.
    pub fn outcome(&self, index: usize) -> Option<AckOutcome> {
        self.lock()
            .outcomes
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, o)| *o)
    }

    /// Tokens handed out whose handles are not all gone yet.
    pub fn outstanding(&self) -> usize {
        let s = self.lock();
        s.issued - s.outcomes.len()
    }

    /// Tokens that ended with `outcome`.
    pub fn count(&self, outcome: AckOutcome) -> usize {
        self.lock()
            .outcomes
            .iter()
            .filter(|(_, o)| *o == outcome)
            .count()
    }

    /// Waits until every token handed out has ended or `timeout` passed; true when all did.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.settled.notified();
            if self.outstanding() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Panics if a handle of any token was dropped unresolved.
    pub fn assert_resolved(&self) {
        let unresolved = self.count(AckOutcome::Unresolved);
        assert_eq!(
            unresolved, 0,
            "{unresolved} acknowledgement token(s) had a handle dropped unresolved"
        );
    }
}

/// The sum of the samples of metric `name` in Prometheus text `text` whose labels include
/// every `key="value"` pair of `labels` (0 when there is none).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An attribute of any value type.
pub fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

/// A traces batch of `n` spans under one resource and scope, with distinct span IDs.
pub fn span_batch(n: usize) -> Batch {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![1; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("span-{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            attributes: vec![kv("http.route", "/users/{id}")],
            ..Default::default()
        })
        .collect();
    Batch::new(Payload::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", "test")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }]))
}

/// A logs batch of `n` records.
pub fn log_batch(n: usize) -> Batch {
    let log_records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("line {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    Batch::new(Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name", "test")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }]))
}

fn nop() -> SharedConsumer {
    Arc::new(NopConsumer)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn host() -> Host {
    Host::new(std::env::temp_dir())
}

/// Runs the conformance checks on a receiver factory. `run_config` is used for the
/// instances that start (point its listeners at port 0).
pub async fn check_receiver(factory: &dyn DynReceiverFactory, run_config: &Value) {
    let name = factory.type_name();
    factory
        .validate(&factory.default_config())
        .unwrap_or_else(|e| panic!("{name}: default config: {e}"));
    factory
        .validate(run_config)
        .unwrap_or_else(|e| panic!("{name}: run config: {e}"));
    let next = || PerSignal::from_fn(|s| factory.signals().contains(&s).then(nop));
    let ctx = || CreateContext::for_tests(ComponentKind::Receiver, name);
    let r = factory
        .create(ctx(), run_config, next())
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
    r.shutdown(deadline())
        .await
        .unwrap_or_else(|e| panic!("{name}: shutdown without start: {e}"));
    let r = factory
        .create(ctx(), run_config, next())
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
    r.start(&host())
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    r.shutdown(deadline())
        .await
        .unwrap_or_else(|e| panic!("{name}: shutdown: {e}"));
}

/// Runs the conformance checks on a processor factory, for every signal it supports.
pub async fn check_processor(factory: &dyn DynProcessorFactory) {
    let name = factory.type_name();
    let config = factory.default_config();
    factory
        .validate(&config)
        .unwrap_or_else(|e| panic!("{name}: default config: {e}"));
    for &signal in factory.signals() {
        let ctx = || CreateContext::for_tests(ComponentKind::Processor, name);
        let p = factory
            .create(ctx(), &config, signal, nop())
            .unwrap_or_else(|e| panic!("{name}: build: {e}"));
        p.shutdown(deadline())
            .await
            .unwrap_or_else(|e| panic!("{name}: shutdown without start: {e}"));
        let p = factory
            .create(ctx(), &config, signal, nop())
            .unwrap_or_else(|e| panic!("{name}: build: {e}"));
        p.start(&host())
            .await
            .unwrap_or_else(|e| panic!("{name}: start: {e}"));
        let probe = AckProbe::new();
        if signal == Signal::Traces {
            p.consume(probe.track(span_batch(3)))
                .await
                .unwrap_or_else(|e| panic!("{name}: consume: {e}"));
        }
        p.shutdown(deadline())
            .await
            .unwrap_or_else(|e| panic!("{name}: shutdown: {e}"));
        drop(p);
        // What was accepted reached the (nop) destination, every handle resolved.
        assert!(
            probe.wait_settled(Duration::from_secs(5)).await,
            "{name}: a batch's acknowledgement handles outlived shutdown"
        );
        probe.assert_resolved();
        assert_eq!(
            probe.count(AckOutcome::Delivered),
            usize::from(signal == Signal::Traces),
            "{name}: the accepted batch was not delivered"
        );
    }
}

/// Runs the conformance checks on an exporter factory. `run_config` is used for the
/// instances that start.
pub async fn check_exporter(factory: &dyn DynExporterFactory, run_config: &Value) {
    let name = factory.type_name();
    factory
        .validate(&factory.default_config())
        .unwrap_or_else(|e| panic!("{name}: default config: {e}"));
    factory
        .validate(run_config)
        .unwrap_or_else(|e| panic!("{name}: run config: {e}"));
    let ctx = || CreateContext::for_tests(ComponentKind::Exporter, name);
    let x = factory
        .create(ctx(), run_config)
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
    x.shutdown(deadline())
        .await
        .unwrap_or_else(|e| panic!("{name}: shutdown without start: {e}"));
    let x = factory
        .create(ctx(), run_config)
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
    x.start(&host())
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    x.shutdown(deadline())
        .await
        .unwrap_or_else(|e| panic!("{name}: shutdown: {e}"));
}

/// Runs the conformance checks on a connector factory, running it with its default config.
pub async fn check_connector(factory: &dyn DynConnectorFactory) {
    check_connector_with(factory, &factory.default_config()).await;
}

/// Runs the conformance checks on a connector factory; `run_config` is used for the
/// instances that start (a connector with an endpoint gets a free port there).
pub async fn check_connector_with(factory: &dyn DynConnectorFactory, run_config: &Value) {
    let name = factory.type_name();
    factory
        .validate(&factory.default_config())
        .unwrap_or_else(|e| panic!("{name}: default config: {e}"));
    let config = run_config.clone();
    factory
        .validate(&config)
        .unwrap_or_else(|e| panic!("{name}: run config: {e}"));
    let next = || {
        PerSignal::from_fn(|s| {
            factory
                .signal_pairs()
                .iter()
                .any(|(_, o)| *o == s)
                .then(nop)
        })
    };
    let ctx = || CreateContext::for_tests(ComponentKind::Connector, name);
    let c = factory
        .create(ctx(), &config, next())
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
    c.shutdown(deadline())
        .await
        .unwrap_or_else(|e| panic!("{name}: shutdown without start: {e}"));
    let c = factory
        .create(ctx(), &config, next())
        .unwrap_or_else(|e| panic!("{name}: build: {e}"));
    c.start(&host())
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    c.shutdown(deadline())
        .await
        .unwrap_or_else(|e| panic!("{name}: shutdown: {e}"));
}

/// A well-formed JWT (the jwt.io example).
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

/// Spans in one [`pii_resource_spans`] group.
pub const PII_SPANS: u64 = 100;

/// The redaction benchmarks' load: 100 SERVER spans, ten attributes each, three of them
/// personal data or secrets (an email, a client IP and, in turn, a URL with a `token`
/// query parameter, a `Bearer` JWT or a card number); `seed` varies the IDs and users.
pub fn pii_resource_spans(seed: u64) -> ResourceSpans {
    let spans = (0..PII_SPANS)
        .map(|i| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(i + 1);
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.wrapping_add(1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(i / 5 + 1).to_be_bytes());
            let user = id % 5000;
            let (url, extra) = match i % 3 {
                0 => (
                    format!(
                        "https://api.example.com/v1/orders/{user}?expand=items&token=t0k{id:x}"
                    ),
                    kv("order.note", &format!("order {id} shipped")),
                ),
                1 => (
                    format!("https://api.example.com/v1/orders/{user}?expand=items"),
                    kv(
                        "http.request.header.authorization",
                        &format!("Bearer {JWT}"),
                    ),
                ),
                _ => (
                    format!("https://api.example.com/v1/orders/{user}?expand=items"),
                    kv("payment.card", "4111 1111 1111 1111"),
                ),
            };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: if i % 5 == 0 {
                    vec![]
                } else {
                    (id - 1).to_be_bytes().to_vec()
                },
                name: "GET /v1/orders/{id}".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: 1_705_314_600_000_000_000 + i * 1_000_000,
                end_time_unix_nano: 1_705_314_600_045_000_000 + i * 1_000_000,
                attributes: vec![
                    kv("http.request.method", "GET"),
                    kv("http.route", "/v1/orders/{id}"),
                    attribute("http.response.status_code", any_value::Value::IntValue(200)),
                    kv("server.address", "api.example.com"),
                    kv(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
                    ),
                    kv("network.protocol.version", "1.1"),
                    kv(
                        "client.address",
                        &format!("10.42.{}.{}", user / 250, user % 250),
                    ),
                    kv("user.email", &format!("user{user}@example.com")),
                    kv("url.full", &url),
                    extra,
                ],
                status: Some(Status {
                    code: 0,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "checkout"),
                kv("service.version", "2.14.1"),
                kv("deployment.environment", "production"),
                kv("host.name", "ip-10-42-7-19"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "opentelemetry.instrumentation.flask".into(),
                version: "0.48b0".into(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}
