//! Reading certificate chains someone else assembled: who signed whom, which names a
//! certificate covers. Pure functions over DER (no trust decisions: callers decide what a
//! complete chain or a matching name means for them).

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::inspect::{is_self_signed, parse};

/// One certificate's facts, as a report shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Described {
    /// RFC 4514-style subject.
    pub subject: String,
    /// RFC 4514-style issuer.
    pub issuer: String,
    /// Lower-case hex serial.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
    /// DNS names and IP addresses of its subjectAltName.
    pub names: Vec<String>,
    /// Whether it signed itself (a root, or a self-signed leaf).
    pub self_signed: bool,
}

/// Describes a DER certificate; `None` when it does not parse.
pub fn describe(der: &[u8]) -> Option<Described> {
    use sha2::Digest;
    let c = parse(der)?;
    Some(Described {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial: crate::serial_hex(c.raw_serial()),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        sha256: hex::encode(sha2::Sha256::digest(der)),
        names: san_names(&c),
        self_signed: is_self_signed(der),
    })
}

fn san_names(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => ip_of(b).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether `issuer_der`'s key signed `child_der` (and its subject is the child's issuer).
pub fn signed_by(child_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Some(child), Some(issuer)) = (parse(child_der), parse(issuer_der)) else {
        return false;
    };
    child.issuer().as_raw() == issuer.subject().as_raw()
        && child.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Whether the certificate covers `name` by its subjectAltName, as TLS clients match
/// (RFC 6125): DNS names case-insensitively, a `*.` wildcard standing for exactly one
/// leftmost label; an IP address only by an IP entry. The subject CN is not consulted
/// (browsers stopped doing so).
pub fn covers_name(der: &[u8], name: &str) -> bool {
    let Some(c) = parse(der) else {
        return false;
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return false;
    };
    let wanted_ip: Option<IpAddr> = name.parse().ok();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    san.value
        .general_names
        .iter()
        .any(|n| match (n, wanted_ip) {
            (GeneralName::IPAddress(b), Some(ip)) => ip_of(b) == Some(ip),
            (GeneralName::DNSName(d), None) => dns_matches(&d.to_ascii_lowercase(), &name),
            _ => false,
        })
}

fn dns_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(label, parent)| !label.is_empty() && parent == rest),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

    fn ca(cn: &str) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        (cert.der().to_vec(), Issuer::new(p, key))
    }

    fn leaf(sans: Vec<SanType>, issuer: &Issuer<'_, KeyPair>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "leaf");
        p.subject_alt_names = sans;
        p.signed_by(&key, issuer).unwrap().der().to_vec()
    }

    #[test]
    fn links_and_self_signature() {
        let (root, root_issuer) = ca("Root");
        let (other, _) = ca("Other");
        let l = leaf(vec![], &root_issuer);
        assert!(signed_by(&l, &root));
        assert!(!signed_by(&l, &other));
        assert!(!signed_by(&root, &l));
        assert!(!signed_by(b"junk", &root));
        assert!(describe(&root).unwrap().self_signed);
        let d = describe(&l).unwrap();
        assert!(!d.self_signed);
        assert!(d.issuer.contains("Root"), "{}", d.issuer);
        assert_eq!(d.sha256.len(), 64);
        assert!(describe(b"junk").is_none());
    }

    #[test]
    fn names_match_as_tls_clients_match_them() {
        let (_, issuer) = ca("Root");
        let l = leaf(
            vec![
                SanType::DnsName("www.example.com".try_into().unwrap()),
                SanType::DnsName("*.apps.example.com".try_into().unwrap()),
                SanType::IpAddress("10.0.0.7".parse().unwrap()),
            ],
            &issuer,
        );
        assert!(covers_name(&l, "WWW.Example.com"));
        assert!(covers_name(&l, "www.example.com."));
        assert!(covers_name(&l, "a.apps.example.com"));
        assert!(
            !covers_name(&l, "apps.example.com"),
            "a wildcard needs a label"
        );
        assert!(!covers_name(&l, "a.b.apps.example.com"), "one label only");
        assert!(!covers_name(&l, "example.com"));
        assert!(covers_name(&l, "10.0.0.7"));
        assert!(!covers_name(&l, "10.0.0.8"));
        assert_eq!(
            describe(&l).unwrap().names,
            ["www.example.com", "*.apps.example.com", "10.0.0.7"]
        );
    }
}
