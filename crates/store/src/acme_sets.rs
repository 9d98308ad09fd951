//! Set-oriented ACME updates: one statement for many orders, authorizations or challenges,
//! as the ACME writer's group commits need (`acme::writes`). Conditional updates return
//! the ids they changed, and record the same change of those rows for the commit (the
//! in-memory copy of recent rows, `store::recent`).

use std::collections::HashSet;

use super::{placeholder_list, query, Conn, Tx};
use vellum_core::error::Result;
use vellum_core::status::{AuthzStatus, ChallengeStatus, OrderStatus, Transition};

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

/// Challenges `t.from` → `t.to` (pending → processing); returns those that were in
/// `t.from`.
pub async fn transition_challenges(
    tx: &mut Tx,
    ids: &[&str],
    t: Transition<ChallengeStatus>,
) -> Result<HashSet<String>> {
    let lead = [Lead::Text(t.to.as_str()), Lead::Text(t.from.as_str())];
    let moved = per_chunk(tx, ids, &lead, |p, list| {
        format!(
            "UPDATE acme_challenges SET status = {} WHERE status = {} AND id IN ({list}) RETURNING id",
            p[0], p[1]
        )
    })
    .await?;
    let changed = moved.clone();
    tx.on_commit(move |r| r.update_challenges(&changed, |c| c.status = t.to));
    Ok(moved)
}

/// Orders `t.from` → `t.to`; returns the orders that were in `t.from`.
pub async fn transition_orders(
    tx: &mut Tx,
    ids: &[&str],
    t: Transition<OrderStatus>,
) -> Result<HashSet<String>> {
    let lead = [Lead::Text(t.to.as_str()), Lead::Text(t.from.as_str())];
    let moved = per_chunk(tx, ids, &lead, |p, list| {
        format!(
            "UPDATE acme_orders SET status = {} WHERE status = {} AND id IN ({list}) RETURNING id",
            p[0], p[1]
        )
    })
    .await?;
    let changed = moved.clone();
    tx.on_commit(move |r| r.update_orders(&changed, |o| o.status = t.to));
    Ok(moved)
}

/// What a successful validation changes (the states are `ra::acme::state`'s decision).
#[derive(Debug, Clone, Copy)]
pub struct Validation {
    /// The challenges' new status.
    pub challenge: ChallengeStatus,
    /// Their authorizations, if still in `from`.
    pub authz: Transition<AuthzStatus>,
    /// Orders in `from` whose authorizations are now all in `authz.to`.
    pub order: Transition<OrderStatus>,
}

/// Successful validations: the challenges become `v.challenge` at `at`, their
/// authorizations (if in `v.authz.from`) `v.authz.to` until `reusable_until`, and every
/// order in `v.order.from` whose authorizations are now all `v.authz.to` becomes
/// `v.order.to`.
pub async fn validated(
    tx: &mut Tx,
    challenge_ids: &[&str],
    authz_ids: &[&str],
    at: i64,
    reusable_until: i64,
    v: Validation,
) -> Result<()> {
    let lead = [Lead::Text(v.challenge.as_str()), Lead::Int(at)];
    per_chunk(tx, challenge_ids, &lead, |p, list| {
        format!(
            "UPDATE acme_challenges SET status = {}, validated_at = {}, error_json = NULL \
             WHERE id IN ({list})",
            p[0], p[1]
        )
    })
    .await?;
    let lead = [
        Lead::Text(v.authz.to.as_str()),
        Lead::Int(reusable_until),
        Lead::Text(v.authz.from.as_str()),
    ];
    let authzs = per_chunk(tx, authz_ids, &lead, |p, list| {
        format!(
            "UPDATE acme_authzs SET status = {}, expires_at = {} \
             WHERE status = {} AND id IN ({list}) RETURNING id",
            p[0], p[1], p[2]
        )
    })
    .await?;
    let lead = [
        Lead::Text(v.order.to.as_str()),
        Lead::Text(v.order.from.as_str()),
        Lead::Text(v.authz.to.as_str()),
    ];
    let orders = per_chunk(tx, authz_ids, &lead, |p, list| {
        format!(
            "UPDATE acme_orders SET status = {} WHERE status = {} \
             AND NOT EXISTS (SELECT 1 FROM acme_order_authzs l JOIN acme_authzs a ON a.id = l.authz_id \
                             WHERE l.order_id = acme_orders.id AND a.status <> {}) \
             AND id IN (SELECT order_id FROM acme_order_authzs WHERE authz_id IN ({list})) RETURNING id",
            p[0], p[1], p[2]
        )
    })
    .await?;
    let challenges: Vec<String> = challenge_ids.iter().map(|c| c.to_string()).collect();
    tx.on_commit(move |r| {
        r.update_challenges(&challenges, |c| {
            c.status = v.challenge;
            c.validated_at = Some(at);
            c.error_json = None;
        });
        r.update_authzs(&authzs, |a| {
            a.status = v.authz.to;
            a.expires_at = reusable_until;
        });
        r.update_orders(&orders, |o| o.status = v.order.to);
    });
    Ok(())
}

/// What a failed validation changes (the states are `ra::acme::state`'s decision).
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// The challenge's new status.
    pub challenge: ChallengeStatus,
    /// Its authorization, if still in `from`.
    pub authz: Transition<AuthzStatus>,
    /// The orders needing that authorization that are in one of these (unfinished)…
    pub orders_from: &'static [OrderStatus],
    /// …become this.
    pub orders_to: OrderStatus,
}

/// A failed validation: the challenge becomes `f.challenge` with `challenge_error`; if its
/// authorization was in `f.authz.from` it becomes `f.authz.to`, and so does every order
/// that needed it (`f.orders_from` → `f.orders_to`, with `order_error`). An authorization
/// another challenge already validated stays valid (RFC 8555 §7.1.6). Returns whether the
/// authorization changed.
pub async fn failed(
    tx: &mut Tx,
    challenge_id: &str,
    authz_id: &str,
    at: i64,
    challenge_error: &str,
    order_error: &str,
    f: Failure,
) -> Result<bool> {
    super::acme::finish_challenge(tx, challenge_id, f.challenge, at, Some(challenge_error)).await?;
    let res = query("UPDATE acme_authzs SET status = $1 WHERE id = $2 AND status = $3")
        .bind(f.authz.to.as_str())
        .bind(authz_id)
        .bind(f.authz.from.as_str())
        .execute(tx)
        .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    let id = authz_id.to_string();
    tx.on_commit(move |r| r.update_authzs([&id], |a| a.status = f.authz.to));
    super::acme::fail_orders_of_authz(tx, authz_id, order_error, f.orders_from, f.orders_to)
        .await?;
    Ok(true)
}
