//! ACME helpers shared by test files: a loopback http-01 responder, accounts, and one
//! complete order for 127.0.0.1 through instant-acme.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use instant_acme::{
    Account, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use josekit::jws::JwsSigner;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{Backend, TestServer};

/// A loopback http-01 responder: token → key authorization, answering after an optional
/// delay (milliseconds).
#[derive(Clone, Default)]
pub struct Responder(
    Arc<Mutex<HashMap<String, String>>>,
    Arc<std::sync::atomic::AtomicU64>,
);

impl Responder {
    pub async fn start() -> (Responder, u16) {
        let r = Responder::default();
        let (map, delay) = (r.0.clone(), r.1.clone());
        let app = axum::Router::new().route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(move |axum::extract::Path(t): axum::extract::Path<String>| {
                let (map, delay) = (map.clone(), delay.clone());
                async move {
                    let ms = delay.load(std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    match map.lock().unwrap().get(&t) {
                        Some(v) => (StatusCode::OK, v.clone()),
                        None => (StatusCode::NOT_FOUND, "no such token".to_string()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        (r, port)
    }
    pub fn delay_ms(&self, ms: u64) {
        self.1.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn put(&self, token: &str, value: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(token.to_string(), value.to_string());
    }
}

pub async fn server_with_responder(backend: Backend) -> (TestServer, Responder) {
    let (responder, port) = Responder::start().await;
    let port = port.to_string();
    let s = TestServer::start_with(backend, &[("VELLUM_VA_HTTP_PORT", &port)]).await;
    (s, responder)
}

pub async fn new_account(s: &TestServer, dir: &str) -> Account {
    let (account, _) = Account::builder_with_root(s.data_dir().join("root.pem"))
        .unwrap()
        .create(
            &NewAccount {
                contact: &["mailto:ops@example.com"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            dir.to_string(),
            None,
        )
        .await
        .expect("account created");
    account
}

/// A certificate for 127.0.0.1 through the whole ACME flow (http-01) under `profile`
/// (`None`: the default); returns the key and the leaf (DER).
pub async fn certificate_for_localhost(
    account: &Account,
    responder: &Responder,
    profile: Option<&str>,
) -> (rcgen::KeyPair, Vec<u8>) {
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut new = NewOrder::new(&ids);
    if let Some(p) = profile {
        new = new.profile(p);
    }
    let mut order = account.new_order(&new).await.expect("order created");
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.expect("authorization");
        let mut ch = a.challenge(ChallengeType::Http01).expect("http-01 offered");
        responder.put(&ch.token, ch.key_authorization().as_str());
        ch.set_ready().await.expect("challenge ready");
    }
    let status = order
        .poll_ready(&RetryPolicy::default())
        .await
        .expect("order ready");
    assert_eq!(status, OrderStatus::Ready);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    let csr = p.serialize_request(&key).unwrap().der().to_vec();
    order.finalize_csr(&csr).await.expect("finalized");
    let pem = order
        .poll_certificate(&RetryPolicy::default())
        .await
        .expect("certificate");
    let leaf = ::pem::parse_many(pem.as_bytes())
        .unwrap()
        .remove(0)
        .into_contents();
    (key, leaf)
}

/// A minimal JWS client for the error paths instant-acme will not produce.
pub struct Raw {
    pub http: reqwest::Client,
    /// Base of the URLs the server writes (and clients sign).
    pub base: String,
    /// Where requests are actually sent (differs only behind a "load balancer").
    pub send_base: String,
    pub signer: josekit::jws::alg::ecdsa::EcdsaJwsSigner,
    pub private: josekit::jwk::Jwk,
    pub jwk: Value,
    pub kid: Option<String>,
}

pub struct Post<'a> {
    pub url: String,
    pub payload: Option<Value>,
    pub nonce: Option<String>,
    pub signed_url: Option<&'a str>,
    pub use_jwk: bool,
    pub content_type: &'a str,
    pub tamper: bool,
    pub alg: &'a str,
    /// Sent as the payload instead of `payload` (base64url of these bytes), for payloads
    /// that are not JSON.
    pub raw_payload: Option<Vec<u8>>,
}

impl Raw {
    pub fn new(s: &TestServer, ca: &str) -> Raw {
        let kp = josekit::jws::ES256.generate_key_pair().unwrap();
        let private = kp.to_jwk_key_pair();
        let signer = josekit::jws::ES256.signer_from_jwk(&private).unwrap();
        let jwk = serde_json::to_value(kp.to_jwk_public_key().as_ref()).unwrap();
        let base = format!("{}/acme/{ca}", s.app().config.public_url());
        let send_base = format!("{}/acme/{ca}", s.base);
        Raw {
            http: s.client.clone(),
            base,
            send_base,
            signer,
            private,
            jwk,
            kid: None,
        }
    }
    /// The same account key, talking to another server (replica).
    pub fn same_key_on(&self, s: &TestServer, ca: &str) -> Raw {
        let mut r = Raw::new(s, ca);
        r.signer = josekit::jws::ES256.signer_from_jwk(&self.private).unwrap();
        r.private = self.private.clone();
        r.jwk = self.jwk.clone();
        r.kid = self.kid.clone();
        r
    }
    pub fn url(&self, p: &str) -> String {
        format!("{}/{p}", self.base)
    }
    pub fn wire(&self, url: &str) -> String {
        url.replacen(&self.base, &self.send_base, 1)
    }
    pub async fn nonce(&self) -> String {
        let r = self
            .http
            .head(self.wire(&self.url("new-nonce")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.headers()["replay-nonce"].to_str().unwrap().to_string()
    }
    pub fn post(&self, url: String) -> Post<'static> {
        Post {
            url,
            payload: Some(json!({})),
            nonce: None,
            signed_url: None,
            use_jwk: self.kid.is_none(),
            content_type: "application/jose+json",
            tamper: false,
            alg: "ES256",
            raw_payload: None,
        }
    }
    pub async fn send(&self, p: Post<'_>) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let nonce = match p.nonce {
            Some(n) => n,
            None => self.nonce().await,
        };
        let mut protected =
            json!({"alg": p.alg, "nonce": nonce, "url": p.signed_url.unwrap_or(&p.url)});
        if p.use_jwk {
            protected["jwk"] = self.jwk.clone();
        } else {
            protected["kid"] = json!(self.kid.clone().unwrap_or_default());
        }
        let protected_b64 = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload_b64 = match (&p.raw_payload, &p.payload) {
            (Some(raw), _) => URL_SAFE_NO_PAD.encode(raw),
            (None, Some(v)) => URL_SAFE_NO_PAD.encode(v.to_string()),
            (None, None) => String::new(),
        };
        let mut sig = self
            .signer
            .sign(format!("{protected_b64}.{payload_b64}").as_bytes())
            .unwrap();
        if p.tamper {
            sig[5] ^= 0xff;
        }
        let body = json!({"protected": protected_b64, "payload": payload_b64, "signature": URL_SAFE_NO_PAD.encode(sig)});
        let r = self
            .http
            .post(self.wire(&p.url))
            .header("content-type", p.content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let st = r.status();
        let h = r.headers().clone();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        (st, h, v)
    }
    pub async fn register(&mut self) {
        let (st, h, v) = self
            .send(Post {
                payload: Some(json!({"termsOfServiceAgreed": true})),
                ..self.post(self.url("new-account"))
            })
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        self.kid = Some(h["location"].to_str().unwrap().to_string());
    }
}

pub fn problem_type(v: &Value) -> &str {
    v["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:ietf:params:acme:error:")
}
