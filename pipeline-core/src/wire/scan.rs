//! One allocation-free pass over an OTLP export request in protobuf: it checks everything the
//! prost decoder checks (wire types of known fields, varints, lengths, UTF-8 in string
//! fields, the recursion limit), counts the items of every resource group, and checks the
//! span and log IDs the receiver refuses, without building a single struct.
//!
//! The schema below is the OTLP messages of `opentelemetry-proto` (field numbers and types as
//! the generated code declares them). Anything this pass accepts, prost decodes: the varint
//! and key reading are prost's own functions, and the rest follows prost's rules field by
//! field (a property test and a fuzz target hold the two side by side). Where this pass is
//! stricter than prost, the caller falls back to decoding, so nothing prost accepts is
//! refused.

use prost::encoding::{WireType, decode_key, decode_varint};

use crate::model::{is_valid_span_id, is_valid_trace_id};
use crate::signal::Signal;

/// Why a request did not pass the scan. The caller decodes it to learn prost's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed OTLP protobuf: {0}")]
pub struct ScanError(pub(crate) &'static str);

impl From<prost::DecodeError> for ScanError {
    fn from(_: prost::DecodeError) -> ScanError {
        ScanError("invalid varint or key")
    }
}

/// prost's recursion limit: nested messages deeper than this fail to decode.
const RECURSION_LIMIT: u32 = 100;

/// How a field of a known number must look on the wire.
#[derive(Clone, Copy)]
enum Kind {
    /// A singular varint (ints, bools, enums): wire type varint only.
    Varint,
    /// A singular 32-bit fixed field.
    Fixed32,
    /// A singular 64-bit fixed field (fixed64, sfixed64, double).
    Fixed64,
    /// A repeated varint: packed (length-delimited) or one varint.
    RepeatedVarint,
    /// A repeated 64-bit fixed field: packed or one value.
    RepeatedFixed64,
    /// A string (singular or repeated): length-delimited, UTF-8.
    Str,
    /// Bytes: length-delimited.
    Bytes,
    /// A message (singular or repeated).
    Msg(&'static Schema),
}

/// What a message adds to the item count of the message holding it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Nothing; the items of the fields in `counted` are summed.
    Plain,
    /// One item (a span or a log record), after its IDs are checked.
    Span,
    /// One log record.
    LogRecord,
    /// A metric: the points of its `data` oneof, the last variant winning as in prost.
    Metric,
    /// A gauge, sum, histogram or summary: one item per occurrence of field 1.
    Points,
}

/// The highest field number in the OTLP messages scanned.
const MAX_TAG: usize = 16;

/// A message type: its known fields (indexed by field number) and its role in counting.
struct Schema {
    fields: [Option<Kind>; MAX_TAG + 1],
    role: Role,
    /// Fields whose sub-messages' item counts add up to this message's.
    counted: &'static [u32],
}

impl Schema {
    const fn new(list: &[(u32, Kind)], role: Role, counted: &'static [u32]) -> Schema {
        let mut fields = [None; MAX_TAG + 1];
        let mut i = 0;
        while i < list.len() {
            fields[list[i].0 as usize] = Some(list[i].1);
            i += 1;
        }
        Schema {
            fields,
            role,
            counted,
        }
    }

    fn kind(&self, tag: u32) -> Option<Kind> {
        self.fields.get(tag as usize).copied().flatten()
    }
}

const fn plain(fields: &[(u32, Kind)]) -> Schema {
    Schema::new(fields, Role::Plain, &[])
}

use Kind::{Bytes as B, Fixed32 as F32, Fixed64 as F64, Msg, Str as S, Varint as V};

// common.v1
static ANY_VALUE: Schema = plain(&[
    (1, S),
    (2, V),
    (3, V),
    (4, F64),
    (5, Msg(&ARRAY_VALUE)),
    (6, Msg(&KEY_VALUE_LIST)),
    (7, B),
    (8, V),
]);
static ARRAY_VALUE: Schema = plain(&[(1, Msg(&ANY_VALUE))]);
static KEY_VALUE_LIST: Schema = plain(&[(1, Msg(&KEY_VALUE))]);
static KEY_VALUE: Schema = plain(&[(1, S), (2, Msg(&ANY_VALUE)), (3, V)]);
static SCOPE: Schema = plain(&[(1, S), (2, S), (3, Msg(&KEY_VALUE)), (4, V)]);
static ENTITY_REF: Schema = plain(&[(1, S), (2, S), (3, S), (4, S)]);
// resource.v1
static RESOURCE: Schema = plain(&[(1, Msg(&KEY_VALUE)), (2, V), (3, Msg(&ENTITY_REF))]);

// trace.v1
static RESOURCE_SPANS: Schema = Schema::new(
    &[(1, Msg(&RESOURCE)), (2, Msg(&SCOPE_SPANS)), (3, S)],
    Role::Plain,
    &[2],
);
static SCOPE_SPANS: Schema = Schema::new(
    &[(1, Msg(&SCOPE)), (2, Msg(&SPAN)), (3, S)],
    Role::Plain,
    &[2],
);
static SPAN: Schema = Schema::new(
    &[
        (1, B),
        (2, B),
        (3, S),
        (4, B),
        (16, F32),
        (5, S),
        (6, V),
        (7, F64),
        (8, F64),
        (9, Msg(&KEY_VALUE)),
        (10, V),
        (11, Msg(&EVENT)),
        (12, V),
        (13, Msg(&LINK)),
        (14, V),
        (15, Msg(&STATUS)),
    ],
    Role::Span,
    &[],
);
static EVENT: Schema = plain(&[(1, F64), (2, S), (3, Msg(&KEY_VALUE)), (4, V)]);
static LINK: Schema = plain(&[
    (1, B),
    (2, B),
    (3, S),
    (4, Msg(&KEY_VALUE)),
    (5, V),
    (6, F32),
]);
static STATUS: Schema = plain(&[(2, S), (3, V)]);

// logs.v1
static RESOURCE_LOGS: Schema = Schema::new(
    &[(1, Msg(&RESOURCE)), (2, Msg(&SCOPE_LOGS)), (3, S)],
    Role::Plain,
    &[2],
);
static SCOPE_LOGS: Schema = Schema::new(
    &[(1, Msg(&SCOPE)), (2, Msg(&LOG_RECORD)), (3, S)],
    Role::Plain,
    &[2],
);
static LOG_RECORD: Schema = Schema::new(
    &[
        (1, F64),
        (11, F64),
        (2, V),
        (3, S),
        (5, Msg(&ANY_VALUE)),
        (6, Msg(&KEY_VALUE)),
        (7, V),
        (8, F32),
        (9, B),
        (10, B),
        (12, S),
    ],
    Role::LogRecord,
    &[],
);

// metrics.v1
static RESOURCE_METRICS: Schema = Schema::new(
    &[(1, Msg(&RESOURCE)), (2, Msg(&SCOPE_METRICS)), (3, S)],
    Role::Plain,
    &[2],
);
static SCOPE_METRICS: Schema = Schema::new(
    &[(1, Msg(&SCOPE)), (2, Msg(&METRIC)), (3, S)],
    Role::Plain,
    &[2],
);
static METRIC: Schema = Schema::new(
    &[
        (1, S),
        (2, S),
        (3, S),
        (12, Msg(&KEY_VALUE)),
        (5, Msg(&GAUGE)),
        (7, Msg(&SUM)),
        (9, Msg(&HISTOGRAM)),
        (10, Msg(&EXP_HISTOGRAM)),
        (11, Msg(&SUMMARY)),
    ],
    Role::Metric,
    &[],
);
const fn points(fields: &[(u32, Kind)]) -> Schema {
    Schema::new(fields, Role::Points, &[])
}
static GAUGE: Schema = points(&[(1, Msg(&NUMBER_POINT))]);
static SUM: Schema = points(&[(1, Msg(&NUMBER_POINT)), (2, V), (3, V)]);
static HISTOGRAM: Schema = points(&[(1, Msg(&HISTOGRAM_POINT)), (2, V)]);
static EXP_HISTOGRAM: Schema = points(&[(1, Msg(&EXP_HISTOGRAM_POINT)), (2, V)]);
static SUMMARY: Schema = points(&[(1, Msg(&SUMMARY_POINT))]);
static NUMBER_POINT: Schema = plain(&[
    (7, Msg(&KEY_VALUE)),
    (2, F64),
    (3, F64),
    (4, F64),
    (6, F64),
    (5, Msg(&EXEMPLAR)),
    (8, V),
]);
static HISTOGRAM_POINT: Schema = plain(&[
    (9, Msg(&KEY_VALUE)),
    (2, F64),
    (3, F64),
    (4, F64),
    (5, F64),
    (6, Kind::RepeatedFixed64),
    (7, Kind::RepeatedFixed64),
    (8, Msg(&EXEMPLAR)),
    (10, V),
    (11, F64),
    (12, F64),
]);
static EXP_HISTOGRAM_POINT: Schema = plain(&[
    (1, Msg(&KEY_VALUE)),
    (2, F64),
    (3, F64),
    (4, F64),
    (5, F64),
    (6, V),
    (7, F64),
    (8, Msg(&BUCKETS)),
    (9, Msg(&BUCKETS)),
    (10, V),
    (11, Msg(&EXEMPLAR)),
    (12, F64),
    (13, F64),
    (14, F64),
]);
static BUCKETS: Schema = plain(&[(1, V), (2, Kind::RepeatedVarint)]);
static SUMMARY_POINT: Schema = plain(&[
    (7, Msg(&KEY_VALUE)),
    (2, F64),
    (3, F64),
    (4, F64),
    (5, F64),
    (6, Msg(&QUANTILE)),
    (8, V),
]);
static QUANTILE: Schema = plain(&[(1, F64), (2, F64)]);
static EXEMPLAR: Schema = plain(&[
    (7, Msg(&KEY_VALUE)),
    (2, F64),
    (3, F64),
    (6, F64),
    (4, B),
    (5, B),
]);

/// The resource-group message of each signal.
fn group_schema(signal: Signal) -> &'static Schema {
    match signal {
        Signal::Traces => &RESOURCE_SPANS,
        Signal::Metrics => &RESOURCE_METRICS,
        Signal::Logs => &RESOURCE_LOGS,
    }
}

/// One resource group found in a request: where its message bytes are, and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupSpan {
    /// Byte range of the group's message (after the field key and length).
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Spans, data points or log records in it.
    pub(crate) items: usize,
}

/// What the scan of a whole request found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestScan {
    pub(crate) groups: Vec<GroupSpan>,
    pub(crate) items: usize,
    /// Some span or log record has IDs the receiver refuses (it must decode to remove them).
    pub(crate) invalid_ids: bool,
}

/// Scans an `Export{Trace,Metrics,Logs}ServiceRequest` of `signal`.
pub(crate) fn scan_request(signal: Signal, body: &[u8]) -> Result<RequestScan, ScanError> {
    let schema = group_schema(signal);
    let mut out = RequestScan::default();
    let mut cur = Cursor::new(body);
    while !cur.is_empty() {
        let (tag, wire_type) = cur.key()?;
        if tag != 1 {
            cur.skip(wire_type, tag, RECURSION_LIMIT)?;
            continue;
        }
        expect(wire_type, WireType::LengthDelimited)?;
        let value = cur.take_len()?;
        let start = body.len() - cur.remaining() - value.len();
        let items = walk(value, schema, RECURSION_LIMIT - 1, &mut out.invalid_ids)?;
        out.items += items;
        out.groups.push(GroupSpan {
            start,
            end: start + value.len(),
            items,
        });
    }
    Ok(out)
}

#[inline(always)]
fn expect(actual: WireType, wanted: WireType) -> Result<(), ScanError> {
    if actual == wanted {
        Ok(())
    } else {
        Err(ScanError("a known field has the wrong wire type"))
    }
}

/// A read position in one message's bytes. The one-byte varints and keys that make up most
/// of OTLP are read inline; longer ones go to prost's own decoder, so what is accepted and
/// refused is prost's.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline(always)]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, ScanError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, ScanError> {
        let mut rest = &self.buf[self.pos..];
        let before = rest.len();
        let value = decode_varint(&mut rest)?;
        self.pos += before - rest.len();
        Ok(value)
    }

    /// A field key, checked as prost's `decode_key` does.
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, WireType), ScanError> {
        let key = match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                u64::from(b)
            }
            _ => {
                let mut rest = &self.buf[self.pos..];
                let before = rest.len();
                let (tag, wire_type) = decode_key(&mut rest)?;
                self.pos += before - rest.len();
                return Ok((tag, wire_type));
            }
        };
        let wire_type =
            WireType::try_from(key & 0x07).map_err(|_| ScanError("invalid wire type"))?;
        let tag = (key >> 3) as u32;
        if tag == 0 {
            return Err(ScanError("invalid tag value: 0"));
        }
        Ok((tag, wire_type))
    }

    /// Reads a length prefix and returns that many bytes, advancing past them.
    #[inline(always)]
    fn take_len(&mut self) -> Result<&'a [u8], ScanError> {
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(ScanError("a length runs past the end of its message"));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline(always)]
    fn advance(&mut self, n: usize) -> Result<(), ScanError> {
        if self.remaining() < n {
            return Err(ScanError(
                "a fixed-width field runs past the end of its message",
            ));
        }
        self.pos += n;
        Ok(())
    }

    /// Skips an unknown field as prost does (groups included), `depth` being the recursion
    /// budget of the message it is in.
    fn skip(&mut self, wire_type: WireType, tag: u32, depth: u32) -> Result<(), ScanError> {
        if depth == 0 {
            return Err(ScanError("nested too deep"));
        }
        match wire_type {
            WireType::Varint => {
                self.varint()?;
            }
            WireType::ThirtyTwoBit => self.advance(4)?,
            WireType::SixtyFourBit => self.advance(8)?,
            WireType::LengthDelimited => {
                self.take_len()?;
            }
            WireType::StartGroup => loop {
                let (inner_tag, inner_type) = self.key()?;
                if inner_type == WireType::EndGroup {
                    if inner_tag != tag {
                        return Err(ScanError("unexpected end group tag"));
                    }
                    break;
                }
                self.skip(inner_type, inner_tag, depth - 1)?;
            },
            WireType::EndGroup => return Err(ScanError("unexpected end group tag")),
        }
        Ok(())
    }
}

/// Whether a string field's bytes are UTF-8 (ASCII, by far the most common, checked first).
#[inline(always)]
fn is_utf8(value: &[u8]) -> bool {
    value.is_ascii() || std::str::from_utf8(value).is_ok()
}

/// Walks the fields of one message of `schema` (its body, `depth` being prost's recursion
/// budget for fields inside it) and returns its item count.
fn walk(
    body: &[u8],
    schema: &'static Schema,
    depth: u32,
    invalid: &mut bool,
) -> Result<usize, ScanError> {
    let mut cur = Cursor::new(body);
    let mut items = 0usize;
    // Last values of the ID fields (prost keeps the last occurrence).
    let mut ids: [&[u8]; 3] = [&[], &[], &[]];
    // The metric `data` oneof: the variant last seen and its points.
    let mut variant = 0u32;
    while !cur.is_empty() {
        let (tag, wire_type) = cur.key()?;
        let Some(kind) = schema.kind(tag) else {
            cur.skip(wire_type, tag, depth)?;
            continue;
        };
        match kind {
            Kind::Varint => {
                expect(wire_type, WireType::Varint)?;
                cur.varint()?;
            }
            Kind::Fixed32 => {
                expect(wire_type, WireType::ThirtyTwoBit)?;
                cur.advance(4)?;
            }
            Kind::Fixed64 => {
                expect(wire_type, WireType::SixtyFourBit)?;
                cur.advance(8)?;
            }
            Kind::RepeatedVarint => {
                if wire_type == WireType::LengthDelimited {
                    let mut packed = Cursor::new(cur.take_len()?);
                    while !packed.is_empty() {
                        packed.varint()?;
                    }
                } else {
                    expect(wire_type, WireType::Varint)?;
                    cur.varint()?;
                }
            }
            Kind::RepeatedFixed64 => {
                if wire_type == WireType::LengthDelimited {
                    let packed = cur.take_len()?;
                    if packed.len() % 8 != 0 {
                        return Err(ScanError("a packed fixed64 field is cut short"));
                    }
                } else {
                    expect(wire_type, WireType::SixtyFourBit)?;
                    cur.advance(8)?;
                }
            }
            Kind::Str => {
                expect(wire_type, WireType::LengthDelimited)?;
                let value = cur.take_len()?;
                if !is_utf8(value) {
                    return Err(ScanError("a string field is not valid UTF-8"));
                }
            }
            Kind::Bytes => {
                expect(wire_type, WireType::LengthDelimited)?;
                let value = cur.take_len()?;
                let slot = match (schema.role, tag) {
                    (Role::Span, 1) | (Role::LogRecord, 9) => Some(0),
                    (Role::Span, 2) | (Role::LogRecord, 10) => Some(1),
                    (Role::Span, 4) => Some(2),
                    _ => None,
                };
                if let Some(slot) = slot {
                    ids[slot] = value;
                }
            }
            Kind::Msg(sub) => {
                expect(wire_type, WireType::LengthDelimited)?;
                if depth == 0 {
                    return Err(ScanError("nested too deep"));
                }
                let value = cur.take_len()?;
                // Attributes are most of a request: their messages have a walker of their own.
                let n = if std::ptr::eq(sub, &KEY_VALUE) {
                    walk_key_value(value, depth - 1, invalid)?;
                    0
                } else {
                    walk(value, sub, depth - 1, invalid)?
                };
                match schema.role {
                    Role::Metric if sub.role == Role::Points => {
                        // prost merges a repeated variant and replaces a different one.
                        if variant == tag {
                            items += n;
                        } else {
                            variant = tag;
                            items = n;
                        }
                    }
                    Role::Points if tag == 1 => items += 1,
                    _ if schema.counted.contains(&tag) => items += n,
                    _ => {}
                }
            }
        }
    }
    match schema.role {
        Role::Span => {
            let [trace_id, span_id, parent] = ids;
            if !(is_valid_trace_id(trace_id)
                && is_valid_span_id(span_id)
                && (parent.is_empty() || parent.len() == 8))
            {
                *invalid = true;
            }
            Ok(1)
        }
        Role::LogRecord => {
            let [trace_id, span_id, _] = ids;
            if !((trace_id.is_empty() || trace_id.len() == 16)
                && (span_id.is_empty() || span_id.len() == 8))
            {
                *invalid = true;
            }
            Ok(1)
        }
        _ => Ok(items),
    }
}

/// [`walk`] for a `KeyValue` (an attribute), which counts no items: the key and a string
/// value are checked inline, any other value goes to [`walk`].
fn walk_key_value(body: &[u8], depth: u32, invalid: &mut bool) -> Result<(), ScanError> {
    let mut cur = Cursor::new(body);
    while !cur.is_empty() {
        let (tag, wire_type) = cur.key()?;
        match tag {
            1 => {
                expect(wire_type, WireType::LengthDelimited)?;
                if !is_utf8(cur.take_len()?) {
                    return Err(ScanError("a string field is not valid UTF-8"));
                }
            }
            2 => {
                expect(wire_type, WireType::LengthDelimited)?;
                if depth == 0 {
                    return Err(ScanError("nested too deep"));
                }
                let value = cur.take_len()?;
                // The common value: one string field and nothing else.
                let mut inner = Cursor::new(value);
                if value.first() == Some(&0x0a) {
                    inner.pos = 1;
                    let s = inner.take_len()?;
                    if inner.is_empty() {
                        if !is_utf8(s) {
                            return Err(ScanError("a string field is not valid UTF-8"));
                        }
                        continue;
                    }
                }
                walk(value, &ANY_VALUE, depth - 1, invalid)?;
            }
            3 => {
                expect(wire_type, WireType::Varint)?;
                cur.varint()?;
            }
            _ => cur.skip(wire_type, tag, depth)?,
        }
    }
    Ok(())
}
