//! CA hierarchy lifecycle over the admin API: purchase, enable, quota, revoke, reset,
//! refund, remove — every transition and every refusal, on both backends.

use crate::common::{openssl, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use x509_parser::oid_registry;
use x509_parser::prelude::*;

fn pem_to_der(pem: &str) -> Vec<u8> {
    ::pem::parse(pem).expect("PEM").into_contents()
}

async fn bootstrap_is_ready(s: &TestServer) {
    let (st, v) = s.get("/cas").await;
    assert_eq!(st, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    let root = items.iter().find(|c| c["kind"] == "root").unwrap();
    let inter = items.iter().find(|c| c["kind"] == "intermediate").unwrap();
    assert_eq!(root["status"], "enabled");
    assert_eq!(root["common_name"], "Vellum Root CA");
    assert_eq!(root["quota_total"], 1000);
    assert_eq!(root["quota_available"], 900);
    assert_eq!(inter["status"], "enabled");
    assert_eq!(inter["common_name"], "Vellum Issuing CA");
    assert_eq!(inter["parent_id"], root["id"]);
    assert_eq!(inter["quota_assigned"], 100);
    // The server's own TLS certificate went through the issuance path and spent one unit.
    assert_eq!(inter["issued_count"], 1);
    assert_eq!(inter["quota_remaining"], 99);
    assert!(v["next_cursor"].is_null());
    let root_pem = std::fs::read_to_string(s.data_dir().join("root.pem")).unwrap();
    assert_eq!(root["certificate_pem"].as_str().unwrap(), root_pem);
}
both_backends!(
    bootstrap_creates_an_enabled_hierarchy_with_quota,
    bootstrap_is_ready
);

async fn lifecycle(s: &TestServer) {
    let (root, inter) = s.buy_root("Acme Root", "ec-p384", 0).await;
    let (st, v) = s.get(&format!("/cas/{root}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "pending");
    assert_eq!(v["quota_total"], 0);
    assert!(v["certificate_pem"].is_null());
    assert_eq!(v["refundable"], true);

    // Intermediate before root: 409 naming the root's state.
    let (st, v) = s
        .post(&format!("/cas/{inter}/enable"), json!({"mode": "generate"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("pending"), "{v}");

    let r = s.enable(&root).await;
    assert_eq!(r["status"], "enabled");
    assert_eq!(r["key_algorithm"], "ec-p384");
    let i = s.enable(&inter).await;
    assert_eq!(i["status"], "enabled");

    // Enabling twice: 409 naming the state.
    let (st, v) = s
        .post(&format!("/cas/{root}/enable"), json!({"mode": "generate"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("enabled"), "{v}");

    // Root profile.
    let root_der = pem_to_der(r["certificate_pem"].as_str().unwrap());
    let (_, rc) = parse_x509_certificate(&root_der).unwrap();
    let bc = rc.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
    let ku = rc.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(rc
        .get_extension_unique(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .unwrap()
        .is_some());
    assert_eq!(rc.raw_serial().len(), 16, "128-bit serial");
    assert!(rc.subject().to_string().contains("CN=Acme Root"));

    // Intermediate profile: pathLen 0, AKI, CDP and AIA pointing at the root's URLs.
    let inter_der = pem_to_der(i["certificate_pem"].as_str().unwrap());
    let (_, ic) = parse_x509_certificate(&inter_der).unwrap();
    let bc = ic.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint == Some(0));
    let ku = ic.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(ic.verify_signature(Some(rc.public_key())).is_ok());
    assert!(ic
        .get_extension_unique(&oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .unwrap()
        .is_some());
    let ext_text = format!("{:?}", ic.extensions());
    assert!(
        ext_text.contains(&format!("/crl/{root}.crl")),
        "CDP names the root's CRL"
    );
    assert!(
        ext_text.contains(&format!("/ca/{root}.crt")),
        "AIA names the root's certificate"
    );
    assert_eq!(
        i["crl_url"].as_str().unwrap(),
        format!("{}/crl/{inter}.crl", s.app().config.public_http_url())
    );

    // openssl agrees.
    let dir = tempfile::tempdir().unwrap();
    let rp = dir.path().join("root.pem");
    let ip = dir.path().join("inter.pem");
    std::fs::write(&rp, r["certificate_pem"].as_str().unwrap()).unwrap();
    std::fs::write(&ip, i["certificate_pem"].as_str().unwrap()).unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        rp.to_str().unwrap(),
        ip.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");

    // The AIA URL serves the root certificate on the plain-HTTP listener.
    let resp = reqwest::get(format!("{}/ca/{root}.crt", s.http_base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pkix-cert");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), root_der);

    // Quota: purchase, assign, over-assign, assign to a pending intermediate.
    let (st, v) = s
        .post(&format!("/cas/{root}/quota/purchase"), json!({"count": 20}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["quota_total"].as_i64(), v["quota_available"].as_i64()),
        (Some(20), Some(20))
    );
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 15}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["quota_available"], 5);
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 6}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        v["detail"].as_str().unwrap().contains("5"),
        "names what is available: {v}"
    );
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        (
            iv["quota_remaining"].as_i64(),
            iv["quota_assigned"].as_i64()
        ),
        (Some(15), Some(15))
    );

    let (st, second) = s
        .post("/cas", json!({"kind": "intermediate", "parent_id": root, "common_name": "Dept B", "key_algorithm": "rsa-2048"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    assert_eq!(second["status"], "pending");
    assert_eq!(second["parent_id"], json!(root));
    let second = second["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": second, "count": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("pending"), "{v}");
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "count");
    let (st, _) = s
        .post(&format!("/cas/{inter}/quota/purchase"), json!({"count": 1}))
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "quota is purchased for roots only"
    );

    // Revoke a root with enabled children: refused, children named.
    let (st, v) = s.post(&format!("/cas/{root}/revoke"), json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains(&inter), "{v}");

    // Reset the intermediate: back to pending, key discarded, unspent quota back at the root.
    let (st, v) = s.post(&format!("/cas/{inter}/reset"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "pending");
    assert!(v["certificate_pem"].is_null());
    assert_eq!(v["quota_remaining"], 0);
    let (_, rv) = s.get(&format!("/cas/{root}")).await;
    assert_eq!(rv["quota_available"], 20);
    let old_serial = i["serial"].as_str().unwrap().to_string();
    let again = s.enable(&inter).await;
    assert_ne!(
        again["serial"].as_str().unwrap(),
        old_serial,
        "a new certificate"
    );

    // Revoke the intermediate with a reason; a second revoke is 409 naming the state.
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revocation_reason"], "keyCompromise");
    assert!(v["revoked_at"].is_string());
    let (st, v) = s.post(&format!("/cas/{inter}/revoke"), json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("revoked"), "{v}");
    let (st, v) = s
        .post(
            &format!("/cas/{root}/revoke"),
            json!({"reason": "certificateHold"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "reason");

    // Removing: only revoked or refunded.
    let (st, _) = s
        .call(reqwest::Method::DELETE, &format!("/cas/{root}"), None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, v) = s
        .call(reqwest::Method::DELETE, &format!("/cas/{inter}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "removed");
    let (_, list) = s.get(&format!("/cas?parent_id={root}")).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&inter.as_str()),
        "removed CAs are hidden from lists"
    );
    assert!(ids.contains(&second.as_str()));
    let (st, v) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(st, StatusCode::OK, "kept for audit");
    assert_eq!(v["status"], "removed");
    let (_, list) = s.get("/cas?status=removed").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
both_backends!(full_lifecycle_and_refusals, lifecycle);

async fn refunds(s: &TestServer) {
    let (root, inter) = s.buy_root("Refundable", "ec-p256", 10).await;
    let (st, v) = s.post(&format!("/cas/{root}/refund"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "refunded");
    assert_eq!(v["quota_total"], 0, "quota cancelled");
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        iv["status"], "refunded",
        "the bundled intermediate goes with the root"
    );
    let (st, v) = s
        .post(&format!("/cas/{root}/enable"), json!({"mode": "generate"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("refunded"));
    let (st, _) = s
        .call(reqwest::Method::DELETE, &format!("/cas/{root}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, iv) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(iv["status"], "removed");

    // An enabled CA must be reset first; after the window, no refund.
    let (root2, _) = s.buy_root("Late", "ec-p256", 10).await;
    s.enable(&root2).await;
    let (st, v) = s.post(&format!("/cas/{root2}/refund"), json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("reset"), "{v}");
    let (st, v) = s.post(&format!("/cas/{root2}/reset"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.sql(&format!(
        "UPDATE cas SET purchased_at = purchased_at - 8 * 86400 WHERE id = '{root2}'"
    ))
    .await;
    let (st, v) = s.post(&format!("/cas/{root2}/refund"), json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("7 days"), "{v}");
    let (_, v) = s.get(&format!("/cas/{root2}")).await;
    assert_eq!(v["refundable"], false);
}
both_backends!(refund_rules, refunds);

async fn reset_refusals(s: &TestServer) {
    let d = s.app().defaults.clone();
    // The bootstrap root has an enabled intermediate; the intermediate has a live
    // certificate (the server's own TLS certificate).
    let (st, v) = s
        .post(&format!("/cas/{}/reset", d.root_id), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("enabled intermediates"),
        "{v}"
    );
    let (st, v) = s
        .post(&format!("/cas/{}/reset", d.intermediate_id), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("unexpired, unrevoked"),
        "{v}"
    );
    let (_, v) = s.get(&format!("/cas/{}", d.intermediate_id)).await;
    assert_eq!(v["status"], "enabled", "a refused reset changes nothing");
    let (st, _) = s.post("/cas/does-not-exist/reset", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
both_backends!(reset_is_refused_while_in_use, reset_refusals);

async fn all_algorithms(s: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["rsa-2048", "rsa-3072", "ec-p256", "ec-p384", "ed25519"] {
        let (root, inter) = s.buy_root(&format!("Root {alg}"), alg, 1).await;
        let r = s.enable(&root).await;
        let i = s.enable(&inter).await;
        assert_eq!(r["key_algorithm"], alg);
        assert_eq!(i["key_algorithm"], alg);
        let rp = dir.path().join(format!("{alg}-root.pem"));
        let ip = dir.path().join(format!("{alg}-inter.pem"));
        std::fs::write(&rp, r["certificate_pem"].as_str().unwrap()).unwrap();
        std::fs::write(&ip, i["certificate_pem"].as_str().unwrap()).unwrap();
        let (ok, out) = openssl(&[
            "verify",
            "-CAfile",
            rp.to_str().unwrap(),
            ip.to_str().unwrap(),
        ]);
        assert!(ok, "{alg}: {out}");
    }
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "root", "common_name": "x", "key_algorithm": "dsa-1024"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "key_algorithm");
    assert!(
        v["detail"].as_str().unwrap().contains("ed25519"),
        "lists accepted algorithms: {v}"
    );
}
both_backends!(
    every_key_algorithm_builds_a_verifiable_chain,
    all_algorithms
);

async fn purchase_validation(s: &TestServer) {
    let cases = [
        (json!({"kind": "root", "common_name": ""}), "common_name"),
        (
            json!({"kind": "root", "common_name": "x", "validity_days": 0}),
            "validity_days",
        ),
        (
            json!({"kind": "root", "common_name": "x", "service_months": 0}),
            "service_months",
        ),
        (
            json!({"kind": "root", "common_name": "x", "quota": -1}),
            "quota",
        ),
        (
            json!({"kind": "root", "common_name": "x", "country": "Germany"}),
            "country",
        ),
        (json!({"kind": "branch", "common_name": "x"}), "kind"),
        (
            json!({"kind": "intermediate", "common_name": "x"}),
            "parent_id",
        ),
        (
            json!({"kind": "intermediate", "common_name": "x", "parent_id": "nope"}),
            "parent_id",
        ),
        (
            json!({"kind": "root", "common_name": "x", "colour": "blue"}),
            "colour",
        ),
        (json!({"kind": "root"}), "common_name"),
        (json!({"kind": "root", "common_name": 5}), "common_name"),
    ];
    for (body, field) in cases {
        let (st, v) = s.post("/cas", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert_eq!(v["field"], field, "{body} → {v}");
        assert!(!v["detail"].as_str().unwrap().is_empty());
    }
    let d = s.app().defaults.clone();
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "intermediate", "common_name": "x", "parent_id": d.intermediate_id}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("intermediate"));
    let (st, v) = s
        .post("/cas", json!({"kind": "root", "common_name": "Full", "organization": "Acme", "organizational_unit": "PKI",
                             "country": "DE", "state": "Berlin", "locality": "Berlin", "key_algorithm": "ec-p256"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["quota_total"], 10, "default quota");
    let id = v["id"].as_str().unwrap();
    let e = s.enable(id).await;
    let der = pem_to_der(e["certificate_pem"].as_str().unwrap());
    let (_, c) = parse_x509_certificate(&der).unwrap();
    let subject = c.subject().to_string();
    for part in [
        "C=DE",
        "ST=Berlin",
        "L=Berlin",
        "O=Acme",
        "OU=PKI",
        "CN=Full",
    ] {
        assert!(subject.contains(part), "{subject}");
    }
    assert_eq!(e["subject"].as_str().unwrap(), subject);
}
both_backends!(purchases_validate_every_field, purchase_validation);

async fn pagination(s: &TestServer) {
    for i in 0..3 {
        s.buy_root(&format!("Page {i}"), "ec-p256", 1).await;
    }
    // 2 bootstrap + 6 new = 8 CAs.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/cas?limit=3&cursor={c}"),
            None => "/cas?limit=3".to_string(),
        };
        let (st, v) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK);
        for item in v["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup, seen, "no CA twice, creation order");
    let (_, roots) = s.get("/cas?kind=root").await;
    assert_eq!(roots["items"].as_array().unwrap().len(), 4);
    let (st, v) = s.get("/cas?limit=0").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "limit");
    let (st, v) = s.get("/cas?kind=leaf").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "kind");
}
both_backends!(lists_paginate_with_cursors, pagination);
