//! Validation of an uploaded CA certificate and private key. Each rule has its own
//! message naming the field and what to do.

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::*;

use super::keys::KeyAlgorithm;
use vellum_core::error::{Error, Result};

/// A CA certificate and key that passed every check.
pub struct ValidatedUpload {
    /// The CA certificate (DER).
    pub certificate_der: Vec<u8>,
    /// Its private key.
    pub key: KeyPair,
    /// The algorithm of the key.
    pub key_algorithm: KeyAlgorithm,
}

/// Checks an upload: PEM, unencrypted key, key matches, CA:TRUE, keyCertSign, not expired,
/// and (for intermediates) signed by `parent_der`'s key.
pub fn validate(
    certificate_pem: &str,
    private_key_pem: &str,
    parent_der: Option<&[u8]>,
    now: i64,
) -> Result<ValidatedUpload> {
    let cert_block = ::pem::parse_many(certificate_pem)
        .ok()
        .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
        .ok_or_else(|| {
            Error::invalid(
                "certificate_pem",
                "is not a PEM certificate: expected a block starting with -----BEGIN CERTIFICATE-----",
            )
        })?;
    let der = cert_block.contents().to_vec();
    let (_, cert) = parse_x509_certificate(&der).map_err(|e| {
        Error::invalid(
            "certificate_pem",
            format!("holds a PEM block that is not a valid X.509 certificate ({e})"),
        )
    })?;

    if private_key_pem.contains("ENCRYPTED") {
        return Err(Error::invalid(
            "private_key_pem",
            "is encrypted with a passphrase; upload the unencrypted key \
             (strip the passphrase with: openssl pkey -in key.pem -out key-plain.pem)",
        ));
    }
    if !private_key_pem.contains("-----BEGIN") {
        return Err(Error::invalid(
            "private_key_pem",
            "is not a PEM private key: expected -----BEGIN PRIVATE KEY----- \
             (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY",
        ));
    }
    let key = KeyPair::from_pem(private_key_pem).map_err(|e| {
        Error::invalid(
            "private_key_pem",
            format!("is not a usable private key ({e}); accepted: RSA 2048-4096, EC P-256/P-384, Ed25519"),
        )
    })?;

    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(Error::invalid(
            "private_key_pem",
            "does not match the certificate: its public key differs from the certificate's \
             (RSA modulus / EC point)",
        ));
    }
    let key_algorithm = KeyAlgorithm::from_spki(cert.public_key().raw)
        .map_err(|e| Error::invalid("certificate_pem", e))?;

    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(Error::invalid(
            "certificate_pem",
            "is not a CA certificate: basicConstraints CA:TRUE is missing",
        ));
    }
    let can_sign = matches!(cert.key_usage(), Ok(Some(ku)) if ku.value.key_cert_sign());
    if !can_sign {
        return Err(Error::invalid(
            "certificate_pem",
            "may not sign certificates: keyUsage keyCertSign is missing",
        ));
    }
    if let Some(parent) = parent_der {
        let (_, parent_cert) = parse_x509_certificate(parent)
            .map_err(|e| Error::internal(format!("parent certificate unparseable: {e}")))?;
        if cert
            .verify_signature(Some(parent_cert.public_key()))
            .is_err()
        {
            return Err(Error::invalid(
                "certificate_pem",
                format!(
                    "is not signed by the parent root CA's key (parent subject: {})",
                    parent_cert.subject()
                ),
            ));
        }
    }
    // The signer (rcgen's Issuer) reads one attribute per RDN: a certificate whose subject
    // has a multi-valued RDN could be enabled but never sign anything.
    if cert.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(Error::invalid(
            "certificate_pem",
            format!(
                "has a subject with a multi-valued or empty RDN ({}), which Vellum cannot \
                 sign under; re-issue the CA certificate with one attribute per RDN \
                 (openssl: -subj \"/O=Corp/CN=Name\", not \"/O=Corp+CN=Name\")",
                cert.subject()
            ),
        ));
    }
    let not_after = cert.validity().not_after.timestamp();
    if not_after <= now {
        return Err(Error::invalid(
            "certificate_pem",
            format!("expired on {}", cert.validity().not_after),
        ));
    }
    Ok(ValidatedUpload {
        certificate_der: der,
        key,
        key_algorithm,
    })
}
