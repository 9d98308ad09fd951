//! Who is enrolling: HTTP Basic (EST client accounts, argon2id passwords) or a TLS client
//! certificate this installation issued.
//!
//! Argon2 verification is deliberately slow (tens of milliseconds). Successful
//! verifications are therefore remembered for [`CACHE_TTL`] under
//! SHA-256(process secret ‖ CA ‖ user ‖ password), together with the PHC string they were
//! checked against: the account row is read at most a second before (`crate::cache`), so
//! deleting an account takes effect at once on the replica that deleted it and within a
//! second on the others. The price: for
//! up to a minute, a memory dump of the process holds a (salted, unreadable without the
//! process secret) digest of recently used passwords that is fast to test guesses against.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::EstError;
use crate::error::Error;
use crate::store::{self, certificates::CertRow, est::Client};
use crate::App;

/// How long a successful password verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most remembered verifications (expired ones are dropped first when full).
const CACHE_MAX: usize = 10_000;

/// Hashes a new password (argon2id, default parameters, random salt) as a PHC string.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(Error::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

/// Verified passwords, remembered briefly (see the module documentation).
pub struct PasswordCache {
    secret: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Argon2 verifications running at once (each takes ~19 MiB and a core for tens of
    /// milliseconds): one per core, so a burst of logins (or of wrong passwords) queues
    /// instead of exhausting memory.
    running: tokio::sync::Semaphore,
}

impl Default for PasswordCache {
    fn default() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordCache {
            secret,
            entries: Mutex::new(HashMap::new()),
            running: tokio::sync::Semaphore::new(cores.clamp(1, 8)),
        }
    }
}

impl std::fmt::Debug for PasswordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordCache")
    }
}

impl PasswordCache {
    fn key(&self, ca_id: &str, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        for part in [ca_id, username, password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when this password was verified against `phc` less than [`CACHE_TTL`] ago.
    fn hit(&self, key: &[u8; 32], phc: &str) -> bool {
        matches!(self.lock().get(key), Some((p, at)) if p == phc && at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32], phc: &str) {
        let mut map = self.lock();
        if map.len() >= CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, (phc.to_string(), Instant::now()));
    }

    /// Checks `password` against the account's PHC string (argon2 on a blocking thread,
    /// unless remembered).
    pub async fn verify(&self, client: &Client, password: &str) -> Result<bool, Error> {
        let key = self.key(&client.ca_id, &client.username, password);
        if self.hit(&key, &client.password_hash) {
            return Ok(true);
        }
        let _permit = self.running.acquire().await.map_err(Error::internal)?;
        // Another request may have verified the same password while this one waited.
        if self.hit(&key, &client.password_hash) {
            return Ok(true);
        }
        let phc = client.password_hash.clone();
        let pw = zeroize::Zeroizing::new(password.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(Error::internal)?;
        if ok {
            self.remember(key, &client.password_hash);
        }
        Ok(ok)
    }
}

/// Who is enrolling.
#[derive(Debug, Clone)]
pub enum Identity {
    /// An EST client account (HTTP Basic).
    Basic {
        /// Its user name.
        username: String,
        /// Glob patterns every requested name must match (empty: any).
        name_patterns: Vec<String>,
    },
    /// The holder of a certificate issued here (TLS client certificate).
    Cert {
        /// The presented certificate's record.
        cert: Box<CertRow>,
    },
}

impl Identity {
    /// The requester recorded with issued certificates and in audit events:
    /// `est:basic:<username>` or `est:cert:<serial>`.
    pub fn requester(&self) -> String {
        match self {
            Identity::Basic { username, .. } => format!("est:basic:{username}"),
            Identity::Cert { cert } => format!("est:cert:{}", cert.serial),
        }
    }
}

/// User name and password from `Authorization: Basic …`; `None` without such a header.
pub fn basic_credentials(
    headers: &axum::http::HeaderMap,
) -> Result<Option<(String, zeroize::Zeroizing<String>)>, EstError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        EstError::unauthorized(
            "the Authorization header is not \"Basic <base64 of user:password>\"",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(EstError::unauthorized(format!(
            "the Authorization scheme {scheme:?} is not accepted here; use HTTP Basic or a TLS client certificate"
        )));
    }
    let raw = zeroize::Zeroizing::new(STANDARD.decode(rest.trim()).map_err(|_| malformed())?);
    let text = std::str::from_utf8(&raw).map_err(|_| malformed())?;
    let (user, pass) = text.split_once(':').ok_or_else(malformed)?;
    Ok(Some((
        user.to_string(),
        zeroize::Zeroizing::new(pass.to_string()),
    )))
}

/// Checks a Basic password against the CA's EST client account (`None`: no such user).
pub async fn check_basic(
    cache: &PasswordCache,
    ca_id: &str,
    client: Option<&Client>,
    password: &str,
) -> Result<Identity, EstError> {
    let wrong = || {
        EstError::unauthorized(format!(
            "wrong user name or password for the EST service of CA {ca_id}"
        ))
    };
    let Some(client) = client else {
        return Err(wrong());
    };
    if !cache.verify(client, password).await? {
        return Err(wrong());
    }
    Ok(Identity::Basic {
        username: client.username.clone(),
        name_patterns: client.name_patterns.clone(),
    })
}

/// Checks a TLS client certificate against the database: issued here to `tenant_id` (by
/// `issuer`, when given), by an enabled CA, not revoked, not expired.
pub async fn check_cert(
    app: &App,
    tenant_id: &str,
    issuer: Option<&str>,
    der: &[u8],
) -> Result<Identity, EstError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| EstError::unauthorized("the TLS client certificate does not parse"))?;
    let serial = crate::ca::serial_hex(parsed.raw_serial());
    let found = {
        let mut conn = app.store.reader().acquire().await?;
        store::est::certificate_by_der(&mut conn, tenant_id, &serial, der).await?
    };
    let Some((cert, ca_status)) = found else {
        return Err(EstError::unauthorized(format!(
            "the TLS client certificate (serial {serial}, issuer {}) was not issued by this installation to the CA's tenant",
            parsed.issuer()
        )));
    };
    let ca_id = cert.ca_id.clone().unwrap_or_default();
    if let Some(want) = issuer {
        if ca_id != want {
            return Err(EstError::forbidden(format!(
                "the TLS client certificate (serial {serial}) was issued by CA {ca_id}, not by CA {want}; re-enroll with the CA that issued it"
            )));
        }
    }
    if let Some(at) = cert.revoked_at {
        return Err(EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) was revoked at {}",
            crate::admin::json::rfc3339(at)
        )));
    }
    let now = store::now();
    if cert.not_after <= now {
        return Err(EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) expired at {}",
            crate::admin::json::rfc3339(cert.not_after)
        )));
    }
    if ca_status != "enabled" {
        return Err(EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) was issued by CA {ca_id}, which is {ca_status}"
        )));
    }
    Ok(Identity::Cert {
        cert: Box::new(cert),
    })
}

/// Glob match, `*` standing for any run of characters, ASCII case-insensitive.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.devices.example.com", "a.devices.example.com"));
        assert!(glob_match(
            "*.devices.example.com",
            "A.B.Devices.example.com"
        ));
        assert!(!glob_match("*.devices.example.com", "devices.example.com"));
        assert!(!glob_match(
            "*.devices.example.com",
            "a.devices.example.com.evil"
        ));
        assert!(glob_match("*@example.com", "ops@example.com"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("10.0.*", "10.0.3.4"));
    }

    #[tokio::test]
    async fn passwords_hash_verify_and_are_remembered() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let client = Client {
            ca_id: "ca".into(),
            username: "dev".into(),
            tenant_id: "t".into(),
            password_hash: phc.clone(),
            name_patterns: vec![],
            created_at: 0,
            created_by: None,
        };
        let cache = PasswordCache::default();
        assert!(!cache.verify(&client, "wrong").await.unwrap());
        assert!(cache.verify(&client, "correct horse").await.unwrap());
        let key = cache.key("ca", "dev", "correct horse");
        assert!(cache.hit(&key, &phc));
        // A changed password (new PHC string) is not served from the cache.
        assert!(!cache.hit(&key, "$argon2id$other"));
    }
}
