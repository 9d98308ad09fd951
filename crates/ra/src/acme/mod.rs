//! The ACME order flow's state below the front end: the state machine that names every
//! transition ([`state`]), the group-committed writer of its state changes ([`writes`])
//! and the validations running in this process ([`inflight`]).

pub mod inflight;
pub mod state;
pub mod writes;
