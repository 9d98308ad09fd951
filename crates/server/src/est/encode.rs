//! EST wire encodings: certs-only CMS SignedData, CSR attributes, `multipart/mixed`, and
//! the base64 transfer encoding RFC 8951 settled on.
//!
//! The DER is built with `yasna` (already used for certificate extensions) rather than the
//! RustCrypto `cms` crate: a degenerate SignedData and a CsrAttrs sequence are a handful of
//! fixed elements around certificates we already hold as DER, and `yasna` writes them
//! (including the DER ordering of `SET OF`) without a second ASN.1 stack in the build.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use yasna::models::ObjectIdentifier;

/// `id-signedData` (RFC 5652).
const ID_SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
/// `id-data` (RFC 5652).
const ID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
/// `ecdsa-with-SHA256` (RFC 5758).
const ECDSA_WITH_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
/// `id-ecPublicKey` (RFC 5480).
const ID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
/// `secp256r1` (RFC 5480).
const SECP256R1: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
/// `extensionRequest` (PKCS#9).
const EXTENSION_REQUEST: &[u64] = &[1, 2, 840, 113549, 1, 9, 14];
/// `id-ce-subjectAltName`.
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];

fn oid(arcs: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(arcs)
}

/// A degenerate ("certs-only") CMS SignedData (RFC 5652 §5, RFC 7030 §4.1.3): no
/// signers, no content, the given DER certificates in `certificates`.
pub fn certs_only(certs: &[&[u8]]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(ID_SIGNED_DATA));
            w.next().write_tagged(yasna::Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(1); // version
                    w.next().write_set(|_| {}); // digestAlgorithms
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(ID_DATA)); // encapContentInfo, no eContent
                    });
                    w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                        w.write_set_of(|w| {
                            for c in certs {
                                w.next().write_der(c);
                            }
                        })
                    });
                    w.next().write_set(|_| {}); // signerInfos
                })
            });
        })
    })
}

/// The CSR attributes this server asks for (RFC 7030 §4.5.2, in the shape of its example):
/// an ECDSA P-256 key signing with SHA-256, and the one extension request it honours,
/// subjectAltName. Other accepted keys (RSA ≥ 2048, P-384, Ed25519) still enroll.
pub fn csr_attrs() -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(ECDSA_WITH_SHA256));
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(ID_EC_PUBLIC_KEY));
                w.next().write_set(|w| w.next().write_oid(&oid(SECP256R1)));
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(EXTENSION_REQUEST));
                w.next()
                    .write_set(|w| w.next().write_oid(&oid(SUBJECT_ALT_NAME)));
            });
        })
    })
}

/// Base64 on one line, then CRLF: line-wrapped bodies break strongSwan's client, bodies
/// without a final newline break libest's.
pub fn base64_line(der: &[u8]) -> String {
    let mut s = STANDARD.encode(der);
    s.push_str("\r\n");
    s
}

/// A `multipart/mixed` body (RFC 2046) of base64 parts; returns (body, boundary).
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, String) {
    let boundary = format!("vellum-est-{}", uuid::Uuid::new_v4().simple());
    let mut body = String::new();
    for (content_type, der) in parts {
        body.push_str("--");
        body.push_str(&boundary);
        body.push_str("\r\nContent-Type: ");
        body.push_str(content_type);
        body.push_str("\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        body.push_str(&base64_line(der));
    }
    body.push_str("--");
    body.push_str(&boundary);
    body.push_str("--\r\n");
    (body, boundary)
}

/// Why a request body could not be read as a PKCS#10 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The DER of a request body: base64 (RFC 8951: whatever `Content-Transfer-Encoding`
/// says, with any whitespace anywhere, padding optional). Tolerated too: PEM armour
/// around it, and raw DER from clients that never base64-encoded.
pub fn request_der(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let looks_binary = body.first() == Some(&0x30) && body.iter().any(|b| !b.is_ascii());
    if looks_binary {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| BodyError("the body is neither base64 text nor DER".into()))?;
    let text = if text.trim_start().starts_with("-----BEGIN") {
        text.lines()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .collect::<Vec<_>>()
            .join("")
    } else {
        text.to_string()
    };
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(BodyError(
            "the body is empty: send the base64 DER of a PKCS#10 request".into(),
        ));
    }
    LENIENT
        .decode(compact.as_bytes())
        .map_err(|e| BodyError(format!("the body is not base64 (RFC 8951): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_only_parses_as_pkcs7_with_sorted_certificates() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
        let der = certs_only(&[a.cert.der(), b.cert.der()]);
        // Reading it back: ContentInfo → [0] SignedData → certificates.
        let certs = yasna::parse_der(&der, |r| {
            r.read_sequence(|r| {
                let t = r.next().read_oid()?;
                assert_eq!(t, oid(ID_SIGNED_DATA));
                r.next().read_tagged(yasna::Tag::context(0), |r| {
                    r.read_sequence(|r| {
                        assert_eq!(r.next().read_u8()?, 1);
                        assert_eq!(r.next().read_der()?, [0x31, 0x00]);
                        r.next().read_sequence(|r| r.next().read_oid())?;
                        let certs = r.next().read_tagged_implicit(yasna::Tag::context(0), |r| {
                            let mut v = Vec::new();
                            r.read_set_of(|r| {
                                v.push(r.read_der()?);
                                Ok(())
                            })?;
                            Ok(v)
                        })?;
                        assert_eq!(r.next().read_der()?, [0x31, 0x00]);
                        Ok(certs)
                    })
                })
            })
        })
        .unwrap();
        assert_eq!(certs.len(), 2);
        assert!(certs.contains(&a.cert.der().to_vec()));
        assert!(certs.contains(&b.cert.der().to_vec()));
    }

    #[test]
    fn base64_is_one_line_with_crlf() {
        let s = base64_line(&[0u8; 200]);
        assert!(s.ends_with("\r\n"));
        assert_eq!(s.matches('\n').count(), 1);
    }

    #[test]
    fn request_bodies_tolerate_whitespace_pem_and_der() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let b64 = STANDARD.encode(&der);
        let spaced = format!(" {}\r\n{} \n", &b64[..3], &b64[3..]);
        assert_eq!(request_der(spaced.as_bytes()).unwrap(), der);
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(request_der(unpadded.as_bytes()).unwrap(), der);
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert_eq!(request_der(pem.as_bytes()).unwrap(), der);
        let raw = vec![0x30, 0x81, 0x01, 0xff];
        assert_eq!(request_der(&raw).unwrap(), raw);
        assert!(request_der(b"not base64 at all!").is_err());
        assert!(request_der(b"  \r\n").is_err());
    }

    #[test]
    fn multipart_has_two_parts_and_a_closing_boundary() {
        let (body, boundary) = multipart(&[("application/pkcs8", b"k"), ("x/y", b"c")]);
        assert_eq!(body.matches(&format!("--{boundary}\r\n")).count(), 2);
        assert!(body.ends_with(&format!("--{boundary}--\r\n")));
        assert!(body.find("application/pkcs8") < body.find("x/y"));
    }
}
