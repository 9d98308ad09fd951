//! The OCSP responder on the plain-HTTP listener (RFC 6960 appendix A, RFC 5019):
//! `GET /ocsp/{ca_id}/{base64 request}` and `POST /ocsp/{ca_id}`
//! (`application/ocsp-request` → `application/ocsp-response`), and the background poll
//! that drops held responses another replica's revocation made stale.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::sync::watch;

use crate::problem::ApiResult;
use crate::App;
use ra::ocsp::Reply;

/// Largest request accepted (one CertID, a nonce, maybe a signature).
const MAX_REQUEST: usize = 8 * 1024;
const CONTENT_TYPE: &str = "application/ocsp-response";

/// `GET /ocsp/{ca_id}/{base64 DER request}`: cacheable answers (RFC 5019 §5).
pub async fn get(
    State(app): State<Arc<App>>,
    Path((ca_id, encoded)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let der = decode(&encoded);
    let reply = match der {
        Some(der) if der.len() <= MAX_REQUEST => ra::ocsp::respond(&app, &ca_id, &der).await?,
        _ => Reply::Refused(ca::ocsp::error_response(
            ca::ocsp::ErrorStatus::MalformedRequest,
        )),
    };
    Ok(render(&app, reply, true, &headers))
}

/// `POST /ocsp/{ca_id}` with a DER `OCSPRequest` body.
pub async fn post(
    State(app): State<Arc<App>>,
    Path(ca_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let reply = if body.is_empty() || body.len() > MAX_REQUEST {
        Reply::Refused(ca::ocsp::error_response(
            ca::ocsp::ErrorStatus::MalformedRequest,
        ))
    } else {
        ra::ocsp::respond(&app, &ca_id, &body).await?
    };
    Ok(render(&app, reply, false, &headers))
}

/// Standard base64 (RFC 6960 appendix A.1; percent-decoding already done by the router),
/// also accepting the URL-safe alphabet and missing padding that some clients send.
fn decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let s = s.trim_end_matches('/');
    STANDARD.decode(s).ok().or_else(|| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('=').replace('+', "-").replace('/', "_"))
            .ok()
    })
}

fn render(app: &App, reply: Reply, get: bool, req_headers: &HeaderMap) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    match reply {
        Reply::Refused(der) => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (h, der).into_response()
        }
        Reply::Signed { answer, cacheable } => {
            if get && cacheable {
                let now = app.now();
                let max_age = (answer.next_update - now).max(0);
                let headers = [
                    (
                        header::CACHE_CONTROL,
                        format!("max-age={max_age}, public, no-transform, must-revalidate"),
                    ),
                    (header::LAST_MODIFIED, super::http_date(answer.this_update)),
                    (header::EXPIRES, super::http_date(answer.next_update)),
                    (header::ETAG, answer.etag.clone()),
                ];
                for (name, value) in headers {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        h.insert(name, v);
                    }
                }
                let matches = req_headers
                    .get(header::IF_NONE_MATCH)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.split(',').any(|t| t.trim() == answer.etag));
                if matches {
                    return (StatusCode::NOT_MODIFIED, h).into_response();
                }
            } else {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            // The held bytes themselves, not a copy.
            (h, Bytes::from_owner(Held(answer))).into_response()
        }
    }
}

/// A held answer as a response body.
struct Held(std::sync::Arc<ra::ocsp::Answer>);

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.0.der
    }
}

/// Polls the OCSP event feed every [`ra::ocsp::POLL_INTERVAL`] until `shutdown` turns
/// true; once a minute, the replica holding the CRL lease purges old events (see
/// [`super::job`]).
pub async fn poll(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = ra::ocsp::poll(&app).await {
            tracing::warn!(error = %e, "OCSP event poll failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(ra::ocsp::POLL_INTERVAL) => {},
            _ = shutdown.changed() => return,
        }
    }
}
