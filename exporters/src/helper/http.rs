//! An HTTP client for exporters that POST request bodies: hyper with rustls (ring), made on
//! first use, plus the parts of an HTTP answer every HTTP exporter reads the same way
//! (`Retry-After`, a short error detail).

use std::time::Duration;

use bytes::Bytes;
use http::header::{RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pipeline_core::ComponentError;
use tokio::sync::OnceCell;

use super::redact::redact_url;
use super::sender::{SendError, describe_error};
use super::tls::TlsConfig;

type HyperClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Responses are small (a partial success, an error message); more than this is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Error details quoted in reasons are cut to this many characters.
const MAX_DETAIL_CHARS: usize = 256;

/// What came back for one POST.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most 64 KiB of it.
    pub body: Bytes,
}

impl HttpAnswer {
    /// The server's `Retry-After`, when it sent one in seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers.get(RETRY_AFTER).and_then(parse_retry_after)
    }
}

/// POSTs bodies with a fixed set of headers (`User-Agent: sightline/<version>` unless the
/// headers name another) over a client made on first use.
pub struct HttpPoster {
    headers: HeaderMap,
    tls: TlsConfig,
    client: OnceCell<HyperClient>,
}

impl HttpPoster {
    /// A poster sending `headers` with every request, trusting what `tls` says for
    /// `https://`. Nothing is read or connected until [`HttpPoster::start`] or the first post.
    pub fn new(mut headers: HeaderMap, tls: TlsConfig) -> HttpPoster {
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(super::USER_AGENT));
        }
        HttpPoster {
            headers,
            tls,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<HyperClient, String> {
        self.client
            .get_or_try_init(|| async { self.build_client() })
            .await
            .cloned()
    }

    fn build_client(&self) -> Result<HyperClient, String> {
        let tls = self.tls.rustls_client_config().map_err(|e| e.to_string())?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Client::builder(TokioExecutor::new()).build(connector))
    }

    /// Builds the client (reads `tls.ca_file`); fails the exporter's start when it cannot.
    pub async fn start(&self) -> Result<(), ComponentError> {
        self.client()
            .await
            .map(|_| ())
            .map_err(ComponentError::Other)
    }

    /// One POST of `body` to `url`. A connection failure is retryable; any answer is
    /// returned for the caller to interpret. Messages show `url` without its query string or
    /// user info ([`redact_url`]).
    pub async fn post(&self, url: &Uri, body: Bytes) -> Result<HttpAnswer, SendError> {
        let client = self.client().await.map_err(SendError::permanent_health)?;
        let mut request = Request::post(url.clone())
            .body(Full::new(body))
            .map_err(|e| SendError::permanent(format!("building the request: {e}")))?;
        *request.headers_mut() = self.headers.clone();
        let response = client.request(request).await.map_err(|e| {
            let shown = redact_url(&url.to_string());
            SendError::retryable(format!("POST {shown}: {}", describe_error(&e)))
        })?;
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let shown = redact_url(&url.to_string());
                tracing::debug!(url = %shown, error = %e, "could not read the response body");
                Bytes::new()
            }
        };
        Ok(HttpAnswer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// `Retry-After` in delay-seconds. The HTTP-date form is not read (backends answering
/// exporters send seconds); it, like anything unreadable, falls back to the computed backoff.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    value
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `text` trimmed and cut to 256 characters (with `...` when cut); `None` when empty.
pub fn short_detail(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    })
}

/// `e` with `POST <url>: ` in front of its reason, the URL without its query string or user
/// info ([`redact_url`]).
pub fn prefix_post(e: SendError, url: &Uri) -> SendError {
    e.prefixed(format_args!("POST {}", redact_url(&url.to_string())))
}
