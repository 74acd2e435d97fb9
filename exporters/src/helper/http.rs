//! What the HTTP exporters share: a lazily built hyper client (plain or rustls), one POST
//! with its answer read up to a bound, `Retry-After`, and error details cut short.

use std::time::Duration;

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use super::redact_url;

use super::{SendError, TlsConfig, describe_error};

/// Answers are small (a partial success, an error message); more than this is not read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Error details quoted in reasons are cut to this many characters.
pub const MAX_DETAIL_CHARS: usize = 256;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP/1.1 and HTTP/2 client for `http://` and `https://` URLs, built on first use
/// (reading the TLS settings' files then).
pub struct LazyClient {
    tls: TlsConfig,
    client: OnceCell<HttpClient>,
}

impl LazyClient {
    /// A client that will trust what `tls` says.
    pub fn new(tls: TlsConfig) -> LazyClient {
        LazyClient {
            tls,
            client: OnceCell::new(),
        }
    }

    /// Builds the client now if it is not built yet; the error says why it cannot be.
    pub async fn get(&self) -> Result<HttpClient, String> {
        self.client
            .get_or_try_init(|| async { self.build() })
            .await
            .cloned()
    }

    /// Builds the client (for an exporter's `start`): a TLS file that cannot be read fails it.
    pub async fn start(&self) -> Result<(), pipeline_core::ComponentError> {
        self.get()
            .await
            .map(|_| ())
            .map_err(pipeline_core::ComponentError::Other)
    }

    fn build(&self) -> Result<HttpClient, String> {
        let tls = self.tls.rustls_client_config().map_err(|e| e.to_string())?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Client::builder(TokioExecutor::new()).build(connector))
    }

    /// POSTs `body` with `headers` to `url` (shown in messages without its query string or
    /// user info, see [`redact_url`]); returns the answer's head and up to
    /// [`MAX_RESPONSE_BYTES`] of its body. A failed connection or exchange is retryable.
    pub async fn post(
        &self,
        url: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(Parts, Bytes), SendError> {
        let client = self.get().await.map_err(SendError::permanent_health)?;
        let mut request = Request::post(url.clone())
            .body(Full::new(body))
            .map_err(|e| SendError::permanent(format!("building the request: {e}")))?;
        *request.headers_mut() = headers.clone();
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
        Ok((parts, body))
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

/// `text` trimmed and cut to [`MAX_DETAIL_CHARS`]; `None` when empty.
pub fn cut_detail(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    })
}
