//! Pending items: `GET /pending`, `POST /pending/snooze`, `DELETE /pending/snooze`.
//!
//! Any role may read them and snooze its own reminders (an auditor too: a snooze changes
//! nothing but the calling token's reminders).

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record_detail;
use super::auth::{Permission, Principal};
use super::json::{self, Json, Query};
use crate::App;
use ra::pending::{self as rules, Item, Pending};
use vellum_core::status::PendingKind;

/// The API call that resolves an item of `kind` (`{id}` is the item's id; `{root}` an
/// intermediate's root).
pub fn action(kind: PendingKind) -> &'static str {
    match kind {
        PendingKind::Expiring | PendingKind::Expired => "POST /admin/v1/certificates/{id}/renew",
        PendingKind::NotificationsOff => "PATCH /admin/v1/managed/{id} {\"notifications\": true}",
        PendingKind::QuotaLow => {
            "POST /admin/v1/cas/{root}/quota/assign {\"intermediate_id\": \"{id}\", \"count\": n}"
        }
        PendingKind::ServiceEnding => "POST /admin/v1/cas/{id}/service/renew {\"months\": n}",
        PendingKind::PendingEnable => "POST /admin/v1/cas/{id}/enable",
        PendingKind::Refundable => "POST /admin/v1/cas/{id}/refund",
        PendingKind::NotificationsFailed => {
            "POST /admin/v1/notifications/deliveries/{id}/redeliver"
        }
    }
}

fn item_view(i: &Item) -> Value {
    let mut v = json!({
        "id": i.id,
        "type": i.item_type,
        "name": i.name,
        "detail": i.detail,
    });
    if let Some(t) = i.not_after {
        v["not_after"] = json!(json::rfc3339(t));
    }
    v
}

/// The JSON view of the pending items (a contract: see docs/API.md).
pub fn view(p: &Pending) -> Value {
    let kinds: Vec<Value> = p
        .kinds
        .iter()
        .map(|k| {
            json!({
                "kind": k.kind,
                "count": k.count,
                "items": k.items.iter().map(item_view).collect::<Vec<_>>(),
                "snoozed_until": json::ts(k.snoozed_until),
                "action": action(k.kind),
            })
        })
        .collect();
    json!({ "remind": p.remind, "total": p.total, "kinds": kinds })
}

/// `GET /pending`: counts and first items by kind, for the caller's tenant and token.
pub async fn show(State(app): State<Arc<App>>, who: Principal) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let p = rules::pending(&app, &who.tenant_id, &who.token_id).await?;
    let mut v = view(&p);
    // Reminders off: how many more may be turned on.
    let q = ra::notify::quota(&app, &who.tenant_id).await?;
    if let Some(kinds) = v["kinds"].as_array_mut() {
        for k in kinds {
            if k["kind"] == "notifications_off" {
                k["quota"] = super::notifications::quota_view(&q);
            }
        }
    }
    Ok(axum::Json(v))
}

/// Body of `POST /pending/snooze`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    kind: String,
    days: Option<i64>,
}

/// `POST /pending/snooze {"kind", "days"?}`: the calling token is not reminded of `kind`
/// (or of every kind: `all`) for `days` (1–30, default 7).
pub async fn snooze(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<SnoozeBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let res = rules::snooze(&app, &who.tenant_id, &who.token_id, &body.kind, body.days).await;
    let detail = match (&res, body.days) {
        (Ok(s), _) => format!("until={}", json::rfc3339(s.until)),
        (Err(_), Some(d)) => format!("days={d}"),
        (Err(_), None) => "days=default".to_string(),
    };
    record_detail(
        &app,
        &who,
        "pending.snooze",
        Some(&body.kind),
        &res,
        Some(&detail),
    )
    .await;
    let s = res?;
    Ok(axum::Json(json!({
        "snoozed": s.kinds,
        "snoozed_until": json::rfc3339(s.until),
    })))
}

/// Query of `DELETE /pending/snooze`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsnoozeQuery {
    kind: Option<String>,
}

/// `DELETE /pending/snooze?kind=`: lifts the calling token's snooze of `kind` (default:
/// every kind).
pub async fn unsnooze(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<UnsnoozeQuery>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let kind = q.kind.as_deref().filter(|k| !k.is_empty());
    let res = rules::unsnooze(&app, &who.tenant_id, &who.token_id, kind).await;
    record_detail(
        &app,
        &who,
        "pending.unsnooze",
        Some(kind.unwrap_or(rules::ALL_KINDS)),
        &res,
        None,
    )
    .await;
    Ok(axum::Json(json!({ "unsnoozed": res? })))
}
