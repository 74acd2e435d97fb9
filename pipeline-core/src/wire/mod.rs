//! Telemetry kept as the OTLP protobuf bytes it arrived in: an [`EncodedPayload`].
//!
//! A receiver whose pipelines never read the data hands them the request body as received
//! (`bytes::Bytes`, no copy), cut into its resource groups and with their item counts, after
//! [`EncodedPayload::from_request`] checked it in one allocation-free pass
//! (the `scan` module). Every OTLP export request is one repeated field (number 1) of
//! resource groups, so a list of groups is a request: merging two payloads appends their
//! groups, splitting one cuts between groups (decoding only a group that must be cut), and an
//! exporter writes the groups, each behind its field key and length, straight to the wire.
//!
//! A component that needs the data decodes it through [`Batch`](crate::Batch)'s methods,
//! once; from then on the batch holds the decoded [`Payload`].

mod scan;

use bytes::{BufMut, Bytes};
use prost::Message;

use crate::model::{Payload, split_groups_front};
use crate::proto::tonic::logs::v1::ResourceLogs;
use crate::proto::tonic::metrics::v1::ResourceMetrics;
use crate::proto::tonic::trace::v1::ResourceSpans;
use crate::signal::Signal;

pub use scan::ScanError;

/// One resource group (`ResourceSpans`, `ResourceMetrics` or `ResourceLogs`) as protobuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedGroup {
    /// The group's message bytes (without the field key and length in front of them).
    pub message: Bytes,
    /// Spans, data points or log records in it.
    pub items: usize,
}

impl EncodedGroup {
    /// Decodes this group alone, as a payload of `signal`.
    pub fn decode(&self, signal: Signal) -> Result<Payload, prost::DecodeError> {
        let m = self.message.clone();
        Ok(match signal {
            Signal::Traces => Payload::Traces(vec![ResourceSpans::decode(m)?]),
            Signal::Metrics => Payload::Metrics(vec![ResourceMetrics::decode(m)?]),
            Signal::Logs => Payload::Logs(vec![ResourceLogs::decode(m)?]),
        })
    }
}

/// An export request's resource groups as protobuf bytes, with their item counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPayload {
    signal: Signal,
    groups: Vec<EncodedGroup>,
    items: usize,
    message_bytes: usize,
}

/// What a scanned request turned out to be.
#[derive(Debug)]
pub enum Scanned {
    /// Well-formed, every ID valid: ready to go on as bytes.
    Clean(EncodedPayload),
    /// Well-formed, but some span or log record has IDs the receiver must remove: decode it.
    InvalidIds,
}

impl EncodedPayload {
    /// An empty payload of `signal`.
    pub fn empty(signal: Signal) -> EncodedPayload {
        EncodedPayload {
            signal,
            groups: Vec::new(),
            items: 0,
            message_bytes: 0,
        }
    }

    /// Checks an `Export*ServiceRequest` body of `signal` in one pass and keeps it as bytes.
    /// An error means the pass found it malformed (decode it for prost's exact reason: the
    /// pass may be stricter than prost in corners no client uses).
    pub fn from_request(signal: Signal, body: &Bytes) -> Result<Scanned, ScanError> {
        let found = scan::scan_request(signal, body)?;
        if found.invalid_ids {
            return Ok(Scanned::InvalidIds);
        }
        let mut payload = EncodedPayload::empty(signal);
        for g in found.groups {
            payload.push(EncodedGroup {
                message: body.slice(g.start..g.end),
                items: g.items,
            });
        }
        Ok(Scanned::Clean(payload))
    }

    /// The payload encoded from decoded data (one buffer per resource group).
    pub fn from_payload(payload: &Payload) -> EncodedPayload {
        fn groups<M: Message>(
            signal: Signal,
            list: &[M],
            count: impl Fn(&M) -> usize,
        ) -> EncodedPayload {
            let mut out = EncodedPayload::empty(signal);
            for g in list {
                out.push(EncodedGroup {
                    message: Bytes::from(g.encode_to_vec()),
                    items: count(g),
                });
            }
            out
        }
        match payload {
            Payload::Traces(rs) => groups(Signal::Traces, rs, |g| {
                crate::model::span_count(std::slice::from_ref(g))
            }),
            Payload::Metrics(rm) => groups(Signal::Metrics, rm, |g| {
                crate::model::data_point_count(std::slice::from_ref(g))
            }),
            Payload::Logs(rl) => groups(Signal::Logs, rl, |g| {
                crate::model::log_record_count(std::slice::from_ref(g))
            }),
        }
    }

    fn push(&mut self, group: EncodedGroup) {
        self.items += group.items;
        self.message_bytes += group.message.len();
        self.groups.push(group);
    }

    /// The signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Items: spans, data points or log records.
    pub fn item_count(&self) -> usize {
        self.items
    }

    /// The resource groups, in order.
    pub fn groups(&self) -> &[EncodedGroup] {
        &self.groups
    }

    /// Bytes of the export request this payload encodes to.
    pub fn encoded_len(&self) -> usize {
        self.groups
            .iter()
            .map(|g| {
                1 + prost::encoding::encoded_len_varint(g.message.len() as u64) + g.message.len()
            })
            .sum()
    }

    /// Bytes held by the groups' messages (what this payload weighs in memory).
    pub fn size_bytes(&self) -> usize {
        self.message_bytes
    }

    /// Writes the export request: each group behind field key 1 and its length.
    pub fn write_request(&self, out: &mut impl BufMut) {
        for g in &self.groups {
            // Field 1, wire type 2 (length-delimited).
            out.put_u8(0x0a);
            prost::encoding::encode_varint(g.message.len() as u64, out);
            out.put_slice(&g.message);
        }
    }

    /// The export request as pieces to write one after the other: each group's key and
    /// length (cut from one small buffer), then the group's bytes as held (no copy).
    pub fn request_chunks(&self) -> Vec<Bytes> {
        let mut headers = bytes::BytesMut::with_capacity(self.groups.len() * 6);
        let mut ends = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            headers.put_u8(0x0a);
            prost::encoding::encode_varint(g.message.len() as u64, &mut headers);
            ends.push(headers.len());
        }
        let headers = headers.freeze();
        let mut out = Vec::with_capacity(self.groups.len() * 2);
        let mut start = 0;
        for (g, end) in self.groups.iter().zip(ends) {
            out.push(headers.slice(start..end));
            out.push(g.message.clone());
            start = end;
        }
        out
    }

    /// The export request as one buffer.
    pub fn to_request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_request(&mut out);
        out
    }

    /// Moves `other`'s groups to the end of this payload; returns it back when the signals
    /// differ.
    pub fn append(&mut self, other: EncodedPayload) -> Result<(), EncodedPayload> {
        if other.signal != self.signal {
            return Err(other);
        }
        self.append_groups(other);
        Ok(())
    }

    /// Moves `other`'s groups to the end (the caller checked the signal).
    pub(crate) fn append_groups(&mut self, other: EncodedPayload) {
        self.items += other.items;
        self.message_bytes += other.message_bytes;
        self.groups.extend(other.groups);
    }

    /// Splits off the first `max_items` items as [`Payload::split_front`] counts and cuts them,
    /// and returns them; `self` keeps the rest. Whole groups move as bytes; only a group that
    /// must be cut is decoded, cut and encoded again (both halves).
    pub fn split_front(&mut self, max_items: usize) -> Result<EncodedPayload, prost::DecodeError> {
        let mut front = EncodedPayload::empty(self.signal);
        let mut taken = 0;
        while taken < self.groups.len() && front.items < max_items {
            let budget = max_items - front.items;
            let group = &self.groups[taken];
            if group.items <= budget {
                front.push(group.clone());
                taken += 1;
                continue;
            }
            let (part, rest) = cut_group(self.signal, &group.message, budget)?;
            front.push(part);
            match rest {
                Some(rest) => {
                    self.items -= group.items - rest.items;
                    self.message_bytes -= group.message.len() - rest.message.len();
                    self.groups[taken] = rest;
                }
                // A metric's points go whole: the cut took all of the group.
                None => taken += 1,
            }
            break;
        }
        let moved: usize = self.groups[..taken].iter().map(|g| g.items).sum();
        let moved_bytes: usize = self.groups[..taken].iter().map(|g| g.message.len()).sum();
        self.groups.drain(..taken);
        self.items -= moved;
        self.message_bytes -= moved_bytes;
        Ok(front)
    }

    /// Decodes every group.
    pub fn decode(&self) -> Result<Payload, prost::DecodeError> {
        fn all<M: Message + Default>(
            groups: &[EncodedGroup],
        ) -> Result<Vec<M>, prost::DecodeError> {
            groups
                .iter()
                .map(|g| M::decode(g.message.clone()))
                .collect()
        }
        Ok(match self.signal {
            Signal::Traces => Payload::Traces(all::<ResourceSpans>(&self.groups)?),
            Signal::Metrics => Payload::Metrics(all::<ResourceMetrics>(&self.groups)?),
            Signal::Logs => Payload::Logs(all::<ResourceLogs>(&self.groups)?),
        })
    }
}

/// Cuts the first `budget` items off one encoded group: decodes it, splits it as the decoded
/// path does, and encodes both parts.
fn cut_group(
    signal: Signal,
    message: &Bytes,
    budget: usize,
) -> Result<(EncodedGroup, Option<EncodedGroup>), prost::DecodeError> {
    fn cut<M: Message + Default>(
        message: &Bytes,
        budget: usize,
        split: impl Fn(&mut Vec<M>, usize) -> Vec<M>,
        count: impl Fn(&[M]) -> usize,
    ) -> Result<(EncodedGroup, Option<EncodedGroup>), prost::DecodeError> {
        let mut rest = vec![M::decode(message.clone())?];
        let front = split(&mut rest, budget);
        let encode = |list: &[M]| {
            list.first().map(|group| EncodedGroup {
                message: Bytes::from(group.encode_to_vec()),
                items: count(list),
            })
        };
        let front = encode(&front).unwrap_or(EncodedGroup {
            message: Bytes::new(),
            items: 0,
        });
        Ok((front, encode(&rest)))
    }
    match signal {
        Signal::Traces => cut::<ResourceSpans>(
            message,
            budget,
            split_groups_front,
            crate::model::span_count,
        ),
        Signal::Metrics => cut::<ResourceMetrics>(
            message,
            budget,
            split_groups_front,
            crate::model::data_point_count,
        ),
        Signal::Logs => cut::<ResourceLogs>(
            message,
            budget,
            split_groups_front,
            crate::model::log_record_count,
        ),
    }
}

#[cfg(test)]
mod tests;
