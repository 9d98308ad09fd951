//! `http-01` (RFC 8555 §8.3): a hand-written HTTP/1.1 GET, so that the validator decides which
//! address it connects to (its own resolver's answer) and can say exactly what went wrong.

use std::io;
use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::net::{connect_any, resolve_host, rustls_error, tls_client_config, Deadline};
use super::{normalize_dns_name, quote_trunc, Identifier, VaError, VaErrorKind, Validator};

/// Redirects followed at most.
pub(crate) const MAX_REDIRECTS: usize = 10;
/// The largest body read.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// The largest response head (status line and headers) read.
const HEAD_LIMIT: usize = 16 * 1024;
/// How much of a wrong body the error quotes.
const QUOTE_CHARS: usize = 64;

pub(super) async fn validate(
    v: &Validator,
    id: &Identifier,
    token: &str,
    key_authorization: &str,
) -> Result<(), VaError> {
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(VaError::new(
            VaErrorKind::IncorrectResponse,
            format!(
                "the token {} is not base64url, so no challenge URL can be built",
                quote_trunc(token, QUOTE_CHARS)
            ),
        ));
    }
    let host = match id {
        Identifier::Dns(name) if name.starts_with("*.") => {
            return Err(VaError::new(
                VaErrorKind::Unauthorized,
                format!("http-01 cannot prove control of the wildcard name {name}; use dns-01"),
            ))
        }
        Identifier::Dns(name) => {
            normalize_dns_name(name).map_err(|e| VaError::new(VaErrorKind::Dns, e))?
        }
        Identifier::Ip(IpAddr::V4(ip)) => ip.to_string(),
        Identifier::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
    };
    let port = v.cfg().http_port;
    let first = Url::parse(&format!(
        "http://{host}:{port}/.well-known/acme-challenge/{token}"
    ))
    .map_err(|e| {
        VaError::new(
            VaErrorKind::IncorrectResponse,
            format!("cannot build the challenge URL for {id}: {e}"),
        )
    })?;

    let deadline = Deadline::start(v);
    let mut url = first.clone();
    let mut hops = 0usize;
    loop {
        let resp = fetch(v, &deadline, &url).await?;
        let whence = if hops == 0 {
            String::new()
        } else {
            format!(" (redirected from {first})")
        };
        if matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
            if hops == MAX_REDIRECTS {
                return Err(VaError::new(
                    VaErrorKind::IncorrectResponse,
                    format!("too many redirects: more than {MAX_REDIRECTS} starting at {first}"),
                ));
            }
            let Some(location) = resp.location else {
                return Err(VaError::new(
                    VaErrorKind::IncorrectResponse,
                    format!(
                        "HTTP {} redirect from {url}{whence} has no Location header",
                        resp.status
                    ),
                ));
            };
            let next = url.join(&location).map_err(|e| {
                VaError::new(
                    VaErrorKind::IncorrectResponse,
                    format!(
                        "HTTP {} from {url}{whence} redirects to {}, which is not a valid URL: {e}",
                        resp.status,
                        quote_trunc(&location, 256)
                    ),
                )
            })?;
            target(v, &next)?;
            url = next;
            hops += 1;
            continue;
        }
        if resp.status != 200 {
            return Err(VaError::new(
                VaErrorKind::Unauthorized,
                format!(
                    "HTTP {} from {url}{whence}, expected 200 with the key authorization",
                    resp.status
                ),
            ));
        }
        let body = resp.body.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let trimmed = text.trim_end();
        if trimmed == key_authorization {
            return Ok(());
        }
        return Err(VaError::new(
            VaErrorKind::Unauthorized,
            format!(
                "the response from {url}{whence} was {}, expected the key authorization {}",
                quote_trunc(trimmed, QUOTE_CHARS),
                quote_trunc(key_authorization, 256)
            ),
        ));
    }
}

/// Where a URL points: scheme, host, the port actually used, and what to send as `Host`.
struct Target {
    https: bool,
    host: Host<String>,
    port: u16,
    authority: String,
    request_target: String,
}

/// Checks a (redirect) URL and works out where to connect. `http` on port 80 (or none) goes to
/// the configured HTTP port, `https` on 443 (or none) to the configured TLS port; other
/// explicit ports must be one of those two.
fn target(v: &Validator, url: &Url) -> Result<Target, VaError> {
    let bad = |why: String| {
        VaError::new(
            VaErrorKind::IncorrectResponse,
            format!("cannot follow the redirect to {url}: {why}"),
        )
    };
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(bad(format!("the scheme {other} is neither http nor https"))),
    };
    let host = match url.host() {
        Some(Host::Domain(d)) => Host::Domain(normalize_dns_name(d).map_err(bad)?),
        Some(Host::Ipv4(ip)) => Host::Ipv4(ip),
        Some(Host::Ipv6(ip)) => Host::Ipv6(ip),
        None => return Err(bad("it has no host".to_string())),
    };
    let cfg = v.cfg();
    let port = match (https, url.port_or_known_default()) {
        (false, Some(80) | None) => cfg.http_port,
        (true, Some(443) | None) => cfg.tls_port,
        (_, Some(p)) if p == cfg.http_port || p == cfg.tls_port || p == 80 || p == 443 => p,
        (_, Some(p)) => {
            return Err(bad(format!(
                "port {p} is not allowed (only {}, {}, 80 and 443)",
                cfg.http_port, cfg.tls_port
            )))
        }
    };
    let host_str = match &host {
        Host::Domain(d) => d.clone(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    };
    let authority = match url.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str,
    };
    let mut request_target = url.path().to_string();
    if let Some(q) = url.query() {
        request_target.push('?');
        request_target.push_str(q);
    }
    if request_target
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ')
    {
        return Err(bad(
            "the path contains control characters or spaces".to_string()
        ));
    }
    Ok(Target {
        https,
        host,
        port,
        authority,
        request_target,
    })
}

/// What `fetch` learned from one response.
struct Response {
    status: u16,
    location: Option<String>,
    /// Read only for a 200.
    body: Option<Vec<u8>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One GET of `url` within the deadline.
async fn fetch(v: &Validator, deadline: &Deadline, url: &Url) -> Result<Response, VaError> {
    let t = target(v, url)?;
    let ips: Vec<IpAddr> = match &t.host {
        Host::Domain(d) => resolve_host(v, deadline, d).await?,
        Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
        Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
    };
    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, t.port)).collect();
    let tcp = connect_any(deadline, &addrs).await?;
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| t.authority.clone());
    let conn_err = |what: &str, e: io::Error| {
        let why = match e.kind() {
            io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
            io::ErrorKind::BrokenPipe => "connection closed by peer".to_string(),
            _ => e.to_string(),
        };
        VaError::new(
            VaErrorKind::Connection,
            format!("{what} {url} (connected to {peer}): {why}"),
        )
    };

    deadline
        .run(
            VaErrorKind::Connection,
            || format!("waiting for a response from {url} (connected to {peer})"),
            async {
                let mut io: Box<dyn Io> = if t.https {
                    let cfg = tls_client_config(&[b"http/1.1"])?;
                    let name = match &t.host {
                        Host::Domain(d) => ServerName::try_from(d.clone()).map_err(|e| {
                            VaError::new(
                                VaErrorKind::IncorrectResponse,
                                format!("cannot use {d} as a TLS server name: {e}"),
                            )
                        })?,
                        Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
                        Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
                    };
                    let tls = TlsConnector::from(cfg).connect(name, tcp).await.map_err(|e| {
                        let why = match rustls_error(&e) {
                            Some(r) => r.to_string(),
                            None => e.to_string(),
                        };
                        VaError::new(
                            VaErrorKind::Connection,
                            format!("TLS handshake for {url} with {peer} failed: {why}"),
                        )
                    })?;
                    Box::new(tls)
                } else {
                    Box::new(tcp)
                };
                let request = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vellum-va/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                    t.request_target,
                    t.authority,
                    env!("CARGO_PKG_VERSION")
                );
                io.write_all(request.as_bytes())
                    .await
                    .map_err(|e| conn_err("could not send the request for", e))?;
                io.flush()
                    .await
                    .map_err(|e| conn_err("could not send the request for", e))?;
                let mut r = Reader {
                    io,
                    buf: Vec::new(),
                    pos: 0,
                    url: url.as_str(),
                };
                read_response(&mut r).await
            },
        )
        .await
}

/// Buffered reading of a response, with errors that name the URL.
struct Reader<'a> {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    pos: usize,
    url: &'a str,
}

impl Reader<'_> {
    fn bad(&self, why: impl std::fmt::Display) -> VaError {
        VaError::new(
            VaErrorKind::IncorrectResponse,
            format!("malformed HTTP response from {}: {why}", self.url),
        )
    }

    fn io_err(&self, e: io::Error) -> VaError {
        let why = match e.kind() {
            io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
            _ => match rustls_error(&e) {
                Some(r) => r.to_string(),
                None => e.to_string(),
            },
        };
        VaError::new(
            VaErrorKind::Connection,
            format!("error reading the response from {}: {why}", self.url),
        )
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more; `Ok(0)` at end of stream (a TLS peer closing without close_notify counts).
    async fn fill(&mut self) -> Result<usize, VaError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 8192];
        match self.io.read(&mut chunk).await {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(self.io_err(e)),
        }
    }

    /// One line without its CR LF, at most `max` bytes.
    async fn line(&mut self, max: usize) -> Result<Vec<u8>, VaError> {
        loop {
            if let Some(i) = self.buffered().iter().position(|&b| b == b'\n') {
                let mut line = self.buffered()[..i].to_vec();
                self.pos += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buffered().len() > max {
                return Err(self.bad(format!("a chunk line is longer than {max} bytes")));
            }
            if self.fill().await? == 0 {
                return Err(self.bad("the connection closed in the middle of the chunked body"));
            }
        }
    }

    /// Exactly `n` more bytes appended to `out`.
    async fn exact(&mut self, n: usize, out: &mut Vec<u8>) -> Result<(), VaError> {
        let mut need = n;
        loop {
            let take = need.min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.pos += take;
            need -= take;
            if need == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return Err(self.bad(format!(
                    "the connection closed after {} of {n} announced body bytes",
                    n - need
                )));
            }
        }
    }
}

fn too_large(url: &str) -> VaError {
    VaError::new(
        VaErrorKind::IncorrectResponse,
        format!(
            "the response from {url} is larger than {} KiB, so it is not a key authorization",
            BODY_LIMIT / 1024
        ),
    )
}

async fn read_response(r: &mut Reader<'_>) -> Result<Response, VaError> {
    // Skip interim 1xx responses (none are expected, but they are legal).
    for _ in 0..5 {
        let (consumed, status, location, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(r.buffered()) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut location = None;
                    let mut length: Option<usize> = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("location") {
                            location = Some(String::from_utf8_lossy(h.value).trim().to_string());
                        } else if h.name.eq_ignore_ascii_case("content-length") {
                            let parsed = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|s| s.trim().parse::<usize>().ok());
                            match (parsed, length) {
                                (None, _) => return Err(r.bad("invalid Content-Length")),
                                (Some(a), Some(b)) if a != b => {
                                    return Err(r.bad("conflicting Content-Length headers"))
                                }
                                (Some(a), _) => length = Some(a),
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            let te = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                            if te
                                .rsplit(',')
                                .next()
                                .is_some_and(|last| last.trim() == "chunked")
                            {
                                chunked = true;
                            } else {
                                return Err(r.bad(format!(
                                    "unsupported Transfer-Encoding {}",
                                    quote_trunc(&te, 64)
                                )));
                            }
                        }
                    }
                    break (n, status, location, length, chunked);
                }
                Ok(httparse::Status::Partial) => {
                    if r.buffered().len() > HEAD_LIMIT {
                        return Err(r.bad(format!(
                            "the status line and headers exceed {} KiB",
                            HEAD_LIMIT / 1024
                        )));
                    }
                    if r.fill().await? == 0 {
                        return Err(if r.buffered().is_empty() {
                            VaError::new(
                                VaErrorKind::Connection,
                                format!(
                                    "the server closed the connection without answering the request for {}",
                                    r.url
                                ),
                            )
                        } else {
                            r.bad("the connection closed in the middle of the headers")
                        });
                    }
                }
                Err(e) => return Err(r.bad(e)),
            }
        };
        r.pos += consumed;
        if (100..200).contains(&status) {
            continue;
        }
        if status != 200 {
            return Ok(Response {
                status,
                location,
                body: None,
            });
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let line = r.line(1024).await?;
                let text = String::from_utf8_lossy(&line);
                let size_str = text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_str, 16).map_err(|_| {
                    r.bad(format!("invalid chunk size {}", quote_trunc(size_str, 32)))
                })?;
                if size == 0 {
                    break;
                }
                if body.len().saturating_add(size) > BODY_LIMIT {
                    return Err(too_large(r.url));
                }
                r.exact(size, &mut body).await?;
                if !r.line(2).await?.is_empty() {
                    return Err(r.bad("a chunk is not followed by CR LF"));
                }
            }
        } else if let Some(n) = length {
            if n > BODY_LIMIT {
                return Err(too_large(r.url));
            }
            r.exact(n, &mut body).await?;
        } else {
            loop {
                body.extend_from_slice(r.buffered());
                r.pos = r.buf.len();
                if body.len() > BODY_LIMIT {
                    return Err(too_large(r.url));
                }
                if r.fill().await? == 0 {
                    break;
                }
            }
        }
        return Ok(Response {
            status,
            location,
            body: Some(body),
        });
    }
    Err(r.bad("too many interim 1xx responses"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::testdns::TestDns;
    use crate::testutil::{bounded, validator, HttpServer};
    use crate::VaConfig;

    const TOKEN: &str = "tok_EN-123";
    const KA: &str = "tok_EN-123.thumbprint";

    #[tokio::test]
    async fn serves_key_authorization_by_ip() {
        bounded(async {
            let srv = HttpServer::start(|path| match path {
                "/.well-known/acme-challenge/tok_EN-123" => (200, vec![], format!("{KA}\r\n\n")),
                _ => (404, vec![], "nope".into()),
            })
            .await;
            let v = validator(srv.port(), 1, None);
            let id = Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            v.http01(&id, TOKEN, KA).await.unwrap();
            let reqs = srv.requests();
            assert_eq!(reqs.len(), 1);
            assert!(reqs[0].contains(&format!("Host: 127.0.0.1:{}\r\n", srv.port())));
            assert!(reqs[0].starts_with("GET /.well-known/acme-challenge/tok_EN-123 HTTP/1.1\r\n"));
        })
        .await;
    }

    #[tokio::test]
    async fn wrong_body_is_unauthorized_with_both_values() {
        bounded(async {
            let srv = HttpServer::start(|_| (200, vec![], "abc-wrong".into())).await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized, "{e}");
            assert!(e.detail.contains("\"abc-wrong\""), "{}", e.detail);
            assert!(e.detail.contains(&format!("\"{KA}\"")), "{}", e.detail);
            assert!(
                e.detail.contains(&format!(
                    "http://127.0.0.1:{}/.well-known/acme-challenge/{TOKEN}",
                    srv.port()
                )),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn long_wrong_body_is_quoted_to_64_chars() {
        bounded(async {
            let srv = HttpServer::start(|_| (200, vec![], "x".repeat(5000))).await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            assert!(
                e.detail.contains(&format!("\"{}…\"", "x".repeat(64))),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn not_found_says_404() {
        bounded(async {
            let srv = HttpServer::start(|_| (404, vec![], "not here".into())).await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            assert!(
                e.detail.starts_with("HTTP 404 from http://127.0.0.1:"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn nothing_listening_is_connection_refused() {
        bounded(async {
            let port = crate::testutil::unused_port();
            let v = validator(port, 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Connection);
            assert_eq!(e.detail, format!("connection refused to 127.0.0.1:{port}"));
        })
        .await;
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        bounded(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let hold = tokio::spawn(async move {
                let (_s, _) = listener.accept().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            });
            let mut cfg = VaConfig {
                http_port: port,
                ..VaConfig::default()
            };
            cfg.timeout = std::time::Duration::from_millis(300);
            let v = Validator::new(VaConfig {
                dns_resolver: Some("127.0.0.1:9".parse().unwrap()),
                ..cfg
            })
            .unwrap();
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            hold.abort();
            assert_eq!(e.kind, VaErrorKind::Connection);
            assert!(
                e.detail.starts_with(
                    "timed out after 300 ms waiting for a response from http://127.0.0.1:"
                ),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn redirects_are_followed_relative_and_absolute() {
        bounded(async {
            let srv = HttpServer::start(move |path| match path {
                "/.well-known/acme-challenge/tok_EN-123" => {
                    (302, vec![("Location", "/step2".to_string())], String::new())
                }
                "/step2" => (
                    301,
                    vec![("Location", "http://b.test/final?x=1".to_string())],
                    String::new(),
                ),
                "/final?x=1" => (200, vec![], KA.to_string()),
                _ => (404, vec![], String::new()),
            })
            .await;
            let (dns, dns_addr) = TestDns::start().unwrap();
            dns.set_a("a.test", Ipv4Addr::LOCALHOST);
            dns.set_a("b.test", Ipv4Addr::LOCALHOST);
            let v = validator(srv.port(), 1, Some(dns_addr));
            v.http01(&Identifier::Dns("a.test".into()), TOKEN, KA)
                .await
                .unwrap();
            let reqs = srv.requests();
            assert_eq!(reqs.len(), 3);
            assert!(reqs[0].contains(&format!("Host: a.test:{}\r\n", srv.port())));
            // http://b.test/ has no port: sent to the configured HTTP port, Host without port.
            assert!(reqs[2].contains("Host: b.test\r\n"), "{}", reqs[2]);
        })
        .await;
    }

    #[tokio::test]
    async fn redirect_loop_stops_after_ten() {
        bounded(async {
            let srv = HttpServer::start(|_| {
                (302, vec![("Location", "/again".to_string())], String::new())
            })
            .await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::IncorrectResponse);
            assert!(e.detail.starts_with("too many redirects"), "{}", e.detail);
            assert_eq!(srv.requests().len(), MAX_REDIRECTS + 1);
        })
        .await;
    }

    #[tokio::test]
    async fn redirect_to_other_port_or_scheme_is_refused() {
        bounded(async {
            let srv = HttpServer::start(|_| {
                (
                    302,
                    vec![("Location", "ftp://127.0.0.1/x".to_string())],
                    String::new(),
                )
            })
            .await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::IncorrectResponse);
            assert!(e.detail.contains("neither http nor https"), "{}", e.detail);

            let srv = HttpServer::start(|_| {
                (
                    302,
                    vec![("Location", "http://127.0.0.1:1/x".to_string())],
                    String::new(),
                )
            })
            .await;
            let v = validator(srv.port(), 2, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::IncorrectResponse);
            assert!(e.detail.contains("port 1 is not allowed"), "{}", e.detail);
        })
        .await;
    }

    #[tokio::test]
    async fn redirect_to_https_is_followed_without_verifying_the_certificate() {
        bounded(async {
            let tls = crate::testutil::HttpsServer::start(KA).await;
            let tls_port = tls.port();
            let srv = HttpServer::start(move |_| {
                (
                    307,
                    vec![("Location", format!("https://127.0.0.1:{tls_port}/secure"))],
                    String::new(),
                )
            })
            .await;
            let v = validator(srv.port(), tls_port, None);
            v.http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn dns_name_resolved_by_the_configured_resolver() {
        bounded(async {
            let srv = HttpServer::start(|_| (200, vec![], KA.to_string())).await;
            let (dns, dns_addr) = TestDns::start().unwrap();
            dns.set_a("web.a.test", Ipv4Addr::LOCALHOST);
            let v = validator(srv.port(), 1, Some(dns_addr));
            v.http01(&Identifier::Dns("Web.A.test".into()), TOKEN, KA)
                .await
                .unwrap();
            assert!(srv.requests()[0].contains(&format!("Host: web.a.test:{}\r\n", srv.port())));

            // A name without addresses is a DNS problem.
            let e = v
                .http01(&Identifier::Dns("missing.a.test".into()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Dns);
            assert!(
                e.detail
                    .starts_with("no A or AAAA record for missing.a.test"),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn chunked_and_unframed_bodies() {
        bounded(async {
            let srv = crate::testutil::RawServer::start(format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntok_E\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                KA.len() - 5,
                &KA[5..]
            ))
            .await;
            let v = validator(srv.port(), 1, None);
            v.http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap();

            let srv = crate::testutil::RawServer::start(format!("HTTP/1.0 200 OK\r\n\r\n{KA}\n")).await;
            let v = validator(srv.port(), 1, None);
            v.http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap();

            let srv = crate::testutil::RawServer::start("garbage\r\n\r\n".to_string()).await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::IncorrectResponse, "{e}");

            let srv = crate::testutil::RawServer::start(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                BODY_LIMIT + 1
            ))
            .await;
            let v = validator(srv.port(), 1, None);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), TOKEN, KA)
                .await
                .unwrap_err();
            assert!(e.detail.contains("larger than 64 KiB"), "{e}");
        })
        .await;
    }

    #[tokio::test]
    async fn wildcard_and_bad_token_are_refused() {
        bounded(async {
            let v = validator(1, 1, None);
            let e = v
                .http01(&Identifier::Dns("*.a.test".into()), TOKEN, KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            let e = v
                .http01(&Identifier::Ip("127.0.0.1".parse().unwrap()), "a/../b", KA)
                .await
                .unwrap_err();
            assert_eq!(e.kind, VaErrorKind::IncorrectResponse);
        })
        .await;
    }
}
