//! CA endpoints: purchase, list, show, enable, quota, revoke, reset, refund, remove.

use crate::problem::ApiResult;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::{self, Json, OptJson, Query};
use crate::App;
use ca::keys::KeyAlgorithm;
use ca::profile::SubjectFields;
use ra::hierarchy::{self, EnableMode, Purchase};
use store::{self, cas::CaFilter};
use vellum_core::error::{Error, Result};
use vellum_core::status::{parse_field, CaKind, CaStatus, KeyStorage, RevocationReason};

type JsonResult = ApiResult<axum::Json<Value>>;

/// Body of `POST /cas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCa {
    kind: String,
    parent_id: Option<String>,
    common_name: String,
    organization: Option<String>,
    organizational_unit: Option<String>,
    country: Option<String>,
    state: Option<String>,
    locality: Option<String>,
    key_algorithm: Option<String>,
    validity_days: Option<i64>,
    service_months: Option<i64>,
    quota: Option<i64>,
    intermediate_common_name: Option<String>,
}

fn ca_view(app: &App, ca: &store::cas::CaRow) -> Value {
    json::ca(ca, &app.config.public_http_url())
}

/// `POST /cas`: purchase a root (with one intermediate) or an intermediate.
pub async fn create(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<NewCa>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::CaLifecycle)?;
    let res = purchase(&app, &who, &body).await;
    let target = res
        .as_ref()
        .ok()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string());
    record(
        &app,
        &who,
        &format!("ca.purchase.{}", body.kind),
        target.as_deref(),
        &res,
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(res?)))
}

async fn purchase(app: &App, who: &Principal, body: &NewCa) -> Result<Value> {
    let key_algorithm: KeyAlgorithm = body
        .key_algorithm
        .as_deref()
        .unwrap_or("ec-p256")
        .parse()
        .map_err(|e: String| Error::invalid("key_algorithm", e))?;
    let subject = SubjectFields {
        common_name: body.common_name.trim().to_string(),
        organization: body.organization.clone(),
        organizational_unit: body.organizational_unit.clone(),
        locality: body.locality.clone(),
        state: body.state.clone(),
        country: body.country.clone(),
    };
    match body.kind.parse::<CaKind>() {
        Ok(CaKind::Root) => {
            if body.parent_id.is_some() {
                return Err(Error::invalid("parent_id", "a root CA has no parent"));
            }
            let p = Purchase {
                subject,
                key_algorithm,
                validity_days: body.validity_days.unwrap_or(3650),
                service_months: body.service_months.unwrap_or(12),
                quota: body.quota.unwrap_or(10),
                intermediate_common_name: body.intermediate_common_name.clone(),
            };
            let (root, inter) = hierarchy::purchase_root(app, &who.tenant_id, &p).await?;
            let mut v = ca_view(app, &root);
            v["intermediate_id"] = json!(inter.id);
            Ok(v)
        }
        Ok(CaKind::Intermediate) => {
            let parent = body
                .parent_id
                .as_deref()
                .ok_or_else(|| Error::invalid("parent_id", "is required for an intermediate CA"))?;
            for (field, set) in [
                ("service_months", body.service_months.is_some()),
                ("quota", body.quota.is_some()),
                (
                    "intermediate_common_name",
                    body.intermediate_common_name.is_some(),
                ),
            ] {
                if set {
                    return Err(Error::invalid(
                        field,
                        "applies to root CAs only (an intermediate shares its root's service period and receives quota from it)",
                    ));
                }
            }
            let p = Purchase {
                subject,
                key_algorithm,
                validity_days: body.validity_days.unwrap_or(1825),
                service_months: 0,
                quota: 0,
                intermediate_common_name: None,
            };
            let ca = hierarchy::purchase_intermediate(app, &who.tenant_id, parent, &p).await?;
            Ok(ca_view(app, &ca))
        }
        Err(e) => Err(Error::invalid(
            "kind",
            format!(
                "{:?} is not a CA kind; use \"root\" or \"intermediate\"",
                e.value
            ),
        )),
    }
}

/// Query of `GET /cas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    kind: Option<String>,
    parent_id: Option<String>,
    status: Option<String>,
    tag: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /cas?kind=&parent_id=&status=&tag=&limit=&cursor=`: the tenant's CAs, oldest
/// first; removed ones only with `status=removed`.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> JsonResult {
    who.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    let kind = q.kind.as_deref().map(|k| parse_field::<CaKind>("kind", k));
    let status = q
        .status
        .as_deref()
        .map(|s| parse_field::<CaStatus>("status", s));
    let filter = CaFilter {
        kind: kind.transpose()?,
        parent_id: q.parent_id,
        status: status.transpose()?,
        tag: q.tag.filter(|t| !t.is_empty()),
        after: q.cursor,
        limit,
    };
    let mut conn = app.store.reader().acquire().await?;
    let rows = store::cas::list(&mut conn, &who.tenant_id, &filter).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let items = rows.iter().map(|r| ca_view(&app, r)).collect();
    Ok(axum::Json(json::list(items, next)))
}

/// `GET /cas/{id}`.
pub async fn show(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> JsonResult {
    who.require(Permission::Read)?;
    let ca = hierarchy::load(&app, &who.tenant_id, &id).await?;
    Ok(axum::Json(ca_view(&app, &ca)))
}

/// Body of `POST /cas/{id}/enable`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableBody {
    mode: String,
    certificate_pem: Option<String>,
    private_key_pem: Option<String>,
    /// `"database"` (default) or `"pkcs11"` (generate mode only).
    key_storage: Option<String>,
}

/// `POST /cas/{id}/enable`.
pub async fn enable(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<EnableBody>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        let storage = match body.key_storage.as_deref() {
            None => KeyStorage::Database,
            Some(s) => parse_field::<KeyStorage>("key_storage", s)?,
        };
        let mode = match body.mode.as_str() {
            "generate" => {
                if body.certificate_pem.is_some() || body.private_key_pem.is_some() {
                    return Err(Error::invalid(
                        "mode",
                        "is \"generate\" but a certificate or key was sent; use \"upload\" to install them",
                    ));
                }
                match storage {
                    KeyStorage::Database => EnableMode::Generate,
                    KeyStorage::Pkcs11 => EnableMode::GenerateInToken,
                }
            }
            "upload" if storage == KeyStorage::Pkcs11 => {
                return Err(Error::invalid(
                    "key_storage",
                    "\"pkcs11\" keys are generated inside the token and cannot be uploaded into \
                     it; use mode \"generate\" with key_storage \"pkcs11\", or upload with \
                     key_storage \"database\"",
                ))
            }
            "upload" => EnableMode::Upload {
                certificate_pem: body
                    .certificate_pem
                    .clone()
                    .ok_or_else(|| Error::invalid("certificate_pem", "is required with mode \"upload\""))?,
                private_key_pem: body
                    .private_key_pem
                    .clone()
                    .ok_or_else(|| Error::invalid("private_key_pem", "is required with mode \"upload\""))?,
            },
            other => {
                return Err(Error::invalid(
                    "mode",
                    format!("{other:?} is not a mode; use \"generate\" or \"upload\""),
                ))
            }
        };
        hierarchy::enable(&app, &who.tenant_id, &id, mode).await
    }
    .await;
    record(
        &app,
        &who,
        &format!("ca.enable.{}", body.mode),
        Some(&id),
        &res,
    )
    .await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// Body of `POST /cas/{id}/quota/purchase`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseQuota {
    count: i64,
}

/// `POST /cas/{id}/quota/purchase`.
pub async fn purchase_quota(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<PurchaseQuota>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = hierarchy::purchase_quota(&app, &who.tenant_id, &id, body.count).await;
    record(&app, &who, "quota.purchase", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// Body of `POST /cas/{id}/quota/assign`: exactly one of `count` (adds) and `remaining`
/// (sets).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignQuota {
    intermediate_id: String,
    count: Option<i64>,
    remaining: Option<i64>,
}

/// `POST /cas/{root}/quota/assign`: adds `count` to an intermediate's quota, or sets its
/// `remaining` quota (audited as `quota.assign` / `quota.set`); answers with the root.
pub async fn assign_quota(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<AssignQuota>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let inter = &body.intermediate_id;
    let (action, res) = match (body.count, body.remaining) {
        (Some(count), None) => (
            "quota.assign",
            hierarchy::assign_quota(&app, &who.tenant_id, &id, inter, count).await,
        ),
        (None, Some(remaining)) => (
            "quota.set",
            hierarchy::set_quota(&app, &who.tenant_id, &id, inter, remaining).await,
        ),
        (count, _) => (
            if count.is_some() {
                "quota.assign"
            } else {
                "quota.set"
            },
            Err(Error::invalid(
                "count",
                "give exactly one of count (adds to the intermediate's quota) and remaining (sets it)",
            )),
        ),
    };
    record(&app, &who, action, Some(inter), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// Body of `PATCH /cas/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCa {
    tags: BTreeMap<String, String>,
}

/// `PATCH /cas/{id}`: replaces the CA's tags (audited as `ca.tags`).
pub async fn update(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<UpdateCa>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = ra::inventory::set_ca_tags(&app, &who.tenant_id, &id, &body.tags).await;
    record(&app, &who, "ca.tags", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// Body of `POST /cas/{id}/service/renew`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewService {
    months: i64,
}

/// `POST /cas/{id}/service/renew`: buys more service months for a root; its
/// intermediates follow (audited as `ca.service.renew`).
pub async fn renew_service(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<RenewService>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = hierarchy::renew_service(&app, &who.tenant_id, &id, body.months).await;
    record(&app, &who, "ca.service.renew", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// Body of `POST /cas/{id}/revoke`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    reason: Option<String>,
}

/// `POST /cas/{id}/revoke`.
pub async fn revoke(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    OptJson(body): OptJson<RevokeBody>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        let reason = RevocationReason::parse_loose("reason", body.reason.as_deref())?;
        hierarchy::revoke(&app, &who.tenant_id, &id, reason).await
    }
    .await;
    record(&app, &who, "ca.revoke", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// An action body that takes no fields (an empty body or `{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /cas/{id}/reset`.
pub async fn reset(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    OptJson(_): OptJson<Empty>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = hierarchy::reset(&app, &who.tenant_id, &id).await;
    record(&app, &who, "ca.reset", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// `POST /cas/{id}/refund`.
pub async fn refund(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    OptJson(_): OptJson<Empty>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = hierarchy::refund(&app, &who.tenant_id, &id).await;
    record(&app, &who, "ca.refund", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// `DELETE /cas/{id}`.
pub async fn remove(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = hierarchy::remove(&app, &who.tenant_id, &id).await;
    record(&app, &who, "ca.remove", Some(&id), &res).await;
    Ok(axum::Json(ca_view(&app, &res?)))
}

/// `GET /cas/{id}/crl`: CRL settings and the current CRL's number, dates and entries;
/// the delta CRL's settings and, when on, its number and base.
pub async fn crl_info(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> JsonResult {
    who.require(Permission::Read)?;
    let ca = hierarchy::load(&app, &who.tenant_id, &id).await?;
    let mut v = json!({
        "ca_id": ca.id,
        "enabled": ca.crl_enabled,
        "next_update_hours": ca.crl_next_update_hours,
        "url": format!("{}/crl/{}.crl", app.config.public_http_url(), ca.id),
        "crl_number": null,
        "this_update": null,
        "next_update": null,
        "entries": [],
        "delta_enabled": ca.crl_delta_enabled,
        "delta_interval_minutes": ca.crl_delta_minutes,
        "delta_url": null,
        "delta_crl_number": null,
        "delta_base_crl_number": null,
        "delta_this_update": null,
        "delta_next_update": null,
        "delta_entries": null,
    });
    if ca.crl_enabled && ca.has_key() {
        let crl = ra::crl::current(&app, &id).await?;
        let (_, parsed) = x509_parser::parse_x509_crl(&crl.der).map_err(Error::internal)?;
        let entries: Vec<Value> = parsed
            .iter_revoked_certificates()
            .map(|r| {
                json!({
                    "serial": ca::serial_hex(r.raw_serial()),
                    "revoked_at": json::rfc3339(r.revocation_date.timestamp()),
                    "reason": r
                        .reason_code()
                        .and_then(|(_, rc)| RevocationReason::from_code(rc.0.into()))
                        .unwrap_or(RevocationReason::Unspecified),
                })
            })
            .collect();
        v["crl_number"] = json!(crl.crl_number);
        v["this_update"] = json!(json::rfc3339(crl.this_update));
        v["next_update"] = json!(json::rfc3339(crl.next_update));
        v["entries"] = json!(entries);
        if ca.crl_delta_enabled {
            let d = ra::crl::current_delta(&app, &id).await?;
            v["delta_url"] = json!(ra::crl::delta_url(&app, &ca.id, ca.key_generation));
            v["delta_crl_number"] = json!(d.crl_number);
            v["delta_base_crl_number"] = json!(d.base_number);
            v["delta_this_update"] = json!(json::rfc3339(d.this_update));
            v["delta_next_update"] = json!(json::rfc3339(d.next_update));
            v["delta_entries"] = json!(d.entries);
        }
    }
    Ok(axum::Json(v))
}

/// Body of `PUT /cas/{id}/crl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSettings {
    enabled: bool,
    next_update_hours: Option<i64>,
    delta_enabled: Option<bool>,
    delta_interval_minutes: Option<i64>,
}

/// `PUT /cas/{id}/crl`: turn the CRL (and its delta CRLs) on or off, set their periods.
pub async fn crl_settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<CrlSettings>,
) -> JsonResult {
    who.require(Permission::CaLifecycle)?;
    let res = ra::crl::set_settings(
        &app,
        &who.tenant_id,
        &id,
        ra::crl::Settings {
            enabled: body.enabled,
            next_update_hours: body.next_update_hours,
            delta_enabled: body.delta_enabled,
            delta_interval_minutes: body.delta_interval_minutes,
        },
    )
    .await;
    record(&app, &who, "ca.crl.settings", Some(&id), &res).await;
    res?;
    crl_info(State(app), who, Path(id)).await
}

/// Body of `POST /cas/{id}/renew`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    same_key: bool,
    validity_days: i64,
    /// RFC 3339; omitted: now.
    switch_over_at: Option<String>,
}

/// `POST /cas/{id}/renew`: a new certificate for an enabled root or intermediate (same
/// key or a new one), current from `switch_over_at`.
pub async fn renew(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<RenewBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        let switch_over_at = body
            .switch_over_at
            .as_deref()
            .map(|s| json::parse_rfc3339("switch_over_at", s))
            .transpose()?;
        let req = ra::rollover::RenewRequest {
            same_key: body.same_key,
            validity_days: body.validity_days,
            switch_over_at,
        };
        ra::rollover::renew(&app, &who.tenant_id, &id, &req).await
    }
    .await;
    let action = if body.same_key {
        "ca.renew.same_key"
    } else {
        "ca.renew.new_key"
    };
    let detail = res.as_ref().ok().map(|r| {
        format!(
            "generation={} serial={} switch_over_at={}",
            r.generation.generation,
            r.generation.serial,
            vellum_core::time::rfc3339(r.generation.switch_over_at)
        )
    });
    super::audit::record_detail(&app, &who, action, Some(&id), &res, detail.as_deref()).await;
    let r = res?;
    let mut conn = app.store.reader().acquire().await?;
    let parent = match &r.ca.parent_id {
        Some(pid) => store::cas::get_any_tenant(&mut conn, pid).await?,
        None => None,
    };
    let mut chain = vec![r.generation.certificate_der.clone()];
    if let Some(parent) = &parent {
        if let Some(p) =
            ra::rollover::issuer_certificate(&mut conn, parent, &r.generation.certificate_der)
                .await?
        {
            chain.push(p);
        }
    }
    drop(conn);
    let view = ra::rollover::GenerationView {
        current: r.ca.serial.as_deref() == Some(r.generation.serial.as_str()),
        urls: ca::profile::PublicationUrls::for_key(
            &app.config.public_http_url(),
            &r.ca.id,
            r.generation.key_generation,
        ),
        chain,
        row: r.generation,
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "ca": ca_view(&app, &r.ca),
            "generation": generation_view(&view),
        })),
    ))
}

/// `GET /cas/{id}/generations`: every certificate the CA has held, oldest first, with
/// its chain and (a root renewed with a new key) its cross-signed certificate.
pub async fn generations(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> JsonResult {
    who.require(Permission::Read)?;
    let (ca, gens) = ra::rollover::list(&app, &who.tenant_id, &id).await?;
    Ok(axum::Json(json!({
        "ca_id": ca.id,
        "generation": ca.generation,
        "rollover_at": ca.rollover_at.map(vellum_core::time::rfc3339),
        "generations": gens.iter().map(generation_view).collect::<Vec<_>>(),
    })))
}

fn generation_view(g: &ra::rollover::GenerationView) -> Value {
    use ca::cert_pem;
    use vellum_core::time::rfc3339;
    let r = &g.row;
    json!({
        "generation": r.generation,
        "key_generation": r.key_generation,
        "current": g.current,
        "serial": r.serial,
        "not_before": rfc3339(r.not_before),
        "not_after": rfc3339(r.not_after),
        "switch_over_at": rfc3339(r.switch_over_at),
        "created_at": rfc3339(r.created_at),
        "key_storage": r.key_storage,
        "certificate_pem": cert_pem(&r.certificate_der),
        "chain_pem": g.chain.iter().map(|d| cert_pem(d)).collect::<String>(),
        "cross_signed_pem": r.cross_signed_der.as_deref().map(cert_pem),
        "crl_url": g.urls.crl,
        "certificate_url": g.urls.certificate,
    })
}
