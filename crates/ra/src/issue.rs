//! THE issuance path. Admin apply, ACME finalize, EST enroll, renewals and the server's own
//! TLS certificate all end here:
//! 1. the issuing CA must be an enabled intermediate of the caller's tenant, in service;
//! 2. the request must satisfy the names, key and validity rules;
//! 3. the certificate is signed, then ONE transaction takes one unit of quota (never
//!    below zero) and records it (grouped with others by [`super::record`]); the
//!    certificate is returned only after the commit.

use std::collections::BTreeMap;

use rcgen::{PublicKeyData, SubjectPublicKeyInfo};
use zeroize::Zeroizing;

use super::names;
use crate::Authority;
use ca::keys::KeyAlgorithm;
use ca::profile::{self, LeafSpec, LeafType, PublicationUrls, San, SubjectFields, Validity};
use store::{self, audit::AuditEvent, cas::CaRow, certificates::CertRow};
use vellum_core::error::{Error, Result};
use vellum_core::status::{CaStatus, CertificateSource};

/// Most subject alternative names one certificate may carry.
pub const MAX_SANS: usize = 10;
/// Longest leaf validity, days (100 years).
pub const MAX_LEAF_VALIDITY_DAYS: i64 = 36_500;
/// A leaf valid for longer than this many days carries the leakage-risk flag.
pub const LEAKAGE_RISK_DAYS: i64 = 365;

/// Where the subject's key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// The server generates the key pair (and keeps it, sealed).
    Generate(KeyAlgorithm),
    /// The requester holds the key (from a CSR, checked by [`super::csr`]).
    Provided {
        /// DER SubjectPublicKeyInfo.
        spki_der: Vec<u8>,
        /// `ec-p256`, `rsa-2048`…
        key_algorithm: String,
        /// True for RSA keys (server certificates then get keyEncipherment).
        is_rsa: bool,
    },
}

/// A request for one end-entity certificate.
pub struct IssueRequest {
    /// The tenant the certificate belongs to.
    pub tenant_id: String,
    /// The issuing intermediate.
    pub ca_id: String,
    /// Server or client certificate.
    pub leaf_type: LeafType,
    /// Subject fields.
    pub subject: SubjectFields,
    /// Subject alternative names.
    pub sans: Vec<San>,
    /// Validity, days.
    pub validity_days: i64,
    /// Whether the certificate names the CA's CRL distribution point.
    pub include_crl: bool,
    /// Where the key comes from.
    pub key: KeySource,
    /// `private_ca`, `acme`, `est`, `system`.
    pub source: CertificateSource,
    /// Name in the inventory.
    pub name: Option<String>,
    /// Inventory tags.
    pub tags: BTreeMap<String, String>,
    /// Who asked (token id, ACME account, EST client).
    pub requester: Option<String>,
    /// The request as received, kept for renewals.
    pub spec_json: serde_json::Value,
    /// The certificate this one renews.
    pub renewed_from: Option<String>,
    /// Written in the issuing transaction (so the event exists iff the certificate does).
    pub audit: Option<AuditEvent>,
    /// ACME certifies validated identifiers (DNS names, IPs) whatever the profile, so a
    /// `tls-client` order may carry them too.
    pub acme_names: bool,
    /// Changed in the same transaction that records the certificate.
    pub followup: Option<super::record::Followup>,
    /// The EST account the certificate is enrolled for (EST, and renewals of its
    /// certificates): its holder may then log in to that EST service with it.
    pub est_client: Option<String>,
}

/// A certificate that has been recorded and may leave the server.
pub struct Issued {
    /// The certificate as recorded.
    pub record: CertRow,
    /// The private key (PKCS#8 PEM) when the server generated it.
    pub private_key_pem: Option<Zeroizing<String>>,
    /// The issuing CA's certificate, then its root's (DER).
    pub chain_der: Vec<Vec<u8>>,
}

/// Checks the issuing CA: an enabled intermediate of the tenant, within its service period.
pub fn check_issuer(ca: &CaRow, now: i64) -> Result<()> {
    if ca.is_root() {
        return Err(Error::conflict(format!(
            "CA {} is a root CA; roots issue only intermediates, use one of its intermediate CAs",
            ca.id
        )));
    }
    if ca.status != CaStatus::Enabled {
        return Err(Error::conflict(format!(
            "CA {} is {}; only an enabled intermediate CA issues certificates",
            ca.id, ca.status
        )));
    }
    if ca.service_until <= now {
        return Err(Error::conflict(format!(
            "the service period of CA {} ended at {}",
            ca.id,
            vellum_core::time::rfc3339(ca.service_until)
        )));
    }
    if ca.not_after.is_some_and(|na| na <= now) {
        return Err(Error::conflict(format!(
            "the certificate of CA {} has expired",
            ca.id
        )));
    }
    Ok(())
}

/// The validity window a request gets, or a 422 giving the maximum allowed.
///
/// A CA whose service period is under a year (fewer than 12 months bought) issues
/// certificates no longer than that period: a 1-month service bought on January 1st
/// allows 31 days (calendar months, counted from where the service months start), on
/// February 1st 28. Every certificate also ends by the issuing CA's own notAfter.
pub fn check_validity(ca: &CaRow, validity_days: i64, now: i64) -> Result<Validity> {
    if !(1..=MAX_LEAF_VALIDITY_DAYS).contains(&validity_days) {
        return Err(Error::invalid(
            "validity_days",
            format!("must be between 1 and {MAX_LEAF_VALIDITY_DAYS} days"),
        ));
    }
    let not_after = now + validity_days * 86_400;
    if ca.service_months < 12 {
        let service_days = (ca.service_until - ca.service_started_at).div_euclid(86_400);
        if validity_days > service_days {
            let months = ca.service_months;
            return Err(Error::invalid(
                "validity_days",
                format!(
                    "{validity_days} days would exceed the CA's service period (under a year: {months} month{} from {} to {}, {service_days} days); the maximum is {service_days} days",
                    if months == 1 { "" } else { "s" },
                    vellum_core::time::rfc3339(ca.service_started_at),
                    vellum_core::time::rfc3339(ca.service_until),
                ),
            ));
        }
    }
    let issuer_end = ca.not_after.unwrap_or(i64::MAX);
    if not_after > issuer_end {
        let max_days = ((issuer_end - now) / 86_400).max(0);
        return Err(Error::invalid(
            "validity_days",
            format!(
                "{validity_days} days would outlast the issuing CA's certificate, which expires at {}; the maximum is {max_days} days",
                vellum_core::time::rfc3339(issuer_end)
            ),
        ));
    }
    Ok(Validity {
        not_before: now - 60,
        not_after,
    })
}

/// Checks the names against the profile and the name rules of [`super::names`], and
/// gives a server certificate its SAN: at most [`MAX_SANS`]; servers take DNS/IP names,
/// clients e-mail addresses/URIs; no subject field or SAN holds control, bidi-override or
/// invisible characters. A server certificate without SANs gets its common name as one
/// when that is a DNS name or an IP address (RFC 6125: verifiers read only the SAN);
/// otherwise it is refused. Errors name the API field (`common_name`, `sans[2]`…).
pub fn check_names(
    leaf_type: LeafType,
    subject: &SubjectFields,
    sans: &mut Vec<San>,
) -> Result<()> {
    for (field, value) in [
        ("common_name", Some(&subject.common_name)),
        ("organization", subject.organization.as_ref()),
        ("organizational_unit", subject.organizational_unit.as_ref()),
        ("locality", subject.locality.as_ref()),
        ("state", subject.state.as_ref()),
        ("country", subject.country.as_ref()),
    ] {
        if let Some(v) = value {
            names::check_text(field, v)?;
        }
    }
    if sans.len() > MAX_SANS {
        return Err(Error::invalid(
            "sans",
            format!("{} names given; at most {MAX_SANS} are allowed", sans.len()),
        ));
    }
    if subject.common_name.chars().count() > 64 {
        return Err(Error::invalid(
            "common_name",
            "must be at most 64 characters",
        ));
    }
    if subject.common_name.is_empty() && sans.is_empty() {
        return Err(Error::invalid(
            "common_name",
            "a certificate needs a common name or at least one SAN",
        ));
    }
    for (i, san) in sans.iter().enumerate() {
        let field = format!("sans[{i}]");
        match (leaf_type, san) {
            (LeafType::Server, San::Dns(d)) => {
                if let Some(why) = names::dns_name_problem(d) {
                    return Err(Error::invalid(field, format!("the DNS name {d:?} {why}")));
                }
            }
            (LeafType::Server, San::Ip(_)) => {}
            (LeafType::Client, San::Email(e)) => {
                names::check_text(&field, e)?;
                if let Some(why) = email_problem(e) {
                    return Err(Error::invalid(field, format!("the e-mail address {e:?} {why}")));
                }
            }
            (LeafType::Client, San::Uri(u)) => {
                names::check_text(&field, u)?;
                if !(u.contains(':') && u.is_ascii() && !u.contains(' ')) {
                    return Err(Error::invalid(
                        field,
                        format!("{u:?} is not a URI: it needs a scheme (\"spiffe://…\", \"urn:…\") and only ASCII characters without spaces"),
                    ));
                }
            }
            (LeafType::Server, other) => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{} cannot go in a server certificate, which takes only DNS names and IP addresses (use type client for e-mail addresses and URIs)",
                        describe_san(other)
                    ),
                ))
            }
            (LeafType::Client, other) => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{} cannot go in a client certificate, which takes only e-mail addresses and URIs (use type server for DNS names and IP addresses)",
                        describe_san(other)
                    ),
                ))
            }
        }
    }
    if leaf_type == LeafType::Server && sans.is_empty() {
        let cn = subject.common_name.as_str();
        if let Some(san) = common_name_as_san(cn) {
            sans.push(san);
        } else {
            return Err(Error::invalid(
                "sans",
                format!(
                    "a server certificate must carry a subjectAltName (TLS clients ignore the common name): give sans, or a common name that is a DNS name or an IP address ({cn:?} is neither)"
                ),
            ));
        }
    }
    Ok(())
}

/// The SAN a server certificate without SANs gets from its common name: the CN as an IP
/// address, or as a DNS name (lower-cased) when it is one; `None` otherwise.
pub fn common_name_as_san(cn: &str) -> Option<San> {
    if let Ok(ip) = cn.parse::<std::net::IpAddr>() {
        return Some(San::Ip(ip));
    }
    let lower = cn.to_ascii_lowercase();
    names::valid_dns_name(&lower).then_some(San::Dns(lower))
}

/// `the DNS name "a.example"`, `the e-mail address "a@b.example"`: a SAN in words.
pub fn describe_san(s: &San) -> String {
    match s {
        San::Dns(d) => format!("the DNS name {d:?}"),
        San::Ip(ip) => format!("the IP address {ip}"),
        San::Email(e) => format!("the e-mail address {e:?}"),
        San::Uri(u) => format!("the URI {u:?}"),
    }
}

fn email_problem(e: &str) -> Option<String> {
    let Some((local, domain)) = e.rsplit_once('@') else {
        return Some("has no '@'".into());
    };
    if local.is_empty() || local.len() > 64 {
        return Some("needs a local part of 1 to 64 characters before the '@'".into());
    }
    if !e.is_ascii() || local.contains(|c: char| c.is_ascii_whitespace() || c == '@') {
        return Some("must be ASCII, without spaces, with exactly one '@'".into());
    }
    if domain.starts_with("*.") {
        return Some("may not have a wildcard domain".into());
    }
    names::dns_name_problem(domain).map(|why| format!("has a domain that {why}"))
}

/// Issues one certificate through the single path (see the module documentation), and
/// counts the request here, where every door ends (`vellum_issuances_total` by door, CA and
/// outcome; an ACME certificate also counts its order as valid). The server's own TLS
/// certificate is not counted: it comes through no door.
pub async fn issue(ra: &Authority, req: IssueRequest) -> Result<Issued> {
    use vellum_core::metrics::{self, Door, IssueOutcome};
    let door = match req.source {
        CertificateSource::PrivateCa => Some(Door::Admin),
        CertificateSource::Acme => Some(Door::Acme),
        CertificateSource::Est => Some(Door::Est),
        CertificateSource::System => None,
    };
    let acme_order = matches!(
        req.followup,
        Some(super::record::Followup::AcmeOrderValid { .. })
    );
    // The CA label only once the id named an existing CA of the tenant.
    let mut known_ca = None;
    let res = issue_uncounted(ra, req, &mut known_ca).await;
    if let Some(door) = door {
        let outcome = match &res {
            Ok(_) => IssueOutcome::Issued,
            Err(Error::QuotaExhausted { .. }) => IssueOutcome::RefusedQuota,
            Err(_) => IssueOutcome::RefusedOther,
        };
        metrics::issuance(door, known_ca.as_deref(), outcome);
    }
    if acme_order && res.is_ok() {
        metrics::acme_orders(true, 1);
    }
    res
}

async fn issue_uncounted(
    ra: &Authority,
    req: IssueRequest,
    known_ca: &mut Option<String>,
) -> Result<Issued> {
    let now = ra.now();
    // Possibly a second old: the recorder re-checks status, key and service period.
    let mut ca = super::cached_ca(ra, &req.tenant_id, &req.ca_id).await?;
    if ca.rollover_at.is_some_and(|t| t <= now) {
        // A renewed certificate's time has come: switch first (this process's caches
        // are retired by the switch, so the read below sees it). A switch that fails
        // leaves the old certificate signing, which is still valid: issuance goes on.
        if let Err(e) = super::rollover::switch_due(ra, &ca.id).await {
            tracing::warn!(ca = %ca.id, error = %e, "could not switch over a renewed CA");
        }
        ca = super::cached_ca(ra, &req.tenant_id, &req.ca_id).await?;
    }
    *known_ca = Some(ca.id.clone());
    check_issuer(&ca, now)?;
    let names_profile = if req.acme_names {
        LeafType::Server
    } else {
        req.leaf_type
    };
    let mut req = req;
    check_names(names_profile, &req.subject, &mut req.sans)?;
    let validity = check_validity(&ca, req.validity_days, now)?;

    let (public_key, generated, key_alg, is_rsa) = match &req.key {
        KeySource::Generate(alg) => {
            let alg = *alg;
            let kp = tokio::task::spawn_blocking(move || alg.generate())
                .await
                .map_err(Error::internal)??;
            let spki = kp.subject_public_key_info();
            (spki, Some(kp), alg.to_string(), alg.is_rsa())
        }
        KeySource::Provided {
            spki_der,
            key_algorithm,
            is_rsa,
        } => (spki_der.clone(), None, key_algorithm.clone(), *is_rsa),
    };
    let spki = SubjectPublicKeyInfo::from_der(&public_key)
        .map_err(|e| Error::invalid("csr_pem", format!("public key unusable: {e}")))?;

    let http = ra.config.public_http_url();
    let urls = PublicationUrls::for_key(&http, &ca.id, ca.key_generation);
    let spec = LeafSpec {
        leaf_type: req.leaf_type,
        subject: req.subject.clone(),
        sans: req.sans.clone(),
        validity,
        key_encipherment: req.leaf_type == LeafType::Server && is_rsa,
        crl_url: (req.include_crl && ca.crl_enabled).then(|| urls.crl.clone()),
        freshest_crl_url: (req.include_crl && ca.crl_enabled && ca.crl_delta_enabled)
            .then(|| urls.delta_crl.clone()),
        issuer_url: Some(urls.certificate.clone()),
        ocsp_url: ca.ocsp_enabled.then(|| urls.ocsp.clone()),
    };
    let signer = super::signer_for(ra, &ca).await?;

    let id = uuid::Uuid::now_v7().to_string();
    let private_key_pem = generated
        .as_ref()
        .map(|k| Zeroizing::new(k.serialize_pem()));
    let key_sealed = match &generated {
        Some(k) => Some(ra.master.seal_key(&id, k)?),
        None => None,
    };
    let mut record = CertRow {
        id,
        tenant_id: req.tenant_id.clone(),
        ca_id: Some(ca.id.clone()),
        cert_type: req.leaf_type,
        common_name: req.subject.common_name.clone(),
        sans_json: sans_json(&req.sans).to_string(),
        not_before: validity.not_before,
        not_after: validity.not_after,
        source: req.source,
        name: req.name.clone(),
        tags_json: serde_json::to_string(&req.tags).map_err(Error::internal)?,
        spec_json: req.spec_json.to_string(),
        key_algorithm: key_alg,
        leakage_risk: req.validity_days > LEAKAGE_RISK_DAYS,
        key_sealed,
        requester: req.requester.clone(),
        created_at: now,
        renewed_from: req.renewed_from.clone(),
        subject_json: subject_json(&req.subject).to_string(),
        est_client: req.est_client.clone(),
        ..CertRow::default()
    };

    // Sign before taking the (single, on SQLite) writer: the transaction then only spends
    // quota and records. A certificate signed for a request that finds no quota is dropped
    // without ever leaving the server, so nothing is handed out unrecorded.
    let (der, serial) = profile::leaf(&spec, &spki, &signer)?;
    record.serial = serial;
    record.certificate_der = der;
    let audit = req.audit.map(|mut event| {
        event.target = Some(record.id.clone());
        event
    });
    let mut followup = req.followup;
    if let Some(super::record::Followup::SyncedRenewal {
        managed_id,
        refresh,
    }) = &mut followup
    {
        // Renewals of synced certificates only (see `crate::sync`).
        let r = super::sync::refresh(
            ra,
            managed_id,
            &record,
            generated.as_ref(),
            signer.chain_der(),
        )?;
        *refresh = Some(Box::new(r));
    }
    let job = super::record::Job {
        ca_id: ca.id.clone(),
        ca_serial: ca.serial.clone().unwrap_or_default(),
        record,
        audit,
        followup,
    };
    let record = ra.recorder.record(job).await?;
    Ok(Issued {
        record,
        private_key_pem,
        chain_der: signer.chain_der().to_vec(),
    })
}

/// The optional subject fields as stored (for renewals and the inventory).
pub fn subject_json(s: &SubjectFields) -> serde_json::Value {
    serde_json::json!({
        "organization": s.organization,
        "organizational_unit": s.organizational_unit,
        "locality": s.locality,
        "state": s.state,
        "country": s.country,
    })
}

/// JSON list of `{"type","value"}` for the inventory.
pub fn sans_json(sans: &[San]) -> serde_json::Value {
    serde_json::Value::Array(
        sans.iter()
            .map(|s| serde_json::json!({"type": s.kind(), "value": s.to_string()}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(purchased: i64, service_until: i64, not_after: i64) -> CaRow {
        CaRow {
            id: "i".into(),
            kind: vellum_core::status::CaKind::Intermediate,
            status: CaStatus::Enabled,
            purchased_at: purchased,
            service_started_at: purchased,
            service_months: ((service_until - purchased) / (30 * 86_400)).min(12),
            service_until,
            not_after: Some(not_after),
            ..CaRow::default()
        }
    }

    #[test]
    fn validity_is_capped_by_short_service_period_and_issuer_expiry() {
        let now = 1_000_000_000;
        let day = 86_400;
        let short = ca(now, now + 90 * day, now + 3650 * day);
        assert!(check_validity(&short, 30, now).is_ok());
        let e = check_validity(&short, 120, now).unwrap_err().to_string();
        assert!(e.contains("maximum is 90 days"), "{e}");
        let long = ca(now, now + 2 * 365 * day, now + 500 * day);
        assert!(check_validity(&long, 400, now).is_ok());
        let e = check_validity(&long, 600, now).unwrap_err().to_string();
        assert!(e.contains("expires") && e.contains("500"), "{e}");
        assert!(check_validity(&long, 0, now).is_err());
    }

    #[test]
    fn names_follow_the_profile() {
        let s = SubjectFields {
            common_name: "x".into(),
            ..Default::default()
        };
        assert!(check_names(
            LeafType::Server,
            &s,
            &mut vec![San::Dns("a.example".into())]
        )
        .is_ok());
        let e = check_names(
            LeafType::Server,
            &s,
            &mut vec![San::Email("a@b.example".into())],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "sans[0]: the e-mail address \"a@b.example\" cannot go in a server certificate, which takes only DNS names and IP addresses (use type client for e-mail addresses and URIs)"
        );
        assert!(check_names(
            LeafType::Client,
            &s,
            &mut vec![San::Dns("a.example".into())]
        )
        .is_err());
        let mut eleven: Vec<San> = (0..11).map(|i| San::Dns(format!("h{i}.example"))).collect();
        let e = check_names(LeafType::Server, &s, &mut eleven)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 10"), "{e}");
        assert!(!names::valid_dns_name("bad_label.example"));
        assert!(
            !names::valid_dns_name("127.0.0.1"),
            "an address is not a DNS name"
        );
        assert!(!names::valid_dns_name("::1"));
        assert!(names::valid_dns_name("*.ok.example"));
    }

    #[test]
    fn server_certificates_always_carry_a_san() {
        let cn = |c: &str| SubjectFields {
            common_name: c.into(),
            ..Default::default()
        };
        let mut sans = vec![];
        check_names(LeafType::Server, &cn("Host.Example"), &mut sans).unwrap();
        assert_eq!(sans, vec![San::Dns("host.example".into())]);
        let mut sans = vec![];
        check_names(LeafType::Server, &cn("10.1.2.3"), &mut sans).unwrap();
        assert_eq!(sans, vec![San::Ip("10.1.2.3".parse().unwrap())]);
        let mut sans = vec![];
        let e = check_names(LeafType::Server, &cn("printer 7"), &mut sans)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sans: a server certificate must carry a subjectAltName"),
            "{e}"
        );
        // Client certificates need none.
        let mut sans = vec![];
        check_names(LeafType::Client, &cn("device 7"), &mut sans).unwrap();
        assert!(sans.is_empty());
    }

    #[test]
    fn every_subject_field_refuses_control_and_bidi_characters() {
        let mut s = SubjectFields {
            common_name: "good.example\0.evil.com".into(),
            ..Default::default()
        };
        let e = check_names(LeafType::Client, &s, &mut vec![])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("common_name:") && e.contains("U+0000 (NUL)"),
            "{e}"
        );
        s.common_name = "ok".into();
        s.organizational_unit = Some("Ops\u{202E}".into());
        let e = check_names(LeafType::Client, &s, &mut vec![])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("organizational_unit:") && e.contains("U+202E"),
            "{e}"
        );
        s.organizational_unit = None;
        let e = check_names(
            LeafType::Client,
            &s,
            &mut vec![San::Email("a\u{0}@b.example".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("sans[0]:") && e.contains("NUL"), "{e}");
    }
}
