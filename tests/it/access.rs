//! Authentication, roles, tenant isolation and the audit log.

use crate::common::TestServer;
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

    // Nothing a tenant admin sends tells it whether another tenant exists: the same answer
    // for a tenant that exists (by name or id) and for one that does not.
    let mut answers = Vec::new();
    for other in ["default", d.tenant_id.as_str(), "no-such-tenant"] {
        let (st, v) = s
            .call_as(
                &tok_b,
                Method::POST,
                "/tokens",
                Some(json!({"tenant": other, "role": "auditor", "name": "probe"})),
            )
            .await;
        answers.push((other, "token", st, v["detail"].clone()));
        let (st, v) = s
            .call_full(Some(&tok_b), Some(other), Method::GET, "/cas", None)
            .await;
        answers.push((other, "header", st, v["detail"].clone()));
    }
    for (other, what, st, detail) in &answers {
        assert_eq!(
            *st,
            StatusCode::FORBIDDEN,
            "{what} naming {other}: {detail}"
        );
        let same = answers
            .iter()
            .find(|a| a.1 == *what)
            .map(|a| a.3.clone())
            .unwrap();
        assert_eq!(*detail, same, "{what} naming {other}");
    }
    // Its own tenant, by name, works; another tenant's token is as unknown as no token.
    let (st, v) = s
        .call_as(
            &tok_b,
            Method::POST,
            "/tokens",
            Some(json!({"tenant": "tenant-b", "role": "auditor", "name": "own"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, mine) = s.get("/tokens").await;
    let default_token = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == json!(d.tenant_id))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for id in [
        default_token.as_str(),
        "0190aaaa-0000-7000-8000-000000000000",
    ] {
        let (st, _) = s
            .call_as(&tok_b, Method::DELETE, &format!("/tokens/{id}"), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{id}");
    }
    // The super-admin is told when a tenant does not exist.
    let (st, v) = s
        .post(
            "/tokens",
            json!({"tenant": "no-such-tenant", "role": "auditor", "name": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "tenant");

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

/// Follows `next_cursor` through `path` (which has a query string) `limit` items at a
/// time; returns every item's `key`, in order, and the number of pages.
async fn all_pages(
    s: &TestServer,
    token: &str,
    path: &str,
    limit: usize,
    key: &str,
) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (st, v) = s.call_as(token, Method::GET, &url, None).await;
        assert_eq!(st, StatusCode::OK, "{url}: {v}");
        pages += 1;
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= limit, "{url}: {v}");
        keys.extend(items.iter().map(|i| i[key].as_str().unwrap().to_string()));
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "a page with a next cursor is full");
                cursor = Some(c.to_string());
            }
            None => return (keys, pages),
        }
        assert!(pages < 100, "{url}: endless");
    }
}

/// Tokens, tenants and EST clients come a page at a time, like the other lists.
async fn lists_page(s: &TestServer) {
    let (tid_b, tok_b) = s.tenant_with_token("pages-b", "admin").await;
    for n in 0..4 {
        s.tenant_with_token(&format!("pages-{n}"), "auditor").await;
        let (st, v) = s
            .call_as(
                &tok_b,
                Method::POST,
                "/tokens",
                Some(json!({"role": "operator", "name": format!("b{n}")})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    // Tenants: default + pages-b + 4 = 6; the super-admin sees them all, B only itself.
    let (_, all) = s.get("/tenants?limit=1000").await;
    let all: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 6);
    let (paged, pages) = all_pages(s, &s.token, "/tenants?", 4, "id").await;
    assert_eq!((paged.clone(), pages), (all.clone(), 2));
    let (paged, pages) = all_pages(s, &s.token, "/tenants?", 2, "id").await;
    assert_eq!(
        (paged, pages),
        (all, 4),
        "last full page, then an empty one"
    );
    let (own, _) = all_pages(s, &tok_b, "/tenants?", 1, "id").await;
    assert_eq!(own, vec![tid_b.clone()]);

    // Tokens: B's admin token + 4 operators in B.
    let (b_tokens, pages) = all_pages(s, &tok_b, "/tokens?", 2, "id").await;
    assert_eq!((b_tokens.len(), pages), (5, 3));
    let mut sorted = b_tokens.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, b_tokens, "oldest first, no repeats");
    // The super-admin sees every tenant's: its own, B's 5, and one per pages-n tenant.
    let (every, _) = all_pages(s, &s.token, "/tokens?", 3, "id").await;
    assert_eq!(every.len(), 1 + 5 + 4);
    assert!(b_tokens.iter().all(|t| every.contains(t)));

    // EST clients of a CA, by user name.
    let inter = s.app().defaults.intermediate_id.clone();
    for name in ["dev-c", "dev-a", "dev-e", "dev-b", "dev-d"] {
        let (st, v) = s
            .post(
                &format!("/cas/{inter}/est/clients"),
                json!({"username": name, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let path = format!("/cas/{inter}/est/clients?");
    let (names, pages) = all_pages(s, &s.token, &path, 2, "username").await;
    assert_eq!(names, ["dev-a", "dev-b", "dev-c", "dev-d", "dev-e"]);
    assert_eq!(pages, 3);

    // Limits outside 1–1000 are refused by name, on every list.
    for path in [
        "/tokens".to_string(),
        "/tenants".to_string(),
        format!("/cas/{inter}/est/clients"),
    ] {
        for limit in ["0", "1001"] {
            let (st, v) = s.get(&format!("{path}?limit={limit}")).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path} {limit}: {v}");
            assert_eq!(v["field"], "limit", "{v}");
        }
        for query in ["limit=x", "bogus=1"] {
            let (st, v) = s.get(&format!("{path}?{query}")).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path}?{query}: {v}");
        }
    }
}
both_backends!(lists_honour_limit_and_cursor, lists_page);
