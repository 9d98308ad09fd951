//! Certificate endpoints: apply, inventory, show, export, revoke, delete, renew.

use crate::problem::ApiResult;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::audit::{record, record_detail, record_for_tenant};
use super::auth::{Permission, Principal};
use super::export::ExportBody;
use super::json::{self, Json, OptJson, Query};
use crate::App;
use ca::cert_pem;
use ca::formats::ExportInput;
use ra::csr;
use ra::issue::{self, IssueRequest, Issued, KeySource};
use ra::spec::{CertSpec, Requester, SanInput};
use store::certificates::{CertFilter, CertLinks, CertRow};
use store::{self, audit::AuditEvent};
use vellum_core::error::{Error, Result};
use vellum_core::status::{parse_field, AuditOutcome, CertificateStatus, RevocationReason, Risk};

/// Body of `POST /cas/{id}/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    #[serde(rename = "type")]
    pub cert_type: String,
    #[serde(default)]
    pub common_name: String,
    #[serde(default)]
    pub sans: Vec<SanInput>,
    pub validity_days: i64,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    pub locality: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default = "ra::spec::default_true")]
    pub include_crl: bool,
    pub key_algorithm: Option<String>,
    #[serde(skip_serializing)]
    pub csr_pem: Option<String>,
}

/// Turns an apply body into an issuance request (validation of the body's own rules).
/// With `csr_pem`, the CSR's subject fills every subject field the body leaves out, and
/// its SANs are used when the body gives none; the stored specification records the
/// result, so a renewal certifies the same names.
pub fn request_from_body(who: &Principal, ca_id: &str, body: &ApplyBody) -> Result<IssueRequest> {
    let mut effective = body.clone();
    let key = match (&body.key_algorithm, &body.csr_pem) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "csr_pem",
                "give either key_algorithm (the server generates the key) or csr_pem, not both",
            ))
        }
        (_, Some(pem)) => {
            let parsed = csr::from_pem("csr_pem", pem)?;
            fill_from_csr(&mut effective, &parsed)?;
            KeySource::Provided {
                spki_der: parsed.spki_der,
                key_algorithm: parsed.key_algorithm,
                is_rsa: parsed.is_rsa,
            }
        }
        (_, None) => effective.spec().generated_key()?,
    };
    effective
        .spec()
        .request(ca_id, key, requester(who, "certificate.issue"))
}

impl ApplyBody {
    /// The stored specification of this body (everything but the CSR).
    fn spec(&self) -> CertSpec {
        CertSpec {
            cert_type: self.cert_type.clone(),
            common_name: self.common_name.clone(),
            sans: self.sans.clone(),
            validity_days: self.validity_days,
            organization: self.organization.clone(),
            organizational_unit: self.organizational_unit.clone(),
            locality: self.locality.clone(),
            state: self.state.clone(),
            country: self.country.clone(),
            name: self.name.clone(),
            tags: self.tags.clone(),
            include_crl: self.include_crl,
            key_algorithm: self.key_algorithm.clone(),
        }
    }
}

fn requester(who: &Principal, action: &str) -> Requester {
    Requester {
        tenant_id: who.tenant_id.clone(),
        id: Some(who.token_id.clone()),
        audit: Some(audit_event(who, action)),
    }
}

/// Fills the subject fields and SANs `body` leaves out from the CSR (`csr_pem`).
fn fill_from_csr(body: &mut ApplyBody, parsed: &csr::ParsedCsr) -> Result<()> {
    let needs_subject = body.common_name.trim().is_empty()
        || body.organization.is_none()
        || body.organizational_unit.is_none()
        || body.locality.is_none()
        || body.state.is_none()
        || body.country.is_none();
    if needs_subject {
        match &parsed.subject {
            Ok(s) => {
                if body.common_name.trim().is_empty() {
                    body.common_name = s.common_name.clone();
                }
                for (slot, from) in [
                    (&mut body.organization, &s.organization),
                    (&mut body.organizational_unit, &s.organizational_unit),
                    (&mut body.locality, &s.locality),
                    (&mut body.state, &s.state),
                    (&mut body.country, &s.country),
                ] {
                    if slot.is_none() {
                        slot.clone_from(from);
                    }
                }
            }
            // The body names the subject itself: the CSR's is not used.
            Err(_) if !body.common_name.trim().is_empty() => {}
            Err(e) => return Err(Error::invalid("csr_pem", e.clone())),
        }
    }
    if body.sans.is_empty() {
        body.sans = parsed.sans.iter().map(SanInput::from).collect();
    }
    Ok(())
}

fn audit_event(who: &Principal, action: &str) -> AuditEvent {
    AuditEvent {
        at: vellum_core::time::now(),
        tenant_id: Some(who.tenant_id.clone()),
        actor: Some(who.token_id.clone()),
        actor_name: Some(who.token_name.clone()),
        action: action.into(),
        source_ip: who.source_ip.clone(),
        outcome: AuditOutcome::Success,
        ..AuditEvent::default()
    }
}

/// Status of a certificate at `now`.
pub fn status(c: &CertRow, now: i64) -> CertificateStatus {
    c.status(now)
}

/// The JSON view of a certificate (a contract: see docs/API.md), with its links to the
/// managed lists (`synced`, `shared_with`).
pub fn view(c: &CertRow, links: &CertLinks, chain_der: &[Vec<u8>]) -> Value {
    let now = vellum_core::time::now();
    let subject: Value = serde_json::from_str(&c.subject_json).unwrap_or(json!({}));
    let tags: Value = serde_json::from_str(&c.tags_json).unwrap_or(json!({}));
    let sans: Value = serde_json::from_str(&c.sans_json).unwrap_or(json!([]));
    json!({
        "id": c.id,
        "serial": c.serial,
        "ca_id": c.ca_id,
        "type": c.cert_type,
        "common_name": c.common_name,
        "sans": sans,
        "organization": subject["organization"],
        "organizational_unit": subject["organizational_unit"],
        "locality": subject["locality"],
        "state": subject["state"],
        "country": subject["country"],
        "not_before": json::rfc3339(c.not_before),
        "not_after": json::rfc3339(c.not_after),
        "status": status(c, now),
        "revoked_at": json::ts(c.revoked_at),
        "revocation_reason": c.revocation_reason,
        "leakage_risk": c.leakage_risk,
        "leakage_advice": ra::inventory::leakage_advice(c.leakage_risk),
        "source": c.source,
        "name": c.name,
        "key_algorithm": c.key_algorithm,
        "has_private_key": c.key_sealed.is_some(),
        "tags": tags,
        "requester": c.requester,
        "renewed_from": c.renewed_from,
        "synced": links.synced,
        "shared_with": links.shared_with.as_ref().map(|l| json!({
            "tenant_id": l.tenant_id,
            "tenant_name": l.tenant_name,
            "shared_at": json::rfc3339(l.shared_at),
        })),
        "created_at": json::rfc3339(c.created_at),
        "certificate_pem": cert_pem(&c.certificate_der),
        "chain_pem": chain_der.iter().map(|d| cert_pem(d)).collect::<String>(),
    })
}

/// The chain (issuing CA, then the root certificate that issued it) of certificates
/// issued by `ca_id`.
async fn chain_for(app: &App, ca_id: Option<&str>) -> Result<Vec<Vec<u8>>> {
    let Some(ca_id) = ca_id else {
        return Ok(Vec::new());
    };
    let mut conn = app.store.reader().acquire().await?;
    ra::rollover::ca_chain(&mut conn, ca_id).await
}

/// A certificate just issued: no copy of it exists yet.
fn issued_view(i: &Issued) -> Value {
    view(&i.record, &CertLinks::default(), &i.chain_der)
}

/// `POST /cas/{id}/certificates`: issue through the one path.
pub async fn apply(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(ca_id): Path<String>,
    Json(body): Json<ApplyBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::Issue)?;
    let res = async {
        let req = request_from_body(&who, &ca_id, &body)?;
        issue::issue(&app, req).await
    }
    .await;
    match res {
        Ok(issued) => Ok((StatusCode::CREATED, axum::Json(issued_view(&issued)))),
        Err(e) => {
            // Successes are audited inside the issuing transaction; failures here.
            let failed: Result<()> = Err(e);
            record(&app, &who, "certificate.issue", Some(&ca_id), &failed).await;
            Err(failed
                .err()
                .unwrap_or_else(|| Error::internal("unreachable"))
                .into())
        }
    }
}

/// The filters of the certificate list (`GET /certificates`, `GET /certificates.csv`, the
/// `filter` of `POST /certificates/bulk`): all optional; an empty value is no filter.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub cert_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
}

impl FilterQuery {
    /// The store's filter (first page, `limit` 100 until the caller sets it); each bad
    /// value is a 422 naming its parameter.
    pub fn to_filter(&self) -> Result<CertFilter> {
        let some = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(CertFilter {
            // As the list always read them: an empty ca_id, status or type is a value.
            ca_id: self.ca_id.clone(),
            status: self
                .status
                .as_deref()
                .map(|s| parse_field("status", s))
                .transpose()?,
            cert_type: self
                .cert_type
                .as_deref()
                .map(ra::spec::leaf_type)
                .transpose()?,
            q: some(&self.q),
            tag: some(&self.tag),
            source: some(&self.source)
                .map(|s| parse_field("source", &s))
                .transpose()?,
            leakage_risk: match some(&self.risk) {
                Some(r) => match parse_field::<Risk>("risk", &r)? {
                    Risk::Leakage => true,
                },
                None => false,
            },
            after: None,
            limit: 100,
        })
    }

    /// The filter as audit detail (`status=expired tag=env` …; `all` without one).
    pub fn describe(&self) -> String {
        describe_filter(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// `k=v` pairs of a JSON object of filters, space-separated (`all` when empty).
pub fn describe_filter(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    v.as_str()
                        .filter(|s| !s.is_empty())
                        .map(|s| format!("{k}={s}"))
                })
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}

/// Query of `GET /certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    ca_id: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    cert_type: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    source: Option<String>,
    risk: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /certificates?ca_id=&status=&type=&q=&tag=&source=&risk=&limit=&cursor=`.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000").into());
    }
    let fq = FilterQuery {
        ca_id: q.ca_id,
        status: q.status,
        cert_type: q.cert_type,
        q: q.q,
        tag: q.tag,
        source: q.source,
        risk: q.risk,
    };
    let mut filter = fq.to_filter()?;
    filter.after = q.cursor;
    filter.limit = limit;
    let rows = {
        let mut conn = app.store.reader().acquire().await?;
        store::certificates::list(&mut conn, &who.tenant_id, &filter, vellum_core::time::now())
            .await?
    };
    let mut chains: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut items = Vec::with_capacity(rows.len());
    for (r, links) in &rows {
        let key = r.ca_id.clone().unwrap_or_default();
        if !chains.contains_key(&key) {
            chains.insert(key.clone(), chain_for(&app, r.ca_id.as_deref()).await?);
        }
        items.push(view(r, links, &chains[&key]));
    }
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|(r, _)| r.id.clone()))
        .flatten();
    Ok(axum::Json(json::list(items, next)))
}

/// The certificate with its links, for the views that answer a change.
async fn load_linked(app: &App, who: &Principal, id: &str) -> Result<(CertRow, CertLinks)> {
    let mut conn = app.store.reader().acquire().await?;
    store::certificates::get_linked(&mut conn, &who.tenant_id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no certificate with id {id} in this tenant")))
}

/// The view of a certificate as it is now.
async fn current_view(app: &App, who: &Principal, id: &str) -> Result<Value> {
    let (c, links) = load_linked(app, who, id).await?;
    let chain = chain_for(app, c.ca_id.as_deref()).await?;
    Ok(view(&c, &links, &chain))
}

async fn load(app: &App, who: &Principal, id: &str) -> Result<CertRow> {
    let mut conn = app.store.reader().acquire().await?;
    store::certificates::get(&mut conn, &who.tenant_id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no certificate with id {id} in this tenant")))
}

/// `GET /certificates/{id}`.
pub async fn show(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(current_view(&app, &who, &id).await?))
}

/// Body of `PATCH /certificates/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    tags: BTreeMap<String, String>,
}

/// `PATCH /certificates/{id}`: replaces the certificate's tags (audited as
/// `certificate.tags`).
pub async fn update(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let res = ra::inventory::set_certificate_tags(&app, &who.tenant_id, &id, &body.tags).await;
    record(&app, &who, "certificate.tags", Some(&id), &res).await;
    res?;
    Ok(axum::Json(current_view(&app, &who, &id).await?))
}

/// `POST /certificates/{id}/export`: PEM bundle, DER, PKCS#12, JKS or PKCS#8.
pub async fn export(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ExportBody>,
) -> ApiResult<Response> {
    who.require(Permission::Issue)?;
    Ok(export_one(&app, &who, &id, &body).await?.into_response())
}

/// One certificate's export file, audited as `certificate.export.{format}` (the single
/// export and each item of a bulk export). The caller has checked `Permission::Issue`.
pub(crate) async fn export_one(
    app: &App,
    who: &Principal,
    id: &str,
    body: &ExportBody,
) -> Result<super::export::File> {
    let res = export_inner(app, who, id, body).await;
    super::export::audited(app, who, "certificate", id, &body.format, res).await
}

async fn export_inner(
    app: &App,
    who: &Principal,
    id: &str,
    body: &ExportBody,
) -> Result<super::export::File> {
    let c = load(app, who, id).await?;
    let chain = if body.include_chain.unwrap_or(true) {
        chain_for(app, c.ca_id.as_deref()).await?
    } else {
        Vec::new()
    };
    let key_der = match &c.key_sealed {
        Some(sealed) => Some(app.master.open_pkcs8(&c.id, sealed)?),
        None => None,
    };
    let alias = super::export::alias(&c.common_name, &c.id);
    let input = ExportInput {
        leaf_der: &c.certificate_der,
        chain_der: &chain,
        key_pkcs8_der: key_der.as_ref().map(|k| k.as_slice()),
        alias,
    };
    super::export::render_file(
        &input,
        &body.format,
        body.password.as_deref(),
        body.legacy.unwrap_or(false),
    )
}

/// Body of `POST /certificates/{id}/revoke`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    reason: Option<String>,
}

/// `POST /certificates/{id}/revoke`.
pub async fn revoke(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    OptJson(body): OptJson<RevokeBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    revoke_one(&app, &who, &id, body.reason.as_deref()).await?;
    Ok(axum::Json(current_view(&app, &who, &id).await?))
}

/// Revokes one certificate through `ra::revoke`, audited as `certificate.revoke` (the
/// single call and each item of a bulk revoke). The caller has checked
/// `Permission::Issue`.
pub(crate) async fn revoke_one(
    app: &App,
    who: &Principal,
    id: &str,
    reason: Option<&str>,
) -> Result<CertRow> {
    let res = async {
        let reason = RevocationReason::parse_loose("reason", reason)?;
        ra::revoke::revoke_certificate(app, &who.tenant_id, id, reason).await
    }
    .await;
    record(app, who, "certificate.revoke", Some(id), &res).await;
    res
}

/// `DELETE /certificates/{id}`: only revoked or expired certificates. Its share ends
/// (audited in the recipient's tenant too); its synced copy stays.
pub async fn delete(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let c = delete_one(&app, &who, &id).await?;
    let mut v = view(&c, &CertLinks::default(), &[]);
    v["deleted"] = json!(true);
    Ok(axum::Json(v))
}

/// Deletes one certificate through `ra::revoke::delete_certificate`, audited as
/// `certificate.delete` (single call and bulk). The caller has checked
/// `Permission::Issue`.
pub(crate) async fn delete_one(app: &App, who: &Principal, id: &str) -> Result<CertRow> {
    let res = ra::revoke::delete_certificate(app, &who.tenant_id, id).await;
    record(app, who, "certificate.delete", Some(id), &res).await;
    let (c, recipient) = res?;
    if let Some(r) = recipient {
        let detail = format!(
            "certificate {id} was deleted by its owner tenant {}; the share ended",
            who.tenant_id
        );
        record_for_tenant(app, who, &r, "certificate.share.ended", id, &detail).await;
    }
    Ok(c)
}

/// Body of `POST /certificates/{id}/renew`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    force: Option<bool>,
}

/// `POST /certificates/{id}/renew`: a new certificate with the same specification.
pub async fn renew(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    OptJson(body): OptJson<RenewBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::Issue)?;
    let issued = renew_one(&app, &who, &id, body.force.unwrap_or(false)).await?;
    let mut v = issued_view(&issued);
    // The renewal may carry the synced copy of the certificate it renews.
    if let Ok((_, links)) = load_linked(&app, &who, &issued.record.id).await {
        v["synced"] = json!(links.synced);
    }
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// Renews one certificate through `ra::renew` (quota spent as for any issuance); a
/// success is audited in the issuing transaction, a refusal here as `certificate.renew`.
/// The caller has checked `Permission::Issue`.
pub(crate) async fn renew_one(app: &App, who: &Principal, id: &str, force: bool) -> Result<Issued> {
    let res = async {
        let old = load(app, who, id).await?;
        ra::renew::renew(app, &old, force, requester(who, "certificate.renew")).await
    }
    .await;
    if res.is_err() {
        record(app, who, "certificate.renew", Some(id), &res).await;
    }
    res
}

/// Body of `POST /cas/{id}/certificates/sync`: `certificate_ids` or `all: true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    certificate_ids: Option<Vec<String>>,
    all: Option<bool>,
}

/// `POST /cas/{id}/certificates/sync`: copies certificates the CA issued into the
/// managed list (audited as `certificates.sync`, target the CA, detail the counts).
pub async fn sync(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(ca_id): Path<String>,
    Json(body): Json<SyncBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let res = async {
        let sel = match (body.certificate_ids, body.all) {
            (Some(_), Some(true)) => {
                return Err(Error::invalid(
                    "all",
                    "give either certificate_ids or \"all\": true, not both",
                ))
            }
            (Some(ids), _) => ra::sync::Selection::Ids(ids),
            (None, Some(true)) => ra::sync::Selection::All,
            (None, _) => {
                return Err(Error::invalid(
                    "certificate_ids",
                    "is required (or send \"all\": true)",
                ))
            }
        };
        ra::sync::sync(&app, &who.tenant_id, &ca_id, &sel).await
    }
    .await;
    let detail = res.as_ref().ok().map(|r| {
        format!(
            "added={} already_synced={} skipped={}",
            r.added.len(),
            r.already_synced,
            r.skipped.len()
        )
    });
    record_detail(
        &app,
        &who,
        "certificates.sync",
        Some(&ca_id),
        &res,
        detail.as_deref(),
    )
    .await;
    let r = res?;
    Ok(axum::Json(json!({
        "added": r.added.len(),
        "already_synced": r.already_synced,
        "skipped": r.skipped.iter().map(|s| json!({
            "certificate_id": s.certificate_id,
            "reason": s.reason,
        })).collect::<Vec<_>>(),
        "managed_ids": r.added,
    })))
}

/// Body of `POST /certificates/{id}/share`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    /// The recipient tenant's id.
    pub tenant: String,
}

/// `POST /certificates/{id}/share`: lends the certificate (no key) to another tenant of
/// the same entity; audited in both tenants.
pub async fn share(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ShareBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let res = ra::share::share_certificate(&app, &who.tenant_id, &id, &body.tenant).await;
    let detail = res.as_ref().ok().map(|s| {
        format!(
            "shared with tenant {} ({})",
            s.recipient.id, s.recipient.name
        )
    });
    record_detail(
        &app,
        &who,
        "certificate.share",
        Some(&id),
        &res,
        detail.as_deref(),
    )
    .await;
    let shared = res?;
    let detail = format!(
        "certificate {id} shared by tenant {} as managed certificate {}",
        who.tenant_id, shared.copy.id
    );
    record_for_tenant(
        &app,
        &who,
        &shared.recipient.id,
        "certificate.share.received",
        &id,
        &detail,
    )
    .await;
    Ok(axum::Json(current_view(&app, &who, &id).await?))
}

/// `DELETE /certificates/{id}/share`: the owner withdraws the share; the recipient's copy
/// disappears. Audited in both tenants.
pub async fn unshare(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let res = ra::share::withdraw(&app, &who.tenant_id, &id).await;
    let detail = res
        .as_ref()
        .ok()
        .map(|r| format!("share with tenant {r} withdrawn"));
    record_detail(
        &app,
        &who,
        "certificate.unshare",
        Some(&id),
        &res,
        detail.as_deref(),
    )
    .await;
    let recipient = res?;
    let detail = format!(
        "the owner tenant {} withdrew the share of certificate {id}",
        who.tenant_id
    );
    record_for_tenant(
        &app,
        &who,
        &recipient,
        "certificate.share.withdrawn",
        &id,
        &detail,
    )
    .await;
    Ok(axum::Json(current_view(&app, &who, &id).await?))
}
