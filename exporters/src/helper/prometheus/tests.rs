//! One test per translation rule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline_core::proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use pipeline_core::proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use pipeline_core::proto::tonic::resource::v1::Resource;

use super::naming::{
    escape_help, escape_label_value, float_label, metric_name, sanitize_label_name,
    sanitize_metric_name, unit_suffix,
};
use super::*;

use pipeline_core::attributes::string as kv;

fn number(attrs: Vec<KeyValue>, value: f64, t_ms: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_000_000_000,
        time_unix_nano: t_ms * 1_000_000,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} help"),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn resource(attrs: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn sum(points: Vec<NumberDataPoint>, monotonic: bool, delta: bool) -> metric::Data {
    metric::Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: if delta {
            AggregationTemporality::Delta as i32
        } else {
            AggregationTemporality::Cumulative as i32
        },
        is_monotonic: monotonic,
    })
}

#[derive(Default)]
struct Collect {
    points: Vec<(Family, Point)>,
    targets: Vec<Labels>,
    skipped: BTreeMap<&'static str, usize>,
}

impl Sink for Collect {
    fn target_info(&mut self, labels: Labels, _timestamp_ms: i64) {
        self.targets.push(labels);
    }
    fn point(&mut self, family: &Family, point: Point) {
        self.points.push((family.clone(), point));
    }
    fn skipped(&mut self, points: usize, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += points;
    }
}

fn config() -> TranslationConfig {
    TranslationConfig {
        add_metric_suffixes: true,
        ..Default::default()
    }
}

fn run(rm: &[ResourceMetrics], config: &TranslationConfig) -> Collect {
    let mut c = Collect::default();
    translate(rm, config, &mut c);
    c
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn metric_names_are_sanitised() {
    assert_eq!(
        sanitize_metric_name("http.server.duration"),
        "http_server_duration"
    );
    assert_eq!(sanitize_metric_name("a..b--c"), "a_b_c");
    assert_eq!(sanitize_metric_name("2xx.count"), "_2xx_count");
    assert_eq!(sanitize_metric_name("ns:metric"), "ns:metric");
    assert_eq!(sanitize_metric_name("größe"), "gr_e");
    assert_eq!(sanitize_metric_name(""), "_");
}

#[test]
fn label_names_are_sanitised() {
    assert_eq!(sanitize_label_name("http.method"), "http_method");
    assert_eq!(sanitize_label_name("0day"), "key_0day");
    assert_eq!(sanitize_label_name("_private"), "key_private");
    assert_eq!(sanitize_label_name("__reserved"), "__reserved");
    assert_eq!(sanitize_label_name("a:b"), "a_b");
}

#[test]
fn units_become_suffixes() {
    assert_eq!(unit_suffix("s", Kind::Counter), "seconds");
    assert_eq!(unit_suffix("By", Kind::Gauge), "bytes");
    assert_eq!(unit_suffix("ms", Kind::Histogram), "milliseconds");
    assert_eq!(unit_suffix("1", Kind::Gauge), "ratio");
    assert_eq!(unit_suffix("1", Kind::Counter), "");
    assert_eq!(unit_suffix("{request}", Kind::Counter), "");
    assert_eq!(unit_suffix("{packet}/s", Kind::Gauge), "per_second");
    assert_eq!(unit_suffix("m/s", Kind::Gauge), "meters_per_second");
    assert_eq!(unit_suffix("By/s", Kind::Gauge), "bytes_per_second");
    assert_eq!(unit_suffix("widgets", Kind::Gauge), "widgets");
    assert_eq!(unit_suffix("%", Kind::Gauge), "percent");
    assert_eq!(unit_suffix("", Kind::Gauge), "");
}

#[test]
fn names_get_unit_and_total_once() {
    let name = |n, u, k| metric_name(None, n, u, k, true);
    assert_eq!(
        name("http.requests", "{request}", Kind::Counter),
        "http_requests_total"
    );
    assert_eq!(
        name("http.requests", "1", Kind::Counter),
        "http_requests_total"
    );
    assert_eq!(
        name("http.request.duration", "s", Kind::Histogram),
        "http_request_duration_seconds"
    );
    assert_eq!(
        name("system.cpu.time", "s", Kind::Counter),
        "system_cpu_time_seconds_total"
    );
    assert_eq!(
        name("system.memory.usage", "By", Kind::Gauge),
        "system_memory_usage_bytes"
    );
    assert_eq!(
        name("system.cpu.utilization", "1", Kind::Gauge),
        "system_cpu_utilization_ratio"
    );
    // Already there: not twice.
    assert_eq!(
        name("process_cpu_seconds", "s", Kind::Counter),
        "process_cpu_seconds_total"
    );
    assert_eq!(name("jobs_total", "", Kind::Counter), "jobs_total");
    // Off: the name only.
    assert_eq!(metric_name(None, "x.y", "s", Kind::Counter, false), "x_y");
    assert_eq!(
        metric_name(Some("shop"), "x.y", "", Kind::Gauge, true),
        "shop_x_y"
    );
}

#[test]
fn values_and_help_are_escaped() {
    let mut s = String::new();
    escape_label_value(&mut s, "a\\b\"c\nd");
    assert_eq!(s, r#"a\\b\"c\nd"#);
    let mut h = String::new();
    escape_help(&mut h, "x\\y\n\"q\"", false);
    assert_eq!(h, "x\\\\y\\n\"q\"");
    let mut h = String::new();
    escape_help(&mut h, "\"q\"", true);
    assert_eq!(h, "\\\"q\\\"");
    assert_eq!(float_label(1.0), "1");
    assert_eq!(float_label(0.05), "0.05");
    assert_eq!(float_label(f64::INFINITY), "+Inf");
    assert_eq!(float_label(f64::NEG_INFINITY), "-Inf");
    assert_eq!(float_label(f64::NAN), "NaN");
    assert_eq!(float_label(1e300), "1e300");
}

#[test]
fn resource_gives_job_instance_and_target_info() {
    let rm = resource(
        vec![
            kv("service.name", "checkout"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "pod-1"),
            kv("host.name", "node-a"),
        ],
        vec![metric(
            "queue.depth",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(vec![kv("queue", "q1")], 3.0, 5000)],
            }),
        )],
    );
    let c = run(std::slice::from_ref(&rm), &config());
    let (family, point) = &c.points[0];
    assert_eq!(family.name, "queue_depth");
    assert_eq!(family.kind, Kind::Gauge);
    assert_eq!(
        point.labels,
        labels(&[
            ("instance", "pod-1"),
            ("job", "shop/checkout"),
            ("queue", "q1")
        ])
    );
    assert_eq!(point.timestamp_ms, 5000);
    assert_eq!(
        c.targets,
        vec![labels(&[
            ("host_name", "node-a"),
            ("instance", "pod-1"),
            ("job", "shop/checkout")
        ])]
    );
    // With the conversion, every series carries the resource attributes too.
    let mut conv = config();
    conv.resource_to_telemetry_conversion = true;
    conv.const_labels = labels(&[("region", "eu")]);
    let c = run(&[rm], &conv);
    assert_eq!(
        c.points[0].1.labels,
        labels(&[
            ("host_name", "node-a"),
            ("instance", "pod-1"),
            ("job", "shop/checkout"),
            ("queue", "q1"),
            ("region", "eu")
        ])
    );
}

#[test]
fn colliding_label_names_join_values_and_types_become_text() {
    let attrs = [
        kv("a.b", "1"),
        kv("a_b", "2"),
        KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::IntValue(1)),
                        },
                        AnyValue {
                            value: Some(any_value::Value::StringValue("x\"".into())),
                        },
                    ],
                })),
            }),
            ..Default::default()
        },
        KeyValue {
            key: "map".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", "v")],
                })),
            }),
            ..Default::default()
        },
        KeyValue {
            key: "flag".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        },
        kv("empty", ""),
    ];
    let l = labels_from_attributes(attrs.iter());
    assert_eq!(
        l,
        labels(&[
            ("a_b", "1;2"),
            ("flag", "true"),
            ("list", r#"[1,"x\""]"#),
            ("map", r#"{"k":"v"}"#)
        ])
    );
}

#[test]
fn monotonic_sums_are_counters_and_others_gauges() {
    let rm = resource(
        vec![],
        vec![
            metric(
                "http.requests",
                "{request}",
                sum(vec![number(vec![], 7.0, 1)], true, false),
            ),
            metric(
                "queue.size",
                "{item}",
                sum(vec![number(vec![], -2.0, 1)], false, false),
            ),
        ],
    );
    let c = run(&[rm], &config());
    assert_eq!(c.points[0].0.name, "http_requests_total");
    assert_eq!(c.points[0].0.kind, Kind::Counter);
    assert_eq!(c.points[0].1.created_ms, Some(1000));
    assert_eq!(c.points[0].1.value, Value::Number(7.0));
    assert_eq!(c.points[1].0.name, "queue_size");
    assert_eq!(c.points[1].0.kind, Kind::Gauge);
    assert_eq!(c.points[1].1.created_ms, None);
    // No service: no target_info.
    assert!(c.targets.is_empty());
}

fn histogram_point(bounds: Vec<f64>, counts: Vec<u64>, sum: f64) -> HistogramDataPoint {
    HistogramDataPoint {
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts,
        explicit_bounds: bounds,
        time_unix_nano: 2_000_000_000,
        start_time_unix_nano: 1_000_000_000,
        ..Default::default()
    }
}

fn samples(point: &Point) -> Vec<(String, Option<String>, f64)> {
    let mut out = Vec::new();
    point.for_each_sample(|s| {
        out.push((
            s.suffix.to_string(),
            s.extra.map(|(n, v)| format!("{n}={}", float_label(v))),
            s.value,
        ))
    });
    out
}

#[test]
fn histograms_become_cumulative_buckets_sum_and_count() {
    let mut p = histogram_point(vec![0.1, 1.0], vec![2, 3, 1], 4.5);
    p.exemplars = vec![OtlpExemplar {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        value: Some(pipeline_core::proto::tonic::metrics::v1::exemplar::Value::AsDouble(0.5)),
        time_unix_nano: 1_500_000_000,
        ..Default::default()
    }];
    let rm = resource(
        vec![],
        vec![metric(
            "rpc.duration",
            "s",
            metric::Data::Histogram(Histogram {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let c = run(&[rm], &config());
    let (family, point) = &c.points[0];
    assert_eq!(family.name, "rpc_duration_seconds");
    let s = samples(point);
    assert_eq!(
        s,
        vec![
            ("_bucket".into(), Some("le=0.1".into()), 2.0),
            ("_bucket".into(), Some("le=1".into()), 5.0),
            ("_bucket".into(), Some("le=+Inf".into()), 6.0),
            ("_sum".into(), None, 4.5),
            ("_count".into(), None, 6.0),
        ]
    );
    assert_eq!(point.sample_count(), 5);
    // The exemplar sits in the bucket its value falls in.
    let Value::Histogram { buckets, .. } = &point.value else {
        panic!()
    };
    let e = buckets[1].exemplar.as_ref().unwrap();
    assert_eq!(e.labels[0], ("trace_id".to_string(), "ab".repeat(16)));
    assert_eq!(e.labels[1], ("span_id".to_string(), "cd".repeat(8)));
    assert_eq!(e.timestamp_ms, 1500);
    assert!(buckets[0].exemplar.is_none());
}

#[test]
fn malformed_histograms_are_skipped_and_counted() {
    let bad = histogram_point(vec![0.1, 1.0], vec![2, 3], 1.0);
    let unsorted = histogram_point(vec![1.0, 0.1], vec![1, 1, 1], 1.0);
    let mut none = number(vec![], 1.0, 1);
    none.flags = 1;
    let rm = resource(
        vec![],
        vec![
            metric(
                "h",
                "",
                metric::Data::Histogram(Histogram {
                    data_points: vec![bad, unsorted],
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "g",
                "",
                metric::Data::Gauge(Gauge {
                    data_points: vec![none],
                }),
            ),
        ],
    );
    let c = run(&[rm], &config());
    assert!(c.points.is_empty());
    assert_eq!(c.skipped[INVALID], 2);
    assert_eq!(c.skipped[NO_RECORDED_VALUE_REASON], 1);
}

#[test]
fn summaries_become_quantiles_sum_and_count() {
    let p = SummaryDataPoint {
        count: 10,
        sum: 3.5,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.99,
                value: 0.9,
            },
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.2,
            },
        ],
        time_unix_nano: 1_000_000,
        ..Default::default()
    };
    let rm = resource(
        vec![],
        vec![metric(
            "latency",
            "ms",
            metric::Data::Summary(Summary {
                data_points: vec![p],
            }),
        )],
    );
    let c = run(&[rm], &config());
    assert_eq!(c.points[0].0.name, "latency_milliseconds");
    assert_eq!(c.points[0].0.kind, Kind::Summary);
    assert_eq!(
        samples(&c.points[0].1),
        vec![
            (String::new(), Some("quantile=0.5".into()), 0.2),
            (String::new(), Some("quantile=0.99".into()), 0.9),
            ("_sum".into(), None, 3.5),
            ("_count".into(), None, 10.0),
        ]
    );
}

#[test]
fn exponential_histograms_become_buckets_on_their_boundaries() {
    // Scale 0: base 2. Positive offset 0: (1,2], (2,4]; negative offset 0: [-2,-1).
    let p = ExponentialHistogramDataPoint {
        count: 7,
        sum: Some(9.0),
        scale: 0,
        zero_count: 1,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![2, 3],
        }),
        negative: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1],
        }),
        time_unix_nano: 1_000_000,
        ..Default::default()
    };
    let rm = resource(
        vec![],
        vec![metric(
            "size",
            "By",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![p],
                aggregation_temporality: 2,
            }),
        )],
    );
    let c = run(&[rm], &config());
    assert_eq!(c.points[0].0.name, "size_bytes");
    assert_eq!(
        samples(&c.points[0].1),
        vec![
            ("_bucket".into(), Some("le=-1".into()), 1.0),
            ("_bucket".into(), Some("le=0".into()), 2.0),
            ("_bucket".into(), Some("le=2".into()), 4.0),
            ("_bucket".into(), Some("le=4".into()), 7.0),
            ("_bucket".into(), Some("le=+Inf".into()), 7.0),
            ("_sum".into(), None, 9.0),
            ("_count".into(), None, 7.0),
        ]
    );
}

fn delta_payload(value: f64, t_ms: u64) -> Vec<ResourceMetrics> {
    let mut p = number(vec![kv("k", "v")], value, t_ms);
    p.start_time_unix_nano = t_ms * 1_000_000 - 1;
    let mut h = histogram_point(vec![1.0], vec![1, 2], value);
    h.start_time_unix_nano = t_ms * 1_000_000 - 1;
    vec![resource(
        vec![kv("service.name", "s")],
        vec![
            metric("c", "", sum(vec![p], true, true)),
            metric(
                "h",
                "",
                metric::Data::Histogram(Histogram {
                    data_points: vec![h],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            ),
        ],
    )]
}

#[test]
fn deltas_are_accumulated_into_totals() {
    let mut acc = DeltaToCumulative::new(100, Duration::from_secs(60));
    let mut first = delta_payload(2.0, 10);
    assert_eq!(acc.convert(&mut first), 0);
    let mut second = delta_payload(3.0, 20);
    acc.convert(&mut second);
    let c = run(&second, &config());
    assert_eq!(c.points[0].1.value, Value::Number(5.0));
    // The start stays the first point's.
    assert_eq!(c.points[0].1.created_ms, Some(9));
    assert_eq!(
        samples(&c.points[1].1),
        vec![
            ("_bucket".into(), Some("le=1".into()), 2.0),
            ("_bucket".into(), Some("le=+Inf".into()), 6.0),
            ("_sum".into(), None, 5.0),
            ("_count".into(), None, 6.0),
        ]
    );
    assert_eq!(acc.len(), 2);
}

#[test]
fn delta_table_is_bounded_and_counts_what_it_drops() {
    let mut acc = DeltaToCumulative::new(1, Duration::from_secs(60));
    let mut payload = delta_payload(1.0, 10);
    // Two series (counter, histogram) and room for one.
    assert_eq!(acc.convert(&mut payload), 1);
    assert_eq!(acc.len(), 1);
    assert_eq!(pipeline_core::model::data_point_count(&payload), 1);
}

#[test]
fn exponential_deltas_align_offsets() {
    let point = |offset: i32, counts: Vec<u64>| ExponentialHistogramDataPoint {
        count: counts.iter().sum(),
        scale: 1,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts,
        }),
        time_unix_nano: 1_000_000,
        ..Default::default()
    };
    let payload = |p| {
        vec![resource(
            vec![],
            vec![metric(
                "e",
                "",
                metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![p],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            )],
        )]
    };
    let mut acc = DeltaToCumulative::new(10, Duration::ZERO);
    acc.convert(&mut payload(point(2, vec![1, 1])));
    let mut second = payload(point(1, vec![5, 0, 0, 7]));
    acc.convert(&mut second);
    let Some(metric::Data::ExponentialHistogram(h)) = &second[0].scope_metrics[0].metrics[0].data
    else {
        panic!()
    };
    let b = h.data_points[0].positive.as_ref().unwrap();
    assert_eq!((b.offset, b.bucket_counts.clone()), (1, vec![5, 1, 1, 7]));
    assert_eq!(h.data_points[0].count, 14);
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
}
