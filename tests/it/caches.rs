//! The read caches of the hot paths (`store::cache`) and the group-committing recorder:
//! a change made on this server is seen by the next request; a change made by another
//! replica within the cache's lifetime, and never at the price of issuing from a CA that
//! is no longer allowed to.

use crate::common::{env_for, start_with_env, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server_body(cn: &str) -> Value {
    json!({"type": "server", "common_name": cn, "sans": [{"type": "dns", "value": cn}], "validity_days": 30})
}

async fn apply(s: &TestServer, ca: &str, cn: &str) -> (StatusCode, Value) {
    s.post(&format!("/cas/{ca}/certificates"), server_body(cn))
        .await
}

fn has_cdp(cert_pem: &str) -> bool {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            x509_parser::extensions::ParsedExtension::CRLDistributionPoints(_)
        )
    })
}

async fn local_changes_are_seen_at_once(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Cache", 10, 5).await;
    let (st, v) = apply(s, &inter, "a.cache.example").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(has_cdp(v["certificate_pem"].as_str().unwrap()));
    // The CA is cached now; turning its CRL off must still drop the CDP from the next one.
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/cas/{inter}/crl"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = apply(s, &inter, "b.cache.example").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(
        !has_cdp(v["certificate_pem"].as_str().unwrap()),
        "a CA with its CRL turned off issues no CDP, even right after the change"
    );
    // Revoked CA: the very next request is refused.
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/revoke"),
            json!({"reason": "cessationOfOperation"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = apply(s, &inter, "c.cache.example").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // A token used once (cached), then revoked: refused at once.
    let (_, token) = s.tenant_with_token("cachetenant", "operator").await;
    let (st, _) = s.call_as(&token, Method::GET, "/cas", None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, tokens) = s.get("/tokens").await;
    let id = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "operator of cachetenant")
        .expect("token listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = s.call(Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.call_as(&token, Method::GET, "/cas", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
both_backends!(
    local_changes_take_effect_on_the_next_request,
    local_changes_are_seen_at_once
);

/// Replica A has the intermediate cached as enabled; replica B revokes it. A's next
/// issuance is refused by the recorder's commit-time check, not served from the cache.
/// A token revoked on B stops working on A within the cache lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_replicas_changes_win_over_the_cache() {
    if crate::common::postgres_missing() {
        return;
    }
    let url = crate::common::fresh_pg_database().await;
    let key = "33".repeat(32);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env1 = env_for(d1.path(), &url, &[("VELLUM_MASTER_KEY", &key)]);
    let env2 = env_for(d2.path(), &url, &[("VELLUM_MASTER_KEY", &key)]);
    let a = start_with_env(&env1).await.unwrap();
    let b = start_with_env(&env2).await.unwrap();
    let sa = TestServer::attach(a, d1, Backend::Postgres, url.clone());
    let sb = TestServer::attach(b, d2, Backend::Postgres, url.clone());

    let (_, inter) = sa.enabled_pair("Replicated", 10, 5).await;
    let (st, v) = apply(&sa, &inter, "a.replica.example").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, token) = sa.tenant_with_token("replicatenant", "operator").await;
    let (st, _) = sa.call_as(&token, Method::GET, "/cas", None).await;
    assert_eq!(st, StatusCode::OK);

    let (st, v) = sb
        .post(
            &format!("/cas/{inter}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = apply(&sa, &inter, "b.replica.example").await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "a CA revoked on another replica issues nothing here: {v}"
    );
    let (_, iv) = sa.get(&format!("/cas/{inter}")).await;
    assert_eq!(iv["issued_count"], 1, "the refused request spent nothing");

    // B resets the other intermediate and enables it with a new key. A still has the old
    // row (and the old key's signer) cached: whatever it answers, it never hands out a
    // certificate signed by the key that was reset away.
    let (root2, inter2) = sa.enabled_pair("Rekeyed", 10, 5).await;
    let (st, v) = apply(&sa, &inter2, "c.replica.example").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = sb
        .post(
            &format!("/certificates/{}/revoke", v["id"].as_str().unwrap()),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = sb.post(&format!("/cas/{inter2}/reset"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_ca = sb.enable(&inter2).await;
    let (st, v) = sb
        .post(
            &format!("/cas/{root2}/quota/assign"),
            json!({"intermediate_id": inter2, "count": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = apply(&sa, &inter2, "d.replica.example").await;
    if st == StatusCode::CREATED {
        let (_, leaf) =
            x509_parser::pem::parse_x509_pem(v["certificate_pem"].as_str().unwrap().as_bytes())
                .unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(
            new_ca["certificate_pem"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        let (leaf, ca) = (leaf.parse_x509().unwrap(), ca.parse_x509().unwrap());
        assert!(
            leaf.verify_signature(Some(ca.public_key())).is_ok(),
            "issued under the CA's new key"
        );
    } else {
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
    }

    let (_, tokens) = sb.get("/tokens").await;
    let id = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "operator of replicatenant")
        .expect("token listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = sb
        .call(Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(store::cache::TTL + std::time::Duration::from_millis(200)).await;
    let (st, _) = sa.call_as(&token, Method::GET, "/cas", None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a token revoked on another replica is refused here after the cache lifetime"
    );
    sa.stop().await;
    sb.stop().await;
}
