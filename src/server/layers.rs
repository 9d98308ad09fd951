//! The tower stack every request passes: tracing, timeout, concurrency limit, body limit.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Limits;

/// Wraps a router in the edge limits.
pub fn edge(router: Router, limits: &Limits) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(axum::middleware::map_response(close_after_too_large))
        .layer(ConcurrencyLimitLayer::new(limits.concurrency))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http())
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
