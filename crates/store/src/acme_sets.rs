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

/// Challenges start their validation: `t.from` → `t.to` (pending → processing), with
/// `processing_since = since` (Unix seconds; the takeover's lease runs from it,
/// [`claim_stale_challenges`]). Returns those that were in `t.from`.
pub async fn start_challenges(
    tx: &mut Tx,
    ids: &[&str],
    t: Transition<ChallengeStatus>,
    since: i64,
) -> Result<HashSet<String>> {
    let lead = [
        Lead::Text(t.to.as_str()),
        Lead::Int(since),
        Lead::Text(t.from.as_str()),
    ];
    let moved = per_chunk(tx, ids, &lead, |p, list| {
        format!(
            "UPDATE acme_challenges SET status = {}, processing_since = {} \
             WHERE status = {} AND id IN ({list}) RETURNING id",
            p[0], p[1], p[2]
        )
    })
    .await?;
    // `processing_since` is a lease column, read only by the sweep's statement (never
    // through the in-memory copy, which holds what clients are shown): the status is the
    // copy's part of this change.
    let changed = moved.clone();
    tx.on_commit(move |r| r.update_challenges(&changed, |c| c.status = t.to));
    Ok(moved)
}

/// The takeover's claim (`ra::acme::takeover`): of the challenges `processing` since
/// before `stale_before` whose authorization expires after `now`, at most `limit` (the
/// longest waiting first) get `processing_since = now`; returns their ids.
///
/// One conditional UPDATE, so of two replicas sweeping at once exactly one claims each
/// row: the outer `WHERE` repeats the staleness test on the row itself, and PostgreSQL
/// (READ COMMITTED) re-evaluates it on the row's newest version when it had to wait for
/// another sweep's lock on it: a row that sweep claimed now has `processing_since = now`
/// and is skipped. SQLite has one writer. `status = 'processing'` is written literally:
/// the partial index `acme_challenges_processing` (migration 0026) has that predicate,
/// and neither planner matches a bound value against it. The challenge rows keep their
/// status, so the in-memory copy of recent rows has nothing to record.
pub async fn claim_stale_challenges(
    tx: &mut Tx,
    now: i64,
    stale_before: i64,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = query(
        "UPDATE acme_challenges SET processing_since = $1 \
         WHERE status = 'processing' AND processing_since < $2 AND id IN ( \
             SELECT c.id FROM acme_challenges c JOIN acme_authzs a ON a.id = c.authz_id \
             WHERE c.status = 'processing' AND c.processing_since < $2 AND a.expires_at > $1 \
             ORDER BY c.processing_since LIMIT $3) \
         RETURNING id",
    )
    .bind(now)
    .bind(stale_before)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
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
    /// The challenges, if still in `from` (a result recorded late, after another
    /// replica's, changes nothing).
    pub challenge: Transition<ChallengeStatus>,
    /// Their authorizations, if still in `from`.
    pub authz: Transition<AuthzStatus>,
    /// Orders in `from` whose authorizations are now all in `authz.to`.
    pub order: Transition<OrderStatus>,
}

/// Successful validations: the challenges still in `v.challenge.from` become
/// `v.challenge.to` at `at`; for those only, their authorizations (`authz_ids[i]` is
/// `challenge_ids[i]`'s; if in `v.authz.from`) become `v.authz.to` until
/// `reusable_until`, and every order in `v.order.from` whose authorizations are now all
/// `v.authz.to` becomes `v.order.to`. Returns the challenges that changed; a challenge
/// no longer in `v.challenge.from` (its outcome was recorded already, by this replica or
/// another that took its validation over) changes nothing, nor do its authorization and
/// orders.
pub async fn validated(
    tx: &mut Tx,
    challenge_ids: &[&str],
    authz_ids: &[&str],
    at: i64,
    reusable_until: i64,
    v: Validation,
) -> Result<HashSet<String>> {
    let lead = [
        Lead::Text(v.challenge.to.as_str()),
        Lead::Int(at),
        Lead::Text(v.challenge.from.as_str()),
    ];
    let changed = per_chunk(tx, challenge_ids, &lead, |p, list| {
        format!(
            "UPDATE acme_challenges SET status = {}, validated_at = {}, error_json = NULL \
             WHERE status = {} AND id IN ({list}) RETURNING id",
            p[0], p[1], p[2]
        )
    })
    .await?;
    let authz_ids: Vec<&str> = challenge_ids
        .iter()
        .zip(authz_ids)
        .filter(|(c, _)| changed.contains(**c))
        .map(|(_, a)| *a)
        .collect();
    let lead = [
        Lead::Text(v.authz.to.as_str()),
        Lead::Int(reusable_until),
        Lead::Text(v.authz.from.as_str()),
    ];
    let authzs = per_chunk(tx, &authz_ids, &lead, |p, list| {
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
    let orders = per_chunk(tx, &authz_ids, &lead, |p, list| {
        format!(
            "UPDATE acme_orders SET status = {} WHERE status = {} \
             AND NOT EXISTS (SELECT 1 FROM acme_order_authzs l JOIN acme_authzs a ON a.id = l.authz_id \
                             WHERE l.order_id = acme_orders.id AND a.status <> {}) \
             AND id IN (SELECT order_id FROM acme_order_authzs WHERE authz_id IN ({list})) RETURNING id",
            p[0], p[1], p[2]
        )
    })
    .await?;
    let challenges = changed.clone();
    tx.on_commit(move |r| {
        r.update_challenges(&challenges, |c| {
            c.status = v.challenge.to;
            c.validated_at = Some(at);
            c.error_json = None;
        });
        r.update_authzs(&authzs, |a| {
            a.status = v.authz.to;
            a.expires_at = reusable_until;
        });
        r.update_orders(&orders, |o| o.status = v.order.to);
    });
    Ok(changed)
}

/// What a failed validation changes (the states are `ra::acme::state`'s decision).
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// The challenge, if still in `from` (a result recorded late changes nothing).
    pub challenge: Transition<ChallengeStatus>,
    /// Its authorization, if still in `from`.
    pub authz: Transition<AuthzStatus>,
    /// The orders needing that authorization that are in one of these (unfinished)…
    pub orders_from: &'static [OrderStatus],
    /// …become this.
    pub orders_to: OrderStatus,
}

/// A failed validation: the challenge, if still in `f.challenge.from`, becomes
/// `f.challenge.to` with `challenge_error`; then if its authorization was in
/// `f.authz.from` it becomes `f.authz.to`, and so does every order that needed it
/// (`f.orders_from` → `f.orders_to`, with `order_error`). An authorization another
/// challenge already validated stays valid (RFC 8555 §7.1.6). Returns whether the
/// challenge changed: a challenge whose outcome was recorded already (by this replica or
/// another that took its validation over) changes nothing, nor does its authorization.
pub async fn failed(
    tx: &mut Tx,
    challenge_id: &str,
    authz_id: &str,
    at: i64,
    challenge_error: &str,
    order_error: &str,
    f: Failure,
) -> Result<bool> {
    if !super::acme::finish_challenge(tx, challenge_id, f.challenge, at, Some(challenge_error))
        .await?
    {
        return Ok(false);
    }
    let res = query("UPDATE acme_authzs SET status = $1 WHERE id = $2 AND status = $3")
        .bind(f.authz.to.as_str())
        .bind(authz_id)
        .bind(f.authz.from.as_str())
        .execute(tx)
        .await?;
    if res.rows_affected() == 0 {
        return Ok(true);
    }
    let id = authz_id.to_string();
    tx.on_commit(move |r| r.update_authzs([&id], |a| a.status = f.authz.to));
    super::acme::fail_orders_of_authz(tx, authz_id, order_error, f.orders_from, f.orders_to)
        .await?;
    Ok(true)
}
