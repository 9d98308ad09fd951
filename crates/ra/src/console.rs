//! Web console sessions: the rules (how long a session lives, how its CSRF token is
//! derived). A session acts as the API token it was opened with — same role, same tenant,
//! same audit actor — so the console can do exactly what that token can through the API,
//! and nothing else.
//!
//! - The cookie holds 256 random bits; the database keeps their SHA-256 only.
//! - A session ends after [`IDLE_SECS`] without a request, after [`MAX_SECS`] in any case,
//!   at sign-out, or when its token is revoked.
//! - CSRF: every state-changing request authenticated by the cookie must carry
//!   `X-CSRF-Token` = [`csrf_token`] of the session (synchronizer token, derived so no
//!   second secret is stored). The cookie is also `SameSite=Strict`: two defences, either
//!   of which stops a cross-site form post.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::tokens::token_hash;
use crate::Authority;
use store::console::{self, SessionRow};
use vellum_core::error::Result;

/// Idle lifetime: 30 minutes without a request ends the session.
pub const IDLE_SECS: i64 = 30 * 60;
/// Absolute lifetime: 12 hours after sign-in, whatever the activity.
pub const MAX_SECS: i64 = 12 * 3600;
/// Activity is written at most this often (a page load makes several requests).
const TOUCH_EVERY_SECS: i64 = 60;

/// Opens a session for the (already authenticated) token with hash `token_hash`; the
/// session secret for the cookie.
pub async fn open(ra: &Authority, api_token_hash: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = ra.now();
    let mut tx = ra.store.begin().await?;
    console::delete_expired(&mut tx, now).await?;
    console::insert(
        &mut tx,
        &SessionRow {
            id_hash: token_hash(&secret),
            token_hash: api_token_hash.to_string(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + IDLE_SECS,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// The live session of cookie value `secret` (None when unknown or expired), its idle
/// deadline pushed forward.
pub async fn resume(ra: &Authority, secret: &str) -> Result<Option<SessionRow>> {
    let now = ra.now();
    let id_hash = token_hash(secret);
    let mut conn = ra.store.reader().acquire().await?;
    let Some(mut s) = console::get(&mut conn, &id_hash, now).await? else {
        return Ok(None);
    };
    drop(conn);
    if now - s.last_seen_at >= TOUCH_EVERY_SECS {
        let expires = (now + IDLE_SECS).min(s.created_at + MAX_SECS);
        let mut tx = ra.store.begin().await?;
        console::touch(&mut tx, &id_hash, now, expires).await?;
        tx.commit().await?;
        s.last_seen_at = now;
        s.expires_at = expires;
    }
    Ok(Some(s))
}

/// Ends the session of cookie value `secret` (sign-out).
pub async fn close(ra: &Authority, secret: &str) -> Result<bool> {
    let mut tx = ra.store.begin().await?;
    let gone = console::delete(&mut tx, &token_hash(secret)).await?;
    tx.commit().await?;
    Ok(gone)
}

/// The CSRF token of the session whose cookie value is `secret`: base64url of
/// SHA-256("vellum-console-csrf" ‖ 0 ‖ secret). Only a page that can read the session's
/// own answers (same origin) learns it.
pub fn csrf_token(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vellum-console-csrf\0");
    h.update(secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(secret: &str, given: &str) -> bool {
    let want = csrf_token(secret);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn csrf_tokens_are_per_session_and_checked_exactly() {
        let a = super::csrf_token("secret-a");
        assert_ne!(a, super::csrf_token("secret-b"));
        assert!(super::csrf_ok("secret-a", &a));
        assert!(!super::csrf_ok("secret-b", &a));
        assert!(!super::csrf_ok("secret-a", &a[..a.len() - 1]));
        assert!(!super::csrf_ok("secret-a", ""));
    }
}
