//! The fuzz targets' bodies, one function per target (`fuzz_targets/<name>.rs` calls
//! `sightline_fuzz::<name>`), so that `tests/seeds.rs` can run them over the seed corpus
//! without libFuzzer. Each checks properties, not only the absence of panics.

use std::sync::OnceLock;

use bytes::Bytes;
use pipeline_core::Payload;
use pipeline_core::Signal;
use pipeline_core::config::ConfigSource;
use pipeline_core::model::{is_valid_span_id, is_valid_trace_id};
use pipeline_core::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use pipeline_core::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline_core::wire::{EncodedPayload, Scanned};
use prost::Message;
use receivers::fuzzing::OtlpHttpHarness;

fn signal_of(byte: u8) -> Signal {
    Signal::ALL[byte as usize % 3]
}

/// prost's decoding of a request body of `signal`, as pipeline data.
fn prost_decode(signal: Signal, body: &[u8]) -> Result<Payload, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(body)?.resource_spans),
        Signal::Metrics => {
            Payload::Metrics(ExportMetricsServiceRequest::decode(body)?.resource_metrics)
        }
        Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(body)?.resource_logs),
    })
}

/// The export request of `payload`, as protobuf.
fn protobuf(payload: &Payload) -> Vec<u8> {
    let mut out = Vec::new();
    payload.write_request(&mut out);
    out
}

fn has_invalid_ids(payload: &Payload) -> bool {
    match payload {
        Payload::Traces(rs) => rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .any(|s| {
                !is_valid_trace_id(&s.trace_id)
                    || !is_valid_span_id(&s.span_id)
                    || !(s.parent_span_id.is_empty() || s.parent_span_id.len() == 8)
            }),
        Payload::Logs(rl) => rl
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .any(|l| {
                !(l.trace_id.is_empty() || l.trace_id.len() == 16)
                    || !(l.span_id.is_empty() || l.span_id.len() == 8)
            }),
        _ => false,
    }
}

/// `pipeline_core::wire::EncodedPayload::from_request` against prost: the scan accepts
/// exactly what prost decodes; a clean scan counts the items prost finds and its groups
/// decode to prost's data; "invalid IDs" means prost's data has some. First byte: signal.
pub fn wire_scan(data: &[u8]) {
    let Some((&s, body)) = data.split_first() else {
        return;
    };
    let signal = signal_of(s);
    let body = Bytes::copy_from_slice(body);
    let scanned = EncodedPayload::from_request(signal, &body);
    let decoded = prost_decode(signal, &body);
    match (scanned, decoded) {
        (Err(_), Err(_)) => {}
        (Ok(Scanned::Clean(encoded)), Ok(payload)) => {
            assert_eq!(encoded.item_count(), payload.item_count(), "item count");
            assert!(
                !has_invalid_ids(&payload),
                "clean, but prost finds invalid IDs"
            );
            // Compared as protobuf: a NaN in the data is not equal to itself.
            let decoded = encoded.decode().expect("clean groups decode");
            assert_eq!(protobuf(&decoded), protobuf(&payload), "groups");
            let again = prost_decode(signal, &encoded.to_request()).expect("written back");
            assert_eq!(protobuf(&again), protobuf(&payload), "written back");
        }
        (Ok(Scanned::InvalidIds), Ok(payload)) => {
            assert!(
                has_invalid_ids(&payload),
                "invalid IDs that prost does not find"
            );
        }
        (scanned, decoded) => panic!(
            "the scan says {:?}, prost says {:?}",
            scanned.map(|_| "ok"),
            decoded.map(|_| "ok")
        ),
    }
}

/// OTLP/JSON decoding of the three request types: whatever decodes survives a round trip
/// through OTLP/JSON and through protobuf unchanged.
pub fn otlp_json(data: &[u8]) {
    fn round_trip<R>(data: &[u8])
    where
        R: Message + Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        let Ok(request) = serde_json::from_slice::<R>(data) else {
            return;
        };
        let json = serde_json::to_vec(&request).expect("serialize");
        let again: R = serde_json::from_slice(&json).expect("what was written reads back");
        // Compared as protobuf (a NaN is not equal to itself).
        let bytes = request.encode_to_vec();
        assert_eq!(again.encode_to_vec(), bytes, "JSON round trip");
        let proto = R::decode(bytes.as_slice()).expect("protobuf");
        assert_eq!(proto.encode_to_vec(), bytes, "protobuf round trip");
    }
    round_trip::<ExportTraceServiceRequest>(data);
    round_trip::<ExportMetricsServiceRequest>(data);
    round_trip::<ExportLogsServiceRequest>(data);
}

fn harness() -> &'static OtlpHttpHarness {
    static HARNESS: OnceLock<OtlpHttpHarness> = OnceLock::new();
    HARNESS.get_or_init(|| OtlpHttpHarness::new().expect("runtime"))
}

/// One OTLP/HTTP request through the receiver's router, body limit, gunzip, scan or
/// decoding and ingest, into a consumer that checks what arrives. First byte: signal (bits
/// 0-1), JSON (bit 2), gzip (bit 3), a pipeline that reads the data (bit 4). The answer is
/// one the OTLP/HTTP spec allows.
pub fn otlp_http(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let path = ["/v1/traces", "/v1/metrics", "/v1/logs"][(flags & 3) as usize % 3];
    let json = flags & 4 != 0;
    let content_type = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let answer = harness().post(
        flags & 16 != 0,
        path,
        content_type,
        flags & 8 != 0,
        body.to_vec(),
    );
    assert!(
        matches!(answer.status, 200 | 400 | 413),
        "status {}",
        answer.status
    );
    if flags & 8 == 0 && !json {
        // Plain protobuf is refused exactly when prost refuses it.
        let prost_ok = prost_decode(signal_of(flags & 3), body).is_ok();
        assert_eq!(answer.status == 200, prost_ok, "status {}", answer.status);
    }
}

/// The filelog `json` parser on one line (valid UTF-8, as the tailer hands over).
pub fn filelog_json(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data) {
        receivers::fuzzing::filelog_json_line(line);
    }
}

const SECRET: &str = "SeCrEt-9f3e1d77";

/// The config loader and validator (what `sightline validate` runs) on one YAML file, with
/// every `${env:...}` resolving to a secret: no panic, and no message quotes the secret.
pub fn config(data: &[u8]) {
    static REGISTRY: OnceLock<pipeline_core::Registry> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let registry = REGISTRY.get_or_init(|| sightline::default_registry().expect("registry"));
    let env = |_: &str| Some(SECRET.to_string());
    let source = ConfigSource {
        name: "fuzz.yaml".into(),
        text: text.to_string(),
    };
    // A secret written in the file is its own business; only substituted ones are checked.
    let quoted_in_file = text.contains(SECRET);
    match pipeline_core::config::load(&[source], &env) {
        Err(errors) => {
            for e in errors.0 {
                assert!(quoted_in_file || !e.to_string().contains(SECRET), "{e}");
            }
        }
        Ok(config) => {
            let validation = pipeline_core::graph::validate(&config, registry);
            for e in validation.errors {
                assert!(quoted_in_file || !e.to_string().contains(SECRET), "{e}");
            }
        }
    }
}

/// The persistent queue's reader (`pipeline_core::queue::PersistentQueue::open` and `pop`,
/// and `inspect`, what `validate --check-storage` runs) on a queue directory built from the
/// input: opening never fails and never hangs over damage, `inspect` agrees with what opening
/// finds, a record taken and kept is there again after a restart, and once every record is
/// finished with a restart finds nothing left (no gap in the records stops the commit point).
///
/// Input: byte 0 holds flags (bits 0-2: a `commit` value, written when bit 3 is set; bit 4:
/// write correct checksums into the records, so the fuzzer reaches what lies past them; bits
/// 5-6: segments minus one; bit 7: leave a gap of one sequence number between segments);
/// the rest is cut into that many segment files.
pub fn persistent_queue(data: &[u8]) {
    use pipeline_core::queue::{
        BatchQueue, FsyncPolicy, FullPolicy, PersistentConfig, PersistentQueue, QueueCounters,
        inspect,
    };
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch_dir("pq");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let segments = 1 + usize::from((flags >> 5) & 3);
    let mut first_seq = 0u64;
    for k in 0..segments {
        let mut bytes = rest[k * rest.len() / segments..(k + 1) * rest.len() / segments].to_vec();
        let records = walk_records(&mut bytes, flags & 0x10 != 0);
        std::fs::write(dir.join(format!("{first_seq:020}.seg")), &bytes).expect("write segment");
        first_seq += records + u64::from(flags >> 7);
    }
    if flags & 0x08 != 0 {
        std::fs::write(dir.join("commit"), u64::from(flags & 7).to_string()).expect("commit");
    }
    let config = PersistentConfig {
        dir: dir.clone(),
        max_size_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::Never,
        fsync_interval: std::time::Duration::from_secs(1),
    };
    let open = || {
        PersistentQueue::open(config.clone(), FullPolicy::Refuse, QueueCounters::default())
            .expect("opening never refuses over damage")
    };
    let report = inspect(&dir).expect("inspect");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // First life: everything readable is taken, and kept (the process "dies" sending).
        let q = open();
        let waiting = q.pending_records();
        assert_eq!(waiting, report.records, "inspect and open disagree");
        q.close();
        let mut taken = Vec::new();
        while let Some((batch, ticket)) = q.pop().await {
            assert!(batch.item_count() <= u32::MAX as usize);
            taken.push(ticket);
        }
        let kept = taken.len();
        for t in taken {
            t.keep();
        }
        drop(q);
        // Second life: what was kept is there again; now every record is finished with.
        let q = open();
        let again = q.pending_records();
        assert!(
            again >= kept && again <= waiting,
            "kept {kept} of {waiting}, found {again} after a restart"
        );
        q.close();
        while let Some((_, ticket)) = q.pop().await {
            ticket.done();
        }
        drop(q);
        // Third life: nothing is left to send.
        let q = open();
        assert_eq!(q.pending_records(), 0, "finished records are sent again");
        drop(q);
    });
    let after = inspect(&dir).expect("inspect");
    assert_eq!(after.records, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Walks the records of a segment by their lengths, writing correct checksums when `fix`;
/// returns how many whole records it holds.
fn walk_records(bytes: &mut [u8], fix: bool) -> u64 {
    let mut at = 0usize;
    let mut records = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let Some(end) = (at + 8)
            .checked_add(len as usize)
            .filter(|e| *e <= bytes.len())
        else {
            break;
        };
        if fix {
            let crc = crc32fast::hash(&bytes[at + 8..end]);
            bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        }
        records += 1;
        at = end;
    }
    records
}

/// A directory of this process and thread for one target's files.
fn scratch_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "sightline-fuzz-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}
