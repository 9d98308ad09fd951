//! Enrollment: from a PKCS#10 body to an issued certificate, through the one issuance path
//! (`ra::issue`). simpleenroll, simplereenroll and serverkeygen differ only in who may ask,
//! which names they may ask for, and where the key comes from.

use std::collections::BTreeMap;

use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::auth::{glob_match, Identity};
use super::{Ctx, EstError, Operation};
use crate::App;
use ca::keys::KeyAlgorithm;
use ca::profile::{LeafType, San, SubjectFields};
use ra::csr::{self, ParsedCsr};
use ra::issue::{self, IssueRequest, Issued, KeySource};
use ra::spec::{CertSpec, SanInput};
use store::{self, audit::AuditEvent, certificates::CertRow};
use vellum_core::error::Error;
use vellum_core::metrics::EstOutcome;
use vellum_core::status::{AuditOutcome, CertificateSource};

/// A request that passed the CSR rules.
pub struct Request {
    /// What the CSR says (key, CN, SANs).
    pub csr: ParsedCsr,
    /// Its subject, in the fields a certificate may carry.
    pub subject: SubjectFields,
}

/// Reads the body: base64 (RFC 8951), then the CSR rules of `ra::csr` and the subject
/// fields Vellum certifies. Every refusal is a 400 naming the rule.
pub fn parse(body: &[u8]) -> Result<Request, EstError> {
    let der = super::encode::request_der(body).map_err(|e| EstError::bad_request(e.0))?;
    let parsed = csr::from_der("csr", &der)?;
    let subject = parsed
        .subject
        .clone()
        .map_err(|e| EstError::bad_request(format!("csr: {e}")))?;
    Ok(Request {
        csr: parsed,
        subject,
    })
}

fn san_text(s: &San) -> String {
    format!("{}:{s}", s.kind())
}

/// Subject and SANs of an issued certificate, read the way a CSR is read.
fn certificate_names(der: &[u8]) -> Result<(SubjectFields, Vec<San>), Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(Error::internal)?;
    let subject = csr::subject_fields(cert.subject()).map_err(Error::internal)?;
    let mut sans = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => sans.push(San::Dns(d.to_ascii_lowercase())),
                    GeneralName::RFC822Name(e) => sans.push(San::Email(e.to_string())),
                    GeneralName::URI(u) => sans.push(San::Uri(u.to_string())),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => sans.push(San::Ip(std::net::IpAddr::from(
                            <[u8; 4]>::try_from(*b).map_err(Error::internal)?,
                        ))),
                        16 => sans.push(San::Ip(std::net::IpAddr::from(
                            <[u8; 16]>::try_from(*b).map_err(Error::internal)?,
                        ))),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    Ok((subject, sans))
}

/// simplereenroll: the CSR must name exactly what the certificate being renewed names
/// (RFC 7030 §4.2.2). The refusal lists the differences.
pub fn check_same_names(old: &CertRow, req: &Request) -> Result<(), EstError> {
    let (subject, sans) = certificate_names(&old.certificate_der)?;
    let mut diffs = Vec::new();
    if subject != req.subject {
        diffs.push(format!(
            "subject is \"{}\" in the CSR but \"{}\" in the certificate",
            req.subject.display_string(),
            subject.display_string()
        ));
    }
    // A server certificate enrolled without SANs got its CN as one (ra::issue): a CSR
    // that again names only the CN asks for the same certificate.
    let csr_sans = match (req.csr.sans.is_empty(), sans.as_slice()) {
        (true, [only])
            if issue::common_name_as_san(&req.subject.common_name).as_ref() == Some(only) =>
        {
            vec![only.clone()]
        }
        _ => req.csr.sans.clone(),
    };
    let mut a: Vec<String> = csr_sans.iter().map(san_text).collect();
    let mut b: Vec<String> = sans.iter().map(san_text).collect();
    a.sort();
    b.sort();
    if a != b {
        let added: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
        let missing: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
        let mut d = String::from("subjectAltName differs from the certificate's");
        if !added.is_empty() {
            d.push_str(&format!(
                "; the CSR adds {}",
                added
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !missing.is_empty() {
            d.push_str(&format!(
                "; the CSR lacks {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if added.is_empty() && missing.is_empty() {
            d.push_str("; the same names are repeated a different number of times");
        }
        diffs.push(d);
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(EstError::bad_request(format!(
            "simplereenroll: the CSR must keep the subject and subjectAltName of the certificate being renewed (serial {}): {}",
            old.serial,
            diffs.join("; ")
        )))
    }
}

/// Enrollments held to name patterns (an EST account's, inherited by the certificates
/// issued to it, or a trust anchor's): the CN and every SAN must match one (403).
pub fn check_patterns(identity: &Identity, req: &Request) -> Result<(), EstError> {
    let Some((who, name_patterns)) = identity.name_rules() else {
        return Ok(());
    };
    if name_patterns.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> = Vec::new();
    if !req.subject.common_name.is_empty() {
        names.push(req.subject.common_name.clone());
    }
    names.extend(req.csr.sans.iter().map(San::to_string));
    for n in names {
        if !name_patterns.iter().any(|p| glob_match(p, &n)) {
            return Err(EstError::forbidden(format!(
                "{who} may not request the name {n:?}: it matches none of the name patterns ({})",
                name_patterns.join(", ")
            )));
        }
    }
    Ok(())
}

/// Issues through `ra::issue` (quota, signing, record and audit in one transaction).
pub async fn issue(
    app: &App,
    ctx: &Ctx,
    identity: &Identity,
    op: Operation,
    req: &Request,
    renewing: Option<&CertRow>,
    source_ip: Option<String>,
) -> Result<Issued, Error> {
    let leaf_type: LeafType = ctx.settings.certificate_type;
    let key = match op {
        Operation::ServerKeygen => KeySource::Generate(
            req.csr
                .key_algorithm
                .parse::<KeyAlgorithm>()
                .unwrap_or(KeyAlgorithm::EcP256),
        ),
        _ => KeySource::Provided {
            spki_der: req.csr.spki_der.clone(),
            key_algorithm: req.csr.key_algorithm.clone(),
            is_rsa: req.csr.is_rsa,
        },
    };
    let requester = identity.requester();
    let (action, detail) = match (op, renewing) {
        (Operation::SimpleReenroll, Some(old)) => {
            let (_, cert) = x509_parser::parse_x509_certificate(&old.certificate_der)
                .map_err(Error::internal)?;
            let same_key = cert.public_key().raw == req.csr.spki_der.as_slice();
            (
                "certificate.renew.est",
                format!(
                    "simplereenroll ({}) of serial {}",
                    if same_key {
                        "renew, same key"
                    } else {
                        "rekey, new key"
                    },
                    old.serial
                ),
            )
        }
        _ => ("certificate.issue.est", op.name().to_string()),
    };
    let key_algorithm = match &key {
        KeySource::Generate(a) => Some(a.as_str()),
        KeySource::Provided { .. } => None,
    };
    // The stored specification, so the admin API can renew it.
    let spec = CertSpec {
        cert_type: leaf_type.as_str().into(),
        common_name: req.subject.common_name.clone(),
        sans: req.csr.sans.iter().map(SanInput::from).collect(),
        validity_days: ctx.settings.default_validity_days,
        organization: req.subject.organization.clone(),
        organizational_unit: req.subject.organizational_unit.clone(),
        locality: req.subject.locality.clone(),
        state: req.subject.state.clone(),
        country: req.subject.country.clone(),
        name: None,
        tags: BTreeMap::new(),
        include_crl: true,
        key_algorithm: key_algorithm.map(str::to_string),
    };
    let spec_json = serde_json::to_value(&spec).map_err(Error::internal)?;
    let request = IssueRequest {
        tenant_id: ctx.tenant_id.clone(),
        ca_id: ctx.ca_id.clone(),
        leaf_type,
        subject: req.subject.clone(),
        sans: req.csr.sans.clone(),
        validity_days: ctx.settings.default_validity_days,
        include_crl: true,
        key,
        source: CertificateSource::Est,
        name: None,
        tags: BTreeMap::new(),
        requester: Some(requester.clone()),
        spec_json,
        renewed_from: renewing.map(|c| c.id.clone()),
        audit: Some(AuditEvent {
            at: vellum_core::time::now(),
            tenant_id: Some(ctx.tenant_id.clone()),
            actor: Some(requester),
            action: action.into(),
            source_ip,
            outcome: AuditOutcome::Success,
            detail: Some(detail),
            ..AuditEvent::default()
        }),
        acme_names: false,
        followup: None,
        est_client: identity.est_client(),
    };
    let issued = issue::issue(app, request).await;
    let outcome = match issued {
        Ok(_) => EstOutcome::Issued,
        Err(_) => EstOutcome::Refused,
    };
    vellum_core::metrics::est_enrollment(op.name(), identity.auth_kind(), outcome);
    issued
}

/// Records a refused enrollment of an authenticated client (successes are recorded in the
/// issuing transaction). A failure to write is logged, not returned.
pub async fn audit_failure(
    app: &App,
    ctx: &Ctx,
    identity: &Identity,
    op: Operation,
    source_ip: Option<String>,
    detail: &str,
) {
    let event = AuditEvent {
        at: vellum_core::time::now(),
        tenant_id: Some(ctx.tenant_id.clone()),
        actor: Some(identity.requester()),
        action: if op == Operation::SimpleReenroll {
            "certificate.renew.est".into()
        } else {
            "certificate.issue.est".into()
        },
        target: Some(ctx.ca_id.clone()),
        source_ip,
        outcome: AuditOutcome::Failure,
        detail: Some(format!("{}: {detail}", op.name())),
        ..AuditEvent::default()
    };
    let written = async {
        let mut tx = app.store.begin().await?;
        store::audit::insert(&mut tx, &event).await?;
        tx.commit().await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "could not write EST audit event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(dn: &[(rcgen::DnType, &str)], names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subjects_are_read_and_unsupported_attributes_named() {
        use base64::Engine;
        let der = csr(
            &[
                (rcgen::DnType::CountryName, "DE"),
                (rcgen::DnType::OrganizationName, "Acme"),
                (rcgen::DnType::CommonName, "dev1"),
            ],
            &[],
        );
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.subject.common_name, "dev1");
        assert_eq!(r.subject.organization.as_deref(), Some("Acme"));
        assert_eq!(r.subject.country.as_deref(), Some("DE"));

        let der = csr(
            &[
                (rcgen::DnType::CommonName, "dev1"),
                (rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-0001"),
            ],
            &[],
        );
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let e = parse(body.as_bytes()).err().unwrap();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("serialNumber"), "{}", e.message);
    }

    #[test]
    fn patterns_cover_cn_and_every_san() {
        use base64::Engine;
        let der = csr(
            &[(rcgen::DnType::CommonName, "a.devices.example.com")],
            &["b.devices.example.com", "c.other.example"],
        );
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let r = parse(body.as_bytes()).unwrap();
        let id = Identity::Basic {
            username: "u".into(),
            name_patterns: vec!["*.devices.example.com".into()],
        };
        let e = check_patterns(&id, &r).err().unwrap();
        assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN);
        assert!(e.message.contains("c.other.example"), "{}", e.message);
        let open = Identity::Basic {
            username: "u".into(),
            name_patterns: vec![],
        };
        assert!(check_patterns(&open, &r).is_ok());
    }
}
