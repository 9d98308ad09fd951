//! Certificate profiles: what a root, an intermediate and a leaf certificate contain.

use std::net::IpAddr;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber,
};
use time::OffsetDateTime;

use super::Signer;
use vellum_core::error::{Error, Result};

/// Subject fields of a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectFields {
    pub common_name: String,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    pub locality: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
}

impl SubjectFields {
    /// The name as x509-parser renders an issued certificate's subject
    /// (`C=…, ST=…, L=…, O=…, OU=…, CN=…`, absent parts left out).
    pub fn display_string(&self) -> String {
        [
            ("C", &self.country),
            ("ST", &self.state),
            ("L", &self.locality),
            ("O", &self.organization),
            ("OU", &self.organizational_unit),
            ("CN", &Some(self.common_name.clone())),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={v}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// The X.500 name, in C, ST, L, O, OU, CN order.
    pub fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        // RFC 5280: countryName is a PrintableString (rcgen writes &str as UTF8String).
        if let Some(c) = self.country.as_deref().filter(|c| !c.is_empty()) {
            match rcgen::string::PrintableString::try_from(c.to_string()) {
                Ok(p) => dn.push(DnType::CountryName, rcgen::DnValue::PrintableString(p)),
                Err(_) => dn.push(DnType::CountryName, c),
            }
        }
        let mut push = |t: DnType, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                dn.push(t, v);
            }
        };
        push(DnType::StateOrProvinceName, &self.state);
        push(DnType::LocalityName, &self.locality);
        push(DnType::OrganizationName, &self.organization);
        push(DnType::OrganizationalUnitName, &self.organizational_unit);
        if !self.common_name.is_empty() {
            dn.push(DnType::CommonName, self.common_name.as_str());
        }
        dn
    }
}

/// A fresh 128-bit positive serial number: 16 random bytes, top bit clear, first byte
/// non-zero (so the DER encoding is always exactly 16 bytes).
pub fn random_serial() -> (SerialNumber, String) {
    let mut bytes = [0u8; 16];
    loop {
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes[0] &= 0x7f;
        if bytes[0] != 0 {
            break;
        }
    }
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

/// Where a CA's CRL and certificate are published (plain-HTTP listener).
#[derive(Debug, Clone)]
pub struct PublicationUrls {
    /// `…/crl/{id}.crl`.
    pub crl: String,
    /// `…/crl/{id}-delta.crl` (the delta CRL, when the CA publishes them).
    pub delta_crl: String,
    /// `…/ca/{id}.crt`.
    pub certificate: String,
    /// `…/ocsp/{id}` (the OCSP responder of the CA).
    pub ocsp: String,
}

impl PublicationUrls {
    /// URLs of CA `ca_id` under the HTTP base URL (its first key's).
    pub fn for_ca(http_base: &str, ca_id: &str) -> PublicationUrls {
        Self::for_key(http_base, ca_id, 1)
    }

    /// URLs of the key that CA `ca_id` took at generation `key_generation` (a renewal
    /// with a new key): the first key keeps `/crl/{id}.crl` and `/ca/{id}.crt`, a key
    /// introduced at generation n > 1 publishes at `/crl/{id}-g{n}.crl` and
    /// `/ca/{id}-g{n}.crt`, so certificates signed by every key find a CRL and an issuer
    /// certificate of that key. The OCSP responder is the CA's.
    pub fn for_key(http_base: &str, ca_id: &str, key_generation: i64) -> PublicationUrls {
        let name = key_file_name(ca_id, key_generation);
        PublicationUrls {
            crl: format!("{http_base}/crl/{name}.crl"),
            delta_crl: format!("{http_base}/crl/{name}-delta.crl"),
            certificate: format!("{http_base}/ca/{name}.crt"),
            ocsp: format!("{http_base}/ocsp/{ca_id}"),
        }
    }
}

/// The file name (without extension) of a CA key's CRL and certificate: `{id}` for the
/// first key, `{id}-g{n}` for the key introduced at generation n.
pub fn key_file_name(ca_id: &str, key_generation: i64) -> String {
    if key_generation <= 1 {
        ca_id.to_string()
    } else {
        format!("{ca_id}-g{key_generation}")
    }
}

/// The Authority Information Access extension: an OCSP URI and a caIssuers URI (either
/// may be absent, not both).
fn aia(ca_issuers: Option<&str>, ocsp: Option<&str>) -> CustomExtension {
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            if let Some(url) = ocsp {
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 3, 6, 1, 5, 5, 7, 48, 1,
                        ]));
                    w.next()
                        .write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(url));
                });
            }
            let Some(url) = ca_issuers else { return };
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                        1, 3, 6, 1, 5, 5, 7, 48, 2,
                    ]));
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(url));
            })
        })
    });
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der)
}

fn offset(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(Error::internal)
}

/// Validity window of a new certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value, the key
/// identifier every verifier and linter recognises.
pub fn key_identifier(public_key: &impl PublicKeyData) -> rcgen::KeyIdMethod {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        public_key.der_bytes(),
    );
    rcgen::KeyIdMethod::PreSpecified(digest.as_ref().to_vec())
}

fn ca_params(
    subject: &SubjectFields,
    validity: Validity,
    path_len: Option<u8>,
) -> Result<(CertificateParams, String)> {
    ca_params_named(subject.distinguished_name(), validity, path_len)
}

fn ca_params_named(
    name: DistinguishedName,
    validity: Validity,
    path_len: Option<u8>,
) -> Result<(CertificateParams, String)> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name;
    p.not_before = offset(validity.not_before)?;
    p.not_after = offset(validity.not_after)?;
    let (serial, serial_hex) = random_serial();
    p.serial_number = Some(serial);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok((p, serial_hex))
}

/// The subject of a DER certificate as rcgen writes names (same attributes, order and
/// string types): what a renewed CA certificate carries, and what rcgen writes as the
/// issuer of everything the CA signs, so the two always match byte for byte.
pub fn subject_name_of(der: &[u8]) -> Result<DistinguishedName> {
    use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
    use rcgen::DnValue;
    use x509_parser::der_parser::asn1_rs::Tag;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::internal(format!("unparseable CA certificate: {e}")))?;
    // A name this copy cannot reproduce exactly is the CA's state, not a server fault: the
    // renewal is refused (409) with what to do instead.
    let bad = |why: &str| {
        Error::conflict(format!(
            "the CA certificate's subject cannot be copied into a renewed certificate \
             ({why}); reset the CA and enable it again with a new certificate instead"
        ))
    };
    // What rcgen's `Issuer::from_ca_cert_der` does with the name (its own parser is not
    // public): one attribute per RDN, each string type kept.
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(bad("multi-valued or empty RDNs are not supported"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| bad("attribute type"))?
            .collect();
        let data = attr.attr_value().data;
        let text = || std::str::from_utf8(data).map_err(|_| bad("not UTF-8"));
        let value = match attr.attr_value().header.tag() {
            Tag::BmpString => DnValue::BmpString(
                BmpString::from_utf16be(data.to_vec()).map_err(|_| bad("BMPString"))?,
            ),
            Tag::Ia5String => {
                DnValue::Ia5String(Ia5String::try_from(text()?).map_err(|_| bad("IA5String"))?)
            }
            Tag::PrintableString => DnValue::PrintableString(
                PrintableString::try_from(text()?).map_err(|_| bad("PrintableString"))?,
            ),
            Tag::T61String => DnValue::TeletexString(
                TeletexString::try_from(text()?).map_err(|_| bad("TeletexString"))?,
            ),
            Tag::UniversalString => DnValue::UniversalString(
                UniversalString::from_utf32be(data.to_vec()).map_err(|_| bad("UniversalString"))?,
            ),
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            _ => return Err(bad("unsupported string type")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// A renewed root certificate (rollover): the subject of `old_der`, self-signed with
/// `key` (the old key or a new one). Returns the DER and the hex serial.
pub fn renewed_root(
    old_der: &[u8],
    validity: Validity,
    key: &impl rcgen::SigningKey,
) -> Result<(Vec<u8>, String)> {
    let (mut p, serial) = ca_params_named(subject_name_of(old_der)?, validity, None)?;
    p.key_identifier_method = key_identifier(key);
    let cert = p.self_signed(key)?;
    Ok((cert.der().to_vec(), serial))
}

/// A renewed intermediate certificate (rollover): the subject of `old_der`, for `key`
/// (the old key or a new one), signed by `parent` like [`intermediate`].
pub fn renewed_intermediate(
    old_der: &[u8],
    validity: Validity,
    key: &impl PublicKeyData,
    parent: &Signer,
    parent_urls: &PublicationUrls,
    parent_ocsp: bool,
    parent_deltas: bool,
) -> Result<(Vec<u8>, String)> {
    let (mut p, serial) = ca_params_named(subject_name_of(old_der)?, validity, Some(0))?;
    intermediate_extensions(&mut p, key, parent_urls, parent_ocsp, parent_deltas);
    let cert = p.signed_by(key, parent.issuer())?;
    Ok((cert.der().to_vec(), serial))
}

/// The cross-signed certificate of a root renewed with a new key: subject = the root's
/// (that of `new_root_der`), public key = the new key, issuer = the old certificate's
/// subject, signed by the old key (`old`), AKI = the old key's identifier, SKI = the new
/// key's, CA without a path length limit, like the root itself. Clients that trust only
/// the old root reach the new one through it. Returns the DER and the hex serial.
pub fn cross_signed(
    new_root_der: &[u8],
    new_key: &impl PublicKeyData,
    old: &Signer,
    validity: Validity,
) -> Result<(Vec<u8>, String)> {
    let (mut p, serial) = ca_params_named(subject_name_of(new_root_der)?, validity, None)?;
    p.key_identifier_method = key_identifier(new_key);
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(new_key, old.issuer())?;
    Ok((cert.der().to_vec(), serial))
}

fn intermediate_extensions(
    p: &mut CertificateParams,
    key: &impl PublicKeyData,
    parent_urls: &PublicationUrls,
    parent_ocsp: bool,
    parent_deltas: bool,
) {
    p.key_identifier_method = key_identifier(key);
    p.use_authority_key_identifier_extension = true;
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![parent_urls.crl.clone()],
    }];
    // The root publishes delta ARLs: verifiers find them through freshestCRL (RFC 5280
    // §5.2.6), as in leaves.
    if parent_deltas {
        p.custom_extensions.push(CustomExtension::from_oid_content(
            super::crl::FRESHEST_CRL_OID,
            super::crl::freshest_crl_value(&parent_urls.delta_crl),
        ));
    }
    p.custom_extensions.push(aia(
        Some(&parent_urls.certificate),
        parent_ocsp.then_some(parent_urls.ocsp.as_str()),
    ));
}

/// A self-signed root certificate. Returns the DER and the hex serial.
pub fn self_signed_root(
    subject: &SubjectFields,
    validity: Validity,
    key: &impl rcgen::SigningKey,
) -> Result<(Vec<u8>, String)> {
    let (mut p, serial) = ca_params(subject, validity, None)?;
    p.key_identifier_method = key_identifier(key);
    let cert = p.self_signed(key)?;
    Ok((cert.der().to_vec(), serial))
}

/// An intermediate certificate (pathLen 0) signed by `parent`.
pub fn intermediate(
    subject: &SubjectFields,
    validity: Validity,
    key: &impl PublicKeyData,
    parent: &Signer,
    parent_urls: &PublicationUrls,
    parent_ocsp: bool,
    parent_deltas: bool,
) -> Result<(Vec<u8>, String)> {
    let (mut p, serial) = ca_params(subject, validity, Some(0))?;
    intermediate_extensions(&mut p, key, parent_urls, parent_ocsp, parent_deltas);
    let cert = p.signed_by(key, parent.issuer())?;
    Ok((cert.der().to_vec(), serial))
}

pub use vellum_core::status::LeafType;

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
}

/// The name itself (`a.example`, `10.0.0.1`, `ops@a.example`, `spiffe://…`).
impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => f.write_str(d),
            San::Ip(ip) => write!(f, "{ip}"),
            San::Email(e) => f.write_str(e),
            San::Uri(u) => f.write_str(u),
        }
    }
}

impl San {
    /// The API's name of the type: `dns`, `ip`, `email`, `uri`.
    pub fn kind(&self) -> &'static str {
        match self {
            San::Dns(_) => "dns",
            San::Ip(_) => "ip",
            San::Email(_) => "email",
            San::Uri(_) => "uri",
        }
    }

    fn to_rcgen(&self) -> Result<SanType> {
        let ia5 = |s: &str| {
            rcgen::string::Ia5String::try_from(s.to_string())
                .map_err(|_| Error::invalid("sans", format!("{s:?} is not ASCII")))
        };
        Ok(match self {
            San::Dns(d) => SanType::DnsName(ia5(d)?),
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Email(e) => SanType::Rfc822Name(ia5(e)?),
            San::Uri(u) => SanType::URI(ia5(u)?),
        })
    }
}

/// A PKCS#10 certificate signing request (DER) for `subject` and `sans`, signed with
/// `key`, to take to another CA.
pub fn csr(subject: &SubjectFields, sans: &[San], key: &KeyPair) -> Result<Vec<u8>> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject.distinguished_name();
    p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
    Ok(p.serialize_request(key)?.der().to_vec())
}

/// Everything that goes into an end-entity certificate besides its public key.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub leaf_type: LeafType,
    pub subject: SubjectFields,
    pub sans: Vec<San>,
    pub validity: Validity,
    /// Add keyEncipherment (RSA server keys).
    pub key_encipherment: bool,
    /// CRL distribution point, when the certificate should carry one.
    pub crl_url: Option<String>,
    /// freshestCRL (the delta CRL's URL), when the issuer publishes delta CRLs.
    pub freshest_crl_url: Option<String>,
    /// AIA caIssuers URL.
    pub issuer_url: Option<String>,
    /// AIA OCSP URL, when the issuer answers OCSP.
    pub ocsp_url: Option<String>,
}

/// Signs an end-entity certificate for `public_key`. Returns the DER and the hex serial.
pub fn leaf(
    spec: &LeafSpec,
    public_key: &impl PublicKeyData,
    issuer: &Signer,
) -> Result<(Vec<u8>, String)> {
    let mut p = CertificateParams::default();
    p.distinguished_name = spec.subject.distinguished_name();
    p.not_before = offset(spec.validity.not_before)?;
    p.not_after = offset(spec.validity.not_after)?;
    let (serial, serial_hex) = random_serial();
    p.serial_number = Some(serial);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_identifier_method = key_identifier(public_key);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if spec.key_encipherment {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = vec![match spec.leaf_type {
        LeafType::Server => ExtendedKeyUsagePurpose::ServerAuth,
        LeafType::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    p.subject_alt_names = spec
        .sans
        .iter()
        .map(San::to_rcgen)
        .collect::<Result<Vec<_>>>()?;
    p.use_authority_key_identifier_extension = true;
    if let Some(url) = &spec.crl_url {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![url.clone()],
        }];
    }
    if let Some(url) = &spec.freshest_crl_url {
        p.custom_extensions.push(CustomExtension::from_oid_content(
            super::crl::FRESHEST_CRL_OID,
            super::crl::freshest_crl_value(url),
        ));
    }
    if spec.issuer_url.is_some() || spec.ocsp_url.is_some() {
        p.custom_extensions
            .push(aia(spec.issuer_url.as_deref(), spec.ocsp_url.as_deref()));
    }
    let cert = p.signed_by(public_key, issuer.issuer())?;
    Ok((cert.der().to_vec(), serial_hex))
}
