//! Accept loop: TLS handshake (with a deadline), HTTP/1.1 and HTTP/2 via hyper-util,
//! header-read timeout, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use vellum_core::config::Limits;

/// The source address of a request, added to its extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// The certificates a TLS client presented, added to the request's extensions by the
/// listener. Only the leaf's syntax and the handshake signature were checked: whoever
/// relies on it (EST) must check who issued it.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The client's own certificate (DER).
    pub leaf: Vec<u8>,
    /// The certificates it sent after the leaf (intermediates toward its CA), DER.
    pub chain: Vec<Vec<u8>>,
}

/// How long in-flight requests may run after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Header names written in a spelling that title case (`Content-Type`, `Retry-After`…,
/// which hyper writes for every other name) does not give. Each is listed several times,
/// because hyper takes one spelling per value of a name (several `WWW-Authenticate`
/// challenges in one answer).
const CANONICAL_NAMES: &[&str] = &["WWW-Authenticate", "ETag", "Content-MD5"];
/// How many values of one of those names are spelled canonically in one answer.
const CANONICAL_REPEATS: usize = 4;

/// The extension that makes hyper write HTTP/1.1 response header names in their canonical
/// spelling. hyper writes a response's header names as spelled in a `HeaderCaseMap` found
/// in the response's extensions (names missing from it in title case). That type is
/// private; hyper fills one in when it parses a request on a connection with
/// `preserve_header_case`, and `http::Extensions` can be cloned. So one synthetic request
/// naming the canonical spellings is parsed here, at start, and its extensions (the map,
/// nothing else) are added to every HTTP/1 response. The listeners themselves do not
/// preserve header case, so a request's own spelling never reaches a response.
pub(super) async fn canonical_header_case() -> http::Extensions {
    match tokio::time::timeout(Duration::from_secs(5), parse_canonical_request()).await {
        Ok(Some(ext)) => ext,
        _ => {
            tracing::warn!(
                "could not prepare canonical header spellings; HTTP/1.1 answers use title case"
            );
            http::Extensions::new()
        }
    }
}

async fn parse_canonical_request() -> Option<http::Extensions> {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(16 * 1024);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(req.extensions().clone());
        }
        async { Ok::<_, std::convert::Infallible>(hyper::Response::new(Body::empty())) }
    });
    let mut request = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for name in CANONICAL_NAMES {
        for _ in 0..CANONICAL_REPEATS {
            request.push_str(&format!("{name}: x\r\n"));
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    client.write_all(request.as_bytes()).await.ok()?;
    let conn = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(server), svc);
    let (_, ext) = tokio::join!(conn, rx);
    // The map is the only extension of a parsed request without an upgrade; anything
    // else must not ride along on every response.
    ext.ok().filter(|e| e.len() == 1)
}

/// The router as a hyper service for one connection: every request gets the peer's
/// address and, on TLS connections where the client presented one, its certificate;
/// every HTTP/1 response the canonical header spellings.
fn service(
    router: Router,
    remote: std::net::SocketAddr,
    client_cert: Option<ClientCert>,
    header_case: Arc<http::Extensions>,
) -> TowerToHyperService<
    impl tower::Service<
            Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
            Future = impl std::future::Future<Output = Result<Response, std::convert::Infallible>>
                         + Send,
        > + Clone,
> {
    TowerToHyperService::new(tower::service_fn(
        move |req: Request<hyper::body::Incoming>| {
            let http1 = req.version() < http::Version::HTTP_2;
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(RemoteAddr(remote));
            if let Some(c) = &client_cert {
                req.extensions_mut().insert(c.clone());
            }
            let answer = router.clone().oneshot(req);
            let header_case = header_case.clone();
            async move {
                let mut resp = answer.await?;
                if http1 && !header_case.is_empty() {
                    resp.extensions_mut().extend((*header_case).clone());
                }
                Ok(resp)
            }
        },
    ))
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains. `header_case`
/// comes from [`canonical_header_case`], prepared once for every listener.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: Limits,
    header_case: Arc<http::Extensions>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs))
        .title_case_headers(true)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);

    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &acceptor {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let router = router.clone();
                let header_case = header_case.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    // The leaf the client presented (if any), for front ends that
                    // authenticate with it (EST).
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.split_first())
                        .map(|(leaf, chain)| ClientCert {
                            leaf: leaf.as_ref().to_vec(),
                            chain: chain.iter().map(|c| c.as_ref().to_vec()).collect(),
                        });
                    let svc = service(router, remote, client_cert, header_case);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                });
            }
            None => {
                let svc = service(router.clone(), remote, None, header_case.clone());
                tokio::spawn(async move {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy after {DRAIN_TIMEOUT:?}; closing them");
    }
}
