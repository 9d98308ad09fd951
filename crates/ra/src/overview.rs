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

/// The smallest UUIDv7 (as text) of Unix second `t`: ids minted at or after `t` sort at
/// or after it.
fn first_uuid_v7(t: i64) -> String {
    let ms = (t.max(0) as u64) * 1000;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// The overview of `tenant_id` at the authority's clock.
pub async fn overview(ra: &Authority, tenant_id: &str) -> Result<Overview> {
    let now = ra.now();
    let today = now - now.rem_euclid(86_400);
    let since = today - (DAYS - 1) * 86_400;
    let mut conn = ra.store.reader().acquire().await?;
    let per_week = store::stats::expiring_per_week(&mut conn, tenant_id, now, WEEKS).await?;
    let per_day =
        store::stats::issued_per_day(&mut conn, tenant_id, since, &first_uuid_v7(since)).await?;
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
        .map(|w| Week {
            from: now + w * 604_800,
            count: per_week
                .iter()
                .filter(|(i, _)| *i == w)
                .map(|(_, n)| n)
                .sum(),
        })
        .collect();
    let issued = (0..DAYS)
        .map(|d| {
            let day = since + d * 86_400;
            let mut out = Day {
                day,
                admin: 0,
                acme: 0,
                est: 0,
            };
            for (_, source, n) in per_day.iter().filter(|(k, _, _)| *k * 86_400 == day) {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_uuid_of_a_second_sorts_before_every_id_minted_then() {
        let t = 1_790_000_000;
        let floor = super::first_uuid_v7(t);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, t as u64, 0);
        let minted = uuid::Uuid::new_v7(ts).to_string();
        assert!(floor <= minted, "{floor} > {minted}");
        let before = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (t - 1) as u64,
            999_000_000,
        ))
        .to_string();
        assert!(before < floor, "{before} >= {floor}");
    }
}
