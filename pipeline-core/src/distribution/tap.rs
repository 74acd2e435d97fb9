//! `sightline tap`: both ends. The server side streams samples of a running component's
//! output at `GET /tap?component=ID[&kind=K][&limit=N][&rate=R]` on the self-telemetry
//! endpoint, one OTLP/JSON export request per line (see [`crate::tap`] for how sampling stays
//! off the pipeline's back). The client side connects to it and copies the lines to stdout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty};

use super::page::LiveView;
use crate::component::ComponentKind;
use crate::tap::Subscription;
use crate::telemetry::Telemetry;

/// Samples per second a tap gets unless it asks otherwise.
pub(crate) const DEFAULT_RATE: u32 = 10;
/// The most samples per second a tap may ask for.
pub(crate) const MAX_RATE: u32 = 100;

/// What `sightline tap` was asked.
#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    /// The self-telemetry endpoint of the running service (`service.telemetry.metrics.endpoint`).
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub endpoint: String,
    /// The component whose output to sample, by its ID in the config (`batch`, `otlp/backend`).
    pub component: String,
    /// Its kind, when a receiver and an exporter (say) share the ID.
    #[arg(long, value_parser = ["receiver", "processor", "exporter", "connector"])]
    pub kind: Option<String>,
    /// Stop after this many samples (default: until interrupted).
    #[arg(long)]
    pub limit: Option<usize>,
    /// At most this many samples per second (1 to 100).
    #[arg(long, default_value_t = DEFAULT_RATE, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rate: u32,
}

/// `GET /tap`: the stream of samples, or 400/404/503 with the reason as text.
pub(crate) fn serve(telemetry: &Telemetry, live: &Arc<LiveView>, query: Option<&str>) -> Response {
    let params = parse_query(query.unwrap_or(""));
    let text = |status: StatusCode, message: String| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message + "\n",
        )
            .into_response()
    };
    let Some(component) = params.get("component") else {
        return text(StatusCode::BAD_REQUEST, "missing ?component=ID".into());
    };
    let kind = match params.get("kind").map(|k| ComponentKind::parse(k).ok_or(k)) {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(k)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("kind {k:?}: expected receiver, processor, exporter or connector"),
            );
        }
    };
    let number = |name: &'static str| params.get(name).map(|v| v.parse::<u64>().map_err(|_| name));
    let (limit, rate) = match (number("limit"), number("rate")) {
        (Some(Err(name)), _) | (_, Some(Err(name))) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{name}: expected a whole number"),
            );
        }
        (limit, rate) => (
            limit.and_then(Result::ok),
            rate.and_then(Result::ok).unwrap_or(u64::from(DEFAULT_RATE)),
        ),
    };
    let (kind, id) = match live.find(component, kind) {
        Ok(found) => found,
        Err(message) => return text(StatusCode::NOT_FOUND, message),
    };
    let rate = u32::try_from(rate.clamp(1, u64::from(MAX_RATE))).unwrap_or(DEFAULT_RATE);
    match telemetry.taps().subscribe(kind, &id, rate) {
        Ok(subscription) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::new(TapBody {
                subscription,
                remaining: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            }),
        )
            .into_response(),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The response body: one OTLP/JSON line per sample until `remaining` runs out or the client
/// goes away (which drops the body and with it the subscription).
struct TapBody {
    subscription: Subscription,
    remaining: Option<usize>,
}

impl http_body::Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if self.remaining == Some(0) {
                return Poll::Ready(None);
            }
            let Some(sample) = std::task::ready!(self.subscription.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            match sample.to_json_line() {
                Ok(line) => {
                    if let Some(n) = &mut self.remaining {
                        *n -= 1;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))));
                }
                Err(e) => tracing::warn!(error = %e, "tap: sample skipped"),
            }
        }
    }
}

/// `a=b&c=d%2Fe` as a map, `+` and `%XX` decoded.
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX`-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The client: prints the samples as they come. Exit codes: 0 when the stream ended (the
/// limit reached) or stdout closed, 1 when the endpoint cannot be reached or refuses the tap.
pub(crate) fn run(args: TapArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sightline tap: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(client(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sightline tap: {message}");
            ExitCode::from(1)
        }
    }
}

async fn client(args: &TapArgs) -> Result<(), String> {
    let endpoint = args
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
    tokio::spawn(connection);
    let mut path = format!(
        "/tap?component={}&rate={}",
        encode(&args.component),
        args.rate
    );
    if let Some(kind) = &args.kind {
        path.push_str(&format!("&kind={kind}"));
    }
    if let Some(limit) = args.limit {
        path.push_str(&format!("&limit={limit}"));
    }
    let request = hyper::Request::get(path)
        .header(header::HOST, endpoint)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    if status != StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(format!("{status}: {text}"));
    }
    eprintln!(
        "sightline tap: sampling the output of {} at {endpoint} (at most {}/s)",
        args.component, args.rate
    );
    let mut stdout = std::io::stdout().lock();
    let mut lines = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("stream: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if stdout
                .write_all(data)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return Ok(()); // stdout closed (`| head`): done.
            }
            lines += data.iter().filter(|b| **b == b'\n').count();
            if args.limit.is_some_and(|l| lines >= l) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_round_trip() {
        let q = format!("component={}&limit=3&x", encode("otlp/back end"));
        let p = parse_query(&q);
        assert_eq!(p["component"], "otlp/back end");
        assert_eq!(p["limit"], "3");
        assert_eq!(p["x"], "");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz+"), "%zz ");
        assert_eq!(decode("é%41"), "éA");
    }
}
