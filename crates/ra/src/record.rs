//! Group commit of issued certificates: the last step of the one issuance path.
//!
//! Every signed certificate becomes a [`Job`] sent to the recorder. A committer task takes
//! whatever jobs have queued up while the previous transaction ran and records them all
//! in ONE transaction: per issuing CA one conditional quota update for the whole group
//! (`quota_remaining >= n`), one multi-row INSERT for the certificates, one for their
//! audit events. Each caller gets its own answer only after that commit, so a certificate
//! never leaves the server unrecorded, and quota never goes below zero:
//! - a group that does not fit the CA's remaining quota is spent one job at a time, in
//!   arrival order, and the jobs left over are refused ([`Refusal::QuotaExhausted`], or
//!   [`Refusal::CaChanged`] / [`Refusal::CaGone`] when the CA is no longer what the
//!   certificate was signed under);
//! - any other failure rolls the transaction back and the jobs are retried one per
//!   transaction, so the error reaches only the job that caused it.
//!
//! - a job for an ACME order ([`Followup::AcmeOrderValid`]) is recorded only if the order
//!   is still `ready` when the transaction runs, and the order becomes `valid` in that
//!   transaction: of two finalizes of one order, one certificate is recorded and the other
//!   is refused with the status the order has ([`Refusal::OrderNotReady`]), so the caller
//!   needs not read it again; a job refused for quota leaves the order `ready`.
//!
//! A refusal is the batch's answer for that job, not a failure: the other jobs commit. The
//! recorder turns it into the domain error ([`Error::QuotaExhausted`],
//! [`Error::OrderNotReady`], [`Error::CaChanged`], [`Error::NotFound`]).
//!
//! The queueing, the committer thread and the one-by-one retry are `store::batch`'s. CA
//! rows are always updated in id order so concurrent batches (PostgreSQL runs several
//! committers, and several replicas) cannot deadlock.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::acme::state;
use store::batch::{Batcher, Outcome, Outcomes, Work};
use store::{self, audit::AuditEvent, certificates::CertRow, Store};
use vellum_core::error::{Error, Result};
use vellum_core::status::{CaStatus, CertificateSource, NotificationEvent, OrderStatus};
use vellum_core::time::Clock;

/// Something else that must change in the same transaction as the certificate's record.
#[derive(Debug, Clone)]
pub enum Followup {
    /// The ACME order, which must still be `ready`, becomes `valid` with this certificate.
    AcmeOrderValid {
        /// The order.
        order_id: String,
    },
    /// A renewal: the renewed certificate's synced copy in the managed list follows it
    /// (`crate::sync`). Only renewals of synced certificates carry it.
    SyncedRenewal {
        /// The synced copy.
        managed_id: String,
        /// What it becomes; filled in by the issuance once the renewal is signed.
        refresh: Option<Box<store::managed::SyncedRefresh>>,
    },
}

/// One certificate to record.
pub struct Job {
    /// The intermediate whose quota pays for it.
    pub ca_id: String,
    /// Serial of the CA certificate the leaf was signed under: the CA must still hold it.
    pub ca_serial: String,
    /// The certificate row to insert.
    pub record: CertRow,
    /// The audit event written with it.
    pub audit: Option<AuditEvent>,
    /// Another change of the same transaction.
    pub followup: Option<Followup>,
}

/// Handle to the certificate recorder; cheap to share.
#[derive(Debug, Clone)]
pub struct Recorder(Batcher<Records>);

impl Recorder {
    /// Starts the recorder's committer thread.
    pub fn start(store: Store, clock: Clock) -> Result<Recorder> {
        Ok(Recorder(Batcher::start(
            "vellum-recorder",
            store,
            Records::new(clock),
        )?))
    }

    /// Records the job; returns its record once committed, or the refusal as the domain
    /// error.
    pub async fn record(&self, job: Job) -> Result<CertRow> {
        match self.0.submit(job).await? {
            Ok(job) => Ok(job.record),
            Err(refusal) => Err(refusal.into()),
        }
    }
}

/// Why a job was not recorded (its condition did not hold when its batch ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The CA is as the certificate was signed under, but its quota is spent.
    QuotaExhausted {
        /// The intermediate.
        ca: String,
        /// Its common name.
        common_name: String,
        /// Its root, which can assign more.
        root: Option<String>,
    },
    /// The CA changed since the checks: revoked, reset, renewed or out of service.
    CaChanged {
        /// The CA.
        ca: String,
        /// Its status now.
        status: CaStatus,
        /// Whether its service period ended.
        out_of_service: bool,
    },
    /// The CA was removed.
    CaGone {
        /// The CA.
        ca: String,
    },
    /// The ACME order was not `ready` (another finalize claimed it, or it became invalid).
    OrderNotReady {
        /// The order.
        order: String,
        /// Its status in the transaction (`None`: it no longer exists).
        status: Option<OrderStatus>,
    },
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::QuotaExhausted {
                ca,
                common_name,
                root,
            } => Error::QuotaExhausted {
                detail: format!(
                    "intermediate CA {ca} ({common_name}) has no certificate quota left; \
                     assign quota to it from its root CA {}",
                    root.as_deref().unwrap_or("?")
                ),
                ca,
            },
            Refusal::CaChanged {
                ca,
                status,
                out_of_service,
            } => Error::CaChanged {
                detail: format!(
                    "CA {ca} changed while the certificate was being issued (now {status}{}); \
                     nothing was issued, try again",
                    if out_of_service {
                        ", out of service"
                    } else {
                        ""
                    }
                ),
                ca,
            },
            Refusal::CaGone { ca } => Error::not_found(format!("CA {ca} no longer exists")),
            Refusal::OrderNotReady {
                order,
                status: Some(status),
            } => Error::OrderNotReady { order, status },
            Refusal::OrderNotReady {
                order,
                status: None,
            } => Error::not_found(format!("ACME order {order} no longer exists")),
        }
    }
}

/// The certificate recorder's work; `clock` dates the records and the in-service check.
pub struct Records {
    clock: Clock,
}

impl Records {
    /// The recorder's work with `clock` (tests drive it directly).
    pub fn new(clock: Clock) -> Records {
        Records { clock }
    }
}

impl Work for Records {
    type Job = Job;
    type Refusal = Refusal;
    fn commit<'a>(
        &'a self,
        store: &'a Store,
        jobs: &'a [&'a Job],
    ) -> Pin<Box<dyn Future<Output = Outcomes<Refusal>> + Send + 'a>> {
        Box::pin(record_batch(store, jobs, self.clock.now()))
    }
}

/// One transaction for `jobs`. `Ok` holds each job's outcome (recorded or refused);
/// `Err` means nothing was committed.
async fn record_batch(store: &Store, jobs: &[&Job], now: i64) -> Outcomes<Refusal> {
    let mut refusals: Vec<Option<Refusal>> = jobs.iter().map(|_| None).collect();
    let mut tx = store.begin().await?;
    // ACME orders first: each must still be ready (one finalize wins). Claimed orders are
    // `processing` inside this transaction only.
    let claims: Vec<(usize, &str)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| match j.followup.as_ref()? {
            Followup::AcmeOrderValid { order_id } => Some((i, order_id.as_str())),
            Followup::SyncedRenewal { .. } => None,
        })
        .collect();
    let mut claimed = Vec::new();
    if !claims.is_empty() {
        let ids: Vec<&str> = claims.iter().map(|(_, id)| *id).collect();
        let mut ready =
            store::acme_sets::transition_orders(&mut tx, &ids, state::ORDER_CLAIM).await?;
        for &(i, id) in &claims {
            if ready.remove(id) {
                claimed.push((i, id));
            } else {
                let status = store::acme::order_by_id(&mut tx, id)
                    .await?
                    .map(|o| o.status);
                refusals[i] = Some(Refusal::OrderNotReady {
                    order: id.to_string(),
                    status,
                });
            }
        }
    }
    let mut by_ca: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if refusals[i].is_none() {
            by_ca
                .entry((j.ca_id.as_str(), j.ca_serial.as_str()))
                .or_default()
                .push(i);
        }
    }
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
    // Orders claimed for jobs the quota refused are ready again.
    let unclaimed: Vec<&str> = claimed
        .iter()
        .filter(|(i, _)| refusals[*i].is_some())
        .map(|(_, id)| *id)
        .collect();
    if !unclaimed.is_empty() {
        store::acme_sets::transition_orders(&mut tx, &unclaimed, state::ORDER_UNCLAIM).await?;
    }
    let rows: Vec<&CertRow> = accepted().map(|j| &j.record).collect();
    if !rows.is_empty() {
        store::certificates::insert_many(&mut tx, &rows).await?;
        let events: Vec<&AuditEvent> = accepted().filter_map(|j| j.audit.as_ref()).collect();
        store::audit::insert_many(&mut tx, &events).await?;
        // `certificate.issued` for channels that subscribe (one channel query per tenant).
        let issued: Vec<crate::notify::Event> = accepted()
            .map(|j| crate::notify::Event {
                tenant_id: j.record.tenant_id.clone(),
                kind: NotificationEvent::CertificateIssued,
                data: crate::notify::certificate_data(&j.record),
            })
            .collect();
        crate::notify::emit(&mut tx, &issued, now).await?;
        for j in accepted() {
            match &j.followup {
                Some(Followup::AcmeOrderValid { order_id }) => {
                    let to = state::ORDER_ISSUED.to;
                    store::acme::order_issued(&mut tx, order_id, &j.record.id, to).await?
                }
                Some(Followup::SyncedRenewal {
                    managed_id,
                    refresh: Some(r),
                }) => {
                    // A copy deleted meanwhile stays deleted.
                    store::managed::refresh_synced(&mut tx, managed_id, r).await?;
                }
                Some(Followup::SyncedRenewal { refresh: None, .. }) | None => {}
            }
        }
    }
    // `enrollment.refused`: an ACME or EST client found no quota; at most one event per
    // CA and hour (a client retrying in a loop does not flood the channels).
    for (j, r) in jobs.iter().zip(&refusals) {
        if let (
            Some(Refusal::QuotaExhausted {
                ca,
                common_name: ca_name,
                root,
            }),
            CertificateSource::Acme | CertificateSource::Est,
        ) = (r, j.record.source)
        {
            let key = format!("refused:{ca}:{}", now / 3600);
            let event_id = uuid::Uuid::now_v7().to_string();
            if store::notify::insert_reminder(&mut tx, &key, &j.record.tenant_id, &event_id, now)
                .await?
            {
                let mut data = match store::cas::get_any_tenant(&mut tx, ca).await? {
                    Some(row) => crate::notify::ca_data(&row),
                    None => serde_json::json!({}),
                };
                let door = j.record.source.as_str();
                let root = root.as_deref().unwrap_or("ROOT_ID");
                let sans: serde_json::Value =
                    serde_json::from_str(&j.record.sans_json).unwrap_or(serde_json::Value::Null);
                // Named by its CN, else by its first SAN (ACME orders often carry no CN).
                let named = if j.record.common_name.is_empty() {
                    sans.get(0)
                        .and_then(|s| s["value"].as_str())
                        .unwrap_or("a certificate without names")
                        .to_string()
                } else {
                    j.record.common_name.clone()
                };
                data["door"] = serde_json::json!(door);
                data["common_name"] = serde_json::json!(j.record.common_name);
                data["sans"] = sans;
                data["reason"] = serde_json::json!("quota_exhausted");
                data["message"] = serde_json::json!(format!(
                    "an {} enrollment for {named:?} was refused: the intermediate {ca_name:?} \
                     has no quota left; the client was told to retry later (further refusals \
                     at this CA within the hour are not announced again)",
                    door.to_uppercase(),
                ));
                data["assign"] = serde_json::json!({
                    "api": format!(
                        "POST /admin/v1/cas/{root}/quota/assign {{\"intermediate_id\": \"{ca}\", \"count\": N}}"
                    ),
                    "advice": "assign quota to the intermediate from its root (buy more for the root first if it has none left); the client's next attempt then succeeds",
                });
                crate::notify::emit_one(
                    &mut tx,
                    &j.record.tenant_id,
                    NotificationEvent::EnrollmentRefused,
                    data,
                    now,
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(refusals
        .into_iter()
        .map(|r| match r {
            None => Outcome::Committed,
            Some(why) => Outcome::Refused(why),
        })
        .collect())
}

/// Why the quota of a job's CA could not be spent.
async fn refusal(tx: &mut store::Tx, job: &Job, now: i64) -> Result<Refusal> {
    let ca = store::cas::get_any_tenant(tx, &job.ca_id).await?;
    Ok(match ca {
        Some(ca)
            if ca.status == CaStatus::Enabled
                && ca.serial.as_deref() == Some(job.ca_serial.as_str())
                && ca.service_until > now =>
        {
            Refusal::QuotaExhausted {
                ca: ca.id,
                common_name: ca.common_name,
                root: ca.parent_id,
            }
        }
        Some(ca) => Refusal::CaChanged {
            ca: ca.id,
            status: ca.status,
            out_of_service: ca.service_until <= now,
        },
        None => Refusal::CaGone {
            ca: job.ca_id.clone(),
        },
    })
}
