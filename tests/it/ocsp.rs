//! The OCSP responder (RFC 6960, RFC 5019): requests built here with yasna, responses read
//! and verified by `openssl ocsp` (an independent parser), on both backends; two replicas
//! on one PostgreSQL database agree within a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use yasna::models::ObjectIdentifier;

use crate::common::{env_for, openssl, start_with_env, Backend, TestServer};

const MALFORMED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x01];
const UNAUTHORIZED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x06];

/// A hierarchy with its certificates on disk for openssl.
struct Pki {
    root: String,
    inter: String,
    dir: tempfile::TempDir,
}

impl Pki {
    async fn new(s: &TestServer, cn: &str) -> Pki {
        let (root, inter) = s.enabled_pair(cn, 20, 10).await;
        let dir = tempfile::tempdir().unwrap();
        for id in [&root, &inter] {
            let (_, v) = s.get(&format!("/cas/{id}")).await;
            std::fs::write(
                dir.path().join(format!("{id}.pem")),
                v["certificate_pem"].as_str().unwrap(),
            )
            .unwrap();
        }
        Pki { root, inter, dir }
    }

    fn pem(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.pem"))
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

async fn set_ocsp(s: &TestServer, ca: &str, body: Value) -> Value {
    let (st, v) = s
        .call(Method::PUT, &format!("/cas/{ca}/ocsp"), Some(body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// Issues a server certificate; returns (id, serial hex, PEM).
async fn issue(s: &TestServer, ca: &str, cn: &str) -> (String, String, String) {
    let (st, v) = s
        .post(
            &format!("/cas/{ca}/certificates"),
            json!({"type": "server", "common_name": cn, "sans": [{"type": "dns", "value": cn}], "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["serial"].as_str().unwrap().to_string(),
        v["certificate_pem"].as_str().unwrap().to_string(),
    )
}

fn digest(alg: &str, data: &[u8]) -> Vec<u8> {
    let a = match alg {
        "sha1" => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        _ => &aws_lc_rs::digest::SHA256,
    };
    aws_lc_rs::digest::digest(a, data).as_ref().to_vec()
}

/// A DER OCSPRequest for `serial` (hex) issued by the CA in `issuer_pem`, with a CertID
/// hashed by `alg` (`sha1` or `sha256`) and an optional nonce (RFC 8954 encoding).
fn request(issuer_pem: &Path, serial: &str, alg: &str, nonce: Option<&[u8]>) -> Vec<u8> {
    let pem = std::fs::read(issuer_pem).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = p.parse_x509().unwrap();
    let name_hash = digest(alg, cert.subject().as_raw());
    let key_hash = digest(alg, &cert.public_key().subject_public_key.data);
    let serial = hex::decode(serial).unwrap();
    let oid: &[u64] = if alg == "sha1" {
        &[1, 3, 14, 3, 2, 26]
    } else {
        &[2, 16, 840, 1, 101, 3, 4, 2, 1]
    };
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                                w.next().write_null();
                            });
                            w.next().write_bytes(&name_hash);
                            w.next().write_bytes(&key_hash);
                            w.next().write_bigint_bytes(&serial, true);
                        })
                    })
                });
                if let Some(n) = nonce {
                    w.next().write_tagged(yasna::Tag::context(2), |w| {
                        w.write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[
                                    1, 3, 6, 1, 5, 5, 7, 48, 1, 2,
                                ]));
                                w.next()
                                    .write_bytes(&yasna::construct_der(|w| w.write_bytes(n)));
                            })
                        })
                    });
                }
            })
        })
    })
}

async fn post(s: &TestServer, ca: &str, der: &[u8]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = s
        .client
        .post(format!("{}/ocsp/{ca}", s.http_base))
        .header("content-type", "application/ocsp-request")
        .body(der.to_vec())
        .send()
        .await
        .unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    (st, h, resp.bytes().await.unwrap().to_vec())
}

fn get_url(s: &TestServer, ca: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let enc: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("{}/ocsp/{ca}/{enc}", s.http_base)
}

async fn get(s: &TestServer, ca: &str, der: &[u8]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = s.client.get(get_url(s, ca, der)).send().await.unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    (st, h, resp.bytes().await.unwrap().to_vec())
}

/// `openssl ocsp -respin … -resp_text`, verifying the signature against `issuer` and the
/// trust anchor `root`. Asserts that openssl accepted it.
fn read_response(pki: &Pki, der: &[u8], issuer: &str) -> String {
    let f = pki.file("resp.der", der);
    let chain = [
        std::fs::read_to_string(pki.pem(issuer)).unwrap(),
        std::fs::read_to_string(pki.pem(&pki.root)).unwrap(),
    ]
    .concat();
    let chain_file = pki.file("chain.pem", chain.as_bytes());
    let (ok, out) = openssl(&[
        "ocsp",
        "-respin",
        f.to_str().unwrap(),
        "-resp_text",
        "-issuer",
        pki.pem(issuer).to_str().unwrap(),
        "-CAfile",
        chain_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    out
}

/// A CertID naming `other`'s intermediate as issuer, sent to `pki`'s: `unauthorized`.
async fn foreign_is_unauthorized(s: &TestServer, pki: &Pki, other: &Pki, cn: &str) {
    let (_, foreign_serial, _) = issue(s, &other.inter, cn).await;
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&other.pem(&other.inter), &foreign_serial, "sha1", None),
    )
    .await;
    assert_eq!(der, UNAUTHORIZED, "{cn}");
}

fn has_ocsp_aia(pem: &str, pki: &Pki) -> bool {
    let f = pki.file("leaf-aia.pem", pem.as_bytes());
    let (ok, out) = openssl(&[
        "x509",
        "-in",
        f.to_str().unwrap(),
        "-noout",
        "-ext",
        "authorityInfoAccess",
    ]);
    assert!(ok, "{out}");
    out.contains("OCSP - URI:")
}

async fn good_revoked_unknown(s: &TestServer) {
    let pki = Pki::new(s, "Ocsp Status").await;
    let v = set_ocsp(s, &pki.inter, json!({"enabled": true, "validity_hours": 6})).await;
    assert_eq!(v["enabled"], true, "{v}");
    assert_eq!(v["validity_hours"], 6, "{v}");
    let url = v["url"].as_str().unwrap().to_string();
    assert!(url.ends_with(&format!("/ocsp/{}", pki.inter)), "{url}");
    let (id, serial, pem) = issue(s, &pki.inter, "good.ocsp.example").await;
    assert!(
        has_ocsp_aia(&pem, &pki),
        "OCSP on: the AIA names the responder"
    );
    let leaf = pki.file("leaf.pem", pem.as_bytes());

    // SHA-1 CertID (what openssl sends) and SHA-256.
    let issuer = pki.pem(&pki.inter);
    let (st, h, der) = post(s, &pki.inter, &request(&issuer, &serial, "sha1", None)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/ocsp-response");
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("Cert Status: good"), "{text}");
    assert!(text.contains("Hash Algorithm: sha1"), "{text}");
    assert!(text.contains("Next Update:"), "{text}");
    let (_, _, der) = post(s, &pki.inter, &request(&issuer, &serial, "sha256", None)).await;
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("Cert Status: good"), "{text}");
    assert!(text.contains("Hash Algorithm: sha256"), "{text}");

    // A serial this CA never issued.
    let (_, _, der) = post(s, &pki.inter, &request(&issuer, "7f0102", "sha1", None)).await;
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("Cert Status: unknown"), "{text}");

    // The real client, POST with its own nonce: good, nonce echoed.
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        issuer.to_str().unwrap(),
        "-cert",
        leaf.to_str().unwrap(),
        "-url",
        &url,
        "-CAfile",
        pki.pem(&pki.root).to_str().unwrap(),
        "-resp_text",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(": good"), "{out}");
    assert!(out.contains("OCSP Nonce"), "{out}");
    assert!(!out.contains("WARNING: no nonce"), "{out}");

    // Revoked with a reason: the held response is replaced at once.
    let (st, rv) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rv}");
    let (_, _, der) = post(s, &pki.inter, &request(&issuer, &serial, "sha1", None)).await;
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("Cert Status: revoked"), "{text}");
    assert!(text.contains("keyCompromise"), "{text}");
    let revoked_at = time::OffsetDateTime::parse(
        rv["revoked_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let fmt = time::macros::format_description!(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
    );
    let shown = revoked_at.format(&fmt).unwrap();
    assert!(
        text.contains(&format!("Revocation Time: {shown} GMT")),
        "revocation time {shown} in {text}"
    );
    let (ok, out) = openssl(&[
        "ocsp",
        "-issuer",
        issuer.to_str().unwrap(),
        "-cert",
        leaf.to_str().unwrap(),
        "-url",
        &url,
        "-CAfile",
        pki.pem(&pki.root).to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(": revoked"), "{out}");

    // The root answers for its intermediates.
    set_ocsp(s, &pki.root, json!({"enabled": true})).await;
    let (_, iv) = s.get(&format!("/cas/{}", pki.inter)).await;
    let inter_serial = iv["serial"].as_str().unwrap();
    let root_pem = pki.pem(&pki.root);
    let (_, _, der) = post(
        s,
        &pki.root,
        &request(&root_pem, inter_serial, "sha1", None),
    )
    .await;
    let text = read_response(&pki, &der, &pki.root);
    assert!(text.contains("Cert Status: good"), "{text}");
    // A second intermediate, revoked: the root says so (through ca_cert_revocations).
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "intermediate", "parent_id": pki.root, "common_name": "Ocsp Second",
                   "key_algorithm": "ec-p256", "validity_days": 365}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let second = v["id"].as_str().unwrap().to_string();
    let v = s.enable(&second).await;
    let second_serial = v["serial"].as_str().unwrap().to_string();
    let req = request(&root_pem, &second_serial, "sha1", None);
    let (_, _, der) = post(s, &pki.root, &req).await;
    assert!(read_response(&pki, &der, &pki.root).contains("Cert Status: good"));
    let (st, v) = s
        .post(
            &format!("/cas/{second}/revoke"),
            json!({"reason": "cessationOfOperation"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, _, der) = post(s, &pki.root, &req).await;
    let text = read_response(&pki, &der, &pki.root);
    assert!(text.contains("Cert Status: revoked"), "{text}");
    assert!(text.contains("cessationOfOperation"), "{text}");
}
both_backends!(
    ocsp_answers_good_then_revoked_and_unknown,
    good_revoked_unknown
);

async fn refusals(s: &TestServer) {
    let pki = Pki::new(s, "Ocsp Refusals").await;
    let other = Pki::new(s, "Ocsp Foreign").await;
    let issuer = pki.pem(&pki.inter);

    // OCSP off (the default): no AIA OCSP URL, and the responder says unauthorized.
    let (_, serial, pem) = issue(s, &pki.inter, "off.ocsp.example").await;
    assert!(
        !has_ocsp_aia(&pem, &pki),
        "OCSP off: no OCSP URL in the AIA"
    );
    let (st, _, der) = post(s, &pki.inter, &request(&issuer, &serial, "sha1", None)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(der, UNAUTHORIZED);
    let (_, v) = s.get(&format!("/cas/{}/ocsp", pki.inter)).await;
    assert_eq!(v["enabled"], false, "{v}");

    set_ocsp(s, &pki.inter, json!({"enabled": true})).await;
    // Malformed: garbage by POST and GET, an empty body, two certificates in one request.
    for body in [&b"not der"[..], &[0x30, 0x00], &[]] {
        let (st, h, der) = post(s, &pki.inter, body).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(h["content-type"], "application/ocsp-response");
        assert_eq!(der, MALFORMED, "{body:?}");
    }
    let resp = s
        .client
        .get(format!("{}/ocsp/{}/%%%not-base64", s.http_base, pki.inter))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let der = resp.bytes().await.unwrap();
    assert!(
        st == StatusCode::BAD_REQUEST || (st == StatusCode::OK && der[..] == *MALFORMED),
        "{st}"
    );
    let (_, _, der) = get(s, &pki.inter, b"\x30\x03\x02\x01\x01").await;
    assert_eq!(der, MALFORMED);

    // A CertID naming another CA as issuer.
    foreign_is_unauthorized(s, &pki, &other, "foreign.ocsp.example").await;

    // Nonces: 32 bytes echoed, 33 refused.
    let nonce = [0xa5u8; 32];
    let (_, h, der) = post(
        s,
        &pki.inter,
        &request(&issuer, &serial, "sha1", Some(&nonce)),
    )
    .await;
    assert_eq!(h["cache-control"], "no-store");
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("OCSP Nonce"), "{text}");
    assert!(
        der.windows(nonce.len()).any(|w| w == nonce),
        "the nonce is echoed"
    );
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&issuer, &serial, "sha1", Some(&[0xa5; 33])),
    )
    .await;
    assert_eq!(der, MALFORMED);

    // No such CA.
    let (st, _, _) = post(
        s,
        "01234567-89ab-cdef-0123-456789abcdef",
        &request(&issuer, &serial, "sha1", None),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Settings are checked and audited.
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/cas/{}/ocsp", pki.inter),
            Some(json!({"enabled": true, "validity_hours": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("validity_hours"),
        "{v}"
    );
    let (_, audit) = s.get("/audit?action=ca.ocsp.settings").await;
    let items = audit["items"].as_array().expect("audit items");
    assert!(
        items.iter().any(|e| e["action"] == "ca.ocsp.settings"),
        "{audit}"
    );
}
both_backends!(ocsp_refuses_what_it_cannot_answer, refusals);

async fn get_caching(s: &TestServer) {
    let pki = Pki::new(s, "Ocsp Get").await;
    set_ocsp(s, &pki.inter, json!({"enabled": true, "validity_hours": 2})).await;
    let (id, serial, _) = issue(s, &pki.inter, "get.ocsp.example").await;
    let req = request(&pki.pem(&pki.inter), &serial, "sha1", None);
    let (st, h, first) = get(s, &pki.inter, &req).await;
    assert_eq!(st, StatusCode::OK);
    let cc = h["cache-control"].to_str().unwrap();
    let max_age: i64 = cc
        .split(',')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .expect("max-age")
        .parse()
        .unwrap();
    assert!((7000..=7200).contains(&max_age), "{cc}");
    assert!(cc.contains("public"), "{cc}");
    assert!(h.contains_key("last-modified"));
    assert!(h.contains_key("expires"));
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(read_response(&pki, &first, &pki.inter).contains("Cert Status: good"));

    // Held ready: the same bytes again, and a conditional GET is a 304.
    let (_, h2, second) = get(s, &pki.inter, &req).await;
    assert_eq!(first, second);
    assert_eq!(h2["etag"].to_str().unwrap(), etag);
    let resp = s
        .client
        .get(get_url(s, &pki.inter, &req))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    // POST answers are not for HTTP caches.
    let (_, h, _) = post(s, &pki.inter, &req).await;
    assert_eq!(h["cache-control"], "no-store");

    let (st, v) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, h3, third) = get(s, &pki.inter, &req).await;
    assert_ne!(h3["etag"].to_str().unwrap(), etag);
    let text = read_response(&pki, &third, &pki.inter);
    assert!(text.contains("Cert Status: revoked"), "{text}");
    assert!(text.contains("superseded"), "{text}");
}
both_backends!(ocsp_get_answers_are_cacheable, get_caching);

async fn delegated(s: &TestServer) {
    let pki = Pki::new(s, "Ocsp Delegated").await;
    let v = set_ocsp(
        s,
        &pki.inter,
        json!({"enabled": true, "delegated_signer": true}),
    )
    .await;
    let signer_pem = v["signer"]["certificate_pem"]
        .as_str()
        .unwrap_or_else(|| panic!("a delegated signer: {v}"))
        .to_string();
    let (_, p) = x509_parser::pem::parse_x509_pem(signer_pem.as_bytes()).unwrap();
    let cert = p.parse_x509().unwrap();
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("an EKU extension")
        .value;
    assert!(eku.ocsp_signing, "id-kp-OCSPSigning");
    assert!(!eku.server_auth && !eku.client_auth && !eku.any);
    let nocheck = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 48, 1, 5]).unwrap();
    assert!(
        cert.extensions().iter().any(|e| e.oid == nocheck),
        "id-pkix-ocsp-nocheck"
    );
    assert!(!cert.is_ca());
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(life <= 8 * 86_400, "short-lived: {life} s");
    // Issued by the intermediate.
    let f = pki.file("signer.pem", signer_pem.as_bytes());
    let chain = pki.file(
        "inter-root.pem",
        [
            std::fs::read_to_string(pki.pem(&pki.inter)).unwrap(),
            std::fs::read_to_string(pki.pem(&pki.root)).unwrap(),
        ]
        .concat()
        .as_bytes(),
    );
    let (ok, out) = openssl(&[
        "verify",
        "-purpose",
        "ocsphelper",
        "-CAfile",
        chain.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");

    let (_, serial, _) = issue(s, &pki.inter, "delegated.ocsp.example").await;
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&pki.pem(&pki.inter), &serial, "sha1", None),
    )
    .await;
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("Cert Status: good"), "{text}");
    assert!(
        text.contains("OCSP Responder"),
        "the signer's certificate travels with the response: {text}"
    );
    // Back to the CA key: responses signed by it, no certificate attached.
    set_ocsp(
        s,
        &pki.inter,
        json!({"enabled": true, "delegated_signer": false}),
    )
    .await;
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&pki.pem(&pki.inter), &serial, "sha1", None),
    )
    .await;
    let text = read_response(&pki, &der, &pki.inter);
    assert!(!text.contains("OCSP Responder"), "{text}");
}
both_backends!(ocsp_delegated_signer_is_an_ocsp_signing_cert, delegated);

/// A CA renewed with a new key keeps answering for what its old key signed: a CertID
/// naming the old key is answered (good, then revoked at once after a revocation),
/// signed by the old key itself (verified against the old certificate), while the new
/// key's CertIDs are answered by the delegated signer; a key the CA never had is still
/// `unauthorized`.
async fn retired_key(s: &TestServer) {
    let pki = Pki::new(s, "Ocsp Rollover").await;
    let other = Pki::new(s, "Ocsp Rollover Foreign").await;
    set_ocsp(
        s,
        &pki.inter,
        json!({"enabled": true, "delegated_signer": true, "validity_hours": 6}),
    )
    .await;
    let (id, serial, _) = issue(s, &pki.inter, "old-key.ocsp.example").await;
    let old = format!("{}-g1", pki.inter);
    std::fs::copy(pki.pem(&pki.inter), pki.pem(&old)).unwrap();
    let (st, r) = s
        .post(
            &format!("/cas/{}/renew", pki.inter),
            json!({"same_key": false, "validity_days": 365}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let new = format!("{}-g2", pki.inter);
    pki.file(
        &format!("{new}.pem"),
        r["generation"]["certificate_pem"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );

    // The old key's CertID: answered, signed by the old key, by POST and GET.
    let old_req = request(&pki.pem(&old), &serial, "sha1", None);
    let (st, _, der) = post(s, &pki.inter, &old_req).await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(der, UNAUTHORIZED, "the retired key's CertID is answered");
    let text = read_response(&pki, &der, &old);
    assert!(text.contains("Cert Status: good"), "{text}");
    assert!(
        !text.contains("OCSP Signing"),
        "signed by the old key itself, not the delegated signer: {text}"
    );
    let (_, _, der) = get(
        s,
        &pki.inter,
        &request(&pki.pem(&old), &serial, "sha256", None),
    )
    .await;
    assert!(read_response(&pki, &der, &old).contains("Cert Status: good"));

    // A leaf of the new key under the new key's CertID: the delegated signer answers.
    let (_, new_serial, _) = issue(s, &pki.inter, "new-key.ocsp.example").await;
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&pki.pem(&new), &new_serial, "sha1", None),
    )
    .await;
    let text = read_response(&pki, &der, &new);
    assert!(text.contains("Cert Status: good"), "{text}");

    // Revoking the old key's leaf shows at once on the old key's CertID (held answers
    // replaced), by GET too.
    let (st, rv) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rv}");
    for (alg, by_get) in [("sha1", true), ("sha256", false)] {
        let req = request(&pki.pem(&old), &serial, alg, None);
        let der = if by_get {
            get(s, &pki.inter, &req).await.2
        } else {
            post(s, &pki.inter, &req).await.2
        };
        let text = read_response(&pki, &der, &old);
        assert!(text.contains("Cert Status: revoked"), "{alg}: {text}");
        assert!(text.contains("keyCompromise"), "{alg}: {text}");
    }

    // A key the CA never had is still refused.
    foreign_is_unauthorized(s, &pki, &other, "foreign.rollover.example").await;
}

both_backends!(ocsp_answers_for_a_retired_ca_key, retired_key);

/// Two replicas on one PostgreSQL database: B holds a `good` response; a revocation on A
/// reaches B's answers within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ocsp_replicas_agree_within_a_second() {
    if crate::common::postgres_missing() {
        return;
    }
    let url = crate::common::fresh_pg_database().await;
    let key = "44".repeat(32);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env1 = env_for(d1.path(), &url, &[("VELLUM_MASTER_KEY", &key)]);
    let env2 = env_for(d2.path(), &url, &[("VELLUM_MASTER_KEY", &key)]);
    let a = start_with_env(&env1).await.unwrap();
    let b = start_with_env(&env2).await.unwrap();
    let sa = TestServer::attach(a, d1, Backend::Postgres, url.clone());
    let sb = TestServer::attach(b, d2, Backend::Postgres, url.clone());

    let pki = Pki::new(&sa, "Ocsp Replicas").await;
    set_ocsp(&sa, &pki.inter, json!({"enabled": true})).await;
    for round in 0..3 {
        let (id, serial, _) = issue(&sa, &pki.inter, &format!("r{round}.ocsp.example")).await;
        let req = request(&pki.pem(&pki.inter), &serial, "sha1", None);
        // Both replicas hold a good response.
        for s in [&sa, &sb] {
            let (_, _, der) = get(s, &pki.inter, &req).await;
            assert!(read_response(&pki, &der, &pki.inter).contains("Cert Status: good"));
            let (_, _, again) = get(s, &pki.inter, &req).await;
            assert_eq!(der, again, "held ready");
        }
        let (st, v) = sa
            .post(
                &format!("/certificates/{id}/revoke"),
                json!({"reason": "keyCompromise"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let revoked = Instant::now();
        loop {
            let (_, _, der) = get(&sb, &pki.inter, &req).await;
            if read_response(&pki, &der, &pki.inter).contains("Cert Status: revoked") {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "replica B still says good a second after A revoked"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = revoked.elapsed();
        eprintln!("round {round}: revoked on A, revoked on B after {seen:?}");
    }
    sa.stop().await;
    sb.stop().await;
}

const TRY_LATER: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x03];

/// A DER OCSPRequest asking about two serials of one issuer (RFC 6960 allows it; RFC 5019
/// clients send one).
fn request_two(issuer_pem: &Path, serials: [&str; 2]) -> Vec<u8> {
    let one = |serial: &str| {
        let full = request(issuer_pem, serial, "sha1", None);
        // OCSPRequest → tbsRequest → requestList → the one Request.
        let list = yasna::parse_der(&full, |r| {
            r.read_sequence(|r| r.next().read_sequence(|r| r.next().read_der()))
        })
        .unwrap();
        yasna::parse_der(&list, |r| r.read_sequence(|r| r.next().read_der())).unwrap()
    };
    let (a, b) = (one(serials[0]), one(serials[1]));
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_der(&a);
                    w.next().write_der(&b);
                })
            })
        })
    })
}

fn random_serial() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    b[0] = (b[0] & 0x7f) | 0x01;
    hex::encode(b)
}

/// Random serials cannot make the responder sign without bound: an unknown serial is
/// answered from memory for a minute (the same bytes, so not signed again), and what is
/// signed on demand spends a per-CA budget (here 1 a second) beyond which unknown serials
/// get `tryLater`, a nonce the held response without it, while known serials are answered
/// as ever. Several CertIDs in one request are refused with malformedRequest.
async fn on_demand_budget(s: &TestServer) {
    let pki = Pki::new(s, "Ocsp Budget").await;
    set_ocsp(s, &pki.inter, json!({"enabled": true})).await;
    // The settings change is an event this replica's poll (every 200 ms) reads and then
    // drops what it holds for the CA: let it pass before anything is held.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let issuer = pki.pem(&pki.inter);
    let (_, known, _) = issue(s, &pki.inter, "budget.ocsp.example").await;
    // The known serial's response is signed and held before the flood.
    let (_, _, good) = post(s, &pki.inter, &request(&issuer, &known, "sha1", None)).await;
    assert!(read_response(&pki, &good, &pki.inter).contains("Cert Status: good"));

    let start = Instant::now();
    let mut answered: Vec<(String, Vec<u8>)> = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let serial = random_serial();
        let (st, h, der) = post(s, &pki.inter, &request(&issuer, &serial, "sha1", None)).await;
        assert_eq!(st, StatusCode::OK);
        if der == TRY_LATER {
            assert_eq!(h["cache-control"], "no-store");
            refused += 1;
        } else {
            let text = read_response(&pki, &der, &pki.inter);
            assert!(text.contains("Cert Status: unknown"), "{text}");
            answered.push((serial, der));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        refused > 0,
        "30 random serials at 1 signing a second: some tryLater"
    );
    assert!(
        (answered.len() as f64) <= 2.0 + elapsed,
        "{} signed in {elapsed:.2} s with a budget of 1 a second",
        answered.len()
    );
    // An unknown serial answered before is answered again with the same bytes (held in
    // memory, not re-signed: ECDSA signatures differ each time), budget or not.
    let (serial, first) = answered.last().cloned().expect("one answered");
    let (_, _, again) = post(s, &pki.inter, &request(&issuer, &serial, "sha1", None)).await;
    assert_eq!(again, first, "the unknown answer is held");
    // Spend what refilled, then: the known serial is still answered, and a nonce gets the
    // held response without the nonce.
    while post(
        s,
        &pki.inter,
        &request(&issuer, &random_serial(), "sha1", None),
    )
    .await
    .2 != TRY_LATER
    {}
    let (_, _, der) = post(s, &pki.inter, &request(&issuer, &known, "sha1", None)).await;
    assert_eq!(der, good, "the held good response");
    let nonce = [0x5au8; 16];
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&issuer, &known, "sha1", Some(&nonce)),
    )
    .await;
    let text = read_response(&pki, &der, &pki.inter);
    assert!(text.contains("Cert Status: good"), "{text}");
    if !der.windows(nonce.len()).any(|w| w == nonce) {
        assert_eq!(der, good, "over the budget: the held response, no nonce");
    }
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, _, der) = post(
        s,
        &pki.inter,
        &request(&issuer, &random_serial(), "sha1", None),
    )
    .await;
    assert_ne!(
        der, TRY_LATER,
        "a second later, a new unknown serial is signed"
    );

    // Two CertIDs in one request: malformedRequest (one per request, RFC 5019 §2.1.1).
    let (_, _, der) = post(s, &pki.inter, &request_two(&issuer, [&known, &serial])).await;
    assert_eq!(der, MALFORMED);
}

mod ocsp_on_demand_signings_have_a_budget {
    const ENV: &[(&str, &str)] = &[("VELLUM_RATE_LIMITS_OCSP_ON_DEMAND_SIGNINGS_PER_SECOND", "1")];

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let s = crate::common::TestServer::start_with(crate::common::Backend::Sqlite, ENV).await;
        super::on_demand_budget(&s).await;
        s.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if crate::common::postgres_missing() {
            return;
        }
        let s = crate::common::TestServer::start_with(crate::common::Backend::Postgres, ENV).await;
        super::on_demand_budget(&s).await;
        s.stop().await;
    }
}
