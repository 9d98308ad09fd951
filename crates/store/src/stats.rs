//! Aggregates for the console's overview and the metrics scrape: certificates expiring
//! per day and issued per day and source, kept as counters (migration 0024) by the
//! recording and revoking transactions, so the overview reads a few hundred counter rows
//! whatever the size of the tenant.

use std::collections::BTreeMap;

use super::certificates::CertRow;
use super::sql::{query, Conn};
use vellum_core::error::Result;

/// Shards of one day's counters (see migration 0024): rows per (tenant, day, …) at most.
const SHARDS: u64 = 8;

/// The expiry-day key of `not_after`: day `k` holds `not_after` in (k·86400, (k+1)·86400].
/// Truncating division, as the migration's SQL (both engines) computes it.
pub fn expiry_day(not_after: i64) -> i64 {
    (not_after - 1) / 86_400
}

/// The shard a write of certificate `id` lands on (FNV-1a of the id: spread, stable).
fn shard_of(id: &str) -> i64 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % SHARDS) as i64
}

/// Counts newly recorded certificates into `issued_counts` and `expiry_counts`, in the
/// recording transaction (`certificates::insert_many` calls it after its INSERTs, so the
/// group commit writes a few counter rows per batch, not one per certificate). Keys are
/// written in sorted order, so concurrent batches on PostgreSQL cannot deadlock on them.
pub(crate) async fn count_recorded(conn: &mut Conn, rows: &[&CertRow]) -> Result<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let shard = shard_of(&first.id);
    let mut issued: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
    let mut expiring: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for c in rows {
        *issued
            .entry((
                c.tenant_id.as_str(),
                c.created_at / 86_400,
                c.source.as_str(),
            ))
            .or_default() += 1;
        if c.revoked_at.is_none() {
            *expiring
                .entry((c.tenant_id.as_str(), expiry_day(c.not_after)))
                .or_default() += 1;
        }
    }
    let issued: Vec<_> = issued.into_iter().collect();
    for chunk in issued.chunks(COUNTER_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO issued_counts (tenant_id, day, source, shard, n) VALUES {} \
             ON CONFLICT (tenant_id, day, source, shard) DO UPDATE SET n = issued_counts.n + excluded.n",
            super::values_placeholders(conn, chunk.len(), 5)
        );
        let mut q = query(&sql);
        for ((tenant, day, source), n) in chunk {
            q = q
                .bind(*tenant)
                .bind(*day)
                .bind(*source)
                .bind(shard)
                .bind(*n);
        }
        q.execute(&mut *conn).await?;
    }
    let expiring: Vec<_> = expiring.into_iter().collect();
    for chunk in expiring.chunks(COUNTER_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO expiry_counts (tenant_id, day, shard, n) VALUES {} \
             ON CONFLICT (tenant_id, day, shard) DO UPDATE SET n = expiry_counts.n + excluded.n",
            super::values_placeholders(conn, chunk.len(), 4)
        );
        let mut q = query(&sql);
        for ((tenant, day), n) in chunk {
            q = q.bind(*tenant).bind(*day).bind(shard).bind(*n);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Counter rows per multi-row upsert.
const COUNTER_ROWS_PER_STATEMENT: usize = 100;

/// Takes a revoked certificate out of `expiry_counts`. The revoking transaction calls it
/// last (after its CA's revision bump), so its row locks are taken in the same order as
/// the group commit's (CA rows, then counters) and the two cannot deadlock.
pub async fn count_revoked(conn: &mut Conn, c: &CertRow) -> Result<()> {
    query(
        "INSERT INTO expiry_counts (tenant_id, day, shard, n) VALUES ($1, $2, $3, -1) \
         ON CONFLICT (tenant_id, day, shard) DO UPDATE SET n = expiry_counts.n - 1",
    )
    .bind(&c.tenant_id)
    .bind(expiry_day(c.not_after))
    .bind(shard_of(&c.id))
    .execute(conn)
    .await?;
    Ok(())
}

/// Live certificates (not revoked, not deleted) of the tenant expiring in (`from`, `to`]:
/// the exact count over the `(tenant_id, not_after, …)` index range (the overview uses it
/// for the rest of today only, the counters for the days after).
pub async fn expiring_between(conn: &mut Conn, tenant_id: &str, from: i64, to: i64) -> Result<i64> {
    let row = query(
        "SELECT COUNT(*) AS n FROM certificates \
         WHERE tenant_id = $1 AND not_after > $2 AND not_after <= $3 \
         AND revoked_at IS NULL AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("n")?)
}

/// Unrevoked certificates of the tenant per expiry day (see [`expiry_day`]) for days
/// `first..=last`, from the kept counters: `(day, count)`, days without any left out.
pub async fn expiring_per_day(
    conn: &mut Conn,
    tenant_id: &str,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, i64)>> {
    let rows = query(
        "SELECT day, CAST(SUM(n) AS BIGINT) AS n FROM expiry_counts \
         WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY day",
    )
    .bind(tenant_id)
    .bind(first)
    .bind(last)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("day")?, r.try_get("n")?)))
        .collect()
}

/// Certificates of the tenant recorded on UTC days `first_day` (days since the epoch) and
/// after, per day and source, from the kept counters: `(day, source, count)`.
pub async fn issued_per_day(
    conn: &mut Conn,
    tenant_id: &str,
    first_day: i64,
) -> Result<Vec<(i64, String, i64)>> {
    let rows = query(
        "SELECT day, source, CAST(SUM(n) AS BIGINT) AS n FROM issued_counts \
         WHERE tenant_id = $1 AND day >= $2 GROUP BY day, source",
    )
    .bind(tenant_id)
    .bind(first_day)
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
