//! The signer: the only module that touches CA private keys.
//!
//! Keys live sealed in the database (see [`keys::MasterKey`]); a [`Signer`] is a CA's key
//! opened in memory together with the issuer name and key identifier of its certificate.

pub mod chain;
pub mod crl;
pub mod formats;
pub mod inspect;
pub mod keys;
pub mod ocsp;
pub mod profile;
pub mod upload;

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;

use keys::MasterKey;
use store::cas::CaRow;
use vellum_core::error::{Error, Result};

/// An enabled CA, ready to sign.
pub struct Signer {
    ca_id: String,
    certificate_der: Vec<u8>,
    /// The CA's certificate followed by its issuers' (for chains handed out with leaves).
    chain_der: Vec<Vec<u8>>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ca_id", &self.ca_id)
            .finish()
    }
}

impl Signer {
    /// Opens the key of an enabled CA.
    pub fn load(master: &MasterKey, ca: &CaRow) -> Result<Signer> {
        let (Some(cert), Some(sealed)) = (&ca.certificate_der, &ca.key_sealed) else {
            return Err(Error::conflict(format!(
                "CA {} is {}; it has no key to sign with",
                ca.id, ca.status
            )));
        };
        let key = master.open_key(&ca.id, sealed)?;
        Self::from_parts(&ca.id, cert.clone(), key)
    }

    /// A signer from a certificate and its key.
    pub fn from_parts(ca_id: &str, certificate_der: Vec<u8>, key: KeyPair) -> Result<Signer> {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(certificate_der.as_slice()), key)
                .map_err(|e| Error::internal(format!("CA {ca_id} certificate unusable: {e}")))?;
        Ok(Signer {
            ca_id: ca_id.to_string(),
            chain_der: vec![certificate_der.clone()],
            certificate_der,
            issuer,
        })
    }

    /// Adds the issuers' certificates (parent first) after the CA's own in [`Signer::chain_der`].
    pub fn with_issuers(mut self, issuers: Vec<Vec<u8>>) -> Signer {
        self.chain_der.extend(issuers);
        self
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
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
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
