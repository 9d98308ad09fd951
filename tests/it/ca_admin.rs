//! CA administration answers that the conformance suite used to check with curl + jq
//! (conformance/openssl-ca.sh and lego.sh now only judge certificates and clients): a
//! revoked intermediate as GET shows it and as the audit log records it, and the ACME
//! settings of a CA echoed as stored.

use crate::common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

async fn revoked_intermediate(s: &TestServer) {
    let (root, _) = s.enabled_pair("Revoke Root", 10, 0).await;
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "intermediate", "parent_id": root, "common_name": "Second", "key_algorithm": "rsa-2048"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let second = v["id"].as_str().unwrap().to_string();
    s.enable(&second).await;
    let (st, v) = s
        .post(
            &format!("/cas/{second}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (st, v) = s.get(&format!("/cas/{second}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revocation_reason"], "keyCompromise");
    assert!(v["revoked_at"].is_string(), "{v}");

    // The audit log has the revocation, naming the CA, and it is found from the whole
    // list too (following next_cursor).
    let (_, v) = s.get(&format!("/audit?target={second}")).await;
    let revokes: Vec<_> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().contains("revoke"))
        .collect();
    assert_eq!(revokes.len(), 1, "{v}");
    assert_eq!(revokes[0]["action"], "ca.revoke");
    assert_eq!(revokes[0]["target"], json!(second));
    assert_eq!(revokes[0]["outcome"], "success");
    let mut cursor: Option<String> = None;
    let mut found = false;
    for _ in 0..50 {
        let path = match &cursor {
            Some(c) => format!("/audit?limit=5&cursor={c}"),
            None => "/audit?limit=5".to_string(),
        };
        let (st, page) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        found |= page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "ca.revoke" && e["target"] == json!(second));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(found, "ca.revoke is in the paged audit list");
}
both_backends!(
    a_revoked_intermediate_is_shown_and_audited,
    revoked_intermediate
);

async fn acme_settings(s: &TestServer) {
    let (_, inter) = s.enabled_pair("ACME Settings Root", 10, 5).await;
    let settings = json!({"enabled": true, "require_eab": true, "allowed_domains": ["eab.vellum.test"],
                          "allow_ip": false, "challenges": ["http-01", "dns-01"], "default_validity_days": 30});
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/acme"),
            Some(settings.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for (k, want) in settings.as_object().unwrap() {
        assert_eq!(&v[k], want, "PUT answer, {k}: {v}");
    }
    let (st, v) = s.get(&format!("/cas/{inter}/acme")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for (k, want) in settings.as_object().unwrap() {
        assert_eq!(&v[k], want, "GET, {k}: {v}");
    }
}
both_backends!(acme_settings_are_stored_as_sent, acme_settings);
