//! `GET`/`PUT /cas/{id}/ocsp`: a CA's OCSP responder settings and its delegated signer.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::{self, Json};
use crate::problem::ApiResult;
use crate::App;
use ra::hierarchy;

type JsonResult = ApiResult<axum::Json<serde_json::Value>>;

/// `GET /cas/{id}/ocsp`: settings, responder URL, current delegated signer.
pub async fn info(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> JsonResult {
    who.require(Permission::Read)?;
    let ca = hierarchy::load(&app, &who.tenant_id, &id).await?;
    let signer = ra::ocsp::current_signer(&app, &ca)
        .await?
        .filter(|s| Some(s.ca_serial.as_str()) == ca.serial.as_deref())
        .map(|s| {
            json!({
                "serial": s.serial,
                "not_before": json::rfc3339(s.not_before),
                "not_after": json::rfc3339(s.not_after),
                "certificate_pem": ca::cert_pem(&s.certificate_der),
            })
        });
    Ok(axum::Json(json!({
        "ca_id": ca.id,
        "enabled": ca.ocsp_enabled,
        "delegated_signer": ca.ocsp_delegated,
        "validity_hours": ca.ocsp_validity_hours,
        "url": format!("{}/ocsp/{}", app.config.public_http_url(), ca.id),
        "signer": signer,
    })))
}

/// Body of `PUT /cas/{id}/ocsp` (omitted fields keep their value).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    enabled: bool,
    delegated_signer: Option<bool>,
    validity_hours: Option<i64>,
}

/// `PUT /cas/{id}/ocsp`: turn the responder on or off, choose the signer and the
/// response validity.
pub async fn settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Settings>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        let ca = hierarchy::load(&app, &who.tenant_id, &id).await?;
        ra::ocsp::set_settings(
            &app,
            &who.tenant_id,
            &id,
            ra::ocsp::Settings {
                enabled: body.enabled,
                delegated_signer: body.delegated_signer.unwrap_or(ca.ocsp_delegated),
                validity_hours: body.validity_hours.unwrap_or(ca.ocsp_validity_hours),
            },
        )
        .await
    }
    .await;
    record(&app, &who, "ca.ocsp.settings", Some(&id), &res).await;
    res?;
    info(State(app), who, Path(id)).await
}
