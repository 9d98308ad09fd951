//! Who is enrolling: HTTP Basic (EST client accounts, argon2id passwords) or a TLS client
//! certificate this installation issued.
//!
//! Argon2 verification is deliberately slow (tens of milliseconds). Successful
//! verifications are therefore remembered for [`CACHE_TTL`] under
//! SHA-256(process secret ‖ CA ‖ user ‖ password), together with the PHC string they were
//! checked against: the account row is read at most a second before (`store::cache`), so
//! deleting an account takes effect at once on the replica that deleted it and within a
//! second on the others. The price: for
//! up to a minute, a memory dump of the process holds a (salted, unreadable without the
//! process secret) digest of recently used passwords that is fast to test guesses against.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::EstError;
use crate::listener::ClientCert;
use crate::App;
use ra::est::argon2_memory;
use ra::ratelimit;
use store::{self, certificates::CertRow, est::Client};
use vellum_core::error::Error;

/// How long a successful password verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most remembered verifications (expired ones are dropped first when full).
const CACHE_MAX: usize = 10_000;

/// Verified passwords, remembered briefly (see the module documentation), and the pool
/// of threads that verifies the others.
pub struct PasswordCache {
    secret: [u8; 32],
    entries: std::sync::Arc<Mutex<Entries>>,
    pool: Argon2Pool,
}

/// Verified passwords: cache key → (the PHC string it matched, when).
type Entries = HashMap<[u8; 32], (String, Instant)>;

/// True when `key` was verified against `phc` less than [`CACHE_TTL`] ago.
fn entry_fresh(entries: &Mutex<Entries>, key: &[u8; 32], phc: &str) -> bool {
    let map = entries.lock().unwrap_or_else(|p| p.into_inner());
    matches!(map.get(key), Some((p, at)) if p == phc && at.elapsed() < CACHE_TTL)
}

impl Default for PasswordCache {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordCache::new(cores.clamp(1, 4), 64)
    }
}

impl std::fmt::Debug for PasswordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordCache")
    }
}

impl PasswordCache {
    /// A cache verifying on `workers` threads, with at most `queue` verifications waiting.
    pub fn new(workers: usize, queue: usize) -> PasswordCache {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        PasswordCache {
            secret,
            entries: Default::default(),
            pool: Argon2Pool::start(workers, queue),
        }
    }

    fn key(&self, ca_id: &str, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        for part in [ca_id, username, password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when this password was verified against `phc` less than [`CACHE_TTL`] ago.
    fn hit(&self, key: &[u8; 32], phc: &str) -> bool {
        entry_fresh(&self.entries, key, phc)
    }

    /// True when `password` was verified for this account less than [`CACHE_TTL`] ago
    /// (costs one SHA-256, no argon2).
    pub fn remembered(&self, client: &Client, password: &str) -> bool {
        self.hit(
            &self.key(&client.ca_id, &client.username, password),
            &client.password_hash,
        )
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

    /// Checks `password` against the account's PHC string (argon2 on the worker pool,
    /// unless remembered). A full queue is refused at once (429, retry in a second).
    pub async fn verify(&self, client: &Client, password: &str) -> Result<bool, Error> {
        let key = self.key(&client.ca_id, &client.username, password);
        if self.hit(&key, &client.password_hash) {
            return Ok(true);
        }
        // Concurrent first logins of one device queue one job each: a worker skips the
        // argon2 run when another job verified the same password meanwhile.
        let (entries, phc) = (self.entries.clone(), client.password_hash.clone());
        let settled: Settled = Box::new(move || entry_fresh(&entries, &key, &phc));
        let ok = self
            .pool
            .verify(
                &client.password_hash,
                zeroize::Zeroizing::new(password.to_string()),
                settled,
            )
            .await?;
        if ok {
            self.remember(key, &client.password_hash);
        }
        Ok(ok)
    }
}

/// Argon2 memory of one worker at most (64 MiB): a PHC string asking for more is refused.
const MAX_BLOCKS: usize = 64 * 1024;
/// A worker idle this long gives its memory back.
const IDLE: Duration = Duration::from_secs(2);

/// Whether the answer is already known (verified by another job while this one waited).
type Settled = Box<dyn Fn() -> bool + Send>;

struct Job {
    phc: String,
    password: zeroize::Zeroizing<String>,
    settled: Settled,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// A fixed number of threads verifying argon2 hashes, each reusing one block of memory
/// (~19 MiB with the default parameters) while busy and freeing it when idle, behind a
/// bounded queue. Why not `spawn_blocking`: every blocking thread allocated and freed its
/// own 19 MiB, which glibc keeps in per-thread arenas once its dynamic mmap threshold has
/// risen: a flood of wrong passwords grew the process to ~465 MB and it stayed there.
struct Argon2Pool {
    queue: std::sync::mpsc::SyncSender<Job>,
}

impl Argon2Pool {
    fn start(workers: usize, queue: usize) -> Argon2Pool {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue.max(1));
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vellum-argon2-{i}"))
                .spawn(move || argon2_worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an argon2 worker thread");
            }
        }
        Argon2Pool { queue: tx }
    }

    async fn verify(
        &self,
        phc: &str,
        password: zeroize::Zeroizing<String>,
        settled: Settled,
    ) -> Result<bool, Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            phc: phc.to_string(),
            password,
            settled,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                return Err(Error::RateLimited {
                    detail: "the server is checking too many passwords at once; retry in a second"
                        .into(),
                    retry_after: 1,
                })
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(Error::internal("the argon2 workers are gone"))
            }
        }
        answer
            .await
            .map_err(|_| Error::internal("an argon2 worker dropped a verification"))
    }
}

fn argon2_worker(rx: &Mutex<std::sync::mpsc::Receiver<Job>>) {
    let mut memory: Vec<argon2::Block> = Vec::new();
    loop {
        let next = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv_timeout(IDLE)
        };
        match next {
            Ok(job) => {
                // The request is gone (client hung up, timeout): nothing to verify for.
                if job.reply.is_closed() {
                    continue;
                }
                if (job.settled)() {
                    let _ = job.reply.send(true);
                    continue;
                }
                let ok = verify_phc(&mut memory, &job.phc, job.password.as_bytes());
                let _ = job.reply.send(ok);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => memory = Vec::new(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Verifies `password` against an argon2 PHC string with `memory` as the working area;
/// the computed hash is compared in constant time.
fn verify_phc(memory: &mut Vec<argon2::Block>, phc: &str, password: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        *memory = Vec::new();
        *memory = argon2_memory(blocks);
    }
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        &mut memory[..blocks],
    );
    computed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Who is enrolling, and under which name rules.
#[derive(Debug, Clone)]
pub enum Identity {
    /// An EST client account (HTTP Basic).
    Basic {
        /// Its user name.
        username: String,
        /// Glob patterns every requested name must match (empty: any).
        name_patterns: Vec<String>,
    },
    /// The holder of a certificate this EST service issued to an EST account: it acts for
    /// that account, under the account's name patterns.
    AccountCert {
        /// The presented certificate's record.
        cert: Box<CertRow>,
        /// The account it was issued to.
        username: String,
        /// That account's name patterns (read at this request: changes apply at once).
        name_patterns: Vec<String>,
    },
    /// The holder of a certificate that chains to one of the trust anchors configured for
    /// the EST service (a device maker's CA…).
    Anchored {
        /// Serial of the presented certificate (lower-case hex).
        serial: String,
        /// Its issuer, as text.
        issuer: String,
        /// The service's `client_cert_name_patterns` (empty: any).
        name_patterns: Vec<String>,
    },
    /// simplereenroll: the holder of the certificate being renewed, issued by this CA.
    Renewing {
        /// The presented certificate's record.
        cert: Box<CertRow>,
    },
}

impl Identity {
    /// How the client authenticated, as the metrics label it: `basic`, `account-cert` (a
    /// certificate issued here to an EST account), `trust-anchor` (one chaining to a
    /// configured anchor) or `renewal` (the certificate being renewed).
    pub fn auth_kind(&self) -> &'static str {
        match self {
            Identity::Basic { .. } => "basic",
            Identity::AccountCert { .. } => "account-cert",
            Identity::Anchored { .. } => "trust-anchor",
            Identity::Renewing { .. } => "renewal",
        }
    }

    /// The requester recorded with issued certificates and in audit events:
    /// `est:basic:<username>`, `est:cert:<serial>` (a certificate issued here) or
    /// `est:trusted:<serial>` (one chaining to a configured trust anchor).
    pub fn requester(&self) -> String {
        match self {
            Identity::Basic { username, .. } => format!("est:basic:{username}"),
            Identity::AccountCert { cert, .. } | Identity::Renewing { cert } => {
                format!("est:cert:{}", cert.serial)
            }
            Identity::Anchored { serial, .. } => format!("est:trusted:{serial}"),
        }
    }

    /// The EST account the enrolled certificate belongs to (recorded with it, so that
    /// its holder can later log in under the same account's rules).
    pub fn est_client(&self) -> Option<String> {
        match self {
            Identity::Basic { username, .. } | Identity::AccountCert { username, .. } => {
                Some(username.clone())
            }
            Identity::Renewing { cert } => cert.est_client.clone(),
            Identity::Anchored { .. } => None,
        }
    }

    /// The name patterns the request must satisfy, with who imposes them (for the
    /// refusal); `None` when the requested names are checked otherwise (renewal keeps the
    /// certificate's names).
    pub fn name_rules(&self) -> Option<(String, &[String])> {
        match self {
            Identity::Basic {
                username,
                name_patterns,
            }
            | Identity::AccountCert {
                username,
                name_patterns,
                ..
            } => Some((format!("EST client {username:?}"), name_patterns)),
            Identity::Anchored {
                name_patterns,
                issuer,
                ..
            } => Some((
                format!("a certificate from the trust anchor {issuer:?}"),
                name_patterns,
            )),
            Identity::Renewing { .. } => None,
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
///
/// Failed logins are counted per (CA, user name) and per (CA, source IP)
/// (`ra::ratelimit::Backoff`, forgotten an hour after the last failure); while either
/// is locked the attempt is refused with 429
/// and `Retry-After` before any argon2 runs. A password verified in the last minute
/// (`PasswordCache::remembered`, one SHA-256) passes even then, so that someone guessing
/// a device's password cannot lock the device out.
pub async fn check_basic(
    app: &App,
    cache: &PasswordCache,
    ca_id: &str,
    username: &str,
    client: Option<&Client>,
    password: &str,
    source_ip: Option<std::net::IpAddr>,
) -> Result<Identity, EstError> {
    let identity = |c: &Client| Identity::Basic {
        username: c.username.clone(),
        name_patterns: c.name_patterns.clone(),
    };
    let logins = &app.limits.est_logins;
    let user_key = ratelimit::key(&["est-user", ca_id, username]);
    let ip = source_ip.map(|ip| ip.to_string());
    let ip_key = ip
        .as_deref()
        .map(|ip| ratelimit::key(&["est-ip", ca_id, ip]));
    if let Some(c) = client.filter(|c| cache.remembered(c, password)) {
        return Ok(identity(c));
    }
    if let Err(d) = logins.check(&user_key) {
        return Err(Error::rate_limited(
            format!(
                "too many failed logins for user {username:?} of the EST service of CA {ca_id}; retry in {} s",
                d.secs()
            ),
            d.secs(),
        )
        .into());
    }
    if let (Some(k), Some(ip)) = (&ip_key, &ip) {
        if let Err(d) = logins.check(k) {
            return Err(Error::rate_limited(
                format!(
                    "too many failed logins from {ip} at the EST service of CA {ca_id}; retry in {} s",
                    d.secs()
                ),
                d.secs(),
            )
            .into());
        }
    }
    let ok = match client {
        Some(c) => cache.verify(c, password).await?,
        None => false,
    };
    // A success does not reset the counts: a device logging in every minute would
    // otherwise hand someone guessing its password fresh attempts every minute.
    if let (true, Some(c)) = (ok, client) {
        return Ok(identity(c));
    }
    let limits = ratelimit::for_ca(app, ca_id).await?;
    let user_lock = logins.fail(&user_key, limits.backoff(limits.est_failed_logins_per_user));
    let ip_lock =
        ip_key.and_then(|k| logins.fail(&k, limits.backoff(limits.est_failed_logins_per_ip)));
    let lock = match (user_lock, ip_lock) {
        (Some(a), Some(b)) => Some(a.secs().max(b.secs())),
        (a, b) => a.or(b).map(|d| d.secs()),
    };
    Err(EstError::unauthorized(format!(
        "wrong user name or password for the EST service of CA {ca_id}{}",
        match lock {
            Some(s) => format!("; too many failed logins: further attempts are refused for {s} s"),
            None => String::new(),
        }
    )))
}

/// What simpleenroll and serverkeygen require of a login certificate, in one sentence
/// every refusal repeats (RFC 7030 §3.3.2: the server decides which certificates
/// authorize an enrollment).
pub const ENROLL_CERT_RULE: &str = "simpleenroll and serverkeygen accept a TLS client \
    certificate only if this EST service issued it to an EST account, or if it chains to a \
    trust anchor configured for the service (client_cert_trust_pem); it must carry the \
    clientAuth extended key usage and be unexpired and unrevoked";

/// True when the certificate lists id-kp-clientAuth among its extended key usages.
fn has_client_auth(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth)
}

/// The presented leaf, parsed, and its serial (lower-case hex).
fn parse_presented(
    der: &[u8],
) -> Result<(x509_parser::certificate::X509Certificate<'_>, String), EstError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).map_err(|_| {
        EstError::forbidden("the TLS client certificate is not a well-formed X.509 certificate")
    })?;
    let serial = ca::serial_hex(parsed.raw_serial());
    Ok((parsed, serial))
}

/// The certificate of `ca_id`'s tenant with this serial and exactly this DER, with the
/// status of its issuing CA.
async fn ours(
    app: &App,
    tenant_id: &str,
    serial: &str,
    der: &[u8],
) -> Result<Option<(CertRow, vellum_core::status::CaStatus)>, EstError> {
    let mut conn = app.store.reader().acquire().await?;
    Ok(store::est::certificate_by_der(&mut conn, tenant_id, serial, der).await?)
}

fn refuse_unusable(cert: &CertRow, now: i64) -> Result<(), EstError> {
    let serial = &cert.serial;
    if let Some(at) = cert.revoked_at {
        return Err(EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) was revoked at {}",
            vellum_core::time::rfc3339(at)
        )));
    }
    if cert.not_after <= now {
        return Err(EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) expired at {}",
            vellum_core::time::rfc3339(cert.not_after)
        )));
    }
    Ok(())
}

/// simpleenroll / serverkeygen by TLS client certificate (see [`ENROLL_CERT_RULE`]).
///
/// 1. A certificate this CA issued through EST to an account that still exists: the
///    holder acts for that account (its name patterns, read now).
/// 2. Otherwise one that chains, through the intermediates the client sent, to a trust
///    anchor of the service (rustls-webpki path building, clientAuth EKU required, at the
///    current time); a certificate of this installation among them must not be revoked.
///    Third-party certificates are not checked for revocation: Vellum has no CRL of the
///    anchor's issuer (remove the anchor to cut them all off).
///
/// Anything else, notably a certificate from ACME or the admin API, is refused with 403.
pub async fn check_enroll_cert(
    app: &App,
    ctx: &super::Ctx,
    presented: &ClientCert,
) -> Result<Identity, EstError> {
    let der = presented.leaf.as_slice();
    let (parsed, serial) = parse_presented(der)?;
    let now = vellum_core::time::now();
    let found = ours(app, &ctx.tenant_id, &serial, der).await?;
    let refuse = |why: String| {
        EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) {why}. {ENROLL_CERT_RULE}"
        ))
    };
    if let Some((cert, _)) = &found {
        if let (Some(account), true) = (&cert.est_client, cert.ca_id.as_deref() == Some(&ctx.ca_id))
        {
            refuse_unusable(cert, now)?;
            if !has_client_auth(&parsed) {
                return Err(refuse("does not carry the clientAuth extended key usage (it was enrolled with certificate_type server)".into()));
            }
            let client = {
                let mut conn = app.store.reader().acquire().await?;
                store::est::client(&mut conn, &ctx.ca_id, account).await?
            };
            let Some(client) = client else {
                return Err(refuse(format!(
                    "was issued to the EST account {account:?}, which no longer exists"
                )));
            };
            return Ok(Identity::AccountCert {
                cert: Box::new(cert.clone()),
                username: client.username,
                name_patterns: client.name_patterns,
            });
        }
    }
    let Some(trust_pem) = ctx.settings.client_cert_trust_pem.as_deref() else {
        return Err(refuse(match &found {
            Some((cert, _)) => format!("{}, not by this EST service to an EST account; no client-certificate trust anchors are configured for CA {}", issued_how(cert), ctx.ca_id),
            None => format!("was not issued by this installation, and no client-certificate trust anchors are configured for CA {}", ctx.ca_id),
        }));
    };
    let issuer = parsed.issuer().to_string();
    if !has_client_auth(&parsed) {
        return Err(refuse(format!(
            "(issuer {issuer:?}) does not carry the clientAuth extended key usage"
        )));
    }
    if let Err(why) = chains_to_anchor(trust_pem, presented, now) {
        return Err(refuse(match &found {
            Some((cert, _)) => format!(
                "{}, not by this EST service to an EST account, and it {why}",
                issued_how(cert)
            ),
            None => format!("(issuer {issuer:?}) {why}"),
        }));
    }
    if let Some((cert, _)) = &found {
        refuse_unusable(cert, now)?;
    }
    Ok(Identity::Anchored {
        serial,
        issuer,
        name_patterns: ctx.settings.client_cert_name_patterns.clone(),
    })
}

/// `was issued through ACME by CA …`: where a certificate of this installation came from.
fn issued_how(cert: &CertRow) -> String {
    let door = cert.source.door();
    format!(
        "was issued {door} by CA {}",
        cert.ca_id.as_deref().unwrap_or("?")
    )
}

/// Checks that the presented leaf chains to one of the PEM trust anchors, through the
/// intermediates the client sent, at `now`, with no certificate on the path excluding
/// clientAuth; the error says why not. (That the leaf names clientAuth is the caller's
/// check: webpki would demand it of every CA certificate on the path too.)
pub fn chains_to_anchor(trust_pem: &str, presented: &ClientCert, now: i64) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let anchors_der: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(trust_pem.as_bytes())
            .filter_map(|c| c.ok())
            .collect();
    let anchors: Vec<_> = anchors_der
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    if anchors.is_empty() {
        return Err(
            "cannot be checked: the configured trust anchors hold no usable certificate".into(),
        );
    }
    let leaf = CertificateDer::from(presented.leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| {
        format!(
            "cannot be read as an end-entity certificate ({})",
            webpki_reason(&e)
        )
    })?;
    let intermediates: Vec<CertificateDer<'_>> = presented
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        // On the leaf, clientAuth is required (checked by the caller, which names it);
        // CA certificates on the path may carry no EKU at all, or one including it.
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| {
        format!(
            "does not chain to a trust anchor configured for this EST service: {}",
            webpki_reason(&e)
        )
    })
}

/// A webpki refusal in words.
fn webpki_reason(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => "it has expired".into(),
        E::CertNotValidYet { .. } => "it is not valid yet".into(),
        E::UnknownIssuer => "its issuer is none of the anchors, nor reachable from them through the certificates the client sent".into(),
        E::RequiredEkuNotFoundContext(_) => {
            "it does not carry the clientAuth extended key usage".into()
        }
        E::InvalidSignatureForPublicKey => {
            "a signature on the path does not verify".into()
        }
        E::CaUsedAsEndEntity => "it is a CA certificate, not a device certificate".into(),
        E::BadDer | E::BadDerTime => "it is not well-formed DER".into(),
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "it is signed with an algorithm that is not supported".into()
        }
        E::MaximumPathDepthExceeded | E::MaximumPathBuildCallsExceeded | E::MaximumSignatureChecksExceeded => {
            "its path to an anchor is too long".into()
        }
        E::InvalidCertValidity => "its validity period is invalid".into(),
        other => format!("path validation failed ({other})"),
    }
}

/// simplereenroll: the certificate being renewed must be issued by this CA (`ca_id`) to
/// its tenant, not revoked, not expired.
pub async fn check_renewal_cert(
    app: &App,
    ctx: &super::Ctx,
    presented: &ClientCert,
) -> Result<Identity, EstError> {
    let der = presented.leaf.as_slice();
    let (parsed, serial) = parse_presented(der)?;
    let Some((cert, _)) = ours(app, &ctx.tenant_id, &serial, der).await? else {
        return Err(EstError::forbidden(format!(
            "simplereenroll renews only certificates of CA {}; the TLS client certificate (serial {serial}, issuer {}) was not issued by this installation to the CA's tenant",
            ctx.ca_id,
            parsed.issuer()
        )));
    };
    let ca_id = cert.ca_id.clone().unwrap_or_default();
    if ca_id != ctx.ca_id {
        return Err(EstError::forbidden(format!(
            "the TLS client certificate (serial {serial}) was issued by CA {ca_id}, not by CA {}; re-enroll with the CA that issued it",
            ctx.ca_id
        )));
    }
    refuse_unusable(&cert, vellum_core::time::now())?;
    Ok(Identity::Renewing {
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
    use ra::est::hash_password;

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
        assert!(cache.remembered(&client, "correct horse"));
        assert!(!cache.remembered(&client, "wrong"));
    }

    #[test]
    fn hashes_are_standard_phc_strings_and_other_parameters_verify() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with the argon2 crate's own verifier…
        let phc = hash_password("pw one").unwrap();
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password(b"pw one", &parsed)
            .is_ok());
        // …and the workers' verification reads the parameters of any argon2 PHC string.
        let mut memory = Vec::new();
        assert!(verify_phc(&mut memory, &phc, b"pw one"));
        assert!(!verify_phc(&mut memory, &phc, b"pw two"));
        let small = argon2::Params::new(4096, 3, 1, Some(24)).unwrap();
        for alg in [argon2::Algorithm::Argon2id, argon2::Algorithm::Argon2i] {
            let other = Argon2::new(alg, argon2::Version::V0x13, small.clone())
                .hash_password(
                    b"pw three",
                    &argon2::password_hash::SaltString::encode_b64(b"saltsaltsalt").unwrap(),
                )
                .unwrap()
                .to_string();
            assert!(verify_phc(&mut memory, &other, b"pw three"), "{other}");
            assert!(!verify_phc(&mut memory, &other, b"pw thre3"));
        }
        // Garbage and absurd memory costs are refused, not allocated.
        assert!(!verify_phc(&mut memory, "$argon2id$nonsense", b"x"));
        let huge = phc.replace("m=19456", "m=4194304");
        assert!(!verify_phc(&mut memory, &huge, b"pw one"));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let cache = PasswordCache::new(1, 1);
        let client = Client {
            ca_id: "ca".into(),
            username: "dev".into(),
            tenant_id: "t".into(),
            password_hash: hash_password("pw").unwrap(),
            name_patterns: vec![],
            created_at: 0,
            created_by: None,
        };
        let attempts: Vec<_> = (0..8)
            .map(|i| {
                let (cache, client) = (&cache, &client);
                async move { cache.verify(client, &format!("wrong{i}")).await }
            })
            .collect();
        let results = futures::future::join_all(attempts).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(Error::RateLimited { retry_after: 1, .. })))
            .count();
        assert!(refused >= 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(r, Ok(false))));
    }
}
