//! Certificates through the one issuance path: apply (generated keys and CSRs), the leaf
//! profile, inventory, export formats, revoke → CRL, delete, renew, and the quota race.

use crate::common::{openssl, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use x509_parser::prelude::*;

fn der_of(pem: &str) -> Vec<u8> {
    ::pem::parse(pem).unwrap().into_contents()
}

async fn apply(s: &TestServer, ca: &str, body: Value) -> (StatusCode, Value) {
    s.post(&format!("/cas/{ca}/certificates"), body).await
}

fn server_body(cn: &str) -> Value {
    json!({"type": "server", "common_name": cn, "sans": [{"type": "dns", "value": cn}], "validity_days": 90})
}

fn rcgen_csr(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap();
    p.serialize_request(&key).unwrap().pem().unwrap()
}

fn openssl_csr(dir: &std::path::Path, newkey: &[&str]) -> String {
    let key = dir.join("k.pem");
    let csr = dir.join("r.csr");
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=weak.example"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    let (ok, out) = openssl(&args);
    assert!(ok, "{out}");
    std::fs::read_to_string(csr).unwrap()
}

async fn issue_and_profile(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Leaf Root", 10, 5).await;
    let (st, c) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "www.example.com",
               "sans": [{"type": "dns", "value": "www.example.com"}, {"type": "ip", "value": "10.1.2.3"}],
               "validity_days": 400, "organization": "Example", "country": "DE",
               "name": "web", "tags": {"env": "prod", "team": "web"}, "key_algorithm": "rsa-2048"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    for field in [
        "id",
        "serial",
        "ca_id",
        "type",
        "common_name",
        "sans",
        "not_before",
        "not_after",
        "status",
        "revoked_at",
        "revocation_reason",
        "leakage_risk",
        "source",
        "has_private_key",
        "tags",
        "certificate_pem",
        "chain_pem",
    ] {
        assert!(c.get(field).is_some(), "missing {field}: {c}");
    }
    assert_eq!(c["status"], "issued");
    assert_eq!(c["source"], "private_ca");
    assert_eq!(c["has_private_key"], true);
    assert_eq!(c["leakage_risk"], true, "400 days > 1 year");
    assert_eq!(c["ca_id"], json!(inter));
    assert_eq!(
        c["sans"],
        json!([{"type": "dns", "value": "www.example.com"}, {"type": "ip", "value": "10.1.2.3"}])
    );
    assert_eq!(
        c["chain_pem"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    let der = der_of(c["certificate_pem"].as_str().unwrap());
    let (_, x) = parse_x509_certificate(&der).unwrap();
    assert_eq!(x.version(), X509Version::V3);
    assert_eq!(x.raw_serial().len(), 16);
    assert_eq!(hex::encode(x.raw_serial()), c["serial"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let age = now - x.validity().not_before.timestamp();
    assert!(
        (55..=120).contains(&age),
        "notBefore a minute in the past: {age}"
    );
    let bc = x.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = x.key_usage().unwrap().unwrap();
    assert!(
        ku.critical && ku.value.digital_signature() && ku.value.key_encipherment(),
        "RSA server: +keyEncipherment"
    );
    let eku = x.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth && !eku.value.client_auth);
    let san = x.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical, "subject is not empty");
    let exts = format!("{:?}", x.extensions());
    assert!(exts.contains(&format!("/crl/{inter}.crl")), "CDP");
    assert!(exts.contains(&format!("/ca/{inter}.crt")), "AIA caIssuers");
    assert!(x
        .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .unwrap()
        .is_some());
    assert!(x
        .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .unwrap()
        .is_some());
    assert!(x.subject().to_string().contains("O=Example"));

    // Quota spent, counted.
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        (iv["quota_remaining"].as_i64(), iv["issued_count"].as_i64()),
        (Some(4), Some(1))
    );

    // openssl verifies the chain.
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    let (_, i) = s.get(&format!("/cas/{inter}")).await;
    std::fs::write(
        dir.path().join("root.pem"),
        r["certificate_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("int.pem"),
        i["certificate_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        c["certificate_pem"].as_str().unwrap(),
    )
    .unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("int.pem"),
        &p("leaf.pem"),
    ]);
    assert!(ok, "{out}");

    // Client certificate from a CSR, with an empty subject: SAN critical, clientAuth.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut empty = rcgen::CertificateParams::default();
    empty.distinguished_name = rcgen::DistinguishedName::new();
    let csr = empty.serialize_request(&key).unwrap().pem().unwrap();
    let (st, cc) = apply(
        s,
        &inter,
        json!({"type": "client", "sans": [{"type": "email", "value": "alice@example.com"}, {"type": "uri", "value": "spiffe://example/alice"}],
               "validity_days": 30, "csr_pem": csr}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{cc}");
    assert_eq!(cc["has_private_key"], false);
    assert_eq!(cc["key_algorithm"], "ec-p384");
    assert_eq!(cc["status"], "expiring", "30 days: about to expire");
    assert_eq!(cc["leakage_risk"], false);
    let der = der_of(cc["certificate_pem"].as_str().unwrap());
    let (_, x) = parse_x509_certificate(&der).unwrap();
    assert_eq!(
        x.public_key().raw,
        key.subject_public_key_info().as_slice(),
        "the CSR's key is certified"
    );
    assert!(
        x.subject_alternative_name().unwrap().unwrap().critical,
        "empty subject → critical SAN"
    );
    assert!(x.extended_key_usage().unwrap().unwrap().value.client_auth);
    let ku = x.key_usage().unwrap().unwrap();
    assert!(!ku.value.key_encipherment());
    use rcgen::PublicKeyData;
}
both_backends!(issued_certificates_follow_the_profile, issue_and_profile);

async fn refusals(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Refusing Root", 10, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"type": "dns", "value": format!("h{i}.example")}))
        .collect();
    let weak = openssl_csr(dir.path(), &["-newkey", "rsa:1024"]);
    let p521 = openssl_csr(
        dir.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    let mut tampered = der_of(&rcgen_csr(&["t.example"]));
    let n = tampered.len();
    tampered[n - 3] ^= 0x01;
    let tampered = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", tampered));
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"type": "server", "common_name": "x", "sans": eleven, "validity_days": 30}),
            "sans",
            "at most 10",
        ),
        (
            json!({"type": "server", "common_name": "x", "sans": [{"type": "email", "value": "a@b.example"}], "validity_days": 30}),
            "sans[0]",
            "cannot go in a server certificate, which takes only DNS names and IP addresses",
        ),
        (
            json!({"type": "client", "common_name": "x", "sans": [{"type": "dns", "value": "a.example"}], "validity_days": 30}),
            "sans[0]",
            "cannot go in a client certificate, which takes only e-mail addresses and URIs",
        ),
        (
            json!({"type": "server", "common_name": "x", "sans": [{"type": "ip", "value": "999.1.1.1"}], "validity_days": 30}),
            "sans[0].value",
            "not an IP",
        ),
        (
            json!({"type": "server", "common_name": "x", "sans": [{"type": "dns", "value": "bad_name.example"}], "validity_days": 30}),
            "sans[0]",
            "holds '_' in the label \"bad_name\"",
        ),
        (
            json!({"type": "server", "common_name": "x", "sans": [{"type": "x400", "value": "a"}], "validity_days": 30}),
            "sans[0].type",
            "not a SAN type",
        ),
        (
            json!({"type": "code", "common_name": "x", "validity_days": 30}),
            "type",
            "server or client",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 0}),
            "validity_days",
            "between 1 and",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 20000}),
            "validity_days",
            "the maximum is",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "key_algorithm": "rsa-1024"}),
            "key_algorithm",
            "accepted",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "key_algorithm": "ec-p256", "csr_pem": rcgen_csr(&["x"])}),
            "csr_pem",
            "not both",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "csr_pem": "hello"}),
            "csr_pem",
            "not PEM",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "csr_pem": tampered}),
            "csr_pem",
            "signature",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "csr_pem": weak}),
            "csr_pem",
            "too weak",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "csr_pem": p521}),
            "csr_pem",
            "P-521",
        ),
        (
            json!({"type": "server", "validity_days": 30}),
            "common_name",
            "common name or at least one SAN",
        ),
        (
            json!({"type": "server", "common_name": "x", "validity_days": 30, "country": "Deutschland"}),
            "country",
            "two-letter",
        ),
    ];
    for (body, field, words) in cases {
        let (st, v) = apply(s, &inter, body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains(words),
            "{words}: {v}"
        );
    }
    // The issuer must be an enabled intermediate.
    let (st, v) = apply(s, &root, server_body("a.example")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("roots issue only intermediates"),
        "{v}"
    );
    let (st, _) = apply(s, "no-such-ca", server_body("a.example")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Quota exhausted: 409 naming the CA and the way out. Nothing was spent by refusals.
    for _ in 0..2 {
        let (st, v) = apply(s, &inter, server_body("a.example")).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, v) = apply(s, &inter, server_body("a.example")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&inter) && detail.contains("assign quota") && detail.contains(&root),
        "{detail}"
    );
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        (iv["quota_remaining"].as_i64(), iv["issued_count"].as_i64()),
        (Some(0), Some(2))
    );
    let (_, audit) = s
        .get(&format!("/audit?action=certificate.issue&target={inter}"))
        .await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["outcome"] == "failure"));
}
both_backends!(every_refusal_names_its_rule, refusals);

async fn short_service(s: &TestServer) {
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "root", "common_name": "Short", "service_months": 3, "quota": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (root, inter) = (
        v["id"].as_str().unwrap().to_string(),
        v["intermediate_id"].as_str().unwrap().to_string(),
    );
    s.enable(&root).await;
    s.enable(&inter).await;
    s.post(
        &format!("/cas/{root}/quota/assign"),
        json!({"intermediate_id": inter, "count": 2}),
    )
    .await;
    let (st, v) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "x", "validity_days": 200}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["detail"].as_str().unwrap().contains("service period"),
        "{v}"
    );
    let (st, _) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "x", "validity_days": 60}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}
both_backends!(short_service_periods_cap_validity, short_service);

async fn inventory(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Inventory Root", 20, 10).await;
    for (cn, env) in [
        ("alpha.example", "prod"),
        ("beta.example", "dev"),
        ("gamma.example", "prod"),
    ] {
        let mut b = server_body(cn);
        b["tags"] = json!({"env": env});
        let (st, _) = apply(s, &inter, b).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (_, v) = s.get(&format!("/certificates?ca_id={inter}")).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let (_, v) = s.get("/certificates?q=BETA").await;
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        1,
        "q matches CN case-insensitively"
    );
    let (_, v) = s.get("/certificates?tag=env%3Dprod").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, v) = s.get("/certificates?tag=env").await;
    assert!(v["items"].as_array().unwrap().len() >= 3);
    let (_, v) = s
        .get(&format!("/certificates?ca_id={inter}&status=expiring"))
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (_, v) = s
        .get(&format!(
            "/certificates?ca_id={inter}&status=issued&type=server&limit=2"
        ))
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let next = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v2) = s
        .get(&format!(
            "/certificates?ca_id={inter}&status=issued&limit=2&cursor={next}"
        ))
        .await;
    assert_eq!(v2["items"].as_array().unwrap().len(), 1);
    assert_ne!(v2["items"][0]["id"], v["items"][0]["id"]);
    let (st, v) = s.get("/certificates?status=valid").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "status");
    // Another tenant sees none of them.
    let (_, tok) = s.tenant_with_token("inv-other", "admin").await;
    let (_, v) = s.call_as(&tok, Method::GET, "/certificates", None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let id = s.get(&format!("/certificates?ca_id={inter}")).await.1["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.call_as(&tok, Method::GET, &format!("/certificates/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call_as(
            &tok,
            Method::POST,
            &format!("/certificates/{id}/revoke"),
            Some(json!({}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}
both_backends!(inventory_filters_and_pages, inventory);

async fn fetch_crl(s: &TestServer, ca: &str) -> Vec<u8> {
    let resp = s
        .client
        .get(format!("{}/crl/{ca}.crl", s.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pkix-crl");
    resp.bytes().await.unwrap().to_vec()
}

async fn revocation(s: &TestServer) {
    let (root, inter) = s.enabled_pair("CRL Root", 10, 5).await;
    let (_, c) = apply(s, &inter, server_body("revoke.example")).await;
    let id = c["id"].as_str().unwrap().to_string();
    let serial = c["serial"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    let (_, i) = s.get(&format!("/cas/{inter}")).await;
    std::fs::write(p("root.pem"), r["certificate_pem"].as_str().unwrap()).unwrap();
    std::fs::write(p("int.pem"), i["certificate_pem"].as_str().unwrap()).unwrap();
    std::fs::write(p("leaf.pem"), c["certificate_pem"].as_str().unwrap()).unwrap();

    let before = fetch_crl(s, &inter).await;
    let (_, crl) = parse_x509_crl(&before).unwrap();
    let n1 = crl.crl_number().unwrap().clone();
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
    std::fs::write(p("crl.der"), &before).unwrap();
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("crl.der"),
        "-out",
        &p("crl.pem"),
    ]);
    assert!(ok, "{out}");
    let verify = || {
        openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            &p("root.pem"),
            "-untrusted",
            &p("int.pem"),
            "-CRLfile",
            &p("crl.pem"),
            &p("leaf.pem"),
        ])
    };
    let (ok, out) = verify();
    assert!(ok, "valid before revocation: {out}");

    let (st, v) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revocation_reason"], "keyCompromise");
    let (st, v) = s
        .post(&format!("/certificates/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("already revoked"));

    // Visible at once (well within a second), with a higher CRL number and the reason.
    let after = fetch_crl(s, &inter).await;
    let (_, crl) = parse_x509_crl(&after).unwrap();
    assert!(crl.crl_number().unwrap() > &n1, "CRL number increases");
    let entry = crl.iter_revoked_certificates().next().expect("entry");
    assert_eq!(hex::encode(entry.raw_serial()), serial);
    assert_eq!(
        entry.reason_code().unwrap().1,
        x509_parser::x509::ReasonCode::KeyCompromise
    );
    std::fs::write(p("crl.der"), &after).unwrap();
    openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("crl.der"),
        "-out",
        &p("crl.pem"),
    ]);
    let (ok, out) = verify();
    assert!(
        !ok && out.contains("revoked"),
        "rejected after revocation: {out}"
    );

    // ETag revalidation; PEM form.
    let resp = s
        .client
        .get(format!("{}/crl/{inter}.crl", s.http_base))
        .send()
        .await
        .unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert!(resp.headers().contains_key("last-modified"));
    let resp = s
        .client
        .get(format!("{}/crl/{inter}.crl", s.http_base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let pem = s
        .client
        .get(format!("{}/crl/{inter}.pem", s.http_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));

    // Admin view of the CRL.
    let (_, info) = s.get(&format!("/cas/{inter}/crl")).await;
    assert_eq!(info["enabled"], true);
    assert_eq!(info["entries"][0]["serial"], json!(serial));
    assert_eq!(info["entries"][0]["reason"], "keyCompromise");

    // Delete: only revoked or expired; a deleted certificate stays on the CRL.
    let (_, other) = apply(s, &inter, server_body("keep.example")).await;
    let other_id = other["id"].as_str().unwrap();
    let (st, v) = s
        .call(Method::DELETE, &format!("/certificates/{other_id}"), None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("revoke it"), "{v}");
    let (st, _) = s
        .call(Method::DELETE, &format!("/certificates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        s.get(&format!("/certificates/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, crl) = parse_x509_crl(&fetch_crl(s, &inter).await)
        .map(|(r, c)| (r.len(), c.iter_revoked_certificates().count()))
        .unwrap();
    assert_eq!(crl, 1);

    // The root's CRL lists a revoked intermediate, signed by the root.
    let (st, _) = s
        .post(
            &format!("/cas/{inter}/revoke"),
            json!({"reason": "cACompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let root_crl = fetch_crl(s, &root).await;
    let (_, crl) = parse_x509_crl(&root_crl).unwrap();
    assert_eq!(
        hex::encode(crl.iter_revoked_certificates().next().unwrap().raw_serial()),
        i["serial"].as_str().unwrap()
    );
    let root_der = der_of(r["certificate_pem"].as_str().unwrap());
    let (_, root_x) = parse_x509_certificate(&root_der).unwrap();
    assert!(crl.verify_signature(root_x.public_key()).is_ok());

    // CRL off: 404 at the URL, and new certificates carry no CDP.
    let (_, inter2) = s.enabled_pair("No CRL Root", 5, 2).await;
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/cas/{inter2}/crl"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let resp = s
        .client
        .get(format!("{}/crl/{inter2}.crl", s.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, c2) = apply(s, &inter2, server_body("nocdp.example")).await;
    let der = der_of(c2["certificate_pem"].as_str().unwrap());
    let (_, x) = parse_x509_certificate(&der).unwrap();
    assert!(
        !format!("{:?}", x.extensions()).contains("/crl/"),
        "no CDP when the CRL is off"
    );
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/cas/{inter2}/crl"),
            Some(json!({"enabled": true, "next_update_hours": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "next_update_hours");
}
both_backends!(revocation_reaches_the_crl_at_once, revocation);

async fn renewal(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Renew Root", 10, 5).await;
    let (_, c) = apply(s, &inter, server_body("renew.example")).await;
    let id = c["id"].as_str().unwrap();
    let (st, v) = s
        .post(&format!("/certificates/{id}/renew"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("force"), "{v}");
    let (st, n) = s
        .post(&format!("/certificates/{id}/renew"), json!({"force": true}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{n}");
    assert_ne!(n["serial"], c["serial"]);
    assert_eq!(n["renewed_from"], json!(id));
    assert_eq!(n["common_name"], c["common_name"]);
    assert_eq!(n["sans"], c["sans"]);
    let key = |v: &Value| {
        let der = der_of(v["certificate_pem"].as_str().unwrap());
        let (_, x) = parse_x509_certificate(&der).unwrap();
        x.public_key().raw.to_vec()
    };
    assert_ne!(key(&n), key(&c), "server-generated: a new key");

    // Expiring certificates renew without force; CSR-based ones keep their key.
    let (_, e) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "e.example", "validity_days": 10, "csr_pem": rcgen_csr(&["e.example"])}),
    )
    .await;
    let (st, n2) = s
        .post(
            &format!("/certificates/{}/renew", e["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{n2}");
    assert_eq!(
        key(&n2),
        key(&e),
        "requester-held key: same key certified again"
    );
    assert_eq!(n2["has_private_key"], false);
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(iv["issued_count"], 4, "renewals spend quota");

    // Revoked certificates do not renew.
    let rid = n2["id"].as_str().unwrap();
    s.post(&format!("/certificates/{rid}/revoke"), json!({}))
        .await;
    let (st, v) = s
        .post(
            &format!("/certificates/{rid}/renew"),
            json!({"force": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("revoked"));
}
both_backends!(renewal_keeps_the_specification, renewal);

async fn exports(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Export Root", 10, 5).await;
    let (_, c) = apply(s, &inter, server_body("export.example")).await;
    let id = c["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let export = |body: Value| {
        let req = s
            .client
            .post(format!("{}/admin/v1/certificates/{id}/export", s.base))
            .bearer_auth(&s.token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (
                r.status(),
                r.headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string()),
                r.bytes().await.unwrap().to_vec(),
            )
        }
    };
    let (st, ct, pem) = export(json!({"format": "pem"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("application/x-pem-file"));
    let pem = String::from_utf8(pem).unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf + intermediate + root"
    );
    assert!(pem.contains("BEGIN PRIVATE KEY"));
    let (_, _, der) = export(json!({"format": "der", "include_chain": false})).await;
    assert_eq!(der, der_of(c["certificate_pem"].as_str().unwrap()));

    for legacy in [false, true] {
        let (st, ct, p12) =
            export(json!({"format": "pkcs12", "password": "s3cret", "legacy": legacy})).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some("application/x-pkcs12"));
        std::fs::write(p("c.p12"), &p12).unwrap();
        let mut args = vec![
            "pkcs12",
            "-info",
            "-in",
            p("c.p12").leak() as &str,
            "-passin",
            "pass:s3cret",
            "-noenc",
        ];
        if legacy {
            args.push("-legacy");
        }
        let (ok, out) = openssl(&args);
        assert!(ok, "legacy={legacy}: {out}");
        assert!(
            out.contains("export.example") && out.contains("PRIVATE KEY"),
            "{out}"
        );
        let mut bad = args.clone();
        bad[5] = "pass:wrong";
        assert!(!openssl(&bad).0, "wrong password fails");
    }
    let (st, _, _) = export(json!({"format": "pkcs12"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "password required");
    let (st, ct, jks) = export(json!({"format": "jks", "password": "changeit"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("application/x-java-keystore"));
    assert_eq!(&jks[..4], &[0xfe, 0xed, 0xfe, 0xed], "JKS magic");
    let (st, _, key) = export(json!({"format": "pkcs8", "password": "s3cret"})).await;
    assert_eq!(st, StatusCode::OK);
    std::fs::write(p("k.pem"), &key).unwrap();
    assert!(String::from_utf8_lossy(&key).contains("ENCRYPTED PRIVATE KEY"));
    let (ok, out) = openssl(&[
        "pkey",
        "-in",
        &p("k.pem"),
        "-passin",
        "pass:s3cret",
        "-noout",
    ]);
    assert!(ok, "{out}");
    let (st, _, _) = export(json!({"format": "zip"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // No key held: key formats are refused, certificate formats work.
    let (_, csr_cert) = apply(s, &inter, json!({"type": "server", "common_name": "csr.example", "validity_days": 30, "csr_pem": rcgen_csr(&["csr.example"])})).await;
    let cid = csr_cert["id"].as_str().unwrap();
    let (st, v) = s
        .post(
            &format!("/certificates/{cid}/export"),
            json!({"format": "pkcs12", "password": "s3cret"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        v["detail"].as_str().unwrap().contains("does not hold"),
        "{v}"
    );
    let (st, v) = s
        .post(
            &format!("/certificates/{cid}/export"),
            json!({"format": "pkcs8"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (_, audit) = s.get(&format!("/audit?target={id}")).await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "certificate.export.pkcs12"));
}
both_backends!(exports_in_every_format, exports);

async fn quota_race(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Race Root", 100, 100).await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let client = s.client.clone();
        let url = format!("{}/admin/v1/cas/{inter}/certificates", s.base);
        let token = s.token.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"type": "server", "common_name": format!("h{i}.example"), "validity_days": 30}))
                .send()
                .await
                .unwrap();
            let st = r.status();
            let v: Value = r.json().await.unwrap();
            (st, v)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            StatusCode::CREATED => ok += 1,
            StatusCode::CONFLICT => {
                assert!(
                    v["detail"]
                        .as_str()
                        .unwrap()
                        .contains("no certificate quota left"),
                    "{v}"
                );
                refused += 1
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((ok, refused), (100, 400));
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        (iv["issued_count"].as_i64(), iv["quota_remaining"].as_i64()),
        (Some(100), Some(0))
    );
    let (_, list) = s
        .get(&format!("/certificates?ca_id={inter}&limit=1000"))
        .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        100,
        "every certificate handed out is recorded"
    );
}
both_backends!(
    five_hundred_concurrent_applies_issue_exactly_the_quota,
    quota_race
);

/// `csr_pem` without `common_name`: the certificate takes the CSR's subject (and SANs),
/// field by field unless the body gives one; the stored specification remembers it, so
/// a renewal keeps the names.
async fn csr_subject(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Subject Root", 10, 5).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["api.example.com".to_string()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for (t, v) in [
        (rcgen::DnType::CommonName, "api.example.com"),
        (rcgen::DnType::OrganizationName, "Acme"),
        (rcgen::DnType::OrganizationalUnitName, "Payments"),
        (rcgen::DnType::LocalityName, "Berlin"),
        (rcgen::DnType::StateOrProvinceName, "Berlin"),
        (rcgen::DnType::CountryName, "DE"),
    ] {
        p.distinguished_name.push(t, v);
    }
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    let (st, c) = apply(
        s,
        &inter,
        json!({"type": "server", "validity_days": 30, "csr_pem": csr, "organizational_unit": "Platform"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["common_name"], "api.example.com");
    assert_eq!(c["organization"], "Acme");
    assert_eq!(
        c["organizational_unit"], "Platform",
        "the body overrides a field"
    );
    assert_eq!(c["country"], "DE");
    assert_eq!(
        c["sans"],
        json!([{"type": "dns", "value": "api.example.com"}])
    );
    let der = der_of(c["certificate_pem"].as_str().unwrap());
    let (_, x) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        x.subject().to_string(),
        "C=DE, ST=Berlin, L=Berlin, O=Acme, OU=Platform, CN=api.example.com"
    );
    let (st, r) = s
        .post(
            &format!("/certificates/{}/renew", c["id"].as_str().unwrap()),
            json!({"force": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["common_name"], "api.example.com");
    assert_eq!(r["organization"], "Acme");
}
both_backends!(csr_subject_fills_the_certificate, csr_subject);

/// Server certificates always carry a SAN: a common name that is a DNS name or an IP
/// becomes one; anything else is refused naming the rule. And no name on any field may
/// carry NUL, control or bidi-override characters; DNS names are LDH or A-labels.
async fn names_rules(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Names Root", 20, 10).await;
    let (st, c) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "Host.Example.com", "validity_days": 30}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(
        c["sans"],
        json!([{"type": "dns", "value": "host.example.com"}])
    );
    let leaf_der = der_of(c["certificate_pem"].as_str().unwrap());
    let (_, x) = X509Certificate::from_der(&leaf_der).unwrap();
    let san = x.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names.len(), 1);
    let (st, c) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "10.9.8.7", "validity_days": 30}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["sans"], json!([{"type": "ip", "value": "10.9.8.7"}]));
    let (st, e) = apply(
        s,
        &inter,
        json!({"type": "server", "common_name": "Payments printer", "validity_days": 30}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "sans");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("must carry a subjectAltName"),
        "{e}"
    );

    for (body, field, needle) in [
        (
            json!({"type": "server", "common_name": "good.example\u{0}.evil.com", "sans": [{"type": "dns", "value": "good.example"}], "validity_days": 30}),
            "common_name",
            "U+0000 (NUL)",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "organization": "Acme\u{202E}gnp.exe", "validity_days": 30}),
            "organization",
            "U+202E (RIGHT-TO-LEFT OVERRIDE)",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "locality": "Ber\u{1b}[31mlin", "validity_days": 30}),
            "locality",
            "U+001B (ESCAPE)",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "sans": [{"type": "dns", "value": "a.example"}, {"type": "dns", "value": "b\u{0}.example"}], "validity_days": 30}),
            "sans[1].value",
            "U+0000 (NUL)",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "sans": [{"type": "dns", "value": "xn--zz.example"}], "validity_days": 30}),
            "sans[0]",
            "not a valid A-label",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "sans": [{"type": "dns", "value": "müller.example"}], "validity_days": 30}),
            "sans[0]",
            "A-labels",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "sans": [{"type": "dns", "value": format!("{}.example", "a".repeat(64))}], "validity_days": 30}),
            "sans[0]",
            "at most 63",
        ),
        (
            json!({"type": "client", "common_name": "ops", "sans": [{"type": "email", "value": "ops\u{200B}@example.com"}], "validity_days": 30}),
            "sans[0]",
            "U+200B (ZERO WIDTH SPACE)",
        ),
        (
            json!({"type": "server", "common_name": "ok.example", "sans": [{"type": "email", "value": "a@acme.com"}], "validity_days": 30}),
            "sans[0]",
            "the e-mail address \"a@acme.com\" cannot go in a server certificate",
        ),
    ] {
        let (st, e) = apply(s, &inter, body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
        let detail = e["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: {detail}");
        assert!(
            !detail.contains("Dns(") && !detail.contains("Email("),
            "no debug text: {detail}"
        );
    }
    // A valid A-label is fine.
    let (st, c) = apply(s, &inter, server_body("xn--mller-kva.example")).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
}
both_backends!(names_follow_the_rules_on_the_admin_door, names_rules);
