//! Renewal: which certificates may be renewed, and the renewal itself (a new certificate
//! from the stored specification, the same key when the requester holds it).

use store::certificates::{CertRow, EXPIRING_DAYS};
use vellum_core::error::{Error, Result};
use vellum_core::status::CertificateStatus;
use vellum_core::time::rfc3339;

use crate::csr;
use crate::issue::{self, Issued, KeySource};
use crate::spec::{CertSpec, Requester};
use crate::Authority;

/// Whether `old` may be renewed at `now` (a certificate not yet expiring only with
/// `force`); returns its issuing CA and stored specification.
pub fn check_renewable(old: &CertRow, now: i64, force: bool) -> Result<(String, CertSpec)> {
    let id = &old.id;
    match old.status(now) {
        CertificateStatus::Revoked => {
            return Err(Error::conflict(format!(
                "certificate {id} is revoked; apply for a new certificate instead"
            )))
        }
        CertificateStatus::Issued if !force => {
            return Err(Error::conflict(format!(
                "certificate {id} is valid until {} (not expiring within {EXPIRING_DAYS} days); pass \"force\": true to renew it anyway",
                rfc3339(old.not_after),
            )))
        }
        _ => {}
    }
    let ca_id = old.ca_id.clone().ok_or_else(|| {
        Error::conflict(format!(
            "certificate {id} was not issued by a Vellum CA; it cannot be renewed"
        ))
    })?;
    let spec: CertSpec = serde_json::from_str(&old.spec_json).map_err(|_| {
        Error::conflict(format!(
            "certificate {id} has no stored specification to renew from (source {})",
            old.source
        ))
    })?;
    Ok((ca_id, spec))
}

/// Renews `old` for `who`: same CA, same specification, same door (`source`, EST
/// account); the key is generated anew when the server held the old one, else the old
/// public key is certified again.
pub async fn renew(ra: &Authority, old: &CertRow, force: bool, who: Requester) -> Result<Issued> {
    let (ca_id, mut spec) = check_renewable(old, ra.now(), force)?;
    let key = if old.key_sealed.is_some() {
        spec.generated_key()?
    } else {
        spec.key_algorithm = None;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&old.certificate_der).map_err(Error::internal)?;
        let (key_algorithm, is_rsa) =
            csr::key_policy(cert.public_key()).map_err(Error::conflict)?;
        KeySource::Provided {
            spki_der: cert.public_key().raw.to_vec(),
            key_algorithm,
            is_rsa,
        }
    };
    let mut req = spec.request(&ca_id, key, who)?;
    req.source = old.source;
    req.est_client = old.est_client.clone();
    req.renewed_from = Some(old.id.clone());
    req.followup = crate::sync::renewal_followup(ra, old).await?;
    issue::issue(ra, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn row(not_after: i64) -> CertRow {
        CertRow {
            id: "c1".into(),
            ca_id: Some("ca".into()),
            not_after,
            source: vellum_core::status::CertificateSource::PrivateCa,
            spec_json: r#"{"type":"server","common_name":"a.example","validity_days":30}"#.into(),
            ..CertRow::default()
        }
    }

    #[test]
    fn status_follows_the_clock() {
        let now = 1_000 * DAY;
        let status = |r: &CertRow| r.status(now);
        assert_eq!(
            status(&row(now + EXPIRING_DAYS * DAY + 1)),
            CertificateStatus::Issued
        );
        assert_eq!(
            status(&row(now + EXPIRING_DAYS * DAY)),
            CertificateStatus::Expiring
        );
        assert_eq!(status(&row(now)), CertificateStatus::Expired);
        let mut r = row(now + 100 * DAY);
        r.revoked_at = Some(now);
        assert_eq!(status(&r), CertificateStatus::Revoked);
    }

    #[test]
    fn renewal_rules() {
        let now = 1_000 * DAY;
        let fresh = row(now + 90 * DAY);
        let e = check_renewable(&fresh, now, false).unwrap_err();
        assert!(e.to_string().contains("pass \"force\": true"), "{e}");
        assert!(check_renewable(&fresh, now, true).is_ok());
        // The same certificate, later: expiring, then expired, renews without force.
        assert!(check_renewable(&fresh, now + 70 * DAY, false).is_ok());
        assert!(check_renewable(&fresh, now + 91 * DAY, false).is_ok());
        let mut revoked = row(now + 90 * DAY);
        revoked.revoked_at = Some(now);
        let e = check_renewable(&revoked, now, true).unwrap_err();
        assert!(e.to_string().contains("is revoked"), "{e}");
        let mut foreign = row(now);
        foreign.ca_id = None;
        assert!(check_renewable(&foreign, now, false)
            .unwrap_err()
            .to_string()
            .contains("not issued by a Vellum CA"));
        let mut no_spec = row(now);
        no_spec.spec_json = "{}".into();
        assert!(check_renewable(&no_spec, now, false)
            .unwrap_err()
            .to_string()
            .contains("no stored specification"));
    }
}
