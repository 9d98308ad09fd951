//! Share: a private-CA certificate lent to another tenant of the same verified entity.
//!
//! Only `POST /certificates/{id}/share` shares: the certificate must be the tenant's
//! (issued by one of its private CAs), neither revoked nor deleted; the recipient must be
//! another tenant with the same `entity` (422 naming both entities otherwise; 404 when no
//! tenant has that id — names are not looked up, so a caller cannot probe tenants by
//! name). The recipient gets a managed row of source `shared` (certificate, chain and
//! facts, NO key: `key_sealed` is NULL) naming the owner tenant. A certificate is shared
//! once: the unique index `managed_shared_origin` holds one live shared copy per origin, so
//! of two concurrent shares one wins and the other gets the 409.
//!
//! `POST /managed/{id}/share` never shares ([`refuse_managed_share`]): an uploaded entry is
//! not a private-CA certificate, a synced entry points at its origin certificate's share
//! call, a received share cannot be shared again (403). The recipient may read the facts
//! and export pem or der, never a key format ([`check_export`], 403).
//!
//! The owner withdraws with `DELETE /certificates/{id}/share`; the recipient may delete its
//! copy (that ends the share). Revoking the owner's certificate marks the copy revoked
//! (`ra::revoke`), deleting it ends the share.

use store::certificates::CertRow;
use store::managed::ManagedRow;
use store::tenants::Tenant;
use vellum_core::error::{Error, Result};
use vellum_core::status::{ManagedSource, SyncSkip};

use crate::Authority;

/// A share that was made.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The certificate shared.
    pub certificate: CertRow,
    /// The recipient's copy.
    pub copy: ManagedRow,
    /// The recipient tenant.
    pub recipient: Tenant,
}

/// The 409 of a certificate that already has a live share.
fn already_shared(cert_id: &str, copy: &ManagedRow, name: Option<&str>) -> Error {
    Error::conflict(format!(
        "certificate {cert_id} is already shared with tenant {} ({}); a certificate is shared \
         once: withdraw it first with DELETE /admin/v1/certificates/{cert_id}/share",
        copy.tenant_id,
        name.unwrap_or("?"),
    ))
}

/// Shares the tenant's certificate `cert_id` with tenant `to` (an id).
pub async fn share_certificate(
    ra: &Authority,
    owner_tenant_id: &str,
    cert_id: &str,
    to: &str,
) -> Result<Shared> {
    let to = to.trim();
    if to.is_empty() {
        return Err(Error::invalid(
            "tenant",
            "must name the tenant to share with (its id)",
        ));
    }
    let mut conn = ra.store.reader().acquire().await?;
    let c = store::certificates::get_many(&mut conn, owner_tenant_id, &[cert_id.to_string()])
        .await?
        .pop()
        .ok_or_else(|| {
            Error::not_found(format!("no certificate with id {cert_id} in this tenant"))
        })?;
    let unshareable = if c.deleted_at.is_some() {
        Some(SyncSkip::Deleted)
    } else if c.revoked_at.is_some() {
        Some(SyncSkip::Revoked)
    } else {
        None
    };
    if let Some(state) = unshareable {
        return Err(Error::invalid(
            "certificate",
            format!("certificate {cert_id} is {state}; a {state} certificate cannot be shared"),
        ));
    }
    let ca_id = c.ca_id.clone().ok_or_else(|| {
        Error::invalid(
            "certificate",
            format!("certificate {cert_id} was not issued by a private CA of this tenant"),
        )
    })?;
    if to == owner_tenant_id {
        return Err(Error::invalid(
            "tenant",
            "is this tenant; a certificate is shared with another tenant of the same entity",
        ));
    }
    let owner = store::tenants::find_tenant(&mut conn, owner_tenant_id)
        .await?
        .ok_or_else(|| Error::internal("the caller's tenant does not exist"))?;
    // By id only: a name would let a caller probe the tenants of other entities.
    let recipient = store::tenants::find_tenant(&mut conn, to)
        .await?
        .filter(|t| t.id == to)
        .ok_or_else(|| Error::not_found(format!("no tenant with id {to}")))?;
    if recipient.entity != owner.entity {
        return Err(Error::invalid(
            "tenant",
            format!(
                "belongs to entity \"{}\" and this tenant to entity \"{}\"; certificates are \
                 shared only between tenants of the same entity",
                recipient.entity, owner.entity
            ),
        ));
    }
    if let Some(existing) = store::managed::shared_copy_of(&mut conn, cert_id).await? {
        let name = existing_name(&mut conn, &existing).await?;
        return Err(already_shared(cert_id, &existing, name.as_deref()));
    }
    let chain = crate::sync::ca_chain(&mut conn, &ca_id).await?;
    drop(conn);
    let mut copy =
        crate::sync::copy_of(&c, &recipient.id, ManagedSource::Shared, &chain, ra.now())?;
    copy.shared_by_tenant_id = Some(owner.id.clone());
    copy.shared_by_name = Some(owner.name.clone());
    let mut tx = ra.store.begin().await?;
    // The recipient's reminders are on while its notification quota allows.
    copy.notifications = crate::notify::quota_left(ra, &mut tx, &recipient.id).await? > 0;
    let inserted = store::managed::insert_shared(&mut tx, &copy).await;
    match inserted {
        Ok(true) => {
            let mut data = crate::notify::managed_data(&copy);
            data["shared_by"] = serde_json::json!({"tenant_id": owner.id, "name": owner.name});
            crate::notify::emit_one(
                &mut tx,
                &recipient.id,
                vellum_core::status::NotificationEvent::ManagedShared,
                data,
                copy.created_at,
            )
            .await?;
            tx.commit().await?
        }
        Ok(false) | Err(_) => {
            drop(tx);
            inserted?;
            // Another share won the race.
            let mut conn = ra.store.reader().acquire().await?;
            return Err(
                match store::managed::shared_copy_of(&mut conn, cert_id).await? {
                    Some(existing) => {
                        let name = existing_name(&mut conn, &existing).await?;
                        already_shared(cert_id, &existing, name.as_deref())
                    }
                    None => Error::conflict(format!(
                        "certificate {cert_id} was being shared by another request; try again"
                    )),
                },
            );
        }
    }
    Ok(Shared {
        certificate: c,
        copy,
        recipient,
    })
}

async fn existing_name(conn: &mut store::Conn, copy: &ManagedRow) -> Result<Option<String>> {
    Ok(store::tenants::find_tenant(conn, &copy.tenant_id)
        .await?
        .filter(|t| t.id == copy.tenant_id)
        .map(|t| t.name))
}

/// Withdraws the share of the tenant's certificate `cert_id`: the recipient's copy is
/// deleted. Returns the recipient tenant.
pub async fn withdraw(ra: &Authority, owner_tenant_id: &str, cert_id: &str) -> Result<String> {
    {
        let mut conn = ra.store.reader().acquire().await?;
        store::certificates::get(&mut conn, owner_tenant_id, cert_id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no certificate with id {cert_id} in this tenant"))
            })?;
    }
    let mut tx = ra.store.begin().await?;
    let recipient = store::managed::end_share(&mut tx, cert_id, ra.now())
        .await?
        .ok_or_else(|| Error::conflict(format!("certificate {cert_id} is not shared")))?;
    tx.commit().await?;
    Ok(recipient)
}

/// `POST /managed/{id}/share` never shares (see the module documentation): the refusal
/// for `row`'s source.
pub fn refuse_managed_share(row: &ManagedRow) -> Error {
    match row.source {
        ManagedSource::Uploaded => Error::invalid(
            "id",
            format!(
                "managed certificate {} was uploaded; only private-CA certificates can be shared",
                row.id
            ),
        ),
        ManagedSource::Synced => {
            let origin = row.origin_certificate_id.as_deref().unwrap_or("?");
            Error::invalid(
                "id",
                format!(
                    "managed certificate {} is a synced copy of certificate {origin}; share the \
                     certificate itself with POST /admin/v1/certificates/{origin}/share",
                    row.id
                ),
            )
        }
        ManagedSource::Shared => Error::forbidden("a shared certificate cannot be shared again"),
    }
}

/// The recipient of a shared certificate may export `pem` or `der`, never a format that
/// carries a key (403 naming the rule).
pub fn check_export(row: &ManagedRow, format: &str) -> Result<()> {
    if row.source == ManagedSource::Shared && !matches!(format, "pem" | "der") {
        return Err(Error::forbidden(format!(
            "a shared certificate's private key stays with its owner tenant: export it as pem \
             or der, not {format}"
        )));
    }
    Ok(())
}
