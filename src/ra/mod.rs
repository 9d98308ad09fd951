//! Registration authority: the only module that decides whether a CA may change state or a
//! certificate may be issued. Front ends call it; it calls `ca` and `store`.

pub mod crl;
pub mod csr;
pub mod hierarchy;
pub mod issue;
pub mod names;
pub mod record;
pub mod revoke;

use std::sync::Arc;

use crate::ca::Signer;
use crate::error::{Error, Result};
use crate::store::{self, cas::CaRow};
use crate::App;

/// A CA of the tenant as read at most [`crate::cache::TTL`] ago (or since the last change
/// made by this process): for the issuance path, whose recorder re-checks at commit.
pub async fn cached_ca(app: &App, tenant_id: &str, id: &str) -> Result<Arc<CaRow>> {
    app.caches
        .read_through(&app.caches.cas, &format!("{tenant_id}/{id}"), || async {
            let mut conn = app.store.reader().acquire().await?;
            store::cas::get(&mut conn, tenant_id, id).await
        })
        .await?
        .ok_or_else(|| Error::not_found(format!("no CA with id {id} in this tenant")))
}

/// The signer of an enabled CA with its chain (the CA's certificate, then its root's),
/// opened once and cached.
pub async fn signer_for(app: &App, ca: &CaRow) -> Result<Arc<Signer>> {
    if let Some(s) = app.signers.lookup(ca) {
        return Ok(s);
    }
    let mut issuers = Vec::new();
    if let Some(pid) = &ca.parent_id {
        let mut conn = app.store.reader().acquire().await?;
        if let Some(parent) = store::cas::get_any_tenant(&mut conn, pid).await? {
            if let Some(der) = parent.certificate_der {
                issuers.push(der);
            }
        }
    }
    let signer = Signer::load(&app.master, ca)?.with_issuers(issuers);
    Ok(app.signers.insert(ca, signer))
}
