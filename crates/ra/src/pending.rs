//! Pending items: what in a tenant's inventory asks for an action (certificates to renew,
//! expired ones, reminders off, quota running low, CA service ending, CAs not enabled,
//! refunds still possible), counted and listed by kind, and the per-token snoozes of the
//! reminder ("do not remind me again for 7 days").
//!
//! Which rows fall in a kind is decided here; the store only counts and lists the windows
//! it is given (index ranges, `store::pending`). A snooze belongs to the calling token in
//! the tenant it acts in: a snoozed kind keeps its count but no longer makes
//! [`Pending::remind`] true.

use crate::hierarchy::{refundable, REFUND_WINDOW_DAYS};
use crate::Authority;
use store::cas::CaRow;
use store::pending::{PendingCert, Window};
use vellum_core::error::{Error, Result};
use vellum_core::status::{
    one_of, CaKind, CaStatus, PendingItemType, PendingKind, Spelled, EXPIRING_DAYS,
};
use vellum_core::time::rfc3339;

/// Most items listed per kind (the count covers them all).
pub const ITEMS_PER_KIND: usize = 20;
/// How far back `expired` looks: certificates that expired within this many days (older
/// ones are history, not a to-do; the certificate lists' `status=expired` shows them all).
pub const EXPIRED_WINDOW_DAYS: i64 = 90;
/// An intermediate's quota is low when what is left is below this percentage of what it
/// was assigned.
pub const QUOTA_LOW_PERCENT: i64 = 10;
/// Days a snooze lasts when the request names none.
pub const DEFAULT_SNOOZE_DAYS: i64 = 7;
/// Longest snooze, days.
pub const MAX_SNOOZE_DAYS: i64 = 30;
/// The `kind` that snoozes (or wakes) every kind at once.
pub const ALL_KINDS: &str = "all";

const DAY: i64 = 86_400;

/// One pending item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The certificate's, managed certificate's or CA's id.
    pub id: String,
    /// Which collection `id` belongs to.
    pub item_type: PendingItemType,
    /// The certificate's commonName (its inventory name when it has no CN), the CA's
    /// commonName.
    pub name: String,
    /// End of validity of a certificate, Unix seconds; `None` for CAs.
    pub not_after: Option<i64>,
    /// Why it is pending, in words.
    pub detail: String,
}

/// One kind of pending item, with its count and first items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// The kind.
    pub kind: PendingKind,
    /// How many items are of this kind.
    pub count: i64,
    /// The first [`ITEMS_PER_KIND`] of them.
    pub items: Vec<Item>,
    /// When the caller's snooze of this kind ends, Unix seconds; `None` when not snoozed.
    pub snoozed_until: Option<i64>,
}

/// The pending items of a tenant as one token sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// True when a kind that is not snoozed has items: the console shows its reminder.
    pub remind: bool,
    /// Items of every kind.
    pub total: i64,
    /// Every kind, in [`PendingKind`]'s order (count 0 included).
    pub kinds: Vec<Kind>,
}

/// The pending items of `tenant_id` at the authority's clock, with `token_id`'s snoozes.
pub async fn pending(ra: &Authority, tenant_id: &str, token_id: &str) -> Result<Pending> {
    let now = ra.now();
    let mut conn = ra.store.reader().acquire().await?;
    let c = &mut conn;
    let limit = ITEMS_PER_KIND as i64;

    let soon = Window {
        after: now,
        until: now + EXPIRING_DAYS * DAY,
        latest_first: false,
    };
    let past = Window {
        after: now - EXPIRED_WINDOW_DAYS * DAY,
        until: now,
        latest_first: true,
    };
    let mut certs = Vec::new();
    for w in [soon, past] {
        let count = store::stats::live_between(c, tenant_id, w.after, w.until).await?
            + store::pending::count_managed(c, tenant_id, w).await?;
        let issued = store::pending::certificates(c, tenant_id, w, limit).await?;
        let managed = store::pending::managed(c, tenant_id, w, limit).await?;
        certs.push((count, merge(issued, managed, w.latest_first, now)));
    }
    let off_count = store::pending::count_notifications_off(c, tenant_id).await?;
    let off = store::pending::notifications_off(c, tenant_id, limit)
        .await?
        .into_iter()
        .map(|m| {
            let mut item = cert_item(m, PendingItemType::Managed, now);
            item.detail = format!("expiry reminders are off; {}", item.detail);
            item
        })
        .collect();
    let failed_since = now - 7 * DAY;
    let failed_count = store::notify::count_failed(c, tenant_id, failed_since).await?;
    let failed: Vec<Item> = if failed_count > 0 {
        let f = store::notify::DeliveryFilter {
            status: Some(vellum_core::status::DeliveryStatus::Failed),
            since: Some(failed_since),
            limit,
            ..Default::default()
        };
        store::notify::list_deliveries(c, tenant_id, &f)
            .await?
            .into_iter()
            .map(|d| Item {
                id: d.id,
                item_type: PendingItemType::Delivery,
                name: d.event_type.to_string(),
                not_after: None,
                detail: format!(
                    "{} could not be delivered after {} attempts ({}); fix the channel, then \
                     redeliver",
                    d.event_type,
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("no answer")
                ),
            })
            .collect()
    } else {
        Vec::new()
    };
    let cas = store::pending::cas(c, tenant_id).await?;
    let snoozes = store::pending::snoozes(c, token_id, tenant_id, now).await?;
    drop(conn);

    let mut by_kind: Vec<(PendingKind, i64, Vec<Item>)> = Vec::new();
    let [(soon_n, soon_items), (past_n, past_items)]: [(i64, Vec<Item>); 2] = certs
        .try_into()
        .map_err(|_| Error::internal("two certificate windows"))?;
    by_kind.push((PendingKind::Expiring, soon_n, soon_items));
    by_kind.push((PendingKind::Expired, past_n, past_items));
    by_kind.push((PendingKind::NotificationsOff, off_count, off));
    for kind in [
        PendingKind::QuotaLow,
        PendingKind::ServiceEnding,
        PendingKind::PendingEnable,
        PendingKind::Refundable,
    ] {
        let items: Vec<Item> = cas.iter().filter_map(|ca| ca_item(kind, ca, now)).collect();
        let n = items.len() as i64;
        by_kind.push((kind, n, items.into_iter().take(ITEMS_PER_KIND).collect()));
    }
    by_kind.push((PendingKind::NotificationsFailed, failed_count, failed));

    let kinds: Vec<Kind> = by_kind
        .into_iter()
        .map(|(kind, count, items)| Kind {
            kind,
            count,
            items,
            snoozed_until: snoozes.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t),
        })
        .collect();
    Ok(Pending {
        remind: kinds
            .iter()
            .any(|k| k.count > 0 && k.snoozed_until.is_none()),
        total: kinds.iter().map(|k| k.count).sum(),
        kinds,
    })
}

/// The first [`ITEMS_PER_KIND`] of two lists each sorted by `not_after` (descending when
/// `latest_first`), as items.
fn merge(
    issued: Vec<PendingCert>,
    managed: Vec<PendingCert>,
    latest_first: bool,
    now: i64,
) -> Vec<Item> {
    let mut all: Vec<(PendingCert, PendingItemType)> = issued
        .into_iter()
        .map(|c| (c, PendingItemType::Certificate))
        .chain(managed.into_iter().map(|m| (m, PendingItemType::Managed)))
        .collect();
    all.sort_by(|(a, _), (b, _)| {
        let o = (a.not_after, &a.id).cmp(&(b.not_after, &b.id));
        if latest_first {
            o.reverse()
        } else {
            o
        }
    });
    all.into_iter()
        .take(ITEMS_PER_KIND)
        .map(|(c, t)| cert_item(c, t, now))
        .collect()
}

fn cert_item(c: PendingCert, item_type: PendingItemType, now: i64) -> Item {
    let name = if c.common_name.is_empty() {
        c.name.unwrap_or_default()
    } else {
        c.common_name
    };
    Item {
        id: c.id,
        item_type,
        name,
        not_after: Some(c.not_after),
        detail: expiry_words(c.not_after, now),
    }
}

/// "expires in 12 days (…)", "expires within a day (…)", "expired 3 days ago (…)".
fn expiry_words(not_after: i64, now: i64) -> String {
    let at = rfc3339(not_after);
    if not_after > now {
        match (not_after - now) / DAY {
            0 => format!("expires within a day ({at})"),
            1 => format!("expires in 1 day ({at})"),
            d => format!("expires in {d} days ({at})"),
        }
    } else {
        match (now - not_after) / DAY {
            0 => format!("expired less than a day ago ({at})"),
            1 => format!("expired 1 day ago ({at})"),
            d => format!("expired {d} days ago ({at})"),
        }
    }
}

/// Whether an intermediate's quota is low: enabled, and what is left below
/// [`QUOTA_LOW_PERCENT`] % of `quota_assigned` (what its root assigned it, less what went
/// back; spending does not lower it, so it is "what it was assigned"). Exactly 10 % left is
/// not low; an intermediate never assigned anything is not either.
pub fn quota_low(ca: &CaRow) -> bool {
    ca.kind == CaKind::Intermediate
        && ca.status == CaStatus::Enabled
        && ca.quota_remaining * 100 < ca.quota_assigned * QUOTA_LOW_PERCENT
}

/// Whether a root's service period ends within [`EXPIRING_DAYS`] days of `now` or is
/// over. Only roots: intermediates follow their root's period, and the renewal is the
/// root's.
pub fn service_ending(ca: &CaRow, now: i64) -> bool {
    ca.kind == CaKind::Root
        && matches!(ca.status, CaStatus::Pending | CaStatus::Enabled)
        && ca.service_until <= now + EXPIRING_DAYS * DAY
}

fn ca_item(kind: PendingKind, ca: &CaRow, now: i64) -> Option<Item> {
    let detail = match kind {
        PendingKind::QuotaLow if quota_low(ca) => format!(
            "{} of the {} certificates assigned are left (below {QUOTA_LOW_PERCENT} %); assign more from root {}",
            ca.quota_remaining,
            ca.quota_assigned,
            ca.parent_id.as_deref().unwrap_or("-"),
        ),
        PendingKind::ServiceEnding if service_ending(ca, now) => {
            let until = rfc3339(ca.service_until);
            if ca.service_until <= now {
                format!("service period ended at {until}: its CAs issue nothing until it is renewed")
            } else {
                let d = (ca.service_until - now) / DAY;
                format!("service period ends at {until} (in {d} days); its intermediates follow it")
            }
        }
        PendingKind::PendingEnable if ca.status == CaStatus::Pending => {
            format!("{} purchased at {}, not enabled yet", ca.kind, rfc3339(ca.purchased_at))
        }
        PendingKind::Refundable if refundable(ca, now) => format!(
            "purchased at {}; may be refunded until {}",
            rfc3339(ca.purchased_at),
            rfc3339(ca.purchased_at + REFUND_WINDOW_DAYS * DAY)
        ),
        _ => return None,
    };
    Some(Item {
        id: ca.id.clone(),
        item_type: PendingItemType::Ca,
        name: ca.common_name.clone(),
        not_after: None,
        detail,
    })
}

/// The kinds a snooze request's `kind` names: one [`PendingKind`], or every kind for
/// [`ALL_KINDS`]. Anything else is a 422 naming `kind` and the values allowed.
pub fn kinds_named(kind: &str) -> Result<Vec<PendingKind>> {
    if kind == ALL_KINDS {
        return Ok(PendingKind::ALL.to_vec());
    }
    kind.parse::<PendingKind>().map(|k| vec![k]).map_err(|_| {
        let mut allowed = PendingKind::SPELLINGS.to_vec();
        allowed.push(ALL_KINDS);
        Error::invalid("kind", format!("must be {}", one_of(&allowed)))
    })
}

/// The days of a snooze: [`DEFAULT_SNOOZE_DAYS`] when not given, else 1 to
/// [`MAX_SNOOZE_DAYS`] (a 422 naming `days` otherwise).
pub fn snooze_days(days: Option<i64>) -> Result<i64> {
    let days = days.unwrap_or(DEFAULT_SNOOZE_DAYS);
    if !(1..=MAX_SNOOZE_DAYS).contains(&days) {
        return Err(Error::invalid(
            "days",
            format!("must be a whole number of days from 1 to {MAX_SNOOZE_DAYS}"),
        ));
    }
    Ok(days)
}

/// What a snooze did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snoozed {
    /// The kinds snoozed.
    pub kinds: Vec<PendingKind>,
    /// Until when, Unix seconds.
    pub until: i64,
}

/// Snoozes `kind` (a kind or `all`) for `days` (default 7) for `token_id` in `tenant_id`:
/// those kinds keep their counts but do not make [`Pending::remind`] true until then.
pub async fn snooze(
    ra: &Authority,
    tenant_id: &str,
    token_id: &str,
    kind: &str,
    days: Option<i64>,
) -> Result<Snoozed> {
    let kinds = kinds_named(kind)?;
    let days = snooze_days(days)?;
    let until = ra.now() + days * DAY;
    let mut tx = ra.store.begin().await?;
    store::pending::snooze(&mut tx, token_id, tenant_id, &kinds, until).await?;
    tx.commit().await?;
    Ok(Snoozed { kinds, until })
}

/// Lifts `token_id`'s snooze of `kind` (every kind when `None` or `all`) in `tenant_id`;
/// returns the kinds named.
pub async fn unsnooze(
    ra: &Authority,
    tenant_id: &str,
    token_id: &str,
    kind: Option<&str>,
) -> Result<Vec<PendingKind>> {
    let kinds = kinds_named(kind.unwrap_or(ALL_KINDS))?;
    let mut tx = ra.store.begin().await?;
    store::pending::unsnooze(&mut tx, token_id, tenant_id, &kinds).await?;
    tx.commit().await?;
    Ok(kinds)
}
