//! Property test of the acknowledgement contract: for random sequences of consume, downstream
//! failure and shutdown through `batch`, `request_id` and the exporter helper, every item sent
//! in is delivered, counted as dropped, or refused to its sender, exactly once; and every
//! acknowledgement token is resolved (none dropped unresolved), delivered exactly when all of
//! its items were.

#![allow(missing_docs)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use exporters::helper::{
    Delivered, ExporterSettings, QueueConfig, QueuedExporter, RetryConfig, SendError, Sender,
};
use pipeline_core::config::HumanDuration;
use pipeline_core::factory::DynProcessorFactory;
use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::telemetry::Telemetry;
use pipeline_core::testing::{AckProbe, metric_sum, span_batch};
use pipeline_core::{
    AckOutcome, Batch, ComponentId, ComponentKind, ConsumeError, Consumer, CreateContext, Host,
    Payload, Signal,
};
use proptest::prelude::*;
use tokio::time::Instant;

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// Sends a batch of this many items (request_id: `true` for a record that waits for its
    /// request ID, `false` for one that passes).
    Consume(Vec<bool>),
    /// From now on the destination fails (or works again).
    Fail(bool),
    /// Shuts the component down here; later consumes are refused.
    Shutdown,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => prop::collection::vec(any::<bool>(), 1..6).prop_map(Op::Consume),
        2 => any::<bool>().prop_map(Op::Fail),
        1 => Just(Op::Shutdown),
    ];
    prop::collection::vec(op, 1..24)
}

/// The destination: records the IDs of what it accepted, refuses while failing.
#[derive(Default)]
struct Destination {
    failing: AtomicBool,
    delivered: Mutex<Vec<String>>,
}

impl Destination {
    /// Takes `batch`'s items, or says it cannot.
    fn take(&self, batch: &Batch) -> bool {
        if self.failing.load(Ordering::SeqCst) {
            return false;
        }
        self.delivered.lock().unwrap().extend(ids(batch));
        true
    }
}

#[async_trait]
impl Consumer for Destination {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.take(&batch) {
            batch.delivered();
            Ok(())
        } else {
            batch.dropped();
            Err(ConsumeError::Full)
        }
    }
}

/// The same destination behind the exporter helper, failing permanently or retryably.
struct DestinationSender(Arc<Destination>);

#[async_trait]
impl Sender for DestinationSender {
    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        if self.0.take(batch) {
            Ok(Delivered::all())
        } else if batch.item_count().is_multiple_of(2) {
            Err(SendError::permanent("HTTP 400"))
        } else {
            Err(SendError::retryable("HTTP 503"))
        }
    }
}

/// The item IDs in a batch: span names or log bodies.
fn ids(batch: &Batch) -> Vec<String> {
    match &*batch.payload_view() {
        Payload::Traces(rs) => rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect(),
        Payload::Logs(rl) => rl
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .filter_map(|r| match r.body.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

/// A batch of the component's signal with items numbered from `first`.
fn batch_of(signal: Signal, waits: &[bool], first: usize) -> Batch {
    let id = |i: usize| format!("item-{}", first + i);
    match signal {
        Signal::Logs => {
            let log_records = waits
                .iter()
                .enumerate()
                .map(|(i, &waits)| LogRecord {
                    body: string(&id(i)),
                    attributes: if waits {
                        vec![KeyValue {
                            key: "request_id".into(),
                            value: string(&format!("req-{}", (first + i) % 3)),
                            ..Default::default()
                        }]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                })
                .collect();
            Batch::new(Payload::Logs(vec![ResourceLogs {
                resource: Some(Resource::default()),
                scope_logs: vec![ScopeLogs {
                    log_records,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }]))
        }
        _ => {
            let mut batch = span_batch(waits.len());
            if let Payload::Traces(rs) = batch.payload_mut() {
                for (i, span) in rs[0].scope_spans[0].spans.iter_mut().enumerate() {
                    span.name = id(i);
                }
            }
            batch
        }
    }
}

/// A component under test, with the destination it feeds.
struct Subject {
    component: Arc<dyn pipeline_core::factory::ConsumerComponent>,
    signal: Signal,
    telemetry: Telemetry,
}

fn context(id: &str) -> (CreateContext, Telemetry) {
    let telemetry = Telemetry::new();
    let mut ctx = CreateContext::for_tests(ComponentKind::Processor, id);
    ctx.telemetry = telemetry.component(ComponentKind::Processor, &ComponentId::parse(id).unwrap());
    (ctx, telemetry)
}

fn processor(
    factory: &dyn DynProcessorFactory,
    config: serde_json::Value,
    signal: Signal,
    dest: &Arc<Destination>,
) -> Subject {
    let (ctx, telemetry) = context(factory.type_name());
    let component = factory.create(ctx, &config, signal, dest.clone()).unwrap();
    Subject {
        component,
        signal,
        telemetry,
    }
}

fn exporter(queue: bool, dest: &Arc<Destination>) -> Subject {
    let (ctx, telemetry) = context("otlp");
    let settings = ExporterSettings {
        timeout: HumanDuration::from_secs(1),
        retry_on_failure: RetryConfig {
            enabled: true,
            initial_interval: HumanDuration::from_millis(1),
            randomization_factor: 0.0,
            multiplier: 1.0,
            max_interval: HumanDuration::from_millis(1),
            max_elapsed_time: HumanDuration::from_millis(5),
        },
        sending_queue: QueueConfig {
            enabled: queue,
            num_consumers: 2,
            queue_size: 8,
            sizer: Default::default(),
            block_on_overflow: false,
            ..QueueConfig::default()
        },
    };
    let x = QueuedExporter::new(&ctx, settings, DestinationSender(dest.clone()));
    Subject {
        component: Arc::new(x),
        signal: Signal::Traces,
        telemetry,
    }
}

/// Runs `ops` through `subject` and checks the contract.
async fn run(subject: Subject, dest: Arc<Destination>, ops: Vec<Op>) {
    let host = Host::new(std::env::temp_dir());
    subject.component.start(&host).await.unwrap();
    let probe = AckProbe::new();
    let mut sent: Vec<Vec<String>> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut refused_tokens = HashSet::new();
    let mut next_item = 0;
    let mut shut = false;
    // Whether the destination ever failed: then a batch split into parts that each carry all
    // of its tokens (the batch processor) may see a token fail for a part that held none of
    // that token's items. That errs on the side of a duplicate, never of a loss, so only the
    // safe direction is checked; without failures every token must end delivered.
    let mut ever_failed = false;
    for op in ops {
        match op {
            Op::Consume(waits) => {
                let batch = probe.track(batch_of(subject.signal, &waits, next_item));
                next_item += waits.len();
                let items = ids(&batch);
                if subject.component.consume(batch).await.is_err() {
                    refused.extend(items.iter().cloned());
                    refused_tokens.insert(sent.len());
                }
                sent.push(items);
            }
            Op::Fail(on) => {
                ever_failed |= on;
                dest.failing.store(on, Ordering::SeqCst)
            }
            Op::Shutdown if !shut => {
                shut = true;
                subject
                    .component
                    .shutdown(Instant::now() + Duration::from_secs(2))
                    .await
                    .unwrap();
            }
            Op::Shutdown => {}
        }
    }
    if !shut {
        subject
            .component
            .shutdown(Instant::now() + Duration::from_secs(2))
            .await
            .unwrap();
    }
    drop(subject.component);
    assert!(
        probe.wait_settled(Duration::from_secs(5)).await,
        "a token outlived shutdown"
    );
    probe.assert_resolved();

    let delivered = dest.delivered.lock().unwrap().clone();
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "an item was delivered twice");
    let refused_set: HashSet<&String> = refused.iter().collect();
    assert!(
        unique.is_disjoint(&refused_set),
        "an item was both delivered and refused to its sender"
    );
    let dropped = metric_sum(
        &subject.telemetry.render(),
        "sightline_component_items_dropped_total",
        &[],
    ) as usize;
    let total: usize = sent.iter().map(Vec::len).sum();
    assert_eq!(
        delivered.len() + refused.len() + dropped,
        total,
        "delivered {} + refused {} + dropped {dropped} != sent {total}",
        delivered.len(),
        refused.len()
    );
    for (i, items) in sent.iter().enumerate() {
        let all_delivered = items.iter().all(|id| unique.contains(id));
        let outcome = probe.outcome(i);
        if outcome == Some(AckOutcome::Delivered) {
            assert!(
                all_delivered,
                "batch {i}: token delivered, not all its items"
            );
        }
        if !ever_failed {
            assert_eq!(
                outcome == Some(AckOutcome::Delivered),
                all_delivered,
                "batch {i}: token {outcome:?}, all items delivered: {all_delivered}"
            );
        }
        if refused_tokens.contains(&i) {
            assert_ne!(outcome, Some(AckOutcome::Delivered));
        }
    }
}

fn block_on(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn batch_processor_accounts_for_every_item(ops in ops()) {
        block_on(async {
            let dest = Arc::new(Destination::default());
            let config = serde_json::json!({
                "send_batch_size": 3, "send_batch_max_size": 4, "timeout": "2ms"
            });
            let subject = processor(&processors::batch::Factory, config, Signal::Traces, &dest);
            run(subject, dest, ops).await;
        });
    }

    #[test]
    fn request_id_accounts_for_every_item(ops in ops()) {
        block_on(async {
            let dest = Arc::new(Destination::default());
            let config = serde_json::json!({"wait": "20ms", "max_pending_items": 4});
            let subject = processor(&processors::request_id::Factory, config, Signal::Logs, &dest);
            run(subject, dest, ops).await;
        });
    }

    #[test]
    fn exporter_helper_accounts_for_every_item(ops in ops(), queue in any::<bool>()) {
        block_on(async {
            let dest = Arc::new(Destination::default());
            let subject = exporter(queue, &dest);
            run(subject, dest, ops).await;
        });
    }
}
