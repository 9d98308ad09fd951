//! Notifications: channels (`/notifications/channels`), a channel's test message, the
//! tenant's settings and quota, the delivery log and redeliveries.
//!
//! Reading needs `Read`; every change needs `Notifications` (admins): a channel makes
//! the server connect where its URL or SMTP host says.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::{record, record_detail};
use super::auth::{Permission, Principal};
use super::json::{self, Json, Query};
use crate::problem::ApiResult;
use crate::App;
use ra::notify::{self as rules, ChannelInput, SmtpInput};
use store::notify::{DeliveryFilter, DeliveryRow};
use vellum_core::error::Error;
use vellum_core::status::{ChannelKind, DeliveryStatus, NotificationEvent, SmtpTls};

/// The `smtp` object of an e-mail channel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpBody {
    host: String,
    port: u16,
    tls: SmtpTls,
    username: Option<String>,
    password: Option<String>,
}

/// Body of `POST /notifications/channels` and `PATCH /notifications/channels/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    kind: Option<ChannelKind>,
    name: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
    url: Option<String>,
    secret: Option<String>,
    smtp: Option<SmtpBody>,
    from: Option<String>,
    to: Option<Vec<String>>,
}

impl ChannelBody {
    fn input(self) -> ChannelInput {
        ChannelInput {
            kind: self.kind,
            name: self.name,
            events: self.events,
            enabled: self.enabled,
            url: self.url,
            secret: self.secret,
            smtp: self.smtp.map(|s| SmtpInput {
                host: s.host,
                port: s.port,
                tls: s.tls,
                username: s.username,
                password: s.password,
            }),
            from: self.from,
            to: self.to,
        }
    }
}

/// `POST /notifications/channels`: 201 with the channel (never its secret).
pub async fn create(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<ChannelBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::Notifications)?;
    let res = rules::create_channel(&app, &who.tenant_id, &body.input()).await;
    let target = res.as_ref().ok().map(|c| c.id.clone());
    record(
        &app,
        &who,
        "notification.channel.create",
        target.as_deref(),
        &res,
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(rules::channel_view(&res?))))
}

/// `GET /notifications/channels`.
pub async fn list(State(app): State<Arc<App>>, who: Principal) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let mut conn = app.store.reader().acquire().await?;
    let rows = store::notify::list_channels(&mut conn, &who.tenant_id).await?;
    Ok(axum::Json(json::list(
        rows.iter().map(rules::channel_view).collect(),
        None,
    )))
}

/// `GET /notifications/channels/{id}`.
pub async fn show(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let c = rules::channel(&app, &who.tenant_id, &id).await?;
    Ok(axum::Json(rules::channel_view(&c)))
}

/// `PATCH /notifications/channels/{id}`: the fields given replace the stored ones.
pub async fn update(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ChannelBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Notifications)?;
    let res = rules::update_channel(&app, &who.tenant_id, &id, &body.input()).await;
    record(&app, &who, "notification.channel.update", Some(&id), &res).await;
    Ok(axum::Json(rules::channel_view(&res?)))
}

/// `DELETE /notifications/channels/{id}`: 204.
pub async fn remove(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Permission::Notifications)?;
    let res = rules::delete_channel(&app, &who.tenant_id, &id).await;
    record(&app, &who, "notification.channel.delete", Some(&id), &res).await;
    res?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /notifications/channels/{id}/test`: sends a test message now and reports what
/// the receiver answered (200 either way: the report is the answer).
pub async fn test(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Notifications)?;
    let res = rules::test_channel(&app, &who.tenant_id, &id).await;
    let detail = res.as_ref().ok().map(|t| {
        format!(
            "delivered={} status={}",
            t.answer.delivered,
            t.answer
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into())
        )
    });
    record_detail(
        &app,
        &who,
        "notification.channel.test",
        Some(&id),
        &res,
        detail.as_deref(),
    )
    .await;
    let t = res?;
    Ok(axum::Json(json!({
        "event_id": t.event_id,
        "delivered": t.answer.delivered,
        "remote_status": t.answer.status,
        "error": t.answer.error,
    })))
}

fn settings_view(s: &rules::Settings, q: Option<&rules::QuotaView>) -> Value {
    let mut v = json!({
        "reminder_days": s.reminder_days,
        "quota_low_percent": s.quota_low_percent,
        "events": rules::event_names(),
    });
    if let Some(q) = q {
        v["quota"] = quota_view(q);
    }
    v
}

/// `{total, used, left}` (also in `/pending`'s `notifications_off`).
pub(crate) fn quota_view(q: &rules::QuotaView) -> Value {
    json!({ "total": q.quota, "used": q.used, "left": (q.quota - q.used).max(0) })
}

/// `GET /notifications/settings`: reminder days, quota-low threshold, quota, event names.
pub async fn settings(State(app): State<Arc<App>>, who: Principal) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let s = rules::settings(&app, &who.tenant_id).await?;
    let q = rules::quota(&app, &who.tenant_id).await?;
    Ok(axum::Json(settings_view(&s, Some(&q))))
}

/// Body of `PUT /notifications/settings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    reminder_days: Option<Vec<i64>>,
    quota_low_percent: Option<i64>,
}

/// `PUT /notifications/settings {"reminder_days"?, "quota_low_percent"?}`.
pub async fn set_settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<SettingsBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Notifications)?;
    let res = rules::set_settings(
        &app,
        &who.tenant_id,
        body.reminder_days.as_deref(),
        body.quota_low_percent,
    )
    .await;
    record(&app, &who, "notification.settings", None, &res).await;
    let s = res?;
    let q = rules::quota(&app, &who.tenant_id).await?;
    Ok(axum::Json(settings_view(&s, Some(&q))))
}

/// `GET /notifications/quota`: `{total, used, left}`.
pub async fn quota(State(app): State<Arc<App>>, who: Principal) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let q = rules::quota(&app, &who.tenant_id).await?;
    Ok(axum::Json(quota_view(&q)))
}

/// Body of `POST /notifications/quota/purchase`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseBody {
    count: i64,
}

/// `POST /notifications/quota/purchase {"count"}`.
pub async fn purchase(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<PurchaseBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Notifications)?;
    let res = rules::purchase_quota(&app, &who.tenant_id, body.count).await;
    record_detail(
        &app,
        &who,
        "notification.quota.purchase",
        None,
        &res,
        Some(&format!("count={}", body.count)),
    )
    .await;
    Ok(axum::Json(quota_view(&res?)))
}

fn delivery_view(d: &DeliveryRow, with_event: bool) -> Value {
    let mut v = json!({
        "id": d.id,
        "channel_id": d.channel_id,
        "event_id": d.event_id,
        "event": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| json::rfc3339(d.next_attempt_at)),
        "remote_status": d.last_status,
        "error": d.last_error,
        "created_at": json::rfc3339(d.created_at),
        "delivered_at": json::ts(d.delivered_at),
    });
    if with_event {
        v["payload"] = serde_json::from_str(&d.payload_json).unwrap_or(Value::Null);
    }
    v
}

/// Query of `GET /notifications/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    status: Option<String>,
    event: Option<String>,
    since: Option<String>,
    channel_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /notifications/deliveries?status=&event=&since=&channel_id=&limit=&cursor=`:
/// newest first.
pub async fn deliveries(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 500").into());
    }
    let f = DeliveryFilter {
        status: q
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| vellum_core::status::parse_field("status", s))
            .transpose()?,
        event: q
            .event
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| vellum_core::status::parse_field::<NotificationEvent>("event", s))
            .transpose()?,
        since: q
            .since
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| json::parse_rfc3339("since", s))
            .transpose()?,
        channel_id: q.channel_id.filter(|s| !s.is_empty()),
        before: q.cursor.filter(|s| !s.is_empty()),
        limit,
    };
    let mut conn = app.store.reader().acquire().await?;
    let rows = store::notify::list_deliveries(&mut conn, &who.tenant_id, &f).await?;
    let next = json::next_cursor(&rows, limit, |r| r.id.as_str());
    Ok(axum::Json(json::list(
        rows.iter().map(|d| delivery_view(d, false)).collect(),
        next,
    )))
}

/// `GET /notifications/deliveries/{id}`: with the event as sent.
pub async fn delivery(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let mut conn = app.store.reader().acquire().await?;
    let d = store::notify::delivery(&mut conn, &who.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no delivery with id {id} in this tenant")))?;
    Ok(axum::Json(delivery_view(&d, true)))
}

/// `POST /notifications/deliveries/{id}/redeliver`: queues a delivered or failed
/// delivery again (same event id), retried for another 24 hours.
pub async fn redeliver(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Notifications)?;
    let res = async {
        let now = app.now();
        let mut tx = app.store.begin().await?;
        let ok = store::notify::redeliver(
            &mut tx,
            &who.tenant_id,
            &id,
            now,
            now + rules::RETRY_FOR_SECS,
        )
        .await?;
        if !ok {
            let exists = store::notify::delivery(&mut tx, &who.tenant_id, &id).await?;
            return Err(match exists {
                Some(_) => Error::conflict(format!(
                    "delivery {id} is still pending; it is retried on its own"
                )),
                None => Error::not_found(format!("no delivery with id {id} in this tenant")),
            });
        }
        let d = store::notify::delivery(&mut tx, &who.tenant_id, &id).await?;
        tx.commit().await?;
        d.ok_or_else(|| Error::internal("delivery vanished"))
    }
    .await;
    record(&app, &who, "notification.redeliver", Some(&id), &res).await;
    Ok(axum::Json(delivery_view(&res?, false)))
}
