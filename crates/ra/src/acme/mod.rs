//! The ACME order flow's state below the front end: the state machine that names every
//! transition ([`state`]), the group-committed writer of its state changes ([`writes`]),
//! the validations running in this process ([`inflight`]) and the takeover of those a
//! dead replica left `processing` ([`takeover`]).

pub mod inflight;
pub mod state;
pub mod takeover;
pub mod writes;
