//! API token secrets: how they are made and how they are stored.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new API token secret: `vlm_` + 32 random bytes, base64url.
pub fn new_token_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "vlm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// How token secrets are stored: SHA-256, hex. Tokens carry 256 bits of entropy, so a
/// fast hash is enough (a slow one like argon2 would only slow every request down).
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
