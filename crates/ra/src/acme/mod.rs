//! The ACME order flow's state below the front end: the group-committed writer of its
//! state changes and the validations running in this process.

pub mod inflight;
pub mod writes;
