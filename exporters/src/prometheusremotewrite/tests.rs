//! Tests of the `prometheusremotewrite` exporter against a receiver that decodes what it gets
//! the way Prometheus does (snappy block format, then the protobuf messages).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use pipeline_core::DynExporterFactory;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::net::HttpServer;
use pipeline_core::testing::check_exporter;
use prost::Message;
use serde_json::json;

use super::{Factory, RemoteWriteConfig, WriteRequest};
use crate::helper::testutil::metrics::{all_kinds, batch, counter, resource};
use crate::helper::testutil::{TestCtx, eventually, in_secs, start_exporter};

#[tokio::test]
async fn conformance() {
    check_exporter(
        &Factory,
        &json!({"endpoint": "http://127.0.0.1:9/api/v1/write"}),
    )
    .await;
}

#[test]
fn config_defaults_and_errors() {
    let c: RemoteWriteConfig =
        pipeline_core::parse_config(&json!({"endpoint": "http://p:9090/api/v1/write"})).unwrap();
    assert_eq!(c.num_shards, 4);
    assert_eq!(c.max_batch_size_bytes, 3_000_000);
    assert!(c.add_metric_suffixes && c.target_info.enabled);
    assert_eq!(c.settings().sending_queue.num_consumers, 1);
    assert!(Factory.validate(&json!({})).is_err());
    assert!(Factory.validate(&json!({"endpoint": "p:9090"})).is_err());
    let base = |extra: serde_json::Value| {
        let mut v = json!({"endpoint": "http://p/api/v1/write"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Factory.validate(&v)
    };
    assert!(base(json!({"num_shards": 0})).is_err());
    assert!(base(json!({"external_labels": {"__name__": "x"}})).is_err());
    let e = base(json!({"sending_queue": {"num_consumers": 4}})).unwrap_err();
    assert_eq!(e.path, "sending_queue.num_consumers");
}

/// What the fake receiver answers and what it got.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(HeaderMap, usize, WriteRequest)>>,
    answers: Mutex<VecDeque<(u16, Option<&'static str>, &'static str)>>,
}

impl Receiver {
    fn requests(&self) -> Vec<WriteRequest> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|g| g.2.clone())
            .collect()
    }

    /// Every sample received, by `__name__` and the other labels as `k=v,...`.
    fn samples(&self) -> HashMap<String, Vec<(i64, f64)>> {
        let mut out: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        for r in self.requests() {
            for ts in r.timeseries {
                let key = ts
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",");
                out.entry(key)
                    .or_default()
                    .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
            }
        }
        out
    }
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let request = WriteRequest::decode(raw.as_slice()).unwrap();
    let answer = r.answers.lock().unwrap().pop_front();
    match answer {
        Some((status, retry_after, text)) => {
            let mut response =
                (StatusCode::from_u16(status).unwrap(), text.to_string()).into_response();
            if let Some(ra) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            response
        }
        None => {
            r.got.lock().unwrap().push((headers, raw.len(), request));
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn receiver() -> (Arc<Receiver>, HttpServer) {
    let r = Arc::new(Receiver::default());
    let router = axum::Router::new()
        .route("/api/v1/write", axum::routing::post(receive))
        .with_state(Arc::clone(&r));
    let server = HttpServer::start("127.0.0.1:0", None, router)
        .await
        .unwrap();
    (r, server)
}

/// A receiver and an exporter writing to it, configured with fast retries and `extra`.
/// Keep the server: dropping it stops it.
async fn started(
    extra: serde_json::Value,
) -> (
    Arc<Receiver>,
    TestCtx,
    Arc<dyn ConsumerComponent>,
    HttpServer,
) {
    let (r, server) = receiver().await;
    let t = TestCtx::new("prometheusremotewrite");
    let x = start_exporter(&Factory, &t, config(&server, extra)).await;
    (r, t, x, server)
}

fn config(server: &HttpServer, extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "endpoint": format!("http://{}/api/v1/write", server.local_addr()),
        "retry_on_failure": {"initial_interval": "10ms", "max_interval": "50ms", "max_elapsed_time": "10s"},
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn writes_snappy_protobuf_with_the_remote_write_headers() {
    let (r, t, x, _server) =
        started(json!({"external_labels": {"cluster": "eu-1"}, "num_shards": 1})).await;
    x.consume(batch(vec![all_kinds("checkout", 1_700_000_100_000)]))
        .await
        .unwrap();
    assert!(t.wait_sent("metrics", 5.0).await);
    let got = r.got.lock().unwrap().clone();
    let (headers, _, request) = &got[0];
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("sightline/")
    );
    for ts in &request.timeseries {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "labels must be sorted");
    }
    drop(got);
    let s = r.samples();
    let t0 = 1_700_000_100_000;
    let key = |k: &str| {
        s.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing: {:?}", s.keys()))
    };
    assert_eq!(
        key("__name__=http_requests_total,cluster=eu-1,job=checkout,method=GET"),
        vec![(t0, 42.0)]
    );
    assert_eq!(
        key("__name__=system_memory_usage_bytes,cluster=eu-1,job=checkout,state=used"),
        vec![(t0, 1024.0)]
    );
    assert_eq!(
        key(
            "__name__=http_request_duration_seconds_bucket,cluster=eu-1,endpoint=/api/users/{id},job=checkout,le=0.1"
        ),
        vec![(t0, 6.0)]
    );
    assert_eq!(
        key(
            "__name__=http_request_duration_seconds_sum,cluster=eu-1,endpoint=/api/users/{id},job=checkout"
        ),
        vec![(t0, 11.5)]
    );
    assert_eq!(
        key("__name__=rpc_latency_seconds,cluster=eu-1,job=checkout,quantile=0.99"),
        vec![(t0, 0.9)]
    );
    assert_eq!(
        key("__name__=target_info,cluster=eu-1,host_name=node-1,job=checkout"),
        vec![(t0, 1.0)]
    );
    // 2 counters + gauge + 9 buckets, sum, count + 2 quantiles, sum, count + target_info.
    assert_eq!(s.len(), 19);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn shards_keep_every_series_in_timestamp_order() {
    let (r, t, x, _server) = started(json!({"num_shards": 4})).await;
    let methods: Vec<String> = (0..40).map(|i| format!("M{i}")).collect();
    for round in 0..20u64 {
        let points: Vec<(&str, i64)> = methods.iter().map(|m| (m.as_str(), round as i64)).collect();
        // Two resources per batch, the later point first: the sender sorts them.
        let late = counter("c", &points, 10_000 + round * 10 + 5);
        let early = counter("c", &points, 10_000 + round * 10);
        x.consume(batch(vec![
            resource("svc", vec![late]),
            resource("svc", vec![early]),
        ]))
        .await
        .unwrap();
    }
    assert!(t.wait_sent("metrics", 1600.0).await);
    let s = r.samples();
    let series: Vec<_> = s
        .iter()
        .filter(|(k, _)| k.contains("__name__=c_total"))
        .collect();
    assert_eq!(series.len(), 40);
    for (key, samples) in series {
        assert_eq!(samples.len(), 40, "{key}");
        assert!(
            samples.windows(2).all(|w| w[0].0 < w[1].0),
            "{key} out of order: {samples:?}"
        );
    }
    // More than one shard carried data: more requests than batches.
    assert!(r.requests().len() > 20, "{}", r.requests().len());
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn requests_stay_under_max_batch_size_bytes() {
    let (r, t, x, _server) = started(json!({"num_shards": 1, "max_batch_size_bytes": 2048})).await;
    let methods: Vec<String> = (0..200).map(|i| format!("METHOD_{i}")).collect();
    let points: Vec<(&str, i64)> = methods.iter().map(|m| (m.as_str(), 1)).collect();
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("c", &points, 5000)],
    )]))
    .await
    .unwrap();
    assert!(t.wait_sent("metrics", 200.0).await);
    let got = r.got.lock().unwrap().clone();
    assert!(got.len() >= 5, "{} requests", got.len());
    assert!(got.iter().all(|(_, raw, _)| *raw <= 2048));
    let series: usize = got.iter().map(|g| g.2.timeseries.len()).sum();
    assert_eq!(series, 201);
    drop(got);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn retries_5xx_and_429_honouring_retry_after() {
    let (r, t, x, _server) = started(json!({"num_shards": 1})).await;
    r.answers.lock().unwrap().extend([
        (503, Some("0"), "overloaded"),
        (429, Some("1"), "slow down"),
        (500, None, "oops"),
    ]);
    let started = std::time::Instant::now();
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("c", &[("GET", 1)], 1000)],
    )]))
    .await
    .unwrap();
    assert!(t.wait_sent("metrics", 1.0).await);
    // The 429's Retry-After of 1s was waited, not the 10ms backoff.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(t.send_attempts("failure"), 3.0);
    assert_eq!(r.requests().len(), 1);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn drops_4xx_with_a_count() {
    let (r, t, x, _server) = started(json!({"num_shards": 1})).await;
    r.answers
        .lock()
        .unwrap()
        .push_back((400, None, "out of order sample"));
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("c", &[("GET", 1), ("PUT", 2)], 1000)],
    )]))
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("metrics", "rejected") == 2.0
        })
        .await
    );
    assert_eq!(t.send_attempts("failure"), 1.0);
    assert!(r.requests().is_empty());
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn delta_sums_are_sent_as_running_totals() {
    use pipeline_core::proto::tonic::metrics::v1::{AggregationTemporality, metric};
    let (r, t, x, _server) = started(json!({"target_info": {"enabled": false}})).await;
    for (i, v) in [3, 4, 5].into_iter().enumerate() {
        let mut m = counter("orders", &[("GET", v)], 1000 + i as u64);
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.aggregation_temporality = AggregationTemporality::Delta as i32;
        }
        x.consume(batch(vec![resource("svc", vec![m])]))
            .await
            .unwrap();
    }
    assert!(t.wait_sent("metrics", 3.0).await);
    let s = r.samples();
    assert_eq!(s.len(), 1, "{:?}", s.keys());
    assert_eq!(
        s["__name__=orders_total,job=svc,method=GET"],
        vec![(1000, 3.0), (1001, 7.0), (1002, 12.0)]
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

fn layout(shards: usize) -> super::RequestLayout {
    super::RequestLayout {
        translation: crate::helper::prometheus::TranslationConfig {
            add_metric_suffixes: true,
            ..Default::default()
        },
        target_info: true,
        num_shards: shards,
        max_request_bytes: 3_000_000,
    }
}

fn decode_all(r: &super::Requests) -> Vec<super::TimeSeries> {
    r.shards
        .iter()
        .flatten()
        .flat_map(|body| WriteRequest::decode(body.as_slice()).unwrap().timeseries)
        .collect()
}

#[test]
fn bodies_are_write_requests_with_labels_in_byte_order() {
    use crate::helper::testutil::metrics::{histogram, kv};
    let mut h = histogram("h", vec![1; 9], 2.0, 1000);
    if let Some(pipeline_core::proto::tonic::metrics::v1::metric::Data::Histogram(d)) = &mut h.data
    {
        // Uppercase sorts before `__name__`, `lz` after `le`.
        d.data_points[0].attributes = vec![kv("Zone", "z"), kv("a", "1"), kv("lz", "2")];
    }
    let r = super::build_requests(&[resource("svc", vec![h])], &layout(3));
    let series = decode_all(&r);
    // 9 buckets, sum, count, target_info.
    assert_eq!(series.len(), 12);
    assert_eq!(r.samples, 12);
    for ts in &series {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert!(names.contains(&"__name__"));
    }
    let bucket = series
        .iter()
        .find(|t| t.labels.iter().any(|l| l.name == "le" && l.value == "0.1"))
        .unwrap();
    let names: Vec<&str> = bucket.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Zone", "__name__", "a", "job", "le", "lz"]);
    assert_eq!(bucket.labels[1].value, "h_seconds_bucket");
    assert_eq!(bucket.samples[0].value, 3.0);
    assert_eq!(bucket.samples[0].timestamp, 1000);
}

#[test]
fn repeated_series_are_grouped_in_time_order_one_sample_per_timestamp() {
    let point = |v: i64, t: u64| resource("svc", vec![counter("c", &[("GET", v)], t)]);
    let rm = vec![
        point(3, 3000),
        point(1, 1000),
        point(2, 2000),
        point(9, 2000),
    ];
    let r = super::build_requests(&rm, &layout(2));
    let series = decode_all(&r);
    let c: Vec<_> = series
        .iter()
        .filter(|t| t.labels.iter().any(|l| l.value == "c_total"))
        .collect();
    assert_eq!(c.len(), 1, "{series:?}");
    let samples: Vec<(i64, f64)> = c[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    // The later point of the batch wins at 2000.
    assert_eq!(samples, vec![(1000, 1.0), (2000, 9.0), (3000, 3.0)]);
    // target_info too: once per timestamp.
    let info: Vec<_> = series
        .iter()
        .filter(|t| t.labels.iter().any(|l| l.value == "target_info"))
        .collect();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].samples.len(), 3);
}

#[tokio::test]
async fn a_persistent_queue_delivers_after_a_restart_in_order() {
    let storage = std::env::temp_dir().join(format!(
        "sightline-prw-pq-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let queue = json!({"sending_queue": {"storage": storage, "fsync": "always"}});
    // First life: the endpoint refuses everything; three batches are written to disk.
    let (r, server) = receiver().await;
    r.answers
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((503, Some("0"), "down"), 10_000));
    let t = TestCtx::new("prometheusremotewrite");
    let x = start_exporter(&Factory, &t, config(&server, queue.clone())).await;
    for round in 0..3i64 {
        x.consume(batch(vec![resource(
            "svc",
            vec![counter("c", &[("GET", round)], 1000 + round as u64)],
        )]))
        .await
        .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.send_attempts("failure") >= 1.0
        })
        .await
    );
    x.shutdown(in_secs(0.5)).await.unwrap();
    assert!(r.requests().is_empty());
    drop((x, server));
    // Second life on the same directory: everything arrives, in the order it was written.
    let (r, t, x, _server) = {
        let (r, server) = receiver().await;
        let t = TestCtx::new("prometheusremotewrite");
        let x = start_exporter(&Factory, &t, config(&server, queue)).await;
        (r, t, x, server)
    };
    assert!(t.wait_sent("metrics", 3.0).await);
    let samples = r.samples();
    let got = samples
        .get("__name__=c_total,job=svc,method=GET")
        .unwrap_or_else(|| panic!("{:?}", samples.keys()));
    assert_eq!(got, &vec![(1000, 0.0), (1001, 1.0), (1002, 2.0)]);
    x.shutdown(in_secs(5.0)).await.unwrap();
    let _ = std::fs::remove_dir_all(&storage);
}
