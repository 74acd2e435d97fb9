//! What one span or log record teaches the table and what it gets from it.
//!
//! - A span with a request ID and valid IDs maps the request ID to its trace and span
//!   (ranked: SERVER span, then a root span, then any other span).
//! - A log record with a request ID and valid trace context maps them too (lowest rank).
//! - A log record with a request ID and no trace context gets the trace and span IDs in its
//!   own `trace_id` / `span_id` fields (and the trace flags).
//! - A log record with trace context and no request ID, and a SERVER span without one, get
//!   the request ID as an attribute (named as the first of `request_id_attributes`).

use std::borrow::Cow;

use pipeline_core::attributes::{self, find, find_in_map, to_text_or_first};
use pipeline_core::model::{is_valid_span_id, is_valid_trace_id};
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use pipeline_core::proto::tonic::trace::v1::{Span, span::SpanKind};
use tokio::time::Instant;

use super::table::{Learned, Mapping, Rank, Table};

/// What became of one log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogOutcome {
    /// Nothing to do: no request ID and no trace context, both already, or trace context
    /// whose request ID is unknown.
    Untouched,
    /// It got trace context or a request ID.
    Matched,
    /// It has a request ID, no trace context, and the request ID is unknown.
    Unmatched,
}

/// Reads and writes request IDs under the configured attribute names.
#[derive(Debug, Clone)]
pub(crate) struct Correlator {
    names: Vec<String>,
}

impl Correlator {
    pub(crate) fn new(names: Vec<String>) -> Correlator {
        Correlator { names }
    }

    /// The request ID of an attribute list: the first configured name present with a usable
    /// value (a string, a number, or a string array's first element), non-empty.
    fn in_attributes<'a>(&self, attributes: &'a [KeyValue]) -> Option<Cow<'a, str>> {
        self.names.iter().find_map(|name| {
            find(attributes, name)
                .and_then(to_text_or_first)
                .filter(|v| !v.is_empty())
        })
    }

    /// The request ID of a log record: its attributes, else its body when that is a map.
    fn of_record<'a>(&self, record: &'a LogRecord) -> Option<Cow<'a, str>> {
        self.in_attributes(&record.attributes).or_else(|| {
            let body = attributes::inner(record.body.as_ref())?;
            self.names.iter().find_map(|name| {
                find_in_map(body, name)
                    .and_then(to_text_or_first)
                    .filter(|v| !v.is_empty())
            })
        })
    }

    /// The attribute that gives a record or span its request ID.
    fn attribute(&self, rid: String) -> KeyValue {
        let name = self
            .names
            .first()
            .map(String::as_str)
            .unwrap_or("request_id");
        if name.starts_with("http.request.header.") {
            attributes::string_array(name, rid)
        } else {
            attributes::string(name, rid)
        }
    }

    /// Learns from a span; returns whether the table changed.
    pub(crate) fn learn_span(&self, table: &mut Table, span: &Span, now: Instant) -> bool {
        let Some(mapping) = mapping_of(&span.trace_id, &span.span_id, span.flags) else {
            return false;
        };
        let Some(rid) = self.in_attributes(&span.attributes) else {
            return false;
        };
        let rank = if span.kind == SpanKind::Server as i32 {
            Rank::Server
        } else if span.parent_span_id.iter().all(|b| *b == 0) {
            Rank::Root
        } else {
            Rank::Span
        };
        table.learn(&rid, mapping, rank, now) != Learned::Same
    }

    /// Gives a SERVER span without a request ID the one its trace is known by; returns
    /// whether it did.
    pub(crate) fn enrich_span(&self, table: &mut Table, span: &mut Span, now: Instant) -> bool {
        if span.kind != SpanKind::Server as i32 {
            return false;
        }
        let Ok(trace_id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) else {
            return false;
        };
        if !is_valid_trace_id(&trace_id) || self.in_attributes(&span.attributes).is_some() {
            return false;
        }
        match table.lookup_trace(&trace_id, now) {
            Some(rid) => {
                span.attributes.push(self.attribute(rid));
                true
            }
            None => false,
        }
    }

    /// Learns from a log record carrying both a request ID and trace context; returns
    /// whether the table changed.
    pub(crate) fn learn_log(&self, table: &mut Table, record: &LogRecord, now: Instant) -> bool {
        let Some(mapping) = mapping_of(&record.trace_id, &record.span_id, record.flags) else {
            return false;
        };
        match self.of_record(record) {
            Some(rid) => table.learn(&rid, mapping, Rank::Log, now) != Learned::Same,
            None => false,
        }
    }

    /// Whether a record would be held: a request ID, no trace context, and the request ID
    /// not known right now.
    pub(crate) fn must_wait(&self, table: &Table, record: &LogRecord, now: Instant) -> bool {
        if is_valid_trace_id(&record.trace_id) {
            return false;
        }
        match self.of_record(record) {
            Some(rid) => !table.contains_rid(&rid, now),
            None => false,
        }
    }

    /// Gives a log record what the table knows about it.
    pub(crate) fn enrich_log(
        &self,
        table: &mut Table,
        record: &mut LogRecord,
        now: Instant,
    ) -> LogOutcome {
        if is_valid_trace_id(&record.trace_id) {
            if self.of_record(record).is_some() {
                return LogOutcome::Untouched;
            }
            let Ok(trace_id) = <[u8; 16]>::try_from(record.trace_id.as_slice()) else {
                return LogOutcome::Untouched;
            };
            return match table.lookup_trace(&trace_id, now) {
                Some(rid) => {
                    record.attributes.push(self.attribute(rid));
                    LogOutcome::Matched
                }
                None => LogOutcome::Untouched,
            };
        }
        let found = match self.of_record(record) {
            Some(rid) => table.lookup_rid(&rid, now),
            None => return LogOutcome::Untouched,
        };
        match found {
            Some(m) => {
                set_context(record, &m);
                LogOutcome::Matched
            }
            None => LogOutcome::Unmatched,
        }
    }

    /// Learns from and enriches the records of one resource, in order, up to the first that
    /// stays unmatched when `stop_at_unmatched` (it and the records after it are left as
    /// they are, for the caller to hold). The request-ID lookups of the whole group are done
    /// together (see [`Table::lookup_many`]).
    pub(crate) fn enrich_group(
        &self,
        table: &mut Table,
        rl: &mut ResourceLogs,
        now: Instant,
        stop_at_unmatched: bool,
    ) -> GroupOutcome {
        let mut out = GroupOutcome::default();
        for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            out.learned |= self.learn_log(table, record, now);
        }
        let found = {
            let mut rids = Vec::new();
            for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                if !is_valid_trace_id(&record.trace_id)
                    && let Some(rid) = self.of_record(record)
                {
                    rids.push(rid);
                }
            }
            let keys: Vec<&str> = rids.iter().map(|r| r.as_ref()).collect();
            table.lookup_many(&keys, now)
        };
        let mut found = found.into_iter();
        for (si, sl) in rl.scope_logs.iter_mut().enumerate() {
            for (ri, record) in sl.log_records.iter_mut().enumerate() {
                let outcome = if is_valid_trace_id(&record.trace_id) {
                    self.enrich_log(table, record, now)
                } else if self.of_record(record).is_none() {
                    LogOutcome::Untouched
                } else {
                    match found.next().flatten() {
                        Some(m) => {
                            set_context(record, &m);
                            LogOutcome::Matched
                        }
                        None => LogOutcome::Unmatched,
                    }
                };
                match outcome {
                    LogOutcome::Matched => out.matched += 1,
                    LogOutcome::Unmatched if stop_at_unmatched => {
                        out.first_unmatched = Some((si, ri));
                        return out;
                    }
                    LogOutcome::Unmatched => out.unmatched += 1,
                    LogOutcome::Untouched => {}
                }
            }
        }
        out
    }
}

/// What [`Correlator::enrich_group`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupOutcome {
    /// Records given trace context or a request ID.
    pub(crate) matched: u64,
    /// Records left without a match (only when not stopping at the first).
    pub(crate) unmatched: u64,
    /// Whether the table learned something.
    pub(crate) learned: bool,
    /// (scope index, record index) of the first unmatched record, when stopping there.
    pub(crate) first_unmatched: Option<(usize, usize)>,
}

/// Gives a record a request's trace context.
fn set_context(record: &mut LogRecord, m: &Mapping) {
    record.trace_id = m.trace_id.to_vec();
    record.span_id = m.span_id.to_vec();
    // The low byte of `flags` is the W3C trace flags; keep the rest.
    record.flags = (record.flags & !0xff) | u32::from(m.flags);
}

/// The mapping a pair of IDs gives, when both are valid.
fn mapping_of(trace_id: &[u8], span_id: &[u8], flags: u32) -> Option<Mapping> {
    if !is_valid_trace_id(trace_id) || !is_valid_span_id(span_id) {
        return None;
    }
    Some(Mapping {
        trace_id: trace_id.try_into().ok()?,
        span_id: span_id.try_into().ok()?,
        flags: (flags & 0xff) as u8,
    })
}
