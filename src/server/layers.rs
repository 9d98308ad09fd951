//! The tower stack every request passes: tracing, timeout, concurrency limit, body limit.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Limits;

/// Wraps a router in the edge limits.
pub fn edge(router: Router, limits: &Limits) -> Router {
    router
        .layer(axum::middleware::from_fn(refuse_nul_in_url))
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(axum::middleware::map_response(close_after_too_large))
        .layer(ConcurrencyLimitLayer::new(limits.concurrency))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http().on_failure(log_failure))
}

/// Server errors in the log: 501 (an operation Vellum does not offer, such as EST
/// fullcmc) is a client's choice, logged at info; every other 5xx is an error.
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
async fn refuse_nul_in_url(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri();
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
    };
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return crate::error::Error::bad_request(
            "the URL holds an encoded NUL character (%00), which no path segment or query parameter accepts",
        )
        .into_response();
    }
    next.run(req).await
}

/// A 413 is answered before the body was read, so the rest of it is still on the wire:
/// the connection closes after the answer, and says so, so that an HTTP/1.1 client does
/// not send its next request on a connection the server is closing (hyper drops the
/// header on HTTP/2, where a stream reset does the same).
async fn close_after_too_large(mut resp: Response) -> Response {
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
