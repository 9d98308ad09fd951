//! PKCS#10 certificate signing requests: parsing, signature verification, key policy.
//! Every refusal names the rule; nothing a peer sends can panic here.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use x509_parser::x509::X509Name;

use ca::profile::{San, SubjectFields};
use vellum_core::error::{Error, Result};

/// What a CSR says.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// Name of the key type (`ec-p256`, `rsa-2048`, `ed25519`…).
    pub key_algorithm: String,
    /// True for RSA keys.
    pub is_rsa: bool,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Requested subject alternative names (extensionRequest).
    pub sans: Vec<San>,
    /// The subject as the fields Vellum certifies, or why it cannot be certified (an
    /// attribute other than CN, O, OU, L, ST, C; a control character…). ACME reads only
    /// the CN; EST and the admin API take the whole subject.
    pub subject: std::result::Result<SubjectFields, String>,
}

/// Reads a PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) CSR.
pub fn from_pem(field: &str, text: &str) -> Result<ParsedCsr> {
    let block = ::pem::parse(text.trim()).map_err(|_| {
        Error::invalid(
            field,
            "is not PEM: expected -----BEGIN CERTIFICATE REQUEST-----",
        )
    })?;
    if !block.tag().ends_with("CERTIFICATE REQUEST") {
        return Err(Error::invalid(
            field,
            format!(
                "holds a {} block; expected CERTIFICATE REQUEST",
                block.tag()
            ),
        ));
    }
    from_der(field, block.contents())
}

/// Reads a DER CSR: structure, self-signature, key policy.
pub fn from_der(field: &str, der: &[u8]) -> Result<ParsedCsr> {
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|_| {
        Error::invalid(
            field,
            "is not a PKCS#10 certificate request (the DER structure does not parse)",
        )
    })?;
    if !rest.is_empty() {
        return Err(Error::invalid(
            field,
            "has trailing bytes after the PKCS#10 request",
        ));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    // Key policy first: a weak key is refused by name (the signature check would only say
    // that a 1024-bit RSA signature does not verify).
    let (key_algorithm, is_rsa) = key_policy(spki).map_err(|e| Error::invalid(field, e))?;
    if csr.verify_signature().is_err() {
        return Err(Error::invalid(
            field,
            "signature does not verify: the request was not signed by the key it contains",
        ));
    }
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let mut sans = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    sans.push(match name {
                        GeneralName::DNSName(d) => San::Dns(d.to_ascii_lowercase()),
                        GeneralName::RFC822Name(e) => San::Email(e.to_string()),
                        GeneralName::URI(u) => San::Uri(u.to_string()),
                        GeneralName::IPAddress(b) => {
                            San::Ip(ip_from_bytes(b).ok_or_else(|| {
                                Error::invalid(field, "holds an IP address SAN of invalid length")
                            })?)
                        }
                        other => {
                            return Err(Error::invalid(
                                field,
                                format!(
                                    "requests a subjectAltName of type {}, which is not supported; \
                                     a CSR may ask for DNS names, IP addresses, e-mail addresses and URIs",
                                    general_name_kind(other)
                                ),
                            ))
                        }
                    });
                }
            }
        }
    }
    Ok(ParsedCsr {
        subject: subject_fields(&info.subject),
        spki_der: spki.raw.to_vec(),
        key_algorithm,
        is_rsa,
        common_name,
        sans,
    })
}

/// The subject as the fields Vellum certifies (CN, O, OU, L, ST, C); any other attribute,
/// or one given twice, is refused by name.
pub fn subject_fields(name: &X509Name<'_>) -> Result<SubjectFields, String> {
    let mut s = SubjectFields::default();
    let mut cn: Option<String> = None;
    for attr in name.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let (label, slot): (&str, &mut Option<String>) = match oid.as_str() {
            "2.5.4.3" => ("CN", &mut cn),
            "2.5.4.6" => ("C", &mut s.country),
            "2.5.4.7" => ("L", &mut s.locality),
            "2.5.4.8" => ("ST", &mut s.state),
            "2.5.4.10" => ("O", &mut s.organization),
            "2.5.4.11" => ("OU", &mut s.organizational_unit),
            other => {
                let known = x509_parser::objects::oid2sn(
                    attr.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map(|sn| format!("{sn} ({other})"))
                .unwrap_or_else(|_| other.to_string());
                return Err(format!(
                    "subject attribute {known} is not supported; a subject may hold CN, O, OU, L, ST and C"
                ));
            }
        };
        let value = attr
            .as_str()
            .map_err(|_| format!("subject {label} is not a string"))?
            .trim()
            .to_string();
        if let Some(problem) = super::names::text_problem(&value) {
            return Err(format!("subject {label} {problem}"));
        }
        if slot.is_some() {
            return Err(format!("subject holds more than one {label}"));
        }
        if value.is_empty() || value.len() > 128 {
            return Err(format!("subject {label} must be 1 to 128 characters"));
        }
        *slot = Some(value);
    }
    if let Some(c) = &s.country {
        if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(format!(
                "subject C={c:?} is not a two-letter ISO 3166 code such as \"DE\""
            ));
        }
    }
    s.common_name = cn.unwrap_or_default();
    Ok(s)
}

/// The name of a GeneralName's type, for refusals.
fn general_name_kind(n: &GeneralName<'_>) -> &'static str {
    match n {
        GeneralName::OtherName(..) => "otherName",
        GeneralName::RFC822Name(_) => "rfc822Name",
        GeneralName::DNSName(_) => "dNSName",
        GeneralName::X400Address(_) => "x400Address",
        GeneralName::DirectoryName(_) => "directoryName",
        GeneralName::EDIPartyName(_) => "ediPartyName",
        GeneralName::URI(_) => "uniformResourceIdentifier",
        GeneralName::IPAddress(_) => "iPAddress",
        GeneralName::RegisteredID(_) => "registeredID",
        GeneralName::Invalid(..) => "an invalid encoding",
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Key policy for end-entity keys: RSA 2048–8192, EC P-256/P-384, Ed25519; anything else
/// is refused by name.
pub fn key_policy(
    spki: &x509_parser::x509::SubjectPublicKeyInfo,
) -> Result<(String, bool), String> {
    let oid = spki.algorithm.algorithm.to_id_string();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                Err(format!(
                    "RSA key of {bits} bits is too weak: at least 2048 bits are required"
                ))
            } else if bits > 8192 {
                Err(format!(
                    "RSA key of {bits} bits is larger than the 8192 bits accepted"
                ))
            } else {
                Ok((format!("rsa-{bits}"), true))
            }
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => Ok(("ec-p256".into(), false)),
                "1.3.132.0.34" => Ok(("ec-p384".into(), false)),
                "1.3.132.0.35" => {
                    Err("EC key on P-521 is not accepted (use P-256 or P-384)".into())
                }
                "1.3.132.0.10" => {
                    Err("EC key on secp256k1 is not accepted (use P-256 or P-384)".into())
                }
                other => Err(format!(
                    "EC key on curve {other} is not accepted (use P-256 or P-384)"
                )),
            }
        }
        Ok(PublicKey::DSA(_)) => {
            Err("DSA keys are not accepted (use RSA ≥ 2048, P-256, P-384 or Ed25519)".into())
        }
        _ if oid == "1.3.101.112" => Ok(("ed25519".into(), false)),
        _ if oid == "1.3.101.113" => Err("Ed448 keys are not accepted (use Ed25519)".into()),
        _ => Err(format!(
            "key algorithm {oid} is not accepted (use RSA ≥ 2048, P-256, P-384 or Ed25519)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn csr(key: &KeyPair, names: &[&str]) -> Vec<u8> {
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn accepts_good_keys_and_reads_names() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let parsed = from_der("csr_pem", &csr(&key, &["a.example", "10.0.0.1"])).unwrap();
            assert_eq!(
                parsed.sans,
                vec![
                    San::Dns("a.example".into()),
                    San::Ip("10.0.0.1".parse().unwrap())
                ]
            );
        }
    }

    #[test]
    fn refuses_tampered_and_garbage() {
        let key = KeyPair::generate().unwrap();
        let mut der = csr(&key, &["a.example"]);
        let n = der.len();
        der[n - 5] ^= 0x55;
        let e = from_der("csr_pem", &der).unwrap_err().to_string();
        assert!(e.contains("signature") || e.contains("PKCS#10"), "{e}");
        let e = from_der("csr_pem", b"\x30\x03\x02\x01\x01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PKCS#10"), "{e}");
        let e = from_pem("csr_pem", "hello").unwrap_err().to_string();
        assert!(e.contains("PEM"), "{e}");
    }
}
