//! Aggregates for the console's overview: certificates expiring per week and issued per
//! day and source. Each reads one index range of one tenant (never the whole table).

use super::sql::{query, Conn};
use vellum_core::error::Result;

/// Live certificates (not revoked, not deleted) of the tenant expiring in
/// (`from`, `from + weeks` weeks], counted per week: `(week index from 0, count)`.
/// Reads the `(tenant_id, not_after, …)` index of `/pending`.
pub async fn expiring_per_week(
    conn: &mut Conn,
    tenant_id: &str,
    from: i64,
    weeks: i64,
) -> Result<Vec<(i64, i64)>> {
    let rows = query(
        "SELECT (not_after - $2 - 1) / 604800 AS week, COUNT(*) AS n FROM certificates \
         WHERE tenant_id = $1 AND not_after > $2 AND not_after <= $3 \
         AND revoked_at IS NULL AND deleted_at IS NULL GROUP BY week",
    )
    .bind(tenant_id)
    .bind(from)
    .bind(from + weeks * 604_800)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("week")?, r.try_get("n")?)))
        .collect()
}

/// Certificates of the tenant issued since `since` (Unix seconds), counted per UTC day
/// (days since the epoch) and source. `first_id` is the smallest UUIDv7 of that instant:
/// ids are time-ordered, so the `(tenant_id, id)` index answers the range.
pub async fn issued_per_day(
    conn: &mut Conn,
    tenant_id: &str,
    since: i64,
    first_id: &str,
) -> Result<Vec<(i64, String, i64)>> {
    let rows = query(
        "SELECT created_at / 86400 AS day, source, COUNT(*) AS n FROM certificates \
         WHERE tenant_id = $1 AND id >= $2 AND created_at >= $3 GROUP BY day, source",
    )
    .bind(tenant_id)
    .bind(first_id)
    .bind(since)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("day")?, r.try_get("source")?, r.try_get("n")?)))
        .collect()
}
