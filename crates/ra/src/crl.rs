//! Keeping each CA's CRL current: regenerated when a revocation (or a settings change)
//! made it stale, and before its nextUpdate. Numbers come from the database, so they
//! strictly increase across restarts and replicas.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::Authority;
use ca::crl::{self as signer_crl, Entry};
use store::{self, cas::CaRow, crls::CrlRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::CaStatus;

/// A CRL is re-signed when less than this share of its period is left.
const REFRESH_FRACTION: i64 = 3;

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
            c.revision < ca.revision
                || now >= c.next_update - (c.next_update - c.this_update) / REFRESH_FRACTION
        }
    }
}

struct CrlRowView {
    revision: i64,
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
        crl: store::crls::get(&mut conn, &ca.id).await?,
    })
}

/// Signs a new CRL for `ca` now and stores it.
pub async fn regenerate(ra: &Authority, ca: &CaRow) -> Result<CrlRow> {
    let now = ra.now();
    let (revision, entries): (i64, Vec<Entry>) = {
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
    };
    let signer = super::signer_for(ra, ca).await?;
    let mut tx = ra.store.begin().await?;
    let (number, _) = store::crls::next_number(&mut tx, &ca.id).await?;
    tx.commit().await?;
    let next_update = now + ca.crl_next_update_hours.max(1) * 3600;
    let entries_len = entries.len() as i64;
    let der = tokio::task::spawn_blocking(move || {
        signer_crl::sign(&signer, number, now, next_update, &entries)
    })
    .await
    .map_err(Error::internal)??;
    let row = CrlRow {
        ca_id: ca.id.clone(),
        crl_number: number,
        revision,
        this_update: now,
        next_update,
        entries: entries_len,
        der,
    };
    let mut tx = ra.store.begin().await?;
    store::crls::put(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(row)
}
