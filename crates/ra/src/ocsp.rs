//! The OCSP responder's rules (RFC 6960, RFC 5019 profile).
//!
//! Responses are signed on first request and held ready (Boulder's approach): in the
//! database (`ocsp_responses`, shared by replicas and restarts) and in this process's
//! memory, keyed by (CA, serial, CertID hash). A held response is served until half its
//! validity has passed, then signed again.
//!
//! Freshness after a revocation:
//! - the revoking transaction deletes the stored responses of the serial and appends an
//!   event to `ocsp_events` (`store::ocsp::revoked`), in the same commit;
//! - this process drops its cached copy right after the commit ([`Ocsp::forget`]);
//! - every replica polls the event feed ([`poll`], every [`POLL_INTERVAL`]) and drops the
//!   copies it names, so another replica answers `revoked` within a second;
//! - a response loaded from the database is re-checked against the certificate's current
//!   status in the same read, and a response signed while a revocation committed is
//!   never cached (the cache's generation moved), so nothing stale survives a race.
//!
//! Requests with a nonce are signed afresh (the nonce is echoed) and never held.
//!
//! Unknown serials (not issued by the CA) are answered from memory for a minute
//! ([`UNKNOWN_TTL`], at most [`MAX_UNKNOWN`] answers, oldest dropped first): they are not
//! stored, so that random serials cannot fill the database. What is signed on demand
//! (an unknown serial not held, a nonce) spends a per-CA token bucket of
//! `rate_limits.ocsp_on_demand_signings_per_second`; when it is empty an unknown serial is
//! answered `tryLater` (RFC 6960 status 3) and a nonce gets the held response without the
//! nonce (RFC 8954 lets a responder leave it out), so a flood of random serials or nonces
//! costs at most that many signatures per second and CA.
//!
//! One `Request` per `OCSPRequest` (RFC 5019 §2.1.1); several are refused with
//! `malformedRequest` (see docs/API.md): an answer to several could not be held ready
//! and would be a signature per request.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ca::ocsp::{self as asn1, CertStatus, ErrorStatus, HashAlg, IssuerHashes, ResponderKey};
use ca::Signer;
use rcgen::KeyPair;
use store::cas::CaRow;
use store::ocsp::{SerialStatus, SignerRow, StoredResponse};
use vellum_core::error::{Error, Result};
use vellum_core::status::CaStatus;

use crate::Authority;

/// How often replicas read the event feed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest life of a cached responder (CA row, key, delegated signer).
const RESPONDER_TTL: Duration = Duration::from_secs(1);
/// Events re-read behind the highest seen one (PostgreSQL sequence values may commit
/// out of order).
const LOOKBACK: i64 = 256;
/// Cached responses held before the map is emptied (bounds memory).
const MAX_CACHED: usize = 500_000;
/// How long an `unknown` answer is held in memory.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(60);
/// `unknown` answers held in memory at most (oldest dropped first).
pub const MAX_UNKNOWN: usize = 4096;
/// Shortest life of a delegated signing certificate.
const SIGNER_MIN_LIFETIME: i64 = 7 * 86_400;
/// Response validity bounds, hours.
pub const VALIDITY_HOURS: std::ops::RangeInclusive<i64> = 1..=168;

/// A response ready to send.
#[derive(Debug)]
pub struct Answer {
    /// The OCSPResponse, DER.
    pub der: Vec<u8>,
    /// thisUpdate (and producedAt), Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// A strong validator for HTTP caches (hex of the response's SHA-256, truncated).
    pub etag: String,
    responder: Arc<str>,
}

impl Answer {
    fn new(der: Vec<u8>, this_update: i64, next_update: i64, responder: Arc<str>) -> Answer {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        Answer {
            etag: format!("\"{}\"", hex::encode(&digest.as_ref()[..16])),
            der,
            this_update,
            next_update,
            responder,
        }
    }

    fn fresh(&self, now: i64) -> bool {
        now < self.this_update + (self.next_update - self.this_update) / 2
    }
}

/// What the responder says to one request.
#[derive(Debug)]
pub enum Reply {
    /// A signed response (held ready unless the request carried a nonce).
    Signed {
        /// The response.
        answer: Arc<Answer>,
        /// True when it may be cached by HTTP caches (no nonce).
        cacheable: bool,
    },
    /// An unsigned error response (`malformedRequest`, `unauthorized`…), DER.
    Refused(Vec<u8>),
}

struct Delegated {
    key: KeyPair,
    certificate_der: Vec<u8>,
    serial: String,
}

struct Responder {
    ca: CaRow,
    hashes: IssuerHashes,
    signer: Arc<Signer>,
    delegated: Option<Delegated>,
    fingerprint: Arc<str>,
    loaded: Instant,
    generation: u64,
    /// The CA's retired keys (it was renewed with a new key), read on the first request
    /// that names one ([`retired_responder`]).
    retired: tokio::sync::OnceCell<Vec<Arc<Responder>>>,
}

impl Responder {
    fn key(&self) -> ResponderKey<'_> {
        match &self.delegated {
            Some(d) => ResponderKey {
                key: &d.key,
                delegated_cert: Some(&d.certificate_der),
            },
            None => ResponderKey::ca(&self.signer),
        }
    }
}

type Key = (String, String, HashAlg);

#[derive(Default)]
struct PollState {
    mark: Option<i64>,
    seen: BTreeSet<i64>,
}

/// `unknown` answers held for [`UNKNOWN_TTL`], at most [`MAX_UNKNOWN`], in insertion
/// order (`order` holds each key of `map` once).
#[derive(Default)]
struct Unknowns {
    map: HashMap<Key, (Arc<Answer>, Instant)>,
    order: VecDeque<Key>,
}

/// A token bucket: `tokens` left at `at`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The responder's in-memory state: responders per CA and responses held ready.
#[derive(Default)]
pub struct Ocsp {
    generation: AtomicU64,
    responders: RwLock<HashMap<String, Arc<Responder>>>,
    responses: RwLock<HashMap<Key, Arc<Answer>>>,
    unknowns: RwLock<Unknowns>,
    budgets: std::sync::Mutex<HashMap<String, Bucket>>,
    rotation: tokio::sync::Mutex<()>,
    poll: tokio::sync::Mutex<PollState>,
}

impl std::fmt::Debug for Ocsp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ocsp")
    }
}

impl Ocsp {
    /// Drops what this process holds for a serial of a CA (`None`: for the whole CA).
    pub fn forget(&self, ca_id: &str, serial: Option<&str>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        {
            let mut u = self.unknowns.write().unwrap_or_else(|p| p.into_inner());
            let gone = |(ca, s, _): &Key| ca == ca_id && serial.is_none_or(|x| x == s);
            let any = match serial {
                Some(s) => [HashAlg::Sha1, HashAlg::Sha256].iter().any(|alg| {
                    u.map
                        .contains_key(&(ca_id.to_string(), s.to_string(), *alg))
                }),
                None => u.map.keys().any(gone),
            };
            if any {
                u.map.retain(|k, _| !gone(k));
                u.order.retain(|k| !gone(k));
            }
        }
        let mut map = self.responses.write().unwrap_or_else(|p| p.into_inner());
        match serial {
            Some(s) => {
                for alg in [HashAlg::Sha1, HashAlg::Sha256] {
                    map.remove(&(ca_id.to_string(), s.to_string(), alg));
                }
            }
            None => {
                map.retain(|(ca, _, _), _| ca != ca_id);
                drop(map);
                self.responders
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(ca_id);
            }
        }
    }

    fn cached(&self, key: &Key) -> Option<Arc<Answer>> {
        self.responses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn cached_unknown(&self, key: &Key, fingerprint: &str, now: i64) -> Option<Arc<Answer>> {
        let u = self.unknowns.read().unwrap_or_else(|p| p.into_inner());
        let (a, at) = u.map.get(key)?;
        (at.elapsed() < UNKNOWN_TTL && &*a.responder == fingerprint && a.fresh(now))
            .then(|| a.clone())
    }

    fn keep_unknown(&self, key: Key, answer: Arc<Answer>, generation: u64) {
        let mut u = self.unknowns.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if !u.map.contains_key(&key) {
            while u.map.len() >= MAX_UNKNOWN {
                let Some(old) = u.order.pop_front() else {
                    break;
                };
                u.map.remove(&old);
            }
            u.order.push_back(key.clone());
        }
        u.map.insert(key, (answer, Instant::now()));
    }

    /// Takes one on-demand signing from the CA's bucket (`per_second` tokens a second,
    /// holding at most one second's worth; 0: no limit). False when it is empty.
    fn spend(&self, ca_id: &str, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let rate = f64::from(per_second);
        let now = Instant::now();
        let mut map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let b = match map.get_mut(ca_id) {
            Some(b) => b,
            None => map.entry(ca_id.to_string()).or_insert(Bucket {
                tokens: rate,
                at: now,
            }),
        };
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn keep(&self, key: Key, answer: Arc<Answer>, generation: u64) {
        let mut map = self.responses.write().unwrap_or_else(|p| p.into_inner());
        // A change landed while this answer was being made: do not hold it.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(key, answer);
    }
}

/// Answers one DER `OCSPRequest` for CA `ca_id`. `Err(not_found)` when there is no such
/// CA (or it has no key); a CA with OCSP off answers `unauthorized`.
pub async fn respond(ra: &Authority, ca_id: &str, request: &[u8]) -> Result<Reply> {
    let req = match asn1::parse_request(request) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(ca = %ca_id, error = %e, "malformed OCSP request");
            return Ok(Reply::Refused(asn1::error_response(
                ErrorStatus::MalformedRequest,
            )));
        }
    };
    let current = responder(ra, ca_id).await?;
    let responder = if !current.ca.ocsp_enabled {
        None
    } else if current.hashes.matches(&req.cert_id) {
        Some(current)
    } else {
        retired_responder(ra, &current, &req.cert_id).await?
    };
    let Some(responder) = responder else {
        return Ok(Reply::Refused(asn1::error_response(
            ErrorStatus::Unauthorized,
        )));
    };
    let now = ra.now();
    let budget = ra.config.rate_limits.ocsp_on_demand_signings_per_second;
    let Some(serial) = req.cert_id.serial.clone() else {
        // A serial no CA here issues (negative or over-long): signed for its CertID.
        if !ra.ocsp.spend(ca_id, budget) {
            return Ok(try_later(ca_id));
        }
        let answer = sign(&responder, &req.cert_id.der, CertStatus::Unknown, None, now)?;
        return Ok(Reply::Signed {
            answer: Arc::new(answer),
            cacheable: false,
        });
    };
    if let Some(nonce) = &req.nonce {
        if ra.ocsp.spend(ca_id, budget) {
            let status = serial_status(ra, &responder.ca, &serial).await?;
            let answer = sign(&responder, &req.cert_id.der, status, Some(nonce), now)?;
            return Ok(Reply::Signed {
                answer: Arc::new(answer),
                cacheable: false,
            });
        }
        // Over the budget: the held response, without the nonce (below).
    }
    let key: Key = (ca_id.to_string(), serial, req.cert_id.alg);
    if let Some(a) = ra.ocsp.cached(&key) {
        if a.responder == responder.fingerprint && a.fresh(now) {
            return Ok(Reply::Signed {
                answer: a,
                cacheable: true,
            });
        }
    }
    if let Some(a) = ra.ocsp.cached_unknown(&key, &responder.fingerprint, now) {
        return Ok(Reply::Signed {
            answer: a,
            cacheable: true,
        });
    }
    let generation = ra.ocsp.generation.load(Ordering::Acquire);
    let (stored, status) = {
        let mut conn = ra.store.reader().acquire().await?;
        let stored = store::ocsp::get_response(&mut conn, ca_id, &key.1, key.2.as_str()).await?;
        let status =
            store::ocsp::serial_status(&mut conn, ca_id, responder.ca.is_root(), &key.1).await?;
        (stored, status)
    };
    let status = to_cert_status(status);
    if let Some(s) = stored {
        if s.responder == *responder.fingerprint && s.status == status_name(status) {
            let a = Answer::new(s.der, s.this_update, s.next_update, s.responder.into());
            if a.fresh(now) {
                let a = Arc::new(a);
                ra.ocsp.keep(key, a.clone(), generation);
                return Ok(Reply::Signed {
                    answer: a,
                    cacheable: true,
                });
            }
        }
    }
    if status == CertStatus::Unknown {
        if !ra.ocsp.spend(ca_id, budget) {
            return Ok(try_later(ca_id));
        }
        let answer = Arc::new(sign(&responder, &req.cert_id.der, status, None, now)?);
        ra.ocsp.keep_unknown(key, answer.clone(), generation);
        return Ok(Reply::Signed {
            answer,
            cacheable: true,
        });
    }
    let answer = Arc::new(sign(&responder, &req.cert_id.der, status, None, now)?);
    if status != CertStatus::Unknown {
        let mut tx = ra.store.begin().await?;
        store::ocsp::put_response(
            &mut tx,
            &StoredResponse {
                ca_id: key.0.clone(),
                serial: key.1.clone(),
                hash_alg: key.2.as_str().to_string(),
                status: status_name(status).to_string(),
                responder: responder.fingerprint.to_string(),
                this_update: answer.this_update,
                next_update: answer.next_update,
                der: answer.der.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        ra.ocsp.keep(key, answer.clone(), generation);
    }
    Ok(Reply::Signed {
        answer,
        cacheable: true,
    })
}

fn try_later(ca_id: &str) -> Reply {
    tracing::debug!(ca = %ca_id, "OCSP on-demand signing budget spent; answering tryLater");
    Reply::Refused(asn1::error_response(ErrorStatus::TryLater))
}

fn status_name(s: CertStatus) -> &'static str {
    match s {
        CertStatus::Good => "good",
        CertStatus::Revoked(..) => "revoked",
        CertStatus::Unknown => "unknown",
    }
}

fn to_cert_status(s: Option<SerialStatus>) -> CertStatus {
    match s {
        None => CertStatus::Unknown,
        Some(SerialStatus::Good) => CertStatus::Good,
        Some(SerialStatus::Revoked(at, reason)) => CertStatus::Revoked(at, reason),
    }
}

async fn serial_status(ra: &Authority, ca: &CaRow, serial: &str) -> Result<CertStatus> {
    let mut conn = ra.store.reader().acquire().await?;
    Ok(to_cert_status(
        store::ocsp::serial_status(&mut conn, &ca.id, ca.is_root(), serial).await?,
    ))
}

fn sign(
    responder: &Responder,
    cert_id_der: &[u8],
    status: CertStatus,
    nonce: Option<&[u8]>,
    now: i64,
) -> Result<Answer> {
    let next_update = now + responder.ca.ocsp_validity_hours.max(1) * 3600;
    let started = std::time::Instant::now();
    let der = asn1::sign_response(
        responder.key(),
        &asn1::ResponseSpec {
            cert_id_der,
            status,
            this_update: now,
            next_update,
            nonce,
        },
    )?;
    vellum_core::metrics::ocsp_signed(&responder.ca.id, started.elapsed());
    Ok(Answer::new(
        der,
        now,
        next_update,
        responder.fingerprint.clone(),
    ))
}

/// The responder of a CA: its row, key, issuer hashes and delegated signer, read at most
/// [`RESPONDER_TTL`] ago (or since this process last changed CAs).
async fn responder(ra: &Authority, ca_id: &str) -> Result<Arc<Responder>> {
    let generation = ra.store.caches().generation();
    if let Some(r) = ra
        .ocsp
        .responders
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(ca_id)
    {
        if r.generation == generation && r.loaded.elapsed() < RESPONDER_TTL {
            return Ok(r.clone());
        }
    }
    let ca = {
        let mut conn = ra.store.reader().acquire().await?;
        store::cas::get_any_tenant(&mut conn, ca_id)
            .await?
            .filter(|c| c.status != CaStatus::Removed && c.has_key())
            .ok_or_else(|| Error::not_found(format!("no CA {ca_id} with a signing key")))?
    };
    let signer = crate::signer_for(ra, &ca).await?;
    let hashes = IssuerHashes::of(signer.certificate_der())?;
    let delegated = if ca.ocsp_enabled && ca.ocsp_delegated {
        Some(delegated_signer(ra, &ca, &signer).await?)
    } else {
        None
    };
    let fingerprint: Arc<str> = format!(
        "{}/{}/{}h",
        ca.serial.as_deref().unwrap_or(""),
        delegated.as_ref().map_or("ca", |d| d.serial.as_str()),
        ca.ocsp_validity_hours
    )
    .into();
    let r = Arc::new(Responder {
        ca,
        hashes,
        signer,
        delegated,
        fingerprint,
        loaded: Instant::now(),
        generation,
        retired: tokio::sync::OnceCell::new(),
    });
    ra.ocsp
        .responders
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(ca_id.to_string(), r.clone());
    Ok(r)
}

/// The responder for a CertID naming one of the CA's retired keys (its certificates
/// were signed before a renewal with a new key), `None` when no key of the CA matches.
/// It answers for the CA's certificates as the current key does, signed by the retired
/// key itself (RFC 6960 §4.2.2.2: the CA that issued the certificate), never by the
/// delegated signer, which the current key certified. Its responses are held like the
/// current key's, told apart by the responder fingerprint.
async fn retired_responder(
    ra: &Authority,
    current: &Responder,
    cert_id: &asn1::CertId,
) -> Result<Option<Arc<Responder>>> {
    let retired = current
        .retired
        .get_or_try_init(|| async {
            let mut out = Vec::new();
            for g in crate::rollover::retired_keys(ra, &current.ca).await? {
                let signer = Arc::new(crate::rollover::open_retired(ra, &current.ca, &g)?);
                out.push(Arc::new(Responder {
                    ca: current.ca.clone(),
                    hashes: IssuerHashes::of(&g.certificate_der)?,
                    signer,
                    delegated: None,
                    fingerprint: format!(
                        "g{}/{}/ca/{}h",
                        g.key_generation, g.serial, current.ca.ocsp_validity_hours
                    )
                    .into(),
                    loaded: current.loaded,
                    generation: current.generation,
                    retired: tokio::sync::OnceCell::new_with(Some(Vec::new())),
                }));
            }
            Ok::<_, Error>(out)
        })
        .await?;
    Ok(retired.iter().find(|r| r.hashes.matches(cert_id)).cloned())
}

fn signer_lifetime(ca: &CaRow) -> i64 {
    SIGNER_MIN_LIFETIME.max(4 * ca.ocsp_validity_hours * 3600)
}

fn signer_usable(row: &SignerRow, ca: &CaRow, now: i64) -> bool {
    Some(row.ca_serial.as_str()) == ca.serial.as_deref()
        && row.not_after - now >= signer_lifetime(ca) / 2
}

fn seal_context(ca_id: &str) -> String {
    format!("ocsp-signer/{ca_id}")
}

/// The CA's delegated OCSP signer: the stored one while more than half its lifetime is
/// left, else a new one (issued, sealed, stored; two replicas rotating at once keep the
/// later one).
async fn delegated_signer(ra: &Authority, ca: &CaRow, signer: &Signer) -> Result<Delegated> {
    let now = ra.now();
    let load = |row: SignerRow| -> Result<Delegated> {
        Ok(Delegated {
            key: ra.master.open_key(&seal_context(&ca.id), &row.key_sealed)?,
            certificate_der: row.certificate_der,
            serial: row.serial,
        })
    };
    let read = || async {
        let mut conn = ra.store.reader().acquire().await?;
        store::ocsp::get_signer(&mut conn, &ca.id).await
    };
    if let Some(row) = read().await? {
        if signer_usable(&row, ca, now) {
            return load(row);
        }
    }
    let _guard = ra.ocsp.rotation.lock().await;
    if let Some(row) = read().await? {
        if signer_usable(&row, ca, now) {
            return load(row);
        }
    }
    let key = ca::keys::KeyAlgorithm::EcP256.generate()?;
    let not_before = now - 60;
    let not_after = now + signer_lifetime(ca);
    let (der, serial) =
        asn1::delegated_signer_cert(signer, &ca.common_name, &key, not_before, not_after)?;
    let row = SignerRow {
        ca_id: ca.id.clone(),
        serial,
        ca_serial: ca.serial.clone().unwrap_or_default(),
        certificate_der: der,
        key_sealed: ra.master.seal_key(&seal_context(&ca.id), &key)?,
        not_before,
        not_after,
    };
    let mut tx = ra.store.begin().await?;
    store::ocsp::put_signer(&mut tx, &row).await?;
    tx.commit().await?;
    tracing::info!(ca = %ca.id, serial = %row.serial, "issued a delegated OCSP signing certificate");
    match read().await? {
        Some(stored) => load(stored),
        None => Err(Error::internal("the OCSP signer vanished")),
    }
}

/// The delegated signer of a CA (for the admin view): issued now if the CA signs through
/// one and has none yet.
pub async fn current_signer(ra: &Authority, ca: &CaRow) -> Result<Option<SignerRow>> {
    if !(ca.ocsp_enabled && ca.ocsp_delegated && ca.key_sealed.is_some()) {
        return Ok(None);
    }
    let ca_id = ca.id.as_str();
    responder(ra, ca_id).await?;
    let mut conn = ra.store.reader().acquire().await?;
    store::ocsp::get_signer(&mut conn, ca_id).await
}

/// New OCSP settings of a CA.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Answer OCSP requests (and name the responder in new certificates).
    pub enabled: bool,
    /// Sign with a delegated OCSP signing certificate instead of the CA key.
    pub delegated_signer: bool,
    /// Response validity (nextUpdate − thisUpdate), hours.
    pub validity_hours: i64,
}

/// Changes a CA's OCSP settings (tenant-scoped); held responses of the CA are dropped on
/// every replica.
pub async fn set_settings(
    ra: &Authority,
    tenant_id: &str,
    ca_id: &str,
    s: Settings,
) -> Result<CaRow> {
    crate::hierarchy::load(ra, tenant_id, ca_id).await?;
    if !VALIDITY_HOURS.contains(&s.validity_hours) {
        return Err(Error::invalid(
            "validity_hours",
            format!(
                "must be between {} and {} (a week)",
                VALIDITY_HOURS.start(),
                VALIDITY_HOURS.end()
            ),
        ));
    }
    let mut tx = ra.store.begin().await?;
    store::ocsp::set_settings(
        &mut tx,
        ca_id,
        s.enabled,
        s.delegated_signer,
        s.validity_hours,
        ra.now(),
    )
    .await?;
    tx.commit().await?;
    ra.ocsp.forget(ca_id, None);
    crate::hierarchy::load(ra, tenant_id, ca_id).await
}

/// Reads the event feed once and drops what it names. Returns how many events were new.
pub async fn poll(ra: &Authority) -> Result<usize> {
    let mut state = ra.ocsp.poll.lock().await;
    let mut conn = ra.store.reader().acquire().await?;
    let Some(mark) = state.mark else {
        state.mark = Some(store::ocsp::last_event(&mut conn).await?);
        return Ok(0);
    };
    let events = store::ocsp::events_after(&mut conn, mark - LOOKBACK, 10_000).await?;
    drop(conn);
    let mut new = 0;
    let mut top = mark;
    for e in events {
        top = top.max(e.seq);
        if e.seq <= mark - LOOKBACK || !state.seen.insert(e.seq) {
            continue;
        }
        new += 1;
        ra.ocsp.forget(&e.ca_id, e.serial.as_deref());
    }
    state.mark = Some(top);
    let floor = top - LOOKBACK;
    state.seen = state.seen.split_off(&floor);
    Ok(new)
}

/// Deletes feed events older than an hour (every replica has long read them).
pub async fn purge_events(ra: &Authority) -> Result<u64> {
    let mut tx = ra.store.begin().await?;
    let n = store::ocsp::purge_events(&mut tx, ra.now() - 3600).await?;
    tx.commit().await?;
    Ok(n)
}
