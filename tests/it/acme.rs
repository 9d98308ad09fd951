//! ACME (RFC 8555) end to end: instant-acme drives the whole flow against the real server,
//! and a hand-rolled JWS client walks every error path.

use std::net::{IpAddr, Ipv4Addr};

use crate::common::acme::{new_account, problem_type, server_with_responder, Post, Raw, Responder};
use crate::common::{Backend, TestServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use instant_acme::{
    Account, ChallengeType, ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};

use reqwest::StatusCode;
use serde_json::{json, Value};

pub(crate) fn dir_url(s: &TestServer, ca: &str) -> String {
    format!("{}/acme/{ca}/directory", s.base)
}

pub(crate) fn csr_for(names: &[&str]) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    (key, der)
}

/// Orders a certificate for 127.0.0.1 with http-01; returns the PEM chain.
pub(crate) async fn order_ip(
    account: &Account,
    responder: &Responder,
) -> Result<String, instant_acme::Error> {
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a?;
        let mut ch = a.challenge(ChallengeType::Http01).expect("http-01 offered");
        responder.put(&ch.token, ch.key_authorization().as_str());
        ch.set_ready().await?;
    }
    let status = order.poll_ready(&RetryPolicy::default()).await?;
    assert_eq!(status, OrderStatus::Ready);
    let (_key, csr) = csr_for(&["127.0.0.1"]);
    order.finalize_csr(&csr).await?;
    order.poll_certificate(&RetryPolicy::default()).await
}

async fn full_flow(backend: Backend) {
    let (s, responder) = server_with_responder(backend).await;
    let inter = s.app().defaults.intermediate_id.clone();
    // The default directory and the per-CA directory are the same document.
    let d1: Value = s
        .client
        .get(format!("{}/acme/directory", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d2: Value = s
        .client
        .get(dir_url(&s, &inter))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d1, d2);
    assert!(d1["meta"]["profiles"]["tls-server"].is_string());
    assert!(d1["renewalInfo"].is_string());

    let account = new_account(&s, &dir_url(&s, &inter)).await;
    let pem = order_ip(&account, &responder)
        .await
        .expect("certificate issued");
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + intermediate"
    );

    // openssl verifies it against root + intermediate.
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, &pem).unwrap();
    let root = s.data_dir().join("root.pem");
    let (ok, out) = crate::common::openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        chain.to_str().unwrap(),
        chain.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");

    // In the inventory: source acme, the account as requester; quota spent.
    let (_, list) = s.get("/certificates?source=acme").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let (st, e) = s.get("/certificates?source=ACME").await;
    assert_eq!(
        (st.as_u16(), e["field"].as_str()),
        (422, Some("source")),
        "{e}"
    );
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("private_ca, acme, est or system"),
        "{e}"
    );
    assert!(items[0]["requester"].as_str().unwrap().len() > 10);
    assert_eq!(
        items[0]["sans"][0],
        json!({"type": "ip", "value": "127.0.0.1"})
    );
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(iv["issued_count"], 2, "server TLS + ACME");

    // Authorization reuse: a second order for the same name is ready at once.
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut again = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    assert_eq!(again.state().status, OrderStatus::Ready);

    // ARI: a window inside the validity.
    let leaf = ::pem::parse(&pem).unwrap().into_contents();
    let cert_der = rustls_pki_types::CertificateDer::from(leaf.clone());
    let (_, x) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let aki = match x
        .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .unwrap()
        .unwrap()
        .parsed_extension()
    {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
            a.key_identifier.as_ref().unwrap().0.to_vec()
        }
        _ => panic!("AKI"),
    };
    let cert_id = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(aki),
        URL_SAFE_NO_PAD.encode(x.raw_serial())
    );
    let r = s
        .client
        .get(format!("{}/{cert_id}", d1["renewalInfo"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("retry-after"));
    let info: Value = r.json().await.unwrap();
    assert!(
        info["suggestedWindow"]["start"].as_str().unwrap()
            < info["suggestedWindow"]["end"].as_str().unwrap()
    );

    // keyChange: the account continues with a new key; contacts can be updated.
    let mut account = account;
    let _new_credentials = account.update_key().await.expect("keyChange");
    account
        .update_contacts(&["mailto:new@example.com"])
        .await
        .expect("contact update");
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let after = account
        .new_order(&NewOrder::new(&ids))
        .await
        .expect("the new key signs");
    let _ = after;

    // Revocation by the ordering account reaches the CRL.
    account
        .revoke(&instant_acme::RevocationRequest {
            certificate: &cert_der,
            reason: Some(instant_acme::RevocationReason::KeyCompromise),
        })
        .await
        .expect("revoked");
    let crl = s
        .client
        .get(format!("{}/crl/{inter}.crl", s.http_base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    assert!(crl
        .iter_revoked_certificates()
        .any(|r| r.raw_serial() == x.raw_serial()));
    let err = account
        .revoke(&instant_acme::RevocationRequest {
            certificate: &cert_der,
            reason: None,
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("alreadyRevoked") || format!("{err:?}").contains("alreadyRevoked"),
        "{err:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_flow_sqlite() {
    full_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_flow_postgres() {
    if crate::common::postgres_missing() {
        return;
    }
    full_flow(Backend::Postgres).await;
}

async fn error_paths(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let mut raw = Raw::new(s, &inter);
    // newNonce: GET → 204 no-store.
    let r = s
        .client
        .get(raw.wire(&raw.url("new-nonce")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().contains_key("replay-nonce"));
    assert!(r.headers()["link"]
        .to_str()
        .unwrap()
        .contains("rel=\"index\""));

    // onlyReturnExisting for an unknown key.
    let (st, _, v) = raw
        .send(Post {
            payload: Some(json!({"onlyReturnExisting": true})),
            ..raw.post(raw.url("new-account"))
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "accountDoesNotExist"),
        "{v}"
    );
    // Bad contact.
    let (st, _, v) = raw
        .send(Post {
            payload: Some(json!({"contact": ["tel:+4912345"]})),
            ..raw.post(raw.url("new-account"))
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "unsupportedContact"),
        "{v}"
    );
    raw.register().await;
    let kid = raw.kid.clone().unwrap();
    // The same key again: 200 with the same Location.
    let (st, h, _) = raw
        .send(Post {
            use_jwk: true,
            payload: Some(json!({})),
            ..raw.post(raw.url("new-account"))
        })
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["location"].to_str().unwrap(), kid);

    // Replayed nonce → badNonce, and the error carries a fresh nonce.
    let n = raw.nonce().await;
    let (st, _, _) = raw
        .send(Post {
            nonce: Some(n.clone()),
            payload: None,
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, h, v) = raw
        .send(Post {
            nonce: Some(n),
            payload: None,
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "badNonce"),
        "{v}"
    );
    assert!(h.contains_key("replay-nonce"));
    assert_eq!(h["content-type"], "application/problem+json");
    let (_, _, v) = raw
        .send(Post {
            nonce: Some("garbage".into()),
            payload: None,
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(problem_type(&v), "badNonce");
    // Wrong url.
    let (st, _, v) = raw
        .send(Post {
            signed_url: Some("https://elsewhere.example/acme"),
            payload: None,
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::FORBIDDEN, "unauthorized"),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("does not match"));
    // Bad signature.
    let (st, _, v) = raw
        .send(Post {
            tamper: true,
            payload: None,
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "malformed"),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("signature"));
    // Algorithms: none and HS256 refused, listing the accepted ones.
    for alg in ["none", "HS256"] {
        let (st, _, v) = raw
            .send(Post {
                alg,
                payload: None,
                ..raw.post(kid.clone())
            })
            .await;
        assert_eq!(
            (st, problem_type(&v)),
            (StatusCode::BAD_REQUEST, "badSignatureAlgorithm"),
            "{v}"
        );
        assert!(v["algorithms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "ES256"));
    }
    // Wrong content type.
    let (st, _, v) = raw
        .send(Post {
            content_type: "application/json",
            payload: None,
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    // Unknown kid.
    let mut stranger = Raw::new(s, &inter);
    stranger.kid = Some(raw.url("acct/nonexistent"));
    let (st, _, v) = stranger.send(stranger.post(raw.url("new-order"))).await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "accountDoesNotExist"),
        "{v}"
    );
    // jwk where a kid is required.
    let (st, _, v) = raw
        .send(Post {
            use_jwk: true,
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "malformed"),
        "{v}"
    );

    // Disallowed names → rejectedIdentifier with a subproblem per identifier.
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/acme"),
            Some(json!({"allowed_domains": ["corp.example"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ids = json!({"identifiers": [{"type": "dns", "value": "www.corp.example"}, {"type": "dns", "value": "evil.example"}, {"type": "dns", "value": "bad_name"}]});
    let (st, _, v) = raw
        .send(Post {
            payload: Some(ids),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "rejectedIdentifier"),
        "{v}"
    );
    let subs = v["subproblems"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{v}");
    assert!(subs
        .iter()
        .any(|p| p["identifier"]["value"] == "evil.example"));
    let ids = json!({"identifiers": [{"type": "dns", "value": "10.0.0.1"}]});
    let (_, _, v) = raw
        .send(Post {
            payload: Some(ids),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(
        problem_type(&v),
        "rejectedIdentifier",
        "an address is not a DNS name: {v}"
    );
    assert!(
        v["subproblems"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"ip\" identifier"),
        "{v}"
    );
    let ids = json!({"identifiers": [{"type": "email", "value": "a@b.example"}]});
    let (_, _, v) = raw
        .send(Post {
            payload: Some(ids),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(problem_type(&v), "unsupportedIdentifier");
    let ids = json!({"identifiers": [{"type": "dns", "value": "a.corp.example"}], "profile": "code-signing"});
    let (_, _, v) = raw
        .send(Post {
            payload: Some(ids),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(problem_type(&v), "invalidProfile");

    // A pending order cannot be finalized; Location and Retry-After are set.
    let ids = json!({"identifiers": [{"type": "dns", "value": "a.corp.example"}]});
    let (st, h, order) = raw
        .send(Post {
            payload: Some(ids),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(st, StatusCode::CREATED, "{order}");
    assert!(h.contains_key("location"));
    assert_eq!(order["status"], "pending");
    let (_, csr) = csr_for(&["a.corp.example"]);
    let (st, _, v) = raw
        .send(Post {
            payload: Some(json!({"csr": URL_SAFE_NO_PAD.encode(&csr)})),
            ..raw.post(order["finalize"].as_str().unwrap().to_string())
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::FORBIDDEN, "orderNotReady"),
        "{v}"
    );
    // Authorization deactivation invalidates the order.
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let (st, _, a) = raw
        .send(Post {
            payload: Some(json!({"status": "deactivated"})),
            ..raw.post(authz_url)
        })
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "deactivated");
    let order_url = h["location"].to_str().unwrap().to_string();
    let (_, _, o) = raw
        .send(Post {
            payload: None,
            ..raw.post(order_url)
        })
        .await;
    assert_eq!(o["status"], "invalid");

    // Orders list.
    let (st, _, list) = raw
        .send(Post {
            payload: None,
            ..raw.post(format!("{kid}/orders"))
        })
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);

    // Deactivated account: refused from then on.
    let (st, _, v) = raw
        .send(Post {
            payload: Some(json!({"status": "deactivated"})),
            ..raw.post(kid.clone())
        })
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "deactivated");
    let (st, _, v) = raw.send(raw.post(raw.url("new-order"))).await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::FORBIDDEN, "unauthorized"),
        "{v}"
    );
}
both_backends!(
    every_acme_error_path_answers_with_its_problem_type,
    error_paths
);

async fn csr_and_quota(backend: Backend) {
    let (s, responder) = server_with_responder(backend).await;
    let (root, inter) = s.enabled_pair("ACME Quota", 5, 1).await;
    let account = new_account(&s, &dir_url(&s, &inter)).await;
    // First order uses the single unit of quota.
    order_ip(&account, &responder)
        .await
        .expect("first certificate");
    // Second order: authorization reused, ready at once; a CSR naming other names is badCSR.
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    assert_eq!(order.state().status, OrderStatus::Ready);
    let (_, wrong) = csr_for(&["127.0.0.1", "10.9.9.9"]);
    let err = order.finalize_csr(&wrong).await.unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("badCSR") && text.contains("10.9.9.9"),
        "{text}"
    );
    // A CN hiding a NUL (a C verifier would read "127.0.0.1"): badCSR naming the character.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::Utf8String("127.0.0.1\0.evil.example".into()),
    );
    let nul = p.serialize_request(&key).unwrap().der().to_vec();
    let err = order.finalize_csr(&nul).await.unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("badCSR") && text.contains("U+0000 (NUL)"),
        "{text}"
    );
    // Quota exhausted: 403 naming the CA, order stays ready; after assigning, it works.
    let (_, csr) = csr_for(&["127.0.0.1"]);
    let err = order.finalize_csr(&csr).await.unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("unauthorized") && text.contains(&inter) && text.contains("assign quota"),
        "{text}"
    );
    let state = order.refresh().await.unwrap();
    assert_eq!(state.status, OrderStatus::Ready);
    let (st, _) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    order
        .finalize_csr(&csr)
        .await
        .expect("finalized after quota was assigned");
    let pem = order
        .poll_certificate(&RetryPolicy::default())
        .await
        .unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));

    // Two concurrent finalizes of one ready order issue one certificate.
    let mut o2 = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    let url = o2.url().to_string();
    let mut o3 = account.order(url).await.unwrap();
    let (_, c2) = csr_for(&["127.0.0.1"]);
    let (_, c3) = csr_for(&["127.0.0.1"]);
    let (r2, r3) = tokio::join!(o2.finalize_csr(&c2), o3.finalize_csr(&c3));
    assert!(
        r2.is_ok() != r3.is_ok(),
        "exactly one finalize wins: {r2:?} {r3:?}"
    );
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(iv["issued_count"], 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finalize_checks_csr_quota_and_races_sqlite() {
    csr_and_quota(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finalize_checks_csr_quota_and_races_postgres() {
    if crate::common::pg_url().is_none() {
        return;
    }
    csr_and_quota(Backend::Postgres).await;
}

/// Failed validation explains itself; the order becomes invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_validation_explains_why() {
    let (s, responder) = server_with_responder(Backend::Sqlite).await;
    let inter = s.app().defaults.intermediate_id.clone();
    let account = new_account(&s, &dir_url(&s, &inter)).await;
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    {
        let mut authzs = order.authorizations();
        let mut a = authzs.next().await.unwrap().unwrap();
        let mut ch = a.challenge(ChallengeType::Http01).unwrap();
        responder.put(&ch.token, "not-the-key-authorization");
        ch.set_ready().await.unwrap();
    }
    let status = order.poll_ready(&RetryPolicy::default()).await;
    let text = format!("{status:?}");
    // The order is invalid and its problem says, in words, what the validator saw.
    assert!(
        text.contains("not-the-key-authorization")
            && text.contains("expected the key authorization"),
        "{text}"
    );
    let state = order.refresh().await.unwrap();
    assert_eq!(state.status, OrderStatus::Invalid);
    s.stop().await;
}

/// EAB: required by the directory, and bound once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_account_binding() {
    let s = TestServer::start(Backend::Sqlite).await;
    let inter = s.app().defaults.intermediate_id.clone();
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/acme"),
            Some(json!({"require_eab": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let root = s.data_dir().join("root.pem");
    let dir = dir_url(&s, &inter);
    let na = NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let err = Account::builder_with_root(&root)
        .unwrap()
        .create(&na, dir.clone(), None)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:?}").contains("externalAccountRequired"),
        "{err:?}"
    );
    let (st, eab) = s.post(&format!("/cas/{inter}/acme/eab"), json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{eab}");
    let key = URL_SAFE_NO_PAD
        .decode(eab["hmac_key"].as_str().unwrap())
        .unwrap();
    let ext = ExternalAccountKey::new(eab["kid"].as_str().unwrap().to_string(), &key);
    let _created = Account::builder_with_root(&root)
        .unwrap()
        .create(&na, dir.clone(), Some(&ext))
        .await
        .expect("EAB account");
    let err = Account::builder_with_root(&root)
        .unwrap()
        .create(&na, dir.clone(), Some(&ext))
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:?}").contains("already bound"),
        "a key binds one account: {err:?}"
    );
    let wrong = ExternalAccountKey::new(
        eab["kid"].as_str().unwrap().to_string(),
        b"wrong key material 0123456789abcd",
    );
    let err = Account::builder_with_root(&root)
        .unwrap()
        .create(&na, dir, Some(&wrong))
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:?}").contains("unauthorized"), "{err:?}");
    s.stop().await;
}

/// Two replicas on one PostgreSQL database behind one public URL: a nonce from one is good
/// on the other, and an order created on one is finalized on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_nonces_and_orders() {
    if crate::common::postgres_missing() {
        return;
    }
    let (responder, port) = Responder::start().await;
    let port = port.to_string();
    let url = crate::common::fresh_pg_database().await;
    let key = "33".repeat(32);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra = [
        ("VELLUM_MASTER_KEY", key.as_str()),
        ("VELLUM_VA_HTTP_PORT", port.as_str()),
        ("VELLUM_PUBLIC_URL", "https://ca.replicas.test"),
    ];
    let a = crate::common::start_with_env(&crate::common::env_for(d1.path(), &url, &extra))
        .await
        .unwrap();
    let b = crate::common::start_with_env(&crate::common::env_for(d2.path(), &url, &extra))
        .await
        .unwrap();
    let sa = TestServer::attach(a, d1, Backend::Postgres, url.clone());
    let sb = TestServer::attach(b, d2, Backend::Postgres, url.clone());
    let inter = sa.app().defaults.intermediate_id.clone();
    let mut on_a = Raw::new(&sa, &inter);
    let mut on_b = on_a.same_key_on(&sb, &inter);
    // A nonce from A redeemed on B.
    let nonce = on_a.nonce().await;
    let (st, h, v) = on_b
        .send(Post {
            nonce: Some(nonce),
            payload: Some(json!({"termsOfServiceAgreed": true})),
            ..on_b.post(on_b.url("new-account"))
        })
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let kid = h["location"].to_str().unwrap().to_string();
    on_a.kid = Some(kid.clone());
    on_b.kid = Some(kid);
    // Order and validation on A.
    let (st, _, order) = on_a
        .send(Post {
            payload: Some(json!({"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})),
            ..on_a.post(on_a.url("new-order"))
        })
        .await;
    assert_eq!(st, StatusCode::CREATED, "{order}");
    let (_, _, authz) = on_a
        .send(Post {
            payload: None,
            ..on_a.post(order["authorizations"][0].as_str().unwrap().to_string())
        })
        .await;
    let ch = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()
        .clone();
    let thumb = vellum_server::acme::jws::thumbprint(&on_a.jwk).unwrap();
    responder.put(
        ch["token"].as_str().unwrap(),
        &format!("{}.{thumb}", ch["token"].as_str().unwrap()),
    );
    let (st, _, _) = on_a
        .send(on_a.post(ch["url"].as_str().unwrap().to_string()))
        .await;
    assert_eq!(st, StatusCode::OK);
    // Poll and finalize on B.
    let order_url = order["finalize"]
        .as_str()
        .unwrap()
        .trim_end_matches("/finalize")
        .to_string();
    let mut status = String::new();
    for _ in 0..50 {
        let (_, _, o) = on_b
            .send(Post {
                payload: None,
                ..on_b.post(order_url.clone())
            })
            .await;
        status = o["status"].as_str().unwrap_or_default().to_string();
        if status != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "ready");
    let (_, csr) = csr_for(&["127.0.0.1"]);
    let (st, _, o) = on_b
        .send(Post {
            payload: Some(json!({"csr": URL_SAFE_NO_PAD.encode(&csr)})),
            ..on_b.post(order["finalize"].as_str().unwrap().to_string())
        })
        .await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(o["status"], "valid");
    sa.stop().await;
    sb.stop().await;
}

/// Store-level fixtures: an account of the default intermediate, and a pending
/// authorization and order of it.
pub(crate) mod fixtures {
    use store::acme::{Account, Authz, Challenge, Order};
    use vellum_core::status::{
        AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, IdentifierType, OrderStatus,
    };

    /// A challenge of `kind` (its token: `tok-{id}`) in `status`.
    pub fn challenge(
        id: &str,
        authz_id: &str,
        kind: ChallengeType,
        status: ChallengeStatus,
    ) -> Challenge {
        Challenge {
            id: id.into(),
            authz_id: authz_id.into(),
            kind,
            token: format!("tok-{id}"),
            status,
            validated_at: None,
            error_json: None,
        }
    }

    pub fn account(app: &vellum_server::App, name: &str, now: i64) -> Account {
        Account {
            id: format!("acct-{name}"),
            ca_id: app.defaults.intermediate_id.clone(),
            tenant_id: app.defaults.tenant_id.clone(),
            thumbprint: format!("tp-{name}"),
            jwk_json: "{}".into(),
            status: AccountStatus::Valid,
            contact: vec![],
            tos_agreed: true,
            eab_kid: None,
            created_at: now,
        }
    }

    pub fn authz(account: &Account, id: &str, name: &str, now: i64) -> Authz {
        Authz {
            id: id.into(),
            account_id: account.id.clone(),
            id_type: IdentifierType::Dns,
            id_value: name.into(),
            wildcard: false,
            status: AuthzStatus::Pending,
            expires_at: now + 3600,
            created_at: now,
        }
    }

    pub fn order(account: &Account, id: &str, authz_ids: &[&str], now: i64) -> Order {
        Order {
            id: id.into(),
            account_id: account.id.clone(),
            ca_id: account.ca_id.clone(),
            status: OrderStatus::Pending,
            identifiers_json: "[]".into(),
            profile: vellum_core::status::AcmeProfile::TlsServer,
            not_before: None,
            not_after: None,
            expires_at: now + 3600,
            error_json: None,
            certificate_id: None,
            replaces: None,
            created_at: now,
            authz_ids_json: serde_json::to_string(authz_ids).unwrap(),
        }
    }
}

/// An order becomes ready only when ALL its authorizations are valid (the one-statement
/// transition the validator runs), and a second order sharing an authorization moves too.
async fn order_ready_needs_every_authorization(s: &TestServer) {
    use store::acme::{self as sa, Order};
    use vellum_core::status::{AuthzStatus, OrderStatus};
    let app = s.app();
    let now = vellum_core::time::now();
    let account = fixtures::account(app, "ready", now);
    let authz = |id: &str, name: &str| fixtures::authz(&account, id, name, now);
    let order = |id: &str, authz_ids: &[&str]| fixtures::order(&account, id, authz_ids, now);
    let mut tx = app.store.begin().await.unwrap();
    sa::insert_account(&mut tx, &account).await.unwrap();
    sa::insert_authzs(
        &mut tx,
        &[&authz("az-a", "a.example"), &authz("az-b", "b.example")],
    )
    .await
    .unwrap();
    // Each authorization's challenge is being validated (an outcome is recorded only for
    // a challenge still processing).
    let processing = |id: &str, authz_id: &str| {
        use vellum_core::status::{ChallengeStatus, ChallengeType};
        fixtures::challenge(
            id,
            authz_id,
            ChallengeType::Http01,
            ChallengeStatus::Processing,
        )
    };
    sa::insert_challenges(
        &mut tx,
        &[&processing("ch-ra", "az-a"), &processing("ch-rb", "az-b")],
    )
    .await
    .unwrap();
    for (o, ids) in [("ord-ab", vec!["az-a", "az-b"]), ("ord-a", vec!["az-a"])] {
        sa::insert_orders(&mut tx, &[&order(o, &ids)])
            .await
            .unwrap();
        let rows: Vec<(&str, &str, i64)> = ids
            .iter()
            .enumerate()
            .map(|(i, a)| (o, *a, i as i64))
            .collect();
        sa::link(&mut tx, &rows).await.unwrap();
    }
    // The writer's set-oriented statement (one batch may carry many authorizations).
    let validated = ra::acme::state::VALIDATED;
    store::acme_sets::validated(&mut tx, &["ch-ra"], &["az-a"], now, now + 86_400, validated)
        .await
        .unwrap();
    let status = |o: Option<Order>| o.unwrap().status;
    assert_eq!(
        status(sa::order_by_id(&mut tx, "ord-ab").await.unwrap()),
        OrderStatus::Pending
    );
    assert_eq!(
        status(sa::order_by_id(&mut tx, "ord-a").await.unwrap()),
        OrderStatus::Ready
    );
    store::acme_sets::validated(&mut tx, &["ch-rb"], &["az-b"], now, now + 86_400, validated)
        .await
        .unwrap();
    assert_eq!(
        status(sa::order_by_id(&mut tx, "ord-ab").await.unwrap()),
        OrderStatus::Ready
    );
    let (a, challenges) = sa::authz_with_challenges(&mut tx, "az-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, AuthzStatus::Valid);
    let shown: Vec<_> = challenges
        .iter()
        .map(|c| (c.id.as_str(), c.status))
        .collect();
    assert_eq!(
        shown,
        [("ch-ra", vellum_core::status::ChallengeStatus::Valid)]
    );
    tx.commit().await.unwrap();
}
both_backends!(
    orders_become_ready_when_every_authorization_is_valid,
    order_ready_needs_every_authorization
);

/// A status the store does not know (a damaged or hand-edited database) is an internal
/// error where the row is read, never a default state.
async fn unknown_stored_status_fails_closed(s: &TestServer) {
    use store::acme as sa;
    let app = s.app();
    let now = vellum_core::time::now();
    let account = fixtures::account(app, "damaged", now);
    let authz = fixtures::authz(&account, "az-damaged", "damaged.example", now);
    let order = fixtures::order(&account, "ord-damaged", &[&authz.id], now);
    let mut tx = app.store.begin().await.unwrap();
    sa::insert_account(&mut tx, &account).await.unwrap();
    sa::insert_authzs(&mut tx, &[&authz]).await.unwrap();
    sa::insert_orders(&mut tx, &[&order]).await.unwrap();
    store::query("UPDATE acme_orders SET status = 'Ready' WHERE id = $1")
        .bind("ord-damaged")
        .execute(&mut tx)
        .await
        .unwrap();
    store::query("UPDATE acme_authzs SET id_type = 'email' WHERE id = $1")
        .bind("az-damaged")
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut conn = app.store.reader().acquire().await.unwrap();
    let e = sa::order_by_id(&mut conn, "ord-damaged").await.unwrap_err();
    assert!(
        matches!(&e, vellum_core::error::Error::Internal(d) if d.contains("acme_orders.status") && d.contains("\"Ready\"")),
        "{e:?}"
    );
    let e = sa::authz_with_challenges(&mut conn, "az-damaged")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, vellum_core::error::Error::Internal(d) if d.contains("acme_authzs.id_type")),
        "{e:?}"
    );
}
both_backends!(
    an_unknown_stored_status_is_an_internal_error,
    unknown_stored_status_fails_closed
);

/// Expiry is a transition applied when rows are read (`ra::acme::state`): a pending order
/// past its `expires` reads as `invalid`, its pending authorization as `expired`, neither
/// with `Retry-After`; the challenge no longer starts and the order cannot be finalized.
async fn pending_objects_expire_when_read(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let mut raw = Raw::new(s, &inter);
    raw.register().await;
    let (st, _, order) = raw
        .send(Post {
            payload: Some(json!({"identifiers": [{"type": "dns", "value": "expiring.example"}]})),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(st, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "pending");
    let finalize_url = order["finalize"].as_str().unwrap().to_string();
    let order_url = finalize_url.trim_end_matches("/finalize").to_string();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let id_of = |url: &str| url.rsplit('/').next().unwrap().to_string();
    let get = |url: String| Post {
        payload: None,
        ..raw.post(url)
    };
    let (_, _, authz) = raw.send(get(authz_url.clone())).await;
    let challenge_url = authz["challenges"][0]["url"].as_str().unwrap().to_string();

    // Both expire (written behind the store's back: the in-memory copy is dropped).
    let app = s.app();
    let mut tx = app.store.begin().await.unwrap();
    for (table, id) in [
        ("acme_orders", id_of(&order_url)),
        ("acme_authzs", id_of(&authz_url)),
    ] {
        store::query(&format!("UPDATE {table} SET expires_at = $1 WHERE id = $2"))
            .bind(vellum_core::time::now() - 1)
            .bind(id)
            .execute(&mut tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    if let Some(recent) = app.store.recent() {
        recent.clear();
    }

    let (st, h, o) = raw.send(get(order_url.clone())).await;
    assert_eq!(
        (st, o["status"].as_str()),
        (StatusCode::OK, Some("invalid")),
        "{o}"
    );
    assert!(!h.contains_key("retry-after"), "an invalid order is final");
    let (st, h, a) = raw.send(get(authz_url.clone())).await;
    assert_eq!(
        (st, a["status"].as_str()),
        (StatusCode::OK, Some("expired")),
        "{a}"
    );
    assert!(
        !h.contains_key("retry-after"),
        "an expired authorization is final"
    );
    let (st, _, p) = raw
        .send(Post {
            payload: Some(json!({})),
            ..raw.post(challenge_url)
        })
        .await;
    assert_eq!(
        (st, problem_type(&p)),
        (StatusCode::BAD_REQUEST, "malformed"),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().ends_with("has expired"),
        "{p}"
    );
    let (st, _, p) = raw
        .send(Post {
            payload: Some(json!({"csr": "AA"})),
            ..raw.post(finalize_url)
        })
        .await;
    assert_eq!(problem_type(&p), "orderNotReady", "{st} {p}");
    assert!(p["detail"].as_str().unwrap().contains("is invalid"), "{p}");
}
both_backends!(
    pending_orders_and_authorizations_expire_when_read,
    pending_objects_expire_when_read
);

/// A poll of an order or authorization whose validation is running in this server waits
/// for the outcome (instead of answering `pending` with `Retry-After: 1`), and a poll with
/// nothing running answers at once.
async fn polls_wait_for_a_running_validation(backend: Backend, poll_challenge: bool) {
    let (s, responder) = server_with_responder(backend).await;
    let inter = s.app().defaults.intermediate_id.clone();
    let mut raw = Raw::new(&s, &inter);
    raw.register().await;
    let (st, _, order) = raw
        .send(Post {
            payload: Some(json!({"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(st, StatusCode::CREATED, "{order}");
    let order_url = order["finalize"]
        .as_str()
        .unwrap()
        .trim_end_matches("/finalize")
        .to_string();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let get = |url: String| Post {
        payload: None,
        ..raw.post(url)
    };
    // Nothing running: a pending order answers at once, with Retry-After.
    let t = std::time::Instant::now();
    let (_, h, o) = raw.send(get(order_url.clone())).await;
    assert_eq!(o["status"], "pending");
    assert!(h.contains_key("retry-after"));
    assert!(t.elapsed() < std::time::Duration::from_millis(900));
    let (_, _, authz) = raw.send(get(authz_url.clone())).await;
    let ch = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()
        .clone();
    let token = ch["token"].as_str().unwrap();
    let thumb = vellum_server::acme::jws::thumbprint(&raw.jwk).unwrap();
    responder.put(token, &format!("{token}.{thumb}"));
    // The responder takes 600 ms: the validation is still running when we poll.
    responder.delay_ms(600);
    let (st, _, c) = raw
        .send(raw.post(ch["url"].as_str().unwrap().to_string()))
        .await;
    assert_eq!(
        (st, c["status"].as_str()),
        (StatusCode::OK, Some("processing"))
    );
    // Poll the challenge (then read the order) or the order (then read the authz).
    let (polled, outcome, then, then_status) = if poll_challenge {
        (
            ch["url"].as_str().unwrap().to_string(),
            "valid",
            order_url.clone(),
            "ready",
        )
    } else {
        (order_url.clone(), "ready", authz_url, "valid")
    };
    let t = std::time::Instant::now();
    let (_, h, v) = raw.send(get(polled)).await;
    let waited = t.elapsed();
    assert_eq!(
        v["status"], outcome,
        "the poll answered with the outcome: {v}"
    );
    assert!(!h.contains_key("retry-after"));
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "the poll waited for the validation: {waited:?}"
    );
    let (_, _, w) = raw.send(get(then)).await;
    assert_eq!(w["status"], then_status);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polls_wait_for_a_running_validation_sqlite() {
    polls_wait_for_a_running_validation(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenge_polls_wait_for_a_running_validation_sqlite() {
    polls_wait_for_a_running_validation(Backend::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polls_wait_for_a_running_validation_postgres() {
    if crate::common::postgres_missing() {
        return;
    }
    polls_wait_for_a_running_validation(Backend::Postgres, false).await;
}

/// The ACME writer's set-oriented batch: several changes of one kind share a statement,
/// and of two conditional changes of one row in a batch, only the first applies. A failed
/// challenge does not undo an authorization another challenge validated.
async fn writer_batches_apply_each_change_once(s: &TestServer) {
    use ra::acme::writes::{Change, Changes};
    use store::acme as sa;
    use store::batch::Work;
    use vellum_core::status::{AuthzStatus, ChallengeStatus, OrderStatus};
    let app = s.app();
    let now = vellum_core::time::now();
    let account = fixtures::account(app, "batch", now);
    let mut tx = app.store.begin().await.unwrap();
    sa::insert_account(&mut tx, &account).await.unwrap();
    tx.commit().await.unwrap();
    let new_order = |n: &str| {
        let authz = fixtures::authz(&account, &format!("az-{n}"), &format!("{n}.example"), now);
        let challenge = |kind: &str| {
            let id = format!("ch-{n}-{kind}");
            fixtures::challenge(
                &id,
                &authz.id,
                kind.parse().unwrap(),
                ChallengeStatus::Pending,
            )
        };
        Change::NewOrder {
            order: Box::new(fixtures::order(
                &account,
                &format!("ord-{n}"),
                &[&authz.id],
                now,
            )),
            challenges: vec![challenge("http-01"), challenge("dns-01")],
            authz_ids: vec![authz.id.clone()],
            authzs: vec![authz],
        }
    };
    let commit = |jobs: Vec<Change>| async move {
        let refs: Vec<&Change> = jobs.iter().collect();
        Changes
            .commit(&app.store, &refs)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r == store::batch::Outcome::Committed)
            .collect::<Vec<bool>>()
    };
    assert_eq!(
        commit(vec![new_order("a"), new_order("b")]).await,
        [true, true]
    );
    let start = |id: &str| Change::StartChallenge {
        id: id.into(),
        at: now,
    };
    assert_eq!(
        commit(vec![
            start("ch-a-http-01"),
            start("ch-a-http-01"),
            start("ch-a-dns-01"),
            start("ch-b-http-01"),
            start("no-such-challenge"),
        ])
        .await,
        [true, false, true, true, false]
    );
    assert_eq!(
        commit(vec![
            Change::Validated {
                challenge_id: "ch-a-http-01".into(),
                authz_id: "az-a".into(),
                at: now,
                reusable_until: now + 86_400,
            },
            Change::Failed {
                challenge_id: "ch-a-dns-01".into(),
                authz_id: "az-a".into(),
                at: now,
                challenge_error: "{}".into(),
                order_error: "{}".into(),
            },
            Change::Failed {
                challenge_id: "ch-b-http-01".into(),
                authz_id: "az-b".into(),
                at: now,
                challenge_error: "{\"detail\":\"refused\"}".into(),
                order_error: "{\"detail\":\"validation of b.example failed\"}".into(),
            },
        ])
        .await,
        [true, true, true]
    );
    let mut conn = app.store.reader().acquire().await.unwrap();
    let a = sa::order_by_id(&mut conn, "ord-a").await.unwrap().unwrap();
    assert_eq!(a.status, OrderStatus::Ready, "one valid challenge suffices");
    let b = sa::order_by_id(&mut conn, "ord-b").await.unwrap().unwrap();
    assert_eq!(b.status, OrderStatus::Invalid);
    assert!(b.error_json.unwrap().contains("b.example"));
    let (az, chs) = sa::authz_with_challenges(&mut conn, "az-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(az.status, AuthzStatus::Valid);
    let st: Vec<_> = chs.iter().map(|c| (c.kind.as_str(), c.status)).collect();
    assert!(
        st.contains(&("http-01", ChallengeStatus::Valid))
            && st.contains(&("dns-01", ChallengeStatus::Invalid))
    );
    drop(conn);

    // Finalize: the recorder records a certificate for an ACME order only if the order is
    // still ready, and makes it valid in the same transaction. Of two finalizes of one
    // order in one batch, the first is recorded; one for an order that is not ready
    // (ord-b is invalid) is refused; neither refusal spends quota.
    use ra::record::{Followup, Job, Records};
    let ca_id = app.defaults.intermediate_id.clone();
    let quota = |store: store::Store, ca_id: String| async move {
        let mut conn = store.reader().acquire().await.unwrap();
        let ca = store::cas::get_any_tenant(&mut conn, &ca_id)
            .await
            .unwrap()
            .unwrap();
        (ca.serial.unwrap(), ca.quota_remaining)
    };
    let (ca_serial, before) = quota(app.store.clone(), ca_id.clone()).await;
    let job = |n: &str, order: &str| Job {
        ca_id: ca_id.clone(),
        ca_serial: ca_serial.clone(),
        record: store::certificates::CertRow {
            id: format!("cert-{n}"),
            tenant_id: account.tenant_id.clone(),
            ca_id: Some(ca_id.clone()),
            serial: format!("{:040x}", n.len() * 1000 + n.as_bytes()[0] as usize),
            cert_type: vellum_core::status::LeafType::Server,
            common_name: "a.example".into(),
            sans_json: "[]".into(),
            source: vellum_core::status::CertificateSource::Acme,
            tags_json: "{}".into(),
            spec_json: "{}".into(),
            subject_json: "{}".into(),
            key_algorithm: "ecdsa-p256".into(),
            not_before: now,
            not_after: now + 86_400,
            created_at: now,
            ..Default::default()
        },
        audit: None,
        followup: Some(Followup::AcmeOrderValid {
            order_id: order.into(),
        }),
    };
    let (first, second, not_ready) = (job("x", "ord-a"), job("yy", "ord-a"), job("zzz", "ord-b"));
    let outcomes = Records::new(vellum_core::time::Clock::system())
        .commit(&app.store, &[&first, &second, &not_ready])
        .await
        .unwrap();
    use ra::record::Refusal;
    use store::batch::Outcome;
    assert_eq!(outcomes[0], Outcome::Committed);
    // The refusals carry the order's status in the transaction, so finalize answers
    // without reading the order again.
    assert_eq!(
        outcomes[1],
        Outcome::Refused(Refusal::OrderNotReady {
            order: "ord-a".into(),
            status: Some(OrderStatus::Processing)
        }),
        "two finalizes of one order: one certificate, the other sees it claimed"
    );
    assert_eq!(
        outcomes[2],
        Outcome::Refused(Refusal::OrderNotReady {
            order: "ord-b".into(),
            status: Some(OrderStatus::Invalid)
        }),
        "an order that is not ready gets no certificate"
    );
    let mut conn = app.store.reader().acquire().await.unwrap();
    let a = sa::order_by_id(&mut conn, "ord-a").await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.certificate_id.as_deref()),
        (OrderStatus::Valid, Some("cert-x"))
    );
    let b = sa::order_by_id(&mut conn, "ord-b").await.unwrap().unwrap();
    assert_eq!(b.status, OrderStatus::Invalid);
    for (id, kept) in [("cert-x", true), ("cert-yy", false), ("cert-zzz", false)] {
        let row = store::certificates::get(&mut conn, &account.tenant_id, id)
            .await
            .unwrap();
        assert_eq!(row.is_some(), kept, "{id}");
    }
    drop(conn);
    let (_, after) = quota(app.store.clone(), ca_id.clone()).await;
    assert_eq!(
        before - after,
        1,
        "quota is spent for the recorded certificate only"
    );

    // SQLite keeps these rows in memory too (`store::recent`): after every kind of change
    // above, the copy says what the database says.
    if let Some(recent) = app.store.recent() {
        let mut conn = app.store.reader().acquire().await.unwrap();
        for id in ["ord-a", "ord-b"] {
            let db = sa::order_by_id(&mut conn, id).await.unwrap();
            assert_eq!(format!("{:?}", recent.order(id)), format!("{db:?}"), "{id}");
        }
        for id in ["az-a", "az-b"] {
            let db = sa::authz_with_challenges(&mut conn, id).await.unwrap();
            assert_eq!(format!("{:?}", recent.authz(id)), format!("{db:?}"), "{id}");
        }
        let db = sa::challenge_with_authz(&mut conn, "ch-b-http-01")
            .await
            .unwrap();
        assert_eq!(
            format!("{:?}", recent.challenge("ch-b-http-01")),
            format!("{db:?}")
        );
    }
}
both_backends!(
    writer_batches_apply_each_change_once_both,
    writer_batches_apply_each_change_once
);

/// A stored ACME policy that does not decode refuses the request (500, logged) instead of
/// lifting the restriction.
async fn broken_policy_fails_closed(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/acme"),
            Some(json!({"allowed_domains": ["example.com"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut raw = Raw::new(s, &inter);
    raw.register().await;
    let order = |raw: &Raw| raw.post(raw.url("new-order"));
    let (st, _, v) = raw
        .send(Post {
            payload: Some(json!({"identifiers": [{"type": "dns", "value": "evil.test"}]})),
            ..order(&raw)
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::BAD_REQUEST, "rejectedIdentifier"),
        "{v}"
    );
    let nonce = raw.nonce().await;
    s.sql(&format!(
        "UPDATE acme_settings SET allowed_domains_json = 'example.com' WHERE ca_id = '{inter}'"
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // read caches: 1 s
                                                                      // Every request of that directory is refused now (new-nonce too), never served as if
                                                                      // the CA had no name restriction.
    let (st, _, v) = raw
        .send(Post {
            payload: Some(json!({"identifiers": [{"type": "dns", "value": "evil.test"}]})),
            nonce: Some(nonce),
            ..order(&raw)
        })
        .await;
    assert_eq!(
        (st, problem_type(&v)),
        (StatusCode::INTERNAL_SERVER_ERROR, "serverInternal"),
        "{v}"
    );
}
both_backends!(acme_broken_policy_fails_closed, broken_policy_fails_closed);
