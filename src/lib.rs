//! Vellum: a self-hosted private certificate authority.
//!
//! Front ends (`admin`, `crl`, `acme`, `est`) speak protocols; `ra` decides; `ca`
//! signs; `store` speaks SQL. See `docs/ARCHITECTURE.md`.

#![forbid(unsafe_code)]

pub mod acme;
pub mod admin;
pub mod bootstrap;
pub mod ca;
pub mod cache;
pub mod cli;
pub mod config;
pub mod crl;
pub mod error;
pub mod est;
pub mod formats;
pub mod fsutil;
pub mod loadgen;
pub mod ra;
pub mod ratelimit;
pub mod server;
pub mod store;
pub mod va;

use ca::keys::MasterKey;
use ca::SignerCache;
use config::Config;
use store::Store;

/// Everything a request handler needs, shared behind an `Arc`.
#[derive(Debug)]
pub struct App {
    /// Configuration, with public URLs resolved to the bound addresses.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Seals and opens private keys at rest.
    pub master: MasterKey,
    /// CA keys opened in memory.
    pub signers: SignerCache,
    /// Serialises CRL signing per CA within this process.
    pub crl_locks: ra::crl::CrlLocks,
    /// Hands out ACME nonces and redeems each once.
    pub acme_nonces: acme::nonce::Nonces,
    /// Group-commits the ACME order flow's state changes.
    pub acme_writer: acme::writes::AcmeWriter,
    /// ACME validations running in this process (polls wait for them).
    pub acme_inflight: acme::inflight::InFlight,
    /// Short-lived read caches of the hot paths.
    pub caches: cache::Caches,
    /// Records issued certificates, many per transaction.
    pub recorder: ra::record::Recorder,
    /// The ACME validation authority.
    pub validator: va::Validator,
    /// What the bootstrap created.
    pub defaults: Defaults,
    /// Rate-limit counters of the public doors (per replica).
    pub limits: ratelimit::Limits,
}

/// Identifiers of what the first start created.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The `default` tenant.
    pub tenant_id: String,
    /// The bootstrap root CA ("Vellum Root CA").
    pub root_id: String,
    /// The bootstrap intermediate ("Vellum Issuing CA"): default for ACME and EST.
    pub intermediate_id: String,
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
