//! The integration tests, as one test binary (one link for all of them): a real server on
//! ephemeral ports per test, spoken to over real HTTPS, every storage test against SQLite
//! and PostgreSQL (see `common`). One module per feature.
//!
//! `tests/hostile.rs` stays a binary of its own: it installs a process-wide panic hook to
//! catch server panics, which other tests' failures in the same process would trip.

#[macro_use]
mod common;

mod access;
mod acme;
mod acme_takeover;
mod backup;
mod bulk;
mod ca_admin;
mod ca_renewal;
mod caches;
mod certificates;
mod console;
mod crl;
mod csrs;
mod delta_crl;
mod edge;
mod est;
mod hierarchy;
mod installation;
mod inventory;
mod inventory_lifecycle;
mod managed;
mod metrics;
mod notifications;
mod ocsp;
mod outage;
mod pending;
mod pkcs11;
mod quota;
mod rare_filters;
mod ratelimit;
mod server;
mod sync_share;
mod upload;
