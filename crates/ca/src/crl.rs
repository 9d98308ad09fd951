//! CRL signing: a v2 CRL (RFC 5280 §5) with AKI, CRL number, per-entry revocation date and
//! reason, and for delta CRLs (§5.2.4) the critical deltaCRLIndicator; base CRLs of a CA
//! that publishes deltas carry freshestCRL (§5.2.6).
//!
//! Written with `yasna` and signed with the CA key the way [`crate::ocsp`] signs
//! responses: rcgen's CRL writer has no deltaCRLIndicator nor freshestCRL, and one
//! encoder for both kinds keeps base and delta byte-compatible (same issuer bytes, same
//! AKI, which `openssl verify -use_deltas` compares).

use rcgen::SigningKey;
use time::OffsetDateTime;
use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

use super::Signer;
use vellum_core::error::{Error, Result};
use vellum_core::status::RevocationReason as Reason;

const OID_AKI: &[u64] = &[2, 5, 29, 35];
const OID_CRL_NUMBER: &[u64] = &[2, 5, 29, 20];
const OID_DELTA_INDICATOR: &[u64] = &[2, 5, 29, 27];
const OID_FRESHEST_CRL: &[u64] = &[2, 5, 29, 46];
const OID_REASON: &[u64] = &[2, 5, 29, 21];

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

/// What kind of CRL to sign.
#[derive(Debug, Clone, Copy, Default)]
pub enum Kind<'a> {
    /// A complete (base) CRL without freshestCRL: the CA publishes no delta CRLs.
    #[default]
    Full,
    /// A complete (base) CRL whose freshestCRL names the delta CRL at this URL.
    Base {
        /// The delta CRL's URL (`…/crl/{id}-delta.crl`).
        delta_url: &'a str,
    },
    /// A delta CRL relative to the base CRL with this number (its deltaCRLIndicator).
    Delta {
        /// The base CRL's cRLNumber.
        base_number: i64,
    },
}

/// Signs a complete CRL without freshestCRL for `signer` (DER).
pub fn sign(
    signer: &Signer,
    crl_number: i64,
    this_update: i64,
    next_update: i64,
    entries: &[Entry],
) -> Result<Vec<u8>> {
    sign_kind(
        signer,
        Kind::Full,
        crl_number,
        this_update,
        next_update,
        entries,
    )
}

/// Signs a CRL of `kind` for `signer` (DER).
pub fn sign_kind(
    signer: &Signer,
    kind: Kind<'_>,
    crl_number: i64,
    this_update: i64,
    next_update: i64,
    entries: &[Entry],
) -> Result<Vec<u8>> {
    let key = signer.issuer().key();
    let (issuer, key_id) = issuer_name_and_key_id(signer.certificate_der())?;
    let alg = super::ocsp::signature_algorithm(key)?;
    let number = u64::try_from(crl_number).map_err(Error::internal)?;
    let this_update = Time::of(this_update)?;
    let next_update = Time::of(next_update)?;
    let entries = entries
        .iter()
        .map(|e| {
            let serial = hex::decode(&e.serial_hex).map_err(|_| {
                Error::internal(format!("stored serial {} is not hex", e.serial_hex))
            })?;
            Ok((serial, Time::of(e.revoked_at)?, e.reason))
        })
        .collect::<Result<Vec<_>>>()?;
    let delta_base = match kind {
        Kind::Delta { base_number } => Some(u64::try_from(base_number).map_err(Error::internal)?),
        _ => None,
    };
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(1); // v2
            w.next().write_der(&alg);
            w.next().write_der(&issuer);
            this_update.write(w.next());
            next_update.write(w.next());
            if !entries.is_empty() {
                w.next().write_sequence_of(|w| {
                    for (serial, at, reason) in &entries {
                        w.next().write_sequence(|w| {
                            w.next().write_bigint_bytes(serial, true);
                            at.write(w.next());
                            if *reason != Reason::Unspecified {
                                w.next().write_sequence(|w| {
                                    extension(w.next(), OID_REASON, false, |w| {
                                        w.write_enum(reason.code().into())
                                    });
                                });
                            }
                        });
                    }
                });
            }
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    extension(w.next(), OID_AKI, false, |w| {
                        w.write_sequence(|w| {
                            w.next()
                                .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(&key_id))
                        })
                    });
                    extension(w.next(), OID_CRL_NUMBER, false, |w| w.write_u64(number));
                    if let Some(base) = delta_base {
                        extension(w.next(), OID_DELTA_INDICATOR, true, |w| w.write_u64(base));
                    }
                    if let Kind::Base { delta_url } = kind {
                        extension(w.next(), OID_FRESHEST_CRL, false, |w| {
                            distribution_points(w, delta_url)
                        });
                    }
                })
            });
        })
    });
    let signature = key.sign(&tbs)?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next().write_der(&alg);
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    }))
}

/// A `CRLDistributionPoints` value (the syntax of freshestCRL too) with one distribution
/// point naming one URI.
pub fn distribution_points(w: DERWriter<'_>, url: &str) {
    w.write_sequence(|w| {
        w.next().write_sequence(|w| {
            // distributionPoint [0] DistributionPointName (a CHOICE: explicit),
            // fullName [0] IMPLICIT GeneralNames, uniformResourceIdentifier [6] IMPLICIT.
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_tagged_implicit(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next()
                            .write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(url))
                    })
                })
            })
        })
    })
}

/// The DER content of a freshestCRL extension naming `url` (for certificates).
pub fn freshest_crl_value(url: &str) -> Vec<u8> {
    yasna::construct_der(|w| distribution_points(w, url))
}

/// freshestCRL's OID (id-ce-freshestCRL).
pub const FRESHEST_CRL_OID: &[u64] = OID_FRESHEST_CRL;

fn extension(w: DERWriter<'_>, oid: &[u64], critical: bool, value: impl FnOnce(DERWriter<'_>)) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(&yasna::construct_der(value));
    })
}

/// The issuer's subject name exactly as its certificate holds it, and the key identifier
/// CRLs name in their AKI: the certificate's SKI (uploaded CAs may use other methods than
/// ours), else RFC 5280 method (1).
fn issuer_name_and_key_id(ca_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(ca_der)
        .map_err(|e| Error::internal(format!("unparseable CA certificate: {e}")))?;
    let name = cert.subject().as_raw().to_vec();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectKeyIdentifier(ski) = ext.parsed_extension() {
            return Ok((name, ski.0.to_vec()));
        }
    }
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &cert.public_key().subject_public_key.data,
    );
    Ok((name, digest.as_ref().to_vec()))
}

/// A time as RFC 5280 §5.1.2.4 wants it: UTCTime through 2049, GeneralizedTime from 2050.
struct Time {
    bytes: [u8; 15],
    utc: bool,
}

impl Time {
    fn of(unix: i64) -> Result<Time> {
        let t = OffsetDateTime::from_unix_timestamp(unix).map_err(Error::internal)?;
        let year = t.year();
        if !(1950..=9999).contains(&year) {
            return Err(Error::internal(format!("CRL time {unix} out of range")));
        }
        let mut bytes = [0u8; 15];
        let mut put = |at: usize, v: u32, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                bytes[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year as u32, 4);
        put(4, u8::from(t.month()) as u32, 2);
        put(6, t.day() as u32, 2);
        put(8, t.hour() as u32, 2);
        put(10, t.minute() as u32, 2);
        put(12, t.second() as u32, 2);
        bytes[14] = b'Z';
        Ok(Time {
            bytes,
            utc: year < 2050,
        })
    }

    fn write(&self, w: DERWriter<'_>) {
        if self.utc {
            w.write_tagged_implicit(yasna::tags::TAG_UTCTIME, |w| {
                w.write_bytes(&self.bytes[2..])
            })
        } else {
            w.write_tagged_implicit(yasna::tags::TAG_GENERALIZEDTIME, |w| {
                w.write_bytes(&self.bytes)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_in_2050() {
        let t = Time::of(1_750_000_000).unwrap();
        assert!(t.utc);
        assert_eq!(&t.bytes[2..], b"250615150640Z");
        let t = Time::of(2_556_144_000).unwrap(); // 2051-01-01
        assert!(!t.utc);
        assert_eq!(&t.bytes, b"20510101000000Z");
    }

    #[test]
    fn freshest_crl_is_a_uri_distribution_point() {
        let der = freshest_crl_value("http://h/crl/x-delta.crl");
        let mut want = vec![0x30, 32, 0x30, 30, 0xa0, 28, 0xa0, 26, 0x86, 24];
        want.extend_from_slice(b"http://h/crl/x-delta.crl");
        assert_eq!(der, want);
    }
}
