//! The inventory (issue 13, part B): quota set, tags on certificates and CAs, the
//! leakage-risk filter and advice, CA service renewal and `service_expired`, audited 403
//! refusals, `actor_name` and the audit filters `actor=` / `until=`.

use crate::common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use vellum_server::admin::json::parse_rfc3339;

const ADVICE: &str = "validity over one year raises the cost of a key compromise; prefer ≤ 1 year";

async fn issue(s: &TestServer, ca: &str, cn: &str, days: i64, tags: Value) -> Value {
    let (st, v) = s
        .post(
            &format!("/cas/{ca}/certificates"),
            json!({"type": "server", "common_name": cn, "validity_days": days, "tags": tags}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn patch(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PATCH, path, Some(body)).await
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn audit_has(s: &TestServer, action: &str, target: &str, outcome: &str) -> Value {
    let (st, v) = s
        .get(&format!("/audit?action={action}&target={target}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["outcome"] == outcome)
        .cloned()
        .unwrap_or_else(|| panic!("no {outcome} event {action} on {target}: {v}"))
}

async fn quota_set(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Quota Set", 10, 4).await;
    let (root, inter) = (&root, &inter);
    let set = |remaining: Value| {
        let path = format!("/cas/{root}/quota/assign");
        let body = json!({"intermediate_id": inter, "remaining": remaining});
        async move { s.post(&path, body).await }
    };
    let quota = || async move {
        let (_, r) = s.get(&format!("/cas/{root}")).await;
        let (_, i) = s.get(&format!("/cas/{inter}")).await;
        (
            r["quota_available"].as_i64().unwrap(),
            i["quota_remaining"].as_i64().unwrap(),
            i["quota_assigned"].as_i64().unwrap(),
        )
    };
    // Raise: taken from the root.
    let (st, v) = set(json!(7)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["quota_available"], 3, "answers with the root: {v}");
    assert_eq!(quota().await, (3, 7, 7));
    // Lower: the difference goes back.
    let (st, _) = set(json!(2)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(quota().await, (8, 2, 2));
    // Spend one: a set keeps what was spent.
    issue(s, inter, "spent.example", 30, json!({})).await;
    let (st, _) = set(json!(0)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(quota().await, (9, 0, 1));
    // More than the root can give: 409 naming the numbers.
    let (st, v) = set(json!(10)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let d = v["detail"].as_str().unwrap();
    assert!(
        d.contains("from 0 to 10") && d.contains("has 9 available") && d.contains("at most 9"),
        "{d}"
    );
    assert_eq!(quota().await, (9, 0, 1), "a refusal moves nothing");
    // Never below zero; exactly one of count / remaining.
    let (st, v) = set(json!(-1)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "remaining");
    for body in [
        json!({"intermediate_id": inter, "count": 1, "remaining": 1}),
        json!({"intermediate_id": inter}),
    ] {
        let (st, v) = s.post(&format!("/cas/{root}/quota/assign"), body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], "count", "{v}");
        assert!(v["detail"].as_str().unwrap().contains("exactly one"), "{v}");
    }
    assert_eq!(quota().await, (9, 0, 1));
    // Only an intermediate of this root.
    let (_, other) = s.enabled_pair("Other Root", 5, 0).await;
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": other, "remaining": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "intermediate_id");
    audit_has(s, "quota.set", inter, "success").await;
    audit_has(s, "quota.set", inter, "failure").await;
}
both_backends!(quota_set_moves_the_difference, quota_set);

async fn concurrent_quota_sets(s: &TestServer) {
    let (root, inter_a) = s.enabled_pair("Contended Sets", 60, 10).await;
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "intermediate", "parent_id": root, "common_name": "Second"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let inter_b = v["id"].as_str().unwrap().to_string();
    s.enable(&inter_b).await;
    // Sets (0..=40), assigns and issuances, all at once, on two intermediates.
    let mut tasks = Vec::new();
    for i in 0..120 {
        let client = s.client.clone();
        let token = s.token.clone();
        let target = if i % 2 == 0 { &inter_a } else { &inter_b }.clone();
        let (url, body) = match i % 4 {
            0 | 1 => (
                format!("{}/admin/v1/cas/{root}/quota/assign", s.base),
                json!({"intermediate_id": target, "remaining": (i * 7) % 41}),
            ),
            2 => (
                format!("{}/admin/v1/cas/{root}/quota/assign", s.base),
                json!({"intermediate_id": target, "count": 1 + i % 3}),
            ),
            _ => (
                format!("{}/admin/v1/cas/{inter_a}/certificates", s.base),
                json!({"type": "server", "common_name": format!("c{i}.example"), "validity_days": 30}),
            ),
        };
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK | StatusCode::CREATED | StatusCode::CONFLICT => {}
            // An issuance may find no quota left at that moment.
            StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("unexpected status {other} (no request may fail otherwise)"),
        }
    }
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    let (_, a) = s.get(&format!("/cas/{inter_a}")).await;
    let (_, b) = s.get(&format!("/cas/{inter_b}")).await;
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap();
    for i in [&a, &b] {
        assert!(n(i, "quota_remaining") >= 0);
        assert_eq!(
            n(i, "quota_assigned") - n(i, "quota_remaining"),
            n(i, "issued_count"),
            "assigned = remaining + spent: {i}"
        );
    }
    assert!(n(&r, "quota_available") >= 0);
    assert_eq!(
        n(&r, "quota_total"),
        n(&r, "quota_available") + n(&a, "quota_assigned") + n(&b, "quota_assigned"),
        "nothing created or lost"
    );
    let (_, certs) = s
        .get(&format!("/certificates?ca_id={inter_a}&limit=1000"))
        .await;
    assert_eq!(
        certs["items"].as_array().unwrap().len() as i64,
        n(&a, "issued_count"),
        "every issued certificate spent exactly one unit"
    );
    // Sets alone: each computes its difference from what is really left, so the quota ends
    // at one of the values asked for (a stale read would add two differences up, e.g. 0 →
    // 5 and 0 → 7 giving 12).
    let targets = [3_i64, 5, 7, 11, 13];
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/purchase"),
            json!({"count": 100}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = s.client.clone();
        let token = s.token.clone();
        let url = format!("{}/admin/v1/cas/{root}/quota/assign", s.base);
        let body = json!({"intermediate_id": inter_b, "remaining": targets[i % targets.len()]});
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        let st = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "the root can cover every target");
    }
    let (_, b) = s.get(&format!("/cas/{inter_b}")).await;
    assert!(
        targets.contains(&n(&b, "quota_remaining")),
        "ends at a value asked for: {b}"
    );
}
both_backends!(
    concurrent_quota_sets_keep_the_invariant,
    concurrent_quota_sets
);

async fn certificate_tags(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Tags Root", 10, 10).await;
    let inter = &inter;
    let a = issue(s, inter, "a.example", 90, json!({"env": "prod"})).await;
    let b = issue(s, inter, "b.example", 90, json!({"env": "production"})).await;
    let c = issue(s, inter, "c.example", 90, json!({})).await;
    let (a, b, c) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
        c["id"].as_str().unwrap().to_string(),
    );
    // Replace c's tags (none) with two.
    let (st, v) = patch(
        s,
        &format!("/certificates/{c}"),
        json!({"tags": {"env": "prod", "Team": "web"}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["tags"], json!({"env": "prod", "Team": "web"}));
    let list = |q: &'static str| async move {
        let (st, v) = s.get(&format!("/certificates?ca_id={inter}&{q}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        ids(&v)
    };
    assert_eq!(list("tag=env=prod").await, vec![a.clone(), c.clone()]);
    assert_eq!(list("tag=env").await, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(list("tag=Team").await, vec![c.clone()]);
    assert!(list("tag=team").await.is_empty(), "tags match exactly");
    // Replacing drops what is not in the new map.
    let (st, _) = patch(s, &format!("/certificates/{a}"), json!({"tags": {}})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list("tag=env=prod").await, vec![c.clone()]);
    // The rules of issuance apply.
    for bad in [
        json!({"": "x"}),
        json!({"a=b": "x"}),
        json!({"k": "v".repeat(257)}),
        Value::Object((0..33).map(|i| (format!("k{i}"), json!("v"))).collect()),
    ] {
        let (st, v) = patch(s, &format!("/certificates/{b}"), json!({"tags": bad})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], "tags", "{v}");
    }
    let (st, v) = patch(s, &format!("/certificates/{b}"), json!({"tags": {"n": 1}})).await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "values are strings: {v}"
    );
    let (st, _) = patch(s, &format!("/certificates/{b}"), json!({})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "tags is required");
    assert_eq!(list("tag=env=production").await, vec![b.clone()]);
    // A renewal carries the tags as edited.
    let (st, v) = s
        .post(&format!("/certificates/{c}/renew"), json!({"force": true}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["tags"], json!({"env": "prod", "Team": "web"}));
    // Another tenant's certificate is not found; audited both ways.
    let (_, tok) = s.tenant_with_token("tags-other", "admin").await;
    let (st, _) = s
        .call_as(
            &tok,
            Method::PATCH,
            &format!("/certificates/{a}"),
            Some(json!({"tags": {"x": "y"}})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    audit_has(s, "certificate.tags", &c, "success").await;
    audit_has(s, "certificate.tags", &b, "failure").await;
}
both_backends!(certificate_tags_are_replaced_and_filtered, certificate_tags);

async fn ca_tags(s: &TestServer) {
    let (root, inter) = s.enabled_pair("CA Tags", 10, 0).await;
    let (root2, _) = s.buy_root("Untagged", "ec-p256", 1).await;
    let (st, v) = patch(
        s,
        &format!("/cas/{inter}"),
        json!({"tags": {"dept": "finance"}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["tags"], json!({"dept": "finance"}));
    let (st, _) = patch(s, &format!("/cas/{root}"), json!({"tags": {"dept": "it"}})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get("/cas?tag=dept").await;
    assert_eq!(ids(&v), vec![root.clone(), inter.clone()]);
    let (_, v) = s.get("/cas?tag=dept=finance").await;
    assert_eq!(ids(&v), vec![inter.clone()]);
    let (_, v) = s.get("/cas?tag=dept=fin").await;
    assert!(ids(&v).is_empty(), "a value matches whole: {v}");
    let (_, v) = s.get(&format!("/cas/{root2}")).await;
    assert_eq!(v["tags"], json!({}), "a new CA has no tags");
    let (st, v) = patch(s, &format!("/cas/{root}"), json!({"tags": {"": "x"}})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "tags");
    let (st, _) = patch(s, "/cas/no-such-ca", json!({"tags": {}})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    audit_has(s, "ca.tags", &inter, "success").await;
    audit_has(s, "ca.tags", &root, "failure").await;
}
both_backends!(ca_tags_are_replaced_and_filtered, ca_tags);

async fn leakage(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Leakage", 10, 10).await;
    let long = issue(s, &inter, "long.example", 400, json!({})).await;
    let year = issue(s, &inter, "year.example", 365, json!({})).await;
    assert_eq!(long["leakage_risk"], true);
    assert_eq!(long["leakage_advice"], ADVICE);
    assert_eq!(year["leakage_risk"], false, "one year is not over a year");
    assert_eq!(year["leakage_advice"], Value::Null);
    let (st, v) = s
        .get(&format!("/certificates?ca_id={inter}&risk=leakage"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![long["id"].as_str().unwrap().to_string()]);
    assert_eq!(v["items"][0]["leakage_advice"], ADVICE, "lists show it");
    let (_, v) = s.get(&format!("/certificates?ca_id={inter}")).await;
    assert_eq!(ids(&v).len(), 2);
    let (st, v) = s.get("/certificates?risk=expiry").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "risk");
    assert!(v["detail"].as_str().unwrap().contains("leakage"), "{v}");
}
both_backends!(leakage_risk_is_listed_filtered_and_advised, leakage);

async fn service(s: &TestServer) {
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "root", "common_name": "Monthly", "service_months": 1, "quota": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let root = v["id"].as_str().unwrap().to_string();
    let inter = v["intermediate_id"].as_str().unwrap().to_string();
    assert_eq!(v["service_expired"], false);
    assert_eq!(v["service_months"], 1);
    s.enable(&root).await;
    s.enable(&inter).await;
    s.post(
        &format!("/cas/{root}/quota/assign"),
        json!({"intermediate_id": inter, "count": 5}),
    )
    .await;
    // A 1-month service allows the whole calendar month (28 to 31 days), not 30-day
    // blocks, even after part of it has passed.
    let secs = |v: &Value, k: &str| parse_rfc3339(k, v[k].as_str().unwrap()).unwrap();
    let days = (secs(&v, "service_until") - secs(&v, "service_started_at")) / 86_400;
    assert!((28..=31).contains(&days), "{v}");
    issue(s, &inter, "month.example", days, json!({})).await;
    let (st, e) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "x.example", "validity_days": days + 1}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("the maximum is {days} days")),
        "{e}"
    );
    // Renewal: roots only, months 1..=1200.
    let (st, e) = s
        .post(&format!("/cas/{inter}/service/renew"), json!({"months": 1}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert!(e["detail"].as_str().unwrap().contains(&root), "{e}");
    let (st, e) = s
        .post(&format!("/cas/{root}/service/renew"), json!({"months": 0}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "months");
    let (st, r) = s
        .post(&format!("/cas/{root}/service/renew"), json!({"months": 11}))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["service_months"], 12);
    assert_eq!(r["service_started_at"], v["service_started_at"]);
    let (_, i) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        i["service_until"], r["service_until"],
        "the intermediate follows"
    );
    assert_eq!(i["service_months"], 12);
    // Twelve months: no longer a short service.
    issue(s, &inter, "year.example", 200, json!({})).await;
    // Over: both views say so, issuance stops; a renewal restarts it.
    s.sql(&format!(
        "UPDATE cas SET service_until = service_until - 400 * 86400 WHERE id IN ('{root}', '{inter}')"
    ))
    .await;
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    let (_, i) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        (&r["service_expired"], &i["service_expired"]),
        (&json!(true), &json!(true))
    );
    let (_, list) = s.get("/cas").await;
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == inter.as_str() && c["service_expired"] == true));
    let (st, e) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "late.example", "validity_days": 1}),
        )
        .await;
    // Refused by the issuer check, or (the row changed behind the 1-second CA cache) by
    // the recorder's: either way nothing is issued.
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let d = e["detail"].as_str().unwrap();
    assert!(
        d.contains("service period") || d.contains("out of service"),
        "{e}"
    );
    let (st, r) = s
        .post(&format!("/cas/{root}/service/renew"), json!({"months": 2}))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["service_expired"], false);
    assert_eq!(r["service_months"], 2, "a lapsed service restarts");
    issue(s, &inter, "again.example", 20, json!({})).await;
    audit_has(s, "ca.service.renew", &root, "success").await;
    audit_has(s, "ca.service.renew", &inter, "failure").await;
}
both_backends!(service_periods_renew_and_expire, service);

async fn audit(s: &TestServer) {
    let (tid, operator) = s.tenant_with_token("audited", "operator").await;
    let tid = &tid;
    let (st, v) = s
        .call_as(
            &operator,
            Method::POST,
            "/cas",
            Some(json!({"kind": "root", "common_name": "Nope"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = s
        .call_as(
            &operator,
            Method::POST,
            "/cas/some-ca/service/renew",
            Some(json!({"months": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call_full(Some(&operator), Some("default"), Method::GET, "/cas", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "another tenant");
    let as_super = |path: String| async move {
        let (st, v) = s
            .call_full(Some(&s.token), Some(tid), Method::GET, &path, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["items"].as_array().unwrap().clone()
    };
    let events = as_super("/audit".into()).await;
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert_eq!(refused.len(), 3, "every refusal is audited: {events:?}");
    let renew = refused
        .iter()
        .find(|e| e["action"] == "POST /cas/{id}/service/renew")
        .expect("the route is the action");
    assert_eq!(renew["target"], "some-ca");
    assert!(
        renew["detail"].as_str().unwrap().contains("operator"),
        "{renew}"
    );
    let purchase = refused.iter().find(|e| e["action"] == "POST /cas").unwrap();
    assert_eq!(purchase["actor_name"], "operator of audited");
    let token_id = purchase["actor"].as_str().unwrap().to_string();
    assert!(refused
        .iter()
        .any(|e| e["detail"].as_str().unwrap().contains("X-Vellum-Tenant")));
    // actor= takes the token's id or its name.
    assert_eq!(as_super(format!("/audit?actor={token_id}")).await.len(), 3);
    assert_eq!(
        as_super("/audit?actor=operator%20of%20audited".into())
            .await
            .len(),
        3
    );
    assert!(as_super("/audit?actor=someone-else".into())
        .await
        .is_empty());
    // until= keeps events at or before it.
    let at = purchase["at"].as_str().unwrap();
    let t = parse_rfc3339("at", at).unwrap();
    let before = vellum_core::time::rfc3339(t - 3600);
    assert!(as_super(format!("/audit?actor={token_id}&until={before}"))
        .await
        .is_empty());
    let after = vellum_core::time::rfc3339(t + 3600);
    assert_eq!(
        as_super(format!("/audit?actor={token_id}&until={after}"))
            .await
            .len(),
        3
    );
    let (st, v) = s.get("/audit?until=yesterday").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "until");
    // A success carries the name too.
    let (root, _) = s.buy_root("Named", "ec-p256", 1).await;
    let (_, v) = s.get(&format!("/audit?target={root}")).await;
    assert!(v["items"][0]["actor_name"].is_string(), "{v}");
}
both_backends!(refusals_are_audited_with_actor_names, audit);
