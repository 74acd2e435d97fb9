//! What every network exporter shares: the OpenTelemetry Collector's exporter helper.
//!
//! Data comes in through [`QueuedExporter`]'s [`Consumer`](pipeline_core::Consumer)
//! implementation, waits in a bounded [`MemoryQueue`](pipeline_core::queue::MemoryQueue)
//! (`sending_queue`), and is taken out by `num_consumers` workers that hand each batch to a
//! [`Sender`] (the protocol part: gRPC, HTTP, ...) with a `timeout`, retrying passing failures
//! with exponential backoff (`retry_on_failure`). Every item accepted ends up either counted
//! as sent or counted as dropped with a reason; health follows the backend.
//!
//! A [`Sender`] that sends one batch as several requests (a Loki push split by size, one
//! Jaeger `PostSpans` per resource) records in [`SendProgress`] what the backend already
//! took, so a retry resumes after it: nothing is sent twice, and the batch's acknowledgement
//! tokens are resolved delivered only when every part was accepted.
//!
//! The protocol clients are shared too: [`grpc::GrpcClient`] (tonic, unary calls of encoded
//! messages) and [`http::HttpPoster`] (hyper with rustls).
//!
//! The rest is shared vocabulary for the OTLP exporters: header, compression and TLS config
//! ([`Headers`], [`Compression`], [`TlsConfig`]), OTLP request encoding and partial-success
//! decoding per signal ([`codec`]); the `google.rpc` messages live in `pipeline_core::rpc`.
//! Every exporter that names a URL in a log line, a health reason or an error shows it
//! through [`redact_url`], without query string or user info.

pub mod codec;
mod config;
mod exporter;
pub mod grpc;
mod health;
pub mod http;
pub mod prometheus;
mod redact;
mod retry;
pub use pipeline_core::rpc;
mod sender;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
mod tls;
pub mod values;

pub use config::{
    Compression, ExporterSettings, FsyncPolicy, Headers, QueueConfig, RetryConfig, Sizer,
    default_timeout, parse_endpoint,
};
pub use exporter::{Fallback, QueuedExporter};
pub use redact::redact_url;
pub use retry::{Backoff, RETRY_AFTER_CAP};
pub use sender::{
    Delivered, PartAnswer, SendError, SendProgress, Sender, describe_error, send_in_parts,
};
pub use tls::{CaCertificates, TlsConfig, TlsError};

/// The `User-Agent` the network exporters send: `sightline/<version>`.
pub const USER_AGENT: &str = concat!("sightline/", env!("CARGO_PKG_VERSION"));

/// Drop reason for items an exporter accepted but could not write (a local file or stream
/// failed). The standard reasons are in [`pipeline_core::telemetry::reason`].
pub const WRITE_FAILED: &str = "write_failed";
