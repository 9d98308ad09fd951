//! rustls configuration of the HTTPS listener.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use vellum_core::error::{Error, Result};

/// A server configuration from a PEM chain and key (TLS 1.2 and 1.3, h2 and http/1.1).
pub fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::config(format!("server certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(Error::config(
            "server certificate chain holds no certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::config(format!("server private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::config(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(Arc::new(OptionalClientCert::new(provider.clone())))
        .with_single_cert(chain, key)
        .map_err(|e| Error::config(format!("server certificate and key do not fit: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client certificates are offered, never required, and accepted at handshake time when
/// they parse and the handshake signature verifies (proof of possession of the key). Who
/// issued them is decided later, per request, by the front end that cares (EST checks the
/// database); everything else ignores them, so clients without certificates are served
/// as before. No root hints are sent: EST devices present whatever they hold.
#[derive(Debug)]
pub struct OptionalClientCert {
    provider: Arc<CryptoProvider>,
}

impl OptionalClientCert {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> OptionalClientCert {
        OptionalClientCert { provider }
    }
}

fn parses(der: &[u8]) -> bool {
    matches!(x509_parser::parse_x509_certificate(der), Ok((rest, _)) if rest.is_empty())
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !parses(end_entity) || !intermediates.iter().all(|c| parses(c)) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
