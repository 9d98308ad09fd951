//! Vellum's front ends: the admin API (`admin`), ACME (`acme`), EST (`est`) and the
//! public distribution points (`crl`), each a thin layer of handlers that parse, call
//! `ra`, and map the answer (and the domain error) to its protocol; the listeners and
//! the edge (`listener`, `layers`, `tls`, `serve`); and the first start (`bootstrap`).
//!
//! Arrows point down: this crate → `ra` → `ca` / `va` / `store` → `vellum-core`.
//! See `docs/ARCHITECTURE.md`.

pub mod acme;
pub mod admin;
pub mod bootstrap;
pub mod console;
pub mod crl;
pub mod est;
pub mod layers;
pub mod listener;
pub mod maintenance;
pub mod metrics;
pub mod notify_job;
pub mod problem;
pub mod search_job;
pub mod serve;
pub mod tls;

pub use serve::{start, start_with_clock, Running};

use ra::Authority;

/// Everything a request handler needs, shared behind an `Arc`: the registration
/// authority's handles (reached through `Deref`: `app.store`, `app.config`…) and what only
/// the front ends hold.
#[derive(Debug)]
pub struct App {
    /// The registration authority: every rule, and the handles its decisions use.
    pub ra: Authority,
    /// Hands out ACME nonces and redeems each once.
    pub acme_nonces: acme::nonce::Nonces,
    /// ACME validations running in this process (polls wait for them).
    pub acme_inflight: ra::acme::inflight::InFlight,
    /// The ACME validation authority.
    pub validator: va::Validator,
    /// What the bootstrap created.
    pub defaults: Defaults,
}

impl App {
    /// The intermediate behind `/.well-known/est/{operation}` (no label or id): the
    /// configured one, else the bootstrap intermediate.
    pub fn est_default_ca(&self) -> String {
        self.config
            .est
            .default_ca
            .clone()
            .unwrap_or_else(|| self.defaults.intermediate_id.clone())
    }
}

impl std::ops::Deref for App {
    type Target = Authority;
    fn deref(&self) -> &Authority {
        &self.ra
    }
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
