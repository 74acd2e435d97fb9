//! A strict Jaeger collector for tests (Jaeger itself cannot be installed where the tests
//! run). One gRPC port serves both what a Jaeger collector serves on 14250 and 4317:
//! `jaeger.api_v2.CollectorService/PostSpans` (decoded with the api_v2 messages of
//! [`super::model`], checking the ID lengths and the process as Jaeger's model does) and the
//! OTLP `TraceService`; a second, HTTP, port takes OTLP `POST /v1/traces` as on 4318.
//! Calls can be scripted to fail; only accepted data is recorded.

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use pipeline_core::proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use pipeline_core::proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};

use super::model::{Batch, POST_SPANS_PATH, PostSpansRequest, PostSpansResponse};
use crate::helper::grpc::{RawCodec, RequestBody};
use crate::testing::{HttpHandler, serve_http, text_response};

#[derive(Default)]
struct State {
    jaeger: Vec<Batch>,
    otlp: Vec<ExportTraceServiceRequest>,
    script: VecDeque<Option<Status>>,
    calls: usize,
    violations: Vec<String>,
}

/// The collector; see the module docs.
pub struct JaegerCollector {
    grpc: SocketAddr,
    http: SocketAddr,
    state: Mutex<State>,
    /// The gRPC listener until [`JaegerCollector::resume`] serves it.
    paused: Mutex<Option<TcpListener>>,
}

impl JaegerCollector {
    /// Serves gRPC and HTTP on free ports of 127.0.0.1.
    pub async fn start() -> std::io::Result<Arc<JaegerCollector>> {
        let collector = JaegerCollector::start_paused().await?;
        collector.resume();
        Ok(collector)
    }

    /// Like [`JaegerCollector::start`], but the gRPC port, though bound, answers nothing
    /// until [`JaegerCollector::resume`]: connections wait in the backlog, as with a
    /// collector that is restarting.
    pub async fn start_paused() -> std::io::Result<Arc<JaegerCollector>> {
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let collector = Arc::new(JaegerCollector {
            grpc: grpc.local_addr()?,
            http: http.local_addr()?,
            state: Mutex::new(State::default()),
            paused: Mutex::new(Some(grpc)),
        });
        serve_http(http, Arc::downgrade(&collector));
        Ok(collector)
    }

    /// Starts serving gRPC (once).
    pub fn resume(self: &Arc<Self>) {
        let Some(grpc) = self.paused.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let router = Server::builder()
            .add_service(PostSpansService(Arc::clone(self)))
            .add_service(
                TraceServiceServer::new(OtlpService(Arc::clone(self)))
                    .accept_compressed(CompressionEncoding::Gzip),
            );
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(grpc)));
    }

    /// The gRPC address (`host:port`).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The OTLP/HTTP base URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails the next unscripted call (of any protocol) with `status`.
    pub fn fail_next(&self, status: Status) {
        self.state().script.push_back(Some(status));
    }

    /// Lets the next unscripted call through (to script a failure after it).
    pub fn pass_next(&self) {
        self.state().script.push_back(None);
    }

    /// Calls received, failed or not.
    pub fn calls(&self) -> usize {
        self.state().calls
    }

    /// Batches accepted through `PostSpans`.
    pub fn jaeger_batches(&self) -> Vec<Batch> {
        self.state().jaeger.clone()
    }

    /// Requests accepted through OTLP (gRPC or HTTP).
    pub fn otlp_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.state().otlp.clone()
    }

    /// What Jaeger would have refused.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// Counts a call; the scripted failure, if any.
    fn begin_call(&self) -> Result<(), Status> {
        let mut state = self.state();
        state.calls += 1;
        state.script.pop_front().flatten().map_or(Ok(()), Err)
    }

    fn post_spans(&self, body: &[u8]) -> Result<(), Status> {
        self.begin_call()?;
        let request = PostSpansRequest::decode(body)
            .map_err(|e| Status::invalid_argument(format!("decoding PostSpansRequest: {e}")))?;
        let checked = request
            .batch
            .ok_or_else(|| "PostSpansRequest without a batch".to_string())
            .and_then(|b| check(&b).map(|()| b));
        let mut state = self.state();
        match checked {
            Ok(batch) => {
                state.jaeger.push(batch);
                Ok(())
            }
            Err(why) => {
                state.violations.push(why.clone());
                Err(Status::invalid_argument(why))
            }
        }
    }

    fn export_otlp(&self, request: ExportTraceServiceRequest) -> Result<(), Status> {
        self.begin_call()?;
        self.state().otlp.push(request);
        Ok(())
    }
}

/// What Jaeger's model refuses: IDs of the wrong length, spans without a process or a
/// start, a process without a service name.
fn check(batch: &Batch) -> Result<(), String> {
    let process = batch.process.as_ref().ok_or("batch without a process")?;
    if process.service_name.is_empty() {
        return Err("process without a service name".into());
    }
    for span in &batch.spans {
        if span.trace_id.len() != 16 || span.span_id.len() != 8 {
            return Err(format!(
                "span {:?}: trace ID of {} bytes, span ID of {}",
                span.operation_name,
                span.trace_id.len(),
                span.span_id.len()
            ));
        }
        if span.start_time.is_none() || span.duration.is_none() {
            return Err(format!(
                "span {:?} without start or duration",
                span.operation_name
            ));
        }
        for r in &span.references {
            if r.trace_id.len() != 16 || r.span_id.len() != 8 {
                return Err(format!("span {:?}: bad reference", span.operation_name));
            }
        }
    }
    Ok(())
}

/// `jaeger.api_v2.CollectorService`, without generated code.
#[derive(Clone)]
struct PostSpansService(Arc<JaegerCollector>);

impl NamedService for PostSpansService {
    const NAME: &'static str = "jaeger.api_v2.CollectorService";
}

impl Service<http::Request<tonic::body::Body>> for PostSpansService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let collector = Arc::clone(&self.0);
        Box::pin(async move {
            if request.uri().path() != POST_SPANS_PATH {
                return Ok(Status::unimplemented(request.uri().path().to_string()).into_http());
            }
            let mut grpc =
                tonic::server::Grpc::new(RawCodec).accept_compressed(CompressionEncoding::Gzip);
            Ok(grpc.unary(PostSpansCall(collector), request).await)
        })
    }
}

struct PostSpansCall(Arc<JaegerCollector>);

impl tonic::server::UnaryService<Bytes> for PostSpansCall {
    type Response = RequestBody;
    type Future = BoxFuture<tonic::Response<RequestBody>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let collector = Arc::clone(&self.0);
        Box::pin(async move {
            collector.post_spans(&request.into_inner())?;
            Ok(tonic::Response::new(RequestBody::from(Bytes::from(
                PostSpansResponse {}.encode_to_vec(),
            ))))
        })
    }
}

struct OtlpService(Arc<JaegerCollector>);

#[tonic::async_trait]
impl TraceService for OtlpService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        self.0.export_otlp(request.into_inner())?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl HttpHandler for JaegerCollector {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        if parts.uri.path() != "/v1/traces" {
            return text_response(404, "404 page not found");
        }
        let Ok(raw) = body.collect().await.map(|b| b.to_bytes()) else {
            return text_response(400, "unreadable body");
        };
        let mut plain = Vec::new();
        let gzip = parts
            .headers
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        let body: &[u8] = if gzip {
            if flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut plain)
                .is_err()
            {
                return text_response(400, "bad gzip");
            }
            &plain
        } else {
            &raw
        };
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return text_response(400, "bad protobuf");
        };
        match self.export_otlp(request) {
            Ok(()) => text_response(200, ""),
            Err(status) => {
                let code = match status.code() {
                    Code::Unavailable => 503,
                    Code::ResourceExhausted => 429,
                    _ => 400,
                };
                text_response(code, status.message())
            }
        }
    }
}
