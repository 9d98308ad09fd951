//! ACME state changes, group-committed.
//!
//! Every write of the order flow (a new order with its authorizations and challenges, a
//! challenge starting, a validation's outcome, an order moving between statuses) is a job
//! for one [`AcmeWriter`]: concurrent requests' changes share one transaction
//! (`store::batch`), instead of each taking the single SQLite writer for a transaction of
//! its own. A caller is answered only after the commit. Conditional changes (a challenge
//! starts only if pending; an order moves only from the expected status) say whether
//! they applied.

use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, Result};
use crate::store::acme::{Authz, Challenge, Order};
use crate::store::batch::{Batcher, Outcomes, Work};
use crate::store::{self, Store};

/// One change of ACME state.
#[derive(Debug)]
pub enum Change {
    /// An order, its new authorizations and their challenges, and the order's links to
    /// all its authorizations (new and reused), in identifier order.
    NewOrder {
        order: Box<Order>,
        authzs: Vec<Authz>,
        challenges: Vec<Challenge>,
        authz_ids: Vec<String>,
    },
    /// A challenge goes from pending to processing.
    StartChallenge { id: String },
    /// An order goes from `from` to `to`.
    Transition {
        order_id: String,
        from: &'static str,
        to: &'static str,
    },
    /// A validation succeeded: the challenge and its authorization become valid, and the
    /// orders waiting only for it become ready.
    Validated {
        challenge_id: String,
        authz_id: String,
        at: i64,
        reusable_until: i64,
    },
    /// A validation failed: the challenge and its authorization become invalid, and so do
    /// the orders that needed it.
    Failed {
        challenge_id: String,
        authz_id: String,
        at: i64,
        challenge_error: String,
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
        match self.0.submit(change).await {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The writer's work; a change whose condition did not hold is answered `Conflict`.
#[derive(Debug)]
pub struct Changes;

impl Work for Changes {
    type Job = Change;
    fn commit<'a>(
        &'a self,
        store: &'a Store,
        jobs: &'a [&'a Change],
    ) -> Pin<Box<dyn Future<Output = Outcomes> + Send + 'a>> {
        Box::pin(async move {
            let mut tx = store.begin().await?;
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs {
                let applied = apply(&mut tx, job).await?;
                outcomes.push(if applied {
                    Ok(())
                } else {
                    Err(Error::conflict("the change's condition did not hold"))
                });
            }
            tx.commit().await?;
            Ok(outcomes)
        })
    }
}

async fn apply(tx: &mut store::Tx, change: &Change) -> Result<bool> {
    use store::acme as db;
    match change {
        Change::NewOrder {
            order,
            authzs,
            challenges,
            authz_ids,
        } => {
            db::insert_order(tx, order).await?;
            db::insert_authzs(tx, authzs).await?;
            db::insert_challenges(tx, challenges).await?;
            db::link(tx, &order.id, authz_ids).await?;
            Ok(true)
        }
        Change::StartChallenge { id } => db::start_challenge(tx, id).await,
        Change::Transition { order_id, from, to } => {
            db::transition_order(tx, order_id, from, to).await
        }
        Change::Validated {
            challenge_id,
            authz_id,
            at,
            reusable_until,
        } => {
            db::finish_challenge(tx, challenge_id, true, *at, None).await?;
            db::validate_authz(tx, authz_id, *reusable_until).await?;
            db::ready_orders_of(tx, authz_id).await?;
            Ok(true)
        }
        Change::Failed {
            challenge_id,
            authz_id,
            at,
            challenge_error,
            order_error,
        } => {
            db::finish_challenge(tx, challenge_id, false, *at, Some(challenge_error)).await?;
            db::set_authz_status(tx, authz_id, "invalid").await?;
            for order in db::orders_of_authz(tx, authz_id).await? {
                db::order_failed(tx, &order, order_error).await?;
            }
            Ok(true)
        }
    }
}
