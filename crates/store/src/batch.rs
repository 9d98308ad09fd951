//! Group commit: many small writes from concurrent requests, one transaction.
//!
//! A [`Batcher`] owns a queue and committer task(s) on a thread of their own (so that their
//! many short waits for the database are not queued behind the CPU work of the request
//! runtime). A committer takes whatever jobs queued up while the previous transaction ran
//! and hands them all to [`Work::commit`], which writes them in ONE transaction and says,
//! job by job, what became of it: [`Outcome::Committed`], or [`Outcome::Refused`] with the
//! work's own reason when the job's condition did not hold (a replayed nonce, an order no
//! longer ready, a CA without quota). A refusal is an answer, not an error: the transaction
//! commits the other jobs. Each caller gets its answer only after that commit. When the
//! transaction fails as a whole (an error), the jobs are retried one per transaction, so
//! the error reaches only the job that caused it; unless the error says the database is
//! unavailable (down, or its disk full), which every job of the batch gets at once.
//!
//! On SQLite (one writer connection) this turns a few statements per request into a few
//! per batch; on PostgreSQL several committers run side by side.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Backend, Store};
use vellum_core::error::{Error, Result};

/// Most jobs one transaction takes.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for a committer before senders wait too (back-pressure).
const QUEUE: usize = 4096;
/// Concurrent committer tasks with PostgreSQL (SQLite has one writer, hence one).
const COMMITTERS_POSTGRES: usize = 4;

/// What became of one job of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    /// Written.
    Committed,
    /// Not written: its condition did not hold, for this reason.
    Refused(R),
}

impl Outcome<()> {
    /// Committed when `held` (the job's condition held), refused otherwise.
    pub fn held(held: bool) -> Outcome<()> {
        if held {
            Outcome::Committed
        } else {
            Outcome::Refused(())
        }
    }
}

/// The outcome of a batch: one per job, in order, or an error meaning nothing was
/// committed.
pub type Outcomes<R> = Result<Vec<Outcome<R>>>;

/// What a batcher writes.
pub trait Work: Send + Sync + 'static {
    /// One request's write.
    type Job: Send + Sync + 'static;
    /// Why a job's condition did not hold (`()` when there is only one reason).
    type Refusal: Send + 'static;
    /// Writes `jobs` in one transaction (see the module documentation).
    fn commit<'a>(
        &'a self,
        store: &'a Store,
        jobs: &'a [&'a Self::Job],
    ) -> Pin<Box<dyn Future<Output = Outcomes<Self::Refusal>> + Send + 'a>>;
}

/// A job's answer: the job back once committed, or its refusal.
pub type Answer<W> = std::result::Result<<W as Work>::Job, <W as Work>::Refusal>;

type Queued<W> = (<W as Work>::Job, oneshot::Sender<Result<Answer<W>>>);

/// Handle to a batcher; cheap to clone. Its committers stop when every handle is dropped.
pub struct Batcher<W: Work> {
    queue: mpsc::Sender<Queued<W>>,
}

impl<W: Work> Clone for Batcher<W> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<W: Work> std::fmt::Debug for Batcher<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

impl<W: Work> Batcher<W> {
    /// Starts the committers on a new thread named `name`.
    pub fn start(name: &str, store: Store, work: W) -> Result<Batcher<W>> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let work = Arc::new(work);
        let committers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => COMMITTERS_POSTGRES,
        };
        let failed = |e: std::io::Error| Error::internal(format!("starting {name}: {e}"));
        let name = name.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                runtime.block_on(async move {
                    let sizes = vellum_core::metrics::group_commit_sizes(&name);
                    let tasks: Vec<_> = (0..committers)
                        .map(|_| {
                            let (store, work, rx) = (store.clone(), work.clone(), rx.clone());
                            tokio::spawn(committer(store, work, rx, sizes.clone()))
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })
            .map_err(failed)?;
        Ok(Batcher { queue })
    }

    /// Queues a conditional `job`: true once committed, false when it was refused (its
    /// condition did not hold: a replayed nonce, a challenge no longer pending…).
    pub async fn submit_if(&self, job: W::Job) -> Result<bool> {
        Ok(self.submit(job).await?.is_ok())
    }

    /// Queues `job`; once its batch is committed, answers the job back or its refusal.
    /// `Err` is a failure: nothing of the job was written.
    pub async fn submit(&self, job: W::Job) -> Result<Answer<W>> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send((job, done))
            .await
            .map_err(|_| Error::internal("the database writer has stopped"))?;
        answer
            .await
            .map_err(|_| Error::internal("the database writer dropped a request"))?
    }
}

async fn committer<W: Work>(
    store: Store,
    work: Arc<W>,
    rx: Arc<Mutex<mpsc::Receiver<Queued<W>>>>,
    sizes: vellum_core::metrics::GroupCommitSizes,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
        }
        sizes.observe(batch.len());
        commit(&store, work.as_ref(), batch).await;
    }
}

/// Commits a batch and answers every job in it.
async fn commit<W: Work>(store: &Store, work: &W, batch: Vec<Queued<W>>) {
    let outcome = {
        let jobs: Vec<&W::Job> = batch.iter().map(|(j, _)| j).collect();
        work.commit(store, &jobs).await
    };
    match outcome {
        Ok(outcomes) => {
            for ((job, done), outcome) in batch.into_iter().zip(outcomes) {
                let _ = done.send(Ok(answer::<W>(job, outcome)));
            }
        }
        // The database is down (or its disk full): one job at a time would fail the same
        // way, each after the pool's acquire timeout. Every job gets the answer now.
        Err(Error::Unavailable {
            detail,
            retry_after,
        }) => {
            for (_, done) in batch {
                let _ = done.send(Err(Error::unavailable(detail.clone(), retry_after)));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some((_, done)) = batch.into_iter().next() {
                let _ = done.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = batch.len(), "group commit failed; committing one by one");
            for (job, done) in batch {
                let outcome = match work.commit(store, &[&job]).await {
                    Ok(mut o) => o.pop().ok_or_else(|| Error::internal("no outcome")),
                    Err(e) => Err(e),
                };
                let _ = done.send(outcome.map(|o| answer::<W>(job, o)));
            }
        }
    }
}

fn answer<W: Work>(job: W::Job, outcome: Outcome<W::Refusal>) -> Answer<W> {
    match outcome {
        Outcome::Committed => Ok(job),
        Outcome::Refused(why) => Err(why),
    }
}
