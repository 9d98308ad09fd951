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

/// Takes a certificate out of `expiry_counts`: revoked, or deleted while unrevoked
/// (expired). The revoking and deleting transactions call it last (after the CA's
/// revision bump), so its row locks are taken in the same order as the group commit's
/// (CA rows, then counters) and the two cannot deadlock.
pub async fn uncount(conn: &mut Conn, c: &CertRow) -> Result<()> {
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

/// Certificates of the tenant neither revoked nor deleted with `not_after` in
/// (`from`, `to`], as [`crate::pending`]'s windows define them: the whole UTC days inside
/// from the kept counters, the partial days at either end counted exactly over the
/// `(tenant_id, not_after, …)` index (a day's worth of rows at most, each).
pub async fn live_between(conn: &mut Conn, tenant_id: &str, from: i64, to: i64) -> Result<i64> {
    const DAY: i64 = 86_400;
    if to <= from {
        return Ok(0);
    }
    // Day k holds (k·DAY, (k+1)·DAY]: the whole days inside are first..=last.
    let first = from.div_euclid(DAY) + i64::from(from.rem_euclid(DAY) != 0);
    let last = to.div_euclid(DAY) - 1;
    if first > last {
        return expiring_between(conn, tenant_id, from, to).await;
    }
    let head = expiring_between(&mut *conn, tenant_id, from, first * DAY).await?;
    let row = query(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM expiry_counts \
         WHERE tenant_id = $1 AND day >= $2 AND day <= $3",
    )
    .bind(tenant_id)
    .bind(first)
    .bind(last)
    .fetch_one(&mut *conn)
    .await?;
    let days: i64 = row.try_get("n")?;
    let tail = expiring_between(conn, tenant_id, (last + 1) * DAY, to).await?;
    Ok(head + days + tail)
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

#[cfg(test)]
mod tests {
    use super::super::certificates::{self, CertRow, Deleted};
    use super::super::sql::query;
    use vellum_core::status::{CertificateSource, LeafType, RevocationReason};

    const DAY: i64 = 86_400;

    fn row(i: usize, not_after: i64, source: CertificateSource) -> CertRow {
        CertRow {
            id: format!("c{i:04}"),
            tenant_id: "t".into(),
            ca_id: None,
            serial: format!("{i:04x}"),
            cert_type: LeafType::Server,
            common_name: format!("c{i}.example"),
            sans_json: "[]".into(),
            not_before: 0,
            not_after,
            revoked_at: None,
            revocation_reason: None,
            source,
            name: None,
            tags_json: "[]".into(),
            spec_json: "{}".into(),
            key_algorithm: "ec".into(),
            leakage_risk: false,
            certificate_der: vec![0],
            key_sealed: None,
            requester: None,
            deleted_at: None,
            created_at: 1000 * DAY + (i as i64 % 3) * DAY,
            renewed_from: None,
            subject_json: "{}".into(),
            est_client: None,
        }
    }

    /// The kept counters answer exactly what counting the rows answers, for windows that
    /// start and end on and between midnights, after revocations and deletions.
    #[tokio::test]
    async fn counters_agree_with_counting_rows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = super::super::Store::connect(&url, 2).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        query("INSERT INTO tenants (id, name, entity, created_at) VALUES ('t', 't', 'e', 0)")
            .execute(&mut tx)
            .await
            .unwrap();
        // Expiries spread over days 1000..1010, on and around midnights, in two batches.
        let sources = [CertificateSource::PrivateCa, CertificateSource::Acme];
        let rows: Vec<CertRow> = (0..200)
            .map(|i| {
                let t = 1000 * DAY + (i as i64 * 4_327) % (10 * DAY);
                let t = if i % 17 == 0 { t - t % DAY } else { t };
                row(i, t, sources[i % 2])
            })
            .collect();
        let refs: Vec<&CertRow> = rows.iter().collect();
        certificates::insert_many(&mut tx, &refs[..120])
            .await
            .unwrap();
        certificates::insert_many(&mut tx, &refs[120..])
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Revoke some, delete some expired (unrevoked) and some revoked ones.
        let now = 1005 * DAY + 3_600;
        let mut tx = store.begin().await.unwrap();
        for r in rows.iter().filter(|r| r.id.ends_with('3')) {
            assert!(
                certificates::revoke(&mut tx, &r.id, now, RevocationReason::Superseded)
                    .await
                    .unwrap()
            );
            super::uncount(&mut tx, r).await.unwrap();
        }
        for r in rows
            .iter()
            .filter(|r| r.id.ends_with('5') || r.id.ends_with("13"))
        {
            match certificates::delete(&mut tx, &r.id, now).await.unwrap() {
                Deleted::Unrevoked => super::uncount(&mut tx, r).await.unwrap(),
                Deleted::Revoked => assert!(r.id.ends_with('3')),
                Deleted::No => assert!(r.not_after > now, "{}", r.id),
            }
        }
        tx.commit().await.unwrap();

        let mut conn = store.reader().acquire().await.unwrap();
        let bounds = [
            999 * DAY,
            1000 * DAY,
            1000 * DAY + 1,
            1001 * DAY - 1,
            1002 * DAY + 7_000,
            1003 * DAY,
            now,
            1007 * DAY + 50_000,
            1010 * DAY,
            1011 * DAY + 1,
        ];
        for &from in &bounds {
            for &to in &bounds {
                let kept = super::live_between(&mut conn, "t", from, to).await.unwrap();
                let counted = super::expiring_between(&mut conn, "t", from, to.max(from))
                    .await
                    .unwrap();
                assert_eq!(kept, counted, "({from}, {to}]");
            }
        }
        let per_day = super::expiring_per_day(&mut conn, "t", 1000, 1010)
            .await
            .unwrap();
        for (day, n) in per_day {
            let counted = super::expiring_between(&mut conn, "t", day * DAY, (day + 1) * DAY)
                .await
                .unwrap();
            assert_eq!(n, counted, "day {day}");
        }
        // Issued per day and source: every row, deleted or revoked, counted once.
        let issued = super::issued_per_day(&mut conn, "t", 1000).await.unwrap();
        assert_eq!(issued.iter().map(|(_, _, n)| n).sum::<i64>(), 200);
        for (day, source, n) in issued {
            let want = rows
                .iter()
                .filter(|r| r.created_at / DAY == day && r.source.as_str() == source)
                .count() as i64;
            assert_eq!(n, want, "{day} {source}");
        }
    }
}
