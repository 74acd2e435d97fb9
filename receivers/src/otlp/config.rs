//! The `otlp` receiver's config, with the OpenTelemetry Collector's key names.

use pipeline_core::config::{HumanDuration, Secret, present_means_enabled};
use pipeline_core::net::{ServerOptions, TlsServerConfig};
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

/// `receivers.otlp`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Which protocols to serve; a key that is present (even empty) turns one on.
    pub protocols: Protocols,
    /// Who may send, on both protocols; absent: anyone who can connect.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Most bytes of request bodies read or being handled at once, both protocols together
    /// (default `64MiB`): a gRPC request takes `max_recv_msg_size_mib`, an HTTP request its
    /// `Content-Length` (or `max_request_body_size` when unknown or compressed); the rest wait
    /// up to 5 s, then get 503 / `UNAVAILABLE`.
    #[serde(default = "default_request_bytes_in_flight")]
    pub max_request_bytes_in_flight: pipeline_core::config::ByteSize,
}

fn default_request_bytes_in_flight() -> pipeline_core::config::ByteSize {
    pipeline_core::config::ByteSize(super::ingest::DEFAULT_REQUEST_BYTES_IN_FLIGHT as u64)
}

/// `auth`: clients must send `Authorization: Bearer <token>` (gRPC: `authorization`
/// metadata) with one of these tokens.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens (use `${env:VAR}`); compared in constant time.
    pub bearer_tokens: Vec<Secret>,
}

/// The server options of one protocol's connection limits (a zero timeout means none).
fn server_options(
    max_connections: usize,
    read_header_timeout: HumanDuration,
    tls_handshake_timeout: HumanDuration,
) -> ServerOptions {
    let nonzero = |d: HumanDuration| (!d.get().is_zero()).then_some(d.get());
    ServerOptions {
        max_connections,
        read_header_timeout: nonzero(read_header_timeout),
        tls_handshake_timeout: nonzero(tls_handshake_timeout),
        ..ServerOptions::default()
    }
}

/// Default `max_connections`.
const MAX_CONNECTIONS: usize = 1000;
/// Default `read_header_timeout`, as the OpenTelemetry Collector's HTTP servers.
const READ_HEADER_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);
/// Default `tls_handshake_timeout`, as Go's HTTP transport.
const TLS_HANDSHAKE_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);

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
    /// Calls one connection may have open at once (HTTP/2 streams, advertised to clients).
    pub max_concurrent_streams: u32,
    /// Connections served at once; one more is accepted and closed at once (0: no limit).
    pub max_connections: usize,
    /// How long a new connection may take to send its first request's headers (HTTP/1) or
    /// the HTTP/2 preface (`0`: no limit).
    pub read_header_timeout: HumanDuration,
    /// How long a TLS handshake may take (`0`: no limit).
    pub tls_handshake_timeout: HumanDuration,
    /// Serve over TLS.
    pub tls: Option<TlsServerConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".into(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 100,
            max_connections: MAX_CONNECTIONS,
            read_header_timeout: READ_HEADER_TIMEOUT,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
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
    /// Connections served at once; one more is accepted and closed at once (0: no limit).
    pub max_connections: usize,
    /// How long a new connection may take to send its first request's headers (HTTP/1) or
    /// the HTTP/2 preface (`0`: no limit).
    pub read_header_timeout: HumanDuration,
    /// How long a TLS handshake may take (`0`: no limit).
    pub tls_handshake_timeout: HumanDuration,
    /// Serve over TLS.
    pub tls: Option<TlsServerConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 4 * 1024 * 1024,
            max_connections: MAX_CONNECTIONS,
            read_header_timeout: READ_HEADER_TIMEOUT,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            tls: None,
        }
    }
}

impl GrpcConfig {
    /// The server's connection limits.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            max_concurrent_streams: Some(self.max_concurrent_streams),
            ..server_options(
                self.max_connections,
                self.read_header_timeout,
                self.tls_handshake_timeout,
            )
        }
    }
}

impl HttpConfig {
    /// The server's connection limits.
    pub fn server_options(&self) -> ServerOptions {
        server_options(
            self.max_connections,
            self.read_header_timeout,
            self.tls_handshake_timeout,
        )
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
            if g.max_concurrent_streams == 0 {
                return Err(FieldError::new(
                    "protocols.grpc.max_concurrent_streams",
                    "must be at least 1",
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
        if let Some(auth) = &self.auth {
            if auth.bearer_tokens.is_empty() {
                return Err(FieldError::new(
                    "auth.bearer_tokens",
                    "list at least one token, or leave auth out",
                ));
            }
            if let Some(i) = auth
                .bearer_tokens
                .iter()
                .position(|t| t.expose().trim().is_empty())
            {
                return Err(FieldError::new(
                    format!("auth.bearer_tokens.{i}"),
                    "must not be empty",
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
