//! The `otlp` receiver's config, with the OpenTelemetry Collector's key names.

use pipeline_core::config::present_means_enabled;
use pipeline_core::net::TlsServerConfig;
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

/// `receivers.otlp`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Which protocols to serve; a key that is present (even empty) turns one on.
    pub protocols: Protocols,
}

/// `protocols`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub http: Option<HttpConfig>,
}

/// `protocols.grpc`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest message accepted, in MiB, after decompression.
    pub max_recv_msg_size_mib: u64,
    /// Serve over TLS.
    pub tls: Option<TlsServerConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".into(),
            max_recv_msg_size_mib: 4,
            tls: None,
        }
    }
}

/// `protocols.http`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest request body accepted, in bytes, both as sent and after decompression.
    pub max_request_body_size: u64,
    /// Serve over TLS.
    pub tls: Option<TlsServerConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 4 * 1024 * 1024,
            tls: None,
        }
    }
}

impl ComponentConfig for OtlpReceiverConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "protocols": { "grpc": null, "http": null } })
    }

    fn listen_addresses(&self) -> Vec<String> {
        OtlpReceiverConfig::listen_addresses(self)
    }

    /// Checks what serde cannot: at least one protocol, sane limits, parseable endpoints.
    fn validate(&self) -> Result<(), FieldError> {
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            return Err(FieldError::new(
                "protocols",
                "enable at least one of grpc and http",
            ));
        }
        if let Some(g) = &self.protocols.grpc {
            check_endpoint("protocols.grpc.endpoint", &g.endpoint)?;
            if g.max_recv_msg_size_mib == 0 || g.max_recv_msg_size_mib > 1024 {
                return Err(FieldError::new(
                    "protocols.grpc.max_recv_msg_size_mib",
                    "must be between 1 and 1024",
                ));
            }
        }
        if let Some(h) = &self.protocols.http {
            check_endpoint("protocols.http.endpoint", &h.endpoint)?;
            if h.max_request_body_size == 0 || h.max_request_body_size > 1 << 30 {
                return Err(FieldError::new(
                    "protocols.http.max_request_body_size",
                    "must be between 1 byte and 1 GiB",
                ));
            }
        }
        Ok(())
    }
}

impl OtlpReceiverConfig {
    /// The addresses this config listens on.
    pub fn listen_addresses(&self) -> Vec<String> {
        let grpc = self.protocols.grpc.iter().map(|g| g.endpoint.clone());
        grpc.chain(self.protocols.http.iter().map(|h| h.endpoint.clone()))
            .collect()
    }
}

fn check_endpoint(path: &str, endpoint: &str) -> Result<(), FieldError> {
    match endpoint.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(FieldError::new(
            path,
            format!("{endpoint:?} is not host:port"),
        )),
    }
}
