//! The admin API's dialect of the domain error: RFC 9457 problem+json with the HTTP status
//! each kind means, the `field` it names, and `Retry-After` for rate limits and for an
//! unavailable database. The one place
//! where [`Error`] becomes HTTP for the admin API and the distribution points (ACME and
//! EST have their own mappers: `acme::problem`, `est::EstError`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vellum_core::error::Error;

/// A domain error on its way out as problem+json.
#[derive(Debug)]
pub struct Problem(pub Error);

/// Result of an admin (or distribution-point) handler.
pub type ApiResult<T> = std::result::Result<T, Problem>;

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem(e)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The HTTP status of a domain error on the admin API (and the distribution points).
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_)
        | Error::QuotaExhausted { .. }
        | Error::CaChanged { .. }
        | Error::OrderNotReady { .. } => StatusCode::CONFLICT,
        Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Config(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Short machine-readable name of a domain error, used in the problem type URI.
pub fn slug(e: &Error) -> &'static str {
    match e {
        Error::BadRequest { .. } => "bad-request",
        Error::Unauthorized(_) => "unauthorized",
        Error::Forbidden(_) => "forbidden",
        Error::NotFound(_) => "not-found",
        Error::Conflict(_) => "conflict",
        Error::QuotaExhausted { .. } => "quota-exhausted",
        Error::CaChanged { .. } => "ca-changed",
        Error::OrderNotReady { .. } => "order-not-ready",
        Error::Invalid { .. } => "invalid",
        Error::TooLarge(_) => "too-large",
        Error::UnsupportedMediaType(_) => "unsupported-media-type",
        Error::RateLimited { .. } => "rate-limited",
        Error::Unavailable { .. } => "unavailable",
        Error::Config(_) | Error::Internal(_) => "internal",
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let Problem(e) = self;
        let status = status(&e);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %e, "request refused: unavailable");
        } else if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        let mut body = json!({
            "type": format!("urn:vellum:problem:{}", slug(&e)),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": e.client_detail(),
        });
        if let Some(field) = e.field() {
            body["field"] = json!(field);
        }
        let retry_after = match &e {
            Error::RateLimited { retry_after, .. } | Error::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}
