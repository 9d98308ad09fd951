//! The console's overview: what a person would rather look at than read — certificates
//! expiring over the next 90 days, issuance per day by door over 30 days, quota per CA.

use serde::Serialize;

use crate::Authority;
use store::cas::CaFilter;
use vellum_core::error::Result;
use vellum_core::status::{CaKind, CaStatus};

/// Weeks of the expiry chart (13 weeks ≈ 90 days).
pub const WEEKS: i64 = 13;
/// Days of the issuance chart.
pub const DAYS: i64 = 30;

/// Certificates expiring in one week.
#[derive(Debug, Serialize)]
pub struct Week {
    /// Start of the week, Unix seconds.
    pub from: i64,
    /// Live certificates expiring in it.
    pub count: i64,
}

/// Certificates issued on one UTC day, by door.
#[derive(Debug, Serialize)]
pub struct Day {
    /// Midnight UTC, Unix seconds.
    pub day: i64,
    /// Through the admin API, the CLI or the console (sources `private_ca` and `system`).
    pub admin: i64,
    /// Through ACME.
    pub acme: i64,
    /// Through EST.
    pub est: i64,
}

/// A CA's quota.
#[derive(Debug, Serialize)]
pub struct CaQuota {
    /// The CA.
    pub id: String,
    /// Its name.
    pub common_name: String,
    /// root or intermediate.
    pub kind: CaKind,
    /// Its state.
    pub status: CaStatus,
    /// Roots: available to assign; intermediates: remaining to issue.
    pub left: i64,
    /// Roots: purchased in all; intermediates: assigned.
    pub total: i64,
}

/// The overview of a tenant.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// [`WEEKS`] weeks from now.
    pub expiring: Vec<Week>,
    /// [`DAYS`] days up to today, oldest first.
    pub issued: Vec<Day>,
    /// Pending and enabled CAs, oldest first.
    pub cas: Vec<CaQuota>,
}

/// The overview of `tenant_id` at the authority's clock.
///
/// Reads the kept counters of `store::stats` (a few hundred rows whatever the tenant's
/// size) plus one exact index range: the certificates expiring during the rest of today.
/// Weeks are whole UTC days: week 0 runs from now to the end of the 7th day after today,
/// week `w` over the 7 days after that.
pub async fn overview(ra: &Authority, tenant_id: &str) -> Result<Overview> {
    let now = ra.now();
    let today = now.div_euclid(86_400);
    let first_day = today - (DAYS - 1);
    let mut conn = ra.store.reader().acquire().await?;
    let rest_of_today =
        store::stats::expiring_between(&mut conn, tenant_id, now, (today + 1) * 86_400).await?;
    let per_day =
        store::stats::expiring_per_day(&mut conn, tenant_id, today + 1, today + WEEKS * 7).await?;
    let issued_counts = store::stats::issued_per_day(&mut conn, tenant_id, first_day).await?;
    let cas = store::cas::list(
        &mut conn,
        tenant_id,
        &CaFilter {
            limit: 1000,
            ..Default::default()
        },
    )
    .await?;
    let expiring = (0..WEEKS)
        .map(|w| {
            let days = today + 1 + w * 7..=today + (w + 1) * 7;
            let counted: i64 = per_day
                .iter()
                .filter(|(d, _)| days.contains(d))
                .map(|(_, n)| n)
                .sum();
            Week {
                from: if w == 0 { now } else { days.start() * 86_400 },
                count: counted + if w == 0 { rest_of_today } else { 0 },
            }
        })
        .collect();
    let issued = (0..DAYS)
        .map(|d| {
            let day = first_day + d;
            let mut out = Day {
                day: day * 86_400,
                admin: 0,
                acme: 0,
                est: 0,
            };
            for (_, source, n) in issued_counts.iter().filter(|(k, _, _)| *k == day) {
                match source.as_str() {
                    "acme" => out.acme += n,
                    "est" => out.est += n,
                    _ => out.admin += n,
                }
            }
            out
        })
        .collect();
    let cas = cas
        .into_iter()
        .filter(|c| matches!(c.status, CaStatus::Pending | CaStatus::Enabled))
        .map(|c| {
            let (left, total) = match c.kind {
                CaKind::Root => (c.quota_available, c.quota_total),
                CaKind::Intermediate => (c.quota_remaining, c.quota_assigned),
            };
            CaQuota {
                id: c.id,
                common_name: c.common_name,
                kind: c.kind,
                status: c.status,
                left,
                total,
            }
        })
        .collect();
    Ok(Overview {
        expiring,
        issued,
        cas,
    })
}
