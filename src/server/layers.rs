//! The tower stack every request passes: tracing, timeout, concurrency limit, body limit.

use std::time::Duration;

use axum::http::StatusCode;
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
        .layer(ConcurrencyLimitLayer::new(limits.concurrency))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http())
}
