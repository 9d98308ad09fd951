//! What a TLS server presents: the "Verify Certificate Installation" tool's one outbound
//! connection. It connects to ONE address the caller chose (the caller checks it against
//! the networks it allows, after resolving the name itself, so a DNS answer cannot point
//! the probe elsewhere), completes a handshake that accepts any certificate (the point is
//! to report what is installed, good or bad; the handshake signature is still checked
//! against the presented key), and returns the chain. Nothing is sent after the
//! handshake.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::net::{rustls_error, tls_client_config};

/// What the server presented.
#[derive(Debug, Clone)]
pub struct Presented {
    /// Its certificates as sent, leaf first (DER).
    pub chain_der: Vec<Vec<u8>>,
    /// The negotiated protocol version, e.g. `TLSv1_3`.
    pub protocol: String,
}

/// Connects to `addr`, sends `sni` (a DNS name; none for an IP address) and returns the
/// presented chain; the whole attempt is bounded by `timeout`. The error says what failed
/// in words an operator reads.
pub async fn presented_chain(
    addr: SocketAddr,
    sni: Option<&str>,
    timeout: Duration,
) -> Result<Presented, String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let name = match sni {
            Some(n) => ServerName::try_from(n.to_string())
                .map_err(|e| format!("cannot send {n:?} as the TLS server name: {e}"))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        let cfg = tls_client_config(&[]).map_err(|e| e.detail.clone())?;
        let tls =
            TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| match rustls_error(&e) {
                    Some(r) => format!("the TLS handshake with {addr} failed: {r}"),
                    None => format!("the TLS handshake with {addr} failed: {e}"),
                })?;
        let (_, conn) = tls.get_ref();
        let chain_der: Vec<Vec<u8>> = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        if chain_der.is_empty() {
            return Err(format!("the server at {addr} presented no certificate"));
        }
        let protocol = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        Ok(Presented {
            chain_der,
            protocol,
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no TLS answer from {addr} within {} s", timeout.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_the_chain_a_server_presents() {
        use crate::testutil::{acme_cert, AlpnServer, CertOpts};
        let cert = acme_cert(&CertOpts::dns("probe.test", "ka"));
        let der = cert.0.as_ref().to_vec();
        let server = AlpnServer::start(cert, false).await;
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
        let p = presented_chain(addr, Some("probe.test"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(p.chain_der, vec![der]);
        assert!(p.protocol.starts_with("TLSv1_"), "{}", p.protocol);
    }

    #[tokio::test]
    async fn nothing_listening_and_silence_are_clear_errors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = presented_chain(addr, None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.starts_with("cannot connect to"), "{e}");
        // A listener that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let e = presented_chain(addr, None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.contains("no TLS answer"), "{e}");
    }
}
