//! `GET /overview`: the console's pictures (`ra::overview`), for any role.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::auth::{Permission, Principal};
use super::json::rfc3339;
use crate::problem::ApiResult;
use crate::App;

/// `GET /overview`.
pub async fn show(State(app): State<Arc<App>>, who: Principal) -> ApiResult<Json<Value>> {
    who.require(Permission::Read)?;
    let o = ra::overview::overview(&app, &who.tenant_id).await?;
    Ok(Json(json!({
        "expiring": o.expiring.iter().map(|w| json!({"from": rfc3339(w.from), "count": w.count})).collect::<Vec<_>>(),
        "issued": o.issued.iter().map(|d| json!({"day": rfc3339(d.day), "admin": d.admin, "acme": d.acme, "est": d.est})).collect::<Vec<_>>(),
        "cas": o.cas,
    })))
}
