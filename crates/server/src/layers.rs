//! The tower stack every request passes: tracing, the request-duration histogram,
//! draining of unread request bodies, timeout, concurrency limit, body limit, and problem
//! bodies for bare 405s.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use vellum_core::config::Limits;
use vellum_core::metrics::RouteFamily;

/// How long an answer waits at most for the unread rest of its request's body.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// How much of an unread body is read and discarded at least (more when the body limit is
/// larger: four times `limits.body_bytes`).
const DRAIN_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// Wraps a router in the edge limits.
pub fn edge(router: Router, limits: &Limits) -> Router {
    let drain = Drain {
        max_bytes: (limits.body_bytes as u64)
            .saturating_mul(4)
            .max(DRAIN_MIN_BYTES),
        max_time: DRAIN_TIME,
    };
    // The small per-request fixes (NUL in the URL, bare 405s, 413s that close, draining
    // unread bodies) share one middleware: each axum layer costs a service clone and a
    // boxed future per request, and the ACME flow makes nine requests per order.
    router
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(ConcurrencyLimitLayer::new(limits.concurrency))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(axum::middleware::from_fn_with_state(drain, fixups))
        .layer(TraceLayer::new_for_http().on_failure(log_failure))
}

/// Server errors in the log: 501 (an operation Vellum does not offer, such as EST
/// fullcmc) is a client's choice, logged at info; 503 (retry later) a warning; every
/// other 5xx is an error.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass;
    let ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::NOT_IMPLEMENTED) => {
            tracing::info!(latency_ms = ms, "answered 501 Not Implemented")
        }
        // The database is down or its disk full (logged where it was seen), or EST's
        // "cannot issue now": the client is told to retry.
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(latency_ms = ms, "answered 503 Service Unavailable")
        }
        ServerErrorsFailureClass::StatusCode(code) => {
            tracing::error!(latency_ms = ms, status = %code, "response failed")
        }
        ServerErrorsFailureClass::Error(e) => {
            tracing::error!(latency_ms = ms, error = %e, "response failed")
        }
    }
}

/// No path segment or query parameter of any Vellum URL may hold a NUL character
/// (`%00`): ids, labels and file names never do, and a NUL reaching the database is
/// refused there (PostgreSQL) or compared as text (SQLite). Refused here with a 400 the
/// client can read, on every door.
fn nul_in_url(uri: &axum::http::Uri) -> Option<Response> {
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
    };
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return Some(
            crate::problem::Problem(vellum_core::error::Error::bad_request(
                "the URL holds an encoded NUL character (%00), which no path segment or query parameter accepts",
            ))
            .into_response(),
        );
    }
    None
}

/// A 413 is answered before the body was read, so the rest of it may still be on the wire:
/// the connection closes after the answer, and says so, so that an HTTP/1.1 client does
/// not send its next request on a connection the server is closing (hyper drops the
/// header on HTTP/2).
fn close_after_too_large(mut resp: Response) -> Response {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// axum answers a known path with the wrong method with an empty 405; the API's errors
/// are problem documents (RFC 9457), so that one is too (its headers stay). Front ends that
/// write their own 405 (EST's text/plain one) set a content type and are left alone.
fn problem_for_bare_405(resp: Response) -> Response {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED
        || resp.headers().contains_key(header::CONTENT_TYPE)
    {
        return resp;
    }
    // axum adds `Allow` outside the route's layers, after this.
    let detail = "this endpoint does not take that method; the Allow header names those it does";
    let body = serde_json::json!({
        "type": "urn:vellum:problem:method-not-allowed",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": detail,
    });
    let (mut parts, _) = resp.into_parts();
    let mut out = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(out.headers_mut().drain());
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    *out.headers_mut() = parts.headers;
    out
}

/// The edge's per-request fixes, in one middleware: [`nul_in_url`] before the request
/// goes on; [`drain_unread_body`] around it; [`problem_for_bare_405`] and
/// [`close_after_too_large`] on the answer. The same middleware times the request for
/// `vellum_http_request_duration_seconds` (route family by path prefix, status class):
/// outside the timeout and the concurrency limit, so waits and 408s are counted too.
async fn fixups(State(drain): State<Drain>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let family = RouteFamily::of_path(req.uri().path());
    let resp = fixed(drain, req, next).await;
    vellum_core::metrics::http_request(family, resp.status().as_u16(), started.elapsed());
    resp
}

async fn fixed(drain: Drain, req: Request, next: Next) -> Response {
    if let Some(mut refused) = nul_in_url(req.uri()) {
        let http1 = req.version() < Version::HTTP_2;
        let body = req.into_body();
        if !body.is_end_stream() && !discard(body, drain).await && http1 {
            refused
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return refused;
    }
    let resp = drain_unread_body(drain, req, next).await;
    close_after_too_large(problem_for_bare_405(resp))
}

/// Bounds of [`drain_unread_body`].
#[derive(Debug, Clone, Copy)]
struct Drain {
    max_bytes: u64,
    max_time: Duration,
}

/// What the handler left of a request body.
#[derive(Default)]
struct Leftover {
    /// The rest of the body, put here when the handler drops it before its end.
    rest: Mutex<Option<Body>>,
    /// Whether anyone read from the body at all.
    polled: AtomicBool,
}

/// A request body that hands its unread rest to [`Leftover`] when dropped early.
struct Tracked {
    inner: Body,
    leftover: Arc<Leftover>,
    finished: bool,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.leftover.polled.store(true, Ordering::Relaxed);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // After an error there is nothing left worth reading.
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.finished && !self.inner.is_end_stream() {
            if let Ok(mut rest) = self.leftover.rest.lock() {
                *rest = Some(std::mem::take(&mut self.inner));
            }
        }
    }
}

/// An answer given before the request body was read completely (no token, unknown path,
/// wrong method, body over the limit, timeout…) waits until the client has sent the rest,
/// which is read and thrown away, up to `max_bytes` and `max_time`.
///
/// Otherwise the client is still sending when the answer comes: on HTTP/2, h2 then ends
/// the stream with RST_STREAM(NO_ERROR) right after the answer (RFC 9113 §8.1), and
/// clients that are still uploading (curl) report "Stream error in the HTTP/2 framing
/// layer" instead of the answer; on HTTP/1.1 the server closes a connection whose socket
/// still holds unread data, the kernel sends a TCP reset, and the client may lose the
/// answer. A body cut off at a bound gets `Connection: close` on HTTP/1.1 (and the
/// RST_STREAM on HTTP/2). An HTTP/1.1 body behind `Expect: 100-continue` that nobody read
/// is not drained: hyper never sent the 100, so the client has not sent the body.
async fn drain_unread_body(drain: Drain, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let version = req.version();
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let leftover = Arc::new(Leftover::default());
    let req = req.map(|inner| {
        Body::new(Tracked {
            inner,
            leftover: leftover.clone(),
            finished: false,
        })
    });
    let mut resp = next.run(req).await;
    let rest = leftover.rest.lock().ok().and_then(|mut r| r.take());
    let Some(rest) = rest else {
        return resp;
    };
    let http1 = version < Version::HTTP_2;
    if http1 && expects_continue && !leftover.polled.load(Ordering::Relaxed) {
        return resp;
    }
    if !discard(rest, drain).await && http1 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and drops `body` to its end; false when a bound or an error stopped it first.
async fn discard(mut body: Body, drain: Drain) -> bool {
    let deadline = tokio::time::Instant::now() + drain.max_time;
    let mut seen: u64 = 0;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen > drain.max_bytes {
                        return false;
                    }
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}
