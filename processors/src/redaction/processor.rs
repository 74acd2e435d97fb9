//! The walk over each signal's records: which attribute lists, names and bodies the rules
//! see, and which record each change is summarised on.
//!
//! - traces: resource and scope attributes (summarised on the resource / scope), span
//!   attributes, event and link attributes and, opt-in, the span name (on the span);
//! - logs: resource and scope attributes, log attributes and the body (on the log record);
//! - metrics: resource and scope attributes, data point and exemplar attributes (on the data
//!   point).

use std::sync::Arc;

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::proto::tonic::common::v1::InstrumentationScope;
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::logs::v1::ResourceLogs;
use pipeline_core::proto::tonic::metrics::v1::{Exemplar, ResourceMetrics, metric::Data};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::ResourceSpans;
use pipeline_core::{Batch, Capabilities, Component, ConsumeError, Consumer, Payload};
use prometheus::IntCounter;

use super::redactor::{Pass, Path, Redactor};

/// The `redaction` processor of one pipeline.
pub struct RedactionProcessor {
    redactor: Arc<Redactor>,
    next: SharedConsumer,
    /// `sightline_redaction_redactions_total` per rule, for this pipeline's signal.
    counters: Vec<IntCounter>,
}

impl RedactionProcessor {
    pub(crate) fn new(
        redactor: Arc<Redactor>,
        next: SharedConsumer,
        counters: Vec<IntCounter>,
    ) -> Self {
        RedactionProcessor {
            redactor,
            next,
            counters,
        }
    }

    /// Redacts a payload in place; returns the redactions per rule.
    pub(crate) fn redact(&self, payload: &mut Payload) -> Vec<u64> {
        let mut pass = self.redactor.pass();
        match payload {
            Payload::Traces(rs) => traces(&mut pass, rs),
            Payload::Logs(rl) => logs(&mut pass, rl),
            Payload::Metrics(rm) => metrics(&mut pass, rm),
            _ => {}
        }
        std::mem::take(&mut pass.counts)
    }
}

fn resource(pass: &mut Pass<'_>, resource: &mut Option<Resource>) {
    if let Some(r) = resource {
        pass.attributes(&mut r.attributes, Path::Root(""));
        pass.finish_record(&mut r.attributes);
    }
}

fn scope(pass: &mut Pass<'_>, scope: &mut Option<InstrumentationScope>) {
    if let Some(s) = scope {
        pass.attributes(&mut s.attributes, Path::Root(""));
        pass.finish_record(&mut s.attributes);
    }
}

fn traces(pass: &mut Pass<'_>, rs: &mut [ResourceSpans]) {
    for r in rs {
        resource(pass, &mut r.resource);
        for ss in &mut r.scope_spans {
            scope(pass, &mut ss.scope);
            for span in &mut ss.spans {
                pass.attributes(&mut span.attributes, Path::Root(""));
                let events = Path::Root("events");
                for (i, e) in span.events.iter_mut().enumerate() {
                    pass.attributes(&mut e.attributes, Path::Index(&events, i));
                }
                let links = Path::Root("links");
                for (i, l) in span.links.iter_mut().enumerate() {
                    pass.attributes(&mut l.attributes, Path::Index(&links, i));
                }
                pass.span_name(&mut span.name);
                pass.finish_record(&mut span.attributes);
            }
        }
    }
}

fn logs(pass: &mut Pass<'_>, rl: &mut [ResourceLogs]) {
    for r in rl {
        resource(pass, &mut r.resource);
        for sl in &mut r.scope_logs {
            scope(pass, &mut sl.scope);
            for record in &mut sl.log_records {
                pass.attributes(&mut record.attributes, Path::Root(""));
                pass.body(&mut record.body);
                pass.finish_record(&mut record.attributes);
            }
        }
    }
}

/// A data point's attributes and its exemplars' attributes, summarised on the point.
fn point(pass: &mut Pass<'_>, attributes: &mut Vec<KeyValue>, exemplars: &mut [Exemplar]) {
    pass.attributes(attributes, Path::Root(""));
    let at = Path::Root("exemplars");
    for (i, e) in exemplars.iter_mut().enumerate() {
        pass.attributes(&mut e.filtered_attributes, Path::Index(&at, i));
    }
    pass.finish_record(attributes);
}

fn metrics(pass: &mut Pass<'_>, rm: &mut [ResourceMetrics]) {
    for r in rm {
        resource(pass, &mut r.resource);
        for sm in &mut r.scope_metrics {
            scope(pass, &mut sm.scope);
            for m in &mut sm.metrics {
                match &mut m.data {
                    Some(Data::Gauge(g)) => {
                        for p in &mut g.data_points {
                            point(pass, &mut p.attributes, &mut p.exemplars);
                        }
                    }
                    Some(Data::Sum(s)) => {
                        for p in &mut s.data_points {
                            point(pass, &mut p.attributes, &mut p.exemplars);
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &mut h.data_points {
                            point(pass, &mut p.attributes, &mut p.exemplars);
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &mut h.data_points {
                            point(pass, &mut p.attributes, &mut p.exemplars);
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in &mut s.data_points {
                            point(pass, &mut p.attributes, &mut []);
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

#[async_trait]
impl Consumer for RedactionProcessor {
    fn capabilities(&self) -> Capabilities {
        Capabilities::MUTATES_DATA
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let counts = self.redact(batch.payload_mut());
        for (counter, n) in self.counters.iter().zip(counts) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        self.next.consume(batch).await
    }
}

/// Stateless: nothing to start or stop.
#[async_trait]
impl Component for RedactionProcessor {}
