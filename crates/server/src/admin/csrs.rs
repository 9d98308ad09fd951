//! `/csrs`: certificate signing requests made here, to take to another CA (the rules are
//! `ra::csrs`'s). The private key never leaves the server through these endpoints.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::{list, next_cursor, rfc3339, Json, Page, Query};
use crate::problem::ApiResult;
use crate::App;
use ca::profile::SubjectFields;
use ra::spec::SanInput;
use store::csrs::CsrRow;

/// Body of `POST /csrs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCsrBody {
    /// `server` (default) or `client`.
    #[serde(rename = "type")]
    cert_type: Option<String>,
    #[serde(default)]
    common_name: String,
    #[serde(default)]
    sans: Vec<SanInput>,
    key_algorithm: Option<String>,
    organization: Option<String>,
    organizational_unit: Option<String>,
    locality: Option<String>,
    state: Option<String>,
    country: Option<String>,
}

fn view(c: &CsrRow) -> Value {
    let sans: Value = serde_json::from_str(&c.sans_json).unwrap_or_else(|_| json!([]));
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", c.csr_der.clone()));
    json!({
        "id": c.id,
        "common_name": c.common_name,
        "subject": c.subject,
        "sans": sans,
        "key_algorithm": c.key_algorithm,
        "csr_pem": pem,
        "created_at": rfc3339(c.created_at),
        "created_by": c.created_by,
    })
}

/// `POST /csrs` → 201 with the CSR (PEM).
pub async fn create(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<NewCsrBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::Issue)?;
    let res = async {
        let leaf_type = ra::spec::leaf_type(body.cert_type.as_deref().unwrap_or("server"))?;
        let req = ra::csrs::NewCsr {
            subject: SubjectFields {
                common_name: body.common_name,
                organization: body.organization,
                organizational_unit: body.organizational_unit,
                locality: body.locality,
                state: body.state,
                country: body.country,
            },
            sans: body.sans,
            key_algorithm: body.key_algorithm,
            leaf_type,
        };
        ra::csrs::create(&app, &who.tenant_id, &req, Some(&who.token_id)).await
    }
    .await;
    let target = res.as_ref().ok().map(|c| c.id.clone());
    record(&app, &who, "csr.create", target.as_deref(), &res).await;
    Ok((StatusCode::CREATED, axum::Json(view(&res?))))
}

/// `GET /csrs?limit=&cursor=`.
pub async fn list_csrs(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(page): Query<Page>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let limit = page.limit()?;
    let mut conn = app.store.reader().acquire().await?;
    let rows = store::csrs::list(&mut conn, &who.tenant_id, page.after(), limit).await?;
    let next = next_cursor(&rows, limit, |c| &c.id);
    Ok(axum::Json(list(rows.iter().map(view).collect(), next)))
}

/// `GET /csrs/{id}`.
pub async fn show(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let c = ra::csrs::load(&app, &who.tenant_id, &id).await?;
    Ok(axum::Json(view(&c)))
}

/// `DELETE /csrs/{id}`: the CSR and its key are gone (irreversible).
pub async fn delete(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let res = ra::csrs::delete(&app, &who.tenant_id, &id).await;
    record(&app, &who, "csr.delete", Some(&id), &res).await;
    Ok(axum::Json(view(&res?)))
}
