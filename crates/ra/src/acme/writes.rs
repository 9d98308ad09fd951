//! ACME state changes, group-committed.
//!
//! Every write of the order flow (a new order with its authorizations and challenges, a
//! challenge starting, a validation's outcome) is a job
//! for one [`AcmeWriter`]: concurrent requests' changes share one transaction
//! (`store::batch`), instead of each taking the single SQLite writer for a transaction of
//! its own. A caller is answered only after the commit. Every change but a new order is
//! conditional (a challenge starts only if pending; an outcome is recorded only while the
//! challenge is processing, so the first of two outcomes stands) and says whether it
//! applied. Which states each change moves rows
//! from and to is the state machine's ([`super::state`]). Finalize's order change is the
//! certificate recorder's (`ra::record`), in the transaction that records the certificate.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use super::state;
use store::acme::{Authz, Challenge, Order};
use store::batch::{Batcher, Outcome, Outcomes, Work};
use store::{self, Store};
use vellum_core::error::Result;

/// One change of ACME state.
#[derive(Debug)]
pub enum Change {
    /// An order, its new authorizations and their challenges, and the order's links to
    /// all its authorizations (new and reused), in identifier order.
    NewOrder {
        /// The new order.
        order: Box<Order>,
        /// Its new authorizations.
        authzs: Vec<Authz>,
        /// Their challenges.
        challenges: Vec<Challenge>,
        /// Every authorization of the order (new and reused), in identifier order.
        authz_ids: Vec<String>,
    },
    /// A challenge goes from pending to processing.
    StartChallenge {
        /// The challenge.
        id: String,
        /// When (Unix seconds): the takeover's lease runs from it (`super::takeover`).
        at: i64,
    },
    /// A validation succeeded: the challenge (if still processing) and its authorization
    /// become valid, and the orders waiting only for it become ready. Refused when the
    /// challenge was no longer processing (its outcome was recorded already).
    Validated {
        /// The challenge that succeeded.
        challenge_id: String,
        /// Its authorization.
        authz_id: String,
        /// When (Unix seconds).
        at: i64,
        /// Until when the authorization may be reused for new orders.
        reusable_until: i64,
    },
    /// A validation failed: the challenge (if still processing) and its authorization
    /// become invalid, and so do the orders that needed it. Refused when the challenge was
    /// no longer processing.
    Failed {
        /// The challenge that failed.
        challenge_id: String,
        /// Its authorization.
        authz_id: String,
        /// When (Unix seconds).
        at: i64,
        /// The challenge's error object (JSON).
        challenge_error: String,
        /// The error object of the orders that fail with it (JSON).
        order_error: String,
    },
}

/// Handle to the ACME writer; cheap to share.
#[derive(Debug, Clone)]
pub struct AcmeWriter(Batcher<Changes>);

impl AcmeWriter {
    /// Starts the writer's committer thread.
    pub fn start(store: Store) -> Result<AcmeWriter> {
        Ok(AcmeWriter(Batcher::start("vellum-acme", store, Changes)?))
    }

    /// Applies `change` once committed; false when its condition did not hold.
    pub async fn apply(&self, change: Change) -> Result<bool> {
        self.0.submit_if(change).await
    }
}

/// The writer's work; a change whose condition did not hold is refused.
#[derive(Debug)]
pub struct Changes;

impl Work for Changes {
    type Job = Change;
    type Refusal = ();
    fn commit<'a>(
        &'a self,
        store: &'a Store,
        jobs: &'a [&'a Change],
    ) -> Pin<Box<dyn Future<Output = Outcomes<()>> + Send + 'a>> {
        Box::pin(async move {
            let mut tx = store.begin().await?;
            let applied = apply(&mut tx, jobs).await?;
            tx.commit().await?;
            Ok(applied.into_iter().map(Outcome::held).collect())
        })
    }
}

/// (Job index, challenge id) and authorization ids of successful validations.
type Ids<'a> = (Vec<(usize, &'a str)>, Vec<&'a str>);

/// Applies a batch with a few statements per kind of change, not per change. The jobs of
/// one batch come from concurrent requests, so any order is a valid one; this one inserts
/// new orders first. Of two conditional changes of the same row in one batch (two
/// requests starting one challenge, say), the first one applies; of a success and a failure
/// of one challenge in one batch, the success. Returns, per job, whether it applied.
async fn apply(tx: &mut store::Tx, jobs: &[&Change]) -> Result<Vec<bool>> {
    use store::{acme as db, acme_sets as sets};
    let (mut orders, mut authzs, mut challenges, mut links) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Conditional changes: (job index, row id), per statement (challenges starting by
    // their time; in practice one group a batch).
    let mut starting: BTreeMap<i64, Vec<(usize, &str)>> = BTreeMap::new();
    // Successful validations by their times (in practice one group a batch).
    let mut validated: BTreeMap<(i64, i64), Ids> = BTreeMap::new();
    let mut failed = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match job {
            Change::NewOrder {
                order,
                authzs: a,
                challenges: c,
                authz_ids,
            } => {
                orders.push(order.as_ref());
                authzs.extend(a.iter());
                challenges.extend(c.iter());
                for (position, authz_id) in authz_ids.iter().enumerate() {
                    links.push((order.id.as_str(), authz_id.as_str(), position as i64));
                }
            }
            Change::StartChallenge { id, at } => starting.entry(*at).or_default().push((i, id)),
            Change::Validated {
                challenge_id,
                authz_id,
                at,
                reusable_until,
            } => {
                let group = validated.entry((*at, *reusable_until)).or_default();
                group.0.push((i, challenge_id));
                group.1.push(authz_id);
            }
            Change::Failed {
                challenge_id,
                authz_id,
                at,
                challenge_error,
                order_error,
            } => failed.push((i, challenge_id, authz_id, *at, challenge_error, order_error)),
        }
    }

    let mut applied = vec![true; jobs.len()];
    // Of the rows a conditional statement changed, the first job naming each gets it.
    let mut answer = |mut changed: HashSet<String>, rows: &[(usize, &str)]| {
        for (i, id) in rows {
            applied[*i] = changed.remove(*id);
        }
    };
    if !orders.is_empty() {
        db::insert_orders(tx, &orders).await?;
        db::insert_authzs(tx, &authzs).await?;
        db::insert_challenges(tx, &challenges).await?;
        db::link(tx, &links).await?;
    }
    for (at, rows) in &starting {
        let ids: Vec<&str> = rows.iter().map(|(_, id)| *id).collect();
        let started = sets::start_challenges(tx, &ids, state::CHALLENGE_START, *at).await?;
        answer(started, rows);
    }
    for ((at, until), (challenges, authz_ids)) in &validated {
        let ids: Vec<&str> = challenges.iter().map(|(_, id)| *id).collect();
        let done = sets::validated(tx, &ids, authz_ids, *at, *until, state::VALIDATED).await?;
        answer(done, challenges);
    }
    for (i, challenge_id, authz_id, at, challenge_error, order_error) in failed {
        let f = state::VALIDATION_FAILED;
        applied[i] = sets::failed(
            tx,
            challenge_id,
            authz_id,
            at,
            challenge_error,
            order_error,
            f,
        )
        .await?;
    }
    Ok(applied)
}
