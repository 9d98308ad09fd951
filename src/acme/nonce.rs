//! Anti-replay nonces (RFC 8555 §6.5).
//!
//! A nonce is `base64url(issued_at ‖ random ‖ HMAC)` under a key derived from the master
//! key, so any replica can check any replica's nonce without a lookup; handing one out
//! costs no database write. Redeeming one inserts it into `acme_used_nonces` (primary
//! key), so each is accepted once across all replicas; the inserts of concurrent requests
//! share one transaction ([`Redeemer`], a `store::batch` group commit). They expire after
//! [`NONCE_LIFETIME_SECS`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::problem::{AcmeError, AcmeResult};
use crate::error::{Error, Result};
use crate::store::batch::{Batcher, Outcomes, Work};
use crate::store::{self, Store};
use crate::App;

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

/// A fresh nonce.
pub fn issue(key: &[u8], now: i64) -> String {
    let mut buf = Vec::with_capacity(8 + 8 + MAC_LEN);
    buf.extend_from_slice(&now.to_be_bytes());
    let mut random = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut random);
    buf.extend_from_slice(&random);
    let tag = mac(key, &buf);
    buf.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Checks the MAC and age; returns when it was issued.
pub fn check(key: &[u8], nonce: &str, now: i64) -> Result<i64, &'static str> {
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
    if now > issued + NONCE_LIFETIME_SECS {
        return Err("has expired");
    }
    if issued > now + 60 {
        return Err("was not issued by this server");
    }
    Ok(issued)
}

/// Accepts a nonce once: MAC, age, then a unique insert shared by every replica.
pub async fn redeem(app: &App, nonce: Option<&str>) -> AcmeResult<()> {
    let Some(nonce) = nonce else {
        return Err(AcmeError::bad_nonce(
            "the protected header has no nonce; get one from newNonce",
        ));
    };
    let now = store::now();
    let issued = check(app.acme_nonce_key.as_ref(), nonce, now).map_err(|why| {
        AcmeError::bad_nonce(format!("the nonce {why}; get a fresh one from newNonce"))
    })?;
    if app
        .acme_nonces
        .redeem(nonce, issued + NONCE_LIFETIME_SECS)
        .await?
    {
        Ok(())
    } else {
        Err(AcmeError::bad_nonce(
            "the nonce was already used; every request needs a fresh nonce",
        ))
    }
}

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
        match self.0.submit((nonce.to_string(), expires_at)).await {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The nonce redeemer's work: `(nonce, expires_at)` per job; a replay is refused with
/// `Error::Conflict`.
pub struct Redemptions;

impl Work for Redemptions {
    type Job = (String, i64);
    fn commit<'a>(
        &'a self,
        store: &'a Store,
        jobs: &'a [&'a (String, i64)],
    ) -> Pin<Box<dyn Future<Output = Outcomes> + Send + 'a>> {
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
                .map(|(n, _)| {
                    if fresh.remove(n) {
                        Ok(())
                    } else {
                        Err(Error::conflict("nonce already used"))
                    }
                })
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
        assert_eq!(check(&key, &n, 1000), Ok(1000));
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
}
