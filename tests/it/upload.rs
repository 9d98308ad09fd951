//! Enabling CAs with an uploaded certificate and key: the happy path and each rule's own
//! refusal.

use crate::common::{openssl, TestServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;
use serde_json::json;

struct Made {
    cert_pem: String,
    key: KeyPair,
}

fn ca_params(cn: &str, ca: bool, ku: bool, days_from: i64, days_to: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.remove(DnType::CommonName);
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(days_from);
    p.not_after = now + time::Duration::days(days_to);
    p.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    if ku {
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    p
}

fn self_signed(cn: &str, ca: bool, ku: bool, days_from: i64, days_to: i64) -> Made {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(cn, ca, ku, days_from, days_to)
        .self_signed(&key)
        .unwrap();
    Made {
        cert_pem: cert.pem(),
        key,
    }
}

fn signed_by(cn: &str, parent: &Made) -> Made {
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_ca_cert_pem(&parent.cert_pem, &parent.key).unwrap();
    let mut p = ca_params(cn, true, true, -1, 365);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = p.signed_by(&key, &issuer).unwrap();
    Made {
        cert_pem: cert.pem(),
        key,
    }
}

async fn upload(
    s: &TestServer,
    id: &str,
    cert: &str,
    key: &str,
) -> (StatusCode, serde_json::Value) {
    s.post(
        &format!("/cas/{id}/enable"),
        json!({"mode": "upload", "certificate_pem": cert, "private_key_pem": key}),
    )
    .await
}

async fn uploads(s: &TestServer) {
    let (root, inter) = s.buy_root("Uploaded Root", "ec-p256", 5).await;
    let good = self_signed("Corp Root", true, true, -1, 3650);

    // Each rule, its own message, the CA stays pending.
    let cases: Vec<(String, String, &str, &str)> = vec![
        ("not a pem".into(), good.key.serialize_pem(), "certificate_pem", "not a PEM certificate"),
        (
            good.cert_pem.clone(),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n".into(),
            "private_key_pem",
            "openssl pkey",
        ),
        (good.cert_pem.clone(), "garbage".into(), "private_key_pem", "not a PEM private key"),
        (good.cert_pem.clone(), KeyPair::generate().unwrap().serialize_pem(), "private_key_pem", "does not match"),
        {
            let m = self_signed("Leafish", false, true, -1, 365);
            (m.cert_pem, m.key.serialize_pem(), "certificate_pem", "CA:TRUE")
        },
        {
            let m = self_signed("No KU", true, false, -1, 365);
            (m.cert_pem, m.key.serialize_pem(), "certificate_pem", "keyCertSign")
        },
        {
            let m = self_signed("Old", true, true, -30, -1);
            (m.cert_pem, m.key.serialize_pem(), "certificate_pem", "expired")
        },
        // A subject with a multi-valued RDN (O + CN in one RDN): enabled, it could never
        // sign anything.
        {
            let dir = tempfile::tempdir().unwrap();
            let (k, c) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
            let (ok, out) = openssl(&[
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", k.to_str().unwrap(), "-out", c.to_str().unwrap(),
                "-subj", "/CN=Multi Root+O=Corp", "-multivalue-rdn", "-days", "365",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            assert!(ok, "{out}");
            (
                std::fs::read_to_string(&c).unwrap(),
                std::fs::read_to_string(&k).unwrap(),
                "certificate_pem",
                "multi-valued",
            )
        },
    ];
    for (cert, key, field, words) in cases {
        let (st, v) = upload(s, &root, &cert, &key).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains(words),
            "{words}: {v}"
        );
    }
    let (_, v) = s.get(&format!("/cas/{root}")).await;
    assert_eq!(v["status"], "pending");

    // The real thing.
    let (st, v) = upload(s, &root, &good.cert_pem, &good.key.serialize_pem()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "enabled");
    assert_eq!(v["key_source"], "uploaded");
    assert_eq!(v["key_algorithm"], "ec-p256");
    assert_eq!(
        v["certificate_pem"].as_str().unwrap().trim(),
        good.cert_pem.trim()
    );
    assert!(v["subject"].as_str().unwrap().contains("Corp Root"));

    // An intermediate signed by another root is refused; one signed by this root works.
    let stranger = self_signed("Other Root", true, true, -1, 3650);
    let wrong = signed_by("Wrong Parent", &stranger);
    let (st, v) = upload(s, &inter, &wrong.cert_pem, &wrong.key.serialize_pem()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("not signed by the parent"),
        "{v}"
    );
    let right = signed_by("Right Parent", &good);
    let (st, v) = upload(s, &inter, &right.cert_pem, &right.key.serialize_pem()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key_source"], "uploaded");

    // The uploaded key really signs: assign quota, then the intermediate is usable.
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // mode checks.
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/enable"),
            json!({"mode": "upload", "certificate_pem": right.cert_pem, "private_key_pem": right.key.serialize_pem()}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "already enabled: {v}");
    assert!(v["detail"].as_str().unwrap().contains("enabled"));
    let (r2, _) = s.buy_root("R2", "ec-p256", 1).await;
    let (st, v) = s
        .post(&format!("/cas/{r2}/enable"), json!({"mode": "upload"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "certificate_pem");
    let (st, v) = s
        .post(&format!("/cas/{r2}/enable"), json!({"mode": "magic"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "mode");

    // PKCS#1 RSA keys (as `openssl genrsa -traditional` writes them) are accepted.
    let (r3, _) = s.buy_root("RSA upload", "rsa-2048", 1).await;
    let rsa_key =
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let rsa_cert = ca_params("RSA Root", true, true, -1, 365)
        .self_signed(&rsa_key)
        .unwrap();
    let (st, v) = upload(s, &r3, &rsa_cert.pem(), &rsa_key.serialize_pem()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key_algorithm"], "rsa-2048");
}
both_backends!(upload_validates_each_rule, uploads);
