//! Test kits for exporter tests, here and in other crates: backends that speak a
//! destination's wire protocol strictly where the real one cannot run in a test
//! ([`loki::testing`](crate::loki::testing), [`jaeger::testing`](crate::jaeger::testing)),
//! and the plain HTTP/1 server loop they share.

use std::future::Future;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A server state that can answer HTTP requests and be taken down.
pub trait HttpHandler: Send + Sync + 'static {
    /// Whether new connections are closed unanswered (the server is "down").
    fn is_down(&self) -> bool {
        false
    }

    /// The answer to one request.
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves HTTP/1 on `listener` with `handler` until the handler is dropped.
pub fn serve_http<H: HttpHandler>(listener: TcpListener, handler: Weak<H>) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Some(handler) = handler.upgrade() else {
                return;
            };
            if handler.is_down() {
                drop(stream);
                continue;
            }
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, std::convert::Infallible>(handler.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// A response with `status` (400 if not a valid code) and a text body.
pub fn text_response(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    response
}
