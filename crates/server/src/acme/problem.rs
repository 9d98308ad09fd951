//! ACME problem documents (RFC 8555 §6.7): `urn:ietf:params:acme:error:*` types, with
//! subproblems per identifier.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use ra::acme::state::{self, LostClaim};
use vellum_core::error::Error;

/// Signature algorithms accepted on ACME requests.
pub const ALGORITHMS: &[&str] = &["RS256", "ES256", "ES384", "ES512", "EdDSA"];

/// An ACME error answer.
#[derive(Debug)]
pub struct AcmeError {
    /// Type suffix after `urn:ietf:params:acme:error:`.
    pub kind: &'static str,
    pub status: StatusCode,
    pub detail: String,
    pub subproblems: Vec<Value>,
    /// For `badSignatureAlgorithm`: the accepted algorithms.
    pub algorithms: bool,
    /// Extra headers (e.g. `Location` of a conflicting account, `Retry-After`).
    pub headers: Vec<(header::HeaderName, String)>,
}

/// Result alias of the ACME front end.
pub type AcmeResult<T> = std::result::Result<T, AcmeError>;

impl AcmeError {
    /// A problem of `kind` with `status`.
    pub fn new(kind: &'static str, status: StatusCode, detail: impl Into<String>) -> AcmeError {
        AcmeError {
            kind,
            status,
            detail: detail.into(),
            subproblems: Vec::new(),
            algorithms: false,
            headers: Vec::new(),
        }
    }
    /// 400 malformed.
    pub fn malformed(detail: impl Into<String>) -> AcmeError {
        Self::new("malformed", StatusCode::BAD_REQUEST, detail)
    }
    /// 403 unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> AcmeError {
        Self::new("unauthorized", StatusCode::FORBIDDEN, detail)
    }
    /// 404 malformed (unknown resource).
    pub fn not_found(detail: impl Into<String>) -> AcmeError {
        Self::new("malformed", StatusCode::NOT_FOUND, detail)
    }
    /// 400 badNonce.
    pub fn bad_nonce(detail: impl Into<String>) -> AcmeError {
        Self::new("badNonce", StatusCode::BAD_REQUEST, detail)
    }
    /// 400 badSignatureAlgorithm, listing the accepted algorithms.
    pub fn bad_signature_algorithm(alg: &str) -> AcmeError {
        let mut e = Self::new(
            "badSignatureAlgorithm",
            StatusCode::BAD_REQUEST,
            format!(
                "JWS algorithm {alg:?} is not accepted; use one of {}",
                ALGORITHMS.join(", ")
            ),
        );
        e.algorithms = true;
        e
    }
    /// 400 accountDoesNotExist.
    pub fn account_does_not_exist(detail: impl Into<String>) -> AcmeError {
        Self::new("accountDoesNotExist", StatusCode::BAD_REQUEST, detail)
    }
    /// 400 badCSR.
    pub fn bad_csr(detail: impl Into<String>) -> AcmeError {
        Self::new("badCSR", StatusCode::BAD_REQUEST, detail)
    }
    /// 403 orderNotReady.
    pub fn order_not_ready(detail: impl Into<String>) -> AcmeError {
        Self::new("orderNotReady", StatusCode::FORBIDDEN, detail)
    }
    /// 429 rateLimited (RFC 8555 §6.6) with `Retry-After`.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> AcmeError {
        let mut e = Self::new("rateLimited", StatusCode::TOO_MANY_REQUESTS, detail);
        e.headers
            .push((header::RETRY_AFTER, retry_after.max(1).to_string()));
        e
    }
    /// 503 serverInternal with `Retry-After`: the database is down or its disk is full
    /// (RFC 8555 has no type of its own for it; 503 and `Retry-After` tell a client that
    /// a retry may succeed, RFC 9110 section 15.6.4).
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> AcmeError {
        let mut e = Self::new("serverInternal", StatusCode::SERVICE_UNAVAILABLE, detail);
        e.headers
            .push((header::RETRY_AFTER, retry_after.max(1).to_string()));
        e
    }
    /// 500 serverInternal.
    pub fn internal(detail: impl Into<String>) -> AcmeError {
        Self::new("serverInternal", StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
    /// Adds a subproblem for one identifier.
    pub fn with_subproblem(mut self, kind: &str, detail: &str, identifier: Value) -> AcmeError {
        self.subproblems.push(json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "identifier": identifier,
        }));
        self
    }

    /// The problem document as JSON (also stored in orders and challenges).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": format!("urn:ietf:params:acme:error:{}", self.kind),
            "detail": self.detail,
            "status": self.status.as_u16(),
        });
        if !self.subproblems.is_empty() {
            v["subproblems"] = Value::Array(self.subproblems.clone());
        }
        if self.algorithms {
            v["algorithms"] = json!(ALGORITHMS);
        }
        v
    }
}

impl From<Error> for AcmeError {
    fn from(e: Error) -> Self {
        let detail = e.client_detail();
        match e {
            Error::BadRequest { .. } | Error::Invalid { .. } => AcmeError::malformed(detail),
            Error::Unauthorized(_) | Error::Forbidden(_) => AcmeError::unauthorized(detail),
            Error::NotFound(_) => AcmeError::not_found(detail),
            Error::Conflict(_) | Error::CaChanged { .. } => {
                AcmeError::new("malformed", StatusCode::CONFLICT, detail)
            }
            // The account may not have a certificate from this CA until quota is assigned;
            // the order stays ready.
            Error::QuotaExhausted { .. } => AcmeError::unauthorized(format!(
                "{detail}. The order stays ready: finalize again once quota is assigned"
            )),
            Error::OrderNotReady { order, status } => match state::finalize_lost(status) {
                LostClaim::FinalizedElsewhere => AcmeError::order_not_ready(format!(
                    "order {order} was finalized by another request"
                )),
                LostClaim::NotReady(s) => AcmeError::order_not_ready(format!(
                    "order {order} is {s}; it can be finalized only when ready"
                )),
                LostClaim::StillReady => AcmeError::new("malformed", StatusCode::CONFLICT, detail),
            },
            Error::TooLarge(_) => {
                AcmeError::new("malformed", StatusCode::PAYLOAD_TOO_LARGE, detail)
            }
            Error::UnsupportedMediaType(_) => {
                AcmeError::new("malformed", StatusCode::UNSUPPORTED_MEDIA_TYPE, detail)
            }
            Error::RateLimited { retry_after, .. } => AcmeError::rate_limited(detail, retry_after),
            Error::Unavailable { retry_after, .. } => AcmeError::unavailable(detail, retry_after),
            Error::Config(_) | Error::Internal(_) => {
                tracing::error!(error = %e, "ACME request failed");
                AcmeError::internal(detail)
            }
        }
    }
}

impl From<sqlx::Error> for AcmeError {
    fn from(e: sqlx::Error) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for AcmeError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut resp = (status, axum::Json(self.to_json())).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}
