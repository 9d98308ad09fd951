//! Public distribution points on the plain-HTTP listener (no authentication, cacheable):
//! CA certificates (`/ca/{id}.crt`, `/ca/{id}.pem`), the URLs written into AIA extensions.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::ca::cert_pem;
use crate::error::{Error, Result};
use crate::store;
use crate::App;

/// Routes of the distribution listener.
pub fn router() -> Router<Arc<App>> {
    Router::new().route("/ca/{file}", get(ca_certificate))
}

/// `GET /ca/{id}.crt` (DER, `application/pkix-cert`) or `/ca/{id}.pem`.
async fn ca_certificate(State(app): State<Arc<App>>, Path(file): Path<String>) -> Result<Response> {
    let (id, pem) = if let Some(id) = file.strip_suffix(".crt") {
        (id, false)
    } else if let Some(id) = file.strip_suffix(".pem") {
        (id, true)
    } else {
        return Err(Error::not_found("use /ca/{id}.crt (DER) or /ca/{id}.pem"));
    };
    let mut conn = app.store.reader().acquire().await?;
    let ca = store::cas::get_any_tenant(&mut conn, id)
        .await?
        .filter(|ca| ca.status != "removed")
        .ok_or_else(|| Error::not_found(format!("no CA {id}")))?;
    let der = ca.certificate_der.ok_or_else(|| {
        Error::not_found(format!("CA {id} has no certificate (it is {})", ca.status))
    })?;
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
