//! `GET /metrics`: the Prometheus text exposition of `vellum_core::metrics`, plus the
//! gauges read from the database at scrape time (`ra::metrics`), which are cached for
//! [`SNAPSHOT_TTL`] so that a scrape storm costs the database one read every few seconds.
//!
//! Where it is served is the configuration's (`[metrics]`): on the plain-HTTP listener by
//! default, on a listener of its own with `listen`, nowhere with `enabled = false` (the
//! route does not exist: 404). With `bearer_token_file`, a scrape without
//! `Authorization: Bearer <token>` or with a wrong one is answered 401; the comparison is
//! of SHA-256 digests, in constant time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::problem::Problem;
use crate::App;
use vellum_core::error::{Error, Result};
use vellum_core::metrics::{self, Snapshot};

/// How long the scrape-time gauges are reused.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// The endpoint's state: the app, the expected token's digest, the cached gauges.
struct Endpoint {
    app: Arc<App>,
    token_sha256: Option<[u8; 32]>,
    snapshot: Mutex<Option<(Instant, Arc<Snapshot>)>>,
}

/// The `/metrics` route, with its own state (the token read from `bearer_token_file` now:
/// a missing or empty file is a configuration error at start).
pub fn router(app: Arc<App>) -> Result<Router> {
    let token_sha256 = match &app.config.metrics.bearer_token_file {
        None => None,
        Some(path) => {
            let raw = std::fs::read_to_string(path).map_err(|e| {
                Error::config(format!("metrics.bearer_token_file {}: {e}", path.display()))
            })?;
            let token = raw.trim();
            if token.is_empty() {
                return Err(Error::config(format!(
                    "metrics.bearer_token_file {} is empty; put the token scrapers must send in it",
                    path.display()
                )));
            }
            Some(Sha256::digest(token.as_bytes()).into())
        }
    };
    let endpoint = Arc::new(Endpoint {
        app,
        token_sha256,
        snapshot: Mutex::new(None),
    });
    Ok(Router::new()
        .route("/metrics", get(scrape))
        .with_state(endpoint))
}

/// Whether the request carries the expected bearer token.
fn authorized(expected: &[u8; 32], headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(given) = given else {
        return false;
    };
    let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    bool::from(digest.ct_eq(expected))
}

impl Endpoint {
    /// The gauges, read again when the cached ones are older than [`SNAPSHOT_TTL`]
    /// (concurrent scrapes wait for one read and share it).
    async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let mut cached = self.snapshot.lock().await;
        if let Some((at, s)) = cached.as_ref() {
            if at.elapsed() < SNAPSHOT_TTL {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(ra::metrics::snapshot(&self.app).await?);
        *cached = Some((Instant::now(), s.clone()));
        Ok(s)
    }
}

async fn scrape(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if let Some(expected) = &endpoint.token_sha256 {
        if !authorized(expected, &headers) {
            let mut resp = Problem(Error::Unauthorized(
                "/metrics needs the bearer token configured in metrics.bearer_token_file \
                 (Authorization: Bearer <token>)"
                    .into(),
            ))
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vellum-metrics\""),
            );
            return resp;
        }
    }
    let body = match endpoint.snapshot().await {
        Ok(s) => metrics::render(&s),
        Err(e) => Err(e),
    };
    match body {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Err(e) => Problem(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_passes() {
        let expected: [u8; 32] = Sha256::digest(b"s3cret").into();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(authorized(&expected, &with("Bearer s3cret")));
        assert!(authorized(&expected, &with("bearer s3cret")));
        assert!(!authorized(&expected, &with("Bearer s3cre")));
        assert!(!authorized(&expected, &with("Basic s3cret")));
        assert!(!authorized(&expected, &HeaderMap::new()));
    }
}
