//! Group commit of issued certificates: the last step of the one issuance path.
//!
//! Every signed certificate becomes a [`Job`] sent to the recorder. A committer task takes
//! whatever jobs have queued up while the previous transaction ran and records them all
//! in ONE transaction: per issuing CA one conditional quota update for the whole group
//! (`quota_remaining >= n`), one multi-row INSERT for the certificates, one for their
//! audit events. Each caller gets its own answer only after that commit, so a certificate
//! never leaves the server unrecorded, and quota never goes below zero:
//! - a group that does not fit the CA's remaining quota is spent one job at a time, in
//!   arrival order, and the jobs left over get [`Error::QuotaExhausted`];
//! - any other failure rolls the transaction back and the jobs are retried one per
//!   transaction, so the error reaches only the job that caused it.
//!
//! On SQLite (one writer connection) this turns ~5 statements per certificate into ~5 per
//! batch; on PostgreSQL several committers run side by side (`COMMITTERS_POSTGRES`), and
//! CA rows are always updated in id order so concurrent batches cannot deadlock.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::error::{Error, Result};
use crate::store::{self, audit::AuditEvent, certificates::CertRow, Backend, Store};

/// Most jobs one transaction records.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for a committer before senders wait too (back-pressure).
const QUEUE: usize = 4096;
/// Concurrent committer tasks with PostgreSQL (SQLite has one writer, hence one).
const COMMITTERS_POSTGRES: usize = 4;

/// Something else that must change in the same transaction as the certificate's record.
#[derive(Debug, Clone)]
pub enum Followup {
    /// The ACME order becomes `valid` with this certificate.
    AcmeOrderValid { order_id: String },
}

/// One certificate to record.
pub struct Job {
    /// The intermediate whose quota pays for it.
    pub ca_id: String,
    /// Serial of the CA certificate the leaf was signed under: the CA must still hold it.
    pub ca_serial: String,
    /// The refusal's detail when that CA's quota is exhausted.
    pub exhausted: String,
    pub record: CertRow,
    pub audit: Option<AuditEvent>,
    pub followup: Option<Followup>,
}

struct Queued {
    job: Job,
    done: oneshot::Sender<Result<CertRow>>,
}

impl Queued {
    fn answer(self, outcome: Result<()>) {
        let _ = self.done.send(outcome.map(|()| self.job.record));
    }
}

/// Handle to the committer task(s); cheap to share.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Queued>,
}

impl Recorder {
    /// Starts the committer task(s) on a thread of their own, so that their many short
    /// waits for the database are not queued behind the signing work of the request
    /// runtime. They stop when every handle is dropped.
    pub fn start(store: Store) -> Result<Recorder> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let committers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => COMMITTERS_POSTGRES,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("starting the certificate recorder: {e}")))?;
        std::thread::Builder::new()
            .name("vellum-recorder".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let tasks: Vec<_> = (0..committers)
                        .map(|_| tokio::spawn(committer(store.clone(), rx.clone())))
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })
            .map_err(|e| Error::internal(format!("starting the certificate recorder: {e}")))?;
        Ok(Recorder { queue })
    }

    /// Records the job; returns its record once committed (or the refusal).
    pub async fn record(&self, job: Job) -> Result<CertRow> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Queued { job, done })
            .await
            .map_err(|_| Error::internal("the certificate recorder has stopped"))?;
        answer
            .await
            .map_err(|_| Error::internal("the certificate recorder dropped a request"))?
    }
}

async fn committer(store: Store, rx: Arc<Mutex<mpsc::Receiver<Queued>>>) {
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
        commit(&store, batch).await;
    }
}

/// Commits a batch and answers every job in it.
async fn commit(store: &Store, batch: Vec<Queued>) {
    let jobs: Vec<&Job> = batch.iter().map(|q| &q.job).collect();
    match record_batch(store, &jobs).await {
        Ok(outcomes) => {
            for (q, outcome) in batch.into_iter().zip(outcomes) {
                q.answer(outcome);
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(q) = batch.into_iter().next() {
                q.answer(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = batch.len(), "group commit failed; recording one by one");
            for q in batch {
                let outcome = match record_batch(store, &[&q.job]).await {
                    Ok(mut o) => o.pop().unwrap_or(Err(Error::internal("no outcome"))),
                    Err(e) => Err(e),
                };
                q.answer(outcome);
            }
        }
    }
}

/// One transaction for `jobs`. `Ok` holds each job's outcome (success or quota
/// exhausted); `Err` means nothing was committed.
async fn record_batch(store: &Store, jobs: &[&Job]) -> Result<Vec<Result<()>>> {
    let now = store::now();
    let mut by_ca: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        by_ca
            .entry((j.ca_id.as_str(), j.ca_serial.as_str()))
            .or_default()
            .push(i);
    }
    let mut refusals: Vec<Option<Error>> = jobs.iter().map(|_| None).collect();
    let mut tx = store.begin().await?;
    for ((ca_id, serial), idx) in &by_ca {
        if store::cas::spend(&mut tx, ca_id, serial, now, idx.len() as i64).await? {
            continue;
        }
        // Not enough for all of them (first come, first served), or the CA changed.
        for &i in idx {
            if !store::cas::spend(&mut tx, ca_id, serial, now, 1).await? {
                refusals[i] = Some(refusal(&mut tx, jobs[i], now).await?);
            }
        }
    }
    let accepted = || {
        jobs.iter()
            .zip(&refusals)
            .filter(|(_, r)| r.is_none())
            .map(|(j, _)| *j)
    };
    let rows: Vec<&CertRow> = accepted().map(|j| &j.record).collect();
    if !rows.is_empty() {
        store::certificates::insert_many(&mut tx, &rows).await?;
        let events: Vec<&AuditEvent> = accepted().filter_map(|j| j.audit.as_ref()).collect();
        store::audit::insert_many(&mut tx, &events).await?;
        for j in accepted() {
            match &j.followup {
                Some(Followup::AcmeOrderValid { order_id }) => {
                    store::acme::order_issued(&mut tx, order_id, &j.record.id).await?
                }
                None => {}
            }
        }
    }
    tx.commit().await?;
    Ok(refusals
        .into_iter()
        .map(|r| match r {
            None => Ok(()),
            Some(e) => Err(e),
        })
        .collect())
}

/// Why the quota of a job's CA could not be spent.
async fn refusal(tx: &mut store::Tx, job: &Job, now: i64) -> Result<Error> {
    let ca = store::cas::get_any_tenant(tx, &job.ca_id).await?;
    Ok(match ca {
        Some(ca)
            if ca.status == "enabled"
                && ca.serial.as_deref() == Some(job.ca_serial.as_str())
                && ca.service_until > now =>
        {
            Error::QuotaExhausted(job.exhausted.clone())
        }
        Some(ca) => Error::conflict(format!(
            "CA {} changed while the certificate was being issued (now {}{}); nothing was issued, try again",
            ca.id,
            ca.status,
            if ca.service_until <= now {
                ", out of service"
            } else {
                ""
            }
        )),
        None => Error::not_found(format!("CA {} no longer exists", job.ca_id)),
    })
}
