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

/// `(id, quota_remaining)` of every enabled intermediate CA, of every tenant (the
/// metrics scrape's gauge; one row per CA, so the scan is as small as the CA table).
pub async fn quota_remaining(conn: &mut Conn) -> Result<Vec<(String, i64)>> {
    let rows = query(
        "SELECT id, quota_remaining FROM cas WHERE kind = 'intermediate' AND status = 'enabled' \
         ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("quota_remaining")?)))
        .collect()
}

/// Live certificates (not revoked, not deleted) expiring in (`from`, `to`], counted per
/// issuing CA, over every tenant. Driven from `tenants` so each tenant's
/// `(tenant_id, not_after, …)` index range is read (never the whole table).
pub async fn expiring_per_ca(conn: &mut Conn, from: i64, to: i64) -> Result<Vec<(String, i64)>> {
    let rows = query(
        "SELECT c.ca_id AS ca_id, COUNT(*) AS n FROM tenants t JOIN certificates c \
         ON c.tenant_id = t.id AND c.not_after > $1 AND c.not_after <= $2 \
         AND c.revoked_at IS NULL AND c.deleted_at IS NULL \
         WHERE c.ca_id IS NOT NULL GROUP BY c.ca_id ORDER BY c.ca_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("ca_id")?, r.try_get("n")?)))
        .collect()
}
