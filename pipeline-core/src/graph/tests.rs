use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::component::ComponentError;
use crate::config::{ConfigSource, load};
use crate::consumer::{ConsumeError, Consumer};
use crate::factory::{
    BuildError, ComponentConfig, ConnectorFactory, ConsumerComponent, ExporterFactory,
    ReceiverFactory,
};

/// The test factories take any config.
#[derive(serde::Deserialize)]
struct AnyConfig(#[allow(dead_code)] serde::de::IgnoredAny);
impl ComponentConfig for AnyConfig {}
use crate::model::Batch;
use crate::model::{AckOutcome, AckToken};
use crate::testing::{AckProbe, CollectingConsumer, span_batch};

type Log = Arc<Mutex<Vec<String>>>;

/// A receiver that hands its consumers to the test.
struct TestReceiverFactory {
    slots: Arc<Mutex<BTreeMap<String, SignalConsumers>>>,
    log: Log,
}

struct Logged {
    name: String,
    log: Log,
}

#[async_trait]
impl Component for Logged {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        Ok(())
    }
    async fn shutdown(&self, _deadline: Instant) -> Result<(), ComponentError> {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
        Ok(())
    }
}

impl ReceiverFactory for TestReceiverFactory {
    type Config = AnyConfig;
    const TYPE_NAME: &'static str = "src";
    const SIGNALS: &'static [Signal] = &[Signal::Traces, Signal::Logs];
    fn build(
        &self,
        ctx: CreateContext,
        _config: AnyConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError> {
        self.slots.lock().unwrap().insert(ctx.id.to_string(), next);
        Ok(Arc::new(Logged {
            name: format!("receiver {}", ctx.id),
            log: self.log.clone(),
        }))
    }
}

struct Sink {
    inner: Arc<CollectingConsumer>,
    logged: Logged,
    /// `sink/leak` has a bug: it accepts batches and forgets them without resolving them.
    leaks: bool,
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.leaks {
            drop(batch);
            return Ok(());
        }
        self.inner.consume(batch).await
    }
}

#[async_trait]
impl Component for Sink {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        self.logged.start(host).await
    }
    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        self.logged.shutdown(deadline).await
    }
}

struct SinkFactory {
    sinks: Arc<Mutex<BTreeMap<String, Arc<CollectingConsumer>>>>,
    log: Log,
}

impl ExporterFactory for SinkFactory {
    type Config = AnyConfig;
    const TYPE_NAME: &'static str = "sink";
    const SIGNALS: &'static [Signal] = &[Signal::Traces];
    fn build(
        &self,
        ctx: CreateContext,
        _config: AnyConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let inner = CollectingConsumer::new();
        self.sinks
            .lock()
            .unwrap()
            .insert(ctx.id.to_string(), inner.clone());
        Ok(Arc::new(Sink {
            leaks: ctx.id.as_str() == "sink/leak",
            inner,
            logged: Logged {
                name: format!("exporter {}", ctx.id),
                log: self.log.clone(),
            },
        }))
    }
}

struct PassFactory {
    log: Log,
}

struct Pass {
    next: SignalConsumers,
    logged: Logged,
}

#[async_trait]
impl Consumer for Pass {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        match self.next.get(batch.signal()) {
            Some(n) => n.consume(batch).await,
            None => {
                batch.dropped();
                Err(ConsumeError::permanent("no route"))
            }
        }
    }
}

#[async_trait]
impl Component for Pass {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        self.logged.start(host).await
    }
    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        self.logged.shutdown(deadline).await
    }
}

impl ConnectorFactory for PassFactory {
    type Config = AnyConfig;
    const TYPE_NAME: &'static str = "pass";
    const SIGNAL_PAIRS: &'static [(Signal, Signal)] = &[(Signal::Traces, Signal::Traces)];
    fn build(
        &self,
        ctx: CreateContext,
        _config: AnyConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(Pass {
            next,
            logged: Logged {
                name: format!("connector {}", ctx.id),
                log: self.log.clone(),
            },
        }))
    }
}

struct Fixture {
    registry: Registry,
    receivers: Arc<Mutex<BTreeMap<String, SignalConsumers>>>,
    sinks: Arc<Mutex<BTreeMap<String, Arc<CollectingConsumer>>>>,
    log: Log,
}

fn fixture() -> Fixture {
    let log: Log = Arc::default();
    let receivers: Arc<Mutex<BTreeMap<String, SignalConsumers>>> = Arc::default();
    let sinks: Arc<Mutex<BTreeMap<String, Arc<CollectingConsumer>>>> = Arc::default();
    let mut registry = Registry::new();
    registry
        .add_receiver(TestReceiverFactory {
            slots: receivers.clone(),
            log: log.clone(),
        })
        .unwrap();
    registry
        .add_exporter(SinkFactory {
            sinks: sinks.clone(),
            log: log.clone(),
        })
        .unwrap();
    registry
        .add_connector(PassFactory { log: log.clone() })
        .unwrap();
    Fixture {
        registry,
        receivers,
        sinks,
        log,
    }
}

fn config(yaml: &str) -> Config {
    load(
        &[ConfigSource {
            name: "test.yaml".into(),
            text: yaml.into(),
        }],
        &|_| None,
    )
    .unwrap()
}

#[tokio::test]
async fn fanout_fan_in_and_connectors() {
    let f = fixture();
    let c = config(
        "receivers: { src: {}, src/b: {} }\nexporters: { sink/a: {}, sink/b: {}, sink/c: {} }\nconnectors: { pass: {} }\n\
         service: { pipelines: {\n\
           traces: { receivers: [src, src/b], exporters: [sink/a, sink/b, pass] },\n\
           traces/2: { receivers: [src], exporters: [sink/a] },\n\
           traces/out: { receivers: [pass], exporters: [sink/c] } } }",
    );
    let v = validate(&c, &f.registry);
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    let telemetry = Telemetry::new();
    let graph = Graph::build(&c, &f.registry, &telemetry, &HealthRegistry::default()).unwrap();
    graph.start(&Host::new(std::env::temp_dir())).await.unwrap();
    assert!(graph.health().started());

    let src = f.receivers.lock().unwrap()["src"]
        .get(Signal::Traces)
        .clone()
        .unwrap();
    assert!(
        f.receivers.lock().unwrap()["src"]
            .get(Signal::Logs)
            .is_none(),
        "no logs pipeline names src"
    );
    let probe = AckProbe::new();
    src.consume(probe.track(span_batch(3))).await.unwrap();
    // Four copies (a twice, b, c through the connector), each resolved by its holder.
    assert_eq!(probe.outcome(0), Some(AckOutcome::Delivered));
    let sinks = f.sinks.lock().unwrap().clone();
    assert_eq!(sinks.len(), 3, "one instance per exporter ID");
    // src feeds traces (-> a, b, pass -> c) and traces/2 (-> a): a gets it twice.
    assert_eq!(sinks["sink/a"].item_count(), 6);
    assert_eq!(sinks["sink/b"].item_count(), 3);
    assert_eq!(sinks["sink/c"].item_count(), 3);
    let src_b = f.receivers.lock().unwrap()["src/b"]
        .get(Signal::Traces)
        .clone()
        .unwrap();
    src_b.consume(span_batch(2)).await.unwrap();
    assert_eq!(sinks["sink/a"].item_count(), 8);
    assert_eq!(sinks["sink/c"].item_count(), 5);

    let text = telemetry.render();
    assert!(text.contains(r#"sightline_component_items_received_total{component_id="sink/a",component_kind="exporter",signal="traces"} 8"#), "{text}");
    assert!(text.contains(r#"sightline_component_items_sent_total{component_id="src",component_kind="receiver",signal="traces"} 3"#), "{text}");

    graph
        .shutdown(Instant::now() + Duration::from_secs(1))
        .await;
    let log = f.log.lock().unwrap().clone();
    let pos = |s: &str| {
        log.iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} missing from {log:?}"))
    };
    // Start: exporters before connectors before receivers. Stop: the reverse.
    assert!(pos("start exporter sink/c") < pos("start connector pass"));
    assert!(pos("start connector pass") < pos("start receiver src"));
    assert!(pos("stop receiver src") < pos("stop connector pass"));
    assert!(pos("stop receiver src/b") < pos("stop connector pass"));
    assert!(pos("stop connector pass") < pos("stop exporter sink/c"));
}

#[tokio::test]
async fn a_handle_dropped_unresolved_fails_the_source_and_is_counted_under_its_holder() {
    let f = fixture();
    let c = config(
        "receivers: { src: {} }\nexporters: { sink: {}, sink/leak: {} }\n\
         service: { pipelines: { traces: { receivers: [src], exporters: [sink, sink/leak] } } }",
    );
    let telemetry = Telemetry::new();
    let graph = Graph::build(&c, &f.registry, &telemetry, &HealthRegistry::default()).unwrap();
    graph.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let src = f.receivers.lock().unwrap()["src"]
        .get(Signal::Traces)
        .clone()
        .unwrap();
    let outcome = Arc::new(Mutex::new(None));
    let seen = outcome.clone();
    let mut batch = span_batch(2);
    batch.ctx.acks.push(AckToken::with_outcome(move |o| {
        *seen.lock().unwrap() = Some(o)
    }));
    src.consume(batch).await.unwrap();
    // The sink delivered its copy, the leak forgot its own: not delivered, so the source
    // offers the data again (a duplicate at the sink rather than a loss at the leak).
    assert_eq!(*outcome.lock().unwrap(), Some(AckOutcome::Unresolved));
    let text = telemetry.render();
    assert!(
        text.contains(r#"sightline_ack_unresolved_total{component_id="sink/leak"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sightline_ack_unresolved_total{component_id="sink"} 0"#),
        "{text}"
    );
    graph
        .shutdown(Instant::now() + Duration::from_secs(1))
        .await;
}

#[test]
fn validation_catches_graph_errors() {
    let f = fixture();
    let c = config(
        "receivers: { src: {} }\nexporters: { sink: {} }\nservice: { pipelines: { metrics: { receivers: [src], exporters: [sink] } } }",
    );
    let v = validate(&c, &f.registry);
    let text = v
        .errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("receiver \"src\" does not support the metrics signal"),
        "{text}"
    );
    assert!(
        text.contains("exporter \"sink\" does not support the metrics signal"),
        "{text}"
    );

    let c = config(
        "receivers: { src: {} }\nexporters: { sink: {}, sink/x: {} }\nservice: { pipelines: { traces: { receivers: [src, src], exporters: [sink] } } }",
    );
    let v = validate(&c, &f.registry);
    assert!(
        v.errors.iter().any(|e| e.message.contains("listed twice")),
        "{:?}",
        v.errors
    );
    assert_eq!(
        v.warnings,
        vec!["exporters::sink/x is defined but not used in any pipeline".to_string()]
    );
}

#[test]
fn pipeline_ids() {
    assert_eq!(
        PipelineId::parse("traces/x").unwrap().signal,
        Signal::Traces
    );
    assert!(
        PipelineId::parse("trace")
            .unwrap_err()
            .contains("did you mean \"traces\"")
    );
    assert!(PipelineId::parse("logs/").is_err());
}

#[test]
fn clashing_addresses() {
    assert!(addresses_clash("127.0.0.1:4317", "localhost:4317"));
    assert!(addresses_clash("0.0.0.0:4317", "127.0.0.1:4317"));
    assert!(!addresses_clash("127.0.0.1:4317", "127.0.0.1:4318"));
    assert!(!addresses_clash("127.0.0.1:0", "127.0.0.1:0"));
}
