//! Registration authority: the only module that decides whether a CA may change state or a
//! certificate may be issued. Front ends call it; it calls `ca` and `store`.

pub mod crl;
pub mod hierarchy;
pub mod issue;
