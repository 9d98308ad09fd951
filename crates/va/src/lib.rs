//! Validation authority: proves that an ACME account controls an identifier.
//!
//! Implements the three challenge types Vellum offers:
//! - `http-01` (RFC 8555 §8.3): [`Validator::http01`];
//! - `dns-01` (RFC 8555 §8.4): [`Validator::dns01`];
//! - `tls-alpn-01` (RFC 8737): [`Validator::tls_alpn01`];
//!
//! for DNS names and, for `http-01` and `tls-alpn-01`, IP addresses (RFC 8738).
//!
//! Every function makes exactly one attempt, bounded as a whole by [`VaConfig::timeout`], and
//! reports a failure as a [`VaError`] whose `detail` tells an operator what was seen and what
//! was expected. Retrying is the caller's business.
//!
//! Names are resolved with the validator's own DNS resolver (never `/etc/hosts` when a resolver
//! is configured, never a cache), so tests and private deployments can point names wherever
//! they like with `VELLUM_VA_DNS_RESOLVER`. [`testdns`] is a small in-memory DNS server for
//! exactly that.

pub mod deliver;
mod dns01;
mod http01;
mod net;
pub mod probe;
pub mod testdns;
mod tlsalpn;

#[cfg(test)]
mod testutil;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use sha2::{Digest, Sha256};

/// Where and how the validator connects.
///
/// From configuration: `VELLUM_VA_HTTP_PORT` (default 80), `VELLUM_VA_TLS_PORT` (default 443),
/// `VELLUM_VA_DNS_RESOLVER` (`host:port`; default the system's resolvers from
/// `/etc/resolv.conf`).
#[derive(Debug, Clone)]
pub struct VaConfig {
    /// The port `http-01` connects to (RFC 8555 says 80; tests and labs use others).
    pub http_port: u16,
    /// The port `tls-alpn-01` connects to, and the default port of `https` redirects
    /// during `http-01` (RFC 8737 says 443).
    pub tls_port: u16,
    /// The one DNS server to ask (UDP, TCP on truncation); `None`: the system's resolvers.
    pub dns_resolver: Option<SocketAddr>,
    /// The time one validation may take, all lookups, connections and redirects included.
    pub timeout: Duration,
}

impl Default for VaConfig {
    /// Ports 80 and 443, the system's resolvers, 10 seconds.
    fn default() -> Self {
        VaConfig {
            http_port: 80,
            tls_port: 443,
            dns_resolver: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The identifier being validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// A DNS name (A-labels; `*.` only for `dns-01`, which takes a `&str` anyway).
    Dns(String),
    /// An IP address (RFC 8738).
    Ip(IpAddr),
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Dns(name) => f.write_str(name),
            Identifier::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a validation failed, in words an operator can act on; `kind` maps to the ACME error
/// type.
#[derive(Debug, Clone)]
pub struct VaError {
    /// The ACME error type to report in the challenge's `error`.
    pub kind: VaErrorKind,
    /// What was seen and what was expected, for the problem document's `detail`.
    pub detail: String,
}

impl VaError {
    /// A failure of the given kind.
    pub fn new(kind: VaErrorKind, detail: impl Into<String>) -> VaError {
        VaError {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for VaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.acme_type(), self.detail)
    }
}

impl std::error::Error for VaError {}

/// The class of a validation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaErrorKind {
    /// Could not connect, or the connection broke or timed out
    /// (`urn:ietf:params:acme:error:connection`).
    Connection,
    /// The server answered, with something other than proof of control: a wrong key
    /// authorization or digest, an HTTP error status, a certificate for another identifier
    /// (`urn:ietf:params:acme:error:unauthorized`).
    Unauthorized,
    /// A DNS lookup failed or found nothing (`urn:ietf:params:acme:error:dns`).
    Dns,
    /// A `tls-alpn-01` problem: handshake failure, no `acme-tls/1`, a malformed or non-critical
    /// `acmeIdentifier` extension (`urn:ietf:params:acme:error:tls`).
    Tls,
    /// The answer broke the protocol: malformed HTTP, a bad or endless redirect, an oversized
    /// response (`urn:ietf:params:acme:error:incorrectResponse`).
    IncorrectResponse,
}

impl VaErrorKind {
    /// The full ACME error type URN.
    pub fn acme_type(&self) -> &'static str {
        match self {
            VaErrorKind::Connection => "urn:ietf:params:acme:error:connection",
            VaErrorKind::Unauthorized => "urn:ietf:params:acme:error:unauthorized",
            VaErrorKind::Dns => "urn:ietf:params:acme:error:dns",
            VaErrorKind::Tls => "urn:ietf:params:acme:error:tls",
            VaErrorKind::IncorrectResponse => "urn:ietf:params:acme:error:incorrectResponse",
        }
    }
}

/// base64url(SHA-256(key_authorization)), unpadded: the `dns-01` TXT value.
pub fn dns01_txt_value(key_authorization: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(key_authorization.as_bytes()))
}

/// Performs validations. Cheap to clone: the resolver and configuration are shared.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: VaConfig,
    resolver: TokioResolver,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// A validator with its own DNS resolver: the one server in `cfg.dns_resolver`, or the
    /// system's (`/etc/resolv.conf`). Answers are never cached, so a record the subscriber just
    /// published is seen on the next attempt. Fails when the system configuration can't be read.
    pub fn new(cfg: VaConfig) -> Result<Validator, String> {
        let mut builder = match cfg.dns_resolver {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                let mut b = TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], vec![ns]),
                    TokioRuntimeProvider::default(),
                );
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = cfg.timeout;
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.preserve_intermediates = true;
        opts.recursion_desired = true;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Validator {
            inner: Arc::new(Inner { cfg, resolver }),
        })
    }

    /// The configuration this validator was built with.
    pub fn config(&self) -> &VaConfig {
        &self.inner.cfg
    }

    /// `http-01` (RFC 8555 §8.3): `GET http://{host}:{http_port}/.well-known/acme-challenge/{token}`;
    /// the body, with trailing whitespace removed, must equal `key_authorization`.
    ///
    /// For a DNS name, A and AAAA records come from the validator's resolver and the request
    /// goes to those addresses (in that order; the next is tried only when connecting fails)
    /// with `Host: name[:port]`. For an IP address the host is the address (IPv6 in brackets).
    /// Up to 10 redirects are followed, to `http` or `https` (certificate not verified), on
    /// the configured ports (or 80/443); the body is limited to 64 KiB.
    pub async fn http01(
        &self,
        id: &Identifier,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), VaError> {
        http01::validate(self, id, token, key_authorization).await
    }

    /// `dns-01` (RFC 8555 §8.4): a TXT record at `_acme-challenge.{domain}` (CNAMEs followed)
    /// must equal [`dns01_txt_value`]`(key_authorization)`. A wildcard `*.x` is validated at
    /// `_acme-challenge.x`. A TXT record split into several strings is compared joined.
    pub async fn dns01(&self, domain: &str, key_authorization: &str) -> Result<(), VaError> {
        dns01::validate(self, domain, key_authorization).await
    }

    /// `tls-alpn-01` (RFC 8737, RFC 8738 §6): a TLS handshake with `{address}:{tls_port}`
    /// offering only ALPN `acme-tls/1`, with SNI the DNS name (for an IP address, its
    /// reverse-DNS name such as `1.0.0.127.in-addr.arpa`). The server must negotiate
    /// `acme-tls/1` and present a certificate (never chain-verified; the handshake signature
    /// is) with exactly one subjectAltName equal to the identifier and a critical
    /// `acmeIdentifier` extension (1.3.6.1.5.5.7.1.31) holding
    /// `OCTET STRING (SHA-256(key_authorization))`.
    pub async fn tls_alpn01(
        &self,
        id: &Identifier,
        key_authorization: &str,
    ) -> Result<(), VaError> {
        tlsalpn::validate(self, id, key_authorization).await
    }

    pub(crate) fn resolver(&self) -> &TokioResolver {
        &self.inner.resolver
    }

    pub(crate) fn cfg(&self) -> &VaConfig {
        &self.inner.cfg
    }
}

/// "10 s", "1500 ms": a duration as operators read it.
pub(crate) fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// `s` quoted and escaped, cut to `max` characters with "…" when longer.
pub(crate) fn quote_trunc(s: &str, max: usize) -> String {
    let mut out = String::from("\"");
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// A DNS name as the validator handles it: lower case, no trailing dot, checked to be
/// syntactically a host name (letters, digits, hyphens, underscores; labels 1–63 octets).
pub(crate) fn normalize_dns_name(name: &str) -> Result<String, String> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return Err(format!("{} is not a valid DNS name", quote_trunc(name, 64)));
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{} is not a valid DNS name", quote_trunc(name, 64)));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_value_is_unpadded_base64url_sha256() {
        // SHA-256("") = e3b0c442...; base64url of it, no padding.
        assert_eq!(
            dns01_txt_value(""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(dns01_txt_value("tok.thumb").len(), 43);
    }

    #[test]
    fn kinds_map_to_acme_urns() {
        assert_eq!(
            VaErrorKind::IncorrectResponse.acme_type(),
            "urn:ietf:params:acme:error:incorrectResponse"
        );
        assert_eq!(
            VaErrorKind::Connection.acme_type(),
            "urn:ietf:params:acme:error:connection"
        );
        assert_eq!(
            VaErrorKind::Dns.acme_type(),
            "urn:ietf:params:acme:error:dns"
        );
        assert_eq!(
            VaErrorKind::Tls.acme_type(),
            "urn:ietf:params:acme:error:tls"
        );
        assert_eq!(
            VaErrorKind::Unauthorized.acme_type(),
            "urn:ietf:params:acme:error:unauthorized"
        );
    }

    #[test]
    fn builds_outside_a_runtime_and_clones_cheaply() {
        let v = Validator::new(VaConfig {
            dns_resolver: Some("127.0.0.1:53".parse().unwrap()),
            ..VaConfig::default()
        })
        .unwrap();
        let w = v.clone();
        assert!(Arc::ptr_eq(&v.inner, &w.inner));
        assert_eq!(w.config().http_port, 80);
        assert_eq!(w.config().tls_port, 443);
        assert_eq!(w.config().timeout, Duration::from_secs(10));
    }

    #[test]
    fn builds_from_the_system_configuration() {
        if std::path::Path::new("/etc/resolv.conf").exists() {
            Validator::new(VaConfig::default()).unwrap();
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(human_duration(Duration::from_secs(10)), "10 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(quote_trunc("abc", 2), "\"ab…\"");
        assert_eq!(quote_trunc("a\"b\n", 10), "\"a\\\"b\\n\"");
        assert_eq!(normalize_dns_name("A.Example.").as_deref(), Ok("a.example"));
        assert!(normalize_dns_name("a..b").is_err());
        assert!(normalize_dns_name("a b").is_err());
        assert!(normalize_dns_name("*.a").is_err());
    }
}
