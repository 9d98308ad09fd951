//! Registration authority: the only crate that decides whether a CA may change state or a
//! certificate may be issued. Front ends call it; it calls `ca`, `va` and `store`.
//!
//! Every decision takes an [`Authority`]: the narrow handles it needs (the store, the
//! master key and the opened signers, the read caches, the group-commit writers, the rate
//! limits, the clock), not the whole server.

#![warn(missing_docs)]

pub mod acme;
pub mod backup;
pub mod bulk;
pub mod console;
pub mod crl;
pub mod csr;
pub mod csrs;
pub mod est;
pub mod hierarchy;
pub mod installation;
pub mod inventory;
pub mod issue;
pub mod managed;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod ocsp;
pub mod overview;
pub mod pending;
pub mod ratelimit;
pub mod record;
pub mod renew;
pub mod revoke;
pub mod rollover;
pub mod rotate;
pub mod share;
pub mod spec;
pub mod sync;
pub mod tokens;

use std::sync::Arc;

use ca::keys::MasterKey;
use ca::Signer;
use ca::SignerCache;
use store::Store;
use store::{self, cas::CaRow};
use vellum_core::config::Config;
use vellum_core::error::{Error, Result};
use vellum_core::time::Clock;

/// The registration authority's handles: what its decisions read and write.
#[derive(Debug)]
pub struct Authority {
    /// Configuration, with public URLs resolved to the bound addresses.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Seals and opens private keys at rest.
    pub master: MasterKey,
    /// CA keys opened in memory.
    pub signers: SignerCache,
    /// The PKCS#11 token holding the keys of `pkcs11` CAs, when `[pkcs11]` is configured
    /// (opened and logged in by [`Authority::new`]).
    pub hsm: Option<Arc<ca::pkcs11::Hsm>>,
    /// Serialises CRL signing per CA within this process.
    pub crl_locks: crl::CrlLocks,
    /// CRLs signed by the retired keys of renewed CAs.
    pub retired_crls: crl::RetiredCrls,
    /// The OCSP responder's responders and responses held ready.
    pub ocsp: ocsp::Ocsp,
    /// Group-commits the ACME order flow's state changes.
    pub acme_writer: acme::writes::AcmeWriter,
    /// Records issued certificates, many per transaction.
    pub recorder: record::Recorder,
    /// Rate-limit counters of the public doors (per replica).
    pub limits: ratelimit::Limits,
    /// The time the rules read (a fixed clock in tests).
    pub clock: Clock,
    /// Sends notifications (webhooks, e-mail) to the configured networks only.
    pub deliverer: va::deliver::Deliverer,
}

impl Authority {
    /// The handles over `store`, with the group-commit writers started on it.
    pub fn new(config: Config, store: Store, master: MasterKey, clock: Clock) -> Result<Authority> {
        let limits = ratelimit::Limits::new(config.rate_limits.max_keys);
        let n = &config.notifications;
        let extra_roots = match &n.extra_roots_file {
            Some(p) => std::fs::read(p).map_err(|e| {
                Error::config(format!(
                    "notifications.extra_roots_file {}: {e}",
                    p.display()
                ))
            })?,
            None => Vec::new(),
        };
        let deliverer = va::deliver::Deliverer::new(
            n.allowed_networks(),
            std::time::Duration::from_secs(n.timeout_secs),
            extra_roots,
        )
        .map_err(Error::config)?;
        let hsm = match &config.pkcs11 {
            Some(p) => Some(ca::pkcs11::Hsm::open(p)?),
            None => None,
        };
        Ok(Authority {
            deliverer,
            hsm,
            recorder: record::Recorder::start(store.clone(), clock.clone())?,
            acme_writer: acme::writes::AcmeWriter::start(store.clone())?,
            signers: SignerCache::default(),
            crl_locks: Default::default(),
            retired_crls: Default::default(),
            ocsp: Default::default(),
            limits,
            config,
            store,
            master,
            clock,
        })
    }

    /// Current time as Unix seconds, as the rules see it.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// A CA of the tenant as read at most [`store::cache::TTL`] ago (or since the last change
/// made by this process): for the issuance path, whose recorder re-checks at commit.
pub async fn cached_ca(ra: &Authority, tenant_id: &str, id: &str) -> Result<Arc<CaRow>> {
    ra.store
        .caches()
        .read_through(
            &ra.store.caches().cas,
            &format!("{tenant_id}/{id}"),
            || async {
                let mut conn = ra.store.reader().acquire().await?;
                store::cas::get(&mut conn, tenant_id, id).await
            },
        )
        .await?
        .ok_or_else(|| Error::not_found(format!("no CA with id {id} in this tenant")))
}

/// The signer of an enabled CA with its chain (the CA's certificate, then the certificate
/// of its root that issued it), opened once and cached. A cached intermediate's chain is
/// checked against its root's current serial (read through the 1-second cache), so a
/// renewed root's new certificate reaches the chain without a restart.
pub async fn signer_for(ra: &Authority, ca: &CaRow) -> Result<Arc<Signer>> {
    let parent = match &ca.parent_id {
        Some(pid) => cached_ca(ra, &ca.tenant_id, pid).await.ok(),
        None => None,
    };
    let tag = parent
        .as_ref()
        .and_then(|p| p.serial.clone())
        .unwrap_or_default();
    if let Some(s) = ra.signers.lookup(ca) {
        if s.chain_tag() == tag {
            return Ok(s);
        }
    }
    let mut issuers = Vec::new();
    if let (Some(parent), Some(der)) = (&parent, &ca.certificate_der) {
        let mut conn = ra.store.reader().acquire().await?;
        if let Some(p) = rollover::issuer_certificate(&mut conn, parent, der).await? {
            issuers.push(p);
        }
    }
    let signer = Signer::open(&ra.master, ra.hsm.as_ref(), ca)?.with_issuers_tagged(issuers, tag);
    Ok(ra.signers.insert(ca, signer))
}

#[cfg(test)]
mod tests;
