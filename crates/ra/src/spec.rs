//! The specification of a leaf certificate as the admin API takes it and as every issued
//! certificate stores it (`certificates.spec_json`), so that any door's certificate can be
//! renewed: its rules (type, subject fields, SANs, tags, name) and its conversion into an
//! [`IssueRequest`].

use std::collections::BTreeMap;

use ca::keys::KeyAlgorithm;
use ca::profile::{LeafType, San, SubjectFields};
use serde::{Deserialize, Serialize};
use store::audit::AuditEvent;
use vellum_core::error::{Error, Result};
use vellum_core::status::CertificateSource;

use crate::issue::{IssueRequest, KeySource};

/// One subject alternative name as the API takes, shows and stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanInput {
    /// `dns`, `ip`, `email` or `uri`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The name.
    pub value: String,
}

impl From<&San> for SanInput {
    fn from(s: &San) -> SanInput {
        SanInput {
            kind: s.kind().into(),
            value: s.to_string(),
        }
    }
}
/// Serde default of `include_crl`.
pub fn default_true() -> bool {
    true
}

/// A stored certificate specification: the admin apply body without the CSR.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertSpec {
    /// `server` or `client`.
    #[serde(rename = "type")]
    pub cert_type: String,
    /// Subject CN (may be empty when SANs are given).
    #[serde(default)]
    pub common_name: String,
    /// Subject alternative names.
    #[serde(default)]
    pub sans: Vec<SanInput>,
    /// Validity in days.
    pub validity_days: i64,
    /// Subject O.
    pub organization: Option<String>,
    /// Subject OU.
    pub organizational_unit: Option<String>,
    /// Subject L.
    pub locality: Option<String>,
    /// Subject ST.
    pub state: Option<String>,
    /// Subject C.
    pub country: Option<String>,
    /// A name for the inventory.
    pub name: Option<String>,
    /// Inventory tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Whether the certificate carries the CRL distribution point.
    #[serde(default = "default_true")]
    pub include_crl: bool,
    /// The algorithm of a server-generated key; `None` when the requester holds the key.
    pub key_algorithm: Option<String>,
}

/// Who asks for a certificate and how the issuance is audited.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The tenant the certificate belongs to.
    pub tenant_id: String,
    /// The API token (or door identity) that asked.
    pub id: Option<String>,
    /// The audit event written with the certificate.
    pub audit: Option<AuditEvent>,
}

/// Parses API SANs; errors name `sans[i]`.
pub fn parse_sans(sans: &[SanInput]) -> Result<Vec<San>> {
    sans.iter()
        .enumerate()
        .map(|(i, s)| {
            let value = s.value.trim();
            if value.is_empty() {
                return Err(Error::invalid(
                    format!("sans[{i}].value"),
                    "must not be empty",
                ));
            }
            Ok(match s.kind.as_str() {
                "dns" => San::Dns(value.to_ascii_lowercase()),
                "ip" => San::Ip(value.parse().map_err(|_| {
                    Error::invalid(
                        format!("sans[{i}].value"),
                        format!("{value:?} is not an IP address"),
                    )
                })?),
                "email" => San::Email(value.to_string()),
                "uri" => San::Uri(value.to_string()),
                other => {
                    return Err(Error::invalid(
                        format!("sans[{i}].type"),
                        format!("{other:?} is not a SAN type; use dns, ip, email or uri"),
                    ))
                }
            })
        })
        .collect()
}

/// The leaf type named by `type`.
pub fn leaf_type(s: &str) -> Result<LeafType> {
    match s {
        "server" => Ok(LeafType::Server),
        "client" => Ok(LeafType::Client),
        other => Err(Error::invalid(
            "type",
            format!("{other:?} is not a certificate type; use server or client"),
        )),
    }
}

/// Most tags on one certificate or CA.
pub const MAX_TAGS: usize = 32;

/// The inventory's tag rules, at issuance and whenever tags are replaced (issued and
/// managed certificates, CAs): at most [`MAX_TAGS`] tags; keys 1–64 characters without `=` (the list filter
/// `tag=key=value` splits at the first one), values up to 256.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS
        || tags
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 64 || k.contains('=') || v.len() > 256)
    {
        return Err(Error::invalid(
            "tags",
            "at most 32 tags; keys 1-64 characters without \"=\", values up to 256",
        ));
    }
    Ok(())
}

/// The subject fields' own rules (C is two upper-case letters; O, OU, ST, L 1–128
/// characters).
pub fn check_subject(s: &SubjectFields) -> Result<()> {
    if let Some(c) = &s.country {
        if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "country",
                "must be a two-letter ISO 3166 code such as \"DE\"",
            ));
        }
    }
    for (field, v) in [
        ("organization", &s.organization),
        ("organizational_unit", &s.organizational_unit),
        ("state", &s.state),
        ("locality", &s.locality),
    ] {
        if v.as_deref().is_some_and(|v| v.is_empty() || v.len() > 128) {
            return Err(Error::invalid(field, "must be 1 to 128 characters"));
        }
    }
    Ok(())
}

impl CertSpec {
    /// The key a server-generated certificate gets (`key_algorithm`, default P-256).
    pub fn generated_key(&self) -> Result<KeySource> {
        Ok(KeySource::Generate(
            self.key_algorithm
                .as_deref()
                .unwrap_or("ec-p256")
                .parse::<KeyAlgorithm>()
                .map_err(|e| Error::invalid("key_algorithm", e))?,
        ))
    }

    /// The subject this specification names.
    pub fn subject(&self) -> SubjectFields {
        SubjectFields {
            common_name: self.common_name.trim().to_string(),
            organization: self.organization.clone(),
            organizational_unit: self.organizational_unit.clone(),
            locality: self.locality.clone(),
            state: self.state.clone(),
            country: self.country.clone(),
        }
    }

    /// The issuance request for this specification at `ca_id`, with `key`, checked
    /// against the specification's own rules (the issuance path checks the rest).
    pub fn request(&self, ca_id: &str, key: KeySource, who: Requester) -> Result<IssueRequest> {
        let leaf_type = leaf_type(&self.cert_type)?;
        check_tags(&self.tags)?;
        if self.name.as_deref().is_some_and(|n| n.len() > 128) {
            return Err(Error::invalid("name", "must be at most 128 characters"));
        }
        let subject = self.subject();
        check_subject(&subject)?;
        let sans = parse_sans(&self.sans)?;
        Ok(IssueRequest {
            tenant_id: who.tenant_id,
            ca_id: ca_id.to_string(),
            leaf_type,
            subject,
            sans,
            validity_days: self.validity_days,
            include_crl: self.include_crl,
            key,
            source: CertificateSource::PrivateCa,
            name: self.name.clone(),
            tags: self.tags.clone(),
            requester: who.id,
            spec_json: serde_json::to_value(self).map_err(Error::internal)?,
            renewed_from: None,
            audit: who.audit,
            acme_names: false,
            followup: None,
            est_client: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CertSpec {
        serde_json::from_value(serde_json::json!({
            "type": "server", "common_name": "a.example", "validity_days": 30,
            "sans": [{"type": "dns", "value": "A.example"}, {"type": "ip", "value": "10.0.0.1"}]
        }))
        .unwrap()
    }

    fn who() -> Requester {
        Requester {
            tenant_id: "t".into(),
            id: Some("tok".into()),
            audit: None,
        }
    }

    #[test]
    fn a_spec_becomes_a_request_and_is_stored_as_itself() {
        let s = spec();
        let r = s.request("ca", s.generated_key().unwrap(), who()).unwrap();
        assert_eq!(r.leaf_type, LeafType::Server);
        assert_eq!(r.sans[0], San::Dns("a.example".into()));
        assert!(r.include_crl, "include_crl defaults to true");
        let back: CertSpec = serde_json::from_value(r.spec_json).unwrap();
        assert_eq!(back.common_name, "a.example");
        assert_eq!(back.sans.len(), 2);
    }

    #[test]
    fn each_rule_names_its_field() {
        let field =
            |s: CertSpec| match s.request("ca", KeySource::Generate(KeyAlgorithm::EcP256), who()) {
                Err(Error::Invalid { field, .. }) => field,
                Err(other) => panic!("{other}"),
                Ok(_) => panic!("accepted"),
            };
        let mut s = spec();
        s.cert_type = "code".into();
        assert_eq!(field(s), "type");
        let mut s = spec();
        s.country = Some("de".into());
        assert_eq!(field(s), "country");
        let mut s = spec();
        s.sans[1].value = "not-an-ip".into();
        assert_eq!(field(s), "sans[1].value");
        let mut s = spec();
        s.sans[0].kind = "rid".into();
        assert_eq!(field(s), "sans[0].type");
        let mut s = spec();
        s.tags = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(field(s), "tags");
        let mut s = spec();
        s.name = Some("n".repeat(129));
        assert_eq!(field(s), "name");
        let mut s = spec();
        s.key_algorithm = Some("dsa".into());
        assert!(
            matches!(s.generated_key(), Err(Error::Invalid { field, .. }) if field == "key_algorithm")
        );
    }
}
