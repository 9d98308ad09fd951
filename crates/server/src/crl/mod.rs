//! Public distribution points on the plain-HTTP listener (no authentication, cacheable):
//! CRLs (`/crl/{id}.crl` DER, `/crl/{id}.pem`), delta CRLs (`/crl/{id}-delta.crl`,
//! `/crl/{id}-delta.pem`, when the CA publishes them) and CA certificates (`/ca/{id}.crt` DER,
//! `/ca/{id}.pem`), the URLs written into CDP and AIA extensions, and the OCSP responder
//! (`/ocsp/{id}`, see [`ocsp`]).

pub mod job;
pub mod ocsp;

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::App;
use ca::cert_pem;
use vellum_core::error::Error;
use vellum_core::status::CaStatus;

/// Routes of the distribution listener.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/ca/{file}", get(ca_certificate))
        .route("/crl/{file}", get(crl))
        .route("/ocsp/{ca_id}", axum::routing::post(ocsp::post))
        .route("/ocsp/{ca_id}/{*request}", get(ocsp::get))
}

fn split(file: &str, der_ext: &str) -> Option<(String, bool)> {
    if let Some(id) = file.strip_suffix(der_ext) {
        Some((id.to_string(), false))
    } else {
        file.strip_suffix(".pem").map(|id| (id.to_string(), true))
    }
}

fn http_date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).unwrap_or_default()
}

/// `GET /crl/{id}.crl` (DER, `application/pkix-crl`) or `/crl/{id}.pem`; the delta CRL
/// at `/crl/{id}-delta.crl` or `/crl/{id}-delta.pem`.
async fn crl(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (id, pem) = split(&file, ".crl").ok_or_else(|| {
        Error::not_found(
            "use /crl/{id}.crl (DER) or /crl/{id}.pem, and /crl/{id}-delta.crl or \
             /crl/{id}-delta.pem for the delta CRL",
        )
    })?;
    let (number, this_update, next_update, der, kind) = match id.strip_suffix("-delta") {
        Some(name) => {
            // Each key's delta, signed by that key (certificates name their key's).
            let (ca_id, key_generation) = ra::crl::parse_key_file(name);
            let d = ra::crl::current_delta_for_key(&app, ca_id, key_generation).await?;
            (d.crl_number, d.this_update, d.next_update, d.der, "d")
        }
        None => {
            let (ca_id, key_generation) = ra::crl::parse_key_file(&id);
            let c = ra::crl::current_for_key(&app, ca_id, key_generation).await?;
            (c.crl_number, c.this_update, c.next_update, c.der, "")
        }
    };
    let crl = Served {
        this_update,
        next_update,
        der,
    };
    let etag = format!("\"{id}-{number}{kind}{}\"", if pem { "p" } else { "" });
    let mut h = HeaderMap::new();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(Error::internal)?,
    );
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&http_date(crl.this_update)).map_err(Error::internal)?,
    );
    h.insert(
        header::EXPIRES,
        HeaderValue::from_str(&http_date(crl.next_update)).map_err(Error::internal)?,
    );
    // Caches may keep it but must revalidate: a revocation shows within a second.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, no-cache"),
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    if pem {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        );
        let body = ::pem::encode_config(
            &::pem::Pem::new("X509 CRL", crl.der),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        );
        Ok((h, body).into_response())
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pkix-crl"),
        );
        Ok((h, crl.der).into_response())
    }
}

/// The parts of a stored CRL or delta CRL the response is made of.
struct Served {
    this_update: i64,
    next_update: i64,
    der: Vec<u8>,
}

/// `GET /ca/{id}.crt` (DER, `application/pkix-cert`) or `/ca/{id}.pem`.
async fn ca_certificate(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let (id, pem) = split(&file, ".crt")
        .ok_or_else(|| Error::not_found("use /ca/{id}.crt (DER) or /ca/{id}.pem"))?;
    let (id, key_generation) = ra::crl::parse_key_file(&id);
    let mut conn = app.store.reader().acquire().await?;
    let ca = store::cas::get_any_tenant(&mut conn, id)
        .await?
        .filter(|ca| ca.status != CaStatus::Removed)
        .ok_or_else(|| Error::not_found(format!("no CA {id}")))?;
    let der = if key_generation == ca.key_generation {
        ca.certificate_der.ok_or_else(|| {
            Error::not_found(format!("CA {id} has no certificate (it is {})", ca.status))
        })?
    } else {
        // A key the CA held before (or the first key, after a renewal with a new key):
        // the newest certificate of that key that has been current.
        store::generations::list(&mut conn, id)
            .await?
            .into_iter()
            .rfind(|g| g.key_generation == key_generation && g.generation <= ca.generation)
            .map(|g| g.certificate_der)
            .ok_or_else(|| {
                Error::not_found(format!("CA {id} has no key of generation {key_generation}"))
            })?
    };
    let mut resp = if pem {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pem-file"),
            )],
            cert_pem(&der),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pkix-cert"),
            )],
            der,
        )
            .into_response()
    };
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(resp)
}
