//! # `redaction` processor
//!
//! Keeps personal data and secrets inside the pipeline. It sits among a pipeline's
//! processors (usually first, so nothing downstream ever holds the raw values), takes each
//! batch from the receivers or earlier processors, rewrites it in place and hands it to the
//! next processor or the exporters' fan-out. Works on traces, metrics and logs.
//!
//! Keys first, as in the OpenTelemetry Collector's redaction processor: `ignored_keys` are
//! never touched; unless `allow_all_keys`, an attribute whose key is not in `allowed_keys`
//! is removed; a key matching `blocked_keys` has its whole value masked, hashed or removed.
//! Then values: `blocked_values` regexes and the built-in `detectors` (email, credit card,
//! IP addresses, JWTs, bearer tokens, AWS keys, URL credentials and query secrets) mask or
//! hash the matched parts, or remove the attribute. A combined prefilter picks the rules
//! that can match a value before any rule runs (see `redactor.rs`). Changed records carry a
//! summary (`redaction.masked.count`, ...) per `summary`, and every redaction is counted
//! per rule in `sightline_redaction_redactions_total`.
//!
//! Files: `config.rs` (keys), `detectors.rs` (built-in patterns and checks), `redactor.rs`
//! (compiled rules, prefilter, values and attribute lists), `processor.rs` (the walk over
//! each signal), `tests.rs`.

mod config;
mod detectors;
mod processor;
mod redactor;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::consumer::SharedConsumer;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ProcessorFactory, Signal};

pub use config::{
    Action, DEFAULT_URL_QUERY_PARAMS, Detector, DetectorRule, HashKey, PatternRule,
    RedactionConfig, Summary,
};
pub use processor::RedactionProcessor;
pub use redactor::{MASK, MASKED_COUNT, MASKED_KEYS, REMOVED_COUNT, REMOVED_KEYS};

use redactor::Redactor;

/// The self-metric counting redactions per rule.
pub const REDACTIONS_METRIC: &str = "sightline_redaction_redactions_total";

/// Builds `redaction` processors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ProcessorFactory for Factory {
    type Config = RedactionConfig;
    const TYPE_NAME: &'static str = "redaction";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: RedactionConfig,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let redactor = Redactor::new(&config)?;
        let family = ctx
            .telemetry
            .counter_family(
                REDACTIONS_METRIC,
                "Values masked or hashed and attributes removed by a redaction processor, by rule and action.",
                &["signal", "rule", "action"],
            )
            .map_err(|e| BuildError::Other(e.to_string()))?;
        let id = ctx.id.as_str();
        let counters = redactor
            .rules()
            .iter()
            .map(|r| family.with_label_values(&[id, signal.as_str(), &r.name, r.action.as_str()]))
            .collect();
        Ok(Arc::new(RedactionProcessor::new(
            Arc::new(redactor),
            next,
            counters,
        )))
    }
}
