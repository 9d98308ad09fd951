//! Pending items (`GET /pending`) and their snoozes (`POST` / `DELETE /pending/snooze`):
//! each kind counts and lists exactly the rows its condition holds for (time moved by
//! ageing rows with SQL), the quota threshold at exactly 10 %, snoozes per token and
//! tenant that keep counts, expire and can be lifted, refusals naming their field, and
//! tenant isolation.

use crate::common::TestServer;
use crate::managed::{body as managed_body, make};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use vellum_server::admin::json::parse_rfc3339;

const DAY: i64 = 86_400;

const KINDS: [&str; 8] = [
    "expiring",
    "expired",
    "notifications_off",
    "quota_low",
    "service_ending",
    "pending_enable",
    "refundable",
    "notifications_failed",
];

/// A tenant's token and the server, for calls in that tenant.
struct As<'a> {
    s: &'a TestServer,
    token: String,
}

impl As<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.s.call_as(&self.token, method, path, body).await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (st, v) = self.call(method.clone(), path, body).await;
        assert!(st.is_success(), "{method} {path}: {st} {v}");
        v
    }

    async fn pending(&self) -> Value {
        self.ok(Method::GET, "/pending", None).await
    }

    /// Buys a root (with its pending intermediate); returns (root, intermediate).
    async fn buy_root(&self, cn: &str) -> (String, String) {
        let v = self
            .ok(
                Method::POST,
                "/cas",
                Some(
                    json!({"kind": "root", "common_name": cn, "service_months": 24, "quota": 100}),
                ),
            )
            .await;
        (
            v["id"].as_str().unwrap().to_string(),
            v["intermediate_id"].as_str().unwrap().to_string(),
        )
    }

    async fn issue(&self, ca: &str, cn: &str, days: i64) -> String {
        let v = self
            .ok(
                Method::POST,
                &format!("/cas/{ca}/certificates"),
                Some(json!({"type": "server", "common_name": cn, "validity_days": days})),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn upload(&self, cn: &str, to_days: i64) -> String {
        let m = make(cn, false, -1, to_days);
        let v = self
            .ok(Method::POST, "/managed", Some(managed_body(&m, cn)))
            .await;
        v["id"].as_str().unwrap().to_string()
    }
}

/// The kind `name` of a `/pending` answer.
fn kind<'v>(p: &'v Value, name: &str) -> &'v Value {
    p["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == name)
        .unwrap_or_else(|| panic!("no kind {name}: {p}"))
}

fn count(p: &Value, name: &str) -> i64 {
    kind(p, name)["count"].as_i64().unwrap()
}

/// The ids of a kind's items, in the answer's order.
fn item_ids(p: &Value, name: &str) -> Vec<String> {
    kind(p, name)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn counts(p: &Value) -> Vec<i64> {
    KINDS.iter().map(|k| count(p, k)).collect()
}

async fn age_certificate(s: &TestServer, table: &str, id: &str, not_after: i64) {
    s.sql(&format!(
        "UPDATE {table} SET not_after = {not_after} WHERE id = '{id}'"
    ))
    .await;
    if table == "certificates" {
        // Time moved for this row only: its tenant's expiry counters (migration 0024) are
        // recounted as the migration counts them.
        let tenant = format!("(SELECT tenant_id FROM certificates WHERE id = '{id}')");
        s.sql(&format!(
            "DELETE FROM expiry_counts WHERE tenant_id = {tenant}"
        ))
        .await;
        s.sql(&format!(
            "INSERT INTO expiry_counts (tenant_id, day, shard, n) \
             SELECT tenant_id, (not_after - 1) / 86400, 0, COUNT(*) FROM certificates \
             WHERE tenant_id = {tenant} AND revoked_at IS NULL AND deleted_at IS NULL \
             GROUP BY tenant_id, (not_after - 1) / 86400"
        ))
        .await;
    }
}

async fn kinds_follow_their_conditions(s: &TestServer) {
    let now = vellum_core::time::now();
    let (_, token) = s.tenant_with_token("pend-a", "admin").await;
    let a = As { s, token };

    // A new tenant has nothing pending; every kind is there, with its action.
    let p = a.pending().await;
    assert_eq!(p["remind"], false, "{p}");
    assert_eq!(p["total"], 0, "{p}");
    let names: Vec<&str> = p["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(names, KINDS);
    assert_eq!(
        kind(&p, "expiring")["action"],
        "POST /admin/v1/certificates/{id}/renew"
    );
    assert_eq!(
        kind(&p, "pending_enable")["action"],
        "POST /admin/v1/cas/{id}/enable"
    );
    assert_eq!(kind(&p, "refundable")["snoozed_until"], Value::Null);

    // A purchase: root and intermediate are pending and refundable.
    let (root, inter) = a.buy_root("Pending Root").await;
    let p = a.pending().await;
    assert_eq!(counts(&p), [0, 0, 0, 0, 0, 2, 2, 0], "{p}");
    assert_eq!(p["remind"], true);
    assert_eq!(p["total"], 4);
    assert_eq!(
        item_ids(&p, "pending_enable"),
        [root.clone(), inter.clone()]
    );
    let item = &kind(&p, "refundable")["items"][0];
    assert_eq!(item["type"], "ca", "{item}");
    assert_eq!(item["name"], "Pending Root", "{item}");
    assert!(item.get("not_after").is_none(), "{item}");
    assert!(
        item["detail"].as_str().unwrap().contains("refunded until"),
        "{item}"
    );
    // Eight days later no refund is possible; they are still not enabled.
    s.sql(&format!(
        "UPDATE cas SET purchased_at = purchased_at - 8 * 86400 WHERE id IN ('{root}', '{inter}')"
    ))
    .await;
    let p = a.pending().await;
    assert_eq!(counts(&p), [0, 0, 0, 0, 0, 2, 0, 0], "{p}");
    // Enabled: nothing left.
    for id in [&root, &inter] {
        a.ok(
            Method::POST,
            &format!("/cas/{id}/enable"),
            Some(json!({"mode": "generate"})),
        )
        .await;
    }
    a.ok(
        Method::POST,
        &format!("/cas/{root}/quota/assign"),
        Some(json!({"intermediate_id": inter, "count": 10})),
    )
    .await;
    assert_eq!(counts(&a.pending().await), [0; 8]);

    // Certificates: one expiring in 10 days, one not expiring; one revoked (never
    // pending); one expired 10 days ago, one 100 days ago (outside the 90-day window),
    // one expired and deleted.
    let expiring = a.issue(&inter, "soon.example", 10).await;
    let _later = a.issue(&inter, "later.example", 365).await;
    let revoked = a.issue(&inter, "revoked.example", 20).await;
    a.ok(
        Method::POST,
        &format!("/certificates/{revoked}/revoke"),
        Some(json!({})),
    )
    .await;
    let expired = a.issue(&inter, "expired.example", 30).await;
    age_certificate(s, "certificates", &expired, now - 10 * DAY).await;
    let old = a.issue(&inter, "old.example", 30).await;
    age_certificate(s, "certificates", &old, now - 100 * DAY).await;
    let deleted = a.issue(&inter, "deleted.example", 30).await;
    age_certificate(s, "certificates", &deleted, now - 5 * DAY).await;
    a.ok(Method::DELETE, &format!("/certificates/{deleted}"), None)
        .await;
    // Managed: one expiring in 15 days, one with reminders off, one expired 2 days ago,
    // one expired and deleted.
    let m_soon = a.upload("m-soon.example", 15).await;
    let m_off = a.upload("m-off.example", 200).await;
    a.ok(
        Method::PATCH,
        &format!("/managed/{m_off}"),
        Some(json!({"notifications": false})),
    )
    .await;
    let m_expired = a.upload("m-expired.example", 200).await;
    age_certificate(s, "managed_certificates", &m_expired, now - 2 * DAY).await;
    let m_gone = a.upload("m-gone.example", 200).await;
    age_certificate(s, "managed_certificates", &m_gone, now - 3 * DAY).await;
    a.ok(Method::DELETE, &format!("/managed/{m_gone}"), None)
        .await;

    let p = a.pending().await;
    // 6 certificates of 10 units spent: 4 left, above 10 %.
    assert_eq!(counts(&p), [2, 2, 1, 0, 0, 0, 0, 0], "{p}");
    // Soonest expiry first; the most recently expired first.
    assert_eq!(item_ids(&p, "expiring"), [expiring.clone(), m_soon.clone()]);
    assert_eq!(
        item_ids(&p, "expired"),
        [m_expired.clone(), expired.clone()]
    );
    assert_eq!(item_ids(&p, "notifications_off"), [m_off.as_str()]);
    let first = &kind(&p, "expiring")["items"][0];
    assert_eq!(first["type"], "certificate", "{first}");
    assert_eq!(first["name"], "soon.example", "{first}");
    let not_after = parse_rfc3339("not_after", first["not_after"].as_str().unwrap()).unwrap();
    assert!((not_after - (now + 10 * DAY)).abs() < 120, "{first}");
    assert!(
        first["detail"].as_str().unwrap().contains("expires in"),
        "{first}"
    );
    assert_eq!(kind(&p, "expiring")["items"][1]["type"], "managed");
    assert!(
        kind(&p, "expired")["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("expired 2 days ago"),
        "{p}"
    );
    assert!(
        kind(&p, "notifications_off")["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("reminders are off"),
        "{p}"
    );
    // Reminders back on: gone from the kind.
    a.ok(
        Method::PATCH,
        &format!("/managed/{m_off}"),
        Some(json!({"notifications": true})),
    )
    .await;
    assert_eq!(count(&a.pending().await, "notifications_off"), 0);

    // Quota: 10 assigned; with exactly 1 left (10 %) it is not low, with 0 it is.
    for i in 0..3 {
        a.issue(&inter, &format!("fill{i}.example"), 365).await;
    }
    let p = a.pending().await;
    assert_eq!(
        count(&p, "quota_low"),
        0,
        "exactly 10 % left is not low: {p}"
    );
    a.issue(&inter, "last.example", 365).await;
    let p = a.pending().await;
    assert_eq!(count(&p, "quota_low"), 1, "{p}");
    assert_eq!(item_ids(&p, "quota_low"), [inter.as_str()]);
    let detail = kind(&p, "quota_low")["items"][0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("0 of the 10") && detail.contains(&root),
        "{detail}"
    );

    // Service: ending in 10 days (the root is listed; its intermediate follows), then over.
    s.sql(&format!(
        "UPDATE cas SET service_until = {} WHERE id IN ('{root}', '{inter}')",
        now + 10 * DAY
    ))
    .await;
    let p = a.pending().await;
    assert_eq!(item_ids(&p, "service_ending"), [root.as_str()], "{p}");
    s.sql(&format!(
        "UPDATE cas SET service_until = {} WHERE id IN ('{root}', '{inter}')",
        now - DAY
    ))
    .await;
    let p = a.pending().await;
    assert_eq!(count(&p, "service_ending"), 1, "{p}");
    assert!(
        kind(&p, "service_ending")["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("ended"),
        "{p}"
    );
    s.sql(&format!(
        "UPDATE cas SET service_until = {} WHERE id IN ('{root}', '{inter}')",
        now + 40 * DAY
    ))
    .await;
    assert_eq!(count(&a.pending().await, "service_ending"), 0);

    // Another tenant: its items never show here, ours never there.
    let (_, other) = s.tenant_with_token("pend-b", "admin").await;
    let b = As { s, token: other };
    let before = counts(&a.pending().await);
    let (b_root, _) = b.buy_root("Other Root").await;
    let b_soon = b.upload("b-soon.example", 5).await;
    let pb = b.pending().await;
    assert_eq!(counts(&pb), [1, 0, 0, 0, 0, 2, 2, 0], "{pb}");
    assert_eq!(item_ids(&pb, "expiring"), [b_soon]);
    let pa = a.pending().await;
    assert_eq!(counts(&pa), before, "{pa}");
    assert!(!pa.to_string().contains(&b_root));
}

both_backends!(
    each_kind_counts_and_lists_what_its_condition_holds_for,
    kinds_follow_their_conditions
);

async fn snoozes(s: &TestServer) {
    let now = vellum_core::time::now();
    let (_, admin) = s.tenant_with_token("snooze-t", "admin").await;
    let (st, v) = s
        .post(
            "/tokens",
            json!({"tenant": "snooze-t", "role": "auditor", "name": "second"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let auditor_id = v["id"].as_str().unwrap().to_string();
    let a = As { s, token: admin };
    let b = As {
        s,
        token: v["token"].as_str().unwrap().to_string(),
    };
    a.buy_root("Snooze Root").await;
    assert_eq!(a.pending().await["remind"], true);

    // One kind, default 7 days: its count stays, the other kind still reminds.
    let v = a
        .ok(
            Method::POST,
            "/pending/snooze",
            Some(json!({"kind": "pending_enable"})),
        )
        .await;
    assert_eq!(v["snoozed"], json!(["pending_enable"]), "{v}");
    let until = parse_rfc3339("snoozed_until", v["snoozed_until"].as_str().unwrap()).unwrap();
    assert!((until - (now + 7 * DAY)).abs() < 120, "{v}");
    let p = a.pending().await;
    assert_eq!(count(&p, "pending_enable"), 2);
    assert_eq!(
        kind(&p, "pending_enable")["snoozed_until"],
        v["snoozed_until"]
    );
    assert_eq!(kind(&p, "refundable")["snoozed_until"], Value::Null);
    assert_eq!(p["remind"], true, "refundable is not snoozed: {p}");
    // The second kind for 3 days: nothing reminds this token any more.
    let v = a
        .ok(
            Method::POST,
            "/pending/snooze",
            Some(json!({"kind": "refundable", "days": 3})),
        )
        .await;
    let until = parse_rfc3339("snoozed_until", v["snoozed_until"].as_str().unwrap()).unwrap();
    assert!((until - (now + 3 * DAY)).abs() < 120, "{v}");
    let p = a.pending().await;
    assert_eq!(p["remind"], false, "{p}");
    assert_eq!(p["total"], 4, "counts are kept: {p}");

    // Per token: the auditor of the same tenant is still reminded, and may snooze too.
    let pb = b.pending().await;
    assert_eq!(pb["remind"], true, "{pb}");
    assert_eq!(kind(&pb, "refundable")["snoozed_until"], Value::Null);
    let v = b
        .ok(
            Method::POST,
            "/pending/snooze",
            Some(json!({"kind": "all", "days": 30})),
        )
        .await;
    assert_eq!(v["snoozed"], json!(KINDS), "{v}");
    let pb = b.pending().await;
    assert_eq!(pb["remind"], false, "{pb}");
    for k in KINDS {
        assert!(kind(&pb, k)["snoozed_until"].is_string(), "{k}: {pb}");
    }

    // Three days later the admin's 3-day snooze is over (the auditor's is not).
    s.sql("UPDATE pending_snoozes SET until = until - 3 * 86400 - 60")
        .await;
    let p = a.pending().await;
    assert_eq!(kind(&p, "refundable")["snoozed_until"], Value::Null, "{p}");
    assert!(kind(&p, "pending_enable")["snoozed_until"].is_string());
    assert_eq!(p["remind"], true, "{p}");
    assert_eq!(b.pending().await["remind"], false);

    // Lifting one kind, then all.
    let v = a
        .ok(Method::DELETE, "/pending/snooze?kind=pending_enable", None)
        .await;
    assert_eq!(v["unsnoozed"], json!(["pending_enable"]));
    let p = a.pending().await;
    assert_eq!(kind(&p, "pending_enable")["snoozed_until"], Value::Null);
    b.ok(Method::DELETE, "/pending/snooze", None).await;
    let pb = b.pending().await;
    assert_eq!(pb["remind"], true, "{pb}");
    for k in KINDS {
        assert_eq!(kind(&pb, k)["snoozed_until"], Value::Null, "{k}: {pb}");
    }

    // Refusals name their field.
    for (body, field, needle) in [
        (
            json!({"kind": "soon"}),
            "kind",
            "notifications_failed or all",
        ),
        (json!({"kind": "expiring", "days": 0}), "days", "1 to 30"),
        (json!({"kind": "expiring", "days": 31}), "days", "1 to 30"),
        (json!({"kind": "expiring", "days": "7"}), "days", ""),
        (json!({"days": 7}), "kind", ""),
    ] {
        let (st, v) = a
            .call(Method::POST, "/pending/snooze", Some(body.clone()))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(needle), "{v}");
    }
    let (st, v) = a
        .call(Method::DELETE, "/pending/snooze?kind=later", None)
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "kind");

    // Audited in the tenant, with the kind as target.
    let (st, v) = s
        .call_full(
            Some(&s.token),
            Some("snooze-t"),
            Method::GET,
            "/audit?action=pending.snooze",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let events = v["items"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["target"] == "all" && e["actor"] == auditor_id.as_str()),
        "{v}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["target"] == "soon" && e["outcome"] == "failure"),
        "{v}"
    );

    // A super-admin's snooze is per tenant: snoozed in its own, reminded in this one.
    let (st, _) = s
        .post("/pending/snooze", json!({"kind": "all", "days": 1}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, p) = s
        .call_full(
            Some(&s.token),
            Some("snooze-t"),
            Method::GET,
            "/pending",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["remind"], true, "{p}");
    assert_eq!(kind(&p, "refundable")["snoozed_until"], Value::Null);
    let (_, own) = s.get("/pending").await;
    assert_eq!(own["remind"], false, "{own}");
}

both_backends!(
    snoozes_are_per_token_and_tenant_keep_counts_and_expire,
    snoozes
);

/// Not a timed test: seeds 200,000 certificates (and 20,000 managed ones) with dates
/// spread over two years in one tenant, prints the query plans of the counts and the
/// latency of `GET /pending`. Run by hand:
/// `cargo test --release --test it -- --ignored pending_at_scale --nocapture`.
async fn at_scale(s: &TestServer) {
    use std::time::Instant;
    use store::certificates::CertRow;
    use store::managed::ManagedRow;
    use vellum_core::status::ManagedSource;

    const CERTS: usize = 200_000;
    const MANAGED: usize = 20_000;
    let now = vellum_core::time::now();
    let (tenant_id, token) = s.tenant_with_token("scale", "admin").await;
    let a = As { s, token };
    let spread = |i: usize, n: usize| now - 365 * DAY + (i as i64 * 730 * DAY) / n as i64;
    let store = &s.app().store;
    let started = Instant::now();
    let mut tx = store.begin().await.unwrap();
    let der = vec![0x30u8; 400];
    for chunk in 0..CERTS / 1000 {
        let rows: Vec<CertRow> = (0..1000)
            .map(|j| {
                let i = chunk * 1000 + j;
                CertRow {
                    id: format!("{:08}-seed", i),
                    tenant_id: tenant_id.clone(),
                    serial: format!("{i:x}"),
                    common_name: format!("host{i}.example"),
                    sans_json: "[]".into(),
                    not_before: now - 400 * DAY,
                    not_after: spread(i, CERTS),
                    revoked_at: None,
                    tags_json: "{}".into(),
                    spec_json: "{}".into(),
                    key_algorithm: "ec-p256".into(),
                    certificate_der: der.clone(),
                    created_at: now,
                    subject_json: "{}".into(),
                    ..CertRow::default()
                }
            })
            .collect();
        let refs: Vec<&CertRow> = rows.iter().collect();
        store::certificates::insert_many(&mut tx, &refs)
            .await
            .unwrap();
    }
    for i in 0..MANAGED {
        let m = ManagedRow {
            id: format!("{:08}-managed", i),
            tenant_id: tenant_id.clone(),
            name: format!("m{i}"),
            source: ManagedSource::Uploaded,
            tags_json: "{}".into(),
            notifications: i % 100 != 0,
            subject: format!("CN=m{i}.example"),
            common_name: format!("m{i}.example"),
            sans_json: "[]".into(),
            issuer: "CN=elsewhere".into(),
            serial: format!("{i:x}"),
            key_algorithm: "ec-p256".into(),
            not_before: now - 400 * DAY,
            not_after: spread(i, MANAGED),
            leakage_risk: false,
            certificate_der: der.clone(),
            chain_der: Vec::new(),
            key_sealed: None,
            created_at: now,
            deleted_at: None,
            origin_certificate_id: None,
            shared_by_tenant_id: None,
            shared_by_name: None,
            revoked_at: None,
        };
        store::managed::insert(&mut tx, &m).await.unwrap();
    }
    tx.commit().await.unwrap();
    println!(
        "{:?}: seeded {CERTS} certificates and {MANAGED} managed in {:?}",
        s.backend,
        started.elapsed()
    );
    s.sql("ANALYZE").await;

    // The plans of the two heaviest counts.
    let explain = match s.backend {
        crate::common::Backend::Sqlite => "EXPLAIN QUERY PLAN",
        crate::common::Backend::Postgres => "EXPLAIN",
    };
    let mut conn = store.reader().acquire().await.unwrap();
    for (table, extra) in [
        (
            "certificates",
            "AND revoked_at IS NULL AND deleted_at IS NULL",
        ),
        ("managed_certificates", "AND deleted_at IS NULL"),
    ] {
        let sql = format!(
            "{explain} SELECT COUNT(*) AS n FROM {table} WHERE tenant_id = $1 {extra} \
             AND not_after > $2 AND not_after <= $3"
        );
        let rows = store::query(&sql)
            .bind(tenant_id.as_str())
            .bind(now)
            .bind(now + 30 * DAY)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan: Vec<String> = rows
            .iter()
            .map(|r| {
                r.try_get::<String, _>(match s.backend {
                    crate::common::Backend::Sqlite => "detail",
                    crate::common::Backend::Postgres => "QUERY PLAN",
                })
                .unwrap()
            })
            .collect();
        println!("{:?} plan of the {table} count: {plan:?}", s.backend);
        let index = if table == "certificates" {
            "certificates_pending"
        } else {
            "managed_pending"
        };
        assert!(plan.iter().any(|l| l.contains(index)), "{plan:?}");
    }
    drop(conn);

    let p = a.pending().await;
    println!("{:?}: counts {:?}", s.backend, counts(&p));
    assert!(count(&p, "expiring") > 8_000, "{p}");
    latency(&a, "after ANALYZE").await;
    if s.backend == crate::common::Backend::Postgres {
        // What autovacuum does in time: sets the visibility map, so the counts read the
        // index alone (no heap fetches).
        use sqlx::{Connection, Executor};
        let mut c = sqlx::PgConnection::connect(&s.database_url).await.unwrap();
        c.execute("VACUUM ANALYZE").await.unwrap();
        latency(&a, "after VACUUM").await;
    }
}

async fn latency(a: &As<'_>, when: &str) {
    use std::time::Instant;
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        a.pending().await;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{:?} {when}: GET /pending: min {:?}, median {:?}, max {:?}",
        a.s.backend,
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

mod pending_at_scale {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "seeds 200,000 rows; run by hand with --nocapture"]
    async fn sqlite() {
        let s = crate::common::TestServer::start(crate::common::Backend::Sqlite).await;
        super::at_scale(&s).await;
        s.stop().await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "seeds 200,000 rows; run by hand with --nocapture"]
    async fn postgres() {
        if crate::common::postgres_missing() {
            return;
        }
        let s = crate::common::TestServer::start(crate::common::Backend::Postgres).await;
        super::at_scale(&s).await;
        s.stop().await;
    }
}
