//! What the challenge types share: resolving a name with the validator's resolver, connecting
//! within the deadline with concrete error messages, and a TLS client that accepts any
//! certificate.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::net::NetError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{human_duration, VaError, VaErrorKind, Validator};

/// The start and end of one validation attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub total: std::time::Duration,
}

impl Deadline {
    pub(crate) fn start(v: &Validator) -> Deadline {
        let total = v.cfg().timeout;
        Deadline {
            at: Instant::now() + total,
            total,
        }
    }

    /// `fut`, or a `kind` error "timed out after N s {doing}" when the deadline passes first.
    pub(crate) async fn run<T>(
        &self,
        kind: VaErrorKind,
        doing: impl FnOnce() -> String,
        fut: impl std::future::Future<Output = Result<T, VaError>>,
    ) -> Result<T, VaError> {
        match tokio::time::timeout_at(self.at, fut).await {
            Ok(r) => r,
            Err(_) => Err(VaError::new(
                kind,
                format!("timed out after {} {}", human_duration(self.total), doing()),
            )),
        }
    }
}

/// Describes a DNS failure in words; `what` is e.g. "A/AAAA records for a.example".
pub(crate) fn dns_failure(what: &str, e: &NetError) -> String {
    if e.is_nx_domain() {
        return format!("no {what}: the name does not exist (NXDOMAIN)");
    }
    if e.is_no_records_found() {
        return format!("no {what}");
    }
    match e {
        NetError::Timeout => format!("DNS lookup of {what} timed out"),
        other => format!("DNS lookup of {what} failed: {other}"),
    }
}

/// The addresses of `name` (already normalized, no trailing dot), A before AAAA.
pub(crate) async fn resolve_host(
    v: &Validator,
    deadline: &Deadline,
    name: &str,
) -> Result<Vec<IpAddr>, VaError> {
    let fqdn = format!("{name}.");
    let what = format!("A or AAAA record for {name}");
    let lookup = deadline
        .run(
            VaErrorKind::Dns,
            || format!("looking up A/AAAA records for {name}"),
            async {
                v.resolver()
                    .lookup_ip(fqdn.as_str())
                    .await
                    .map_err(|e| VaError::new(VaErrorKind::Dns, dns_failure(&what, &e)))
            },
        )
        .await?;
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(VaError::new(VaErrorKind::Dns, format!("no {what}")));
    }
    Ok(ips)
}

/// Words for a failed connection to `addr`.
pub(crate) fn connect_failure(addr: SocketAddr, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("connection refused to {addr}"),
        io::ErrorKind::ConnectionReset => format!("connection reset by {addr}"),
        io::ErrorKind::HostUnreachable => format!("host unreachable: {addr}"),
        io::ErrorKind::NetworkUnreachable => format!("network unreachable: {addr}"),
        _ => format!("could not connect to {addr}: {e}"),
    }
}

/// A TCP connection to the first of `addrs` that accepts one, within the deadline. The
/// error names every address tried.
pub(crate) async fn connect_any(
    deadline: &Deadline,
    addrs: &[SocketAddr],
) -> Result<TcpStream, VaError> {
    let mut failures = Vec::new();
    for &addr in addrs {
        let r = deadline
            .run(
                VaErrorKind::Connection,
                || format!("connecting to {addr}"),
                async {
                    TcpStream::connect(addr).await.map_err(|e| {
                        VaError::new(VaErrorKind::Connection, connect_failure(addr, &e))
                    })
                },
            )
            .await;
        match r {
            Ok(s) => return Ok(s),
            Err(e) => {
                failures.push(e.detail);
                if tokio::time::Instant::now() >= deadline.at {
                    break;
                }
            }
        }
    }
    if failures.is_empty() {
        failures.push("no address to connect to".to_string());
    }
    Err(VaError::new(VaErrorKind::Connection, failures.join("; ")))
}

/// Accepts any certificate (validation targets present self-signed ones) but still checks
/// that the handshake was signed by the key in the presented certificate, with the
/// provider's algorithms.
///
/// rustls's own helpers parse the certificate with webpki, which refuses unknown critical
/// extensions — and a tls-alpn-01 certificate must carry a critical acmeIdentifier. So the
/// public key is taken from the certificate with x509-parser and the signature checked with
/// the provider's algorithm for the scheme (TLS 1.3: the first one, as rustls does; TLS 1.2:
/// each candidate whose key algorithm matches the certificate's).
#[derive(Debug)]
pub(crate) struct AnyCert {
    algs: WebPkiSupportedAlgorithms,
}

impl AnyCert {
    fn verify(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let unadvertised = || {
            rustls::Error::from(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)
        };
        if tls13 && !allowed_in_tls13(dss.scheme) {
            return Err(unadvertised());
        }
        let candidates = self
            .algs
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or_else(unadvertised)?;
        let candidates = if tls13 {
            candidates.get(..1).unwrap_or(&[])
        } else {
            candidates
        };
        let bad_cert = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad_cert())?;
        let spki = parsed.public_key();
        let key_alg_id = spki_algorithm_contents(spki.raw).ok_or_else(bad_cert)?;
        let key = spki.subject_public_key.data.as_ref();
        for alg in candidates {
            if alg.public_key_alg_id().as_ref() != key_alg_id {
                continue;
            }
            if alg.verify_signature(key, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ));
        }
        Err(rustls::Error::General(format!(
            "the certificate's public key does not fit the handshake's signature scheme {:?}",
            dss.scheme
        )))
    }
}

/// RFC 8446 §4.2.3: no SHA-1/SHA-224/MD5 hashes, no RSA-PKCS1, DSA or anonymous signatures
/// in TLS 1.3 (the same rule as rustls's private `supported_in_tls13`).
fn allowed_in_tls13(scheme: SignatureScheme) -> bool {
    let v = u16::from(scheme);
    let (hash, sign) = (v >> 8, v & 0xff);
    !matches!(hash, 0..=3) && !matches!(sign, 0..=2)
}

/// One DER element at the start of `input`: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of the AlgorithmIdentifier of a DER SubjectPublicKeyInfo (what
/// `SignatureVerificationAlgorithm::public_key_alg_id` returns).
fn spki_algorithm_contents(spki: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_tlv(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, _) = der_tlv(body)?;
    (tag == 0x30).then_some(alg)
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A TLS client configuration (aws-lc-rs, TLS 1.2 and 1.3) that accepts any certificate and
/// offers exactly `alpn`.
pub(crate) fn tls_client_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, VaError> {
    let provider: CryptoProvider = rustls::crypto::aws_lc_rs::default_provider();
    let algs = provider.signature_verification_algorithms;
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| VaError::new(VaErrorKind::Tls, format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert { algs }))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}
