//! Per-CA overrides of the ACME and EST rate limits (`[rate_limits]` in the configuration).

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::Json;
use crate::App;
use ra::hierarchy;
use store::{self, rate_limits::Overrides};

fn view(app: &App, ca_id: &str, o: &Overrides) -> Value {
    let e = ra::ratelimit::effective(&app.config.rate_limits, o);
    json!({
        "ca_id": ca_id,
        "overrides": o,
        "effective": {
            "acme_new_accounts_per_ip_per_hour": e.acme_new_accounts_per_ip_per_hour,
            "acme_orders_per_account_per_hour": e.acme_orders_per_account_per_hour,
            "acme_failed_validations_per_name_per_hour": e.acme_failed_validations_per_name_per_hour,
            "est_failed_logins_per_user": e.est_failed_logins_per_user,
            "est_failed_logins_per_ip": e.est_failed_logins_per_ip,
        },
        "per_replica": true,
    })
}

/// `GET /cas/{id}/rate-limits`.
pub async fn get_limits(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    hierarchy::load_intermediate(&app, &who.tenant_id, &id, "rate limits").await?;
    let mut conn = app.store.reader().acquire().await?;
    let o = store::rate_limits::get(&mut conn, &id).await?;
    Ok(axum::Json(view(&app, &id, &o)))
}

/// Body of `PUT /cas/{id}/rate-limits`: a number sets the CA's value (0 turns the limit
/// off), `null` returns to the configured value, an omitted key keeps its value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    #[serde(default, deserialize_with = "present")]
    acme_new_accounts_per_ip_per_hour: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    acme_orders_per_account_per_hour: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    acme_failed_validations_per_name_per_hour: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    est_failed_logins_per_user: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    est_failed_logins_per_ip: Option<Option<u32>>,
}

/// `Some(None)` for an explicit `null`, `None` (via `default`) when absent.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<u32>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PUT /cas/{id}/rate-limits`.
pub async fn put_limits(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<LimitsBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        hierarchy::load_intermediate(&app, &who.tenant_id, &id, "rate limits").await?;
        let mut o = {
            let mut conn = app.store.reader().acquire().await?;
            store::rate_limits::get(&mut conn, &id).await?
        };
        let set = |field: &mut Option<u32>, v: Option<Option<u32>>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(
            &mut o.acme_new_accounts_per_ip_per_hour,
            body.acme_new_accounts_per_ip_per_hour,
        );
        set(
            &mut o.acme_orders_per_account_per_hour,
            body.acme_orders_per_account_per_hour,
        );
        set(
            &mut o.acme_failed_validations_per_name_per_hour,
            body.acme_failed_validations_per_name_per_hour,
        );
        set(
            &mut o.est_failed_logins_per_user,
            body.est_failed_logins_per_user,
        );
        set(
            &mut o.est_failed_logins_per_ip,
            body.est_failed_logins_per_ip,
        );
        let mut tx = app.store.begin().await?;
        store::rate_limits::put(&mut tx, &id, &o, vellum_core::time::now()).await?;
        tx.commit().await?;
        Ok(o)
    }
    .await;
    record(&app, &who, "ca.rate_limits", Some(&id), &res).await;
    Ok(axum::Json(view(&app, &id, &res?)))
}
