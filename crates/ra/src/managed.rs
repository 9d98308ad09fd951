//! Managed certificates: the rules of the second inventory (certificates from any CA,
//! uploaded with their key), and of the stateless format conversion.
//!
//! An upload passes these checks, in this order, each refusing with its own 422 naming the
//! field: name and tags; `certificate_pem` is PEM (a DER, PFX or JKS file is recognised
//! and the conversion call named); the certificate is not SM2; `private_key_pem` is PEM,
//! not protected by a passphrase unless `key_passphrase` is given (then decrypted: PKCS#8
//! PBES2 or OpenSSL's traditional `DEK-Info`), and is the certificate's key; `chain_pem`
//! links the leaf, each certificate signed by the next (the parsing and signature checks
//! are `ca::inspect`'s). Instead of `private_key_pem`, an upload may name `csr_id`, a CSR
//! made here ([`crate::csrs`]): the certificate must then carry that CSR's public key, and
//! the CSR's sealed key becomes the managed certificate's key.
//!
//! Managed certificates are never on a CRL and never spend quota: nothing here touches a
//! CA.

use std::collections::BTreeMap;

use base64::Engine;
use ca::inspect::{self, ChainError, KeyError, Material, ReadError, Sniffed};
use serde_json::json;
use store::managed::{ManagedFilter, ManagedRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::{FileFormat, ManagedSource};
use zeroize::Zeroizing;

use crate::issue::LEAKAGE_RISK_DAYS;
use crate::Authority;

/// The conversion call every "PEM is required" message names.
const CONVERT_HINT: &str = "convert it first with POST /admin/v1/tools/convert \
     {\"input\": \"<base64 of the file>\", \"from\": \"der|pkcs12|jks\", \"to\": \"pem\"} \
     or `vellum admin convert --from der|pkcs12|jks --to pem --in FILE --out FILE`";

/// What `POST /managed` asks to upload.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// Label in the inventory.
    pub name: String,
    /// The certificate (PEM); further certificates in it count as chain.
    pub certificate_pem: String,
    /// Its private key (PEM); exactly one of this and `csr_id`.
    pub private_key_pem: Option<String>,
    /// A CSR made here whose key the certificate carries (instead of `private_key_pem`).
    pub csr_id: Option<String>,
    /// Intermediates (and optionally the root), PEM.
    pub chain_pem: Option<String>,
    /// Inventory tags.
    pub tags: BTreeMap<String, String>,
    /// Decrypts an encrypted `private_key_pem`.
    pub key_passphrase: Option<String>,
}

/// An upload that passed every check.
pub struct Validated {
    /// The leaf's facts.
    pub info: inspect::CertInfo,
    /// The leaf (DER).
    pub certificate_der: Vec<u8>,
    /// The chain after the leaf, issuer first.
    pub chain_der: Vec<Vec<u8>>,
    /// The private key, PKCS#8 DER (decrypted).
    pub key_pkcs8: Zeroizing<Vec<u8>>,
    /// Valid for longer than [`LEAKAGE_RISK_DAYS`].
    pub leakage_risk: bool,
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.chars().count() > 128 {
        return Err(Error::invalid("name", "must be at most 128 characters"));
    }
    Ok(())
}

/// The 422 for a `field` that is not PEM: says what it is and names the conversion call.
fn not_pem(field: &str, what: &str, found: Sniffed) -> Error {
    let seen = match found {
        Sniffed::Unknown | Sniffed::Pem => String::new(),
        other => format!(" (this is {})", other.describe()),
    };
    Error::invalid(
        field,
        format!("{what} format is incorrect: PEM is required{seen}; {CONVERT_HINT}"),
    )
}

/// The key an upload brings: the PEM of `private_key_pem`, or the key of the CSR named by
/// `csr_id` (opened from its seal by [`upload`]).
pub enum UploadKey<'a> {
    /// `private_key_pem` (decrypted with `key_passphrase` when encrypted).
    Pem(&'a str),
    /// The CSR's id and its key (PKCS#8 DER).
    Csr(&'a str, Zeroizing<Vec<u8>>),
}

/// Checks an upload whose key is `private_key_pem` (see the module documentation for the
/// order of the rules).
pub fn validate(up: &Upload) -> Result<Validated> {
    let pem = match (&up.private_key_pem, &up.csr_id) {
        (Some(p), None) => p.as_str(),
        _ => return Err(key_choice_error(up)),
    };
    validate_with(up, UploadKey::Pem(pem))
}

/// The 422 when an upload gives neither or both of `private_key_pem` and `csr_id`.
fn key_choice_error(up: &Upload) -> Error {
    if up.private_key_pem.is_some() {
        Error::invalid("csr_id", "give either private_key_pem or csr_id, not both")
    } else {
        Error::invalid(
            "private_key_pem",
            "is required (the certificate's private key, PEM), or give csr_id naming a CSR \
             made here with POST /admin/v1/csrs",
        )
    }
}

/// Checks an upload with the key it brings.
pub fn validate_with(up: &Upload, key: UploadKey<'_>) -> Result<Validated> {
    check_name(&up.name)?;
    crate::spec::check_tags(&up.tags)?;

    let found = inspect::sniff(up.certificate_pem.as_bytes());
    if found != Sniffed::Pem {
        return Err(not_pem("certificate_pem", "Certificate", found));
    }
    let mut certs = inspect::pem_certificates(&up.certificate_pem).map_err(|e| {
        Error::invalid(
            "certificate_pem",
            format!("Certificate format is incorrect: {e}"),
        )
    })?;
    if certs.is_empty() {
        return Err(Error::invalid(
            "certificate_pem",
            "Certificate format is incorrect: PEM is required, and no -----BEGIN CERTIFICATE----- \
             block was found",
        ));
    }
    let leaf = certs.remove(0);
    let info = inspect::cert_info(&leaf).map_err(|e| Error::invalid("certificate_pem", e))?;
    if inspect::names_sm2(&info.spki_der) {
        return Err(Error::invalid(
            "certificate_pem",
            "SM2 certificates are not supported",
        ));
    }

    let key = match key {
        UploadKey::Pem(pem) => {
            let found = inspect::sniff(pem.as_bytes());
            if found != Sniffed::Pem {
                return Err(not_pem("private_key_pem", "Private key", found));
            }
            let passphrase = up.key_passphrase.as_deref().filter(|p| !p.is_empty());
            inspect::private_key_pkcs8(pem, passphrase).map_err(key_error)?
        }
        UploadKey::Csr(csr_id, key) => {
            let csr_spki = inspect::key_spki(&key).map_err(Error::internal)?;
            if csr_spki != info.spki_der {
                return Err(Error::invalid(
                    "csr_id",
                    format!(
                        "The certificate does not carry the key of CSR {csr_id}: the \
                         certificate's public key has SHA-256 {} and the CSR's has SHA-256 {} \
                         (compare with `openssl x509 -noout -pubkey -in cert.pem | openssl \
                         pkey -pubin -outform DER | openssl sha256` and the same over \
                         `openssl req -noout -pubkey -in csr.pem`); upload the certificate \
                         the CA issued for this CSR",
                        inspect::spki_sha256(&info.spki_der),
                        inspect::spki_sha256(&csr_spki),
                    ),
                ));
            }
            key
        }
    };
    match inspect::key_matches(&info.spki_der, &key) {
        Err(e) => return Err(Error::invalid("private_key_pem", e)),
        Ok(false) => {
            return Err(Error::invalid(
                "private_key_pem",
                "Certificate and private key do not match: the key's public half differs from \
                 the certificate's (RSA modulus / EC point / Ed25519 key). Compare them: \
                 `openssl x509 -noout -pubkey -in cert.pem | openssl sha256` and \
                 `openssl pkey -pubout -in key.pem | openssl sha256` must print the same digest",
            ))
        }
        Ok(true) => {}
    }

    if let Some(chain) = up.chain_pem.as_deref().filter(|c| !c.trim().is_empty()) {
        let found = inspect::sniff(chain.as_bytes());
        if found != Sniffed::Pem {
            return Err(not_pem("chain_pem", "Chain", found));
        }
        let more = inspect::pem_certificates(chain)
            .map_err(|e| Error::invalid("chain_pem", format!("Chain format is incorrect: {e}")))?;
        certs.extend(more);
    }
    let chain_der = inspect::order_chain(&leaf, certs).map_err(|e| match e {
        ChainError::IssuerMissing { subject, issuer } => Error::invalid(
            "chain_pem",
            format!(
                "Incomplete certificate chain: the issuer of \"{subject}\" is missing \
                 (it names \"{issuer}\" as issuer, and no certificate given is signed by it \
                 verifies it); add the intermediate certificate(s) to chain_pem, issuer first"
            ),
        ),
        ChainError::Unrelated { subject } => Error::invalid(
            "chain_pem",
            format!(
                "\"{subject}\" is not part of the certificate's chain: every certificate in \
                 chain_pem must sign the one before it"
            ),
        ),
    })?;
    let leakage_risk = info.not_after - info.not_before > LEAKAGE_RISK_DAYS * 86_400;
    Ok(Validated {
        info,
        certificate_der: leaf,
        chain_der,
        key_pkcs8: key,
        leakage_risk,
    })
}

/// The 422 of a private key that could not be read.
fn key_error(e: KeyError) -> Error {
    match e {
        KeyError::NotPem => Error::invalid(
            "private_key_pem",
            "is not a PEM private key: expected -----BEGIN PRIVATE KEY----- (PKCS#8), \
             ENCRYPTED PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
        ),
        KeyError::Encrypted { rsa, .. } => {
            let how = if rsa {
                "`openssl rsa -in encrypted.key -out decrypted.key`"
            } else {
                "`openssl pkey -in encrypted.key -out decrypted.key` \
                 (RSA keys: `openssl rsa -in encrypted.key -out decrypted.key`)"
            };
            Error::invalid(
                "private_key_pem",
                format!(
                    "The private key is protected by a passphrase: give the passphrase as \
                     key_passphrase, or remove it with {how} and upload decrypted.key"
                ),
            )
        }
        KeyError::WrongPassphrase => Error::invalid(
            "key_passphrase",
            "does not decrypt the private key (wrong passphrase)",
        ),
        KeyError::Sm2 => Error::invalid("private_key_pem", "SM2 certificates are not supported"),
        KeyError::Unreadable(m) => Error::invalid("private_key_pem", m),
    }
}

/// JSON list of `{"type","value"}` of the SANs.
fn sans_json(info: &inspect::CertInfo) -> String {
    serde_json::Value::Array(
        info.sans
            .iter()
            .map(|(t, v)| json!({"type": t, "value": v}))
            .collect(),
    )
    .to_string()
}

/// Validates and records an upload; the key is sealed under the master key.
pub async fn upload(ra: &Authority, tenant_id: &str, up: &Upload) -> Result<ManagedRow> {
    let v = match (&up.private_key_pem, &up.csr_id) {
        (None, Some(csr_id)) => {
            let csr = crate::csrs::load(ra, tenant_id, csr_id)
                .await
                .map_err(|_| {
                    Error::invalid(
                        "csr_id",
                        format!("no CSR {csr_id} in this tenant (GET /admin/v1/csrs lists them)"),
                    )
                })?;
            let key = ra
                .master
                .open_pkcs8(&crate::csrs::key_context(&csr.id), &csr.key_sealed)?;
            validate_with(up, UploadKey::Csr(&csr.id, key))?
        }
        _ => validate(up)?,
    };
    let id = uuid::Uuid::now_v7().simple().to_string();
    let key_pem = Zeroizing::new(::pem::encode_config(
        &::pem::Pem::new("PRIVATE KEY", v.key_pkcs8.to_vec()),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    ));
    let mut row = ManagedRow {
        key_sealed: Some(ra.master.seal(&id, key_pem.as_bytes())?),
        id,
        tenant_id: tenant_id.to_string(),
        name: up.name.trim().to_string(),
        source: ManagedSource::Uploaded,
        tags_json: serde_json::to_string(&up.tags).map_err(Error::internal)?,
        notifications: true,
        subject: v.info.subject.clone(),
        common_name: v.info.common_name.clone(),
        sans_json: sans_json(&v.info),
        issuer: v.info.issuer.clone(),
        serial: v.info.serial.clone(),
        key_algorithm: v.info.key_algorithm.clone(),
        not_before: v.info.not_before,
        not_after: v.info.not_after,
        leakage_risk: v.leakage_risk,
        certificate_der: v.certificate_der,
        chain_der: v.chain_der.concat(),
        created_at: ra.now(),
        deleted_at: None,
        origin_certificate_id: None,
        shared_by_tenant_id: None,
        shared_by_name: None,
        revoked_at: None,
    };
    let mut tx = ra.store.begin().await?;
    // Reminders on while the tenant's notification quota allows (the response says).
    row.notifications = crate::notify::quota_left(ra, &mut tx, tenant_id).await? > 0;
    store::managed::insert(&mut tx, &row).await?;
    let now = row.created_at;
    crate::notify::emit_one(
        &mut tx,
        tenant_id,
        vellum_core::status::NotificationEvent::ManagedUploaded,
        crate::notify::managed_data(&row),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// A managed certificate of the tenant, or 404.
pub async fn get(ra: &Authority, tenant_id: &str, id: &str) -> Result<ManagedRow> {
    let mut conn = ra.store.reader().acquire().await?;
    store::managed::get(&mut conn, tenant_id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!(
        "no managed certificate with id {id} in this tenant"
    ))
}

/// The tenant's managed certificates matching `filter`.
pub async fn list(
    ra: &Authority,
    tenant_id: &str,
    filter: &ManagedFilter,
) -> Result<Vec<ManagedRow>> {
    let mut conn = ra.store.reader().acquire().await?;
    store::managed::list(&mut conn, tenant_id, filter, ra.now()).await
}

/// What `PATCH /managed/{id}` changes.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// New label.
    pub name: Option<String>,
    /// New tags (replacing the old ones).
    pub tags: Option<BTreeMap<String, String>>,
    /// Expiry reminders on or off.
    pub notifications: Option<bool>,
}

/// Changes name, tags or notifications.
pub async fn patch(ra: &Authority, tenant_id: &str, id: &str, p: &Patch) -> Result<ManagedRow> {
    if let Some(n) = &p.name {
        check_name(n)?;
    }
    let tags_json = match &p.tags {
        Some(t) => {
            crate::spec::check_tags(t)?;
            Some(serde_json::to_string(t).map_err(Error::internal)?)
        }
        None => None,
    };
    let mut tx = ra.store.begin().await?;
    if p.notifications == Some(true) {
        let cur = store::managed::get(&mut tx, tenant_id, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if !cur.notifications {
            crate::notify::require_quota(ra, &mut tx, tenant_id).await?;
        }
    }
    let name = p.name.as_deref().map(str::trim);
    if !store::managed::update(
        &mut tx,
        tenant_id,
        id,
        name,
        tags_json.as_deref(),
        p.notifications,
    )
    .await?
    {
        return Err(not_found(id));
    }
    let row = store::managed::get(&mut tx, tenant_id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes a managed certificate for good (its sealed key is destroyed).
pub async fn delete(ra: &Authority, tenant_id: &str, id: &str) -> Result<ManagedRow> {
    let mut tx = ra.store.begin().await?;
    let row = store::managed::get(&mut tx, tenant_id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !store::managed::delete(&mut tx, tenant_id, id, ra.now()).await? {
        return Err(not_found(id));
    }
    tx.commit().await?;
    Ok(row)
}

/// The chain after the leaf, issuer first.
pub fn chain(row: &ManagedRow) -> Vec<Vec<u8>> {
    inspect::split_der_certificates(&row.chain_der)
}

/// The private key (PKCS#8 DER), opened from its seal, when the inventory holds it.
pub fn key_pkcs8(ra: &Authority, row: &ManagedRow) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let Some(sealed) = &row.key_sealed else {
        return Ok(None);
    };
    Ok(Some(ra.master.open_pkcs8(&row.id, sealed)?))
}

/// Reads a file for `POST /tools/convert`: `input` is base64; `from` must be what the
/// content is (a PEM given as `der` is refused naming `from`); a missing or wrong
/// password is a 422 naming `password`. Then checks that the material can become `to`
/// (a certificate for every format but pkcs8, a key for pkcs12, jks and pkcs8).
pub fn convert_read(
    input_b64: &str,
    from: FileFormat,
    to: FileFormat,
    password: Option<&str>,
) -> Result<Material> {
    let compact: String = input_b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| Error::invalid("input", "must be the file encoded as base64"))?,
    );
    let found = inspect::sniff(&bytes);
    let claimed = match from {
        FileFormat::Pem => Some(Sniffed::Pem),
        FileFormat::Der => Some(Sniffed::Der),
        FileFormat::Pkcs12 => Some(Sniffed::Pkcs12),
        FileFormat::Jks => Some(Sniffed::Jks),
        FileFormat::Pkcs8 => None,
    };
    let mismatch = match claimed {
        Some(c) => found != Sniffed::Unknown && found != c,
        None => matches!(found, Sniffed::Der | Sniffed::Pkcs12 | Sniffed::Jks),
    };
    if mismatch {
        return Err(Error::invalid(
            "from",
            format!("is {from}, but the input is {}", found.describe()),
        ));
    }
    let password = password.filter(|p| !p.is_empty());
    let read = match from {
        FileFormat::Pem => inspect::read_pem(&bytes, password),
        FileFormat::Der => inspect::read_der(&bytes),
        FileFormat::Pkcs12 => inspect::read_pkcs12(&bytes, password),
        FileFormat::Jks => inspect::read_jks(&bytes, password),
        FileFormat::Pkcs8 => inspect::read_pkcs8(&bytes, password),
    };
    let material = read.map_err(|e| match e {
        ReadError::Password(m) => Error::invalid("password", m),
        ReadError::Input(m) => Error::invalid("input", m),
    })?;
    if to != FileFormat::Pkcs8 && material.leaf.is_none() {
        return Err(Error::invalid(
            "to",
            format!("{to} needs a certificate, and the input holds only a private key; convert it to pkcs8"),
        ));
    }
    if matches!(to, FileFormat::Pkcs12 | FileFormat::Jks | FileFormat::Pkcs8)
        && material.key.is_none()
    {
        return Err(Error::invalid(
            "to",
            format!("{to} needs a private key, and the input holds none; convert it to pem or der"),
        ));
    }
    Ok(material)
}
