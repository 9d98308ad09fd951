//! CRL signing: a v2 CRL with AKI, CRL number, and per-entry revocation date and reason.

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use super::Signer;
use vellum_core::error::{Error, Result};
use vellum_core::status::RevocationReason as Reason;

/// One CRL entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Serial as lower-case hex.
    pub serial_hex: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// Why (`unspecified` is written as no reason code, as RFC 5280 recommends).
    pub reason: Reason,
}

/// The reason code rcgen writes (none for `unspecified`, as RFC 5280 recommends).
pub fn reason_code(reason: Reason) -> Option<RevocationReason> {
    Some(match reason {
        Reason::Unspecified => return None,
        Reason::KeyCompromise => RevocationReason::KeyCompromise,
        Reason::CaCompromise => RevocationReason::CaCompromise,
        Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
        Reason::Superseded => RevocationReason::Superseded,
        Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
        Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        Reason::AaCompromise => RevocationReason::AaCompromise,
    })
}

fn at(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(Error::internal)
}

/// Signs a CRL for `signer` (DER).
pub fn sign(
    signer: &Signer,
    crl_number: i64,
    this_update: i64,
    next_update: i64,
    entries: &[Entry],
) -> Result<Vec<u8>> {
    let revoked_certs = entries
        .iter()
        .map(|e| {
            let serial = hex::decode(&e.serial_hex).map_err(|_| {
                Error::internal(format!("stored serial {} is not hex", e.serial_hex))
            })?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at(e.revoked_at)?,
                reason_code: reason_code(e.reason),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let number = u64::try_from(crl_number).map_err(Error::internal)?;
    let params = CertificateRevocationListParams {
        this_update: at(this_update)?,
        next_update: at(next_update)?,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: key_id_method(signer.certificate_der()),
    };
    Ok(params.signed_by(signer.issuer())?.der().to_vec())
}

/// The AKI must equal the issuer certificate's SKI (uploaded CAs may use SHA-1 key ids).
fn key_id_method(ca_der: &[u8]) -> KeyIdMethod {
    use x509_parser::extensions::ParsedExtension;
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(ca_der) {
        for ext in cert.extensions() {
            if let ParsedExtension::SubjectKeyIdentifier(ski) = ext.parsed_extension() {
                return KeyIdMethod::PreSpecified(ski.0.to_vec());
            }
        }
    }
    KeyIdMethod::Sha256
}
