//! Notifications: channels (webhook, e-mail), the events request paths emit in their own
//! transaction, reminders found by the scheduler, deliveries sent by the worker, the
//! per-tenant settings and notification quota.
//!
//! - [`emit`] queues one event for every enabled channel of the tenant that subscribes
//!   to it, in the caller's transaction: sending never blocks a request path, and an
//!   event exists exactly when the change that caused it committed.
//! - [`schedule`] (one replica at a time, under a lease) turns due reminders into events;
//!   each reminder is a row with a unique key, so none is sent twice.
//! - [`deliver`] claims due deliveries under a lease and sends them; failures retry with
//!   exponential back-off for 24 hours.

mod message;
mod schedule;
mod send;

use serde_json::{json, Value};
use store::notify::{ChannelRow, NewDelivery};
use store::Tx;
use vellum_core::error::{Error, Result};
use vellum_core::status::{ChannelKind, NotificationEvent, SmtpTls};
use vellum_core::time::rfc3339;

use crate::Authority;

pub use schedule::{schedule, ScheduleReport};
pub use send::{deliver, test_channel, TestAnswer};

/// How long a delivery is retried.
pub const RETRY_FOR_SECS: i64 = 24 * 3600;
/// Default reminder thresholds, days before expiry.
pub const DEFAULT_REMINDER_DAYS: [i64; 3] = [30, 7, 1];

/// A channel as the caller describes it (create), or the fields to change (update).
#[derive(Debug, Clone, Default)]
pub struct ChannelInput {
    /// webhook or email (create only).
    pub kind: Option<ChannelKind>,
    /// Unique per tenant, 1–100 characters.
    pub name: Option<String>,
    /// Subscribed events (`"*"`: all).
    pub events: Option<Vec<String>>,
    /// On/off.
    pub enabled: Option<bool>,
    /// Webhook: http(s) URL.
    pub url: Option<String>,
    /// Webhook: the HMAC secret (16–256 characters).
    pub secret: Option<String>,
    /// E-mail: the server.
    pub smtp: Option<SmtpInput>,
    /// E-mail: sender.
    pub from: Option<String>,
    /// E-mail: recipients (1–20).
    pub to: Option<Vec<String>>,
}

/// An e-mail channel's server.
#[derive(Debug, Clone)]
pub struct SmtpInput {
    /// Host name or address.
    pub host: String,
    /// Port (1–65535).
    pub port: u16,
    /// none, starttls, implicit.
    pub tls: SmtpTls,
    /// Login.
    pub username: Option<String>,
    /// Password (sealed at rest; kept on update when omitted).
    pub password: Option<String>,
}

fn secret_context(id: &str) -> String {
    format!("notify:{id}")
}

/// The subscribable event names.
pub fn event_names() -> Vec<&'static str> {
    use vellum_core::status::Spelled;
    NotificationEvent::SPELLINGS
        .iter()
        .copied()
        .filter(|s| *s != NotificationEvent::Test.as_str())
        .collect()
}

fn check_events(events: &[String]) -> Result<String> {
    if events.is_empty() {
        return Err(Error::invalid(
            "events",
            "must list at least one event (or \"*\" for all)",
        ));
    }
    let known = event_names();
    for e in events {
        if e != "*" && !known.contains(&e.as_str()) {
            return Err(Error::invalid(
                "events",
                format!(
                    "{e:?} is not an event; use \"*\" or any of {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let mut v = events.to_vec();
    v.sort();
    v.dedup();
    Ok(serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()))
}

fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    Ok(n.to_string())
}

fn check_url(url: &str, ra: &Authority) -> Result<()> {
    let u = url::Url::parse(url).map_err(|e| {
        Error::invalid(
            "url",
            format!("is not a URL ({e}); e.g. https://hooks.example.com/vellum"),
        )
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(Error::invalid("url", "must be an http:// or https:// URL"));
    }
    if url.len() > 2048 {
        return Err(Error::invalid("url", "must be at most 2048 characters"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Error::invalid(
            "url",
            "must not carry a user name or password; the signature authenticates Vellum",
        ));
    }
    let Some(host) = u.host() else {
        return Err(Error::invalid("url", "must name a host"));
    };
    if let url::Host::Ipv4(_) | url::Host::Ipv6(_) = host {
        let ip: std::net::IpAddr = u
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| Error::invalid("url", "holds an address that does not parse"))?;
        check_network(ra, "url", ip)?;
    }
    Ok(())
}

fn check_network(ra: &Authority, field: &str, ip: std::net::IpAddr) -> Result<()> {
    let nets = ra.config.notifications.allowed_networks();
    if !nets.iter().any(|n| n.contains(&ip)) {
        return Err(Error::invalid(
            field,
            format!(
                "{ip} is outside the networks notifications may reach ({}); the operator \
                 can list more in notifications.networks",
                ra.config.notifications.networks.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_secret(secret: &str) -> Result<()> {
    let n = secret.chars().count();
    if !(16..=256).contains(&n) || secret.chars().any(char::is_control) {
        return Err(Error::invalid(
            "secret",
            "must be 16 to 256 characters (e.g. the output of `openssl rand -hex 32`)",
        ));
    }
    Ok(())
}

fn check_smtp(ra: &Authority, s: &SmtpInput) -> Result<()> {
    let h = s.host.trim();
    if h.is_empty() || h.len() > 253 || h.contains(['/', ' ', '@']) {
        return Err(Error::invalid(
            "smtp.host",
            "must be a host name or address (e.g. smtp.example.com)",
        ));
    }
    if let Ok(ip) = h.trim_matches(['[', ']']).parse() {
        check_network(ra, "smtp.host", ip)?;
    }
    if s.port == 0 {
        return Err(Error::invalid(
            "smtp.port",
            "must be 1 to 65535 (usually 587, 465 or 25)",
        ));
    }
    if s.password.is_some() && s.username.is_none() {
        return Err(Error::invalid(
            "smtp.username",
            "is required when a password is given",
        ));
    }
    if let Some(u) = &s.username {
        if u.is_empty() || u.len() > 256 {
            return Err(Error::invalid(
                "smtp.username",
                "must be 1 to 256 characters",
            ));
        }
    }
    Ok(())
}

fn check_mailbox(field: &str, s: &str) -> Result<()> {
    va::deliver::check_mailbox(s).map_err(|e| {
        Error::invalid(
            field,
            format!("{s:?} is not an e-mail address ({e}); e.g. pki@example.com"),
        )
    })
}

/// The stored settings of a channel (without the secret) from what the caller gave,
/// merged over `old` on update.
fn config_json(kind: ChannelKind, input: &ChannelInput, old: Option<&Value>) -> Value {
    match kind {
        ChannelKind::Webhook => json!({
            "url": input.url.clone().or_else(|| old.and_then(|o| o["url"].as_str().map(str::to_string))),
        }),
        ChannelKind::Email => {
            let smtp = match &input.smtp {
                Some(s) => json!({
                    "host": s.host.trim(), "port": s.port, "tls": s.tls.as_str(),
                    "username": s.username,
                }),
                None => old.map(|o| o["smtp"].clone()).unwrap_or(Value::Null),
            };
            json!({
                "smtp": smtp,
                "from": input.from.clone().or_else(|| old.and_then(|o| o["from"].as_str().map(str::to_string))),
                "to": input.to.clone().map(Value::from).or_else(|| old.map(|o| o["to"].clone())).unwrap_or(Value::Null),
            })
        }
    }
}

/// Creates a channel. Webhooks need `url` and `secret`; e-mail needs `smtp`, `from`, `to`.
pub async fn create_channel(
    ra: &Authority,
    tenant_id: &str,
    input: &ChannelInput,
) -> Result<ChannelRow> {
    let kind = input
        .kind
        .ok_or_else(|| Error::invalid("kind", "is required: webhook or email"))?;
    let name = check_name(
        input
            .name
            .as_deref()
            .ok_or_else(|| Error::invalid("name", "is required"))?,
    )?;
    let events = check_events(
        input
            .events
            .as_deref()
            .ok_or_else(|| Error::invalid("events", "is required (e.g. [\"*\"])"))?,
    )?;
    let id = uuid::Uuid::now_v7().to_string();
    let secret = match kind {
        ChannelKind::Webhook => {
            if input.smtp.is_some() || input.from.is_some() || input.to.is_some() {
                return Err(Error::invalid(
                    "kind",
                    "a webhook channel takes url and secret, not smtp, from or to",
                ));
            }
            let url = input
                .url
                .as_deref()
                .ok_or_else(|| Error::invalid("url", "is required for a webhook"))?;
            check_url(url, ra)?;
            let secret = input.secret.as_deref().ok_or_else(|| {
                Error::invalid(
                    "secret",
                    "is required for a webhook: it signs every delivery (16 to 256 characters)",
                )
            })?;
            check_secret(secret)?;
            Some(secret.to_string())
        }
        ChannelKind::Email => {
            if input.url.is_some() || input.secret.is_some() {
                return Err(Error::invalid(
                    "kind",
                    "an e-mail channel takes smtp, from and to, not url or secret",
                ));
            }
            let smtp = input
                .smtp
                .as_ref()
                .ok_or_else(|| Error::invalid("smtp", "is required for an e-mail channel"))?;
            check_smtp(ra, smtp)?;
            check_mailbox(
                "from",
                input
                    .from
                    .as_deref()
                    .ok_or_else(|| Error::invalid("from", "is required for an e-mail channel"))?,
            )?;
            check_recipients(input.to.as_deref())?;
            smtp.password.clone()
        }
    };
    let row = ChannelRow {
        tenant_id: tenant_id.to_string(),
        kind,
        name,
        config_json: config_json(kind, input, None).to_string(),
        secret_sealed: secret
            .map(|s| ra.master.seal(&secret_context(&id), s.as_bytes()))
            .transpose()?,
        events_json: events,
        enabled: input.enabled.unwrap_or(true),
        created_at: ra.now(),
        id,
    };
    let mut tx = ra.store.begin().await?;
    store::notify::insert_channel(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(row)
}

fn check_recipients(to: Option<&[String]>) -> Result<()> {
    let to = to.ok_or_else(|| Error::invalid("to", "is required: 1 to 20 e-mail addresses"))?;
    if to.is_empty() || to.len() > 20 {
        return Err(Error::invalid("to", "must list 1 to 20 e-mail addresses"));
    }
    for t in to {
        check_mailbox("to", t)?;
    }
    Ok(())
}

/// Changes a channel: the fields given replace the stored ones (the kind stays; an
/// omitted secret or SMTP password is kept).
pub async fn update_channel(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    input: &ChannelInput,
) -> Result<ChannelRow> {
    let mut conn = ra.store.reader().acquire().await?;
    let mut row = store::notify::channel(&mut conn, Some(tenant_id), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    drop(conn);
    if let Some(k) = input.kind {
        if k != row.kind {
            return Err(Error::invalid(
                "kind",
                "cannot change; create a new channel and delete this one",
            ));
        }
    }
    if let Some(n) = &input.name {
        row.name = check_name(n)?;
    }
    if let Some(e) = &input.events {
        row.events_json = check_events(e)?;
    }
    if let Some(on) = input.enabled {
        row.enabled = on;
    }
    let old: Value = serde_json::from_str(&row.config_json).unwrap_or(Value::Null);
    let mut secret = None;
    match row.kind {
        ChannelKind::Webhook => {
            if input.smtp.is_some() || input.from.is_some() || input.to.is_some() {
                return Err(Error::invalid(
                    "kind",
                    "a webhook channel takes url and secret, not smtp, from or to",
                ));
            }
            if let Some(u) = &input.url {
                check_url(u, ra)?;
            }
            if let Some(s) = &input.secret {
                check_secret(s)?;
                secret = Some(s.clone());
            }
        }
        ChannelKind::Email => {
            if input.url.is_some() || input.secret.is_some() {
                return Err(Error::invalid(
                    "kind",
                    "an e-mail channel takes smtp, from and to, not url or secret",
                ));
            }
            if let Some(s) = &input.smtp {
                check_smtp(ra, s)?;
                if s.username.is_none() {
                    // No login any more: the password goes too.
                    row.secret_sealed = None;
                }
                secret = s.password.clone();
            }
            if let Some(f) = &input.from {
                check_mailbox("from", f)?;
            }
            if input.to.is_some() {
                check_recipients(input.to.as_deref())?;
            }
        }
    }
    row.config_json = config_json(row.kind, input, Some(&old)).to_string();
    if let Some(s) = secret {
        row.secret_sealed = Some(ra.master.seal(&secret_context(&row.id), s.as_bytes())?);
    }
    let mut tx = ra.store.begin().await?;
    if !store::notify::update_channel(&mut tx, &row).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    Ok(row)
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!(
        "no notification channel with id {id} in this tenant"
    ))
}

/// Deletes a channel; its pending deliveries fail ("the channel was deleted").
pub async fn delete_channel(ra: &Authority, tenant_id: &str, id: &str) -> Result<()> {
    let mut tx = ra.store.begin().await?;
    if !store::notify::delete_channel(&mut tx, tenant_id, id).await? {
        return Err(not_found(id));
    }
    tx.commit().await
}

/// One channel of the tenant.
pub async fn channel(ra: &Authority, tenant_id: &str, id: &str) -> Result<ChannelRow> {
    let mut conn = ra.store.reader().acquire().await?;
    store::notify::channel(&mut conn, Some(tenant_id), id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The channel as the API shows it: settings without the secret (`secret_set` says
/// whether one is stored).
pub fn channel_view(c: &ChannelRow) -> Value {
    let cfg: Value = serde_json::from_str(&c.config_json).unwrap_or(Value::Null);
    let events: Value = serde_json::from_str(&c.events_json).unwrap_or(Value::Null);
    let mut v = json!({
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "events": events,
        "enabled": c.enabled,
        "created_at": rfc3339(c.created_at),
    });
    match c.kind {
        ChannelKind::Webhook => {
            v["url"] = cfg["url"].clone();
            v["secret_set"] = json!(c.secret_sealed.is_some());
            v["signature"] = json!(
                "Vellum-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>"
            );
        }
        ChannelKind::Email => {
            let mut smtp = cfg["smtp"].clone();
            smtp["password_set"] = json!(c.secret_sealed.is_some());
            v["smtp"] = smtp;
            v["from"] = cfg["from"].clone();
            v["to"] = cfg["to"].clone();
        }
    }
    v
}

/// The reminder thresholds and quota-low percentage of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Days before expiry, descending.
    pub reminder_days: Vec<i64>,
    /// `quota.low` below this percentage of an intermediate's assigned quota.
    pub quota_low_percent: i64,
    /// Certificates that may have reminders on.
    pub quota: i64,
}

fn parse_days(json: &str) -> Vec<i64> {
    let mut d: Vec<i64> =
        serde_json::from_str(json).unwrap_or_else(|_| DEFAULT_REMINDER_DAYS.to_vec());
    d.sort_unstable_by(|a, b| b.cmp(a));
    d.dedup();
    d
}

/// The tenant's settings (defaults until changed).
pub async fn settings(ra: &Authority, tenant_id: &str) -> Result<Settings> {
    let mut conn = ra.store.reader().acquire().await?;
    let s = store::notify::settings_if_any(&mut conn, tenant_id).await?;
    Ok(match s {
        Some(s) => Settings {
            reminder_days: parse_days(&s.reminder_days_json),
            quota_low_percent: s.quota_low_percent,
            quota: s.quota,
        },
        None => Settings {
            reminder_days: DEFAULT_REMINDER_DAYS.to_vec(),
            quota_low_percent: 10,
            quota: ra.config.notifications.default_quota,
        },
    })
}

/// Replaces the reminder days (1–5 values, each 1–365) and the quota-low percentage
/// (1–99). Managed certificates with reminders on are looked at again.
pub async fn set_settings(
    ra: &Authority,
    tenant_id: &str,
    reminder_days: Option<&[i64]>,
    quota_low_percent: Option<i64>,
) -> Result<Settings> {
    let cur = settings(ra, tenant_id).await?;
    let days = match reminder_days {
        Some(d) => {
            if d.is_empty() || d.len() > 5 || d.iter().any(|x| !(1..=365).contains(x)) {
                return Err(Error::invalid(
                    "reminder_days",
                    "must list 1 to 5 numbers of days, each 1 to 365 (e.g. [30, 7, 1])",
                ));
            }
            let mut d = d.to_vec();
            d.sort_unstable_by(|a, b| b.cmp(a));
            d.dedup();
            d
        }
        None => cur.reminder_days,
    };
    let pct = quota_low_percent.unwrap_or(cur.quota_low_percent);
    if !(1..=99).contains(&pct) {
        return Err(Error::invalid("quota_low_percent", "must be 1 to 99"));
    }
    let mut tx = ra.store.begin().await?;
    store::notify::set_settings(
        &mut tx,
        tenant_id,
        ra.config.notifications.default_quota,
        &serde_json::to_string(&days).unwrap_or_else(|_| "[30,7,1]".into()),
        pct,
    )
    .await?;
    tx.commit().await?;
    settings(ra, tenant_id).await
}

/// The notification quota: how many certificates may have reminders on, how many do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaView {
    /// Purchased (plus the default).
    pub quota: i64,
    /// Managed certificates with reminders on.
    pub used: i64,
}

/// The tenant's notification quota and use.
pub async fn quota(ra: &Authority, tenant_id: &str) -> Result<QuotaView> {
    let s = settings(ra, tenant_id).await?;
    let mut conn = ra.store.reader().acquire().await?;
    Ok(QuotaView {
        quota: s.quota,
        used: store::notify::count_notifications_on(&mut conn, tenant_id).await?,
    })
}

/// Buys `count` (1–1,000,000) more certificates' worth of reminders.
pub async fn purchase_quota(ra: &Authority, tenant_id: &str, count: i64) -> Result<QuotaView> {
    if !(1..=1_000_000).contains(&count) {
        return Err(Error::invalid("count", "must be 1 to 1000000"));
    }
    let mut tx = ra.store.begin().await?;
    store::notify::add_quota(
        &mut tx,
        tenant_id,
        ra.config.notifications.default_quota,
        count,
    )
    .await?;
    tx.commit().await?;
    quota(ra, tenant_id).await
}

/// In `tx`: whether one more certificate of the tenant may have reminders on. Locks the
/// tenant's settings row, so concurrent switches are counted one after the other.
pub async fn quota_left(ra: &Authority, tx: &mut Tx, tenant_id: &str) -> Result<i64> {
    let q = store::notify::lock_quota(tx, tenant_id, ra.config.notifications.default_quota).await?;
    let used = store::notify::count_notifications_on(tx, tenant_id).await?;
    Ok(q - used)
}

/// In `tx`: refuses (409 naming the quota) when no more certificate of the tenant may
/// have reminders on; the settings row stays locked for the rest of the transaction.
pub async fn require_quota(ra: &Authority, tx: &mut Tx, tenant_id: &str) -> Result<()> {
    let q = store::notify::lock_quota(tx, tenant_id, ra.config.notifications.default_quota).await?;
    if store::notify::count_notifications_on(tx, tenant_id).await? >= q {
        return Err(quota_exhausted(q));
    }
    Ok(())
}

/// The refusal when the quota is used up.
pub fn quota_exhausted(quota: i64) -> Error {
    Error::conflict(format!(
        "the notification quota of {quota} certificates is used up; turn reminders off on \
         another certificate or buy more with POST /admin/v1/notifications/quota/purchase \
         {{\"count\": N}} (CLI: vellum admin notify quota purchase N)"
    ))
}

/// An event to queue.
#[derive(Debug, Clone)]
pub struct Event {
    /// The tenant it belongs to.
    pub tenant_id: String,
    /// What happened.
    pub kind: NotificationEvent,
    /// The event's `data`.
    pub data: Value,
}

/// The JSON event as delivered: `{id, type, created_at, tenant_id, data}`.
pub fn payload(event_id: &str, e: &Event, now: i64) -> Value {
    json!({
        "id": event_id,
        "type": e.kind,
        "created_at": rfc3339(now),
        "tenant_id": e.tenant_id,
        "data": e.data,
    })
}

fn subscribes(events_json: &str, kind: NotificationEvent) -> bool {
    serde_json::from_str::<Vec<String>>(events_json)
        .map(|v| v.iter().any(|e| e == "*" || e == kind.as_str()))
        .unwrap_or(false)
}

/// Queues `events` in `tx` for every enabled channel of their tenant that subscribes to
/// them; returns the event ids (one per event, `None` where no channel subscribes). One
/// query for the channels per tenant, one insert per 100 deliveries.
pub async fn emit(tx: &mut Tx, events: &[Event], now: i64) -> Result<Vec<Option<String>>> {
    let mut out = Vec::with_capacity(events.len());
    let mut channels: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rows = Vec::new();
    for e in events {
        let subs = match channels.iter().find(|(t, _)| *t == e.tenant_id) {
            Some((_, s)) => s.clone(),
            None => {
                let s = store::notify::subscribers(tx, &e.tenant_id).await?;
                channels.push((e.tenant_id.clone(), s.clone()));
                s
            }
        };
        let targets: Vec<&String> = subs
            .iter()
            .filter(|(_, ev)| subscribes(ev, e.kind))
            .map(|(id, _)| id)
            .collect();
        if targets.is_empty() {
            out.push(None);
            continue;
        }
        let event_id = uuid::Uuid::now_v7().to_string();
        let body = payload(&event_id, e, now).to_string();
        for ch in targets {
            rows.push(NewDelivery {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: e.tenant_id.clone(),
                channel_id: ch.clone(),
                event_id: event_id.clone(),
                event_type: e.kind,
                payload_json: body.clone(),
                created_at: now,
                retry_until: now + RETRY_FOR_SECS,
            });
        }
        out.push(Some(event_id));
    }
    if !rows.is_empty() {
        store::notify::insert_deliveries(tx, &rows).await?;
    }
    Ok(out)
}

/// Queues one event in `tx` (see [`emit`]).
pub async fn emit_one(
    tx: &mut Tx,
    tenant_id: &str,
    kind: NotificationEvent,
    data: Value,
    now: i64,
) -> Result<()> {
    emit(
        tx,
        &[Event {
            tenant_id: tenant_id.to_string(),
            kind,
            data,
        }],
        now,
    )
    .await
    .map(|_| ())
}

/// The `data.certificate` of a private-CA certificate's events.
pub fn certificate_data(c: &store::certificates::CertRow) -> Value {
    let sans: Value = serde_json::from_str(&c.sans_json).unwrap_or(Value::Null);
    let tags: Value = serde_json::from_str(&c.tags_json).unwrap_or(Value::Null);
    json!({
        "certificate": {
            "id": c.id,
            "inventory": "certificates",
            "ca_id": c.ca_id,
            "common_name": c.common_name,
            "name": c.name,
            "sans": sans,
            "tags": tags,
            "serial": c.serial,
            "source": c.source,
            "not_before": rfc3339(c.not_before),
            "not_after": rfc3339(c.not_after),
        },
        "renew": {
            "api": format!("POST /admin/v1/certificates/{}/renew", c.id),
            "cli": format!("vellum admin cert renew {}", c.id),
        },
    })
}

/// The `data.ca` of a CA's events.
pub fn ca_data(ca: &store::cas::CaRow) -> Value {
    json!({
        "ca": {
            "id": ca.id,
            "kind": ca.kind,
            "parent_id": ca.parent_id,
            "common_name": ca.common_name,
            "status": ca.status,
            "serial": ca.serial,
            "not_after": ca.not_after.map(rfc3339),
            "service_until": rfc3339(ca.service_until),
            "quota_assigned": ca.quota_assigned,
            "quota_remaining": ca.quota_remaining,
        }
    })
}

/// The `data.certificate` of a managed certificate's events.
pub fn managed_data(m: &store::managed::ManagedRow) -> Value {
    let sans: Value = serde_json::from_str(&m.sans_json).unwrap_or(Value::Null);
    let tags: Value = serde_json::from_str(&m.tags_json).unwrap_or(Value::Null);
    json!({
        "certificate": {
            "id": m.id,
            "inventory": "managed",
            "name": m.name,
            "common_name": m.common_name,
            "sans": sans,
            "tags": tags,
            "issuer": m.issuer,
            "serial": m.serial,
            "source": m.source,
            "not_before": rfc3339(m.not_before),
            "not_after": rfc3339(m.not_after),
            "shared_by": m.shared_by_tenant_id,
        }
    })
}
