//! Set-oriented ACME updates: one statement for many orders, authorizations or challenges,
//! as the ACME writer's group commits need (`acme::writes`). Conditional updates return
//! the ids they changed, and record the same change of those rows for the commit (the
//! in-memory copy of recent rows, `store::recent`).

use std::collections::HashSet;

use super::{placeholder_list, query, Conn, Tx};
use vellum_core::error::Result;

/// Most ids in one `IN (…)` list.
const IDS_PER_STATEMENT: usize = 500;

/// A value bound before the id list.
enum Lead<'a> {
    Int(i64),
    Text(&'a str),
}

/// Runs one statement per chunk of `ids`: `sql(leads, list)` gets the placeholders of the
/// `lead` values and of the chunk's ids. Returns the ids the statements return (`RETURNING
/// id`; none without it).
async fn per_chunk(
    conn: &mut Conn,
    ids: &[&str],
    lead: &[Lead<'_>],
    sql: impl Fn(&[String], &str) -> String,
) -> Result<HashSet<String>> {
    let leads: Vec<String> = (1..=lead.len())
        .map(|i| placeholder_list(conn, i, 1))
        .collect();
    let mut returned = HashSet::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let text = sql(&leads, &placeholder_list(conn, lead.len() + 1, chunk.len()));
        let mut q = query(&text);
        for v in lead {
            q = match v {
                Lead::Int(i) => q.bind(*i),
                Lead::Text(t) => q.bind(*t),
            };
        }
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            returned.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(returned)
}

/// pending → processing; returns the challenges that were pending.
pub async fn start_challenges(tx: &mut Tx, ids: &[&str]) -> Result<HashSet<String>> {
    let started = per_chunk(tx, ids, &[], |_, list| {
        format!(
            "UPDATE acme_challenges SET status = 'processing' \
             WHERE status = 'pending' AND id IN ({list}) RETURNING id"
        )
    })
    .await?;
    let changed = started.clone();
    tx.on_commit(move |r| r.update_challenges(&changed, |c| c.status = "processing".into()));
    Ok(started)
}

/// Orders `from` → `to`; returns the orders that were in `from`.
pub async fn transition_orders(
    tx: &mut Tx,
    ids: &[&str],
    from: &str,
    to: &str,
) -> Result<HashSet<String>> {
    let moved = per_chunk(tx, ids, &[Lead::Text(to), Lead::Text(from)], |p, list| {
        format!(
            "UPDATE acme_orders SET status = {} WHERE status = {} AND id IN ({list}) RETURNING id",
            p[0], p[1]
        )
    })
    .await?;
    let (changed, to) = (moved.clone(), to.to_string());
    tx.on_commit(move |r| r.update_orders(&changed, |o| o.status = to.clone()));
    Ok(moved)
}

/// Successful validations: the challenges become valid at `at`, their (pending)
/// authorizations valid until `reusable_until`, and every pending order whose
/// authorizations are now all valid becomes ready.
pub async fn validated(
    tx: &mut Tx,
    challenge_ids: &[&str],
    authz_ids: &[&str],
    at: i64,
    reusable_until: i64,
) -> Result<()> {
    per_chunk(tx, challenge_ids, &[Lead::Int(at)], |p, list| {
        format!(
            "UPDATE acme_challenges SET status = 'valid', validated_at = {}, error_json = NULL \
             WHERE id IN ({list})",
            p[0]
        )
    })
    .await?;
    let authzs = per_chunk(tx, authz_ids, &[Lead::Int(reusable_until)], |p, list| {
        format!(
            "UPDATE acme_authzs SET status = 'valid', expires_at = {} \
             WHERE status = 'pending' AND id IN ({list}) RETURNING id",
            p[0]
        )
    })
    .await?;
    let orders = per_chunk(tx, authz_ids, &[], |_, list| {
        format!(
            "UPDATE acme_orders SET status = 'ready' WHERE status = 'pending' \
             AND id IN (SELECT order_id FROM acme_order_authzs WHERE authz_id IN ({list})) \
             AND NOT EXISTS (SELECT 1 FROM acme_order_authzs l JOIN acme_authzs a ON a.id = l.authz_id \
                             WHERE l.order_id = acme_orders.id AND a.status <> 'valid') RETURNING id"
        )
    })
    .await?;
    let challenges: Vec<String> = challenge_ids.iter().map(|c| c.to_string()).collect();
    tx.on_commit(move |r| {
        r.update_challenges(&challenges, |c| {
            c.status = "valid".into();
            c.validated_at = Some(at);
            c.error_json = None;
        });
        r.update_authzs(&authzs, |a| {
            a.status = "valid".into();
            a.expires_at = reusable_until;
        });
        r.update_orders(&orders, |o| o.status = "ready".into());
    });
    Ok(())
}

/// A failed validation: the challenge becomes invalid with `challenge_error`; if its
/// authorization was still pending it becomes invalid too, and so does every order that
/// needed it (with `order_error`). An authorization another challenge already validated
/// stays valid (RFC 8555 §7.1.6). Returns whether the authorization became invalid.
pub async fn failed(
    tx: &mut Tx,
    challenge_id: &str,
    authz_id: &str,
    at: i64,
    challenge_error: &str,
    order_error: &str,
) -> Result<bool> {
    super::acme::finish_challenge(tx, challenge_id, false, at, Some(challenge_error)).await?;
    let res =
        query("UPDATE acme_authzs SET status = 'invalid' WHERE id = $1 AND status = 'pending'")
            .bind(authz_id)
            .execute(tx)
            .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    let id = authz_id.to_string();
    tx.on_commit(move |r| r.update_authzs([&id], |a| a.status = "invalid".into()));
    super::acme::fail_orders_of_authz(tx, authz_id, order_error).await?;
    Ok(true)
}
