//! CSRs made here: the request openssl reads (subject, names, signature), the key kept
//! sealed and never shown, the issuance rules' refusals, tenancy and roles.

use crate::common::{openssl, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn csrs(s: &TestServer) {
    let (st, c) = s
        .post(
            "/csrs",
            json!({
                "common_name": "shop.example.com",
                "sans": [{"type": "dns", "value": "shop.example.com"},
                         {"type": "dns", "value": "www.shop.example.com"},
                         {"type": "ip", "value": "10.0.0.5"}],
                "organization": "Example GmbH", "country": "DE",
                "key_algorithm": "rsa-2048"
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let pem = c["csr_pem"].as_str().unwrap();
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{pem}"
    );
    assert!(
        !c.to_string().contains("PRIVATE KEY"),
        "the key never leaves: {c}"
    );
    assert_eq!(c["key_algorithm"], "rsa-2048");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("req.pem");
    std::fs::write(&file, pem).unwrap();
    let (ok, out) = openssl(&[
        "req",
        "-in",
        file.to_str().unwrap(),
        "-noout",
        "-verify",
        "-text",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("verify OK") || out.contains("Certificate request self-signature verify OK"),
        "{out}"
    );
    assert!(
        out.contains("CN=shop.example.com") || out.contains("CN = shop.example.com"),
        "{out}"
    );
    assert!(
        out.contains("O=Example GmbH") || out.contains("O = Example GmbH"),
        "{out}"
    );
    assert!(out.contains("DNS:www.shop.example.com"), "{out}");
    assert!(out.contains("IP Address:10.0.0.5"), "{out}");
    assert!(out.contains("Public-Key: (2048 bit)"), "{out}");

    // Default key: EC P-256; a CN alone is enough.
    let (st, c2) = s.post("/csrs", json!({"common_name": "device-7"})).await;
    assert_eq!(st, StatusCode::CREATED, "{c2}");
    assert_eq!(c2["key_algorithm"], "ec-p256");

    // Shown and listed, the key sealed in the database.
    let (st, got) = s.get(&format!("/csrs/{id}")).await;
    assert_eq!((st, got["csr_pem"].as_str()), (StatusCode::OK, Some(pem)));
    let (_, all) = s.get("/csrs?limit=1").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(all["next_cursor"], json!(id));
    let sealed = {
        let mut conn = s.app().store.reader().acquire().await.unwrap();
        let (_, tenants) = s.get("/tenants").await;
        let tenant = tenants["items"][0]["id"].as_str().unwrap().to_string();
        store::csrs::get(&mut conn, &tenant, &id)
            .await
            .unwrap()
            .unwrap()
            .key_sealed
    };
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));

    // The issuance rules, each naming its field.
    for (body, field) in [
        (
            json!({"common_name": "a.example", "country": "Germany"}),
            "country",
        ),
        (
            json!({"common_name": "a.example", "key_algorithm": "dsa-1024"}),
            "key_algorithm",
        ),
        (json!({}), "common_name"),
        (
            json!({"sans": [{"type": "dns", "value": "bad name!"}]}),
            "sans[0]",
        ),
        (
            json!({"common_name": "a", "sans": [{"type": "email", "value": "a@b.example"}]}),
            "sans[0]",
        ),
        (json!({"common_name": "a", "type": "robot"}), "type"),
        (
            json!({"common_name": "a.example", "sans": [{"type": "fax", "value": "1"}]}),
            "sans[0].type",
        ),
    ] {
        let (st, e) = s.post("/csrs", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert!(
            e["field"]
                .as_str()
                .unwrap()
                .starts_with(field.split('[').next().unwrap()),
            "{body}: {e}"
        );
    }

    // Tenancy and roles.
    let (_, other) = s.tenant_with_token("csr-other", "admin").await;
    let (st, _) = s
        .call_as(&other, Method::GET, &format!("/csrs/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call_as(&other, Method::DELETE, &format!("/csrs/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, auditor) = s.tenant_with_token("csr-auditor", "auditor").await;
    let (st, _) = s
        .call_as(
            &auditor,
            Method::POST,
            "/csrs",
            Some(json!({"common_name": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Deleted: gone with its key; audited.
    let (st, _) = s.call(Method::DELETE, &format!("/csrs/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(&format!("/csrs/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, audit) = s.get("/audit?action=csr.create").await;
    assert!(audit["items"].as_array().unwrap().len() >= 2, "{audit}");
}
both_backends!(csrs_are_made_here_with_sealed_keys, csrs);

/// The certificate another CA (openssl here) issues for a CSR made here is uploaded with
/// the CSR's id instead of a key; it must carry that CSR's key.
async fn upload_with_csr_id(s: &TestServer) {
    use crate::managed::{post_bytes, write};
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let (ok, out) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.pem"),
        "-subj",
        "/CN=Other CA",
        "-days",
        "30",
    ]);
    assert!(ok, "{out}");
    let mut csr_ids = Vec::new();
    let mut certs = Vec::new();
    for cn in ["one.csr.example", "two.csr.example"] {
        let (st, c) = s
            .post(
                "/csrs",
                json!({"common_name": cn, "sans": [{"type": "dns", "value": cn}]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{c}");
        let req = write(
            dir.path(),
            &format!("{cn}.csr"),
            c["csr_pem"].as_str().unwrap(),
        );
        let (ok, out) = openssl(&[
            "x509",
            "-req",
            "-in",
            &req,
            "-CA",
            &d("ca.pem"),
            "-CAkey",
            &d("ca.key"),
            "-days",
            "20",
            "-out",
            &d(&format!("{cn}.pem")),
        ]);
        assert!(ok, "{out}");
        csr_ids.push(c["id"].as_str().unwrap().to_string());
        certs.push(std::fs::read_to_string(d(&format!("{cn}.pem"))).unwrap());
    }
    let chain = std::fs::read_to_string(d("ca.pem")).unwrap();

    // The wrong CSR: 422 on csr_id naming both public keys' digests.
    let (st, e) = s
        .post(
            "/managed",
            json!({"name": "wrong", "certificate_pem": certs[0], "csr_id": csr_ids[1],
                   "chain_pem": chain}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "csr_id", "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(detail.contains(&csr_ids[1]), "{detail}");
    assert_eq!(
        detail.matches("SHA-256 ").count(),
        2,
        "names both keys: {detail}"
    );
    // Neither, both, unknown, another tenant's.
    for (b, field) in [
        (
            json!({"name": "n", "certificate_pem": certs[0]}),
            "private_key_pem",
        ),
        (
            json!({"name": "n", "certificate_pem": certs[0], "csr_id": csr_ids[0],
                   "private_key_pem": "x"}),
            "csr_id",
        ),
        (
            json!({"name": "n", "certificate_pem": certs[0], "csr_id": "nope"}),
            "csr_id",
        ),
    ] {
        let (st, e) = s.post("/managed", b.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}: {e}");
        assert_eq!(e["field"], field, "{b}: {e}");
    }
    let (_, other) = s.tenant_with_token("csr-upload-other", "admin").await;
    let (st, e) = s
        .call_as(
            &other,
            Method::POST,
            "/managed",
            Some(
                json!({"name": "n", "certificate_pem": certs[0], "csr_id": csr_ids[0],
                        "chain_pem": chain}),
            ),
        )
        .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("csr_id")),
        "{e}"
    );

    // The right one: kept with the CSR's key, which exports and matches the certificate.
    let (st, m) = s
        .post(
            "/managed",
            json!({"name": "from csr", "certificate_pem": certs[0], "csr_id": csr_ids[0],
                   "chain_pem": chain}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!(m["has_private_key"], true);
    let (st, _, key) = post_bytes(
        s,
        &format!("/managed/{}/export", m["id"].as_str().unwrap()),
        json!({"format": "pkcs8"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let kf = write(dir.path(), "k.pem", &key);
    let (_, a) = openssl(&["pkey", "-pubout", "-in", &kf]);
    let (_, b) = openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        &d("one.csr.example.pem"),
    ]);
    assert!(a.contains("PUBLIC KEY") && a == b, "{a} vs {b}");
}
both_backends!(
    a_certificate_answering_a_csr_is_uploaded_with_its_id,
    upload_with_csr_id
);
