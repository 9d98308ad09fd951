//! The signer: the only module that touches CA private keys.
//!
//! Keys live sealed in the database (see [`keys::MasterKey`]) or inside a PKCS#11 token
//! ([`pkcs11`]); a [`Signer`] is a CA's key opened ([`CaKey`]) together with the issuer
//! name and key identifier of its certificate. Everything a CA signs (its certificate,
//! leaves, CRLs, OCSP responses, delegated OCSP signer certificates) goes through
//! [`CaKey`]'s [`rcgen::SigningKey`] implementation, whichever way the key is kept.

pub mod chain;
pub mod crl;
pub mod formats;
pub mod inspect;
pub mod keys;
pub mod ocsp;
pub mod pkcs11;
pub mod profile;
pub mod upload;

use std::sync::Arc;

use rcgen::{Issuer, KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};
use rustls_pki_types::CertificateDer;

use keys::{KeyAlgorithm, MasterKey};
use pkcs11::{Hsm, HsmKey};
use store::cas::CaRow;
use vellum_core::error::{Error, Result};
use vellum_core::status::KeyStorage;

/// A CA's private key: opened from the database, or a handle on a key in the token.
#[derive(Debug)]
pub enum CaKey {
    /// Sealed in the database, opened in memory.
    Database(KeyPair),
    /// Kept in the PKCS#11 token; signing goes through `C_Sign`.
    Pkcs11(HsmKey),
}

impl From<KeyPair> for CaKey {
    fn from(k: KeyPair) -> Self {
        CaKey::Database(k)
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::Database(k) => k.der_bytes(),
            CaKey::Pkcs11(k) => k.public_raw(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::Database(k) => k.algorithm(),
            CaKey::Pkcs11(k) => k.signature_algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::Database(k) => k.sign(msg),
            CaKey::Pkcs11(k) => k.sign(msg).map_err(|e| {
                // rcgen's error carries no text: say what failed here.
                tracing::error!(key = k.id_hex(), error = %e, "PKCS#11 signing failed");
                rcgen::Error::RemoteKeyError
            }),
        }
    }
}

/// The raw public key (rcgen's `der_bytes`) of a DER certificate: the subjectPublicKey
/// BIT STRING's content.
fn certificate_public_key(der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::internal(format!("unparseable CA certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// An enabled CA, ready to sign.
pub struct Signer {
    ca_id: String,
    certificate_der: Vec<u8>,
    /// The CA's certificate followed by its issuers' (for chains handed out with leaves).
    chain_der: Vec<Vec<u8>>,
    /// What the issuers in `chain_der` were chosen against (the parent's serial): a
    /// cached signer whose tag differs has a stale chain.
    chain_tag: String,
    issuer: Issuer<'static, CaKey>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ca_id", &self.ca_id)
            .finish()
    }
}

impl Signer {
    /// Opens the key of an enabled CA whose key is in the database (a CA whose key is in
    /// a PKCS#11 token needs [`Signer::open`]).
    pub fn load(master: &MasterKey, ca: &CaRow) -> Result<Signer> {
        Self::open(master, None, ca)
    }

    /// Opens the key of an enabled CA: unseals it, or finds it in the token `hsm`.
    pub fn open(master: &MasterKey, hsm: Option<&Arc<Hsm>>, ca: &CaRow) -> Result<Signer> {
        let Some(cert) = &ca.certificate_der else {
            return Err(Error::conflict(format!(
                "CA {} is {}; it has no key to sign with",
                ca.id, ca.status
            )));
        };
        let key = match ca.key_storage {
            KeyStorage::Database => {
                let Some(sealed) = &ca.key_sealed else {
                    return Err(Error::conflict(format!(
                        "CA {} is {}; it has no key to sign with",
                        ca.id, ca.status
                    )));
                };
                CaKey::Database(master.open_key(&ca.id, sealed)?)
            }
            KeyStorage::Pkcs11 => {
                let Some(hsm) = hsm else {
                    return Err(Error::config(format!(
                        "CA {} keeps its key in a PKCS#11 token, but no [pkcs11] token is \
                         configured (set pkcs11.module, pkcs11.token_label and the PIN)",
                        ca.id
                    )));
                };
                let (Some(id), Some(label)) = (&ca.pkcs11_key_id, &ca.pkcs11_key_label) else {
                    return Err(Error::internal(format!(
                        "CA {} is stored as pkcs11 but names no token object",
                        ca.id
                    )));
                };
                let alg: KeyAlgorithm = ca.key_algorithm.parse().map_err(Error::internal)?;
                CaKey::Pkcs11(hsm.key(id, label, alg, certificate_public_key(cert)?)?)
            }
        };
        Self::from_parts(&ca.id, cert.clone(), key)
    }

    /// A signer from a certificate and its key.
    pub fn from_parts(
        ca_id: &str,
        certificate_der: Vec<u8>,
        key: impl Into<CaKey>,
    ) -> Result<Signer> {
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(certificate_der.as_slice()),
            key.into(),
        )
        .map_err(|e| Error::internal(format!("CA {ca_id} certificate unusable: {e}")))?;
        Ok(Signer {
            ca_id: ca_id.to_string(),
            chain_der: vec![certificate_der.clone()],
            chain_tag: String::new(),
            certificate_der,
            issuer,
        })
    }

    /// Adds the issuers' certificates (parent first) after the CA's own in [`Signer::chain_der`].
    pub fn with_issuers(mut self, issuers: Vec<Vec<u8>>) -> Signer {
        self.chain_der.extend(issuers);
        self
    }

    /// Like [`Signer::with_issuers`], remembering what the issuers were chosen against
    /// (see [`Signer::chain_tag`]).
    pub fn with_issuers_tagged(mut self, issuers: Vec<Vec<u8>>, tag: String) -> Signer {
        self.chain_tag = tag;
        self.with_issuers(issuers)
    }

    /// What the issuers of [`Signer::chain_der`] were chosen against (empty for a root).
    pub fn chain_tag(&self) -> &str {
        &self.chain_tag
    }

    /// The CA's certificate followed by its issuers' certificates (DER).
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// The CA's id.
    pub fn ca_id(&self) -> &str {
        &self.ca_id
    }

    /// The CA's own certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The rcgen issuer (name, key identifier, key).
    pub fn issuer(&self) -> &Issuer<'static, CaKey> {
        &self.issuer
    }
}

/// Facts read off a certificate.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// RFC 4514-style subject.
    pub subject: String,
    /// Lower-case hex serial, without leading zero bytes.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// Reads subject, serial and validity off a DER certificate.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::internal(format!("unparseable certificate: {e}")))?;
    Ok(CertFacts {
        subject: cert.subject().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The key identifiers a certificate carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIds {
    /// subjectKeyIdentifier: the certified key's.
    pub subject: Option<Vec<u8>>,
    /// authorityKeyIdentifier's keyIdentifier: the signing key's.
    pub authority: Option<Vec<u8>>,
}

/// The subject key identifier and the authority key identifier (keyIdentifier) of a DER
/// certificate, when it carries them.
pub fn key_ids(der: &[u8]) -> Result<KeyIds> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::internal(format!("unparseable certificate: {e}")))?;
    let mut ids = KeyIds::default();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ids.subject = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                ids.authority = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    Ok(ids)
}

/// Lower-case hex of a serial's bytes with leading zero bytes dropped.
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &raw[raw.len().saturating_sub(1)..],
    };
    hex::encode(trimmed)
}

/// PEM encoding of a DER certificate.
pub fn cert_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Opened CA keys, kept in memory so that issuing does not decrypt and parse the CA key
/// every time. Entries are keyed by CA id *and* certificate serial, so a CA that was reset
/// and enabled again never signs with its old key.
#[derive(Default)]
pub struct SignerCache {
    inner: std::sync::Mutex<std::collections::HashMap<(String, String), std::sync::Arc<Signer>>>,
}

impl std::fmt::Debug for SignerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignerCache")
    }
}

impl SignerCache {
    /// The cached signer of `ca` (matching its current certificate), if any.
    pub fn lookup(&self, ca: &CaRow) -> Option<std::sync::Arc<Signer>> {
        let key = (ca.id.clone(), ca.serial.clone().unwrap_or_default());
        self.lock().get(&key).cloned()
    }

    /// Caches a signer for `ca`, replacing any older one of the same CA.
    pub fn insert(&self, ca: &CaRow, signer: Signer) -> std::sync::Arc<Signer> {
        let key = (ca.id.clone(), ca.serial.clone().unwrap_or_default());
        let signer = std::sync::Arc::new(signer);
        let mut map = self.lock();
        map.retain(|(id, _), _| id != &ca.id);
        map.insert(key, signer.clone());
        signer
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<(String, String), std::sync::Arc<Signer>>,
    > {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
