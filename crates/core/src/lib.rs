//! Vellum's core: what every layer shares and nothing below it defines.
//!
//! - [`error`]: the domain error (no HTTP: each front end maps it to its own dialect);
//! - [`config`]: the configuration file and its `VELLUM_*` overrides;
//! - [`status`]: the states and kinds kept as text (CA, certificate, ACME account, order,
//!   authorization, challenge; CA, certificate, challenge and identifier types, ACME
//!   profiles, token roles), as enums with one spelling each;
//! - [`time`]: Unix seconds, RFC 3339 rendering, and the clock the rules read;
//! - [`fsutil`]: owner-only directories and files;
//! - [`metrics`]: the process's Prometheus registry (counters and histograms every layer
//!   records into) and its text exposition.
//!
//! Arrows point down: front ends (`vellum-server`) → `ra` → `ca` / `va` / `store` → core.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod fsutil;
pub mod metrics;
pub mod status;
pub mod time;

pub use error::{Error, Result};
