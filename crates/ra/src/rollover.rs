//! CA certificate renewal and rollover (issue 17): a new certificate for an enabled root
//! (self-signed) or intermediate (signed by its root), with the same key or a new one,
//! which becomes the CA's current certificate at a chosen switch-over time.
//!
//! - Every certificate a CA held is a generation (`store::generations`); the `cas` row
//!   keeps the CA's identity and the *current* generation, so the issuance path, CRLs and
//!   OCSP read one row as before.
//! - The switch-over is one conditional `UPDATE cas … WHERE serial = <old serial>`
//!   ([`switch_due`]); the recorder spends quota only while the row holds the serial a
//!   leaf was signed under, so no leaf is ever recorded under a certificate that did not
//!   sign it (one signed just before the switch is refused as "CA changed": retry). It
//!   happens in the renewal's own transaction when the time is now, otherwise on the
//!   first issuance, EST `cacerts` or ACME chain download after the time, and in the
//!   background job's round (every minute) whatever comes first.
//! - A root renewed with a new key also gets a cross-signed certificate (the new key
//!   certified by the old one), so clients that trust only the old root keep validating
//!   chains through the new one.
//! - A new key publishes its CRL and certificate at URLs of its own
//!   (`ca::profile::PublicationUrls::for_key`): certificates signed by an older key keep
//!   finding a CRL signed by that key ([`crate::crl::current_for_key`]).

use std::sync::Arc;

use crate::Authority;
use ca::keys::KeyAlgorithm;
use ca::profile::{self, PublicationUrls, Validity};
use ca::{CaKey, Signer};
use store::cas::CaRow;
use store::generations::{self, Current, GenerationRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::{CaStatus, KeyStorage, NotificationEvent};

/// Switch-over times further in the past than this are refused (clock slips are not).
const PAST_TOLERANCE_SECS: i64 = 300;

/// What a renewal asks for.
#[derive(Debug, Clone)]
pub struct RenewRequest {
    /// Keep the CA's key (new serial and validity only), or generate a new one of the
    /// same algorithm, kept where the old one is (sealed here, or in the PKCS#11 token).
    pub same_key: bool,
    /// Validity of the new certificate, days from now.
    pub validity_days: i64,
    /// When the new certificate becomes the current one (Unix seconds); `None`: now.
    pub switch_over_at: Option<i64>,
}

/// What a renewal made.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The CA after the renewal (already switched over when the time was now).
    pub ca: CaRow,
    /// The new generation.
    pub generation: GenerationRow,
}

/// Renews the certificate of an enabled CA of the tenant (see the module documentation).
pub async fn renew(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    req: &RenewRequest,
) -> Result<Renewed> {
    // A renewal whose time has come is switched over first (it is then the one renewed).
    let ca = current(ra, crate::hierarchy::load(ra, tenant_id, id).await?).await?;
    let now = ra.now();
    check_renewable(&ca, now)?;
    if !(1..=crate::hierarchy::MAX_CA_VALIDITY_DAYS).contains(&req.validity_days) {
        return Err(Error::invalid(
            "validity_days",
            format!(
                "must be between 1 and {}",
                crate::hierarchy::MAX_CA_VALIDITY_DAYS
            ),
        ));
    }
    let old_not_after = ca.not_after.unwrap_or(now);
    let switch_at = match req.switch_over_at {
        None => now,
        Some(t) if t < now - PAST_TOLERANCE_SECS => {
            return Err(Error::invalid(
                "switch_over_at",
                format!(
                    "{} is in the past; omit it to switch over now",
                    vellum_core::time::rfc3339(t)
                ),
            ))
        }
        Some(t) if t >= old_not_after => {
            return Err(Error::invalid(
                "switch_over_at",
                format!(
                    "must be before the current certificate expires ({}), or its clients \
                     would be left without a valid issuer in between",
                    vellum_core::time::rfc3339(old_not_after)
                ),
            ))
        }
        Some(t) => t.max(now),
    };
    let not_before = now - 60;
    let not_after = now + req.validity_days * 86_400;
    if not_after <= switch_at {
        return Err(Error::invalid(
            "validity_days",
            "the new certificate would expire before its switch-over",
        ));
    }
    let parent = match &ca.parent_id {
        None => None,
        Some(pid) => {
            let parent = current(ra, crate::hierarchy::load(ra, tenant_id, pid).await?).await?;
            if parent.status != CaStatus::Enabled {
                return Err(Error::conflict(format!(
                    "root CA {pid} is {}; an intermediate is renewed by its enabled root",
                    parent.status
                )));
            }
            if let Some(limit) = parent.not_after {
                if not_after > limit {
                    let max_days = (limit - now) / 86_400;
                    return Err(Error::invalid(
                        "validity_days",
                        format!(
                            "{} days would outlive the certificate of root CA {pid} (it \
                             expires {}); at most {max_days} days, or renew the root first",
                            req.validity_days,
                            vellum_core::time::rfc3339(limit)
                        ),
                    ));
                }
            }
            Some(parent)
        }
    };
    let Some(old_der) = ca.certificate_der.clone() else {
        return Err(Error::conflict(format!("CA {id} has no certificate")));
    };
    let old_serial = ca.serial.clone().unwrap_or_default();
    let old_signer = crate::signer_for(ra, &ca).await?;
    let next = ca.generation + 1;
    let next_id = GenerationRow::id_of(&ca.id, next);

    // The key of the new certificate.
    let new_key: Option<CaKey> = if req.same_key {
        None
    } else {
        Some(generate_key(ra, &ca, next).await?)
    };
    let result = sign_and_store(
        ra,
        &ca,
        parent.as_ref(),
        &old_der,
        &old_serial,
        &old_signer,
        new_key.as_ref(),
        Validity {
            not_before,
            not_after,
        },
        switch_at,
        &next_id,
        next,
    )
    .await;
    let generation = match result {
        Ok(g) => g,
        Err(e) => {
            // Leave no orphan key behind in the token.
            if let (Some(CaKey::Pkcs11(k)), Some(hsm)) = (&new_key, &ra.hsm) {
                let _ = hsm.destroy(k.id_hex());
            }
            return Err(e);
        }
    };
    let ca = crate::hierarchy::load(ra, tenant_id, id).await?;
    Ok(Renewed { ca, generation })
}

/// 409 unless `ca` may be renewed at `now`: enabled, in service, its certificate not
/// expired, no renewal waiting.
fn check_renewable(ca: &CaRow, now: i64) -> Result<()> {
    let id = &ca.id;
    if ca.status != CaStatus::Enabled {
        return Err(Error::conflict(format!(
            "CA {id} is {}; only an enabled CA can be renewed",
            ca.status
        )));
    }
    if ca.service_until <= now {
        return Err(Error::conflict(format!(
            "the service period of CA {id} ended at {}; renew its root's service first",
            vellum_core::time::rfc3339(ca.service_until)
        )));
    }
    if let Some(end) = ca.not_after {
        if end <= now {
            return Err(Error::conflict(format!(
                "the certificate of CA {id} expired at {}; a CA is renewed before its \
                 certificate expires (reset it and enable it again)",
                vellum_core::time::rfc3339(end)
            )));
        }
    }
    if let Some(at) = ca.rollover_at {
        return Err(Error::conflict(format!(
            "a renewal of CA {id} already waits for its switch-over at {}; renew again after it",
            vellum_core::time::rfc3339(at)
        )));
    }
    Ok(())
}

/// A new key for generation `generation` of `ca`: same algorithm, kept where the CA's
/// key is kept.
async fn generate_key(ra: &Authority, ca: &CaRow, generation: i64) -> Result<CaKey> {
    let alg: KeyAlgorithm = ca.key_algorithm.parse().map_err(Error::internal)?;
    let hsm = match ca.key_storage {
        KeyStorage::Database => None,
        KeyStorage::Pkcs11 => Some(ra.hsm.clone().ok_or_else(|| {
            Error::config(format!(
                "CA {} keeps its key in a PKCS#11 token, but no [pkcs11] token is configured",
                ca.id
            ))
        })?),
    };
    let label = format!("{}-g{generation}", ca.id);
    tokio::task::spawn_blocking(move || match hsm {
        None => alg.generate().map(CaKey::Database),
        Some(hsm) => hsm.generate(alg, &label).map(CaKey::Pkcs11),
    })
    .await
    .map_err(Error::internal)?
}

#[allow(clippy::too_many_arguments)]
async fn sign_and_store(
    ra: &Authority,
    ca: &CaRow,
    parent: Option<&CaRow>,
    old_der: &[u8],
    old_serial: &str,
    old_signer: &Arc<Signer>,
    new_key: Option<&CaKey>,
    validity: Validity,
    switch_at: i64,
    next_id: &str,
    next: i64,
) -> Result<GenerationRow> {
    let key: &CaKey = new_key.unwrap_or_else(|| old_signer.issuer().key());
    let (der, serial) = match parent {
        None => profile::renewed_root(old_der, validity, key)?,
        Some(parent) => {
            let parent_signer = crate::signer_for(ra, parent).await?;
            let urls = PublicationUrls::for_key(
                &ra.config.public_http_url(),
                &parent.id,
                parent.key_generation,
            );
            profile::renewed_intermediate(
                old_der,
                validity,
                key,
                &parent_signer,
                &urls,
                parent.ocsp_enabled,
                parent.crl_enabled && parent.crl_delta_enabled,
            )?
        }
    };
    let cross_signed_der = match (parent, new_key) {
        (None, Some(new_key)) => {
            // Never beyond the old root's own end.
            let end = validity
                .not_after
                .min(ca.not_after.unwrap_or(validity.not_after));
            Some(
                profile::cross_signed(
                    &der,
                    new_key,
                    old_signer,
                    Validity {
                        not_before: validity.not_before,
                        not_after: end,
                    },
                )?
                .0,
            )
        }
        _ => None,
    };
    let now = ra.now();
    // The key, sealed for the generation row (and for the cas row if it takes over now).
    let (key_sealed, key_storage, pkcs11_key_id, pkcs11_key_label) = match new_key {
        Some(CaKey::Database(k)) => (
            Some(ra.master.seal_key(&format!("ca-generation:{next_id}"), k)?),
            KeyStorage::Database,
            None,
            None,
        ),
        Some(CaKey::Pkcs11(k)) => (
            None,
            KeyStorage::Pkcs11,
            Some(k.id_hex().to_string()),
            Some(k.label().to_string()),
        ),
        None => (
            reseal(ra, &ca.id, ca.key_sealed.as_deref(), next_id)?,
            ca.key_storage,
            ca.pkcs11_key_id.clone(),
            ca.pkcs11_key_label.clone(),
        ),
    };
    let g = GenerationRow {
        id: next_id.to_string(),
        ca_id: ca.id.clone(),
        generation: next,
        key_generation: if new_key.is_some() {
            next
        } else {
            ca.key_generation
        },
        serial,
        certificate_der: der,
        key_sealed,
        key_storage,
        pkcs11_key_id,
        pkcs11_key_label,
        not_before: validity.not_before,
        not_after: validity.not_after,
        cross_signed_der,
        switch_over_at: switch_at,
        created_at: now,
    };
    let mut tx = ra.store.begin().await?;
    let known = generations::list(&mut tx, &ca.id).await?;
    if known.is_empty() {
        // The first renewal: the certificate the CA was enabled with becomes generation 1.
        let first_id = GenerationRow::id_of(&ca.id, ca.generation);
        let first = GenerationRow {
            key_sealed: reseal(ra, &ca.id, ca.key_sealed.as_deref(), &first_id)?,
            id: first_id,
            ca_id: ca.id.clone(),
            generation: ca.generation,
            key_generation: ca.key_generation,
            serial: old_serial.to_string(),
            certificate_der: old_der.to_vec(),
            key_storage: ca.key_storage,
            pkcs11_key_id: ca.pkcs11_key_id.clone(),
            pkcs11_key_label: ca.pkcs11_key_label.clone(),
            not_before: ca.not_before.unwrap_or_default(),
            not_after: ca.not_after.unwrap_or_default(),
            cross_signed_der: None,
            switch_over_at: ca.enabled_at.or(ca.not_before).unwrap_or(ca.created_at),
            created_at: ca.enabled_at.unwrap_or(ca.created_at),
        };
        generations::insert(&mut tx, &first).await?;
    }
    generations::insert(&mut tx, &g).await?;
    if !generations::mark_waiting(&mut tx, &ca.id, old_serial, switch_at).await? {
        return Err(Error::conflict(format!(
            "CA {} changed while being renewed (another renewal, a reset or a revocation); \
             fetch it and retry",
            ca.id
        )));
    }
    if switch_at <= now {
        let current = Current {
            generation: &g,
            key_sealed: sealed_for_ca(ra, &ca.id, &g)?,
        };
        if !generations::switch_over(&mut tx, &ca.id, old_serial, &current, now).await? {
            return Err(Error::conflict(format!(
                "CA {} changed while being renewed; fetch it and retry",
                ca.id
            )));
        }
    }
    if let Some(row) = store::cas::get_any_tenant(&mut tx, &ca.id).await? {
        crate::notify::emit_one(
            &mut tx,
            &ca.tenant_id,
            NotificationEvent::CaRenewed,
            crate::notify::ca_data(&row),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(g)
}

/// A key sealed for CA `ca_id` (context: the CA id) sealed again for generation row
/// `generation_id`. `None` in, `None` out (a key in the token).
fn reseal(
    ra: &Authority,
    ca_id: &str,
    sealed: Option<&[u8]>,
    generation_id: &str,
) -> Result<Option<Vec<u8>>> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = ra.master.open(ca_id, sealed)?;
    Ok(Some(
        ra.master
            .seal(&format!("ca-generation:{generation_id}"), &plain)?,
    ))
}

/// A generation's key sealed for the `cas` row (context: the CA id).
fn sealed_for_ca(ra: &Authority, ca_id: &str, g: &GenerationRow) -> Result<Option<Vec<u8>>> {
    let Some(sealed) = &g.key_sealed else {
        return Ok(None);
    };
    let plain = ra.master.open(&g.seal_context(), sealed)?;
    Ok(Some(ra.master.seal(ca_id, &plain)?))
}

/// The keys `ca` signed with before its current one (it was renewed with a new key), each
/// by the newest certificate that carried it, oldest key first. Renewals still waiting for
/// their switch-over are not retired keys (they never signed anything).
pub(crate) async fn retired_keys(ra: &Authority, ca: &CaRow) -> Result<Vec<GenerationRow>> {
    let gens = {
        let mut conn = ra.store.reader().acquire().await?;
        generations::list(&mut conn, &ca.id).await?
    };
    let mut keys: Vec<GenerationRow> = Vec::new();
    for g in gens
        .into_iter()
        .filter(|g| g.generation <= ca.generation && g.key_generation != ca.key_generation)
    {
        match keys
            .iter_mut()
            .find(|k| k.key_generation == g.key_generation)
        {
            Some(k) if k.generation < g.generation => *k = g,
            Some(_) => {}
            None => keys.push(g),
        }
    }
    keys.sort_by_key(|k| k.key_generation);
    Ok(keys)
}

/// Opens the key of a retired generation `g` of `ca` (sealed here or held in the token),
/// with `g`'s certificate as the signer's: for CRLs and OCSP responses about what that key
/// signed.
pub(crate) fn open_retired(ra: &Authority, ca: &CaRow, g: &GenerationRow) -> Result<Signer> {
    match &g.key_sealed {
        // Sealed for its generation: opened once, as it is.
        Some(sealed) => Signer::from_parts(
            &ca.id,
            g.certificate_der.clone(),
            ra.master.open_key(&g.seal_context(), sealed)?,
        ),
        // In the token: found by the generation's object id and label.
        None => Signer::open(
            &ra.master,
            ra.hsm.as_ref(),
            &CaRow {
                certificate_der: Some(g.certificate_der.clone()),
                key_sealed: None,
                key_storage: g.key_storage,
                pkcs11_key_id: g.pkcs11_key_id.clone(),
                pkcs11_key_label: g.pkcs11_key_label.clone(),
                serial: Some(g.serial.clone()),
                ..ca.clone()
            },
        ),
    }
}

/// Makes the waiting renewal of CA `ca_id` current if its switch-over time has come.
/// True when this call switched it (false: nothing due, or another request did it).
pub async fn switch_due(ra: &Authority, ca_id: &str) -> Result<bool> {
    let now = ra.now();
    let (ca, gens) = {
        let mut conn = ra.store.reader().acquire().await?;
        let Some(ca) = store::cas::get_any_tenant(&mut conn, ca_id).await? else {
            return Ok(false);
        };
        if ca.status != CaStatus::Enabled || ca.rollover_at.is_none_or(|t| t > now) {
            return Ok(false);
        }
        let gens = generations::list(&mut conn, ca_id).await?;
        (ca, gens)
    };
    let Some(next) = gens.iter().find(|g| g.generation == ca.generation + 1) else {
        return Err(Error::internal(format!(
            "CA {ca_id} waits for a switch-over but has no generation {}",
            ca.generation + 1
        )));
    };
    let current = Current {
        generation: next,
        key_sealed: sealed_for_ca(ra, ca_id, next)?,
    };
    let mut tx = ra.store.begin().await?;
    let switched = generations::switch_over(
        &mut tx,
        ca_id,
        ca.serial.as_deref().unwrap_or_default(),
        &current,
        now,
    )
    .await?;
    tx.commit().await?;
    if switched {
        tracing::info!(ca = %ca_id, generation = next.generation, "CA certificate switched over");
    }
    Ok(switched)
}

/// `ca` as it stands once a due switch-over has happened (read again only then; a switch
/// that fails is logged and `ca` returned as it was).
pub async fn current(ra: &Authority, ca: CaRow) -> Result<CaRow> {
    if ca.rollover_at.is_none_or(|t| t > ra.now()) {
        return Ok(ca);
    }
    if let Err(e) = switch_due(ra, &ca.id).await {
        // The old certificate is still valid: serve it rather than fail the request.
        tracing::warn!(ca = %ca.id, error = %e, "could not switch over a renewed CA");
        return Ok(ca);
    }
    let mut conn = ra.store.reader().acquire().await?;
    Ok(store::cas::get_any_tenant(&mut conn, &ca.id)
        .await?
        .unwrap_or(ca))
}

/// The background round: switches every CA whose renewal is due. Returns how many.
pub async fn switch_all_due(ra: &Authority) -> Result<usize> {
    let ids = {
        let mut conn = ra.store.reader().acquire().await?;
        generations::due(&mut conn, ra.now()).await?
    };
    let mut n = 0;
    for id in ids {
        match switch_due(ra, &id).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(ca = %id, error = %e, "could not switch over a renewed CA"),
        }
    }
    Ok(n)
}

/// The certificate of CA `parent` that issued `child_der`: the current one when its key
/// signed it (or the child names no key), else the newest generation of that key (a
/// root renewed with a new key keeps its old intermediates' chains right).
pub async fn issuer_certificate(
    conn: &mut store::Conn,
    parent: &CaRow,
    child_der: &[u8],
) -> Result<Option<Vec<u8>>> {
    let Some(current) = &parent.certificate_der else {
        return Ok(None);
    };
    let Some(aki) = ca::key_ids(child_der)?.authority else {
        return Ok(Some(current.clone()));
    };
    if ca::key_ids(current)?.subject.as_deref() == Some(aki.as_slice()) {
        return Ok(Some(current.clone()));
    }
    for g in generations::list(conn, &parent.id).await?.iter().rev() {
        if ca::key_ids(&g.certificate_der)?.subject.as_deref() == Some(aki.as_slice()) {
            return Ok(Some(g.certificate_der.clone()));
        }
    }
    Ok(Some(current.clone()))
}

/// The chain of CA `ca_id`'s current certificate: it, then the certificate of its root
/// that issued it ([`issuer_certificate`]).
pub async fn ca_chain(conn: &mut store::Conn, ca_id: &str) -> Result<Vec<Vec<u8>>> {
    let Some(ca) = store::cas::get_any_tenant(conn, ca_id).await? else {
        return Ok(Vec::new());
    };
    let Some(der) = ca.certificate_der.clone() else {
        return Ok(Vec::new());
    };
    let mut chain = vec![der.clone()];
    if let Some(pid) = &ca.parent_id {
        if let Some(parent) = store::cas::get_any_tenant(conn, pid).await? {
            if let Some(p) = issuer_certificate(conn, &parent, &der).await? {
                chain.push(p);
            }
        }
    }
    Ok(chain)
}

/// One generation as the API lists it.
#[derive(Debug, Clone)]
pub struct GenerationView {
    /// The stored generation.
    pub row: GenerationRow,
    /// Whether it is the CA's current certificate.
    pub current: bool,
    /// Its chain up to its root (itself for a root), DER.
    pub chain: Vec<Vec<u8>>,
    /// Its key's public URLs.
    pub urls: PublicationUrls,
}

/// Every generation of a CA of the tenant, oldest first (a CA never renewed has one:
/// its current certificate). A due switch-over happens first.
pub async fn list(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
) -> Result<(CaRow, Vec<GenerationView>)> {
    let ca = crate::hierarchy::load(ra, tenant_id, id).await?;
    let ca = current(ra, ca).await?;
    let mut conn = ra.store.reader().acquire().await?;
    let mut rows = generations::list(&mut conn, id).await?;
    if rows.is_empty() {
        if let (Some(der), Some(serial)) = (&ca.certificate_der, &ca.serial) {
            rows.push(GenerationRow {
                id: GenerationRow::id_of(&ca.id, ca.generation),
                ca_id: ca.id.clone(),
                generation: ca.generation,
                key_generation: ca.key_generation,
                serial: serial.clone(),
                certificate_der: der.clone(),
                key_storage: ca.key_storage,
                not_before: ca.not_before.unwrap_or_default(),
                not_after: ca.not_after.unwrap_or_default(),
                switch_over_at: ca.enabled_at.unwrap_or_default(),
                created_at: ca.enabled_at.unwrap_or_default(),
                ..GenerationRow::default()
            });
        }
    }
    let parent = match &ca.parent_id {
        Some(pid) => store::cas::get_any_tenant(&mut conn, pid).await?,
        None => None,
    };
    let http = ra.config.public_http_url();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut chain = vec![row.certificate_der.clone()];
        if let Some(parent) = &parent {
            if let Some(p) = issuer_certificate(&mut conn, parent, &row.certificate_der).await? {
                chain.push(p);
            }
        }
        out.push(GenerationView {
            current: ca.serial.as_deref() == Some(row.serial.as_str()),
            urls: PublicationUrls::for_key(&http, &ca.id, row.key_generation),
            chain,
            row,
        });
    }
    // Keys never leave through a view.
    for v in &mut out {
        v.row.key_sealed = None;
    }
    Ok((ca, out))
}
