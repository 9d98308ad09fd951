//! Set-oriented ACME updates: one statement for many orders, authorizations or challenges,
//! as the ACME writer's group commits need (`acme::writes`). Conditional updates return
//! the ids they changed.

use std::collections::HashSet;

use sqlx::Row;

use super::{placeholder_list, Conn};
use crate::error::Result;

/// Most ids in one `IN (…)` list.
const IDS_PER_STATEMENT: usize = 500;

/// pending → processing; returns the challenges that were pending.
pub async fn start_challenges(conn: &mut Conn, ids: &[&str]) -> Result<HashSet<String>> {
    let mut started = HashSet::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE acme_challenges SET status = 'processing' \
             WHERE status = 'pending' AND id IN ({}) RETURNING id",
            placeholder_list(conn, 1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            started.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(started)
}

/// Orders `from` → `to`; returns the orders that were in `from`.
pub async fn transition_orders(
    conn: &mut Conn,
    ids: &[&str],
    from: &str,
    to: &str,
) -> Result<HashSet<String>> {
    let mut moved = HashSet::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE acme_orders SET status = {} WHERE status = {} AND id IN ({}) RETURNING id",
            placeholder_list(conn, 1, 1),
            placeholder_list(conn, 2, 1),
            placeholder_list(conn, 3, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(to).bind(from);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            moved.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(moved)
}

/// Successful validations: the challenges become valid at `at`, their (pending)
/// authorizations valid until `reusable_until`, and every pending order whose
/// authorizations are now all valid becomes ready.
pub async fn validated(
    conn: &mut Conn,
    challenge_ids: &[&str],
    authz_ids: &[&str],
    at: i64,
    reusable_until: i64,
) -> Result<()> {
    for chunk in challenge_ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE acme_challenges SET status = 'valid', validated_at = {}, error_json = NULL \
             WHERE id IN ({})",
            placeholder_list(conn, 1, 1),
            placeholder_list(conn, 2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(at);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in authz_ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE acme_authzs SET status = 'valid', expires_at = {} \
             WHERE status = 'pending' AND id IN ({})",
            placeholder_list(conn, 1, 1),
            placeholder_list(conn, 2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(reusable_until);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
        let sql = format!(
            "UPDATE acme_orders SET status = 'ready' WHERE status = 'pending' \
             AND id IN (SELECT order_id FROM acme_order_authzs WHERE authz_id IN ({})) \
             AND NOT EXISTS (SELECT 1 FROM acme_order_authzs l JOIN acme_authzs a ON a.id = l.authz_id \
                             WHERE l.order_id = acme_orders.id AND a.status <> 'valid')",
            placeholder_list(conn, 1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A failed validation: the challenge becomes invalid with `challenge_error`; if its
/// authorization was still pending it becomes invalid too, and so does every order that
/// needed it (with `order_error`). An authorization another challenge already validated
/// stays valid (RFC 8555 §7.1.6). Returns whether the authorization became invalid.
pub async fn failed(
    conn: &mut Conn,
    challenge_id: &str,
    authz_id: &str,
    at: i64,
    challenge_error: &str,
    order_error: &str,
) -> Result<bool> {
    super::acme::finish_challenge(conn, challenge_id, false, at, Some(challenge_error)).await?;
    let res = sqlx::query(
        "UPDATE acme_authzs SET status = 'invalid' WHERE id = $1 AND status = 'pending'",
    )
    .bind(authz_id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE acme_orders SET status = 'invalid', error_json = $1 \
         WHERE status IN ('pending', 'ready', 'processing') \
         AND id IN (SELECT order_id FROM acme_order_authzs WHERE authz_id = $2)",
    )
    .bind(order_error)
    .bind(authz_id)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}
