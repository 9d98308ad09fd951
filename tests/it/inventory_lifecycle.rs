//! Inventory queries and certificate lifecycle answers of the admin API that the
//! conformance suite used to check with curl + jq (conformance/openssl-leaf.sh and
//! openssl-export.sh now only judge the certificates themselves): search by a SAN, the
//! type filter, an exact tag, a refused delete leaving the certificate in place, a
//! deleted certificate gone from the lists, and jks like the other key formats refused
//! when the server holds no key.

use crate::common::{openssl, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn issue(s: &TestServer, ca: &str, body: Value) -> String {
    let (st, v) = s.post(&format!("/cas/{ca}/certificates"), body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn csr_pem(cn: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (key, csr) = (dir.path().join("k.pem"), dir.path().join("r.csr"));
    let (ok, out) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    std::fs::read_to_string(csr).unwrap()
}

async fn search_and_filters(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Search Root", 10, 5).await;
    let www = issue(
        s,
        &inter,
        json!({"type": "server", "common_name": "www.search.example",
               "sans": [{"type": "dns", "value": "www.search.example"}, {"type": "dns", "value": "api.search.example"}],
               "validity_days": 90, "tags": {"env": "conformance", "suite": "g"}}),
    )
    .await;
    let other = issue(
        s,
        &inter,
        json!({"type": "server", "common_name": "other.search.example",
               "sans": [{"type": "dns", "value": "other.search.example"}],
               "validity_days": 90, "tags": {"suite": "h"}}),
    )
    .await;
    let client = issue(
        s,
        &inter,
        json!({"type": "client", "common_name": "device1", "csr_pem": csr_pem("device1"),
               "sans": [{"type": "email", "value": "device1@search.example"}], "validity_days": 90}),
    )
    .await;

    // q= matches a SAN that is not the common name.
    let (st, v) = s
        .get(&format!("/certificates?q=api.search&ca_id={inter}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![www.clone()], "{v}");
    // type=client lists client certificates only.
    let (_, v) = s
        .get(&format!("/certificates?type=client&ca_id={inter}"))
        .await;
    assert_eq!(ids(&v), vec![client.clone()], "{v}");
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["type"] == "client"));
    let (_, v) = s
        .get(&format!("/certificates?type=server&ca_id={inter}"))
        .await;
    let mut servers = ids(&v);
    servers.sort();
    let mut want = vec![www.clone(), other.clone()];
    want.sort();
    assert_eq!(servers, want, "{v}");
    // tag=KEY=VALUE matches the value exactly.
    let (_, v) = s.get("/certificates?tag=suite%3Dg").await;
    assert_eq!(ids(&v), vec![www.clone()], "{v}");
    // GET by id returns the certificate with its tags.
    let (st, v) = s.get(&format!("/certificates/{www}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["id"], json!(www));
    assert_eq!(v["tags"]["env"], "conformance");
    assert!(v["certificate_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}
both_backends!(inventory_search_and_filters, search_and_filters);

async fn deletion(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Delete Root", 10, 5).await;
    let id = issue(
        s,
        &inter,
        json!({"type": "server", "common_name": "keep.example",
               "sans": [{"type": "dns", "value": "keep.example"}], "validity_days": 90}),
    )
    .await;
    // A valid certificate is not deleted, and the refusal changes nothing.
    let (st, v) = s
        .call(Method::DELETE, &format!("/certificates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = s.get(&format!("/certificates/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "issued");

    // Revoked, then deleted: gone from GET and from the lists (revoked ones too).
    let (st, v) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s
        .get(&format!("/certificates?ca_id={inter}&status=revoked"))
        .await;
    assert_eq!(ids(&v), vec![id.clone()], "listed while revoked: {v}");
    let (st, v) = s
        .call(Method::DELETE, &format!("/certificates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.get(&format!("/certificates/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for filter in ["&status=revoked", ""] {
        let (st, v) = s.get(&format!("/certificates?ca_id={inter}{filter}")).await;
        assert_eq!(st, StatusCode::OK);
        assert!(!ids(&v).contains(&id), "{filter}: {v}");
    }
}
both_backends!(a_deleted_certificate_leaves_the_lists, deletion);

async fn keyless_exports(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Keyless Root", 10, 5).await;
    let id = issue(
        s,
        &inter,
        json!({"type": "client", "common_name": "device2", "csr_pem": csr_pem("device2"),
               "sans": [{"type": "email", "value": "device2@keyless.example"}], "validity_days": 90}),
    )
    .await;
    for format in ["pkcs12", "jks", "pkcs8"] {
        let (st, v) = s
            .post(
                &format!("/certificates/{id}/export"),
                json!({"format": format, "password": "conformance-Pw-1"}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{format}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("does not hold"),
            "{format}: {v}"
        );
    }
}
both_backends!(key_formats_need_a_key_the_server_holds, keyless_exports);
