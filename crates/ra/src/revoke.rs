//! Revoking end-entity certificates: shared by every front end (admin API, ACME
//! revokeCert). The revocation and the CRL's staleness mark commit together, so the next
//! CRL fetch shows it.

use crate::Authority;
use store::{self, certificates::CertRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::RevocationReason;

/// Revokes a certificate of the tenant (shared by every front end).
pub async fn revoke_certificate(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    reason: RevocationReason,
) -> Result<CertRow> {
    let c = {
        let mut conn = ra.store.reader().acquire().await?;
        store::certificates::get(&mut conn, tenant_id, id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no certificate with id {id} in this tenant"))
            })?
    };
    let now = ra.now();
    let mut tx = ra.store.begin().await?;
    if !store::certificates::revoke(&mut tx, id, now, reason).await? {
        return Err(Error::conflict(format!(
            "certificate {id} is already revoked"
        )));
    }
    if let Some(ca) = &c.ca_id {
        store::crls::bump_revision(&mut tx, ca).await?;
        // Its held OCSP responses go in the same commit; replicas read the event.
        store::ocsp::revoked(&mut tx, ca, &c.serial, now).await?;
    }
    // Its synced and shared copies show it revoked.
    store::managed::origin_revoked(&mut tx, id, now).await?;
    // The overview's expiry counters; last, after the CA row (the group commit's lock order).
    store::stats::uncount(&mut tx, &c).await?;
    let mut data = crate::notify::certificate_data(&c);
    data["reason"] = serde_json::json!(reason);
    data["revoked_at"] = serde_json::json!(vellum_core::time::rfc3339(now));
    crate::notify::emit_one(
        &mut tx,
        tenant_id,
        vellum_core::status::NotificationEvent::CertificateRevoked,
        data,
        now,
    )
    .await?;
    tx.commit().await?;
    if let Some(ca) = &c.ca_id {
        ra.ocsp.forget(ca, Some(&c.serial));
    }
    let mut conn = ra.store.reader().acquire().await?;
    store::certificates::get(&mut conn, tenant_id, id)
        .await?
        .ok_or_else(|| Error::internal("certificate vanished"))
}

/// Deletes a revoked or expired certificate of the tenant from the inventory (it stays on
/// its CRL while unexpired). Its share ends in the same transaction; returns the
/// certificate and the tenant that lost its shared copy, if any. Its synced copy stays.
pub async fn delete_certificate(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
) -> Result<(CertRow, Option<String>)> {
    let c = {
        let mut conn = ra.store.reader().acquire().await?;
        store::certificates::get(&mut conn, tenant_id, id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no certificate with id {id} in this tenant"))
            })?
    };
    let now = ra.now();
    let mut tx = ra.store.begin().await?;
    let deleted = store::certificates::delete(&mut tx, id, now).await?;
    if deleted == store::certificates::Deleted::No {
        return Err(Error::conflict(format!(
            "certificate {id} is {} (valid until {}); revoke it before deleting it",
            c.status(now),
            vellum_core::time::rfc3339(c.not_after)
        )));
    }
    let recipient = store::managed::end_share(&mut tx, id, now).await?;
    if deleted == store::certificates::Deleted::Unrevoked {
        // Out of the expiry counters (`/pending`'s expired window reads them); last.
        store::stats::uncount(&mut tx, &c).await?;
    }
    tx.commit().await?;
    Ok((c, recipient))
}
