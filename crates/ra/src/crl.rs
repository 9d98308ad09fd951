//! Keeping each CA's CRL current: regenerated when a revocation (or a settings change)
//! made it stale, and before its nextUpdate. Numbers come from the database, so they
//! strictly increase across restarts and replicas.
//!
//! Delta CRLs (RFC 5280 §5.2.4, per CA): when on, the base CRL carries freshestCRL and
//! is re-signed on its schedule only (before its nextUpdate, or when the delta switch
//! changed); revocations reach verifiers through the delta CRL, which lists what is
//! revoked now and not on the current base, is re-signed when a revocation made it
//! stale, when a new base appeared, and before its own (short) nextUpdate. Base and
//! delta numbers come from the one `cas.crl_number` sequence, so a delta's number is
//! above its base's and the next base's above every delta's.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::Authority;
use ca::crl::{self as signer_crl, Entry, Kind};
use ca::profile::PublicationUrls;
use store::{self, cas::CaRow, crls::CrlRow, crls::DeltaRow, generations::GenerationRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::CaStatus;

/// A CRL is re-signed when less than this share of its period is left.
const REFRESH_FRACTION: i64 = 3;
/// Bounds of a delta CRL's period (nextUpdate − thisUpdate), minutes.
pub const DELTA_MINUTES: std::ops::RangeInclusive<i64> = 5..=1440;

/// One lock per CA, so that concurrent readers of a stale CRL sign it once.
#[derive(Default, Debug)]
pub struct CrlLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl CrlLocks {
    fn for_ca(&self, id: &str) -> Arc<Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }
}

fn needs_refresh(ca: &CrlRowView, now: i64) -> bool {
    match &ca.crl {
        None => true,
        Some(c) => {
            // With deltas on, a revocation goes to the delta; the base waits its turn.
            (c.revision < ca.revision && !ca.delta)
                || c.freshest != ca.delta
                || now >= c.next_update - (c.next_update - c.this_update) / REFRESH_FRACTION
        }
    }
}

struct CrlRowView {
    revision: i64,
    delta: bool,
    crl: Option<CrlRow>,
}

/// The current CRL of a CA (signed now if the stored one is stale). 404 for a CA without
/// a key or with CRLs disabled.
pub async fn current(ra: &Authority, ca_id: &str) -> Result<CrlRow> {
    let ca = load_ca(ra, ca_id).await?;
    let now = ra.now();
    let view = view(ra, &ca).await?;
    if !needs_refresh(&view, now) {
        if let Some(c) = view.crl {
            return Ok(c);
        }
    }
    let lock = ra.crl_locks.for_ca(ca_id);
    let _guard = lock.lock().await;
    // Someone may have refreshed it while we waited.
    let view = self::view(ra, &ca).await?;
    if !needs_refresh(&view, ra.now()) {
        if let Some(c) = view.crl {
            return Ok(c);
        }
    }
    regenerate(ra, &ca).await
}

async fn load_ca(ra: &Authority, ca_id: &str) -> Result<CaRow> {
    let mut conn = ra.store.reader().acquire().await?;
    let ca = store::cas::get_any_tenant(&mut conn, ca_id)
        .await?
        .filter(|c| c.status != CaStatus::Removed)
        .ok_or_else(|| Error::not_found(format!("no CA {ca_id}")))?;
    if !ca.crl_enabled {
        return Err(Error::not_found(format!(
            "CA {ca_id} does not publish a CRL"
        )));
    }
    if !ca.has_key() {
        return Err(Error::not_found(format!(
            "CA {ca_id} is {}; it has no key to sign a CRL with",
            ca.status
        )));
    }
    Ok(ca)
}

async fn view(ra: &Authority, ca: &CaRow) -> Result<CrlRowView> {
    let mut conn = ra.store.reader().acquire().await?;
    Ok(CrlRowView {
        revision: store::crls::revision(&mut conn, &ca.id).await?,
        delta: ca.crl_delta_enabled,
        crl: store::crls::get(&mut conn, &ca.id).await?,
    })
}

/// The CA's revocation revision and what its complete CRL lists now.
async fn revocations(ra: &Authority, ca: &CaRow, now: i64) -> Result<(i64, Vec<Entry>)> {
    Ok({
        let mut conn = ra.store.reader().acquire().await?;
        // The revision is read before the entries: a revocation committed after this
        // point bumps the CA's revision past the one stored with this CRL, so the next
        // reader signs again. Nothing revoked is ever hidden behind a "fresh" CRL.
        let revision = store::crls::revision(&mut conn, &ca.id).await?;
        let entries = if ca.is_root() {
            store::cas::ca_revocations(&mut conn, &ca.id)
                .await?
                .into_iter()
                .map(|r| Entry {
                    serial_hex: r.serial,
                    revoked_at: r.revoked_at,
                    reason: r.reason,
                })
                .collect()
        } else {
            store::certificates::revoked_for_crl(&mut conn, &ca.id, now)
                .await?
                .into_iter()
                .map(|r| Entry {
                    serial_hex: r.serial,
                    revoked_at: r.revoked_at,
                    reason: r.reason,
                })
                .collect()
        };
        (revision, entries)
    })
}

/// Signs a new CRL for `ca` now and stores it.
pub async fn regenerate(ra: &Authority, ca: &CaRow) -> Result<CrlRow> {
    let now = ra.now();
    let (revision, entries) = revocations(ra, ca, now).await?;
    let signer = super::signer_for(ra, ca).await?;
    let delta_url = ca
        .crl_delta_enabled
        .then(|| delta_url(ra, &ca.id, ca.key_generation));
    let row = sign_complete(ra, signer, ca, revision, now, entries, delta_url).await?;
    let mut tx = ra.store.begin().await?;
    store::crls::put(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(row)
}

/// Runs one CRL signing of CA `ca_id` on the blocking pool (a CRL of a million entries
/// takes seconds), counted and timed in the metrics.
async fn signed_off_thread(
    ca_id: &str,
    sign: impl FnOnce() -> Result<Vec<u8>> + Send + 'static,
) -> Result<Vec<u8>> {
    let (der, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        (sign(), started.elapsed())
    })
    .await
    .map_err(Error::internal)?;
    let der = der?;
    vellum_core::metrics::crl_signed(ca_id, took);
    Ok(der)
}

/// Signs a complete CRL of `ca` covering revocation `revision` with the next number (a
/// base CRL naming `delta_url` when given) on the blocking pool, counts and times the
/// signing, and returns the row to keep.
async fn sign_complete(
    ra: &Authority,
    signer: Arc<ca::Signer>,
    ca: &CaRow,
    revision: i64,
    now: i64,
    entries: Vec<Entry>,
    delta_url: Option<String>,
) -> Result<CrlRow> {
    let mut tx = ra.store.begin().await?;
    let (number, _) = store::crls::next_number(&mut tx, &ca.id).await?;
    tx.commit().await?;
    let next_update = now + ca.crl_next_update_hours.max(1) * 3600;
    let entries_len = entries.len() as i64;
    let freshest = delta_url.is_some();
    let der = signed_off_thread(&ca.id, move || {
        let kind = match &delta_url {
            Some(url) => Kind::Base { delta_url: url },
            None => Kind::Full,
        };
        signer_crl::sign_kind(&signer, kind, number, now, next_update, &entries)
    })
    .await?;
    Ok(CrlRow {
        ca_id: ca.id.clone(),
        crl_number: number,
        revision,
        this_update: now,
        next_update,
        entries: entries_len,
        freshest,
        der,
    })
}

/// The URL of a CA's delta CRL (what freshestCRL names): its current key's.
pub fn delta_url(ra: &Authority, ca_id: &str, key_generation: i64) -> String {
    PublicationUrls::for_key(&ra.config.public_http_url(), ca_id, key_generation).delta_crl
}

/// Splits a CRL file name (`{id}` or `{id}-g{n}`, see
/// [`ca::profile::PublicationUrls::for_key`]) into the CA id and the key generation.
pub fn parse_key_file(name: &str) -> (&str, i64) {
    if let Some((id, digits)) = name.rsplit_once("-g") {
        let canonical = !digits.is_empty()
            && digits.len() <= 9
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if let Some(n) = canonical.then(|| digits.parse::<i64>().ok()).flatten() {
            if n > 1 {
                return (id, n);
            }
        }
    }
    (name, 1)
}

/// CRLs of retired keys (a CA renewed with a new key), held in this process's memory:
/// `(CA id, key generation)` → the latest signed.
#[derive(Default, Debug)]
pub struct RetiredCrls {
    held: std::sync::Mutex<HashMap<(String, i64), CrlRow>>,
    deltas: std::sync::Mutex<HashMap<(String, i64), DeltaRow>>,
}

/// The CRL of the key CA `ca_id` took at generation `key_generation`: for its current key
/// the stored CRL ([`current`]); for a retired key (the CA was renewed with a new key) a
/// complete CRL signed by that key — certificates it signed keep finding a CRL their
/// issuer's key verifies. It lists every revoked certificate of the CA (one name, so one
/// scope), has no delta, and is signed again when a revocation made it stale or a third
/// of its period is left. 404 for a key the CA never had.
pub async fn current_for_key(ra: &Authority, ca_id: &str, key_generation: i64) -> Result<CrlRow> {
    let ca = crate::rollover::current(ra, load_ca(ra, ca_id).await?).await?;
    if key_generation == ca.key_generation {
        return current(ra, ca_id).await;
    }
    Ok(retired_crl(ra, &ca, key_generation).await?.0)
}

/// The retired key `key_generation` of `ca` (its newest generation), 404 when the CA
/// never had it.
async fn retired_key(ra: &Authority, ca: &CaRow, key_generation: i64) -> Result<GenerationRow> {
    crate::rollover::retired_keys(ra, ca)
        .await?
        .into_iter()
        .find(|g| g.key_generation == key_generation)
        .ok_or_else(|| {
            Error::not_found(format!(
                "CA {} has no key of generation {key_generation}",
                ca.id
            ))
        })
}

/// The complete CRL of a retired key of `ca` ([`current_for_key`]), with that key.
async fn retired_crl(
    ra: &Authority,
    ca: &CaRow,
    key_generation: i64,
) -> Result<(CrlRow, GenerationRow)> {
    let ca_id = ca.id.as_str();
    let g = retired_key(ra, ca, key_generation).await?;
    let now = ra.now();
    let revision = {
        let mut conn = ra.store.reader().acquire().await?;
        store::crls::revision(&mut conn, ca_id).await?
    };
    let slot = (ca_id.to_string(), key_generation);
    let fresh = |c: &CrlRow| {
        c.revision >= revision
            && now < c.next_update - (c.next_update - c.this_update) / REFRESH_FRACTION
    };
    // The held CRL if still fresh (the map's lock is released at once).
    let held_fresh = || {
        ra.retired_crls
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&slot)
            .filter(|c| fresh(c))
            .cloned()
    };
    if let Some(c) = held_fresh() {
        return Ok((c, g));
    }
    let lock = ra.crl_locks.for_ca(&format!("{ca_id}-g{key_generation}"));
    let _guard = lock.lock().await;
    // Another request may have signed it while this one waited for the lock.
    if let Some(c) = held_fresh() {
        return Ok((c, g));
    }
    let (revision, entries) = revocations(ra, ca, now).await?;
    let signer = Arc::new(crate::rollover::open_retired(ra, ca, &g)?);
    let row = sign_complete(ra, signer, ca, revision, now, entries, None).await?;
    ra.retired_crls
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(slot, row.clone());
    Ok((row, g))
}

fn delta_needs_refresh(d: Option<&DeltaRow>, base: &CrlRow, revision: i64, now: i64) -> bool {
    match d {
        None => true,
        Some(d) => {
            d.base_number != base.crl_number
                || d.revision < revision
                || now >= d.next_update - (d.next_update - d.this_update) / REFRESH_FRACTION
        }
    }
}

/// The current delta CRL of a CA (signed now if the stored one is stale: a revocation
/// since, a newer base, or close to its nextUpdate). 404 for a CA without a key, with
/// CRLs off or with delta CRLs off.
pub async fn current_delta(ra: &Authority, ca_id: &str) -> Result<DeltaRow> {
    let ca = load_ca(ra, ca_id).await?;
    if !ca.crl_delta_enabled {
        return Err(Error::not_found(format!(
            "CA {ca_id} does not publish delta CRLs (turn them on with PUT \
             /admin/v1/cas/{ca_id}/crl and \"delta_enabled\": true)"
        )));
    }
    let base = current(ra, ca_id).await?;
    let load = || async {
        let mut conn = ra.store.reader().acquire().await?;
        let revision = store::crls::revision(&mut conn, ca_id).await?;
        let delta = store::crls::get_delta(&mut conn, ca_id).await?;
        Ok::<_, Error>((revision, delta))
    };
    let (revision, delta) = load().await?;
    if !delta_needs_refresh(delta.as_ref(), &base, revision, ra.now()) {
        if let Some(d) = delta {
            return Ok(d);
        }
    }
    let lock = ra.crl_locks.for_ca(ca_id);
    let _guard = lock.lock().await;
    let (revision, delta) = load().await?;
    if !delta_needs_refresh(delta.as_ref(), &base, revision, ra.now()) {
        if let Some(d) = delta {
            return Ok(d);
        }
    }
    regenerate_delta(ra, &ca, &base).await
}

/// Signs a new delta CRL for `ca` relative to `base` now and stores it: every revocation
/// the complete CRL would list now that `base` does not.
pub async fn regenerate_delta(ra: &Authority, ca: &CaRow, base: &CrlRow) -> Result<DeltaRow> {
    let signer = super::signer_for(ra, ca).await?;
    let row = sign_delta(ra, signer, ca, base).await?;
    let mut tx = ra.store.begin().await?;
    store::crls::put_delta(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(row)
}

/// Signs a delta CRL of `ca` with `signer` relative to `base` now: every revocation the
/// complete CRL would list now that `base` does not.
async fn sign_delta(
    ra: &Authority,
    signer: Arc<ca::Signer>,
    ca: &CaRow,
    base: &CrlRow,
) -> Result<DeltaRow> {
    let now = ra.now();
    // As for the base: the revision is read before the entries.
    let (revision, entries) = revocations(ra, ca, now).await?;
    let on_base = base_serials(&base.der)?;
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| !on_base.contains(e.serial_hex.as_str()))
        .collect();
    let mut tx = ra.store.begin().await?;
    let (number, _) = store::crls::next_number(&mut tx, &ca.id).await?;
    tx.commit().await?;
    let next_update = now + ca.crl_delta_minutes.clamp(1, *DELTA_MINUTES.end()) * 60;
    let entries_len = entries.len() as i64;
    let base_number = base.crl_number;
    let der = signed_off_thread(&ca.id, move || {
        let kind = Kind::Delta { base_number };
        signer_crl::sign_kind(&signer, kind, number, now, next_update, &entries)
    })
    .await?;
    Ok(DeltaRow {
        ca_id: ca.id.clone(),
        crl_number: number,
        base_number,
        revision,
        this_update: now,
        next_update,
        entries: entries_len,
        der,
    })
}

/// The delta CRL of one of a CA's keys: the current key's ([`current_delta`]), or for a
/// retired key one signed by that key relative to the key's complete CRL
/// ([`current_for_key`]), held in this process's memory like it. Certificates the retired
/// key signed name this delta in their freshestCRL extension. The retired key's complete
/// CRL is signed again at every revocation, so its delta is usually empty; it exists so
/// that a client following freshestCRL gets a valid delta signed by the right key. 404
/// when the CA does not publish delta CRLs or never had that key.
pub async fn current_delta_for_key(
    ra: &Authority,
    ca_id: &str,
    key_generation: i64,
) -> Result<DeltaRow> {
    let ca = crate::rollover::current(ra, load_ca(ra, ca_id).await?).await?;
    if key_generation == ca.key_generation || !ca.crl_delta_enabled {
        // The current key's delta, or the 404 naming the setting.
        return current_delta(ra, ca_id).await;
    }
    let (base, g) = retired_crl(ra, &ca, key_generation).await?;
    let slot = (ca_id.to_string(), key_generation);
    let held = || {
        let map = ra.retired_crls.deltas.lock();
        let map = map.unwrap_or_else(|p| p.into_inner());
        map.get(&slot)
            .filter(|d| !delta_needs_refresh(Some(d), &base, base.revision, ra.now()))
            .cloned()
    };
    if let Some(d) = held() {
        return Ok(d);
    }
    let lock = ra.crl_locks.for_ca(&format!("{ca_id}-g{key_generation}"));
    let _guard = lock.lock().await;
    if let Some(d) = held() {
        return Ok(d);
    }
    let signer = Arc::new(crate::rollover::open_retired(ra, &ca, &g)?);
    let row = sign_delta(ra, signer, &ca, &base).await?;
    ra.retired_crls
        .deltas
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(slot, row.clone());
    Ok(row)
}

/// The serials (lower-case hex, as stored) a signed CRL lists.
fn base_serials(der: &[u8]) -> Result<std::collections::HashSet<String>> {
    let (_, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| Error::internal(format!("stored CRL unreadable: {e}")))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| ca::serial_hex(r.raw_serial()))
        .collect())
}

/// The background job's round for one CA: its base CRL, and its delta when on.
pub async fn refresh(ra: &Authority, ca_id: &str) -> Result<()> {
    let ca = load_ca(ra, ca_id).await?;
    if ca.crl_delta_enabled {
        // Refreshes the base first.
        current_delta(ra, ca_id).await?;
    } else {
        current(ra, ca_id).await?;
    }
    Ok(())
}

/// Wanted CRL settings of a CA (`None`: keep the current value).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Publish a CRL.
    pub enabled: bool,
    /// A base CRL's period, hours.
    pub next_update_hours: Option<i64>,
    /// Publish delta CRLs.
    pub delta_enabled: Option<bool>,
    /// A delta CRL's period, minutes.
    pub delta_interval_minutes: Option<i64>,
}

/// Changes the CRL settings of a tenant's CA, each value checked (422 naming the field).
pub async fn set_settings(ra: &Authority, tenant_id: &str, ca_id: &str, s: Settings) -> Result<()> {
    let ca = crate::hierarchy::load(ra, tenant_id, ca_id).await?;
    let hours = s.next_update_hours.unwrap_or(ca.crl_next_update_hours);
    if !(1..=24 * 366).contains(&hours) {
        return Err(Error::invalid(
            "next_update_hours",
            "must be between 1 and 8784 (a year)",
        ));
    }
    let delta = s.delta_enabled.unwrap_or(ca.crl_delta_enabled);
    let minutes = s.delta_interval_minutes.unwrap_or(ca.crl_delta_minutes);
    if !DELTA_MINUTES.contains(&minutes) {
        return Err(Error::invalid(
            "delta_interval_minutes",
            format!(
                "must be between {} and {} (a day)",
                DELTA_MINUTES.start(),
                DELTA_MINUTES.end()
            ),
        ));
    }
    if delta && !s.enabled {
        return Err(Error::invalid(
            "delta_enabled",
            "delta CRLs need the CRL itself: set enabled to true, or delta_enabled to false",
        ));
    }
    if delta && minutes >= hours * 60 {
        return Err(Error::invalid(
            "delta_interval_minutes",
            format!(
                "must be shorter than the base CRL's period ({hours} hours = {} minutes); \
                 a delta CRL that lives as long as its base adds nothing",
                hours * 60
            ),
        ));
    }
    let mut tx = ra.store.begin().await?;
    store::crls::set_settings(&mut tx, ca_id, s.enabled, hours).await?;
    store::crls::set_delta_settings(&mut tx, ca_id, delta, minutes).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_key_file;

    #[test]
    fn key_file_names() {
        let id = "01a22625-a46a-77c3-829b-08c565d1c761";
        assert_eq!(parse_key_file(id), (id, 1));
        assert_eq!(parse_key_file(&format!("{id}-g2")), (id, 2));
        assert_eq!(parse_key_file(&format!("{id}-g17")), (id, 17));
        // Not a key generation: the whole name is the CA id (a 404 later).
        for odd in [
            "-g1",
            "-g0",
            "-g02",
            "-g",
            "-g+2",
            "-g-2",
            "-gx",
            "-g1234567890",
        ] {
            let name = format!("{id}{odd}");
            assert_eq!(parse_key_file(&name), (name.as_str(), 1), "{odd}");
        }
    }
}
