//! Notifications (migration 0016): channels, per-tenant settings and quota, the delivery
//! queue, the reminders already sent, and the managed certificates' next reminder time.
//!
//! The queue is an outbox: request paths insert deliveries in their own transaction
//! ([`insert_deliveries`]); a worker claims due ones under a lease ([`claim_due`]) and
//! records each outcome only while it still holds that lease ([`finish`]). A reminder is a
//! row with a unique key ([`insert_reminder`]), so of two replicas, or a replica and its
//! restarted self, one enqueues it.

use super::{query, Conn, Row};
use vellum_core::error::Result;
use vellum_core::status::{ChannelKind, DeliveryStatus, NotificationEvent};

/// A notification channel as stored (its secret still sealed).
#[derive(Debug, Clone)]
pub struct ChannelRow {
    /// UUIDv7.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Webhook or e-mail.
    pub kind: ChannelKind,
    /// Unique per tenant.
    pub name: String,
    /// The kind's settings without the secret (JSON object).
    pub config_json: String,
    /// Webhook secret or SMTP password, sealed (context `notify:<id>`).
    pub secret_sealed: Option<Vec<u8>>,
    /// Subscribed event names (JSON array; `"*"` for all).
    pub events_json: String,
    /// Off: nothing is queued for it.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

const CHANNEL_COLUMNS: &str =
    "id, tenant_id, kind, name, config_json, secret_sealed, events_json, enabled, created_at";

fn row_to_channel(r: &Row) -> Result<ChannelRow> {
    Ok(ChannelRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        kind: super::decode_spelled(r, "notification_channels", "kind")?,
        name: r.try_get("name")?,
        config_json: r.try_get("config_json")?,
        secret_sealed: r.try_get("secret_sealed")?,
        events_json: r.try_get("events_json")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts a channel. A name the tenant already uses is a conflict.
pub async fn insert_channel(conn: &mut Conn, c: &ChannelRow) -> Result<()> {
    let res = query(&format!(
        "INSERT INTO notification_channels ({CHANNEL_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&c.id)
    .bind(&c.tenant_id)
    .bind(c.kind.as_str())
    .bind(&c.name)
    .bind(&c.config_json)
    .bind(&c.secret_sealed)
    .bind(&c.events_json)
    .bind(c.enabled as i64)
    .bind(c.created_at)
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if super::tenants::is_unique_violation(&e) => {
            Err(vellum_core::error::Error::conflict(format!(
                "a notification channel named {:?} exists already in this tenant",
                c.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Replaces a channel's name, settings, secret, events and switch. False when it is not
/// the tenant's.
pub async fn update_channel(conn: &mut Conn, c: &ChannelRow) -> Result<bool> {
    let res = query(
        "UPDATE notification_channels SET name = $1, config_json = $2, secret_sealed = $3, \
         events_json = $4, enabled = $5 WHERE id = $6 AND tenant_id = $7",
    )
    .bind(&c.name)
    .bind(&c.config_json)
    .bind(&c.secret_sealed)
    .bind(&c.events_json)
    .bind(c.enabled as i64)
    .bind(&c.id)
    .bind(&c.tenant_id)
    .execute(conn)
    .await;
    match res {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(e) if super::tenants::is_unique_violation(&e) => {
            Err(vellum_core::error::Error::conflict(format!(
                "a notification channel named {:?} exists already in this tenant",
                c.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a channel (its deliveries stay in the log). False when it is not the tenant's.
pub async fn delete_channel(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<bool> {
    let res = query("DELETE FROM notification_channels WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
    // Nothing more will be sent through it.
    query(
        "UPDATE notification_deliveries SET status = 'failed', last_error = 'the channel was deleted' \
         WHERE channel_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// The tenant's channels, oldest first.
pub async fn list_channels(conn: &mut Conn, tenant_id: &str) -> Result<Vec<ChannelRow>> {
    let rows = query(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(row_to_channel).collect()
}

/// One channel of the tenant (`tenant_id: None`: of any tenant, for the worker).
pub async fn channel(
    conn: &mut Conn,
    tenant_id: Option<&str>,
    id: &str,
) -> Result<Option<ChannelRow>> {
    let row = match tenant_id {
        Some(t) => {
            query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1 AND tenant_id = $2"
        ))
            .bind(id)
            .bind(t)
            .fetch_optional(conn)
            .await?
        }
        None => {
            query(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(conn)
            .await?
        }
    };
    row.as_ref().map(row_to_channel).transpose()
}

/// The tenant's enabled channels as `(id, events_json)`: who an event goes to. One index
/// range of a small table; the issuance path asks once per batch and tenant.
pub async fn subscribers(conn: &mut Conn, tenant_id: &str) -> Result<Vec<(String, String)>> {
    let rows = query(
        "SELECT id, events_json FROM notification_channels WHERE tenant_id = $1 AND enabled = 1",
    )
    .bind(tenant_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("events_json")?)))
        .collect()
}

/// A tenant's notification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Certificates that may have reminders on.
    pub quota: i64,
    /// Days before expiry a reminder goes out (JSON array of integers).
    pub reminder_days_json: String,
    /// `quota.low` when an intermediate has less than this percentage of its assigned
    /// quota left.
    pub quota_low_percent: i64,
}

/// The tenant's settings, created with `default_quota` when absent.
pub async fn settings(conn: &mut Conn, tenant_id: &str, default_quota: i64) -> Result<Settings> {
    query(
        "INSERT INTO notification_settings (tenant_id, quota) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(default_quota)
    .execute(&mut *conn)
    .await?;
    settings_if_any(conn, tenant_id)
        .await?
        .ok_or_else(|| vellum_core::error::Error::internal("notification settings vanished"))
}

/// The tenant's settings as stored, `None` when never written (the reader's view: no
/// write on a read path).
pub async fn settings_if_any(conn: &mut Conn, tenant_id: &str) -> Result<Option<Settings>> {
    let r = query(
        "SELECT quota, reminder_days_json, quota_low_percent FROM notification_settings \
         WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?;
    r.map(|r| {
        Ok(Settings {
            quota: r.try_get("quota")?,
            reminder_days_json: r.try_get("reminder_days_json")?,
            quota_low_percent: r.try_get("quota_low_percent")?,
        })
    })
    .transpose()
}

/// Locks the tenant's settings row for the rest of the transaction (quota checks of
/// concurrent switches queue here) and returns the quota.
pub async fn lock_quota(conn: &mut Conn, tenant_id: &str, default_quota: i64) -> Result<i64> {
    settings(&mut *conn, tenant_id, default_quota).await?;
    let r = query(
        "UPDATE notification_settings SET quota = quota WHERE tenant_id = $1 RETURNING quota",
    )
    .bind(tenant_id)
    .fetch_one(conn)
    .await?;
    Ok(r.try_get("quota")?)
}

/// Replaces the reminder days and the quota-low threshold.
pub async fn set_settings(
    conn: &mut Conn,
    tenant_id: &str,
    default_quota: i64,
    reminder_days_json: &str,
    quota_low_percent: i64,
) -> Result<()> {
    settings(&mut *conn, tenant_id, default_quota).await?;
    query(
        "UPDATE notification_settings SET reminder_days_json = $1, quota_low_percent = $2 \
         WHERE tenant_id = $3",
    )
    .bind(reminder_days_json)
    .bind(quota_low_percent)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    // Every managed certificate with reminders on is looked at again under the new days.
    query(
        "INSERT INTO managed_reminders (managed_id, remind_at) \
         SELECT id, 0 FROM managed_certificates WHERE tenant_id = $1 \
         AND notifications = 1 AND deleted_at IS NULL AND revoked_at IS NULL \
         ON CONFLICT (managed_id) DO UPDATE SET remind_at = 0",
    )
    .bind(tenant_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `count` to the tenant's notification quota; returns the new quota.
pub async fn add_quota(
    conn: &mut Conn,
    tenant_id: &str,
    default_quota: i64,
    count: i64,
) -> Result<i64> {
    settings(&mut *conn, tenant_id, default_quota).await?;
    let r = query(
        "UPDATE notification_settings SET quota = quota + $1 WHERE tenant_id = $2 RETURNING quota",
    )
    .bind(count)
    .bind(tenant_id)
    .fetch_one(conn)
    .await?;
    Ok(r.try_get("quota")?)
}

/// Managed certificates of the tenant with reminders on (partial index
/// `managed_notifications_on`).
pub async fn count_notifications_on(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
    let r = query(
        "SELECT COUNT(*) AS n FROM managed_certificates WHERE tenant_id = $1 \
         AND notifications = 1 AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .fetch_one(conn)
    .await?;
    Ok(r.try_get("n")?)
}

/// A delivery to insert: one event for one channel.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// UUIDv7.
    pub id: String,
    /// The tenant the event belongs to.
    pub tenant_id: String,
    /// Where it goes.
    pub channel_id: String,
    /// The event's id (the same for every channel it goes to; receivers dedupe on it).
    pub event_id: String,
    /// What happened.
    pub event_type: NotificationEvent,
    /// The JSON event as sent.
    pub payload_json: String,
    /// Unix seconds; the first attempt is due then.
    pub created_at: i64,
    /// No retry after this (Unix seconds).
    pub retry_until: i64,
}

/// Inserts deliveries (one statement per 100). A `(event_id, channel_id)` already queued
/// is left as it is.
pub async fn insert_deliveries(conn: &mut Conn, ds: &[NewDelivery]) -> Result<()> {
    for chunk in ds.chunks(100) {
        let sql = format!(
            "INSERT INTO notification_deliveries (id, tenant_id, channel_id, event_id, event_type, \
             payload_json, status, attempts, next_attempt_at, retry_until, created_at) VALUES {} \
             ON CONFLICT (event_id, channel_id) DO NOTHING",
            super::values_placeholders(conn, chunk.len(), 11)
        );
        let mut q = query(&sql);
        for d in chunk {
            q = q
                .bind(&d.id)
                .bind(&d.tenant_id)
                .bind(&d.channel_id)
                .bind(&d.event_id)
                .bind(d.event_type.as_str())
                .bind(&d.payload_json)
                .bind(DeliveryStatus::Pending.as_str())
                .bind(0_i64)
                .bind(d.created_at)
                .bind(d.retry_until)
                .bind(d.created_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A delivery a worker claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery.
    pub id: String,
    /// Its channel.
    pub channel_id: String,
    /// The event's id.
    pub event_id: String,
    /// The JSON event.
    pub payload_json: String,
    /// Attempts including this one (the lease is valid for this count only).
    pub attempts: i64,
    /// No retry after this.
    pub retry_until: i64,
}

/// Claims up to `limit` due deliveries for `holder`: their next attempt moves to
/// `lease_until`, so if the holder dies they become due again then (at most one repeat,
/// with the same event id). The condition is repeated outside the subquery so that, on
/// PostgreSQL, a row another replica claimed first is re-checked and skipped.
pub async fn claim_due(
    conn: &mut Conn,
    holder: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let rows = query(
        "UPDATE notification_deliveries SET next_attempt_at = $1, lease_holder = $2, \
         attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM notification_deliveries WHERE status = 'pending' \
                      AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $4) \
         AND status = 'pending' AND next_attempt_at <= $3 \
         RETURNING id, channel_id, event_id, payload_json, attempts, retry_until",
    )
    .bind(lease_until)
    .bind(holder)
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("id")?,
                channel_id: r.try_get("channel_id")?,
                event_id: r.try_get("event_id")?,
                payload_json: r.try_get("payload_json")?,
                attempts: r.try_get("attempts")?,
                retry_until: r.try_get("retry_until")?,
            })
        })
        .collect()
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    /// The delivery.
    pub id: &'a str,
    /// The attempt count it was claimed with.
    pub attempts: i64,
    /// Delivered, pending again (retry at `next_attempt_at`) or failed for good.
    pub status: DeliveryStatus,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: i64,
    /// HTTP status or SMTP reply code, when there was an answer.
    pub remote_status: Option<i64>,
    /// What went wrong, in words.
    pub error: Option<String>,
}

/// Records attempts' outcomes, each only if `holder` still holds its lease (a worker
/// slower than its lease does not overwrite the next attempt's outcome).
pub async fn finish(conn: &mut Conn, holder: &str, now: i64, done: &[Finished<'_>]) -> Result<()> {
    for f in done {
        query(
            "UPDATE notification_deliveries SET status = $1, next_attempt_at = $2, \
             lease_holder = NULL, last_status = $3, last_error = $4, delivered_at = $5 \
             WHERE id = $6 AND lease_holder = $7 AND attempts = $8 AND status = 'pending'",
        )
        .bind(f.status.as_str())
        .bind(f.next_attempt_at)
        .bind(f.remote_status)
        .bind(f.error.as_deref())
        .bind((f.status == DeliveryStatus::Delivered).then_some(now))
        .bind(f.id)
        .bind(holder)
        .bind(f.attempts)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A delivery as the log shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// UUIDv7 (creation order).
    pub id: String,
    /// The channel.
    pub channel_id: String,
    /// The event's id.
    pub event_id: String,
    /// What happened.
    pub event_type: NotificationEvent,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (pending).
    pub next_attempt_at: i64,
    /// Last HTTP status or SMTP code.
    pub last_status: Option<i64>,
    /// Last error.
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was accepted.
    pub delivered_at: Option<i64>,
    /// The JSON event.
    pub payload_json: String,
}

const DELIVERY_COLUMNS: &str = "id, channel_id, event_id, event_type, status, attempts, \
     next_attempt_at, last_status, last_error, created_at, delivered_at, payload_json";

fn row_to_delivery(r: &Row) -> Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        channel_id: r.try_get("channel_id")?,
        event_id: r.try_get("event_id")?,
        event_type: super::decode_spelled(r, "notification_deliveries", "event_type")?,
        status: super::decode_spelled(r, "notification_deliveries", "status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
        payload_json: r.try_get("payload_json")?,
    })
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this event type.
    pub event: Option<NotificationEvent>,
    /// Only deliveries created at or after (Unix seconds).
    pub since: Option<i64>,
    /// Only this channel.
    pub channel_id: Option<String>,
    /// Ids before this one (newest-first paging).
    pub before: Option<String>,
    /// At most this many (1–500).
    pub limit: i64,
}

/// The tenant's deliveries matching `f`, newest first.
pub async fn list_deliveries(
    conn: &mut Conn,
    tenant_id: &str,
    f: &DeliveryFilter,
) -> Result<Vec<DeliveryRow>> {
    let mut w = crate::filter::Where::tenant_only(tenant_id);
    if let Some(s) = f.status {
        w.push("status = {}", s.as_str().to_string());
    }
    if let Some(e) = f.event {
        w.push("event_type = {}", e.as_str().to_string());
    }
    if let Some(s) = f.since {
        w.push("created_at >= {}", s);
    }
    if let Some(c) = &f.channel_id {
        w.push("channel_id = {}", c.clone());
    }
    if let Some(b) = &f.before {
        w.push("id < {}", b.clone());
    }
    let (sql, args) = w.select_desc(
        DELIVERY_COLUMNS,
        "notification_deliveries",
        f.limit.clamp(1, 500),
    );
    let rows = crate::filter::bound(&sql, &args).fetch_all(conn).await?;
    rows.iter().map(row_to_delivery).collect()
}

/// One delivery of the tenant.
pub async fn delivery(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<DeliveryRow>> {
    let row = query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(row_to_delivery).transpose()
}

/// Queues a delivered or failed delivery again, due now and retried until
/// `retry_until`; the event id stays. False when it is not the tenant's or still pending.
pub async fn redeliver(
    conn: &mut Conn,
    tenant_id: &str,
    id: &str,
    now: i64,
    retry_until: i64,
) -> Result<bool> {
    let res = query(
        "UPDATE notification_deliveries SET status = 'pending', next_attempt_at = $1, \
         retry_until = $2, lease_holder = NULL, delivered_at = NULL \
         WHERE id = $3 AND tenant_id = $4 AND status <> 'pending'",
    )
    .bind(now)
    .bind(retry_until)
    .bind(id)
    .bind(tenant_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Deliveries of the tenant that failed for good since `since` (partial index
/// `notification_deliveries_failed`).
pub async fn count_failed(conn: &mut Conn, tenant_id: &str, since: i64) -> Result<i64> {
    let r = query(
        "SELECT COUNT(*) AS n FROM notification_deliveries WHERE tenant_id = $1 \
         AND created_at >= $2 AND status = 'failed'",
    )
    .bind(tenant_id)
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok(r.try_get("n")?)
}

/// Records that the reminder `key` was sent as event `event_id`. False when it was
/// already (by this or another replica): then nothing is to be sent.
pub async fn insert_reminder(
    conn: &mut Conn,
    key: &str,
    tenant_id: &str,
    event_id: &str,
    now: i64,
) -> Result<bool> {
    let res = query(
        "INSERT INTO notification_reminders (reminder_key, tenant_id, event_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (reminder_key) DO NOTHING",
    )
    .bind(key)
    .bind(tenant_id)
    .bind(event_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// A reminder to record (see [`insert_reminders`]).
#[derive(Debug, Clone)]
pub struct NewReminder {
    /// Unique key (`managed:<id>:<not_after>:<days>`, …).
    pub key: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The event it is sent as.
    pub event_id: String,
}

/// Records many reminders at once, one statement per 500 (keys in sorted order, so two
/// writers of overlapping batches wait for each other instead of deadlocking). Returns the
/// keys that were new: only those are to be sent; a key recorded before (by this or
/// another replica) is left as it is.
pub async fn insert_reminders(
    conn: &mut Conn,
    reminders: &[NewReminder],
    now: i64,
) -> Result<std::collections::HashSet<String>> {
    let mut sorted: Vec<&NewReminder> = reminders.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted.dedup_by(|a, b| a.key == b.key);
    let mut new = std::collections::HashSet::new();
    for chunk in sorted.chunks(500) {
        let sql = format!(
            "INSERT INTO notification_reminders (reminder_key, tenant_id, event_id, created_at) \
             VALUES {} ON CONFLICT (reminder_key) DO NOTHING RETURNING reminder_key",
            super::values_placeholders(conn, chunk.len(), 4)
        );
        let mut q = query(&sql);
        for r in chunk {
            q = q
                .bind(&r.key)
                .bind(&r.tenant_id)
                .bind(&r.event_id)
                .bind(now);
        }
        for row in q.fetch_all(&mut *conn).await? {
            new.insert(row.try_get::<String, _>("reminder_key")?);
        }
    }
    Ok(new)
}

/// A managed certificate whose reminder time has come.
#[derive(Debug, Clone)]
pub struct DueManaged {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Inventory name.
    pub name: String,
    /// Subject CN.
    pub common_name: String,
    /// SANs (JSON array).
    pub sans_json: String,
    /// Tags (JSON object).
    pub tags_json: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial (hex).
    pub serial: String,
    /// Source spelling.
    pub source: String,
    /// The private-CA certificate it copies, for synced ones.
    pub origin_certificate_id: Option<String>,
    /// End of validity.
    pub not_after: i64,
    /// The reminder time that made it due (the scheduler's update is conditional on it).
    pub remind_at: i64,
    /// Revoked (its origin was): nothing more to remind.
    pub revoked: bool,
}

/// Up to `limit` managed certificates whose `remind_at` is at or before `now`, earliest
/// first (the narrow table `managed_reminders`, partial index `managed_reminders_due`:
/// certificates with reminders off have no row, those with nothing left hold NULL).
pub async fn due_managed(conn: &mut Conn, now: i64, limit: i64) -> Result<Vec<DueManaged>> {
    let rows = query(
        "SELECT m.id, m.tenant_id, m.name, m.common_name, m.sans_json, m.tags_json, m.issuer, \
         m.serial, m.source, m.origin_certificate_id, m.not_after, r.remind_at, m.revoked_at \
         FROM managed_reminders r JOIN managed_certificates m ON m.id = r.managed_id \
         WHERE r.remind_at IS NOT NULL AND r.remind_at <= $1 ORDER BY r.remind_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DueManaged {
                id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
                name: r.try_get("name")?,
                common_name: r.try_get("common_name")?,
                sans_json: r.try_get("sans_json")?,
                tags_json: r.try_get("tags_json")?,
                issuer: r.try_get("issuer")?,
                serial: r.try_get("serial")?,
                source: r.try_get("source")?,
                origin_certificate_id: r.try_get("origin_certificate_id")?,
                not_after: r.try_get("not_after")?,
                remind_at: r.try_get("remind_at")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            })
        })
        .collect()
}

/// Moves a managed certificate's reminder time from `old` to `next` (`None`: nothing
/// left to send). A row changed meanwhile (reminders switched, renewed) keeps its own.
pub async fn set_remind_at(conn: &mut Conn, id: &str, old: i64, next: Option<i64>) -> Result<()> {
    query("UPDATE managed_reminders SET remind_at = $1 WHERE managed_id = $2 AND remind_at = $3")
        .bind(next)
        .bind(id)
        .bind(old)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`set_remind_at`] for many rows in one statement per 500: `(id, old, next)`. Rows are
/// updated in id order.
pub async fn set_remind_ats(conn: &mut Conn, moves: &[(String, i64, Option<i64>)]) -> Result<()> {
    let mut sorted: Vec<&(String, i64, Option<i64>)> = moves.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let sqlite = conn.backend_name() == "SQLite";
    for chunk in sorted.chunks(500) {
        let values = (0..chunk.len())
            .map(|i| {
                if sqlite {
                    // No CASTs here: with them SQLite 3.46 walks the `remind_at` index
                    // whole instead of looking each id up (see docs/PERFORMANCE.md).
                    "(?, ?, ?)".to_string()
                } else {
                    format!(
                        "(${}, CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
                        3 * i + 1,
                        3 * i + 2,
                        3 * i + 3
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        // A CTE with named columns reads the same on both backends (SQLite has no
        // `VALUES … AS v(a, b)`); the plan is `v` outer, the primary key inner (PostgreSQL
        // needs the CASTs to type a NULL `next`).
        let sql = format!(
            "WITH v (id, old, next) AS (VALUES {values}) \
             UPDATE managed_reminders SET remind_at = v.next FROM v \
             WHERE managed_reminders.managed_id = v.id AND managed_reminders.remind_at = v.old"
        );
        let mut q = query(&sql);
        for (id, old, next) in chunk {
            q = q.bind(id).bind(*old).bind(*next);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Enabled CAs of every tenant (a small table): the scheduler's CA reminders (certificate
/// expiring, service ending, quota low).
pub async fn enabled_cas(conn: &mut Conn) -> Result<Vec<crate::cas::CaRow>> {
    let rows = query("SELECT * FROM cas WHERE status = 'enabled' ORDER BY id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(crate::cas::row_to_ca).collect()
}
