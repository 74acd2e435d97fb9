//! Building OTLP metrics from scraped numbers: sums with a fixed start time, gauges, and
//! data point attributes written as the semantic conventions name them.

use pipeline_core::attributes::string;
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
};

/// A number as OTLP carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
}

/// One data point: attributes and value.
pub(crate) type Point<'a> = (&'a [(&'a str, &'a str)], Num);

/// Collects the metrics of one scrape.
pub(crate) struct Emitter {
    /// Start of cumulative series (boot time, fixed across scrapes), Unix nanoseconds.
    pub(crate) start_time: u64,
    /// The scrape's time, Unix nanoseconds.
    pub(crate) now: u64,
    /// What was built.
    pub(crate) metrics: Vec<Metric>,
}

fn attributes(attrs: &[(&str, &str)]) -> Vec<KeyValue> {
    attrs.iter().map(|(k, v)| string(k, *v)).collect()
}

impl Emitter {
    fn points(&self, points: &[Point<'_>], cumulative: bool) -> Vec<NumberDataPoint> {
        points
            .iter()
            .map(|(attrs, num)| NumberDataPoint {
                attributes: attributes(attrs),
                start_time_unix_nano: if cumulative { self.start_time } else { 0 },
                time_unix_nano: self.now,
                value: Some(match num {
                    Num::Int(i) => number_data_point::Value::AsInt(*i),
                    Num::Double(d) => number_data_point::Value::AsDouble(*d),
                }),
                ..Default::default()
            })
            .collect()
    }

    /// A cumulative sum (a counter when `monotonic`, an up-down counter otherwise).
    pub(crate) fn sum(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        monotonic: bool,
        points: &[Point<'_>],
    ) {
        if points.is_empty() {
            return;
        }
        let data_points = self.points(points, true);
        self.metrics.push(Metric {
            name: name.into(),
            unit: unit.into(),
            description: description.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        });
    }

    /// A gauge.
    pub(crate) fn gauge(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        points: &[Point<'_>],
    ) {
        if points.is_empty() {
            return;
        }
        let data_points = self.points(points, false);
        self.metrics.push(Metric {
            name: name.into(),
            unit: unit.into(),
            description: description.into(),
            data: Some(metric::Data::Gauge(Gauge { data_points })),
            ..Default::default()
        });
    }
}
