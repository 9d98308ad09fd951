//! The quota invariant under concurrency: quota never goes below zero and is never created
//! or lost, whatever the interleaving.

use crate::common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

async fn concurrent_assigns(s: &TestServer) {
    let (root, inter_a) = s.enabled_pair("Contended", 50, 0).await;
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "intermediate", "parent_id": root, "common_name": "Second"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let inter_b = v["id"].as_str().unwrap().to_string();
    s.enable(&inter_b).await;

    // 200 concurrent requests asking for 1 or 2 units each (300 in total) from 50.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = s.client.clone();
        let url = format!("{}/admin/v1/cas/{root}/quota/assign", s.base);
        let token = s.token.clone();
        let target = if i % 2 == 0 {
            inter_a.clone()
        } else {
            inter_b.clone()
        };
        let count = 1 + (i % 3 == 0) as i64;
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"intermediate_id": target, "count": count}))
                .send()
                .await
                .unwrap();
            (resp.status(), count)
        }));
    }
    let mut granted = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, count) = t.await.unwrap();
        match status {
            StatusCode::OK => granted += count,
            StatusCode::CONFLICT => refused += 1,
            other => panic!("unexpected status {other} (no request may fail otherwise)"),
        }
    }
    assert!(refused > 0);
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    let (_, a) = s.get(&format!("/cas/{inter_a}")).await;
    let (_, b) = s.get(&format!("/cas/{inter_b}")).await;
    let assigned = a["quota_assigned"].as_i64().unwrap() + b["quota_assigned"].as_i64().unwrap();
    assert_eq!(
        assigned, granted,
        "what the API granted is what was recorded"
    );
    assert!(assigned <= 50, "never more than the root had: {assigned}");
    let available = r["quota_available"].as_i64().unwrap();
    assert!(available >= 0);
    assert_eq!(
        r["quota_total"].as_i64().unwrap(),
        available + assigned,
        "nothing created or lost"
    );
    assert!(
        available <= 1,
        "everything assignable was assigned (left: {available})"
    );
}
both_backends!(concurrent_assigns_keep_the_invariant, concurrent_assigns);

async fn concurrent_transitions(s: &TestServer) {
    // Twenty concurrent enables of one pending root: exactly one wins.
    let (root, _) = s.buy_root("Race", "ec-p256", 1).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = s.client.clone();
        let url = format!("{}/admin/v1/cas/{root}/enable", s.base);
        let token = s.token.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"mode": "generate"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1, "one enable wins");
    let (_, v) = s
        .get(&format!("/audit?target={root}&action=ca.enable.generate"))
        .await;
    let successes = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(successes, 1);
}
both_backends!(concurrent_enables_have_one_winner, concurrent_transitions);
