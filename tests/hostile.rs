//! A hostile client: well over a thousand generated malformed requests across every route
//! family (admin bodies, ids and query strings, ACME JWS, EST bodies, CRL and CA
//! certificate paths), over HTTP/1.1 and HTTP/2. Whatever arrives, the server answers
//! with a 4xx (or a documented 501), never panics, and stays healthy.
//!
//! The requests come from a seeded generator: `VELLUM_HOSTILE_SEED=<n>` replays a run,
//! and every failure prints the request that caused it.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::acme::Raw;
use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// xorshift64*: deterministic, dependency-free, good enough to pick junk.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Strings that have broken parsers before.
const NASTY: &[&str] = &[
    "",
    " ",
    "null",
    "\u{0}",
    "a\u{0}b",
    "\u{202E}evil",
    "\u{FEFF}",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%00",
    "%",
    "%zz",
    "' OR '1'='1",
    "\"; DROP TABLE cas; --",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "-1",
    "0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e309",
    "NaN",
    "true",
    "💥🔥",
    "\u{10FFFF}",
    "*",
    "*.*",
    "xn--",
    "xn--zz",
    "a..b",
    "0196b0e0-0000-7000-8000-000000000000",
    "00000000-0000-0000-0000-000000000000",
    "root",
    "intermediate",
    "server",
    "client",
    "pkcs12",
    "dns",
    "generate",
    "upload",
    "keyCompromise",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    "-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----",
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
    "mailto:",
    "mailto:a@b",
    "tel:+1",
];

/// Field names the admin API and ACME payloads use, so junk reaches real validation.
const FIELDS: &[&str] = &[
    "type",
    "kind",
    "common_name",
    "sans",
    "value",
    "validity_days",
    "csr_pem",
    "key_algorithm",
    "mode",
    "certificate_pem",
    "private_key_pem",
    "count",
    "intermediate_id",
    "parent_id",
    "quota",
    "service_months",
    "reason",
    "force",
    "format",
    "password",
    "label",
    "auth",
    "enabled",
    "username",
    "name_patterns",
    "tenant",
    "role",
    "name",
    "entity",
    "organization",
    "country",
    "tags",
    "include_crl",
    "next_update_hours",
    "allowed_domains",
    "allow_ip",
    "challenges",
    "require_eab",
    "default_validity_days",
    "certificate_type",
    "client_cert_trust_pem",
    "client_cert_name_patterns",
    "identifiers",
    "notBefore",
    "notAfter",
    "profile",
    "csr",
    "contact",
    "termsOfServiceAgreed",
    "onlyReturnExisting",
    "externalAccountBinding",
    "status",
    "certificate",
    "account",
    "oldKey",
];

fn junk_scalar(g: &mut Gen) -> Value {
    match g.below(8) {
        0 => Value::Null,
        1 => json!(g.chance(50)),
        2 => json!(g.next() as i64),
        3 => json!(-(g.below(1000) as i64)),
        4 => json!(1.5e300),
        5 => json!("x".repeat(g.below(70_000))),
        _ => json!(g.pick(NASTY)),
    }
}

fn junk_value(g: &mut Gen, depth: usize) -> Value {
    if depth == 0 || g.chance(45) {
        return junk_scalar(g);
    }
    if g.chance(50) {
        let n = g.below(6);
        Value::Array((0..n).map(|_| junk_value(g, depth - 1)).collect())
    } else {
        junk_object(g, depth - 1)
    }
}

fn junk_object(g: &mut Gen, depth: usize) -> Value {
    let mut m = serde_json::Map::new();
    for _ in 0..g.below(6) {
        let key = if g.chance(85) {
            g.pick(FIELDS).to_string()
        } else {
            g.pick(NASTY).to_string()
        };
        m.insert(key, junk_value(g, depth));
    }
    Value::Object(m)
}

/// A request body: usually JSON of the right shape with wrong values, sometimes broken
/// JSON, trailing data, deep nesting or raw bytes.
fn junk_body(g: &mut Gen) -> Vec<u8> {
    match g.below(10) {
        0 => g.bytes(300),
        1 => {
            let text = junk_object(g, 3).to_string();
            text.as_bytes()[..g.below(text.len() + 1)].to_vec()
        }
        2 => format!("{} {}", junk_object(g, 2), g.pick(NASTY)).into_bytes(),
        3 => {
            let d = 50 + g.below(5000);
            format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()
        }
        4 => g.pick(NASTY).as_bytes().to_vec(),
        _ => junk_object(g, 3).to_string().into_bytes(),
    }
}

fn junk_segment(g: &mut Gen, real: &[String]) -> String {
    if !real.is_empty() && g.chance(40) {
        return g.pick(real).clone();
    }
    let raw = match g.below(4) {
        0 => g.pick(NASTY).to_string(),
        1 => "x".repeat(g.below(3000)),
        2 => URL_SAFE_NO_PAD.encode(g.bytes(40)),
        _ => g.next().to_string(),
    };
    url_escape(&raw)
}

/// Percent-encodes what a URL path or query cannot carry as is.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn junk_query(g: &mut Gen) -> String {
    let keys = [
        "limit", "cursor", "status", "type", "q", "tag", "ca", "action", "source", "kind",
        "tenant", "since", "until", "actor", "outcome",
    ];
    let n = g.below(4);
    let mut parts = Vec::new();
    for _ in 0..n {
        let k = g.pick(&keys).to_string();
        let nasty: &&str = g.pick(NASTY);
        let v = url_escape(nasty);
        parts.push(format!("{k}={v}"));
    }
    if g.chance(10) {
        parts.push("%".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// One outcome that breaks the rule: what was sent and what came back.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in the failure message
struct Violation {
    request: String,
    status: u16,
    body: String,
}

struct Tally {
    /// Answers by status code (printed, to show the junk reached past the door).
    statuses: std::sync::Mutex<std::collections::BTreeMap<u16, usize>>,
    sent: AtomicUsize,
    violations: std::sync::Mutex<Vec<Violation>>,
}

impl Tally {
    fn check(&self, request: String, status: StatusCode, body: &str, allow_501: bool) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        *self
            .statuses
            .lock()
            .unwrap()
            .entry(status.as_u16())
            .or_default() += 1;
        let ok = !status.is_server_error() || (allow_501 && status == StatusCode::NOT_IMPLEMENTED);
        if !ok {
            self.violations.lock().unwrap().push(Violation {
                request,
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
    }
}

fn clients(s: &TestServer) -> Vec<(&'static str, reqwest::Client)> {
    let build = |h2: bool| {
        let mut tls = common::tls_trusting(&s.data_dir().join("root.pem")).with_no_client_auth();
        tls.alpn_protocols = if h2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let b = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(60));
        if h2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        }
        .build()
        .unwrap()
    };
    vec![("HTTP/1.1", build(false)), ("HTTP/2", build(true))]
}

/// One generated request.
struct Req {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// EST answers fullcmc with a documented 501.
    allow_501: bool,
}

async fn send(tally: &Tally, client: &reqwest::Client, proto: &str, r: Req) {
    let Req {
        method,
        url,
        headers,
        body,
        allow_501,
    } = r;
    let mut req = client.request(method.clone(), &url);
    for (k, v) in &headers {
        req = req.header(*k, v);
    }
    let shown_body = body
        .as_ref()
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned());
    if let Some(b) = body {
        req = req.body(b);
    }
    let described = format!("{proto} {method} {url} {headers:?} body={shown_body:?}");
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            tally.check(described, status, &text, allow_501);
        }
        // A refused request may close the stream/connection (413 on a large body); that
        // is an answer, not a crash. Anything worse shows up in /healthz and the panic
        // counter below.
        Err(_) => {
            tally.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/tenants"),
    ("GET", "/tenants"),
    ("POST", "/tokens"),
    ("GET", "/tokens"),
    ("DELETE", "/tokens/{id}"),
    ("POST", "/cas"),
    ("GET", "/cas"),
    ("GET", "/cas/{id}"),
    ("DELETE", "/cas/{id}"),
    ("POST", "/cas/{id}/enable"),
    ("POST", "/cas/{id}/quota/purchase"),
    ("POST", "/cas/{id}/quota/assign"),
    ("POST", "/cas/{id}/revoke"),
    ("POST", "/cas/{id}/reset"),
    ("POST", "/cas/{id}/refund"),
    ("GET", "/cas/{id}/crl"),
    ("PUT", "/cas/{id}/crl"),
    ("GET", "/cas/{id}/acme"),
    ("PUT", "/cas/{id}/acme"),
    ("POST", "/cas/{id}/acme/eab"),
    ("GET", "/cas/{id}/est"),
    ("PUT", "/cas/{id}/est"),
    ("POST", "/cas/{id}/est/clients"),
    ("GET", "/cas/{id}/est/clients"),
    ("DELETE", "/cas/{id}/est/clients/{id}"),
    ("POST", "/cas/{id}/certificates"),
    ("GET", "/certificates"),
    ("GET", "/certificates/{id}"),
    ("DELETE", "/certificates/{id}"),
    ("POST", "/certificates/{id}/export"),
    ("POST", "/certificates/{id}/revoke"),
    ("POST", "/certificates/{id}/renew"),
    ("GET", "/audit"),
    ("PATCH", "/cas"),
    ("PUT", "/certificates"),
];

const ACME_ENDPOINTS: &[&str] = &[
    "new-account",
    "new-order",
    "revoke-cert",
    "key-change",
    "acct/{id}",
    "acct/{id}/orders",
    "order/{id}",
    "order/{id}/finalize",
    "authz/{id}",
    "chall/{id}",
    "cert/{id}",
    "cert/{id}/1",
];

async fn hostile(s: &TestServer) {
    let seed: u64 = std::env::var("VELLUM_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_CAFE_F00D);
    eprintln!("hostile client: VELLUM_HOSTILE_SEED={seed}");
    let mut g = Gen(seed | 1);
    // Panics anywhere but in this test's own thread (its assertions) are the server's.
    let panics = Arc::new(AtomicUsize::new(0));
    {
        let panics = panics.clone();
        let me = std::thread::current().id();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != me {
                panics.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    }
    let tally = Tally {
        statuses: Default::default(),
        sent: AtomicUsize::new(0),
        violations: Default::default(),
    };

    // Real ids, so that a share of the junk reaches deep into the handlers.
    let inter = s.app().defaults.intermediate_id.clone();
    let root = s.app().defaults.root_id.clone();
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "hostile.example", "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let cert_id = v["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/est/clients"),
            json!({"username": "dev", "password": "device-password-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ids = vec![
        inter.clone(),
        root.clone(),
        cert_id.clone(),
        "dev".to_string(),
    ];
    let mut raw = Raw::new(s, &inter);
    raw.register().await;
    let kid = raw.kid.clone().unwrap();
    let account_id = kid.rsplit('/').next().unwrap().to_string();
    let acme_ids = vec![account_id, inter.clone()];
    let clients = clients(s);
    let admin = format!("{}/admin/v1", s.base);

    for round in 0..2 {
        for (proto, client) in &clients {
            // Admin API: bodies, ids, query strings, content types, credentials.
            for _ in 0..260 {
                let (m, template) = *g.pick(ADMIN_ROUTES);
                let mut path = template.to_string();
                while path.contains("{id}") {
                    path = path.replacen("{id}", &junk_segment(&mut g, &ids), 1);
                }
                if m == "GET" || g.chance(20) {
                    path.push_str(&junk_query(&mut g));
                }
                let mut headers = vec![];
                match g.below(10) {
                    0 => {}
                    1 => headers.push((
                        "authorization",
                        format!("Bearer {}", g.pick(NASTY).replace(['\0', '\n'], "")),
                    )),
                    2 => headers.push(("authorization", "Basic Zm9vOmJhcg==".into())),
                    _ => headers.push(("authorization", format!("Bearer {}", s.token))),
                }
                let body = (m != "GET" && m != "DELETE" || g.chance(10)).then(|| junk_body(&mut g));
                match g.below(8) {
                    0 => {}
                    1 => headers.push(("content-type", "text/plain".into())),
                    2 => headers.push(("content-type", "application/json; charset=utf-16".into())),
                    _ => headers.push(("content-type", "application/json".into())),
                }
                if g.chance(5) {
                    headers.push(("x-vellum-tenant", g.pick(NASTY).replace(['\0', '\n'], "")));
                }
                let method = Method::from_bytes(m.as_bytes()).unwrap();
                send(
                    &tally,
                    client,
                    proto,
                    Req {
                        method,
                        url: format!("{admin}{path}"),
                        headers,
                        body,
                        allow_501: false,
                    },
                )
                .await;
            }

            // ACME: raw junk, JWS-shaped junk, and correctly signed requests with junk
            // payloads (a fresh nonce each), on every endpoint.
            for i in 0..180 {
                let mut endpoint = g.pick(ACME_ENDPOINTS).to_string();
                while endpoint.contains("{id}") {
                    endpoint = endpoint.replacen("{id}", &junk_segment(&mut g, &acme_ids), 1);
                }
                let ca = if g.chance(85) {
                    inter.clone()
                } else {
                    junk_segment(&mut g, &[])
                };
                let url = format!("{}/acme/{ca}/{endpoint}", s.base);
                match i % 3 {
                    0 => {
                        let ct =
                            *g.pick(&["application/jose+json", "application/json", "text/plain"]);
                        let body = if g.chance(50) {
                            junk_body(&mut g)
                        } else {
                            let part = |g: &mut Gen| match g.below(3) {
                                0 => URL_SAFE_NO_PAD.encode(junk_object(g, 2).to_string()),
                                1 => URL_SAFE_NO_PAD.encode(g.bytes(64)),
                                _ => g.pick(NASTY).to_string(),
                            };
                            json!({"protected": part(&mut g), "payload": part(&mut g), "signature": part(&mut g)})
                                .to_string()
                                .into_bytes()
                        };
                        send(
                            &tally,
                            client,
                            proto,
                            Req {
                                method: Method::POST,
                                url,
                                headers: vec![("content-type", ct.into())],
                                body: Some(body),
                                allow_501: false,
                            },
                        )
                        .await;
                    }
                    _ => {
                        let signed_url = raw.url(&endpoint);
                        let target = if ca == inter {
                            signed_url.clone()
                        } else {
                            url.clone()
                        };
                        let mut post = raw.post(target.clone());
                        post.use_jwk = g.chance(20);
                        post.alg =
                            *g.pick(&["ES256", "ES256", "ES256", "none", "HS256", "RS256", ""]);
                        if g.chance(60) {
                            post.payload = Some(junk_object(&mut g, 3));
                        } else if g.chance(50) {
                            post.raw_payload = Some(junk_body(&mut g));
                        } else {
                            post.payload = None;
                        }
                        if g.chance(10) {
                            post.tamper = true;
                        }
                        let described = format!(
                            "{proto} signed ACME POST {target} alg={} payload={:?}",
                            post.alg,
                            post.payload.as_ref().map(|p| p
                                .to_string()
                                .chars()
                                .take(200)
                                .collect::<String>())
                        );
                        let (st, _, v) = raw.send(post).await;
                        tally.check(described, st, &v.to_string(), false);
                    }
                }
            }
            // ACME GETs (renewal info, directory) with junk ids.
            for _ in 0..20 {
                let id = junk_segment(&mut g, &[]);
                let url = if g.chance(50) {
                    format!("{}/acme/{inter}/renewal-info/{id}", s.base)
                } else {
                    format!("{}/acme/{id}/directory", s.base)
                };
                send(
                    &tally,
                    client,
                    proto,
                    Req {
                        method: Method::GET,
                        url,
                        headers: vec![],
                        body: None,
                        allow_501: false,
                    },
                )
                .await;
            }

            // EST: junk bodies and headers, with and without credentials, every operation.
            for _ in 0..130 {
                let op = *g.pick(&[
                    "simpleenroll",
                    "simplereenroll",
                    "serverkeygen",
                    "fullcmc",
                    "cacerts",
                    "csrattrs",
                    "nope",
                ]);
                let label = if g.chance(20) {
                    format!("{}/", junk_segment(&mut g, &ids))
                } else {
                    String::new()
                };
                let url = format!(
                    "{}/.well-known/est/{label}{op}{}",
                    s.base,
                    if g.chance(10) {
                        junk_query(&mut g)
                    } else {
                        String::new()
                    }
                );
                let mut headers = vec![];
                match g.below(4) {
                    0 => {}
                    1 => headers.push((
                        "authorization",
                        format!("Basic {}", STANDARD.encode("dev:device-password-1")),
                    )),
                    2 => headers.push((
                        "authorization",
                        format!("Basic {}", STANDARD.encode(g.bytes(30))),
                    )),
                    _ => headers.push((
                        "authorization",
                        format!("Basic {}", g.pick(NASTY).replace(['\0', '\n'], "")),
                    )),
                }
                headers.push((
                    "content-type",
                    (*g.pick(&["application/pkcs10", "application/pkcs7-mime", "text/plain"]))
                        .into(),
                ));
                let body = match g.below(4) {
                    0 => STANDARD.encode(g.bytes(400)).into_bytes(),
                    1 => g.bytes(400),
                    2 => {
                        // A real CSR with a hostile subject.
                        let key = rcgen::KeyPair::generate().unwrap();
                        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                        p.distinguished_name = rcgen::DistinguishedName::new();
                        p.distinguished_name.push(
                            rcgen::DnType::CommonName,
                            rcgen::DnValue::Utf8String(g.pick(NASTY).to_string()),
                        );
                        STANDARD
                            .encode(p.serialize_request(&key).unwrap().der())
                            .into_bytes()
                    }
                    _ => junk_body(&mut g),
                };
                let method = if g.chance(85) {
                    Method::POST
                } else {
                    Method::GET
                };
                send(
                    &tally,
                    client,
                    proto,
                    Req {
                        method,
                        url,
                        headers,
                        body: Some(body),
                        allow_501: true,
                    },
                )
                .await;
            }
        }
        // Distribution point (plain HTTP): CRLs and CA certificates by junk names.
        let http = reqwest::Client::new();
        for _ in 0..60 {
            let kind = *g.pick(&["crl", "ca"]);
            let ext = *g.pick(&[".crl", ".pem", ".crt", ".der", "", ".crl.crl", "."]);
            let name = junk_segment(&mut g, &ids);
            let url = format!(
                "{}/{kind}/{name}{ext}{}",
                s.http_base,
                if g.chance(20) {
                    junk_query(&mut g)
                } else {
                    String::new()
                }
            );
            let method = g
                .pick(&[Method::GET, Method::GET, Method::HEAD, Method::POST])
                .clone();
            send(
                &tally,
                &http,
                "HTTP/1.1 (plain)",
                Req {
                    method,
                    url,
                    headers: vec![],
                    body: None,
                    allow_501: false,
                },
            )
            .await;
        }
        eprintln!(
            "round {round}: {} requests so far",
            tally.sent.load(Ordering::Relaxed)
        );
    }

    let sent = tally.sent.load(Ordering::Relaxed);
    eprintln!("answers by status: {:?}", tally.statuses.lock().unwrap());
    assert!(sent >= 1000, "only {sent} requests were sent");
    let violations = std::mem::take(&mut *tally.violations.lock().unwrap());
    assert!(
        violations.is_empty(),
        "{} of {sent} malformed requests got a 5xx:\n{:#?}",
        violations.len(),
        violations.iter().take(20).collect::<Vec<_>>()
    );
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "a request made the server panic"
    );
    for url in [
        format!("{}/healthz", s.base),
        format!("{}/healthz", s.http_base),
    ] {
        let r = s.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url} after the hostile run");
    }
    // And it still issues (on a new hierarchy: the junk may have revoked the default
    // intermediate with a body that happened to be valid).
    let (_, fresh) = s.enabled_pair("After Hostile Root", 10, 5).await;
    let (st, v) = s
        .post(
            &format!("/cas/{fresh}/certificates"),
            json!({"type": "server", "common_name": "after.example", "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}
/// The server under test: failed-login limits off, so that the junk reaches the
/// handlers instead of being turned away at the door (the limits have tests of their own).
const OPEN_DOORS: &[(&str, &str)] = &[
    ("VELLUM_RATE_LIMITS_ADMIN_FAILED_LOGINS_PER_IP", "0"),
    ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_USER", "0"),
    ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_IP", "0"),
];

/// Both backends in one test, one after the other: the panic hook is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_never_get_a_5xx() {
    let s = TestServer::start_with(common::Backend::Sqlite, OPEN_DOORS).await;
    hostile(&s).await;
    s.stop().await;
    if common::pg_url().is_none() {
        eprintln!("PostgreSQL skipped: VELLUM_TEST_DATABASE_URL is not set");
        return;
    }
    let s = TestServer::start_with(common::Backend::Postgres, OPEN_DOORS).await;
    hostile(&s).await;
    s.stop().await;
}
