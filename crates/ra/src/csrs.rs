//! CSRs made here ("Create CSR"): the server generates the key (sealed at rest like CA
//! keys) and a PKCS#10 request to take to another CA; the certificate that comes back is
//! uploaded to the managed inventory with the CSR's id instead of a private key.

use ca::keys::KeyAlgorithm;
use ca::profile::SubjectFields;
use store::csrs::CsrRow;
use vellum_core::error::{Error, Result};
use vellum_core::status::LeafType;

use crate::spec::{check_subject, parse_sans, SanInput};
use crate::Authority;

/// What a CSR asks for.
#[derive(Debug, Clone)]
pub struct NewCsr {
    /// Subject fields (CN may be empty when SANs are given).
    pub subject: SubjectFields,
    /// Subject alternative names.
    pub sans: Vec<SanInput>,
    /// Key algorithm (default `ec-p256`).
    pub key_algorithm: Option<String>,
    /// What the certificate will be: server (DNS names, IPs) or client (e-mail, URIs).
    pub leaf_type: LeafType,
}

/// The sealing context of a CSR's key.
pub fn key_context(id: &str) -> String {
    format!("csr:{id}")
}

/// Makes a CSR for `tenant_id`: checks the subject and names with the issuance rules,
/// generates and seals the key, stores both.
pub async fn create(
    ra: &Authority,
    tenant_id: &str,
    req: &NewCsr,
    created_by: Option<&str>,
) -> Result<CsrRow> {
    let mut subject = req.subject.clone();
    subject.common_name = subject.common_name.trim().to_string();
    check_subject(&subject)?;
    let mut sans = parse_sans(&req.sans)?;
    // The names obey the issuance rules, so the CA the request goes to sees valid ones.
    crate::issue::check_names(req.leaf_type, &subject, &mut sans)?;
    let alg: KeyAlgorithm = req
        .key_algorithm
        .as_deref()
        .unwrap_or("ec-p256")
        .parse()
        .map_err(|e: String| Error::invalid("key_algorithm", e))?;
    let id = uuid::Uuid::now_v7().to_string();
    let (csr_der, key_sealed) = {
        let (subject, sans, master, id) =
            (subject.clone(), sans.clone(), ra.master.clone(), id.clone());
        tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, Vec<u8>)> {
            let key = alg.generate()?;
            let der = ca::profile::csr(&subject, &sans, &key)?;
            Ok((der, master.seal_key(&key_context(&id), &key)?))
        })
        .await
        .map_err(Error::internal)??
    };
    let sans_json = serde_json::to_string(&sans.iter().map(SanInput::from).collect::<Vec<_>>())
        .map_err(Error::internal)?;
    let row = CsrRow {
        id,
        tenant_id: tenant_id.to_string(),
        common_name: subject.common_name.clone(),
        subject: subject.display_string(),
        sans_json,
        key_algorithm: alg.as_str().to_string(),
        csr_der,
        key_sealed,
        created_at: ra.now(),
        created_by: created_by.map(str::to_string),
    };
    let mut tx = ra.store.begin().await?;
    store::csrs::insert(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(row)
}

/// The tenant's CSR `id`, or 404.
pub async fn load(ra: &Authority, tenant_id: &str, id: &str) -> Result<CsrRow> {
    let mut conn = ra.store.reader().acquire().await?;
    store::csrs::get(&mut conn, tenant_id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no CSR {id}")))
}

/// Deletes the tenant's CSR `id` and its key (irreversible).
pub async fn delete(ra: &Authority, tenant_id: &str, id: &str) -> Result<CsrRow> {
    let row = load(ra, tenant_id, id).await?;
    let mut tx = ra.store.begin().await?;
    if !store::csrs::delete(&mut tx, tenant_id, id).await? {
        return Err(Error::not_found(format!("no CSR {id}")));
    }
    tx.commit().await?;
    Ok(row)
}
