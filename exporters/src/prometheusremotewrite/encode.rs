//! A batch's points as remote-write request bodies, written straight as protobuf bytes.
//!
//! [`build_requests`] translates the (cumulative) points with the shared rules and writes
//! every sample's series as the bytes of its `Label` messages, sorted by name with
//! `__name__` (and `le` or `quantile`) in their places, into one arena: no `String` per
//! label per sample, no message structs. Each series goes to the shard its label hash picks.
//! When no series repeats within the batch (the usual case: one point per series) the
//! series are written in order; otherwise they are grouped first, and each series' samples
//! sorted by timestamp with one sample per timestamp (the later wins), as Prometheus wants.
//! Each shard's series are cut into `WriteRequest` bodies of at most `max_request_bytes`.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use pipeline_core::proto::tonic::metrics::v1::ResourceMetrics;

use crate::helper::prometheus::naming::write_float;
use crate::helper::prometheus::{Family, Labels, Point, Sink, TranslationConfig, translate};

/// What [`build_requests`] needs to know.
#[derive(Debug, Clone)]
pub struct RequestLayout {
    /// Names and labels.
    pub translation: TranslationConfig,
    /// Send `target_info`.
    pub target_info: bool,
    /// Shards (at least 1).
    pub num_shards: usize,
    /// Largest uncompressed request.
    pub max_request_bytes: usize,
}

/// The request bodies of one batch (protobuf `WriteRequest`s, not compressed yet).
#[derive(Debug, Default)]
pub struct Requests {
    /// Per shard, the bodies to send in order.
    pub shards: Vec<Vec<Vec<u8>>>,
    /// Data points that could not be translated.
    pub skipped: usize,
    /// Why, per reason.
    pub skipped_reasons: BTreeMap<&'static str, usize>,
    /// Samples in all requests.
    pub samples: usize,
}

/// One sample and where its series' label bytes are in the arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    start: usize,
    end: usize,
    timestamp: i64,
    value: f64,
}

/// Collects the samples of a batch.
struct Collector {
    target_info: bool,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    seen: HashSet<u64, FixedState>,
    repeats: bool,
    skipped: BTreeMap<&'static str, usize>,
    hasher: FixedState,
    /// The current point's labels, encoded, and where each one and its name start and end.
    common: Vec<u8>,
    offsets: Vec<(usize, usize, usize)>,
    name: String,
    number: String,
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

/// A `Label` message as field 1 of a `TimeSeries`.
fn put_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    out.push(0x0a);
    put_varint(out, inner as u64);
    out.push(0x0a);
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.push(0x12);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// Bytes of a `Sample` message as field 2 of a `TimeSeries`.
fn sample_len(timestamp: i64) -> usize {
    let inner = 1 + 8 + 1 + varint_len(timestamp as u64);
    1 + varint_len(inner as u64) + inner
}

fn put_sample(out: &mut Vec<u8>, timestamp: i64, value: f64) {
    let inner = 1 + 8 + 1 + varint_len(timestamp as u64);
    out.push(0x12);
    put_varint(out, inner as u64);
    out.push(0x09);
    out.extend_from_slice(&value.to_le_bytes());
    out.push(0x10);
    put_varint(out, timestamp as u64);
}

impl Collector {
    /// Records one sample of the series whose other labels are in `self.common`.
    fn add(&mut self, name: &str, extra: Option<(&str, &str)>, timestamp: i64, value: f64) {
        let start = self.arena.len();
        // Merge __name__ and the extra label into the sorted labels of the point.
        let mut inserts: [(&str, &str); 2] = [("__name__", name), ("", "")];
        let mut n = 1;
        if let Some((k, v)) = extra {
            inserts[1] = (k, v);
            n = 2;
            if k < "__name__" {
                inserts.swap(0, 1);
            }
        }
        let mut next = 0;
        for (i, &(offset, name_start, name_end)) in self.offsets.iter().enumerate() {
            let label_name = &self.common[name_start..name_end];
            while next < n && inserts[next].0.as_bytes() < label_name {
                put_label(&mut self.arena, inserts[next].0, inserts[next].1);
                next += 1;
            }
            let end = self.offsets.get(i + 1).map_or(self.common.len(), |o| o.0);
            self.arena.extend_from_slice(&self.common[offset..end]);
        }
        while next < n {
            put_label(&mut self.arena, inserts[next].0, inserts[next].1);
            next += 1;
        }
        let end = self.arena.len();
        let hash = self.hasher.hash_one(&self.arena[start..end]);
        if !self.seen.insert(hash) {
            self.repeats = true;
        }
        self.entries.push(Entry {
            hash,
            start,
            end,
            timestamp,
            value,
        });
    }

    fn set_labels(&mut self, labels: &Labels) {
        self.common.clear();
        self.offsets.clear();
        for (name, value) in labels {
            let start = self.common.len();
            put_label(&mut self.common, name, value);
            // 0x0a, len(label), 0x0a, len(name), name: the name ends where its value starts.
            let name_end = self.common.len() - value.len() - 1 - varint_len(value.len() as u64);
            self.offsets.push((start, name_end - name.len(), name_end));
        }
    }
}

impl Sink for Collector {
    fn target_info(&mut self, labels: Labels, timestamp_ms: i64) {
        if self.target_info {
            self.set_labels(&labels);
            self.add("target_info", None, timestamp_ms, 1.0);
        }
    }

    fn point(&mut self, family: &Family, point: Point) {
        let timestamp = if point.timestamp_ms > 0 {
            point.timestamp_ms
        } else {
            now_ms()
        };
        self.set_labels(&point.labels);
        point.for_each_sample(|s| {
            let mut name = std::mem::take(&mut self.name);
            name.clear();
            name.push_str(&family.name);
            name.push_str(s.suffix);
            let mut number = std::mem::take(&mut self.number);
            number.clear();
            let extra = s.extra.map(|(k, v)| {
                write_float(&mut number, v);
                (k, number.as_str())
            });
            self.add(&name, extra, timestamp, s.value);
            self.name = name;
            self.number = number;
        });
    }

    fn skipped(&mut self, points: usize, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += points;
    }
}

fn now_ms() -> i64 {
    i64::try_from(pipeline_core::time::now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Cuts series into bodies of at most `max` bytes per shard.
struct ShardWriter {
    max: usize,
    shards: Vec<Vec<Vec<u8>>>,
    current: Vec<Vec<u8>>,
}

impl ShardWriter {
    fn new(shards: usize, max: usize) -> ShardWriter {
        ShardWriter {
            max,
            shards: (0..shards).map(|_| Vec::new()).collect(),
            current: (0..shards).map(|_| Vec::new()).collect(),
        }
    }

    /// Writes one `TimeSeries` (labels bytes, then samples) to `shard`.
    fn write(&mut self, shard: usize, labels: &[u8], samples: &[Entry]) {
        let inner = labels.len()
            + samples
                .iter()
                .map(|s| sample_len(s.timestamp))
                .sum::<usize>();
        let framed = 1 + varint_len(inner as u64) + inner;
        let current = &mut self.current[shard];
        if !current.is_empty() && current.len() + framed > self.max {
            self.shards[shard].push(std::mem::take(current));
        }
        current.reserve(framed);
        current.push(0x0a);
        put_varint(current, inner as u64);
        current.extend_from_slice(labels);
        for s in samples {
            put_sample(current, s.timestamp, s.value);
        }
    }

    fn finish(mut self) -> Vec<Vec<Vec<u8>>> {
        for (shard, current) in self.current.into_iter().enumerate() {
            if !current.is_empty() {
                self.shards[shard].push(current);
            }
        }
        self.shards
    }
}

/// The request bodies for `resource_metrics`, whose points must be cumulative.
pub fn build_requests(resource_metrics: &[ResourceMetrics], layout: &RequestLayout) -> Requests {
    let mut c = Collector {
        target_info: layout.target_info,
        arena: Vec::with_capacity(64 * 1024),
        entries: Vec::new(),
        seen: HashSet::with_hasher(FixedState::with_seed(7)),
        repeats: false,
        skipped: BTreeMap::new(),
        hasher: FixedState::with_seed(0x5eed),
        common: Vec::new(),
        offsets: Vec::new(),
        name: String::new(),
        number: String::new(),
    };
    translate(resource_metrics, &layout.translation, &mut c);
    let shards = layout.num_shards.max(1) as u64;
    let mut writer = ShardWriter::new(layout.num_shards.max(1), layout.max_request_bytes);
    let mut entries = std::mem::take(&mut c.entries);
    if c.repeats {
        // Group each series (equal hashes and equal bytes) and order its samples by time.
        let arena = &c.arena;
        entries.sort_by(|a, b| {
            a.hash
                .cmp(&b.hash)
                .then_with(|| arena[a.start..a.end].cmp(&arena[b.start..b.end]))
                .then_with(|| a.timestamp.cmp(&b.timestamp))
        });
        // One sample per timestamp: the later one in the batch (sort_by is stable).
        entries.dedup_by(|later, earlier| {
            let same = later.hash == earlier.hash
                && later.timestamp == earlier.timestamp
                && arena[later.start..later.end] == arena[earlier.start..earlier.end];
            if same {
                earlier.value = later.value;
            }
            same
        });
    }
    let mut samples = 0;
    let mut i = 0;
    while i < entries.len() {
        let first = entries[i];
        let labels = &c.arena[first.start..first.end];
        let mut j = i + 1;
        if c.repeats {
            while j < entries.len()
                && entries[j].hash == first.hash
                && c.arena[entries[j].start..entries[j].end] == *labels
            {
                j += 1;
            }
        }
        writer.write((first.hash % shards) as usize, labels, &entries[i..j]);
        samples += j - i;
        i = j;
    }
    let skipped = c.skipped.values().sum();
    Requests {
        shards: writer.finish(),
        skipped,
        skipped_reasons: c.skipped,
        samples,
    }
}
