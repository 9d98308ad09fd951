//! Managed certificates (`/managed`: upload, list, show, patch, delete, export) and the
//! format conversion tool (`/tools/convert`). Rules: `ra::managed`.

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
use super::json::{self, Json, Query};
use crate::App;
use ca::cert_pem;
use ca::formats::ExportInput;
use ra::managed::{self as rules, Patch, Upload};
use store::managed::{ManagedFilter, ManagedRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::{parse_field, FileFormat};

/// Body of `POST /managed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadBody {
    name: String,
    certificate_pem: String,
    private_key_pem: Option<String>,
    csr_id: Option<String>,
    chain_pem: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    key_passphrase: Option<String>,
}

/// The JSON view of a managed certificate (a contract: see docs/API.md). `full` adds the
/// certificate and chain PEM.
pub fn view(m: &ManagedRow, full: bool) -> Value {
    let now = vellum_core::time::now();
    let tags: Value = serde_json::from_str(&m.tags_json).unwrap_or(json!({}));
    let sans: Value = serde_json::from_str(&m.sans_json).unwrap_or(json!([]));
    let mut v = json!({
        "id": m.id,
        "name": m.name,
        "source": m.source,
        "subject": m.subject,
        "common_name": m.common_name,
        "sans": sans,
        "issuer": m.issuer,
        "serial": m.serial,
        "key_algorithm": m.key_algorithm,
        "not_before": json::rfc3339(m.not_before),
        "not_after": json::rfc3339(m.not_after),
        "status": m.status(now),
        "leakage_risk": m.leakage_risk,
        "leakage_advice": ra::inventory::leakage_advice(m.leakage_risk),
        "has_private_key": m.key_sealed.is_some(),
        "origin_certificate_id": m.origin_certificate_id,
        "shared_by": m.shared_by_tenant_id.as_ref().map(|t| json!({
            "tenant_id": t,
            "tenant_name": m.shared_by_name,
        })),
        "revoked_at": json::ts(m.revoked_at),
        "notifications": m.notifications,
        "tags": tags,
        "created_at": json::rfc3339(m.created_at),
    });
    if full {
        v["certificate_pem"] = json!(cert_pem(&m.certificate_der));
        v["chain_pem"] = json!(rules::chain(m)
            .iter()
            .map(|d| cert_pem(d))
            .collect::<String>());
    }
    v
}

/// `POST /managed`: upload a certificate from any CA with its key.
pub async fn upload(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<UploadBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::Issue)?;
    let up = Upload {
        name: body.name,
        certificate_pem: body.certificate_pem,
        private_key_pem: body.private_key_pem,
        csr_id: body.csr_id,
        chain_pem: body.chain_pem,
        tags: body.tags,
        key_passphrase: body.key_passphrase,
    };
    let res = rules::upload(&app, &who.tenant_id, &up).await;
    let target = res.as_ref().ok().map(|m| m.id.clone());
    record(&app, &who, "managed.upload", target.as_deref(), &res).await;
    Ok((StatusCode::CREATED, axum::Json(view(&res?, true))))
}

/// The filters of the managed list (`GET /managed`, `GET /managed.csv`, the `filter` of
/// `POST /managed/bulk`): all optional; an empty value is no filter.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
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
    pub fn to_filter(&self) -> Result<ManagedFilter> {
        let some = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(ManagedFilter {
            status: some(&self.status)
                .map(|s| parse_field("status", &s))
                .transpose()?,
            q: some(&self.q),
            tag: some(&self.tag),
            source: some(&self.source)
                .map(|s| parse_field("source", &s))
                .transpose()?,
            leakage_risk: match some(&self.risk).as_deref() {
                None => false,
                Some("leakage") => true,
                Some(_) => return Err(Error::invalid("risk", "must be leakage")),
            },
            after: None,
            limit: 100,
        })
    }

    /// The filter as audit detail (`status=expired tag=env` …; `all` without one).
    pub fn describe(&self) -> String {
        super::certificates::describe_filter(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// Query of `GET /managed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    source: Option<String>,
    risk: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /managed?status=&q=&tag=&source=&risk=leakage&limit=&cursor=`.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let page = json::Page {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let fq = FilterQuery {
        status: q.status,
        q: q.q,
        tag: q.tag,
        source: q.source,
        risk: q.risk,
    };
    let mut filter = fq.to_filter()?;
    filter.after = page.after().map(str::to_string);
    filter.limit = limit;
    let rows = rules::list(&app, &who.tenant_id, &filter).await?;
    let next = json::next_cursor(&rows, limit, |r| &r.id);
    let items = rows.iter().map(|r| view(r, false)).collect();
    Ok(axum::Json(json::list(items, next)))
}

/// `GET /managed/{id}`.
pub async fn show(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let m = rules::get(&app, &who.tenant_id, &id).await?;
    Ok(axum::Json(view(&m, true)))
}

/// Body of `PATCH /managed/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    name: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    notifications: Option<bool>,
}

/// `PATCH /managed/{id}`: name, tags, notifications.
pub async fn patch(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let p = Patch {
        name: body.name,
        tags: body.tags,
        notifications: body.notifications,
    };
    let res = rules::patch(&app, &who.tenant_id, &id, &p).await;
    record(&app, &who, "managed.update", Some(&id), &res).await;
    Ok(axum::Json(view(&res?, true)))
}

/// `DELETE /managed/{id}`: irreversible; the sealed key is destroyed.
pub async fn delete(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let mut v = view(&delete_one(&app, &who, &id).await?, false);
    v["deleted"] = json!(true);
    v["has_private_key"] = json!(false);
    Ok(axum::Json(v))
}

/// Deletes one managed certificate through `ra::managed::delete`, audited as
/// `managed.delete` (single call and bulk). The caller has checked `Permission::Issue`.
pub(crate) async fn delete_one(app: &App, who: &Principal, id: &str) -> Result<ManagedRow> {
    let res = rules::delete(app, &who.tenant_id, id).await;
    record(app, who, "managed.delete", Some(id), &res).await;
    let m = res?;
    // Deleting a received share ends it: the owner's log says so too.
    if let (Some(owner), Some(origin)) = (&m.shared_by_tenant_id, &m.origin_certificate_id) {
        let detail = format!(
            "tenant {} deleted its shared copy {} of certificate {origin}; the share ended",
            who.tenant_id, m.id
        );
        record_for_tenant(app, who, owner, "certificate.share.ended", origin, &detail).await;
    }
    Ok(m)
}

/// Turns one managed certificate's reminders on or off through `ra::managed::patch`,
/// audited as `managed.update` like the single `PATCH`. The caller has checked
/// `Permission::Issue`.
pub(crate) async fn notifications_one(
    app: &App,
    who: &Principal,
    id: &str,
    on: bool,
) -> Result<ManagedRow> {
    let p = Patch {
        name: None,
        tags: None,
        notifications: Some(on),
    };
    let res = rules::patch(app, &who.tenant_id, id, &p).await;
    record(app, who, "managed.update", Some(id), &res).await;
    res
}

/// `POST /managed/{id}/export`: the same formats and code as issued certificates.
pub async fn export(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ExportBody>,
) -> ApiResult<Response> {
    who.require(Permission::Issue)?;
    Ok(export_one(&app, &who, &id, &body).await?.into_response())
}

/// One managed certificate's export file, audited as `managed.export.{format}` (single
/// export and bulk). The caller has checked `Permission::Issue`.
pub(crate) async fn export_one(
    app: &App,
    who: &Principal,
    id: &str,
    body: &ExportBody,
) -> Result<super::export::File> {
    let res = async {
        let m = rules::get(app, &who.tenant_id, id).await?;
        // A received share never gives its key away, in one export or in bulk.
        ra::share::check_export(&m, &body.format)?;
        let chain = if body.include_chain.unwrap_or(true) {
            rules::chain(&m)
        } else {
            Vec::new()
        };
        let key = rules::key_pkcs8(app, &m)?;
        let alias = super::export::alias(&m.common_name, &m.id);
        let input = ExportInput {
            leaf_der: &m.certificate_der,
            chain_der: &chain,
            key_pkcs8_der: key.as_ref().map(|k| k.as_slice()),
            alias,
        };
        super::export::render_file(
            &input,
            &body.format,
            body.password.as_deref(),
            body.legacy.unwrap_or(false),
        )
    }
    .await;
    super::export::audited(app, who, "managed", id, &body.format, res).await
}

/// `POST /managed/{id}/share`: never shares (only private-CA certificates are shared,
/// through `POST /certificates/{id}/share`): an uploaded entry is a 422, a synced one a
/// 422 naming its origin's share call, a received share a 403.
pub async fn share(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(_body): Json<super::certificates::ShareBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let res: Result<Value> = async {
        let m = rules::get(&app, &who.tenant_id, &id).await?;
        Err(ra::share::refuse_managed_share(&m))
    }
    .await;
    record(&app, &who, "managed.share", Some(&id), &res).await;
    Ok(axum::Json(res?))
}

/// Body of `POST /tools/convert`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertBody {
    /// The file, base64.
    input: String,
    from: String,
    to: String,
    /// Opens the input (PKCS#12, JKS, encrypted keys).
    password: Option<String>,
    /// Protects the output (default: `password`).
    new_password: Option<String>,
    /// PKCS#12 output with 3DES/SHA-1 for old consumers.
    legacy: Option<bool>,
}

/// `POST /tools/convert`: reads a file in one format and answers it in another (binary
/// body, the content type of the format). Stateless; audited without the material.
pub async fn convert(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<ConvertBody>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let res = (|| {
        let from: FileFormat = parse_field("from", &body.from)?;
        let to: FileFormat = parse_field("to", &body.to)?;
        let material = rules::convert_read(&body.input, from, to, body.password.as_deref())?;
        let empty = Vec::new();
        let leaf = material.leaf.as_ref().unwrap_or(&empty);
        let alias = leaf_alias(leaf);
        let input = ExportInput {
            leaf_der: leaf,
            chain_der: &material.chain,
            key_pkcs8_der: material.key.as_ref().map(|k| k.as_slice()),
            alias: &alias,
        };
        let out_password = body
            .new_password
            .as_deref()
            .or(body.password.as_deref())
            .filter(|p| !p.is_empty());
        super::export::render(
            &input,
            to.as_str(),
            out_password,
            body.legacy.unwrap_or(false),
        )
        .map_err(|e| match e {
            Error::Invalid { field, detail } if field == "password" => {
                Error::invalid("new_password", detail)
            }
            other => other,
        })
    })();
    let detail = format!("from={} to={}", body.from, body.to);
    let outcome: Result<()> = match &res {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::bad_request(e.client_detail())),
    };
    record_detail(&app, &who, "tools.convert", None, &outcome, Some(&detail)).await;
    Ok(res?)
}

/// The alias of a converted file: the leaf's common name, else "certificate".
fn leaf_alias(der: &[u8]) -> String {
    ca::inspect::cert_info(der)
        .ok()
        .map(|i| i.common_name)
        .filter(|cn| !cn.is_empty())
        .unwrap_or_else(|| "certificate".to_string())
}
