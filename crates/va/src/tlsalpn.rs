//! `tls-alpn-01` (RFC 8737; IP addresses per RFC 8738 §6).

use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::{DnsName, ServerName};
use rustls::AlertDescription;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsConnector;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;

use super::net::{connect_any, resolve_host, rustls_error, tls_client_config, Deadline};
use super::{normalize_dns_name, quote_trunc, Identifier, VaError, VaErrorKind, Validator};

/// The ALPN protocol of RFC 8737.
pub(crate) const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31.
const ACME_IDENTIFIER_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 31];

/// The SNI for an IP address: its reverse-DNS name (RFC 8738 §6).
pub(crate) fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

pub(super) async fn validate(
    v: &Validator,
    id: &Identifier,
    key_authorization: &str,
) -> Result<(), VaError> {
    let deadline = Deadline::start(v);
    let port = v.cfg().tls_port;
    let (sni, ips) = match id {
        Identifier::Dns(name) => {
            if name.starts_with("*.") {
                return Err(VaError::new(
                    VaErrorKind::Unauthorized,
                    format!(
                        "tls-alpn-01 cannot prove control of the wildcard name {name}; use dns-01"
                    ),
                ));
            }
            let n = normalize_dns_name(name).map_err(|e| VaError::new(VaErrorKind::Dns, e))?;
            let ips = resolve_host(v, &deadline, &n).await?;
            (n, ips)
        }
        Identifier::Ip(ip) => (reverse_dns_name(*ip), vec![*ip]),
    };
    let server_name = DnsName::try_from(sni.clone())
        .map(|d| ServerName::DnsName(d.to_owned()))
        .map_err(|e| VaError::new(VaErrorKind::Tls, format!("cannot send {sni} as SNI: {e}")))?;
    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let tcp = connect_any(&deadline, &addrs).await?;
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{id}:{port}"));
    let cfg = tls_client_config(&[ACME_TLS_1])?;

    let tls = deadline
        .run(
            VaErrorKind::Connection,
            || format!("in the TLS handshake with {peer}"),
            async {
                TlsConnector::from(cfg)
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| match rustls_error(&e) {
                        Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => {
                            VaError::new(
                                VaErrorKind::Tls,
                                format!(
                                    "the server at {peer} did not negotiate acme-tls/1 (it answered with a no_application_protocol alert)"
                                ),
                            )
                        }
                        Some(r) => VaError::new(
                            VaErrorKind::Tls,
                            format!("TLS handshake with {peer} (SNI {sni}) failed: {r}"),
                        ),
                        None => VaError::new(
                            VaErrorKind::Connection,
                            format!("TLS handshake with {peer} (SNI {sni}) failed: {e}"),
                        ),
                    })
            },
        )
        .await?;
    let (_, conn) = tls.get_ref();
    if conn.alpn_protocol() != Some(ACME_TLS_1) {
        return Err(VaError::new(
            VaErrorKind::Tls,
            format!("the server at {peer} did not negotiate acme-tls/1"),
        ));
    }
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        return Err(VaError::new(
            VaErrorKind::Tls,
            format!("the server at {peer} presented no certificate"),
        ));
    };
    check_certificate(cert.as_ref(), id, key_authorization, &peer)
}

/// The RFC 8737 §3 checks on the presented certificate.
pub(crate) fn check_certificate(
    der: &[u8],
    id: &Identifier,
    key_authorization: &str,
    peer: &str,
) -> Result<(), VaError> {
    let tls = |d: String| VaError::new(VaErrorKind::Tls, d);
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| tls(format!("the certificate from {peer} cannot be parsed: {e}")))?;

    // Exactly one subjectAltName, equal to the identifier.
    let san = cert.subject_alternative_name().map_err(|e| {
        tls(format!(
            "the certificate from {peer} has an invalid subjectAltName extension: {e}"
        ))
    })?;
    let names: Vec<String> = match &san {
        Some(ext) => ext.value.general_names.iter().map(describe).collect(),
        None => Vec::new(),
    };
    let matches = match (&san, id) {
        (Some(ext), _) if ext.value.general_names.len() != 1 => false,
        (Some(ext), Identifier::Dns(name)) => match ext.value.general_names.first() {
            Some(GeneralName::DNSName(d)) => {
                let want = name.strip_suffix('.').unwrap_or(name);
                d.eq_ignore_ascii_case(want)
            }
            _ => false,
        },
        (Some(ext), Identifier::Ip(ip)) => match ext.value.general_names.first() {
            Some(GeneralName::IPAddress(bytes)) => match ip {
                IpAddr::V4(v4) => *bytes == v4.octets().as_slice(),
                IpAddr::V6(v6) => *bytes == v6.octets().as_slice(),
            },
            _ => false,
        },
        (None, _) => false,
    };
    if !matches {
        let kind_name = match id {
            Identifier::Dns(_) => "dNSName",
            Identifier::Ip(_) => "iPAddress",
        };
        return Err(VaError::new(
            VaErrorKind::Unauthorized,
            format!(
                "the certificate from {peer} must have exactly one subjectAltName, the {kind_name} {id}; it has [{}]",
                names.join(", ")
            ),
        ));
    }

    // A critical acmeIdentifier holding OCTET STRING (SHA-256(key authorization)).
    let oid = Oid::from(ACME_IDENTIFIER_OID)
        .map_err(|_| tls("internal error: cannot build the acmeIdentifier OID".to_string()))?;
    let exts: Vec<_> = cert.extensions().iter().filter(|e| e.oid == oid).collect();
    let ext = match exts.as_slice() {
        [] => {
            return Err(tls(
                "certificate has no acmeIdentifier extension".to_string()
            ))
        }
        [one] => one,
        _ => {
            return Err(tls(
                "certificate has more than one acmeIdentifier extension".to_string(),
            ))
        }
    };
    if !ext.critical {
        return Err(tls("acmeIdentifier extension is not critical".to_string()));
    }
    let v = ext.value;
    if v.len() != 34 || v[0] != 0x04 || v[1] != 0x20 {
        return Err(tls(format!(
            "acmeIdentifier extension is not an OCTET STRING of 32 bytes (DER {})",
            quote_trunc(&hex::encode(v), 80)
        )));
    }
    let want = Sha256::digest(key_authorization.as_bytes());
    if v[2..] != want[..] {
        return Err(VaError::new(
            VaErrorKind::Unauthorized,
            format!(
                "acmeIdentifier does not match the key authorization: it holds {}, SHA-256({}) is {}",
                hex::encode(&v[2..]),
                quote_trunc(key_authorization, 256),
                hex::encode(want)
            ),
        ));
    }
    Ok(())
}

fn describe(n: &GeneralName<'_>) -> String {
    match n {
        GeneralName::DNSName(d) => format!("dNSName {}", quote_trunc(d, 64)),
        GeneralName::IPAddress(b) => match b.len() {
            4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                format!("iPAddress {}", IpAddr::from(a))
            }
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                format!("iPAddress {}", IpAddr::from(a))
            }
            _ => format!("iPAddress of {} bytes", b.len()),
        },
        other => quote_trunc(&other.to_string(), 64),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::testdns::TestDns;
    use crate::testutil::{acme_cert, bounded, validator, AlpnServer, CertOpts};

    const KA: &str = "token.thumb";

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_dns_name("127.0.0.1".parse().unwrap()),
            "1.0.0.127.in-addr.arpa"
        );
        assert_eq!(
            reverse_dns_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[tokio::test]
    async fn good_certificate_for_a_dns_name() {
        bounded(async {
            let (dns, dns_addr) = TestDns::start().unwrap();
            dns.set_a("a.test", Ipv4Addr::LOCALHOST);
            let srv = AlpnServer::start(acme_cert(&CertOpts::dns("a.test", KA)), true).await;
            let v = validator(1, srv.port(), Some(dns_addr));
            v.tls_alpn01(&Identifier::Dns("a.test".into()), KA)
                .await
                .unwrap();
            assert_eq!(srv.snis(), vec![Some("a.test".to_string())]);
        })
        .await;
    }

    #[tokio::test]
    async fn good_certificate_for_an_ip() {
        bounded(async {
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            let srv = AlpnServer::start(acme_cert(&CertOpts::ip(ip, KA)), true).await;
            let v = validator(1, srv.port(), None);
            v.tls_alpn01(&Identifier::Ip(ip), KA).await.unwrap();
            assert_eq!(srv.snis(), vec![Some("1.0.0.127.in-addr.arpa".to_string())]);
        })
        .await;
    }

    #[tokio::test]
    async fn non_critical_extension_is_a_tls_error() {
        bounded(async {
            let mut o = CertOpts::ip("127.0.0.1".parse().unwrap(), KA);
            o.critical = false;
            let srv = AlpnServer::start(acme_cert(&o), true).await;
            let v = validator(1, srv.port(), None);
            let e = v
                .tls_alpn01(&Identifier::Ip("127.0.0.1".parse().unwrap()), KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Tls);
            assert_eq!(e.detail, "acmeIdentifier extension is not critical");
        })
        .await;
    }

    #[tokio::test]
    async fn wrong_digest_is_unauthorized() {
        bounded(async {
            let o = CertOpts::ip("127.0.0.1".parse().unwrap(), "other.key-authz");
            let srv = AlpnServer::start(acme_cert(&o), true).await;
            let v = validator(1, srv.port(), None);
            let e = v
                .tls_alpn01(&Identifier::Ip("127.0.0.1".parse().unwrap()), KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            assert!(
                e.detail
                    .starts_with("acmeIdentifier does not match the key authorization"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn missing_extension_and_wrong_san() {
        bounded(async {
            let mut o = CertOpts::dns("a.test", KA);
            o.with_ext = false;
            let srv = AlpnServer::start(acme_cert(&o), true).await;
            let (dns, dns_addr) = TestDns::start().unwrap();
            dns.set_a("a.test", Ipv4Addr::LOCALHOST);
            dns.set_a("b.test", Ipv4Addr::LOCALHOST);
            let v = validator(1, srv.port(), Some(dns_addr));
            let e = v
                .tls_alpn01(&Identifier::Dns("a.test".into()), KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Tls);
            assert_eq!(e.detail, "certificate has no acmeIdentifier extension");

            let e = v
                .tls_alpn01(&Identifier::Dns("b.test".into()), KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            assert!(
                e.detail
                    .contains("the dNSName b.test; it has [dNSName \"a.test\"]"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn two_sans_are_refused() {
        bounded(async {
            let mut o = CertOpts::ip("127.0.0.1".parse().unwrap(), KA);
            o.extra_dns = Some("extra.test".into());
            let srv = AlpnServer::start(acme_cert(&o), true).await;
            let v = validator(1, srv.port(), None);
            let e = v
                .tls_alpn01(&Identifier::Ip("127.0.0.1".parse().unwrap()), KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            assert!(
                e.detail.contains("exactly one subjectAltName"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn server_without_acme_tls_1() {
        bounded(async {
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            // No ALPN configured at all: the handshake completes without a protocol.
            let srv = AlpnServer::start(acme_cert(&CertOpts::ip(ip, KA)), false).await;
            let v = validator(1, srv.port(), None);
            let e = v.tls_alpn01(&Identifier::Ip(ip), KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Tls);
            assert_eq!(
                e.detail,
                format!(
                    "the server at 127.0.0.1:{} did not negotiate acme-tls/1",
                    srv.port()
                )
            );

            // Only http/1.1 configured: the server refuses with an alert.
            let srv = AlpnServer::start_with_alpn(
                acme_cert(&CertOpts::ip(ip, KA)),
                vec![b"http/1.1".to_vec()],
            )
            .await;
            let v = validator(1, srv.port(), None);
            let e = v.tls_alpn01(&Identifier::Ip(ip), KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Tls);
            assert!(
                e.detail.contains("did not negotiate acme-tls/1"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn plain_tcp_server_fails_cleanly() {
        bounded(async {
            let srv = crate::testutil::RawServer::start("HTTP/1.1 400 Bad\r\n\r\n".into()).await;
            let v = validator(1, srv.port(), None);
            let e = v
                .tls_alpn01(&Identifier::Ip("127.0.0.1".parse().unwrap()), KA)
                .await
                .unwrap_err();
            assert!(
                matches!(e.kind, VaErrorKind::Tls | VaErrorKind::Connection),
                "{e}"
            );
            assert!(
                e.detail.contains("TLS handshake with 127.0.0.1:"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn tls12_and_other_key_types() {
        bounded(async {
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            let algs: [&'static rcgen::SignatureAlgorithm; 4] = [
                &rcgen::PKCS_ECDSA_P256_SHA256,
                &rcgen::PKCS_ECDSA_P384_SHA384,
                &rcgen::PKCS_ED25519,
                &rcgen::PKCS_RSA_SHA256,
            ];
            for alg in algs {
                for tls12 in [false, true] {
                    if tls12 && alg == &rcgen::PKCS_ED25519 {
                        continue;
                    }
                    let mut o = CertOpts::ip(ip, KA);
                    o.alg = alg;
                    let srv = AlpnServer::start_tweaked(acme_cert(&o), tls12, None).await;
                    let v = validator(1, srv.port(), None);
                    v.tls_alpn01(&Identifier::Ip(ip), KA)
                        .await
                        .unwrap_or_else(|e| panic!("{alg:?} tls12={tls12}: {e}"));
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn handshake_signed_by_another_key_is_refused() {
        bounded(async {
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            let other = acme_cert(&CertOpts::ip(ip, KA)).1;
            for tls12 in [false, true] {
                let srv = AlpnServer::start_tweaked(
                    acme_cert(&CertOpts::ip(ip, KA)),
                    tls12,
                    Some(other.clone_key()),
                )
                .await;
                let v = validator(1, srv.port(), None);
                let e = v.tls_alpn01(&Identifier::Ip(ip), KA).await.unwrap_err();
                assert_eq!(e.kind, VaErrorKind::Tls, "{e}");
                assert!(
                    e.detail.contains("TLS handshake with 127.0.0.1:"),
                    "{}",
                    e.detail
                );
                assert!(e.detail.contains("BadSignature"), "{}", e.detail);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn nothing_listening() {
        bounded(async {
            let port = crate::testutil::unused_port();
            let v = validator(1, port, None);
            let e = v
                .tls_alpn01(&Identifier::Ip("127.0.0.1".parse().unwrap()), KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Connection);
            assert_eq!(e.detail, format!("connection refused to 127.0.0.1:{port}"));
        })
        .await;
    }
}
