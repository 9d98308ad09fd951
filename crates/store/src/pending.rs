//! Pending items (`GET /pending`): the counts and first rows of what asks for an action in
//! a tenant's inventory, and the per-token snoozes of their reminders.
//!
//! Every count over certificates is a range of an index on `(tenant_id, not_after)`
//! (migration 0012: `certificates_pending`, `managed_pending`, `managed_notifications_off`,
//! partial indexes that hold only rows that can be pending), so its cost follows the
//! number of rows in the window, never the size of the tenant's inventory. The statements
//! repeat the indexes' conditions word for word: both engines use a partial index only
//! when the query implies its predicate.

use super::{query, Conn};
use crate::cas::CaRow;
use vellum_core::error::Result;
use vellum_core::status::PendingKind;

/// A certificate (private-CA or managed) as a pending item lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCert {
    /// Its id.
    pub id: String,
    /// Subject commonName (may be empty for a managed certificate).
    pub common_name: String,
    /// The inventory name (optional for private-CA certificates, the label of a managed
    /// one).
    pub name: Option<String>,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// Which rows of a collection a window selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `not_after` strictly after this (Unix seconds).
    pub after: i64,
    /// `not_after` at or before this (Unix seconds).
    pub until: i64,
    /// List the latest `not_after` first (e.g. the most recently expired).
    pub latest_first: bool,
}

const CERT_WHERE: &str = "FROM certificates WHERE tenant_id = $1 \
     AND revoked_at IS NULL AND deleted_at IS NULL AND not_after > $2 AND not_after <= $3";
const MANAGED_WHERE: &str = "FROM managed_certificates WHERE tenant_id = $1 \
     AND deleted_at IS NULL AND not_after > $2 AND not_after <= $3";
const MANAGED_OFF_WHERE: &str = "FROM managed_certificates WHERE tenant_id = $1 \
     AND notifications = 0 AND deleted_at IS NULL";

async fn count(conn: &mut Conn, sql: &str, tenant_id: &str, w: Option<Window>) -> Result<i64> {
    let sql = format!("SELECT COUNT(*) AS n {sql}");
    let mut q = query(&sql).bind(tenant_id);
    if let Some(w) = w {
        q = q.bind(w.after).bind(w.until);
    }
    Ok(q.fetch_one(conn).await?.try_get("n")?)
}

async fn first(
    conn: &mut Conn,
    columns: &str,
    sql: &str,
    tenant_id: &str,
    w: Option<Window>,
    limit: i64,
) -> Result<Vec<PendingCert>> {
    let order = if w.is_some_and(|w| w.latest_first) {
        "DESC"
    } else {
        "ASC"
    };
    let sql = format!(
        "SELECT {columns} {sql} ORDER BY not_after {order}, id {order} LIMIT {}",
        limit.clamp(0, 1000)
    );
    let mut q = query(&sql).bind(tenant_id);
    if let Some(w) = w {
        q = q.bind(w.after).bind(w.until);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(PendingCert {
                id: r.try_get("id")?,
                common_name: r.try_get("common_name")?,
                name: r.try_get("name")?,
                not_after: r.try_get("not_after")?,
            })
        })
        .collect()
}

const CERT_COLUMNS: &str = "id, common_name, name, not_after";

/// The first `limit` of those [`count_certificates`] counts, by `not_after` (and id).
pub async fn certificates(
    conn: &mut Conn,
    tenant_id: &str,
    w: Window,
    limit: i64,
) -> Result<Vec<PendingCert>> {
    first(conn, CERT_COLUMNS, CERT_WHERE, tenant_id, Some(w), limit).await
}

/// How many of the tenant's managed certificates (not deleted) end inside `w`.
pub async fn count_managed(conn: &mut Conn, tenant_id: &str, w: Window) -> Result<i64> {
    count(conn, MANAGED_WHERE, tenant_id, Some(w)).await
}

/// The first `limit` of those [`count_managed`] counts, by `not_after` (and id).
pub async fn managed(
    conn: &mut Conn,
    tenant_id: &str,
    w: Window,
    limit: i64,
) -> Result<Vec<PendingCert>> {
    first(conn, CERT_COLUMNS, MANAGED_WHERE, tenant_id, Some(w), limit).await
}

/// How many of the tenant's managed certificates (not deleted) have their reminders off.
pub async fn count_notifications_off(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
    count(conn, MANAGED_OFF_WHERE, tenant_id, None).await
}

/// The first `limit` of those [`count_notifications_off`] counts, soonest expiry first.
pub async fn notifications_off(
    conn: &mut Conn,
    tenant_id: &str,
    limit: i64,
) -> Result<Vec<PendingCert>> {
    first(
        conn,
        CERT_COLUMNS,
        MANAGED_OFF_WHERE,
        tenant_id,
        None,
        limit,
    )
    .await
}

/// The tenant's CAs that can be pending items (pending or enabled), oldest first. A
/// tenant holds a handful of CAs: the rules sort them into kinds.
pub async fn cas(conn: &mut Conn, tenant_id: &str) -> Result<Vec<CaRow>> {
    let rows = query(
        "SELECT * FROM cas WHERE tenant_id = $1 AND status IN ('pending', 'enabled') ORDER BY id",
    )
    .bind(tenant_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(crate::cas::row_to_ca).collect()
}

/// The kinds `token_id` has snoozed in `tenant_id` until after `now`, with the time each
/// snooze ends (Unix seconds), in kind order.
pub async fn snoozes(
    conn: &mut Conn,
    token_id: &str,
    tenant_id: &str,
    now: i64,
) -> Result<Vec<(PendingKind, i64)>> {
    let rows = query(
        "SELECT kind, until FROM pending_snoozes \
         WHERE token_id = $1 AND tenant_id = $2 AND until > $3",
    )
    .bind(token_id)
    .bind(tenant_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok((
                super::decode_spelled(r, "pending_snoozes", "kind")?,
                r.try_get("until")?,
            ))
        })
        .collect::<Result<Vec<(PendingKind, i64)>>>()?;
    out.sort();
    Ok(out)
}

/// Snoozes `kinds` for `token_id` in `tenant_id` until `until` (Unix seconds), replacing
/// any earlier snooze of those kinds.
pub async fn snooze(
    conn: &mut Conn,
    token_id: &str,
    tenant_id: &str,
    kinds: &[PendingKind],
    until: i64,
) -> Result<()> {
    for kind in kinds {
        query(
            "INSERT INTO pending_snoozes (token_id, tenant_id, kind, until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_id, tenant_id, kind) DO UPDATE SET until = excluded.until",
        )
        .bind(token_id)
        .bind(tenant_id)
        .bind(kind.as_str())
        .bind(until)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Lifts the snoozes of `kinds` for `token_id` in `tenant_id` (expired ones go too).
pub async fn unsnooze(
    conn: &mut Conn,
    token_id: &str,
    tenant_id: &str,
    kinds: &[PendingKind],
) -> Result<()> {
    for kind in kinds {
        query("DELETE FROM pending_snoozes WHERE token_id = $1 AND tenant_id = $2 AND kind = $3")
            .bind(token_id)
            .bind(tenant_id)
            .bind(kind.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
