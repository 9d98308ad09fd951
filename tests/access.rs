//! Authentication, roles, tenant isolation and the audit log.

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn authentication(s: &TestServer) {
    let (st, v) = s.call_full(None, None, Method::GET, "/cas", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(v["detail"].as_str().unwrap().contains("Bearer"));
    let (st, _) = s
        .call_as("vlm_not-a-real-token", Method::GET, "/cas", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A revoked token stops working at once.
    let (st, tok) = s
        .post("/tokens", json!({"role": "operator", "name": "ci"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let secret = tok["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("vlm_"));
    let id = tok["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.call_as(&secret, Method::GET, "/cas", None).await.0,
        StatusCode::OK
    );
    let (st, v) = s.call(Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_string());
    assert_eq!(
        s.call_as(&secret, Method::GET, "/cas", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s.call(Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Only hashes are stored.
    let (_, list) = s.get("/tokens").await;
    assert!(!list.to_string().contains(&secret));
    let (st, v) = s
        .post("/tokens", json!({"role": "super", "name": "x"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "role");
}
both_backends!(tokens_authenticate_and_revoke, authentication);

async fn roles(s: &TestServer) {
    let (_, op) = s
        .post("/tokens", json!({"role": "operator", "name": "op"}))
        .await;
    let op = op["token"].as_str().unwrap().to_string();
    let (_, au) = s
        .post("/tokens", json!({"role": "auditor", "name": "au"}))
        .await;
    let au = au["token"].as_str().unwrap().to_string();
    let (_, ad) = s
        .post("/tokens", json!({"role": "admin", "name": "ad"}))
        .await;
    let ad = ad["token"].as_str().unwrap().to_string();
    let root = s.app().defaults.root_id.clone();
    let buy = json!({"kind": "root", "common_name": "By role"});

    for (tok, can_buy, can_read, can_audit) in [
        (&op, false, true, false),
        (&au, false, true, true),
        (&ad, true, true, true),
    ] {
        let (st, v) = s
            .call_as(tok, Method::POST, "/cas", Some(buy.clone()))
            .await;
        assert_eq!(st == StatusCode::CREATED, can_buy, "{v}");
        if !can_buy {
            assert_eq!(st, StatusCode::FORBIDDEN);
            assert!(v["detail"].as_str().unwrap().contains("may not"), "{v}");
        }
        assert_eq!(
            s.call_as(tok, Method::GET, &format!("/cas/{root}"), None)
                .await
                .0
                == StatusCode::OK,
            can_read
        );
        assert_eq!(
            s.call_as(tok, Method::GET, "/audit", None).await.0 == StatusCode::OK,
            can_audit
        );
        let (st, _) = s
            .call_as(
                tok,
                Method::POST,
                &format!("/cas/{root}/quota/purchase"),
                Some(json!({"count": 1})),
            )
            .await;
        assert_eq!(st == StatusCode::OK, can_buy);
    }
    // Tenants are the super-admin's.
    let (st, _) = s
        .call_as(
            &ad,
            Method::POST,
            "/tenants",
            Some(json!({"name": "x", "entity": "X"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // An admin manages tokens of its own tenant, never a super token.
    let (st, _) = s
        .call_as(
            &ad,
            Method::POST,
            "/tokens",
            Some(json!({"role": "auditor", "name": "a2"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s
        .call_as(
            &op,
            Method::POST,
            "/tokens",
            Some(json!({"role": "auditor", "name": "a3"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}
both_backends!(roles_limit_what_tokens_may_do, roles);

async fn isolation(s: &TestServer) {
    let (tid_b, tok_b) = s.tenant_with_token("tenant-b", "admin").await;
    let (st, v) = s
        .post("/tenants", json!({"name": "tenant-b", "entity": "dup"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = s
        .post("/tenants", json!({"name": "bad name!", "entity": "x"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "name");

    let d = s.app().defaults.clone();
    // Tenant B sees nothing of the default tenant: 404, not 403.
    let (st, v) = s.call_as(&tok_b, Method::GET, "/cas", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    for path in [
        format!("/cas/{}", d.root_id),
        format!("/cas/{}", d.intermediate_id),
    ] {
        let (st, _) = s.call_as(&tok_b, Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, _) = s
        .call_as(
            &tok_b,
            Method::POST,
            &format!("/cas/{}/revoke", d.intermediate_id),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call_as(
            &tok_b,
            Method::POST,
            "/cas",
            Some(json!({"kind": "intermediate", "parent_id": d.root_id, "common_name": "steal"})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another tenant's root is not a parent"
    );

    // B buys its own root; A (default) cannot see it, the super-admin can by naming B.
    let (st, v) = s
        .call_as(
            &tok_b,
            Method::POST,
            "/cas",
            Some(json!({"kind": "root", "common_name": "B Root"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let b_root = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.get(&format!("/cas/{b_root}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, v) = s
        .call_full(
            Some(&s.token),
            Some("tenant-b"),
            Method::GET,
            &format!("/cas/{b_root}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .call_full(Some(&s.token), Some(&tid_b), Method::GET, "/cas", None)
        .await;
    assert_eq!(st, StatusCode::OK, "tenant header takes an id too");
    let (st, _) = s
        .call_full(Some(&s.token), Some("nope"), Method::GET, "/cas", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A tenant admin may not switch tenants.
    let (st, _) = s
        .call_full(Some(&tok_b), Some("default"), Method::GET, "/cas", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Audit events stay in their tenant.
    let (_, a) = s.call_as(&tok_b, Method::GET, "/audit", None).await;
    let events = a["items"].as_array().unwrap();
    assert!(events.iter().all(|e| e["tenant_id"] == json!(tid_b)), "{a}");
    assert!(events.iter().any(|e| e["action"] == "ca.purchase.root"));
}
both_backends!(tenants_are_isolated, isolation);

async fn audit(s: &TestServer) {
    let (root, inter) = s.buy_root("Audited", "ec-p256", 3).await;
    s.enable(&root).await;
    let (st, _) = s
        .post(&format!("/cas/{root}/enable"), json!({"mode": "generate"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, v) = s.get(&format!("/audit?target={root}")).await;
    assert_eq!(st, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    // Newest first: the failed enable, the enable, the purchase.
    assert_eq!(items[0]["action"], "ca.enable.generate");
    assert_eq!(items[0]["outcome"], "failure");
    assert!(items[0]["detail"].as_str().unwrap().contains("enabled"));
    assert_eq!(items[1]["outcome"], "success");
    assert_eq!(items[2]["action"], "ca.purchase.root");
    for e in items {
        assert_eq!(e["source_ip"], "127.0.0.1");
        assert!(e["actor"].is_string());
        assert!(e["at"].is_string());
    }
    let (_, v) = s.get("/audit?action=ca.purchase.root&limit=1").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert!(v["next_cursor"].is_string());
    let next = v["next_cursor"].as_str().unwrap();
    let (_, older) = s
        .get(&format!(
            "/audit?action=ca.purchase.root&limit=1&cursor={next}"
        ))
        .await;
    assert!(older["items"][0]["id"].as_i64() < v["items"][0]["id"].as_i64());
    let (_, v) = s.get("/audit?since=2999-01-01T00:00:00Z").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (st, v) = s.get("/audit?since=yesterday").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["field"], "since");
    let _ = inter;
}
both_backends!(state_changes_are_audited, audit);
