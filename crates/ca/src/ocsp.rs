//! OCSP (RFC 6960, RFC 5019 profile): reading requests, signing responses, issuing the
//! delegated OCSP signing certificate.
//!
//! The ASN.1 is read and written with `yasna` (already in the workspace for CSR
//! attributes and AIA): one request and one response shape, no new dependency tree. Only
//! what RFC 5019 asks of a responder is understood: one `Request` per `OCSPRequest`, SHA-1
//! or SHA-256 CertIDs, the nonce extension (RFC 8954), unsigned requests.

use aws_lc_rs::digest;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SigningKey,
};
use time::OffsetDateTime;
use yasna::models::ObjectIdentifier;
use yasna::{ASN1Error, ASN1ErrorKind, Tag};

use super::Signer;
use vellum_core::error::{Error, Result};
use vellum_core::status::RevocationReason;

const OID_SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
const OID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const OID_NONCE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 2];
const OID_BASIC: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 1];
const OID_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];
/// Longest nonce accepted (RFC 8954 §2.1).
pub const MAX_NONCE: usize = 32;

/// The hash of a CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-1 (what most clients send, `openssl ocsp` included).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl HashAlg {
    /// Its name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
}

/// The CertID of a request.
#[derive(Debug, Clone)]
pub struct CertId {
    /// Its hash algorithm.
    pub alg: HashAlg,
    /// Hash of the issuer's DER subject name.
    pub name_hash: Vec<u8>,
    /// Hash of the issuer's subjectPublicKey bits.
    pub key_hash: Vec<u8>,
    /// The serial as lower-case hex without leading zero bytes (`None`: a negative or
    /// over-long serial, which no CA here issues).
    pub serial: Option<String>,
    /// The CertID exactly as received, echoed in the response.
    pub der: Vec<u8>,
}

/// A parsed OCSP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The certificate asked about.
    pub cert_id: CertId,
    /// The nonce extension's extnValue as received (at most [`MAX_NONCE`] bytes of
    /// nonce), echoed in the response.
    pub nonce: Option<Vec<u8>>,
}

fn invalid() -> ASN1Error {
    ASN1Error::new(ASN1ErrorKind::Invalid)
}

/// Reads an `OCSPRequest`. The error is a sentence for the log; the client gets
/// `malformedRequest`.
pub fn parse_request(der: &[u8]) -> std::result::Result<Request, String> {
    let mut cert_ids: Vec<CertId> = Vec::new();
    let mut nonce: Option<Vec<u8>> = None;
    let mut unknown_alg = false;
    yasna::parse_ber(der, |r| {
        r.read_sequence(|r| {
            // tbsRequest
            r.next().read_sequence(|r| {
                r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_u8()))?;
                r.read_optional(|r| r.read_tagged(Tag::context(1), |r| r.read_der()))?;
                r.next().read_sequence_of(|r| {
                    r.read_sequence(|r| {
                        let cert_der = r.next().read_der()?;
                        match cert_id(&cert_der) {
                            Ok(Some(c)) => cert_ids.push(c),
                            Ok(None) => unknown_alg = true,
                            Err(e) => return Err(e),
                        }
                        r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                        Ok(())
                    })
                })?;
                r.read_optional(|r| {
                    r.read_tagged(Tag::context(2), |r| {
                        r.read_sequence_of(|r| {
                            r.read_sequence(|r| {
                                let oid = r.next().read_oid()?;
                                r.read_optional(|r| r.read_bool())?;
                                let value = r.next().read_bytes()?;
                                if oid == ObjectIdentifier::from_slice(OID_NONCE) {
                                    nonce = Some(value);
                                }
                                Ok(())
                            })
                        })
                    })
                })?;
                Ok(())
            })?;
            // optionalSignature: accepted and ignored (RFC 5019 §2.1.2: not required).
            r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
            Ok(())
        })
    })
    .map_err(|e| format!("not a DER OCSPRequest: {e}"))?;
    if unknown_alg {
        return Err("a CertID uses a hash other than SHA-1 or SHA-256".into());
    }
    if cert_ids.len() != 1 {
        return Err(format!(
            "the request asks about {} certificates; one per request (RFC 5019 §2.1.1)",
            cert_ids.len()
        ));
    }
    if let Some(n) = &nonce {
        // RFC 8954: the extnValue holds an OCTET STRING of 1 to 32 bytes. Some clients
        // put the raw bytes there; their length counts then.
        let len = yasna::parse_der(n, |r| r.read_bytes())
            .map(|b| b.len())
            .unwrap_or(n.len());
        if len == 0 || len > MAX_NONCE {
            return Err(format!(
                "the nonce is {len} bytes; 1 to {MAX_NONCE} are accepted (RFC 8954)"
            ));
        }
    }
    Ok(Request {
        cert_id: cert_ids.remove(0),
        nonce,
    })
}

fn cert_id(der: &[u8]) -> yasna::ASN1Result<Option<CertId>> {
    yasna::parse_ber(der, |r| {
        r.read_sequence(|r| {
            let oid = r.next().read_sequence(|r| {
                let oid = r.next().read_oid()?;
                r.read_optional(|r| r.read_null())?;
                Ok(oid)
            })?;
            let name_hash = r.next().read_bytes()?;
            let key_hash = r.next().read_bytes()?;
            let (serial, positive) = r.next().read_bigint_bytes()?;
            let alg = if oid == ObjectIdentifier::from_slice(OID_SHA1) {
                HashAlg::Sha1
            } else if oid == ObjectIdentifier::from_slice(OID_SHA256) {
                HashAlg::Sha256
            } else {
                return Ok(None);
            };
            if name_hash.len() > 64 || key_hash.len() > 64 {
                return Err(invalid());
            }
            let serial = (positive && serial.len() <= 32).then(|| super::serial_hex(&serial));
            Ok(Some(CertId {
                alg,
                name_hash,
                key_hash,
                serial,
                der: der.to_vec(),
            }))
        })
    })
}

/// The hashes a CertID must carry to name a CA as issuer.
#[derive(Debug, Clone)]
pub struct IssuerHashes {
    name_sha1: Vec<u8>,
    key_sha1: Vec<u8>,
    name_sha256: Vec<u8>,
    key_sha256: Vec<u8>,
}

impl IssuerHashes {
    /// The hashes of a CA certificate's subject and public key.
    pub fn of(ca_der: &[u8]) -> Result<IssuerHashes> {
        let (_, cert) = x509_parser::parse_x509_certificate(ca_der)
            .map_err(|e| Error::internal(format!("unparseable CA certificate: {e}")))?;
        let name = cert.subject().as_raw();
        let key = &cert.public_key().subject_public_key.data;
        Ok(IssuerHashes {
            name_sha1: HashAlg::Sha1.digest(name),
            key_sha1: HashAlg::Sha1.digest(key),
            name_sha256: HashAlg::Sha256.digest(name),
            key_sha256: HashAlg::Sha256.digest(key),
        })
    }

    /// True when `id` names this CA.
    pub fn matches(&self, id: &CertId) -> bool {
        let (n, k) = match id.alg {
            HashAlg::Sha1 => (&self.name_sha1, &self.key_sha1),
            HashAlg::Sha256 => (&self.name_sha256, &self.key_sha256),
        };
        *n == id.name_hash && *k == id.key_hash
    }
}

/// `OCSPResponseStatus` values other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStatus {
    /// 1: the request could not be read.
    MalformedRequest,
    /// 2: the responder failed.
    InternalError,
    /// 3: try again later.
    TryLater,
    /// 6: this responder does not answer for that issuer.
    Unauthorized,
}

/// An unsigned error response (`OCSPResponse` without responseBytes).
pub fn error_response(status: ErrorStatus) -> Vec<u8> {
    let code = match status {
        ErrorStatus::MalformedRequest => 1,
        ErrorStatus::InternalError => 2,
        ErrorStatus::TryLater => 3,
        ErrorStatus::Unauthorized => 6,
    };
    yasna::construct_der(|w| w.write_sequence(|w| w.next().write_enum(code)))
}

/// The status a response states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued and not revoked.
    Good,
    /// Revoked at (Unix seconds) for the reason (`unspecified` is written as no reason).
    Revoked(i64, RevocationReason),
    /// Not issued by this CA.
    Unknown,
}

/// What signs responses: the CA's key, or a delegated OCSP signing certificate's key
/// (then sent along in `certs`).
#[derive(Clone, Copy)]
pub struct ResponderKey<'a> {
    /// The signing key: the CA's ([`crate::CaKey`], in the database or a PKCS#11 token)
    /// or a delegated signer's ([`KeyPair`]).
    pub key: &'a (dyn SigningKey + Send + Sync),
    /// The delegated signer's certificate; `None` when the CA signs.
    pub delegated_cert: Option<&'a [u8]>,
}

impl std::fmt::Debug for ResponderKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponderKey")
            .field("delegated", &self.delegated_cert.is_some())
            .finish()
    }
}

impl<'a> ResponderKey<'a> {
    /// The CA key of `signer`.
    pub fn ca(signer: &'a Signer) -> ResponderKey<'a> {
        ResponderKey {
            key: signer.issuer().key(),
            delegated_cert: None,
        }
    }
}

/// One response to sign.
#[derive(Debug, Clone, Copy)]
pub struct ResponseSpec<'a> {
    /// The CertID as the client sent it.
    pub cert_id_der: &'a [u8],
    /// The certificate's status.
    pub status: CertStatus,
    /// thisUpdate and producedAt, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The request's nonce extnValue, echoed.
    pub nonce: Option<&'a [u8]>,
}

/// A GeneralizedTime's content (`YYYYMMDDHHMMSSZ`, RFC 5280 §4.1.2.5.2).
struct GTime(String);

fn gtime(unix: i64) -> Result<GTime> {
    let t = OffsetDateTime::from_unix_timestamp(unix).map_err(Error::internal)?;
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    Ok(GTime(t.format(&fmt).map_err(Error::internal)?))
}

trait WriteGTime {
    fn write_gtime(self, t: &GTime);
}

impl WriteGTime for yasna::DERWriter<'_> {
    fn write_gtime(self, t: &GTime) {
        self.write_tagged_implicit(yasna::tags::TAG_GENERALIZEDTIME, |w| {
            w.write_bytes(t.0.as_bytes())
        })
    }
}

/// The DER AlgorithmIdentifier of the signature `key` makes.
pub(crate) fn signature_algorithm(key: &(impl PublicKeyData + ?Sized)) -> Result<Vec<u8>> {
    let alg = key.algorithm();
    let (oid, null): (&[u64], bool) = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        (&[1, 2, 840, 10045, 4, 3, 2], false)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        (&[1, 2, 840, 10045, 4, 3, 3], false)
    } else if alg == &rcgen::PKCS_ED25519 {
        (&[1, 3, 101, 112], false)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        (&[1, 2, 840, 113549, 1, 1, 11], true)
    } else if alg == &rcgen::PKCS_RSA_SHA384 {
        (&[1, 2, 840, 113549, 1, 1, 12], true)
    } else if alg == &rcgen::PKCS_RSA_SHA512 {
        (&[1, 2, 840, 113549, 1, 1, 13], true)
    } else {
        return Err(Error::internal(format!(
            "no signature algorithm for key algorithm {alg:?}"
        )));
    };
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&ObjectIdentifier::from_slice(oid));
            if null {
                w.next().write_null();
            }
        })
    }))
}

/// Signs a successful `OCSPResponse` with one `SingleResponse` (DER). The responder is
/// identified by key hash (RFC 5019 §2.2.3).
pub fn sign_response(key: ResponderKey<'_>, spec: &ResponseSpec<'_>) -> Result<Vec<u8>> {
    let key_hash = HashAlg::Sha1.digest(key.key.der_bytes());
    let produced = gtime(spec.this_update)?;
    let this_update = gtime(spec.this_update)?;
    let next_update = gtime(spec.next_update)?;
    let revoked_at = match spec.status {
        CertStatus::Revoked(at, _) => Some(gtime(at)?),
        _ => None,
    };
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_tagged(Tag::context(2), |w| w.write_bytes(&key_hash));
            w.next().write_gtime(&produced);
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_der(spec.cert_id_der);
                    match spec.status {
                        CertStatus::Good => w
                            .next()
                            .write_tagged_implicit(Tag::context(0), |w| w.write_null()),
                        CertStatus::Revoked(_, reason) => {
                            w.next().write_tagged_implicit(Tag::context(1), |w| {
                                w.write_sequence(|w| {
                                    if let Some(t) = &revoked_at {
                                        w.next().write_gtime(t);
                                    }
                                    if reason != RevocationReason::Unspecified {
                                        w.next().write_tagged(Tag::context(0), |w| {
                                            w.write_enum(reason.code().into())
                                        });
                                    }
                                })
                            })
                        }
                        CertStatus::Unknown => w
                            .next()
                            .write_tagged_implicit(Tag::context(2), |w| w.write_null()),
                    }
                    w.next().write_gtime(&this_update);
                    w.next()
                        .write_tagged(Tag::context(0), |w| w.write_gtime(&next_update));
                })
            });
            if let Some(nonce) = spec.nonce {
                w.next().write_tagged(Tag::context(1), |w| {
                    w.write_sequence(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&ObjectIdentifier::from_slice(OID_NONCE));
                            w.next().write_bytes(nonce);
                        })
                    })
                });
            }
        })
    });
    let alg = signature_algorithm(key.key)?;
    let signature = key.key.sign(&tbs)?;
    let basic = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next().write_der(&alg);
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
            if let Some(cert) = key.delegated_cert {
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| w.next().write_der(cert))
                });
            }
        })
    });
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_enum(0);
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_oid(&ObjectIdentifier::from_slice(OID_BASIC));
                    w.next().write_bytes(&basic);
                })
            });
        })
    }))
}

/// Issues a delegated OCSP signing certificate for `key`, signed by the CA: extended key
/// usage id-kp-OCSPSigning only, id-pkix-ocsp-nocheck, digitalSignature, no CDP (RFC
/// 6960 §4.2.2.2.1: clients need not check its status). Returns DER and hex serial.
pub fn delegated_signer_cert(
    ca: &Signer,
    ca_common_name: &str,
    key: &KeyPair,
    not_before: i64,
    not_after: i64,
) -> Result<(Vec<u8>, String)> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("{ca_common_name} OCSP Responder"),
    );
    p.distinguished_name = dn;
    p.not_before = OffsetDateTime::from_unix_timestamp(not_before).map_err(Error::internal)?;
    p.not_after = OffsetDateTime::from_unix_timestamp(not_after).map_err(Error::internal)?;
    let (serial, serial_hex) = super::profile::random_serial();
    p.serial_number = Some(serial);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_identifier_method = super::profile::key_identifier(key);
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    let nocheck = yasna::construct_der(|w| w.write_null());
    p.custom_extensions
        .push(CustomExtension::from_oid_content(OID_NOCHECK, nocheck));
    let cert = p.signed_by(key, ca.issuer())?;
    Ok((cert.der().to_vec(), serial_hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_sequence(|w| {
                                    w.next().write_oid(&ObjectIdentifier::from_slice(OID_SHA1));
                                    w.next().write_null();
                                });
                                w.next().write_bytes(&[1; 20]);
                                w.next().write_bytes(&[2; 20]);
                                w.next().write_bigint_bytes(serial, true);
                            })
                        })
                    });
                    if let Some(n) = nonce {
                        w.next().write_tagged(Tag::context(2), |w| {
                            w.write_sequence(|w| {
                                w.next().write_sequence(|w| {
                                    w.next().write_oid(&ObjectIdentifier::from_slice(OID_NONCE));
                                    w.next()
                                        .write_bytes(&yasna::construct_der(|w| w.write_bytes(n)));
                                })
                            })
                        });
                    }
                })
            })
        })
    }

    #[test]
    fn reads_serial_and_nonce_and_refuses_long_nonces() {
        let r = parse_request(&request(&[0x7f, 0x01], Some(&[9; 16]))).unwrap();
        assert_eq!(r.cert_id.alg, HashAlg::Sha1);
        assert_eq!(r.cert_id.serial.as_deref(), Some("7f01"));
        assert_eq!(r.cert_id.name_hash, vec![1; 20]);
        assert!(r.nonce.is_some());
        assert!(parse_request(&request(&[1], Some(&[9; 33])))
            .unwrap_err()
            .contains("33 bytes"));
        assert!(parse_request(b"\x30\x00").is_err());
        assert!(parse_request(b"garbage").is_err());
    }
}
