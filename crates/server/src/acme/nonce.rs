//! Anti-replay nonces (RFC 8555 §6.5).
//!
//! A nonce is `base64url(issued_at ‖ id ‖ HMAC)`, so checking its MAC and age needs no
//! lookup and handing one out costs no database write. Which nonces were already redeemed
//! is kept in one of two books ([`Nonces`]):
//!
//! - **PostgreSQL** (several replicas): the MAC key is derived from the master key, shared
//!   by every replica, `id` is random, and redeeming inserts the nonce into
//!   `acme_used_nonces` (primary key), so each is accepted once across all replicas. The
//!   inserts of concurrent requests share one transaction ([`Redeemer`], a `store::batch`
//!   group commit).
//! - **SQLite** (one process owns the file): the MAC key is derived afresh at every start,
//!   `id` is a counter, and a bitmap over the last [`WINDOW`] ids records which were
//!   redeemed; no database write at all. A nonce from before a restart fails the MAC, and
//!   one older than the window is refused too: clients get `badNonce` with a fresh nonce
//!   and retry, as RFC 8555 §6.5 expects.
//!
//! Nonces expire after [`NONCE_LIFETIME_SECS`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use std::sync::Mutex;

use super::problem::{AcmeError, AcmeResult};
use crate::App;
use store::batch::{Batcher, Outcome, Outcomes, Work};
use store::{self, Store};
use vellum_core::error::Result;

/// How long a nonce may be redeemed after it was handed out.
pub const NONCE_LIFETIME_SECS: i64 = 900;
const MAC_LEN: usize = 16;

fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&k, data);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
    out
}

/// A fresh nonce with the given 8-byte id.
fn issue_with(key: &[u8], now: i64, id: [u8; 8]) -> String {
    let mut buf = Vec::with_capacity(8 + 8 + MAC_LEN);
    buf.extend_from_slice(&now.to_be_bytes());
    buf.extend_from_slice(&id);
    let tag = mac(key, &buf);
    buf.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A fresh nonce with a random id (the shared book's kind).
pub fn issue(key: &[u8], now: i64) -> String {
    let mut random = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut random);
    issue_with(key, now, random)
}

/// Checks the MAC and age; returns when it was issued and its id.
pub fn check(key: &[u8], nonce: &str, now: i64) -> Result<(i64, u64), &'static str> {
    let raw = URL_SAFE_NO_PAD
        .decode(nonce)
        .map_err(|_| "is not base64url")?;
    if raw.len() != 16 + MAC_LEN {
        return Err("was not issued by this server");
    }
    let (body, tag) = raw.split_at(16);
    let expected = mac(key, body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], tag)) {
        return Err("was not issued by this server");
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&body[..8]);
    let issued = i64::from_be_bytes(ts);
    let mut id = [0u8; 8];
    id.copy_from_slice(&body[8..16]);
    if now > issued + NONCE_LIFETIME_SECS {
        return Err("has expired");
    }
    if issued > now + 60 {
        return Err("was not issued by this server");
    }
    Ok((issued, u64::from_be_bytes(id)))
}

/// Accepts a nonce once: MAC, age, then the book of redeemed nonces.
pub async fn redeem(app: &App, nonce: Option<&str>) -> AcmeResult<()> {
    let Some(nonce) = nonce else {
        return Err(AcmeError::bad_nonce(
            "the protected header has no nonce; get one from newNonce",
        ));
    };
    match app
        .acme_nonces
        .redeem(nonce, vellum_core::time::now())
        .await?
    {
        Redeemed::Fresh => Ok(()),
        Redeemed::Refused(why) => Err(AcmeError::bad_nonce(format!(
            "the nonce {why}; get a fresh one from newNonce"
        ))),
    }
}

/// Bits of the local book: the last 16 Mi nonces this process handed out (2 MiB).
pub const WINDOW: u64 = 1 << 24;

/// Hands out nonces and remembers which were redeemed (see the module documentation).
pub struct Nonces {
    key: zeroize::Zeroizing<[u8; 32]>,
    book: Book,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the MAC key.
        let book = match self.book {
            Book::Shared(_) => "shared",
            Book::Local(_) => "local",
        };
        f.debug_struct("Nonces")
            .field("book", &book)
            .finish_non_exhaustive()
    }
}

enum Book {
    /// `acme_used_nonces`, shared by the replicas.
    Shared(Redeemer),
    /// This process's counter and redeemed-bits window.
    Local(Mutex<Window>),
}

/// The ids this process handed out, and which of the last [`WINDOW`] were redeemed.
struct Window {
    /// The next id to hand out.
    next: u64,
    /// One bit per slot `id % size`; a slot is cleared when its id is handed out.
    bits: Vec<u64>,
    /// Ids remembered: a multiple of 64.
    size: u64,
}

impl Window {
    fn new(size: u64) -> Window {
        Window {
            next: 0,
            bits: vec![0; size.div_ceil(64) as usize],
            size: size.div_ceil(64) * 64,
        }
    }

    fn slot(&self, id: u64) -> (usize, u64) {
        let s = id % self.size;
        ((s / 64) as usize, 1 << (s % 64))
    }

    fn hand_out(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        let (w, b) = self.slot(id);
        if let Some(word) = self.bits.get_mut(w) {
            *word &= !b;
        }
        id
    }

    /// Marks `id` redeemed. An id older than the window is refused: its slot may already
    /// belong to a newer one.
    fn redeem(&mut self, id: u64) -> Redeemed {
        if id >= self.next {
            return Redeemed::Refused("was not issued by this server");
        }
        if self.next - id > self.size {
            return Redeemed::Refused("is too old");
        }
        let (w, b) = self.slot(id);
        match self.bits.get_mut(w) {
            Some(word) if *word & b == 0 => {
                *word |= b;
                Redeemed::Fresh
            }
            _ => Redeemed::Refused(REPLAYED),
        }
    }
}

/// What became of a redemption.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// First use: accepted.
    Fresh,
    /// Refused, with the reason (completes "the nonce …").
    Refused(&'static str),
}

impl Nonces {
    /// The shared book (PostgreSQL): `key` must be the same on every replica.
    pub fn shared(key: zeroize::Zeroizing<[u8; 32]>, store: Store) -> Result<Nonces> {
        Ok(Nonces {
            key,
            book: Book::Shared(Redeemer::start(store)?),
        })
    }

    /// The local book (SQLite): a MAC key of this process only, derived from `key`.
    pub fn local(key: &[u8]) -> Nonces {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        let mut own = zeroize::Zeroizing::new([0u8; 32]);
        own.copy_from_slice(aws_lc_rs::hmac::sign(&k, &salt).as_ref());
        Nonces {
            key: own,
            book: Book::Local(Mutex::new(Window::new(WINDOW))),
        }
    }

    /// A fresh nonce.
    pub fn issue(&self, now: i64) -> String {
        match &self.book {
            Book::Shared(_) => issue(self.key.as_ref(), now),
            Book::Local(window) => {
                // A poisoned lock only means another thread panicked while holding it;
                // the window itself is always consistent (two word operations).
                let id = match window.lock() {
                    Ok(mut w) => w.hand_out(),
                    Err(p) => p.into_inner().hand_out(),
                };
                issue_with(self.key.as_ref(), now, id.to_be_bytes())
            }
        }
    }

    /// Accepts `nonce` once.
    pub async fn redeem(&self, nonce: &str, now: i64) -> Result<Redeemed> {
        let (issued, id) = match check(self.key.as_ref(), nonce, now) {
            Ok(v) => v,
            Err(why) => return Ok(Redeemed::Refused(why)),
        };
        match &self.book {
            Book::Shared(r) => Ok(if r.redeem(nonce, issued + NONCE_LIFETIME_SECS).await? {
                Redeemed::Fresh
            } else {
                Redeemed::Refused(REPLAYED)
            }),
            Book::Local(window) => Ok(match window.lock() {
                Ok(mut w) => w.redeem(id),
                Err(p) => p.into_inner().redeem(id),
            }),
        }
    }
}

const REPLAYED: &str = "was already used; every request needs a fresh nonce";

/// Records redeemed nonces, many per transaction.
#[derive(Debug, Clone)]
pub struct Redeemer(Batcher<Redemptions>);

impl Redeemer {
    /// Starts the redeemer's committer thread.
    pub fn start(store: Store) -> Result<Redeemer> {
        Ok(Redeemer(Batcher::start(
            "vellum-nonces",
            store,
            Redemptions,
        )?))
    }

    /// Records `nonce` as used; false when it already was (a replay).
    pub async fn redeem(&self, nonce: &str, expires_at: i64) -> Result<bool> {
        self.0.submit_if((nonce.to_string(), expires_at)).await
    }
}

/// The nonce redeemer's work: `(nonce, expires_at)` per job; a replay is refused.
pub struct Redemptions;

impl Work for Redemptions {
    type Job = (String, i64);
    type Refusal = ();
    fn commit<'a>(
        &'a self,
        store: &'a Store,
        jobs: &'a [&'a (String, i64)],
    ) -> Pin<Box<dyn Future<Output = Outcomes<()>> + Send + 'a>> {
        Box::pin(async move {
            // The same nonce twice in one batch: the first one counts, the others replay.
            let mut seen = HashSet::new();
            let distinct: Vec<(&str, i64)> = jobs
                .iter()
                .filter(|(n, _)| seen.insert(n.as_str()))
                .map(|(n, e)| (n.as_str(), *e))
                .collect();
            let mut tx = store.begin().await?;
            let mut fresh = store::acme::redeem_nonces(&mut tx, &distinct).await?;
            tx.commit().await?;
            Ok(jobs
                .iter()
                .map(|(n, _)| Outcome::held(fresh.remove(n)))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_verify_expire_and_resist_forgery() {
        let key = [9u8; 32];
        let n = issue(&key, 1000);
        assert_eq!(check(&key, &n, 1000).map(|(t, _)| t), Ok(1000));
        assert_eq!(
            check(&key, &n, 1000 + NONCE_LIFETIME_SECS + 1),
            Err("has expired")
        );
        assert!(check(&[8u8; 32], &n, 1000).is_err(), "another key");
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[3] ^= 1;
        assert!(
            check(&key, &URL_SAFE_NO_PAD.encode(raw), 1000).is_err(),
            "tampered"
        );
        assert!(check(&key, "!!", 1000).is_err());
        assert_ne!(issue(&key, 1000), n, "random part");
    }

    #[test]
    fn the_local_window_accepts_each_id_once_and_forgets_old_ones() {
        let mut w = Window::new(128);
        let ids: Vec<u64> = (0..3).map(|_| w.hand_out()).collect();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(w.redeem(1), Redeemed::Fresh);
        assert_eq!(w.redeem(1), Redeemed::Refused(REPLAYED));
        assert_eq!(w.redeem(0), Redeemed::Fresh);
        assert_eq!(
            w.redeem(3),
            Redeemed::Refused("was not issued by this server")
        );
        // Hand out a full window more: id 130 reuses the slot of id 2 (unredeemed) and
        // id 129 that of id 1 (redeemed); the new ids are fresh, the old ones too old.
        while w.next < 131 {
            w.hand_out();
        }
        assert_eq!(w.redeem(2), Redeemed::Refused("is too old"));
        assert_eq!(w.redeem(1), Redeemed::Refused("is too old"));
        assert_eq!(w.redeem(129), Redeemed::Fresh);
        assert_eq!(w.redeem(130), Redeemed::Fresh);
        assert_eq!(w.redeem(130), Redeemed::Refused(REPLAYED));
        assert_eq!(
            w.redeem(3),
            Redeemed::Fresh,
            "oldest id still in the window"
        );
    }

    #[tokio::test]
    async fn local_nonces_are_single_use_and_die_with_the_process() {
        let master = [7u8; 32];
        let a = Nonces::local(&master);
        let n = a.issue(1000);
        assert_eq!(a.redeem(&n, 1000).await.unwrap(), Redeemed::Fresh);
        assert_eq!(
            a.redeem(&n, 1000).await.unwrap(),
            Redeemed::Refused(REPLAYED)
        );
        let m = a.issue(1000);
        assert_eq!(
            a.redeem(&m, 1000 + NONCE_LIFETIME_SECS + 1).await.unwrap(),
            Redeemed::Refused("has expired")
        );
        assert_eq!(format!("{a:?}"), "Nonces { book: \"local\", .. }", "no key");
        // A restarted process (same master key) does not accept the old process's nonces.
        let b = Nonces::local(&master);
        assert_eq!(
            b.redeem(&a.issue(1000), 1000).await.unwrap(),
            Redeemed::Refused("was not issued by this server")
        );
    }
}
