//! The scan against prost, and encoded merging and splitting against the decoded path.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::Batch;
use crate::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use crate::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use crate::proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use crate::proto::tonic::logs::v1::{LogRecord, ScopeLogs};
use crate::proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ScopeMetrics, Sum, metric,
    number_data_point,
};
use crate::proto::tonic::resource::v1::Resource;
use crate::proto::tonic::trace::v1::{ScopeSpans, Span, Status};

/// A small deterministic generator (xorshift), so one proptest seed gives one request.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n.max(1)) as usize
    }
    fn text(&mut self) -> String {
        let words = [
            "GET /x",
            "é漢字",
            "",
            "user@example.com",
            "a\u{0}b",
            "checkout",
        ];
        words[self.below(words.len() as u64)].to_string()
    }
    fn value(&mut self, depth: u32) -> AnyValue {
        let value = match (self.below(if depth > 0 { 7 } else { 5 }), depth) {
            (0, _) => any_value::Value::StringValue(self.text()),
            (1, _) => any_value::Value::IntValue(self.next() as i64),
            (2, _) => any_value::Value::DoubleValue(self.next() as f64 / 7.0),
            (3, _) => any_value::Value::BoolValue(self.next().is_multiple_of(2)),
            (4, _) => any_value::Value::BytesValue(vec![self.below(256) as u8; self.below(4)]),
            (5, d) => any_value::Value::ArrayValue(ArrayValue {
                values: (0..self.below(3)).map(|_| self.value(d - 1)).collect(),
            }),
            (_, d) => any_value::Value::KvlistValue(KeyValueList {
                values: self.attributes(d - 1),
            }),
        };
        AnyValue { value: Some(value) }
    }
    fn attributes(&mut self, depth: u32) -> Vec<KeyValue> {
        (0..self.below(4))
            .map(|i| KeyValue {
                key: format!("k{i}"),
                value: Some(self.value(depth)),
                ..Default::default()
            })
            .collect()
    }
    fn id(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.below(255) + 1) as u8).collect()
    }
    fn resource(&mut self) -> Option<Resource> {
        Some(Resource {
            attributes: self.attributes(2),
            ..Default::default()
        })
    }
    fn scope(&mut self) -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: self.text(),
            version: "1.0".into(),
            attributes: self.attributes(1),
            dropped_attributes_count: 0,
        })
    }
    fn traces(&mut self) -> ExportTraceServiceRequest {
        let resource_spans = (0..self.below(4))
            .map(|_| crate::proto::tonic::trace::v1::ResourceSpans {
                resource: self.resource(),
                scope_spans: (0..self.below(3))
                    .map(|_| ScopeSpans {
                        scope: self.scope(),
                        spans: (0..self.below(6))
                            .map(|_| Span {
                                trace_id: self.id(16),
                                span_id: self.id(8),
                                parent_span_id: if self.below(2) == 0 {
                                    vec![]
                                } else {
                                    self.id(8)
                                },
                                name: self.text(),
                                kind: self.below(5) as i32,
                                start_time_unix_nano: self.next(),
                                end_time_unix_nano: self.next(),
                                attributes: self.attributes(3),
                                status: Some(Status {
                                    message: self.text(),
                                    code: self.below(3) as i32,
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }
    fn logs(&mut self) -> ExportLogsServiceRequest {
        let resource_logs = (0..self.below(4))
            .map(|_| crate::proto::tonic::logs::v1::ResourceLogs {
                resource: self.resource(),
                scope_logs: (0..self.below(3))
                    .map(|_| ScopeLogs {
                        scope: self.scope(),
                        log_records: (0..self.below(6))
                            .map(|_| LogRecord {
                                time_unix_nano: self.next(),
                                severity_number: self.below(24) as i32,
                                severity_text: "INFO".into(),
                                body: Some(self.value(2)),
                                attributes: self.attributes(2),
                                trace_id: if self.below(2) == 0 {
                                    vec![]
                                } else {
                                    self.id(16)
                                },
                                span_id: if self.below(2) == 0 {
                                    vec![]
                                } else {
                                    self.id(8)
                                },
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect();
        ExportLogsServiceRequest { resource_logs }
    }
    fn number_points(&mut self) -> Vec<NumberDataPoint> {
        (0..self.below(4))
            .map(|_| NumberDataPoint {
                attributes: self.attributes(1),
                time_unix_nano: self.next(),
                value: Some(number_data_point::Value::AsDouble(1.5)),
                ..Default::default()
            })
            .collect()
    }
    fn metrics(&mut self) -> ExportMetricsServiceRequest {
        let resource_metrics = (0..self.below(4))
            .map(|_| crate::proto::tonic::metrics::v1::ResourceMetrics {
                resource: self.resource(),
                scope_metrics: (0..self.below(3))
                    .map(|_| ScopeMetrics {
                        scope: self.scope(),
                        metrics: (0..self.below(5))
                            .map(|i| Metric {
                                name: format!("m{i}"),
                                data: match self.below(4) {
                                    0 => None,
                                    1 => Some(metric::Data::Gauge(Gauge {
                                        data_points: self.number_points(),
                                    })),
                                    2 => Some(metric::Data::Sum(Sum {
                                        data_points: self.number_points(),
                                        aggregation_temporality: 2,
                                        is_monotonic: true,
                                    })),
                                    _ => Some(metric::Data::Histogram(Histogram {
                                        data_points: (0..self.below(3))
                                            .map(|_| HistogramDataPoint {
                                                count: 3,
                                                bucket_counts: vec![1, 2],
                                                explicit_bounds: vec![0.5],
                                                ..Default::default()
                                            })
                                            .collect(),
                                        aggregation_temporality: 1,
                                    })),
                                },
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect();
        ExportMetricsServiceRequest { resource_metrics }
    }
    /// A random request of `signal`, encoded, with its decoded payload.
    fn request(&mut self, signal: Signal) -> (Vec<u8>, Payload) {
        match signal {
            Signal::Traces => {
                let r = self.traces();
                (r.encode_to_vec(), Payload::Traces(r.resource_spans))
            }
            Signal::Metrics => {
                let r = self.metrics();
                (r.encode_to_vec(), Payload::Metrics(r.resource_metrics))
            }
            Signal::Logs => {
                let r = self.logs();
                (r.encode_to_vec(), Payload::Logs(r.resource_logs))
            }
        }
    }
}

fn prost_accepts(signal: Signal, body: &[u8]) -> bool {
    match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).is_ok(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).is_ok(),
        Signal::Logs => ExportLogsServiceRequest::decode(body).is_ok(),
    }
}

fn clean(signal: Signal, body: &[u8]) -> EncodedPayload {
    match EncodedPayload::from_request(signal, &Bytes::copy_from_slice(body)) {
        Ok(Scanned::Clean(e)) => e,
        other => panic!("not clean: {other:?}"),
    }
}

fn signal_of(n: u8) -> Signal {
    Signal::ALL[n as usize % 3]
}

fn points(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(g)) => g.data_points.len(),
        Some(metric::Data::Histogram(g)) => g.data_points.len(),
        Some(metric::Data::ExponentialHistogram(g)) => g.data_points.len(),
        Some(metric::Data::Summary(g)) => g.data_points.len(),
        None => 0,
    }
}

fn without_empty_groups(payload: Payload) -> Payload {
    match payload {
        Payload::Traces(mut rs) => {
            for r in &mut rs {
                r.scope_spans.retain(|s| !s.spans.is_empty());
            }
            rs.retain(|r| !r.scope_spans.is_empty());
            Payload::Traces(rs)
        }
        Payload::Metrics(mut rm) => {
            for r in &mut rm {
                for s in &mut r.scope_metrics {
                    s.metrics.retain(|m| points(m) > 0);
                }
                r.scope_metrics.retain(|s| !s.metrics.is_empty());
            }
            rm.retain(|r| !r.scope_metrics.is_empty());
            Payload::Metrics(rm)
        }
        Payload::Logs(mut rl) => {
            for r in &mut rl {
                r.scope_logs.retain(|s| !s.log_records.is_empty());
            }
            rl.retain(|r| !r.scope_logs.is_empty());
            Payload::Logs(rl)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A valid request scans clean, with the item count of the decoded data, and its groups
    /// written back are the request.
    #[test]
    fn valid_requests_scan_clean_with_exact_counts(seed in 1u64.., s in 0u8..3) {
        let signal = signal_of(s);
        let (body, payload) = Gen(seed).request(signal);
        let encoded = clean(signal, &body);
        prop_assert_eq!(encoded.item_count(), payload.item_count());
        prop_assert_eq!(encoded.to_request(), body.clone());
        prop_assert_eq!(encoded.encoded_len(), body.len());
        prop_assert_eq!(encoded.decode().unwrap(), payload);
    }

    /// Whatever the scan accepts, prost decodes, and the other way round: damaged requests
    /// (a byte changed, the end cut off, a byte inserted) get the same verdict from both.
    #[test]
    fn the_scan_and_prost_agree_on_damaged_requests(
        seed in 1u64..,
        s in 0u8..3,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0u8..3,
    ) {
        let signal = signal_of(s);
        let (mut body, _) = Gen(seed).request(signal);
        if body.is_empty() {
            body.push(byte);
        } else {
            let i = at.index(body.len());
            match how {
                0 => body[i] = byte,
                1 => body.truncate(i),
                _ => body.insert(i, byte),
            }
        }
        let scanned = scan::scan_request(signal, &body).is_ok();
        prop_assert_eq!(scanned, prost_accepts(signal, &body), "body {:?}", body);
    }

    /// Requests merged by concatenation and cut by `split_front` decode to the same parts as
    /// the decoded path's merge and split.
    #[test]
    fn encoded_merge_and_split_match_the_decoded_path(
        seed in 1u64..,
        s in 0u8..3,
        requests in 1usize..5,
        max in 1usize..12,
    ) {
        let signal = signal_of(s);
        let mut g = Gen(seed);
        let mut encoded = Batch::encoded(EncodedPayload::empty(signal));
        let mut decoded = Batch::empty(signal);
        for _ in 0..requests {
            let (body, payload) = g.request(signal);
            encoded.append(Batch::encoded(clean(signal, &body))).unwrap();
            decoded.append(Batch::new(payload)).unwrap();
        }
        prop_assert_eq!(encoded.item_count(), decoded.item_count());
        prop_assert_eq!(encoded.to_request(), decoded.to_request());
        while decoded.item_count() > 0 {
            let want = decoded.split_front(max);
            let got = encoded.split_front(max);
            prop_assert!(got.is_encoded());
            prop_assert_eq!(got.item_count(), want.item_count());
            prop_assert_eq!(got.encoded_len(), got.to_request().len());
            // Groups and scopes without items may land on either side of a cut (the decoded
            // split leaves a resource group without scopes out; the encoded one moves whole
            // groups, trailing empty scopes included): compare what carries items.
            prop_assert_eq!(
                without_empty_groups(got.payload_view().into_owned()),
                without_empty_groups(want.payload_view().into_owned())
            );
            prop_assert_eq!(encoded.item_count(), decoded.item_count());
        }
    }
}

#[test]
fn invalid_ids_and_malformed_bodies_are_told_apart() {
    let mut request = Gen(7).traces();
    while crate::model::span_count(&request.resource_spans) == 0 {
        request = Gen(request.encode_to_vec().len() as u64 + 11).traces();
    }
    let span = request
        .resource_spans
        .iter_mut()
        .flat_map(|r| r.scope_spans.iter_mut())
        .flat_map(|s| s.spans.iter_mut())
        .next()
        .unwrap();
    span.trace_id = vec![0; 16];
    let body = Bytes::from(request.encode_to_vec());
    assert!(matches!(
        EncodedPayload::from_request(Signal::Traces, &body),
        Ok(Scanned::InvalidIds)
    ));
    let bad_utf8 = Bytes::from_static(&[0x0a, 0x05, 0x1a, 0x03, 0xff, 0xfe, 0xfd]);
    assert!(EncodedPayload::from_request(Signal::Traces, &bad_utf8).is_err());
    assert!(!prost_accepts(Signal::Traces, &bad_utf8));
}

#[test]
fn deep_nesting_stops_where_prost_stops() {
    for depth in [90u32, 94, 95, 96, 97, 100] {
        let mut value = AnyValue {
            value: Some(any_value::Value::IntValue(1)),
        };
        for _ in 0..depth {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let request = ExportLogsServiceRequest {
            resource_logs: vec![crate::proto::tonic::logs::v1::ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(value),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        assert_eq!(
            scan::scan_request(Signal::Logs, &body).is_ok(),
            prost_accepts(Signal::Logs, &body),
            "depth {depth}"
        );
    }
}

#[test]
fn a_metric_with_two_data_variants_counts_the_last_as_prost_keeps_it() {
    // Gauge with 2 points, then a Sum with 1: prost keeps the Sum.
    let gauge = Metric {
        name: "m".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default(); 2],
        })),
        ..Default::default()
    };
    let sum = Metric {
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint::default()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut metric_bytes = gauge.encode_to_vec();
    metric_bytes.extend(sum.encode_to_vec());
    let mut scope = Vec::new();
    prost::encoding::bytes::encode(2, &metric_bytes, &mut scope);
    let mut group = Vec::new();
    prost::encoding::bytes::encode(2, &scope, &mut group);
    let mut body = Vec::new();
    prost::encoding::bytes::encode(1, &group, &mut body);
    let decoded = ExportMetricsServiceRequest::decode(&body[..]).unwrap();
    let want = crate::model::data_point_count(&decoded.resource_metrics);
    assert_eq!(want, 1);
    assert_eq!(clean(Signal::Metrics, &body).item_count(), want);
}
