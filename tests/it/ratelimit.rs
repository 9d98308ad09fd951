//! Rate limits of the public doors: ACME (rateLimited + Retry-After, RFC 8555 §6.6), EST
//! (failed Basic logins with back-off, 429 + Retry-After) and the admin API (failed token
//! authentications per source IP). Each test starts a server with small limits.

use std::time::{Duration, Instant};

use crate::common::{Backend, TestServer};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use josekit::jws::JwsSigner;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Runs `$body(&server)` against both backends with extra environment `$env`.
macro_rules! both_backends_with {
    ($name:ident, $body:ident, $env:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let s =
                    $crate::common::TestServer::start_with($crate::common::Backend::Sqlite, $env)
                        .await;
                super::$body(&s).await;
                s.stop().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if $crate::common::postgres_missing() {
                    return;
                }
                let s =
                    $crate::common::TestServer::start_with($crate::common::Backend::Postgres, $env)
                        .await;
                super::$body(&s).await;
                s.stop().await;
            }
        }
    };
}

/// A minimal JWS client (ES256), enough to see status codes and headers.
struct Raw {
    http: reqwest::Client,
    base: String,
    send_base: String,
    signer: josekit::jws::alg::ecdsa::EcdsaJwsSigner,
    jwk: Value,
    kid: Option<String>,
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("urn:ietf:params:acme:error:")
    }
    fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }
    fn retry_after(&self) -> u64 {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    /// 429 rateLimited with a Retry-After in `range` seconds, naming `limit`.
    fn assert_rate_limited(&self, limit: &str, range: std::ops::RangeInclusive<u64>) {
        assert_eq!(self.status, StatusCode::TOO_MANY_REQUESTS, "{}", self.body);
        assert_eq!(self.problem(), "rateLimited", "{}", self.body);
        assert_eq!(self.body["status"], 429);
        assert!(self.detail().contains(limit), "{}", self.detail());
        assert!(
            range.contains(&self.retry_after()),
            "Retry-After {} not in {range:?}",
            self.retry_after()
        );
        assert!(
            self.detail()
                .contains(&format!("retry in {} s", self.retry_after())),
            "the detail says when: {}",
            self.detail()
        );
    }
}

impl Raw {
    fn new(s: &TestServer, ca: &str) -> Raw {
        let kp = josekit::jws::ES256.generate_key_pair().unwrap();
        let signer = josekit::jws::ES256
            .signer_from_jwk(&kp.to_jwk_key_pair())
            .unwrap();
        let jwk = serde_json::to_value(kp.to_jwk_public_key().as_ref()).unwrap();
        Raw {
            http: s.client.clone(),
            base: format!("{}/acme/{ca}", s.app().config.public_url()),
            send_base: format!("{}/acme/{ca}", s.base),
            signer,
            jwk,
            kid: None,
        }
    }
    fn url(&self, p: &str) -> String {
        format!("{}/{p}", self.base)
    }
    async fn post(&self, url: &str, payload: Option<Value>) -> Reply {
        let r = self
            .http
            .head(format!("{}/new-nonce", self.send_base))
            .send()
            .await
            .unwrap();
        let nonce = r.headers()["replay-nonce"].to_str().unwrap().to_string();
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match &self.kid {
            Some(k) => protected["kid"] = json!(k),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected_b64 = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload_b64 = payload
            .map(|p| URL_SAFE_NO_PAD.encode(p.to_string()))
            .unwrap_or_default();
        let sig = self
            .signer
            .sign(format!("{protected_b64}.{payload_b64}").as_bytes())
            .unwrap();
        let body = json!({"protected": protected_b64, "payload": payload_b64, "signature": URL_SAFE_NO_PAD.encode(sig)});
        let r = self
            .http
            .post(url.replacen(&self.base, &self.send_base, 1))
            .header("content-type", "application/jose+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        Reply {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.json().await.unwrap_or(Value::Null),
        }
    }
    async fn register(&mut self, payload: Value) -> Reply {
        let r = self.post(&self.url("new-account"), Some(payload)).await;
        if r.status == StatusCode::CREATED || r.status == StatusCode::OK {
            self.kid = Some(r.headers["location"].to_str().unwrap().to_string());
        }
        r
    }
    async fn new_order(&self, ids: Value) -> Reply {
        self.post(&self.url("new-order"), Some(json!({ "identifiers": ids })))
            .await
    }
}

fn tos() -> Value {
    json!({"termsOfServiceAgreed": true})
}

async fn acme_new_accounts_per_ip(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let mut first = Raw::new(s, &inter);
    assert_eq!(first.register(tos()).await.status, StatusCode::CREATED);
    let mut second = Raw::new(s, &inter);
    assert_eq!(second.register(tos()).await.status, StatusCode::CREATED);
    // The third account from 127.0.0.1 within the hour: 2 per hour = one every 30 min.
    let r = Raw::new(s, &inter).register(tos()).await;
    r.assert_rate_limited("acme_new_accounts_per_ip_per_hour", 1790..=1800);
    assert!(r.detail().contains("127.0.0.1") && r.detail().contains("at most 2 per hour"));
    // Looking up an existing account is not a new account.
    first.kid = None;
    assert_eq!(first.register(tos()).await.status, StatusCode::OK);

    // Per-CA override (stored in the database): this CA allows 0 = no limit.
    let path = format!("/cas/{inter}/rate-limits");
    let (st, v) = s.get(&path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["effective"]["acme_new_accounts_per_ip_per_hour"], 2);
    assert_eq!(v["overrides"], json!({}));
    let (st, v) = s
        .call(
            Method::PUT,
            &path,
            Some(json!({"acme_new_accounts_per_ip_per_hour": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["overrides"]["acme_new_accounts_per_ip_per_hour"], 0);
    assert_eq!(v["effective"]["acme_new_accounts_per_ip_per_hour"], 0);
    for _ in 0..3 {
        assert_eq!(
            Raw::new(s, &inter).register(tos()).await.status,
            StatusCode::CREATED
        );
    }
    // null returns to the configured value; unknown keys and negative values are refused.
    let (st, v) = s
        .call(
            Method::PUT,
            &path,
            Some(json!({"acme_new_accounts_per_ip_per_hour": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["effective"]["acme_new_accounts_per_ip_per_hour"], 2);
    Raw::new(s, &inter)
        .register(tos())
        .await
        .assert_rate_limited("acme_new_accounts_per_ip_per_hour", 1..=1800);
    let (st, _) = s
        .call(Method::PUT, &path, Some(json!({"acme_orders": 1})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s
        .call(
            Method::PUT,
            &path,
            Some(json!({"est_failed_logins_per_user": -1})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}
both_backends_with!(
    new_accounts_per_ip,
    acme_new_accounts_per_ip,
    &[("VELLUM_RATE_LIMITS_ACME_NEW_ACCOUNTS_PER_IP_PER_HOUR", "2")]
);

async fn acme_orders_per_account(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let mut a = Raw::new(s, &inter);
    a.register(tos()).await;
    let ids = json!([{"type": "dns", "value": "orders.example.com"}]);
    for _ in 0..3 {
        let r = a.new_order(ids.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let r = a.new_order(ids.clone()).await;
    r.assert_rate_limited("acme_orders_per_account_per_hour", 1190..=1200);
    assert!(r.detail().contains("at most 3 per hour"), "{}", r.detail());
    // Another account is not affected.
    let mut b = Raw::new(s, &inter);
    b.register(tos()).await;
    assert_eq!(b.new_order(ids).await.status, StatusCode::CREATED);
}
both_backends_with!(
    orders_per_account,
    acme_orders_per_account,
    &[("VELLUM_RATE_LIMITS_ACME_ORDERS_PER_ACCOUNT_PER_HOUR", "3")]
);

/// A port nothing listens on: http-01 validation there fails with "connection refused".
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Orders `ip`, starts its http-01 challenge and waits until the authorization is
/// decided; returns its status.
async fn order_and_validate(a: &Raw, ip: &str) -> String {
    let r = a.new_order(json!([{"type": "ip", "value": ip}])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let authz_url = r.body["authorizations"][0].as_str().unwrap().to_string();
    let authz = a.post(&authz_url, None).await.body;
    let ch = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a.post(&ch, Some(json!({}))).await.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = a.post(&authz_url, None).await.body["status"]
            .as_str()
            .unwrap()
            .to_string();
        if st != "pending" || Instant::now() > deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn acme_failed_validations(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let mut a = Raw::new(s, &inter);
    a.register(tos()).await;
    for _ in 0..2 {
        assert_eq!(order_and_validate(&a, "127.0.0.1").await, "invalid");
    }
    // Two failed validations of 127.0.0.1 within the hour: orders for it are refused…
    let r = a
        .new_order(
            json!([{"type": "ip", "value": "127.0.0.1"}, {"type": "ip", "value": "127.0.0.2"}]),
        )
        .await;
    r.assert_rate_limited("acme_failed_validations_per_name_per_hour", 1700..=1800);
    assert!(r.detail().contains("127.0.0.1"), "{}", r.detail());
    let sub = r.body["subproblems"].as_array().expect("subproblems");
    assert_eq!(sub.len(), 1, "only the failing name: {sub:?}");
    assert_eq!(sub[0]["identifier"]["value"], "127.0.0.1");
    assert_eq!(
        sub[0]["type"], "urn:ietf:params:acme:error:rateLimited",
        "{sub:?}"
    );
    // …other names are not, and other accounts may still order it.
    let r = a
        .new_order(json!([{"type": "ip", "value": "127.0.0.2"}]))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut b = Raw::new(s, &inter);
    b.register(tos()).await;
    let r = b
        .new_order(json!([{"type": "ip", "value": "127.0.0.1"}]))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_validations_per_account_and_name() {
    let port = closed_port().to_string();
    let s = TestServer::start_with(
        Backend::Sqlite,
        &[
            (
                "VELLUM_RATE_LIMITS_ACME_FAILED_VALIDATIONS_PER_NAME_PER_HOUR",
                "2",
            ),
            ("VELLUM_VA_HTTP_PORT", &port),
        ],
    )
    .await;
    acme_failed_validations(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_validations_per_account_and_name_postgres() {
    if crate::common::postgres_missing() {
        return;
    }
    let port = closed_port().to_string();
    let s = TestServer::start_with(
        Backend::Postgres,
        &[
            (
                "VELLUM_RATE_LIMITS_ACME_FAILED_VALIDATIONS_PER_NAME_PER_HOUR",
                "2",
            ),
            ("VELLUM_VA_HTTP_PORT", &port),
        ],
    )
    .await;
    acme_failed_validations(&s).await;
    s.stop().await;
}

async fn acme_contacts(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let five: Vec<String> = (0..5)
        .map(|i| format!("mailto:ops{i}@example.com"))
        .collect();
    let r = Raw::new(s, &inter)
        .register(json!({"termsOfServiceAgreed": true, "contact": five}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.problem(), "invalidContact");
    assert!(r.detail().contains("at most 4"), "{}", r.detail());

    // 700 KB contacts, as in the issue: refused at once, without echoing them.
    let huge = format!("mailto:{}@example.com", "a".repeat(700 * 1024));
    let started = Instant::now();
    for _ in 0..10 {
        let r = Raw::new(s, &inter)
            .register(json!({"termsOfServiceAgreed": true, "contact": [huge.clone()]}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.problem(), "invalidContact");
        assert!(r.detail().contains("at most 261"), "{}", r.detail());
        assert!(r.body.to_string().len() < 1000, "the answer is short");
    }
    eprintln!("10 oversized newAccount requests: {:?}", started.elapsed());
    let long_local = format!("mailto:{}@example.com", "a".repeat(65));
    let r = Raw::new(s, &inter)
        .register(json!({"termsOfServiceAgreed": true, "contact": [long_local]}))
        .await;
    assert_eq!(r.problem(), "invalidContact", "{}", r.body);

    // Four contacts are fine; an update to five is refused the same way.
    let mut a = Raw::new(s, &inter);
    let r = a
        .register(json!({"termsOfServiceAgreed": true, "contact": &five[..4]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let acct = a.kid.clone().unwrap();
    let r = a.post(&acct, Some(json!({"contact": five}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.problem(), "invalidContact");
    let r = a.post(&acct, Some(json!({"contact": [huge]}))).await;
    assert_eq!(r.problem(), "invalidContact", "{}", r.body);
    let r = a.post(&acct, None).await;
    assert_eq!(r.body["contact"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contact_lists_are_bounded() {
    let s = TestServer::start(Backend::Sqlite).await;
    acme_contacts(&s).await;
    s.stop().await;
}

const PASSWORD: &str = "device-password-1";

fn cn_csr_b64(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    STANDARD.encode(p.serialize_request(&key).unwrap().der())
}

struct EstReply {
    status: StatusCode,
    retry_after: u64,
    body: String,
    took: Duration,
}

async fn est_enroll(s: &TestServer, user: &str, password: &str) -> EstReply {
    let started = Instant::now();
    let r = s
        .client
        .post(format!("{}/.well-known/est/simpleenroll", s.base))
        .basic_auth(user, Some(password))
        .header("content-type", "application/pkcs10")
        .body(cn_csr_b64("device.example.com"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = r.text().await.unwrap();
    EstReply {
        status,
        retry_after,
        body,
        took: started.elapsed(),
    }
}

async fn add_est_client(s: &TestServer, user: &str) {
    let inter = s.app().defaults.intermediate_id.clone();
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/est/clients"),
            json!({"username": user, "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn est_user_backoff(s: &TestServer) {
    add_est_client(s, "dev").await;
    add_est_client(s, "other").await;
    // "other" logs in: its password is remembered for a minute.
    assert_eq!(
        est_enroll(s, "other", PASSWORD).await.status,
        StatusCode::OK
    );
    for user in ["dev", "other"] {
        for _ in 0..2 {
            let r = est_enroll(s, user, "wrong").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        }
        // The third failure locks the user name for 1 s (base), and says so.
        let r = est_enroll(s, user, "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(r.body.contains("refused for 1 s"), "{}", r.body);
    }
    // While locked: 429 + Retry-After, even with the right password, and no argon2 runs.
    let r = est_enroll(s, "dev", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.retry_after, 1);
    assert!(
        r.body.contains("too many failed logins for user \"dev\""),
        "{}",
        r.body
    );
    let r = est_enroll(s, "dev", "wrong").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.took < Duration::from_millis(500), "{:?}", r.took);
    // A device whose password was verified in the last minute is not locked out.
    assert_eq!(
        est_enroll(s, "other", PASSWORD).await.status,
        StatusCode::OK
    );
    // After the back-off window the right password works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = est_enroll(s, "dev", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The next failure doubles the lock (successes do not reset the count).
    let r = est_enroll(s, "dev", "wrong").await;
    assert!(r.body.contains("refused for 2 s"), "{}", r.body);
    let r = est_enroll(s, "dev", "another guess").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.retry_after, 2);
    // dev's own password was verified a moment ago: dev is not locked out.
    assert_eq!(est_enroll(s, "dev", PASSWORD).await.status, StatusCode::OK);
}
both_backends_with!(
    est_failed_logins_per_user,
    est_user_backoff,
    &[
        ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_USER", "2"),
        ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_IP", "1000"),
        ("VELLUM_RATE_LIMITS_BACKOFF_BASE_SECS", "1"),
        ("VELLUM_RATE_LIMITS_BACKOFF_MAX_SECS", "8"),
    ]
);

async fn est_ip_backoff(s: &TestServer) {
    add_est_client(s, "dev").await;
    // Guessing with ever new user names (unknown ones too) is counted per source IP.
    for i in 0..3 {
        let r = est_enroll(s, &format!("guess{i}"), "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    let r = est_enroll(s, "guess3", "wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = est_enroll(s, "dev", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("from 127.0.0.1"), "{}", r.body);
    assert!((1..=2).contains(&r.retry_after), "{}", r.retry_after);
    // The CA's own override takes precedence over the configuration.
    let inter = s.app().defaults.intermediate_id.clone();
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/cas/{inter}/rate-limits"),
            Some(json!({"est_failed_logins_per_ip": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(est_enroll(s, "dev", PASSWORD).await.status, StatusCode::OK);
    for i in 0..6 {
        let r = est_enroll(s, &format!("again{i}"), "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
}
both_backends_with!(
    est_failed_logins_per_ip,
    est_ip_backoff,
    &[
        ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_USER", "100"),
        ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_IP", "3"),
        ("VELLUM_RATE_LIMITS_BACKOFF_BASE_SECS", "1"),
        ("VELLUM_RATE_LIMITS_BACKOFF_MAX_SECS", "2"),
    ]
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_bad_tokens_per_ip() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("VELLUM_RATE_LIMITS_ADMIN_FAILED_LOGINS_PER_IP", "3"),
            ("VELLUM_RATE_LIMITS_BACKOFF_BASE_SECS", "1"),
        ],
    )
    .await;
    for i in 0..4 {
        let (st, v) = s
            .call_as(&format!("vlm_guess{i}"), Method::GET, "/cas", None)
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    // Locked: every token from this IP is refused before any lookup, the right one too.
    let r = s
        .client
        .get(format!("{}/admin/v1/cas", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 429);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("too many failed API token authentications from 127.0.0.1"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, v) = s.get("/cas").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}
