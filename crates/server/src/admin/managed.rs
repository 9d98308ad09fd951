//! Managed certificates (`/managed`: upload, list, show, patch, delete, export) and the
//! format conversion tool (`/tools/convert`). Rules: `ra::managed`.

use crate::problem::ApiResult;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
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
    private_key_pem: String,
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
        chain_pem: body.chain_pem,
        tags: body.tags,
        key_passphrase: body.key_passphrase,
    };
    let res = rules::upload(&app, &who.tenant_id, &up).await;
    let target = res.as_ref().ok().map(|m| m.id.clone());
    record(&app, &who, "managed.upload", target.as_deref(), &res).await;
    Ok((StatusCode::CREATED, axum::Json(view(&res?, true))))
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
    let leakage_risk = match q.risk.as_deref().filter(|s| !s.is_empty()) {
        None => false,
        Some("leakage") => true,
        Some(_) => return Err(Error::invalid("risk", "must be leakage").into()),
    };
    let filter = ManagedFilter {
        status: q
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_field("status", s))
            .transpose()?,
        q: q.q.filter(|s| !s.is_empty()),
        tag: q.tag.filter(|s| !s.is_empty()),
        source: q
            .source
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_field("source", s))
            .transpose()?,
        leakage_risk,
        after: page.after().map(str::to_string),
        limit,
    };
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
    let res = rules::delete(&app, &who.tenant_id, &id).await;
    record(&app, &who, "managed.delete", Some(&id), &res).await;
    let m = res?;
    // Deleting a received share ends it: the owner's log says so too.
    if let (Some(owner), Some(origin)) = (&m.shared_by_tenant_id, &m.origin_certificate_id) {
        let detail = format!(
            "tenant {} deleted its shared copy {} of certificate {origin}; the share ended",
            who.tenant_id, m.id
        );
        record_for_tenant(
            &app,
            &who,
            owner,
            "certificate.share.ended",
            origin,
            &detail,
        )
        .await;
    }
    let mut v = view(&m, false);
    v["deleted"] = json!(true);
    v["has_private_key"] = json!(false);
    Ok(axum::Json(v))
}

/// `POST /managed/{id}/export`: the same formats and code as issued certificates.
pub async fn export(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ExportBody>,
) -> ApiResult<Response> {
    who.require(Permission::Issue)?;
    let res = async {
        let m = rules::get(&app, &who.tenant_id, &id).await?;
        ra::share::check_export(&m, &body.format)?;
        let chain = if body.include_chain.unwrap_or(true) {
            rules::chain(&m)
        } else {
            Vec::new()
        };
        let key = rules::key_pkcs8(&app, &m)?;
        let alias = super::export::alias(&m.common_name, &m.id);
        let input = ExportInput {
            leaf_der: &m.certificate_der,
            chain_der: &chain,
            key_pkcs8_der: key.as_ref().map(|k| k.as_slice()),
            alias,
        };
        super::export::render(
            &input,
            &body.format,
            body.password.as_deref(),
            body.legacy.unwrap_or(false),
        )
    }
    .await;
    let action = format!("managed.export.{}", body.format);
    let outcome: Result<()> = match &res {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::bad_request(e.client_detail())),
    };
    record(&app, &who, &action, Some(&id), &outcome).await;
    Ok(res?)
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
