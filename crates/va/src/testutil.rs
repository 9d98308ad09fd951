//! Loopback servers for the validator's unit tests.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{VaConfig, Validator};

/// Runs a test body, failing it after 30 s.
pub(crate) async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took longer than 30 s");
}

/// A validator on the given ports; DNS goes to `dns` or, when `None`, to a port where nothing
/// answers (the tests that pass `None` never look names up).
pub(crate) fn validator(http_port: u16, tls_port: u16, dns: Option<SocketAddr>) -> Validator {
    Validator::new(VaConfig {
        http_port,
        tls_port,
        dns_resolver: Some(dns.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)))),
        timeout: Duration::from_secs(5),
    })
    .expect("validator")
}

/// A TCP port with nothing listening (bound, then released).
pub(crate) fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A UDP port with nothing listening.
pub(crate) fn unused_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

type Handler = dyn Fn(&str) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync;

/// An HTTP/1.1 server answering each request with `handler(path)`; records request heads.
pub(crate) struct HttpServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start<F>(handler: F) -> HttpServer
    where
        F: Fn(&str) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let reqs = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    reqs.lock().unwrap().push(head);
                    let (status, headers, body) = handler(&path);
                    let mut resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in headers {
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    resp.push_str(&body);
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        HttpServer {
            port,
            requests,
            task,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends fixed bytes to whoever connects (after reading the request head), then closes.
pub(crate) struct RawServer {
    port: u16,
    task: JoinHandle<()>,
}

impl RawServer {
    pub(crate) async fn start(response: String) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let response = response.clone();
                tokio::spawn(async move {
                    let mut chunk = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await;
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        RawServer { port, task }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type TestCert = (CertificateDer<'static>, PrivateKeyDer<'static>);
type Snis = Arc<Mutex<Vec<Option<String>>>>;

/// Records the SNI of each ClientHello (before the handshake can complete, so tests can look
/// right after the client returns).
#[derive(Debug)]
struct Recording {
    inner: SingleCertAndKey,
    snis: Snis,
}

impl ResolvesServerCert for Recording {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.snis
            .lock()
            .unwrap()
            .push(hello.server_name().map(str::to_string));
        self.inner.resolve(hello)
    }
}

/// A TLS server configuration that presents `cert` without validating it (rustls would
/// refuse the critical acmeIdentifier extension), signing with `cert`'s key or, to test the
/// client's signature check, with `sign_with`.
fn server_config(
    cert: TestCert,
    alpn: Vec<Vec<u8>>,
    tls12_only: bool,
    sign_with: Option<PrivateKeyDer<'static>>,
    snis: Snis,
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = provider
        .key_provider
        .load_private_key(sign_with.unwrap_or(cert.1))
        .expect("signing key");
    let resolver = Recording {
        inner: SingleCertAndKey::from(CertifiedKey::new(vec![cert.0], key)),
        snis,
    };
    let builder = ServerConfig::builder_with_provider(provider);
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let mut cfg = builder
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = alpn;
    Arc::new(cfg)
}

/// What [`acme_cert`] puts in the certificate.
pub(crate) struct CertOpts {
    pub san: SanType,
    pub extra_dns: Option<String>,
    pub key_authorization: String,
    pub with_ext: bool,
    pub critical: bool,
    pub alg: &'static rcgen::SignatureAlgorithm,
}

impl CertOpts {
    pub(crate) fn dns(name: &str, ka: &str) -> CertOpts {
        CertOpts {
            san: SanType::DnsName(name.to_string().try_into().expect("dns name")),
            extra_dns: None,
            key_authorization: ka.to_string(),
            with_ext: true,
            critical: true,
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    pub(crate) fn ip(ip: IpAddr, ka: &str) -> CertOpts {
        CertOpts {
            san: SanType::IpAddress(ip),
            ..CertOpts::dns("placeholder.test", ka)
        }
    }
}

/// A self-signed tls-alpn-01 certificate and its key.
pub(crate) fn acme_cert(o: &CertOpts) -> TestCert {
    let key = KeyPair::generate_for(o.alg).expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![o.san.clone()];
    if let Some(extra) = &o.extra_dns {
        params.subject_alt_names.push(SanType::DnsName(
            extra.clone().try_into().expect("dns name"),
        ));
    }
    if o.with_ext {
        let digest = Sha256::digest(o.key_authorization.as_bytes());
        let mut ext = CustomExtension::new_acme_identifier(&digest);
        ext.set_criticality(o.critical);
        params.custom_extensions.push(ext);
    }
    let cert = params.self_signed(&key).expect("self-signed");
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// A TLS server presenting one certificate; records the SNI of each handshake.
pub(crate) struct AlpnServer {
    port: u16,
    snis: Arc<Mutex<Vec<Option<String>>>>,
    task: JoinHandle<()>,
}

impl AlpnServer {
    /// With ALPN `acme-tls/1` when `alpn`, else none.
    pub(crate) async fn start(cert: TestCert, alpn: bool) -> AlpnServer {
        let protos = if alpn {
            vec![b"acme-tls/1".to_vec()]
        } else {
            vec![]
        };
        AlpnServer::start_with_alpn(cert, protos).await
    }

    pub(crate) async fn start_with_alpn(cert: TestCert, alpn: Vec<Vec<u8>>) -> AlpnServer {
        let snis = Snis::default();
        AlpnServer::start_with(server_config(cert, alpn, false, None, snis.clone()), snis).await
    }

    /// TLS 1.2 only, or signing the handshake with another key than the certificate's.
    pub(crate) async fn start_tweaked(
        cert: TestCert,
        tls12_only: bool,
        sign_with: Option<PrivateKeyDer<'static>>,
    ) -> AlpnServer {
        let snis = Snis::default();
        AlpnServer::start_with(
            server_config(
                cert,
                vec![b"acme-tls/1".to_vec()],
                tls12_only,
                sign_with,
                snis.clone(),
            ),
            snis,
        )
        .await
    }

    async fn start_with(cfg: Arc<ServerConfig>, snis: Snis) -> AlpnServer {
        let acceptor = TlsAcceptor::from(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut b = [0u8; 16];
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), tls.read(&mut b)).await;
                    }
                });
            }
        });
        AlpnServer { port, snis, task }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn snis(&self) -> Vec<Option<String>> {
        self.snis.lock().unwrap().clone()
    }
}

impl Drop for AlpnServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTPS server answering every request with 200 and `body`, certificate self-signed.
pub(crate) struct HttpsServer {
    port: u16,
    task: JoinHandle<()>,
}

impl HttpsServer {
    pub(crate) async fn start(body: &str) -> HttpsServer {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let acceptor = TlsAcceptor::from(server_config(
            (
                cert.der().clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            ),
            vec![b"http/1.1".to_vec()],
            false,
            None,
            Snis::default(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = body.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsServer { port, task }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
