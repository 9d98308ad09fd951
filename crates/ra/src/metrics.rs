//! What the metrics scrape reads from the database: the gauges of
//! [`vellum_core::metrics::Snapshot`] (quota remaining per enabled intermediate, live
//! certificates expiring within 30 days per CA). Two index reads per call; the front end
//! caches the answer for a few seconds, so a scrape storm does not reach the database.

use crate::Authority;
use vellum_core::error::Result;
use vellum_core::metrics::Snapshot;

/// Window of the "expiring" gauge.
pub const EXPIRING_WITHIN_SECS: i64 = 30 * 86_400;

/// Reads the scrape-time gauges now.
pub async fn snapshot(ra: &Authority) -> Result<Snapshot> {
    let now = ra.now();
    let mut conn = ra.store.reader().acquire().await?;
    let quota_remaining = store::stats::quota_remaining(&mut conn).await?;
    let expiring_30d =
        store::stats::expiring_per_ca(&mut conn, now, now + EXPIRING_WITHIN_SECS).await?;
    Ok(Snapshot {
        quota_remaining,
        expiring_30d,
    })
}
