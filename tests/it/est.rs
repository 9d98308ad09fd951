//! EST (RFC 7030 / RFC 8951) over real TLS: every operation and every refusal, HTTP Basic
//! and TLS client certificates, against both backends.

use crate::common::TestServer;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::PublicKeyData;
use reqwest::StatusCode;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

pub(crate) const PASSWORD: &str = "device-password-1";

/// An HTTPS client trusting the server's root, optionally presenting a client certificate.
pub(crate) fn est_client(
    s: &TestServer,
    identity: Option<(&[u8], &rcgen::KeyPair)>,
) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(s, identity))
        .build()
        .unwrap()
}

fn tls_config(s: &TestServer, identity: Option<(&[u8], &rcgen::KeyPair)>) -> rustls::ClientConfig {
    tls_config_chain(s, identity.map(|(c, k)| (vec![c.to_vec()], k)))
}

/// An HTTPS client presenting a certificate chain (leaf first).
fn est_client_chain(s: &TestServer, chain: Vec<Vec<u8>>, key: &rcgen::KeyPair) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config_chain(s, Some((chain, key))))
        .build()
        .unwrap()
}

fn tls_config_chain(
    s: &TestServer,
    identity: Option<(Vec<Vec<u8>>, &rcgen::KeyPair)>,
) -> rustls::ClientConfig {
    let b = crate::common::tls_trusting(&s.data_dir().join("root.pem"));
    match identity {
        Some((chain, key)) => b
            .with_client_auth_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// A P-256 CSR with the given subject and SANs.
fn csr(key: &rcgen::KeyPair, dn: &[(rcgen::DnType, &str)], sans: &[&str]) -> Vec<u8> {
    let mut p =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for (t, v) in dn {
        p.distinguished_name.push(t.clone(), *v);
    }
    p.serialize_request(key).unwrap().der().to_vec()
}

pub(crate) fn cn_csr(key: &rcgen::KeyPair, cn: &str) -> Vec<u8> {
    csr(key, &[(rcgen::DnType::CommonName, cn)], &[])
}

/// Base64 wrapped at 64 columns with CRLF (RFC 8951 says: tolerate it).
fn wrapped_b64(der: &[u8]) -> String {
    STANDARD
        .encode(der)
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap().to_string() + "\r\n")
        .collect()
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The certificates of a certs-only answer.
    pub(crate) fn certs(&self) -> Vec<Vec<u8>> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            "application/pkcs7-mime; smime-type=certs-only"
        );
        assert_eq!(self.header("content-transfer-encoding"), "base64");
        one_line_b64_certs(&self.body)
    }

    pub(crate) fn text_error(&self, status: StatusCode, needle: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.header("content-type").starts_with("text/plain"),
            "{:?}",
            self.headers
        );
        assert!(
            self.body.contains(needle),
            "{status}: {:?} does not mention {needle:?}",
            self.body
        );
        assert_eq!(
            self.body.trim_end().lines().count(),
            1,
            "one line: {:?}",
            self.body
        );
    }
}

fn one_line_b64_certs(body: &str) -> Vec<Vec<u8>> {
    assert!(body.ends_with("\r\n"), "ends with CRLF: {body:?}");
    assert_eq!(body.matches('\n').count(), 1, "one line: {body:?}");
    certs_of(&STANDARD.decode(body.trim_end()).unwrap())
}

/// Certificates of a degenerate CMS SignedData.
fn certs_of(der: &[u8]) -> Vec<Vec<u8>> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let oid = r.next().read_oid()?;
            assert_eq!(oid.to_string(), "1.2.840.113549.1.7.2");
            r.next().read_tagged(yasna::Tag::context(0), |r| {
                r.read_sequence(|r| {
                    assert_eq!(r.next().read_u8()?, 1);
                    assert_eq!(r.next().read_der()?, [0x31, 0x00]);
                    r.next().read_sequence(|r| r.next().read_oid())?;
                    let certs = r.next().read_tagged_implicit(yasna::Tag::context(0), |r| {
                        let mut v = Vec::new();
                        r.read_set_of(|r| {
                            v.push(r.read_der()?);
                            Ok(())
                        })?;
                        Ok(v)
                    })?;
                    assert_eq!(r.next().read_der()?, [0x31, 0x00]); // no signers
                    Ok(certs)
                })
            })
        })
    })
    .expect("a certs-only SignedData")
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    basic: Option<(&str, &str)>,
    body: Option<String>,
) -> Answer {
    let mut req = client.request(method, url);
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/pkcs10")
            .header("content-transfer-encoding", "base64")
            .body(b);
    }
    let resp = req.send().await.expect("request reaches the server");
    Answer {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

fn est_url(s: &TestServer, label: Option<&str>, op: &str) -> String {
    match label {
        Some(l) => format!("{}/.well-known/est/{l}/{op}", s.base),
        None => format!("{}/.well-known/est/{op}", s.base),
    }
}

pub(crate) async fn add_client(s: &TestServer, ca: &str, user: &str, patterns: Option<Value>) {
    let mut body = json!({"username": user, "password": PASSWORD});
    if let Some(p) = patterns {
        body["name_patterns"] = p;
    }
    let (st, v) = s.post(&format!("/cas/{ca}/est/clients"), body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

pub(crate) async fn enroll(
    s: &TestServer,
    client: &reqwest::Client,
    label: Option<&str>,
    op: &str,
    basic: Option<(&str, &str)>,
    csr_der: &[u8],
) -> Answer {
    send(
        client,
        reqwest::Method::POST,
        &est_url(s, label, op),
        basic,
        Some(wrapped_b64(csr_der)),
    )
    .await
}

async fn quota_remaining(s: &TestServer, ca: &str) -> i64 {
    let (_, v) = s.get(&format!("/cas/{ca}")).await;
    v["quota_remaining"].as_i64().unwrap()
}

async fn inventory_entry(s: &TestServer, cert_der: &[u8]) -> Value {
    let (_, x) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    let serial = ca::serial_hex(x.raw_serial());
    let (_, list) = s.get("/certificates?source=est&limit=1000").await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["serial"] == json!(serial))
        .cloned()
        .unwrap_or_else(|| panic!("serial {serial} in the inventory: {list}"))
}

/// A raw HTTP/1.1 request over TLS (chunked body); returns the whole answer as text.
async fn raw_http1(s: &TestServer, request: &[u8]) -> String {
    let mut tls = crate::common::raw_http1_connection(s, request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

// ------------------------------------------------------------------------------------

async fn cacerts_csrattrs_and_routing(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let http = est_client(s, None);
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    let (_, root) = s
        .get(&format!("/cas/{}", ca["parent_id"].as_str().unwrap()))
        .await;
    let pem_der = |v: &Value| {
        ::pem::parse(v["certificate_pem"].as_str().unwrap())
            .unwrap()
            .into_contents()
    };
    let want = [pem_der(&ca), pem_der(&root)];

    // No authentication; the intermediate and its root, one base64 line.
    let a = send(
        &http,
        reqwest::Method::GET,
        &est_url(s, None, "cacerts"),
        None,
        None,
    )
    .await;
    let certs = a.certs();
    assert_eq!(certs.len(), 2);
    for w in &want {
        assert!(certs.contains(w));
    }
    // By CA id, and by label once one is set.
    let a = send(
        &http,
        reqwest::Method::GET,
        &est_url(s, Some(&inter), "cacerts"),
        None,
        None,
    )
    .await;
    assert_eq!(a.certs().len(), 2);
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"label": "devices"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["label"], "devices");
    let a = send(
        &http,
        reqwest::Method::GET,
        &est_url(s, Some("devices"), "cacerts"),
        None,
        None,
    )
    .await;
    assert_eq!(a.certs().len(), 2);

    // csrattrs: a DER SEQUENCE naming the key type and the SAN extension request.
    let a = send(
        &http,
        reqwest::Method::GET,
        &est_url(s, Some("devices"), "csrattrs"),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/csrattrs");
    assert_eq!(a.header("content-transfer-encoding"), "base64");
    assert!(a.body.ends_with("\r\n") && a.body.matches('\n').count() == 1);
    let der = STANDARD.decode(a.body.trim_end()).unwrap();
    let oids: Vec<String> = yasna::parse_der(&der, |r| {
        let mut v = Vec::new();
        r.read_sequence_of(|r| {
            let d = r.read_der()?;
            v.push(d);
            Ok(())
        })?;
        Ok(v)
    })
    .unwrap()
    .iter()
    .map(|d| format!("{d:02x?}"))
    .collect();
    assert_eq!(oids.len(), 3);
    let text = format!("{der:02x?}");
    for oid in [
        "2a, 86, 48, ce, 3d, 04, 03, 02",     // ecdsa-with-SHA256
        "2a, 86, 48, ce, 3d, 03, 01, 07",     // secp256r1
        "2a, 86, 48, 86, f7, 0d, 01, 09, 0e", // extensionRequest
        "06, 03, 55, 1d, 11",                 // subjectAltName
    ] {
        assert!(text.contains(oid), "csrattrs holds {oid}: {text}");
    }

    // Refusals that need no credentials.
    send(
        &http,
        reqwest::Method::GET,
        &est_url(s, Some("nope"), "cacerts"),
        None,
        None,
    )
    .await
    .text_error(StatusCode::NOT_FOUND, "no EST service is labelled \"nope\"");
    send(
        &http,
        reqwest::Method::GET,
        &est_url(s, None, "simpleenrol"),
        None,
        None,
    )
    .await
    .text_error(StatusCode::NOT_FOUND, "unknown EST operation");
    let a = send(
        &http,
        reqwest::Method::POST,
        &est_url(s, None, "fullcmc"),
        None,
        Some("x".into()),
    )
    .await;
    a.text_error(StatusCode::NOT_IMPLEMENTED, "fullcmc is not supported");
    let a = send(
        &http,
        reqwest::Method::GET,
        &est_url(s, None, "simpleenroll"),
        None,
        None,
    )
    .await;
    a.text_error(StatusCode::METHOD_NOT_ALLOWED, "simpleenroll takes POST");
    assert_eq!(a.header("allow"), "POST");

    // Labels: not an operation name, unique, well-formed.
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"label": "cacerts"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "label");
    let (_, other) = s.enabled_pair("Other Root", 10, 5).await;
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{other}/est"),
            Some(json!({"label": "devices"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{other}/est"),
            Some(json!({"label": "Bad Label"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // Turned off: 404 for everything.
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{other}/est"),
            Some(json!({"label": "other", "enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    send(
        &http,
        reqwest::Method::GET,
        &est_url(s, Some("other"), "cacerts"),
        None,
        None,
    )
    .await
    .text_error(StatusCode::NOT_FOUND, "turned off");

    // HTTP/1.1, a chunked request body, and the status line.
    let key = rcgen::KeyPair::generate().unwrap();
    add_client(s, &inter, "chunky", None).await;
    let b64 = wrapped_b64(&cn_csr(&key, "chunked-device"));
    let (head, tail) = b64.split_at(b64.len() / 2);
    let auth = STANDARD.encode(format!("chunky:{PASSWORD}"));
    let req = format!(
        "POST /.well-known/est/devices/simpleenroll HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    );
    let answer = raw_http1(s, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-transfer-encoding: base64\r\n"),
        "{answer}"
    );
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(one_line_b64_certs(body).len(), 1);
}
both_backends!(
    est_cacerts_csrattrs_and_routing,
    cacerts_csrattrs_and_routing
);

async fn basic_enrollment(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    add_client(s, &inter, "dev", Some(json!(["*.devices.example.com"]))).await;
    let http = est_client(s, None);
    let before = quota_remaining(s, &inter).await;

    let key = rcgen::KeyPair::generate().unwrap();
    let der = csr(
        &key,
        &[
            (rcgen::DnType::OrganizationName, "Acme"),
            (rcgen::DnType::CommonName, "d1.devices.example.com"),
        ],
        &[],
    );
    let a = enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &der,
    )
    .await;
    let certs = a.certs();
    assert_eq!(certs.len(), 1, "the issued certificate only");
    let (_, x) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    assert_eq!(x.subject().to_string(), "O=Acme, CN=d1.devices.example.com");
    assert_eq!(x.public_key().raw, key.subject_public_key_info().as_slice());
    assert_eq!(
        quota_remaining(s, &inter).await,
        before - 1,
        "one unit of quota"
    );

    // In the inventory with source est and the client identity; audited; revocable.
    let c = inventory_entry(s, &certs[0]).await;
    assert_eq!(c["source"], "est");
    assert_eq!(c["requester"], "est:basic:dev");
    assert_eq!(c["type"], "client");
    let (_, audit) = s.get("/audit?action=certificate.issue.est").await;
    let ev = &audit["items"][0];
    assert_eq!(ev["actor"], "est:basic:dev");
    assert_eq!(ev["target"], c["id"]);
    assert_eq!(ev["outcome"], "success");
    let (st, v) = s
        .post(
            &format!("/certificates/{}/revoke", c["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Renewable through the admin API like any other (same public key).
    let (st, v) = s
        .post(
            &format!("/certificates/{}/renew", c["id"].as_str().unwrap()),
            json!({"force": true}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "revoked certificates are not renewed: {v}"
    );

    // Raw DER and PEM bodies are tolerated too; so is unpadded base64.
    let key2 = rcgen::KeyPair::generate().unwrap();
    let der2 = cn_csr(&key2, "d2.devices.example.com");
    let pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", der2.clone()));
    let a = send(
        &http,
        reqwest::Method::POST,
        &est_url(s, None, "simpleenroll"),
        Some(("dev", PASSWORD)),
        Some(pem),
    )
    .await;
    assert_eq!(a.certs().len(), 1);
    let unpadded = STANDARD.encode(&der2).trim_end_matches('=').to_string();
    let a = send(
        &http,
        reqwest::Method::POST,
        &est_url(s, None, "simpleenroll"),
        Some(("dev", PASSWORD)),
        Some(unpadded),
    )
    .await;
    assert_eq!(a.certs().len(), 1);

    // Server certificates when the CA is set to issue them: DNS SANs, serverAuth.
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"certificate_type": "server", "default_validity_days": 30})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let der3 = csr(
        &key2,
        &[(rcgen::DnType::CommonName, "web.devices.example.com")],
        &["web.devices.example.com"],
    );
    let a = enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &der3,
    )
    .await;
    let cert = &a.certs()[0];
    let (_, x) = x509_parser::parse_x509_certificate(cert).unwrap();
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let days = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30);
    assert_eq!(inventory_entry(s, cert).await["type"], "server");
}
both_backends!(est_basic_enrollment, basic_enrollment);

async fn refusals(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    add_client(s, &inter, "dev", Some(json!(["*.devices.example.com"]))).await;
    let http = est_client(s, None);
    let key = rcgen::KeyPair::generate().unwrap();
    let good = cn_csr(&key, "ok.devices.example.com");
    let before = quota_remaining(s, &inter).await;

    // No credentials, wrong password, unknown user: 401 with a Basic challenge.
    for (basic, needle) in [
        (None, "needs credentials"),
        (
            Some(("dev", "wrong-password")),
            "wrong user name or password",
        ),
        (Some(("nobody", PASSWORD)), "wrong user name or password"),
    ] {
        let a = enroll(s, &http, None, "simpleenroll", basic, &good).await;
        a.text_error(StatusCode::UNAUTHORIZED, needle);
        assert_eq!(a.header("www-authenticate"), "Basic realm=\"Vellum EST\"");
    }
    // Malformed base64, a CSR whose signature does not verify, a name outside the patterns.
    let a = send(
        &http,
        reqwest::Method::POST,
        &est_url(s, None, "simpleenroll"),
        Some(("dev", PASSWORD)),
        Some("MIIB!!not*base64".into()),
    )
    .await;
    a.text_error(StatusCode::BAD_REQUEST, "not base64");
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 6] ^= 0x5a;
    let a = enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &tampered,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.starts_with("csr: "), "{}", a.body);
    let a = send(
        &http,
        reqwest::Method::POST,
        &est_url(s, None, "simpleenroll"),
        Some(("dev", PASSWORD)),
        Some(STANDARD.encode(b"\x30\x03\x02\x01\x01")),
    )
    .await;
    a.text_error(
        StatusCode::BAD_REQUEST,
        "is not a PKCS#10 certificate request",
    );
    let a = enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &cn_csr(&key, "evil.example.com"),
    )
    .await;
    a.text_error(StatusCode::FORBIDDEN, "evil.example.com");
    // A subject attribute Vellum does not certify, a SAN the client profile refuses.
    let odd = csr(
        &key,
        &[
            (rcgen::DnType::CommonName, "x.devices.example.com"),
            (rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "SN1"),
        ],
        &[],
    );
    enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &odd,
    )
    .await
    .text_error(StatusCode::BAD_REQUEST, "serialNumber");
    let dns = csr(
        &key,
        &[(rcgen::DnType::CommonName, "x.devices.example.com")],
        &["x.devices.example.com"],
    );
    enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &dns,
    )
    .await
    .text_error(
        StatusCode::BAD_REQUEST,
        "cannot go in a client certificate, which takes only e-mail addresses and URIs",
    );
    assert_eq!(
        quota_remaining(s, &inter).await,
        before,
        "refusals spend no quota"
    );
    // Refused enrollments of authenticated clients are audited as failures.
    let (_, audit) = s.get("/audit?action=certificate.issue.est").await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["outcome"] == "failure"));
    assert!(audit["items"].as_array().unwrap().len() >= 4);

    // Only client certificates accepted: Basic is refused with 403.
    let (_, small) = s.enabled_pair("Small Root", 10, 1).await;
    add_client(s, &small, "dev", None).await;
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{small}/est"),
            Some(json!({"label": "small", "auth": ["client_cert"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    enroll(
        s,
        &http,
        Some("small"),
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &good,
    )
    .await
    .text_error(
        StatusCode::FORBIDDEN,
        "HTTP Basic authentication is turned off",
    );
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{small}/est"),
            Some(json!({"auth": ["basic"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Quota: one unit left, then a 503 naming the CA.
    let a = enroll(
        s,
        &http,
        Some("small"),
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &good,
    )
    .await;
    assert_eq!(a.certs().len(), 1);
    let a = enroll(
        s,
        &http,
        Some("small"),
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &good,
    )
    .await;
    a.text_error(StatusCode::SERVICE_UNAVAILABLE, &small);
    assert!(a.body.contains("quota"), "{}", a.body);
    assert!(!a.header("retry-after").is_empty());
    let (_, v) = s.get(&format!("/cas/{small}")).await;
    assert_eq!(v["quota_remaining"], 0);

    // Unknown label.
    enroll(
        s,
        &http,
        Some("no-such-label"),
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &good,
    )
    .await
    .text_error(StatusCode::NOT_FOUND, "no EST service is labelled");

    // A deleted account fails at once (the password cache does not outlive it).
    let a = enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &good,
    )
    .await;
    assert_eq!(a.certs().len(), 1);
    let (st, v) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/cas/{inter}/est/clients/dev"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &good,
    )
    .await
    .text_error(StatusCode::UNAUTHORIZED, "wrong user name or password");
}
both_backends!(est_refusals, refusals);

async fn client_certificates(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    add_client(s, &inter, "dev", None).await;
    let anon = est_client(s, None);
    let key = rcgen::KeyPair::generate().unwrap();
    let a = enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("dev", PASSWORD)),
        &cn_csr(&key, "device-7"),
    )
    .await;
    let cert = a.certs().remove(0);
    let (_, x) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let serial = ca::serial_hex(x.raw_serial());
    let old = inventory_entry(s, &cert).await;
    let holder = est_client(s, Some((&cert, &key)));

    // The admin API, ACME and health checks keep working with (and without) a certificate.
    let r = holder
        .get(format!("{}/admin/v1/cas", s.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = anon
        .get(format!("{}/acme/directory", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // simpleenroll authenticated by the certificate alone.
    let k2 = rcgen::KeyPair::generate().unwrap();
    let a = enroll(
        s,
        &holder,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k2, "device-8"),
    )
    .await;
    let c = inventory_entry(s, &a.certs()[0]).await;
    assert_eq!(c["requester"], format!("est:cert:{serial}"));

    // simplereenroll: same key = renew, new key = rekey; renewed_from links them.
    let a = enroll(
        s,
        &holder,
        None,
        "simplereenroll",
        None,
        &cn_csr(&key, "device-7"),
    )
    .await;
    let renewed = a.certs().remove(0);
    let (_, rx) = x509_parser::parse_x509_certificate(&renewed).unwrap();
    assert_eq!(
        rx.public_key().raw,
        x.public_key().raw,
        "renew keeps the key"
    );
    let r = inventory_entry(s, &renewed).await;
    assert_eq!(r["renewed_from"], old["id"]);
    let k3 = rcgen::KeyPair::generate().unwrap();
    let a = enroll(
        s,
        &holder,
        None,
        "simplereenroll",
        None,
        &cn_csr(&k3, "device-7"),
    )
    .await;
    let rekeyed = a.certs().remove(0);
    let (_, kx) = x509_parser::parse_x509_certificate(&rekeyed).unwrap();
    assert_eq!(kx.public_key().raw, k3.subject_public_key_info().as_slice());
    let (_, audit) = s.get("/audit?action=certificate.renew.est").await;
    let details: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("renew, same key")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("rekey, new key")),
        "{details:?}"
    );

    // The CSR must keep subject and SANs: the refusal names the difference.
    let a = enroll(
        s,
        &holder,
        None,
        "simplereenroll",
        None,
        &cn_csr(&key, "device-9"),
    )
    .await;
    a.text_error(
        StatusCode::BAD_REQUEST,
        "\"CN=device-9\" in the CSR but \"CN=device-7\" in the certificate",
    );
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "device-7");
    p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
        rcgen::string::Ia5String::try_from("a@devices.example.com".to_string()).unwrap(),
    )];
    let added = p.serialize_request(&key).unwrap().der().to_vec();
    enroll(s, &holder, None, "simplereenroll", None, &added)
        .await
        .text_error(
            StatusCode::BAD_REQUEST,
            "the CSR adds email:a@devices.example.com",
        );

    // Without a client certificate: 401; a certificate of another CA: 403.
    enroll(
        s,
        &anon,
        None,
        "simplereenroll",
        None,
        &cn_csr(&key, "device-7"),
    )
    .await
    .text_error(
        StatusCode::UNAUTHORIZED,
        "present the certificate being renewed",
    );
    let (_, other) = s.enabled_pair("Other Root", 10, 5).await;
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{other}/est"),
            Some(json!({"label": "other"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    enroll(
        s,
        &holder,
        Some("other"),
        "simplereenroll",
        None,
        &cn_csr(&key, "device-7"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, &format!("not by CA {other}"));

    // A certificate this installation never issued: 401.
    let stranger_key = rcgen::KeyPair::generate().unwrap();
    let stranger = rcgen::CertificateParams::new(vec!["stranger.example".to_string()])
        .unwrap()
        .self_signed(&stranger_key)
        .unwrap();
    let strange = est_client(s, Some((stranger.der(), &stranger_key)));
    enroll(
        s,
        &strange,
        None,
        "simpleenroll",
        None,
        &cn_csr(&stranger_key, "x"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "was not issued by this installation");

    // Revoked: refused with the revocation time.
    let (st, _) = s
        .post(
            &format!("/certificates/{}/revoke", old["id"].as_str().unwrap()),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    enroll(
        s,
        &holder,
        None,
        "simplereenroll",
        None,
        &cn_csr(&key, "device-7"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "was revoked at");
    enroll(
        s,
        &holder,
        None,
        "simpleenroll",
        None,
        &cn_csr(&key, "device-7"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "was revoked at");

    // Expired: refused too (aged in the database).
    let rk = inventory_entry(s, &rekeyed).await;
    s.sql(&format!(
        "UPDATE certificates SET not_after = 1000 WHERE id = '{}'",
        rk["id"].as_str().unwrap()
    ))
    .await;
    let expired_holder = est_client(s, Some((&rekeyed, &k3)));
    enroll(
        s,
        &expired_holder,
        None,
        "simplereenroll",
        None,
        &cn_csr(&k3, "device-7"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "expired at");
}
both_backends!(est_client_certificates, client_certificates);

async fn server_keygen(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    add_client(s, &inter, "dev", None).await;
    let http = est_client(s, None);
    let throwaway = rcgen::KeyPair::generate().unwrap();
    let a = enroll(
        s,
        &http,
        None,
        "serverkeygen",
        Some(("dev", PASSWORD)),
        &cn_csr(&throwaway, "keyless-device"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let ct = a.header("content-type").to_string();
    let boundary = ct
        .strip_prefix("multipart/mixed; boundary=")
        .unwrap_or_else(|| panic!("multipart/mixed: {ct}"));
    let parts: Vec<&str> = a
        .body
        .split(&format!("--{boundary}"))
        .map(str::trim_start)
        .filter(|p| !p.is_empty() && !p.starts_with("--"))
        .collect();
    assert_eq!(parts.len(), 2, "{}", a.body);
    let part = |p: &str| -> (String, String) {
        let (head, body) = p.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
        (head.to_string(), body.to_string())
    };
    let (h1, key_b64) = part(parts[0]);
    let (h2, cert_b64) = part(parts[1]);
    assert!(
        h1.contains("Content-Type: application/pkcs8"),
        "key first: {h1}"
    );
    assert!(
        h2.contains("application/pkcs7-mime; smime-type=certs-only"),
        "{h2}"
    );
    let key_der = STANDARD.decode(key_b64.trim_end()).unwrap();
    let key = rcgen::KeyPair::try_from(key_der.as_slice()).expect("PKCS#8 key");
    let certs = one_line_b64_certs(&cert_b64);
    assert_eq!(certs.len(), 1);
    let (_, x) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    assert_eq!(
        x.public_key().raw,
        key.subject_public_key_info().as_slice(),
        "the key fits the certificate"
    );
    assert_ne!(
        x.public_key().raw,
        throwaway.subject_public_key_info().as_slice()
    );
    let c = inventory_entry(s, &certs[0]).await;
    assert_eq!(c["has_private_key"], true);
    assert_eq!(c["requester"], "est:basic:dev");
}
both_backends!(est_server_keygen, server_keygen);

async fn admin_api(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let (st, v) = s.get(&format!("/cas/{inter}/est")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            v["enabled"].clone(),
            v["label"].clone(),
            v["auth"].clone(),
            v["default_validity_days"].clone(),
            v["certificate_type"].clone()
        ),
        (
            json!(true),
            Value::Null,
            json!(["basic", "client_cert"]),
            json!(365),
            json!("client")
        )
    );
    assert_eq!(v["urls"]["default"], format!("{}/.well-known/est", s.base));
    for (body, field) in [
        (json!({"auth": []}), "auth"),
        (json!({"auth": ["digest"]}), "auth[0]"),
        (json!({"certificate_type": "code"}), "certificate_type"),
        (json!({"default_validity_days": 0}), "default_validity_days"),
        (
            json!({"default_validity_days": 999_999}),
            "default_validity_days",
        ),
    ] {
        let (st, v) = s
            .call(
                reqwest::Method::PUT,
                &format!("/cas/{inter}/est"),
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], field, "{v}");
    }
    // A label can be removed again with null.
    let (_, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"label": "x1"})),
        )
        .await;
    assert_eq!(v["label"], "x1");
    let (_, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"label": null})),
        )
        .await;
    assert_eq!(v["label"], Value::Null);

    // Clients: create (password kept as argon2id only), list, duplicate, delete.
    add_client(s, &inter, "dev", Some(json!(["*.devices.example.com"]))).await;
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/est/clients"),
            json!({"username": "dev", "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/est/clients"),
            json!({"username": "a:b", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (st, v["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("username"))
    );
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/est/clients"),
            json!({"username": "short", "password": "123"}),
        )
        .await;
    assert_eq!(
        (st, v["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("password"))
    );
    let (_, list) = s.get(&format!("/cas/{inter}/est/clients")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]["name_patterns"],
        json!(["*.devices.example.com"])
    );
    assert!(list.to_string().find(PASSWORD).is_none());
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let stored = store::est::client(&mut conn, &inter, "dev")
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert!(stored.password_hash.starts_with("$argon2id$"));
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/cas/{inter}/est/clients/dev"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/cas/{inter}/est/clients/dev"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Roots do not serve EST; operators may read but not change; all audited.
    let root = s.app().defaults.root_id.clone();
    let (st, _) = s.get(&format!("/cas/{root}/est")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, op) = s.tenant_with_token("acme-corp", "operator").await;
    let (st, _) = s
        .call_full(
            Some(&op),
            None,
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{st}"
    );
    let (_, audit) = s.get("/audit?action=est.client.create").await;
    assert!(audit["items"].as_array().unwrap().len() >= 3);
    let (_, audit) = s.get("/audit?action=ca.est.settings").await;
    assert!(!audit["items"].as_array().unwrap().is_empty());
}
both_backends!(est_admin_api, admin_api);

/// A device maker's CA (self-signed), optionally an intermediate under it, and device
/// certificates from either, made with rcgen (not by Vellum).
struct Maker {
    root_key: rcgen::KeyPair,
    root: rcgen::CertificateParams,
    root_der: Vec<u8>,
}

impl Maker {
    fn new(cn: &str) -> Maker {
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut root = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name = rcgen::DistinguishedName::new();
        root.distinguished_name.push(rcgen::DnType::CommonName, cn);
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let root_der = root.self_signed(&root_key).unwrap().der().to_vec();
        Maker {
            root_key,
            root,
            root_der,
        }
    }

    fn root_pem(&self) -> String {
        ::pem::encode(&::pem::Pem::new("CERTIFICATE", self.root_der.clone()))
    }

    /// A device certificate (CN = `cn`), with clientAuth unless `eku` is empty; signed by
    /// the root, or by a fresh intermediate (returned after the leaf) when `via` is set.
    fn device(
        &self,
        cn: &str,
        eku: &[rcgen::ExtendedKeyUsagePurpose],
        via_intermediate: bool,
    ) -> (rcgen::KeyPair, Vec<Vec<u8>>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = eku.to_vec();
        let root_issuer = rcgen::Issuer::from_params(&self.root, &self.root_key);
        if !via_intermediate {
            let der = p.signed_by(&key, &root_issuer).unwrap().der().to_vec();
            return (key, vec![der]);
        }
        let ikey = rcgen::KeyPair::generate().unwrap();
        let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ip.distinguished_name = rcgen::DistinguishedName::new();
        ip.distinguished_name
            .push(rcgen::DnType::CommonName, "Maker Device Intermediate");
        ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ip.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ider = ip.signed_by(&ikey, &root_issuer).unwrap().der().to_vec();
        let issuer = rcgen::Issuer::from_params(&ip, &ikey);
        let der = p.signed_by(&key, &issuer).unwrap().der().to_vec();
        (key, vec![der, ider])
    }
}

const CLIENT_AUTH: &[rcgen::ExtendedKeyUsagePurpose] =
    &[rcgen::ExtendedKeyUsagePurpose::ClientAuth];

/// RFC 7030 §3.3.2: which TLS client certificates may enroll (simpleenroll), and under
/// which name rules. Certificates from ACME or the admin API never log in; a certificate
/// this EST service issued to an account carries that account's name patterns; a trust
/// anchor configured for the service admits its devices under its own patterns.
async fn client_certificate_rules(backend: crate::common::Backend) {
    let (s, responder) = crate::common::acme::server_with_responder(backend).await;
    let s = &s;
    let inter = s.app().defaults.intermediate_id.clone();

    // The attack: anyone who passes one http-01 challenge holds a certificate of the
    // tenant, and used to enroll any name over EST with it.
    let account = crate::common::acme::new_account(s, &format!("{}/acme/directory", s.base)).await;
    for profile in [None, Some("tls-client")] {
        let (key, acme_cert) =
            crate::common::acme::certificate_for_localhost(&account, &responder, profile).await;
        let holder = est_client(s, Some((&acme_cert, &key)));
        let k = rcgen::KeyPair::generate().unwrap();
        enroll(
            s,
            &holder,
            None,
            "simpleenroll",
            None,
            &cn_csr(&k, "victim.example.com"),
        )
        .await
        .text_error(StatusCode::FORBIDDEN, "was issued through ACME by CA");
        enroll(
            s,
            &holder,
            None,
            "serverkeygen",
            None,
            &cn_csr(&k, "victim.example.com"),
        )
        .await
        .text_error(
            StatusCode::FORBIDDEN,
            "only if this EST service issued it to an EST account",
        );
    }

    // A client certificate from the admin API: refused the same way.
    let admin_key = rcgen::KeyPair::generate().unwrap();
    let admin_csr = ::pem::encode(&::pem::Pem::new(
        "CERTIFICATE REQUEST",
        cn_csr(&admin_key, "ops-laptop"),
    ));
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "client", "validity_days": 30, "csr_pem": admin_csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let admin_cert = ::pem::parse(v["certificate_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    let holder = est_client(s, Some((&admin_cert, &admin_key)));
    let k = rcgen::KeyPair::generate().unwrap();
    enroll(
        s,
        &holder,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "anything"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "was issued through the admin API");

    // A name-restricted account: its certificate inherits the patterns.
    add_client(s, &inter, "fleet", Some(json!(["*.devices.example.com"]))).await;
    let anon = est_client(s, None);
    let key = rcgen::KeyPair::generate().unwrap();
    let a = enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &cn_csr(&key, "a.devices.example.com"),
    )
    .await;
    let fleet_cert = a.certs().remove(0);
    let fleet = est_client(s, Some((&fleet_cert, &key)));
    let k = rcgen::KeyPair::generate().unwrap();
    enroll(
        s,
        &fleet,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "evil.example.com"),
    )
    .await
    .text_error(
        StatusCode::FORBIDDEN,
        "EST client \"fleet\" may not request the name \"evil.example.com\"",
    );
    let a = enroll(
        s,
        &fleet,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "b.devices.example.com"),
    )
    .await;
    let second = a.certs().remove(0);
    let entry = inventory_entry(s, &second).await;
    assert!(
        entry["requester"]
            .as_str()
            .unwrap()
            .starts_with("est:cert:"),
        "{entry}"
    );
    // ...and so does the certificate enrolled with it (the account follows).
    let second_holder = est_client(s, Some((&second, &k)));
    let k2 = rcgen::KeyPair::generate().unwrap();
    enroll(
        s,
        &second_holder,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k2, "evil.example.com"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "may not request the name");
    // Server-profile certificates carry no clientAuth: they renew, but do not log in.
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"certificate_type": "server"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let sk = rcgen::KeyPair::generate().unwrap();
    let a = enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &cn_csr(&sk, "srv.devices.example.com"),
    )
    .await;
    let server_cert = a.certs().remove(0);
    let server_holder = est_client(s, Some((&server_cert, &sk)));
    enroll(
        s,
        &server_holder,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k2, "x.devices.example.com"),
    )
    .await
    .text_error(
        StatusCode::FORBIDDEN,
        "does not carry the clientAuth extended key usage",
    );
    enroll(
        s,
        &server_holder,
        None,
        "simplereenroll",
        None,
        &cn_csr(&sk, "srv.devices.example.com"),
    )
    .await
    .certs();
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"certificate_type": "client"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // The account deleted: its certificates no longer log in.
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/cas/{inter}/est/clients/fleet"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    enroll(
        s,
        &fleet,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "c.devices.example.com"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "which no longer exists");

    // A device maker's CA as trust anchor, with its own name patterns.
    let maker = Maker::new("Maker Root CA");
    let (dev_key, dev_chain) = maker.device("d1.devices.example.com", CLIENT_AUTH, false);
    let device = est_client_chain(s, dev_chain.clone(), &dev_key);
    let k = rcgen::KeyPair::generate().unwrap();
    enroll(
        s,
        &device,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d1.devices.example.com"),
    )
    .await
    .text_error(
        StatusCode::FORBIDDEN,
        "no client-certificate trust anchors are configured",
    );
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({
                "client_cert_trust_pem": maker.root_pem(),
                "client_cert_name_patterns": ["*.devices.example.com"],
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["client_cert_trust"][0]["subject"], "CN=Maker Root CA",
        "{v}"
    );
    let a = enroll(
        s,
        &device,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d1.devices.example.com"),
    )
    .await;
    let entry = inventory_entry(s, &a.certs()[0]).await;
    assert!(
        entry["requester"]
            .as_str()
            .unwrap()
            .starts_with("est:trusted:"),
        "{entry}"
    );
    enroll(
        s,
        &device,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "evil.example.com"),
    )
    .await
    .text_error(
        StatusCode::FORBIDDEN,
        "trust anchor \"CN=Maker Root CA\" may not request the name",
    );
    // Through an intermediate the device sends along.
    let (ik, ichain) = maker.device("d2.devices.example.com", CLIENT_AUTH, true);
    assert_eq!(ichain.len(), 2);
    let via = est_client_chain(s, ichain.clone(), &ik);
    enroll(
        s,
        &via,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d2.devices.example.com"),
    )
    .await
    .certs();
    // Without the intermediate, the path cannot be built.
    let leaf_only = est_client_chain(s, vec![ichain[0].clone()], &ik);
    enroll(
        s,
        &leaf_only,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d2.devices.example.com"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "does not chain to a trust anchor");
    // No clientAuth EKU: refused.
    let (nk, nchain) = maker.device(
        "d3.devices.example.com",
        &[rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        false,
    );
    let no_eku = est_client_chain(s, nchain, &nk);
    enroll(
        s,
        &no_eku,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d3.devices.example.com"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "clientAuth");
    // Another maker's device: refused.
    let other = Maker::new("Other Maker");
    let (ok_, ochain) = other.device("d4.devices.example.com", CLIENT_AUTH, false);
    let stranger = est_client_chain(s, ochain, &ok_);
    enroll(
        s,
        &stranger,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d4.devices.example.com"),
    )
    .await
    .text_error(StatusCode::FORBIDDEN, "does not chain to a trust anchor");

    // The settings refuse what is not a CA certificate in PEM.
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"client_cert_trust_pem": ::pem::encode(&::pem::Pem::new("CERTIFICATE", dev_chain[0].clone()))})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "client_cert_trust_pem");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("not a CA certificate"),
        "{v}"
    );
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"client_cert_trust_pem": STANDARD.encode(&maker.root_der)})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("must be PEM"), "{v}");
    // null removes the anchors: the maker's devices are out again.
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"client_cert_trust_pem": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    enroll(
        s,
        &device,
        None,
        "simpleenroll",
        None,
        &cn_csr(&k, "d1.devices.example.com"),
    )
    .await
    .text_error(
        StatusCode::FORBIDDEN,
        "no client-certificate trust anchors are configured",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_certificate_rules_sqlite() {
    client_certificate_rules(crate::common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_certificate_rules_postgres() {
    if crate::common::postgres_missing() {
        return;
    }
    client_certificate_rules(crate::common::Backend::Postgres).await;
}

/// Names with NUL, control or bidi-override characters are refused over EST before any
/// pattern sees them, naming the field and the character; unreadable stored policy
/// refuses the request instead of lifting the restriction.
async fn hostile_names_and_broken_policy(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    add_client(s, &inter, "fleet", Some(json!(["*.devices.example.com"]))).await;
    let anon = est_client(s, None);
    let k = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::Utf8String("evil.com\0.devices.example.com".into()),
    );
    let nul = p.serialize_request(&k).unwrap().der().to_vec();
    enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &nul,
    )
    .await
    .text_error(
        StatusCode::BAD_REQUEST,
        "subject CN contains the character U+0000 (NUL)",
    );
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::Utf8String("a.devices.example.com\u{202E}moc".into()),
    );
    let bidi = p.serialize_request(&k).unwrap().der().to_vec();
    enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &bidi,
    )
    .await
    .text_error(StatusCode::BAD_REQUEST, "U+202E (RIGHT-TO-LEFT OVERRIDE)");
    // A SAN with a NUL passes the glob, and is refused by the name rules.
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
        rcgen::string::Ia5String::try_from("a\0@x.devices.example.com".to_string()).unwrap(),
    )];
    let san = p.serialize_request(&k).unwrap().der().to_vec();
    enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &san,
    )
    .await
    .text_error(StatusCode::BAD_REQUEST, "U+0000 (NUL)");

    // Damaged policy in the database: refused with a 500, never "no restriction".
    s.sql(&format!(
        "UPDATE est_clients SET name_patterns_json = 'not json' WHERE ca_id = '{inter}' AND username = 'fleet'"
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // read caches: 1 s
    enroll(
        s,
        &anon,
        None,
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &cn_csr(&k, "evil.example.com"),
    )
    .await
    .text_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"label": "policy"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.sql(&format!(
        "UPDATE est_settings SET auth_json = '{{' WHERE ca_id = '{inter}'"
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    enroll(
        s,
        &anon,
        Some("policy"),
        "simpleenroll",
        Some(("fleet", PASSWORD)),
        &cn_csr(&k, "x.devices.example.com"),
    )
    .await
    .text_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
}
both_backends!(
    est_hostile_names_and_broken_policy,
    hostile_names_and_broken_policy
);
