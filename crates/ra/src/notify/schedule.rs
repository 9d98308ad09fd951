//! The reminder scheduler: which managed certificates and CAs have crossed a reminder
//! threshold, each reminder queued once.
//!
//! Managed certificates carry `remind_at`, the next time anything may be due for them
//! (writers set it to "now" when reminders are switched on or the certificate changes);
//! the pass reads the rows whose time has come through a partial index — never the whole
//! inventory — queues what is due and moves `remind_at` to the next threshold. CAs are
//! few: every enabled one is looked at each pass. A reminder is queued only if its key
//! (`managed:<id>:<not_after>:<days>`, `ca:<id>:<serial>:<days>`, …) is new in
//! `notification_reminders`, so a second replica or a restart never sends it again.

use std::collections::HashMap;

use serde_json::{json, Value};
use vellum_core::error::Result;
use vellum_core::status::{CaKind, NotificationEvent};
use vellum_core::time::rfc3339;

use super::{emit, parse_days, subscribes, Event, DEFAULT_REMINDER_DAYS};
use crate::Authority;

const DAY: i64 = 86_400;
/// Managed certificates read per transaction.
const CHUNK: i64 = 1000;
/// Managed certificates looked at per pass at most (the rest waits a minute).
const PASS_ROWS: i64 = 50_000;
/// Expired certificates are announced only this long after expiry (a server that was
/// down for weeks does not flood receivers with old news).
const EXPIRED_GRACE: i64 = 7 * DAY;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    /// Managed certificates looked at.
    pub looked_at: usize,
    /// Reminders queued (each to every subscribing channel).
    pub queued: usize,
}

/// What is due for a validity ending at `not_after`, given thresholds `days`
/// (descending): the most urgent threshold crossed (`Some(d)`; `Some(0)` = expired), and
/// when to look next (`None`: nothing left).
fn due(not_after: i64, days: &[i64], now: i64) -> (Option<i64>, Option<i64>) {
    if not_after <= now {
        let fire = (now - not_after <= EXPIRED_GRACE).then_some(0);
        return (fire, None);
    }
    let crossed = days
        .iter()
        .copied()
        .filter(|d| not_after - d * DAY <= now)
        .min();
    let next = days
        .iter()
        .copied()
        .map(|d| not_after - d * DAY)
        .filter(|t| *t > now)
        .min()
        .unwrap_or(not_after);
    (crossed, Some(next))
}

struct TenantView {
    days: Vec<i64>,
    quota_low_percent: i64,
    channels: Vec<(String, String)>,
}

impl TenantView {
    fn wants(&self, kind: NotificationEvent) -> bool {
        self.channels.iter().any(|(_, ev)| subscribes(ev, kind))
    }
}

async fn tenant_view<'a>(
    ra: &Authority,
    cache: &'a mut HashMap<String, TenantView>,
    tenant_id: &str,
) -> Result<&'a TenantView> {
    if !cache.contains_key(tenant_id) {
        let mut conn = ra.store.reader().acquire().await?;
        let s = store::notify::settings_if_any(&mut conn, tenant_id).await?;
        let channels = store::notify::subscribers(&mut conn, tenant_id).await?;
        cache.insert(
            tenant_id.to_string(),
            TenantView {
                days: s
                    .as_ref()
                    .map(|s| parse_days(&s.reminder_days_json))
                    .unwrap_or_else(|| DEFAULT_REMINDER_DAYS.to_vec()),
                quota_low_percent: s.map(|s| s.quota_low_percent).unwrap_or(10),
                channels,
            },
        );
    }
    Ok(&cache[tenant_id])
}

fn days_left(not_after: i64, now: i64) -> i64 {
    ((not_after - now) + DAY - 1).div_euclid(DAY).max(0)
}

/// One pass at `now`: managed certificates whose reminder time has come, then the CAs.
///
/// Each chunk is set-based: one statement per 500 rows for the reminder keys
/// ([`store::notify::insert_reminders`], which says which keys were new), the deliveries
/// of the new ones only ([`emit`]), and one for the `remind_at` moves
/// ([`store::notify::set_remind_ats`]); all in one transaction per chunk.
pub async fn schedule(ra: &Authority, now: i64) -> Result<ScheduleReport> {
    let mut report = ScheduleReport::default();
    let mut tenants: HashMap<String, TenantView> = HashMap::new();
    // At most PASS_ROWS rows per pass; the rest waits for the next one.
    for _ in 0..PASS_ROWS / CHUNK {
        let rows = {
            let mut conn = ra.store.reader().acquire().await?;
            store::notify::due_managed(&mut conn, now, CHUNK).await?
        };
        if rows.is_empty() {
            break;
        }
        report.looked_at += rows.len();
        let mut moves: Vec<(String, i64, Option<i64>)> = Vec::with_capacity(rows.len());
        let mut reminders: Vec<store::notify::NewReminder> = Vec::new();
        let mut events: Vec<(String, Event)> = Vec::new();
        for r in &rows {
            let view = tenant_view(ra, &mut tenants, &r.tenant_id).await?;
            if r.revoked {
                moves.push((r.id.clone(), r.remind_at, None));
                continue;
            }
            let (fire, next) = due(r.not_after, &view.days, now);
            if let Some(d) = fire {
                let kind = if d == 0 {
                    NotificationEvent::CertificateExpired
                } else {
                    NotificationEvent::CertificateExpiring
                };
                if view.wants(kind) {
                    let key = format!(
                        "managed:{}:{}:{}",
                        r.id,
                        r.not_after,
                        if d == 0 {
                            "expired".to_string()
                        } else {
                            d.to_string()
                        }
                    );
                    reminders.push(store::notify::NewReminder {
                        key: key.clone(),
                        tenant_id: r.tenant_id.clone(),
                        event_id: uuid::Uuid::now_v7().to_string(),
                    });
                    events.push((
                        key,
                        Event {
                            tenant_id: r.tenant_id.clone(),
                            kind,
                            data: managed_reminder_data(r, d, now),
                        },
                    ));
                }
            }
            moves.push((r.id.clone(), r.remind_at, next));
        }
        let mut tx = ra.store.begin().await?;
        // The keys first: only a key this transaction made new is sent.
        let new = if reminders.is_empty() {
            Default::default()
        } else {
            store::notify::insert_reminders(&mut tx, &reminders, now).await?
        };
        let fresh: Vec<Event> = events
            .into_iter()
            .filter(|(key, _)| new.contains(key))
            .map(|(_, e)| e)
            .collect();
        if !fresh.is_empty() {
            let ids = emit(&mut tx, &fresh, now).await?;
            report.queued += ids.iter().filter(|id| id.is_some()).count();
        }
        store::notify::set_remind_ats(&mut tx, &moves).await?;
        tx.commit().await?;
        if (rows.len() as i64) < CHUNK {
            break;
        }
    }
    report.queued += schedule_cas(ra, &mut tenants, now).await?;
    Ok(report)
}

/// Inserts the reminder key and, when it is new, queues the event; true when queued.
async fn queue(
    tx: &mut store::Tx,
    key: &str,
    tenant_id: &str,
    kind: NotificationEvent,
    data: Value,
    now: i64,
) -> Result<bool> {
    let event_id = uuid::Uuid::now_v7().to_string();
    if !store::notify::insert_reminder(tx, key, tenant_id, &event_id, now).await? {
        return Ok(false);
    }
    let ids = emit(
        tx,
        &[Event {
            tenant_id: tenant_id.to_string(),
            kind,
            data,
        }],
        now,
    )
    .await?;
    Ok(ids.first().is_some_and(Option::is_some))
}

fn managed_reminder_data(r: &store::notify::DueManaged, threshold: i64, now: i64) -> Value {
    let sans: Value = serde_json::from_str(&r.sans_json).unwrap_or(Value::Null);
    let tags: Value = serde_json::from_str(&r.tags_json).unwrap_or(Value::Null);
    let renew = match &r.origin_certificate_id {
        Some(origin) if r.source == "synced" => json!({
            "api": format!("POST /admin/v1/certificates/{origin}/renew"),
            "cli": format!("vellum admin cert renew {origin}"),
            "advice": "renew the private-CA certificate; its synced copy follows",
        }),
        _ => json!({
            "api": "POST /admin/v1/managed (upload the renewed certificate), then DELETE /admin/v1/managed/".to_string() + &r.id,
            "cli": format!("vellum admin managed upload --name {:?} --cert new.pem --key new.key; vellum admin managed delete {}", r.name, r.id),
            "advice": format!("renew it with its issuer ({}) and upload the new certificate", r.issuer),
        }),
    };
    json!({
        "certificate": {
            "id": r.id,
            "inventory": "managed",
            "name": r.name,
            "common_name": r.common_name,
            "sans": sans,
            "tags": tags,
            "issuer": r.issuer,
            "serial": r.serial,
            "source": r.source,
            "not_after": rfc3339(r.not_after),
        },
        "threshold_days": threshold,
        "days_left": days_left(r.not_after, now),
        "renew": renew,
    })
}

async fn schedule_cas(
    ra: &Authority,
    tenants: &mut HashMap<String, TenantView>,
    now: i64,
) -> Result<usize> {
    let cas = {
        let mut conn = ra.store.reader().acquire().await?;
        store::notify::enabled_cas(&mut conn).await?
    };
    let mut queued = 0;
    let mut tx = ra.store.begin().await?;
    for ca in &cas {
        let view = tenant_view(ra, tenants, &ca.tenant_id).await?;
        let mut todo: Vec<(String, NotificationEvent, Value)> = Vec::new();
        if let (Some(not_after), Some(serial)) = (ca.not_after, ca.serial.as_deref()) {
            if let (Some(d), _) = due(not_after, &view.days, now) {
                if d > 0 && view.wants(NotificationEvent::CaExpiring) {
                    let mut data = super::ca_data(ca);
                    data["threshold_days"] = json!(d);
                    data["days_left"] = json!(days_left(not_after, now));
                    data["renew"] = json!({
                        "advice": "issue a new CA certificate before this one expires; certificates it issued stop validating with it",
                    });
                    todo.push((
                        format!("ca:{}:{serial}:{d}", ca.id),
                        NotificationEvent::CaExpiring,
                        data,
                    ));
                }
            }
        }
        if ca.kind == CaKind::Root && view.wants(NotificationEvent::CaServiceEnding) {
            if let (Some(d), _) = due(ca.service_until, &view.days, now) {
                if d > 0 {
                    let mut data = super::ca_data(ca);
                    data["threshold_days"] = json!(d);
                    data["days_left"] = json!(days_left(ca.service_until, now));
                    data["renew"] = json!({
                        "api": format!("POST /admin/v1/cas/{}/service/renew", ca.id),
                        "advice": "renew the service period; when it ends the CA and its intermediates stop issuing",
                    });
                    todo.push((
                        format!("service:{}:{}:{d}", ca.id, ca.service_until),
                        NotificationEvent::CaServiceEnding,
                        data,
                    ));
                }
            }
        }
        if ca.kind == CaKind::Intermediate
            && ca.quota_assigned > 0
            && ca.quota_remaining * 100 < view.quota_low_percent * ca.quota_assigned
            && view.wants(NotificationEvent::QuotaLow)
        {
            let mut data = super::ca_data(ca);
            data["threshold_percent"] = json!(view.quota_low_percent);
            data["assign"] = json!({
                "api": format!("POST /admin/v1/cas/{}/quota/assign {{\"intermediate_id\": \"{}\", \"count\": N}}", ca.parent_id.as_deref().unwrap_or("?"), ca.id),
            });
            todo.push((
                format!("quota_low:{}:{}", ca.id, ca.quota_assigned),
                NotificationEvent::QuotaLow,
                data,
            ));
        }
        for (key, kind, data) in todo {
            if queue(&mut tx, &key, &ca.tenant_id, kind, data, now).await? {
                queued += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_crossed_threshold_fires_and_the_next_one_is_scheduled() {
        let days = [30, 7, 1];
        let now = 1_000 * DAY;
        // 40 days left: nothing yet, look again at 30 days before expiry.
        assert_eq!(
            due(now + 40 * DAY, &days, now),
            (None, Some(now + 10 * DAY))
        );
        // 20 days left: the 30-day reminder, next at 7 days.
        assert_eq!(
            due(now + 20 * DAY, &days, now),
            (Some(30), Some(now + 13 * DAY))
        );
        // 5 days left (uploaded late): only the 7-day one, next at 1 day.
        assert_eq!(
            due(now + 5 * DAY, &days, now),
            (Some(7), Some(now + 4 * DAY))
        );
        // Hours left: the 1-day one, next at expiry.
        assert_eq!(due(now + 3600, &days, now), (Some(1), Some(now + 3600)));
        // Just expired: expired, nothing after; long expired: nothing at all.
        assert_eq!(due(now - 60, &days, now), (Some(0), None));
        assert_eq!(due(now - 30 * DAY, &days, now), (None, None));
        assert_eq!(days_left(now + 20 * DAY - 5, now), 20);
    }
}
