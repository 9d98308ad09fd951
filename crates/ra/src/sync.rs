//! Sync: copies of private-CA certificates in the tenant's managed list
//! (`POST /cas/{id}/certificates/sync`), and the renewal that keeps a copy current.
//!
//! A synced copy is a managed row of source `synced` in the certificate's own tenant that
//! remembers its origin (`origin_certificate_id`). The unique index `managed_synced_origin`
//! (tenant, origin) over live rows makes syncing again a no-op: the insert does nothing and
//! the answer counts it as already synced. The key, when the server holds it, is opened
//! from the certificate's seal and sealed again under the copy's id. Revoked and deleted
//! certificates are skipped and reported.
//!
//! A renewal of a certificate with a synced copy (`renew::renew`, and only it: one read of
//! the copy per renewal, nothing on a plain issuance) carries a
//! [`Followup::SyncedRenewal`]: the issuance fills in the new facts, key and chain after
//! signing, and the recorder updates the copy in the transaction that records the renewal.

use std::collections::{BTreeMap, BTreeSet};

use ca::inspect;
use rcgen::KeyPair;
use serde_json::json;
use store::certificates::CertRow;
use store::managed::{ManagedRow, SyncedRefresh};
use vellum_core::error::{Error, Result};
use vellum_core::status::{ManagedSource, SyncSkip};
use zeroize::Zeroizing;

use crate::record::Followup;
use crate::Authority;

/// Most ids one sync request may name.
pub const MAX_IDS: usize = 1000;
/// Certificates copied per transaction when syncing everything.
const PAGE: i64 = 200;

/// Which certificates a sync copies.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These certificates (each must have been issued by the CA, or by an intermediate of
    /// the root, named in the path).
    Ids(Vec<String>),
    /// Every certificate the CA (or the root's intermediates) issued.
    All,
}

/// A certificate a sync left out, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The certificate.
    pub certificate_id: String,
    /// Revoked or deleted.
    pub reason: SyncSkip,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Managed ids of the copies made now.
    pub added: Vec<String>,
    /// Certificates that already had a live synced copy.
    pub already_synced: usize,
    /// Certificates left out.
    pub skipped: Vec<Skipped>,
}

/// The chain of certificates issued by `ca_id`: the CA's certificate, then its parents'.
pub async fn ca_chain(conn: &mut store::Conn, ca_id: &str) -> Result<Vec<Vec<u8>>> {
    crate::rollover::ca_chain(conn, ca_id).await
}

/// JSON list of `{"type","value"}` of a certificate's SANs (the managed list's shape).
fn sans_json(info: &inspect::CertInfo) -> String {
    serde_json::Value::Array(
        info.sans
            .iter()
            .map(|(t, v)| json!({"type": t, "value": v}))
            .collect(),
    )
    .to_string()
}

/// A managed copy of `c` for `tenant_id` (`source`: synced or shared), without its key.
pub fn copy_of(
    c: &CertRow,
    tenant_id: &str,
    source: ManagedSource,
    chain: &[Vec<u8>],
    now: i64,
) -> Result<ManagedRow> {
    let info = inspect::cert_info(&c.certificate_der).map_err(Error::internal)?;
    let name = c
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            if c.common_name.is_empty() {
                c.id.clone()
            } else {
                c.common_name.clone()
            }
        });
    Ok(ManagedRow {
        id: uuid::Uuid::now_v7().simple().to_string(),
        tenant_id: tenant_id.to_string(),
        name,
        source,
        tags_json: c.tags_json.clone(),
        notifications: true,
        subject: info.subject.clone(),
        common_name: info.common_name.clone(),
        sans_json: sans_json(&info),
        issuer: info.issuer.clone(),
        serial: info.serial.clone(),
        key_algorithm: c.key_algorithm.clone(),
        not_before: c.not_before,
        not_after: c.not_after,
        leakage_risk: c.leakage_risk,
        certificate_der: c.certificate_der.clone(),
        chain_der: chain.concat(),
        key_sealed: None,
        created_at: now,
        deleted_at: None,
        origin_certificate_id: Some(c.id.clone()),
        shared_by_tenant_id: None,
        shared_by_name: None,
        revoked_at: c.revoked_at,
    })
}

/// Syncs certificates issued by `ca_id` (an intermediate of the tenant, or a root: its
/// intermediates) into the tenant's managed list.
pub async fn sync(ra: &Authority, tenant_id: &str, ca_id: &str, sel: &Selection) -> Result<Report> {
    let (issuers, chains) = {
        let mut conn = ra.store.reader().acquire().await?;
        let ca = store::cas::get(&mut conn, tenant_id, ca_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no CA with id {ca_id} in this tenant")))?;
        let issuers: Vec<String> = if ca.is_root() {
            store::cas::children(&mut conn, &ca.id)
                .await?
                .into_iter()
                .filter(|c| c.tenant_id == tenant_id)
                .map(|c| c.id)
                .collect()
        } else {
            vec![ca.id.clone()]
        };
        let mut chains = BTreeMap::new();
        for i in &issuers {
            chains.insert(i.clone(), ca_chain(&mut conn, i).await?);
        }
        (issuers, chains)
    };
    let mut report = Report::default();
    match sel {
        Selection::Ids(ids) => {
            if ids.is_empty() {
                return Err(Error::invalid(
                    "certificate_ids",
                    "must name at least one certificate (or send {\"all\": true})",
                ));
            }
            if ids.len() > MAX_IDS {
                return Err(Error::invalid(
                    "certificate_ids",
                    format!("must name at most {MAX_IDS} certificates per request"),
                ));
            }
            let unique: Vec<String> = ids
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let rows = {
                let mut conn = ra.store.reader().acquire().await?;
                store::certificates::get_many(&mut conn, tenant_id, &unique).await?
            };
            let by_id: BTreeMap<&str, &CertRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
            let mut chosen = Vec::with_capacity(rows.len());
            for (i, id) in ids.iter().enumerate() {
                match by_id.get(id.as_str()) {
                    Some(c)
                        if c.ca_id
                            .as_deref()
                            .is_some_and(|a| issuers.iter().any(|i| i == a)) =>
                    {
                        chosen.push(*c)
                    }
                    _ => {
                        return Err(Error::invalid(
                            format!("certificate_ids[{i}]"),
                            format!(
                                "{id} is not a certificate issued by CA {ca_id} in this tenant"
                            ),
                        ))
                    }
                }
            }
            let mut seen = BTreeSet::new();
            chosen.retain(|c| seen.insert(c.id.clone()));
            copy_page(ra, tenant_id, &chosen, &chains, &mut report).await?;
        }
        Selection::All => {
            for issuer in &issuers {
                let mut after = String::new();
                loop {
                    let rows = {
                        let mut conn = ra.store.reader().acquire().await?;
                        store::certificates::page_of_ca(&mut conn, tenant_id, issuer, &after, PAGE)
                            .await?
                    };
                    let Some(last) = rows.last() else { break };
                    after = last.id.clone();
                    let refs: Vec<&CertRow> = rows.iter().collect();
                    copy_page(ra, tenant_id, &refs, &chains, &mut report).await?;
                    if (rows.len() as i64) < PAGE {
                        break;
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Copies one page of certificates in one transaction.
async fn copy_page(
    ra: &Authority,
    tenant_id: &str,
    rows: &[&CertRow],
    chains: &BTreeMap<String, Vec<Vec<u8>>>,
    report: &mut Report,
) -> Result<()> {
    let now = ra.now();
    let empty = Vec::new();
    let mut copies = Vec::with_capacity(rows.len());
    for c in rows {
        if c.deleted_at.is_some() {
            report.skipped.push(Skipped {
                certificate_id: c.id.clone(),
                reason: SyncSkip::Deleted,
            });
            continue;
        }
        if c.revoked_at.is_some() {
            report.skipped.push(Skipped {
                certificate_id: c.id.clone(),
                reason: SyncSkip::Revoked,
            });
            continue;
        }
        let chain = c
            .ca_id
            .as_ref()
            .and_then(|a| chains.get(a))
            .unwrap_or(&empty);
        let mut copy = copy_of(c, tenant_id, ManagedSource::Synced, chain, now)?;
        if let Some(sealed) = &c.key_sealed {
            // The stored form (PKCS#8 PEM) sealed again under the copy's own id.
            let pem = ra.master.open(&c.id, sealed)?;
            copy.key_sealed = Some(ra.master.seal(&copy.id, &pem)?);
        }
        copies.push(copy);
    }
    if copies.is_empty() {
        return Ok(());
    }
    let mut tx = ra.store.begin().await?;
    // Reminders on for as many copies as the notification quota allows.
    let mut left = crate::notify::quota_left(ra, &mut tx, tenant_id).await?;
    for copy in &mut copies {
        copy.notifications = left > 0;
        left -= 1;
    }
    let mut added = Vec::new();
    for copy in &copies {
        if store::managed::insert_synced(&mut tx, copy).await? {
            added.push(copy.id.clone());
        } else {
            report.already_synced += 1;
        }
    }
    tx.commit().await?;
    report.added.extend(added);
    Ok(())
}

/// The follow-up of a renewal of `old`: its synced copy, if it has one, follows the
/// renewal (one read; called by renewals only).
pub async fn renewal_followup(ra: &Authority, old: &CertRow) -> Result<Option<Followup>> {
    let mut conn = ra.store.reader().acquire().await?;
    Ok(
        store::managed::synced_copy_of(&mut conn, &old.tenant_id, &old.id)
            .await?
            .map(|managed_id| Followup::SyncedRenewal {
                managed_id,
                refresh: None,
            }),
    )
}

/// What the synced copy `managed_id` becomes with the renewal `record` (signed, not yet
/// recorded): its facts, the new key sealed under the copy's id, the chain.
pub fn refresh(
    ra: &Authority,
    managed_id: &str,
    record: &CertRow,
    generated: Option<&KeyPair>,
    chain: &[Vec<u8>],
) -> Result<SyncedRefresh> {
    let info = inspect::cert_info(&record.certificate_der).map_err(Error::internal)?;
    let key_sealed = match generated {
        Some(k) => {
            let pem = Zeroizing::new(k.serialize_pem());
            Some(ra.master.seal(managed_id, pem.as_bytes())?)
        }
        None => None,
    };
    Ok(SyncedRefresh {
        origin_certificate_id: record.id.clone(),
        subject: info.subject.clone(),
        common_name: info.common_name.clone(),
        sans_json: sans_json(&info),
        issuer: info.issuer.clone(),
        serial: info.serial.clone(),
        key_algorithm: record.key_algorithm.clone(),
        not_before: record.not_before,
        not_after: record.not_after,
        leakage_risk: record.leakage_risk,
        certificate_der: record.certificate_der.clone(),
        chain_der: chain.concat(),
        key_sealed,
    })
}
