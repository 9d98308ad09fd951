//! Outbound notification deliveries: signed webhooks (HTTP POST of a JSON event) and
//! e-mail over SMTP (lettre).
//!
//! Both targets are named by tenant admins, so both are held to the configured networks:
//! every address the host resolves to must be inside one of them (an IP literal too),
//! and the connection goes to an address that was checked (the webhook client resolves
//! through [`CheckedResolver`]; SMTP connects to the checked address and verifies TLS
//! against the host name). Redirects are not followed; every attempt is bounded by the
//! timeout.
//!
//! **Webhook signature** (documented for receivers in docs/API.md): header
//! `Vellum-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, plus
//! `Vellum-Event-Id` (the same on every retry: receivers dedupe on it) and
//! `Vellum-Event-Type`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use ipnet::IpNet;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The receiver accepted it (HTTP 2xx, SMTP 2xx).
    pub delivered: bool,
    /// HTTP status or SMTP reply code, when the remote answered.
    pub status: Option<i64>,
    /// What went wrong, in words (None when delivered).
    pub error: Option<String>,
}

impl Answer {
    fn failed(error: impl Into<String>) -> Answer {
        Answer {
            delivered: false,
            status: None,
            error: Some(error.into()),
        }
    }
}

/// How an e-mail channel reaches its server.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    /// Server host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `none`, `starttls` (required) or `implicit`.
    pub tls: SmtpTlsMode,
    /// Login, when the server wants one.
    pub username: Option<String>,
    /// Its password (opened from its seal for this attempt).
    pub password: Option<String>,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTlsMode {
    /// Plain text.
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// One e-mail.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    /// `From` mailbox.
    pub from: &'a str,
    /// Recipients.
    pub to: &'a [String],
    /// Subject line.
    pub subject: &'a str,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// The event id, used as the Message-ID's local part (receivers can dedupe on it).
    pub event_id: &'a str,
}

/// Whether `s` is a mailbox lettre accepts (`a@b.example` or `Name <a@b.example>`).
pub fn check_mailbox(s: &str) -> Result<(), String> {
    s.parse::<Mailbox>().map(|_| ()).map_err(|e| e.to_string())
}

/// `t=<now>,v1=<hex HMAC-SHA256(secret, "<now>.<body>")>`.
pub fn signature(secret: &[u8], now: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(now.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={now},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Sends notifications; cheap to clone (one HTTP connection pool).
#[derive(Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    networks: Arc<Vec<IpNet>>,
    timeout: Duration,
    extra_roots_pem: Arc<Vec<u8>>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("networks", &self.networks)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The webhook client's resolver: the system's, keeping a name only when every address
/// it resolves to is inside the allowed networks.
struct CheckedResolver {
    networks: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let networks = self.networks.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs = resolve_checked(&networks, &host, 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// The addresses of `host:port`, all inside `networks`, or why not.
async fn resolve_checked(
    networks: &[IpNet],
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if let Some(out) = addrs
        .iter()
        .find(|a| !networks.iter().any(|n| n.contains(&a.ip())))
    {
        return Err(format!(
            "{host} resolves to {}, outside the networks notifications may reach; the \
             operator can list more in notifications.networks",
            out.ip()
        ));
    }
    Ok(addrs)
}

impl Deliverer {
    /// A deliverer for targets inside `networks`, each attempt bounded by `timeout`,
    /// trusting the system's roots plus `extra_roots_pem` (PEM, may be empty).
    pub fn new(
        networks: Vec<IpNet>,
        timeout: Duration,
        extra_roots_pem: Vec<u8>,
    ) -> Result<Deliverer, String> {
        let networks = Arc::new(networks);
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!(
                "vellum/",
                env!("CARGO_PKG_VERSION"),
                " (notifications)"
            ))
            .dns_resolver(Arc::new(CheckedResolver {
                networks: networks.clone(),
            }));
        if !extra_roots_pem.is_empty() {
            for c in reqwest::Certificate::from_pem_bundle(&extra_roots_pem)
                .map_err(|e| format!("extra roots: {e}"))?
            {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| format!("webhook client: {e}"))?;
        Ok(Deliverer {
            http,
            networks,
            timeout,
            extra_roots_pem: Arc::new(extra_roots_pem),
        })
    }

    /// Whether `host` (a name or an address) may be a target now: resolved and checked.
    pub async fn check_host(&self, host: &str) -> Result<(), String> {
        resolve_checked(&self.networks, host, 0).await.map(|_| ())
    }

    /// POSTs `body` (the JSON event) to `url`, signed with `secret` at `now`.
    pub async fn webhook(
        &self,
        url: &str,
        secret: &[u8],
        event_id: &str,
        event_type: &str,
        body: &[u8],
        now: i64,
    ) -> Answer {
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Answer::failed(format!("the URL does not parse: {e}")),
        };
        // The resolver is not asked for IP literals: check them here.
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = parsed.host() {
            let host = parsed.host_str().unwrap_or_default();
            if let Err(e) = resolve_checked(&self.networks, host, 0).await {
                return Answer::failed(e);
            }
        }
        let res = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("vellum-event-id", event_id)
            .header("vellum-event-type", event_type)
            .header("vellum-signature", signature(secret, now, body))
            .body(body.to_vec())
            .send()
            .await;
        match res {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Answer {
                        delivered: true,
                        status: Some(i64::from(status.as_u16())),
                        error: None,
                    };
                }
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                Answer {
                    delivered: false,
                    status: Some(i64::from(status.as_u16())),
                    error: Some(if status.is_redirection() {
                        format!("the receiver answered {status} (redirects are not followed)")
                    } else if text.trim().is_empty() {
                        format!("the receiver answered {status}")
                    } else {
                        format!("the receiver answered {status}: {}", text.trim())
                    }),
                }
            }
            Err(e) => Answer::failed(describe_reqwest(&e)),
        }
    }

    /// Sends `mail` through `smtp`.
    pub async fn email(&self, smtp: &SmtpTarget, mail: &Email<'_>) -> Answer {
        let addrs = match resolve_checked(&self.networks, &smtp.host, smtp.port).await {
            Ok(a) => a,
            Err(e) => return Answer::failed(e),
        };
        let message = match build_message(mail) {
            Ok(m) => m,
            Err(e) => return Answer::failed(e),
        };
        let tls = match smtp.tls {
            SmtpTlsMode::None => Tls::None,
            mode => {
                let mut p = TlsParameters::builder(smtp.host.clone());
                if !self.extra_roots_pem.is_empty() {
                    for block in pem_blocks(&self.extra_roots_pem) {
                        match Certificate::from_pem(&block) {
                            Ok(c) => p = p.add_root_certificate(c),
                            Err(e) => return Answer::failed(format!("extra roots: {e}")),
                        }
                    }
                }
                let p = match p.build_rustls() {
                    Ok(p) => p,
                    Err(e) => return Answer::failed(format!("TLS settings: {e}")),
                };
                if mode == SmtpTlsMode::Implicit {
                    Tls::Wrapper(p)
                } else {
                    Tls::Required(p)
                }
            }
        };
        // Connect to the checked address; TLS still verifies the host name.
        let mut b =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addrs[0].ip().to_string())
                .port(smtp.port)
                .tls(tls)
                .timeout(Some(self.timeout));
        if let Some(u) = &smtp.username {
            b = b.credentials(Credentials::new(
                u.clone(),
                smtp.password.clone().unwrap_or_default(),
            ));
        }
        let transport = b.build();
        match tokio::time::timeout(self.timeout * 2, transport.send(message)).await {
            Ok(Ok(resp)) => Answer {
                delivered: resp.is_positive(),
                status: resp.code().to_string().parse().ok(),
                error: (!resp.is_positive()).then(|| resp.message().collect::<Vec<_>>().join(" ")),
            },
            Ok(Err(e)) => Answer {
                delivered: false,
                status: e.status().and_then(|c| c.to_string().parse().ok()),
                error: Some(format!("SMTP {}:{}: {e}", smtp.host, smtp.port)),
            },
            Err(_) => Answer::failed(format!(
                "SMTP {}:{} did not finish within {} s",
                smtp.host,
                smtp.port,
                (self.timeout * 2).as_secs()
            )),
        }
    }
}

fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END") {
            out.push(cur.as_bytes().to_vec());
        }
    }
    out
}

fn build_message(mail: &Email<'_>) -> Result<Message, String> {
    let from: Mailbox = mail
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", mail.from))?;
    let mut b = Message::builder()
        .from(from)
        .subject(mail.subject)
        .message_id(Some(format!("<{}@vellum>", mail.event_id)));
    for t in mail.to {
        let to: Mailbox = t.parse().map_err(|e| format!("to {t:?}: {e}"))?;
        b = b.to(to);
    }
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(mail.html.clone()),
            ),
    )
    .map_err(|e| format!("the message could not be built: {e}"))
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "the receiver did not answer in time".to_string()
    } else if e.is_connect() {
        "could not connect to the receiver".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed with openssl:
        //   printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let s = signature(b"whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            s,
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        assert_ne!(s, signature(b"whsec_test", 1_700_000_001, br#"{"a":1}"#));
    }

    #[tokio::test]
    async fn targets_outside_the_networks_are_refused() {
        let nets = vec!["10.0.0.0/8".parse().unwrap()];
        let e = resolve_checked(&nets, "127.0.0.1", 80).await.unwrap_err();
        assert!(e.contains("outside the networks"), "{e}");
        assert!(resolve_checked(&nets, "10.1.2.3", 80).await.is_ok());
        let d = Deliverer::new(nets, Duration::from_secs(2), Vec::new()).unwrap();
        let a = d
            .webhook("http://127.0.0.1:9/x", b"s", "e", "test", b"{}", 0)
            .await;
        assert!(!a.delivered);
        assert!(a.error.unwrap().contains("outside the networks"));
        let a = d
            .webhook("http://localhost:9/x", b"s", "e", "test", b"{}", 0)
            .await;
        assert!(a.error.unwrap().contains("outside the networks"));
    }
}
