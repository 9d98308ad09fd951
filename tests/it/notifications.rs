//! Notifications (issue 14): events reach a real HTTP receiver that checks the HMAC
//! signature, and a real SMTP server (aiosmtpd); reminders fire once per threshold as the
//! test clock moves; failed deliveries retry with back-off under the same event id, then
//! show in `/pending`; channel rules, roles, the network allow-list and the notification
//! quota.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{Backend, TestServer};

/// A test on each backend whose body starts its own (clocked) server; PostgreSQL is
/// skipped inside the body when it is not configured.
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body(crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body(crate::common::Backend::Postgres).await;
            }
        }
    };
}

const SECRET: &str = "whsec_0123456789abcdef";
const DAY: i64 = 86_400;

/// HMAC-SHA256 written out (RFC 2104), independent of the server's implementation.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    event_id: String,
    signature_ok: bool,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    /// Requests still to answer 500.
    fail: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let r = Receiver {
            addr: "127.0.0.1:0".parse().unwrap(),
            got: Arc::default(),
            fail: Arc::new(Mutex::new(fail_first)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(r.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Receiver { addr, ..r }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.addr.port())
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn of_type(&self, t: &str) -> Vec<Got> {
        self.all()
            .into_iter()
            .filter(|g| g.body["type"] == t)
            .collect()
    }

    /// Waits (up to 15 s) until `n` events of type `t` arrived; returns them.
    async fn wait(&self, t: &str, n: usize) -> Vec<Got> {
        for _ in 0..150 {
            let v = self.of_type(t);
            if v.len() >= n {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} × {t} did not arrive; got {:#?}", self.all());
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxStatus {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let sig = h("vellum-signature");
    let mut t = "";
    let mut v1 = "";
    for part in sig.split(',') {
        if let Some(x) = part.strip_prefix("t=") {
            t = x;
        }
        if let Some(x) = part.strip_prefix("v1=") {
            v1 = x;
        }
    }
    let mut signed = t.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&body);
    let signature_ok = !t.is_empty() && hex::encode(hmac_sha256(SECRET.as_bytes(), &signed)) == v1;
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push(Got {
        event_id: h("vellum-event-id"),
        signature_ok,
        body: parsed,
    });
    let mut fail = r.fail.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        return AxStatus::INTERNAL_SERVER_ERROR;
    }
    AxStatus::NO_CONTENT
}

async fn webhook(s: &TestServer, r: &Receiver, events: Value) -> Value {
    let (st, v) = s
        .post(
            "/notifications/channels",
            json!({"kind": "webhook", "name": "ops hook", "url": r.url(), "secret": SECRET, "events": events}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// A certificate + key made elsewhere, valid until `days` from `now` (Unix seconds).
fn third_party(cn: &str, now: i64, days: i64) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![cn.to_string(), format!("www.{cn}")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names
        .push(SanType::DnsName(format!("api.{cn}").try_into().unwrap()));
    p.not_before = time::OffsetDateTime::from_unix_timestamp(now - DAY).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(now + days * DAY).unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn upload(s: &TestServer, name: &str, cert: &str, key: &str) -> Value {
    let (st, v) = s
        .post(
            "/managed",
            json!({"name": name, "certificate_pem": cert, "private_key_pem": key, "tags": {"team": "web"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn events_reach_a_signed_webhook(s: &TestServer) {
    let r = Receiver::start(0).await;
    let ch = webhook(s, &r, json!(["*"])).await;
    assert_eq!(ch["secret_set"], json!(true));
    assert!(
        ch.get("secret").is_none(),
        "the secret is never shown: {ch}"
    );
    assert_eq!(ch["kind"], "webhook");

    let (root, inter) = s.enabled_pair("Notify Root", 100, 50).await;
    let enabled = r.wait("ca.enabled", 2).await;
    let ids: Vec<&Value> = enabled
        .iter()
        .map(|g| &g.body["data"]["ca"]["id"])
        .collect();
    assert!(
        ids.contains(&&json!(root)) && ids.contains(&&json!(inter)),
        "{ids:?}"
    );

    let (st, cert) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "shop.example", "validity_days": 30, "tags": {"app": "shop"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{cert}");
    let issued = r.wait("certificate.issued", 1).await;
    let g = &issued[0];
    assert!(g.signature_ok, "signature must verify: {g:?}");
    assert_eq!(g.event_id, g.body["id"].as_str().unwrap());
    assert_eq!(g.body["data"]["certificate"]["id"], cert["id"]);
    assert_eq!(g.body["data"]["certificate"]["common_name"], "shop.example");
    assert_eq!(g.body["data"]["certificate"]["tags"]["app"], "shop");
    assert_eq!(
        g.body["data"]["renew"]["cli"],
        json!(format!("vellum admin cert renew {}", id(&cert)))
    );

    let (st, v) = s
        .post(
            &format!("/certificates/{}/revoke", id(&cert)),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let revoked = r.wait("certificate.revoked", 1).await;
    assert_eq!(revoked[0].body["data"]["certificate"]["id"], cert["id"]);
    assert_eq!(revoked[0].body["data"]["reason"], "keyCompromise");

    let now = vellum_core::time::now();
    let (c, k) = third_party("bought.example", now, 200);
    let m = upload(s, "bought", &c, &k).await;
    let up = r.wait("managed.uploaded", 1).await;
    assert_eq!(up[0].body["data"]["certificate"]["id"], m["id"]);
    assert_eq!(up[0].body["data"]["certificate"]["name"], "bought");

    // The test message is sent at once and reports the receiver's answer.
    let (st, t) = s
        .post(
            &format!("/notifications/channels/{}/test", id(&ch)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["delivered"], json!(true), "{t}");
    assert_eq!(t["remote_status"], json!(204));
    let tests = r.wait("test", 1).await;
    assert_eq!(tests[0].event_id, t["event_id"].as_str().unwrap());

    // Every event arrived once and signed.
    let all = r.all();
    assert!(all.iter().all(|g| g.signature_ok), "{all:#?}");
    let mut ids: Vec<&str> = all.iter().map(|g| g.event_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "no event twice");

    // The delivery log.
    for _ in 0..50 {
        let (_, v) = s.get("/notifications/deliveries?status=delivered").await;
        if v["items"].as_array().unwrap().len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, v) = s
        .get("/notifications/deliveries?event=certificate.revoked")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["status"], "delivered");
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(items[0]["remote_status"], 204);
    let (st, d) = s
        .get(&format!(
            "/notifications/deliveries/{}",
            items[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["payload"]["type"], "certificate.revoked");
    let (st, v) = s.get("/notifications/deliveries?event=nope").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "event");
}
crate::both_backends!(events_webhook, events_reach_a_signed_webhook);

async fn start_clocked(
    backend: Backend,
    extra: &[(&str, &str)],
) -> Option<(TestServer, vellum_core::time::Clock)> {
    if backend == Backend::Postgres && crate::common::postgres_missing() {
        return None;
    }
    let clock = vellum_core::time::Clock::fixed(vellum_core::time::now());
    let mut env = vec![
        ("VELLUM_NOTIFICATIONS_SCHEDULER_INTERVAL_SECS", "1"),
        ("VELLUM_NOTIFICATIONS_DELIVERY_INTERVAL_MS", "50"),
    ];
    env.extend_from_slice(extra);
    Some((
        TestServer::start_with_clock(backend, &env, clock.clone()).await,
        clock,
    ))
}

async fn reminders(backend: Backend) {
    let Some((s, clock)) = start_clocked(backend, &[]).await else {
        return;
    };
    let r = Receiver::start(0).await;
    webhook(
        &s,
        &r,
        json!(["certificate.expiring", "certificate.expired"]),
    )
    .await;
    let t0 = clock.now();
    let (c, k) = third_party("remind.example", t0, 40);
    let m = upload(&s, "remind me", &c, &k).await;
    assert_eq!(m["notifications"], json!(true));
    let not_after = t0 + 40 * DAY;

    // 40 days left: nothing yet.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(r.all().is_empty(), "{:#?}", r.all());

    // Each threshold fires once, the most urgent crossed one only.
    for (at, threshold) in [
        (not_after - 29 * DAY, 30),
        (not_after - 6 * DAY, 7),
        (not_after - DAY / 2, 1),
    ] {
        clock.set(at);
        let got = r
            .wait(
                "certificate.expiring",
                [30, 7, 1].iter().position(|d| *d == threshold).unwrap() + 1,
            )
            .await;
        let last = &got.last().unwrap().body["data"];
        assert_eq!(last["threshold_days"], json!(threshold), "{last}");
        assert_eq!(last["certificate"]["id"], m["id"]);
        assert_eq!(last["certificate"]["name"], "remind me");
        assert_eq!(last["certificate"]["tags"]["team"], "web");
        assert!(
            last["certificate"]["sans"]
                .to_string()
                .contains("api.remind.example"),
            "{last}"
        );
    }
    clock.set(not_after + 60);
    r.wait("certificate.expired", 1).await;
    // Passes keep running: nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(r.of_type("certificate.expiring").len(), 3, "{:#?}", r.all());
    assert_eq!(r.of_type("certificate.expired").len(), 1);

    // Reminders off: a second certificate crossing its threshold sends nothing.
    let (c2, k2) = third_party("quiet.example", clock.now(), 20);
    let m2 = upload(&s, "quiet", &c2, &k2).await;
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{}", id(&m2)),
            Some(json!({"notifications": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // It may have been looked at already (30-day threshold crossed at upload): at most that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = r.of_type("certificate.expiring").len();
    clock.advance(15 * DAY);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        r.of_type("certificate.expiring").len(),
        before,
        "reminders off"
    );
    s.stop().await;
}

on_both!(reminders_fire_once_per_threshold, reminders);

async fn retries(backend: Backend) {
    let Some((s, clock)) = start_clocked(backend, &[]).await else {
        return;
    };
    let r = Receiver::start(2).await;
    let ch = webhook(&s, &r, json!(["managed.uploaded"])).await;
    let (c, k) = third_party("retry.example", clock.now(), 90);
    upload(&s, "retry", &c, &k).await;
    r.wait("managed.uploaded", 1).await;
    // The first attempt got a 500: the log says so, the next attempt waits 10 s.
    let delivery = loop {
        let (_, v) = s
            .get("/notifications/deliveries?event=managed.uploaded")
            .await;
        let d = v["items"][0].clone();
        if d["remote_status"] == json!(500) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["status"], "pending", "{delivery}");
    assert_eq!(delivery["attempts"], 1);
    assert!(
        delivery["error"].as_str().unwrap().contains("500"),
        "{delivery}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.all().len(), 1, "no retry before the back-off");
    clock.advance(11);
    r.wait("managed.uploaded", 2).await;
    clock.advance(21);
    let got = r.wait("managed.uploaded", 3).await;
    assert!(
        got.iter().all(|g| g.event_id == got[0].event_id),
        "same event id: {got:#?}"
    );
    let did = delivery["id"].as_str().unwrap().to_string();
    let d = loop {
        let (_, d) = s.get(&format!("/notifications/deliveries/{did}")).await;
        if d["status"] == "delivered" {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d["attempts"], 3);

    // Redelivery: once more, same event id.
    let (st, v) = s
        .post(
            &format!("/notifications/deliveries/{did}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got = r.wait("managed.uploaded", 4).await;
    assert_eq!(got[3].event_id, got[0].event_id);

    // A receiver that keeps failing: retried for 24 hours, then failed, and pending.
    *r.fail.lock().unwrap() = 1_000;
    let (c, k) = third_party("down.example", clock.now(), 90);
    upload(&s, "down", &c, &k).await;
    r.wait("managed.uploaded", 5).await;
    for _ in 0..40 {
        clock.advance(3600);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let failed = loop {
        let (_, v) = s.get("/notifications/deliveries?status=failed").await;
        if !v["items"].as_array().unwrap().is_empty() {
            break v["items"][0].clone();
        }
        clock.advance(3600);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failed["attempts"].as_i64().unwrap() >= 5, "{failed}");
    let (_, p) = s.get("/pending").await;
    let kind = p["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "notifications_failed")
        .unwrap()
        .clone();
    assert_eq!(kind["count"], 1, "{p}");
    assert_eq!(kind["items"][0]["id"], failed["id"]);
    assert!(kind["action"].as_str().unwrap().contains("redeliver"));

    // Deleting the channel fails what is still queued for it.
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/notifications/channels/{}", id(&ch)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    s.stop().await;
}

on_both!(failed_deliveries_back_off_then_fail, retries);

fn refused(res: (StatusCode, Value), field: &str, needle: &str) {
    let (st, v) = res;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], json!(field), "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains(needle),
        "{needle:?} in {v}"
    );
}

async fn channel_rules(s: &TestServer) {
    let hook = |extra: Value| {
        let mut b = json!({"kind": "webhook", "name": "h", "url": "https://hooks.example.com/x", "secret": SECRET, "events": ["*"]});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let p = "/notifications/channels";
    refused(
        s.post(p, hook(json!({"url": "ftp://x.example/"}))).await,
        "url",
        "http",
    );
    refused(
        s.post(p, hook(json!({"url": "not a url"}))).await,
        "url",
        "not a URL",
    );
    refused(
        s.post(p, hook(json!({"secret": "short"}))).await,
        "secret",
        "16 to 256",
    );
    refused(
        s.post(p, hook(json!({"secret": null}))).await,
        "secret",
        "required",
    );
    refused(
        s.post(p, hook(json!({"events": ["certificate.exploded"]})))
            .await,
        "events",
        "certificate.expiring",
    );
    refused(
        s.post(p, hook(json!({"events": []}))).await,
        "events",
        "at least one",
    );
    refused(
        s.post(p, hook(json!({"name": ""}))).await,
        "name",
        "1 to 100",
    );
    refused(
        s.post(p, hook(json!({"url": "https://u:p@hooks.example.com/"})))
            .await,
        "url",
        "user name",
    );
    let mail = json!({"kind": "email", "name": "m", "smtp": {"host": "smtp.example.com", "port": 587, "tls": "starttls"}, "from": "pki@example.com", "to": ["ops@example.com"], "events": ["*"]});
    let mut bad = mail.clone();
    bad["to"] = json!([]);
    refused(s.post(p, bad).await, "to", "1 to 20");
    let mut bad = mail.clone();
    bad["from"] = json!("not an address");
    refused(s.post(p, bad).await, "from", "not an e-mail address");
    let mut bad = mail.clone();
    bad["smtp"]["password"] = json!("pw");
    refused(s.post(p, bad).await, "smtp.username", "password");
    let mut bad = mail.clone();
    bad["smtp"]["tls"] = json!("sometimes");
    let (st, v) = s.post(p, bad).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("starttls"), "{v}");
    let mut bad = mail.clone();
    bad["url"] = json!("https://x.example/");
    refused(s.post(p, bad).await, "kind", "not url");

    // Good ones; the SMTP password is never shown; names are unique.
    let mut good = mail.clone();
    good["smtp"]["username"] = json!("pki");
    good["smtp"]["password"] = json!("s3cret-password");
    let (st, m) = s.post(p, good).await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    assert_eq!(m["smtp"]["password_set"], json!(true));
    assert!(!m.to_string().contains("s3cret-password"));
    let (st, v) = s.post(p, mail.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, h) = s.post(p, hook(json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{h}");
    // PATCH: events and switch; the kind stays.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{p}/{}", id(&h)),
            Some(json!({"events": ["certificate.issued"], "enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["events"], json!(["certificate.issued"]));
    assert_eq!(v["enabled"], json!(false));
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{p}/{}", id(&h)),
            Some(json!({"kind": "email"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Secrets are sealed at rest: the database never holds them in clear.
    let db = s.data_dir().join("vellum.db");
    if s.backend == Backend::Sqlite {
        let bytes = std::fs::read(&db).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(SECRET) && !hay.contains("s3cret-password"));
    }

    // Roles: an auditor reads, never changes.
    let (_, auditor) = s.tenant_with_token("notify-audit", "auditor").await;
    let (st, _) = s.call_as(&auditor, Method::GET, p, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .call_as(&auditor, Method::POST, p, Some(hook(json!({"name": "x"}))))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // Tenants are isolated.
    let (st, _) = s
        .call_as(&auditor, Method::GET, &format!("{p}/{}", id(&h)), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Settings.
    let (st, v) = s
        .call(
            Method::PUT,
            "/notifications/settings",
            Some(json!({"reminder_days": [0]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "reminder_days");
    let (st, v) = s
        .call(
            Method::PUT,
            "/notifications/settings",
            Some(json!({"reminder_days": [14, 60, 3], "quota_low_percent": 20})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["reminder_days"], json!([60, 14, 3]));
    assert_eq!(v["quota_low_percent"], 20);
}
crate::both_backends!(channels, channel_rules);

async fn network_allow_list(backend: Backend) {
    let Some((s, _clock)) = start_clocked(
        backend,
        &[("VELLUM_NOTIFICATIONS_NETWORKS", "[\"10.0.0.0/8\"]")],
    )
    .await
    else {
        return;
    };
    let r = Receiver::start(0).await;
    refused(
        s.post(
            "/notifications/channels",
            json!({"kind": "webhook", "name": "x", "url": r.url(), "secret": SECRET, "events": ["*"]}),
        )
        .await,
        "url",
        "outside the networks",
    );
    // A name is checked where it resolves, at every delivery.
    let (st, ch) = s
        .post(
            "/notifications/channels",
            json!({"kind": "webhook", "name": "x", "url": format!("http://localhost:{}/hook", r.addr.port()), "secret": SECRET, "events": ["*"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let (st, t) = s
        .post(
            &format!("/notifications/channels/{}/test", id(&ch)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["delivered"], json!(false));
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("outside the networks"),
        "{t}"
    );
    assert!(r.all().is_empty(), "nothing reached the receiver");
    refused(
        s.post(
            "/notifications/channels",
            json!({"kind": "email", "name": "m", "smtp": {"host": "127.0.0.1", "port": 25, "tls": "none"}, "from": "a@example.com", "to": ["b@example.com"], "events": ["*"]}),
        )
        .await,
        "smtp.host",
        "outside the networks",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn targets_outside_the_allowed_networks_are_refused() {
    network_allow_list(Backend::Sqlite).await;
}

async fn quota(backend: Backend) {
    let Some((s, clock)) =
        start_clocked(backend, &[("VELLUM_NOTIFICATIONS_DEFAULT_QUOTA", "1")]).await
    else {
        return;
    };
    let (c, k) = third_party("one.example", clock.now(), 90);
    let a = upload(&s, "one", &c, &k).await;
    assert_eq!(a["notifications"], json!(true));
    let (c, k) = third_party("two.example", clock.now(), 90);
    let b = upload(&s, "two", &c, &k).await;
    assert_eq!(b["notifications"], json!(false), "beyond the quota: off");
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{}", id(&b)),
            Some(json!({"notifications": true})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("quota of 1"), "{v}");
    let (_, p) = s.get("/pending").await;
    let off = p["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "notifications_off")
        .unwrap()
        .clone();
    assert_eq!(off["count"], 1, "{off}");
    assert_eq!(off["quota"], json!({"total": 1, "used": 1, "left": 0}));
    let (st, v) = s
        .post("/notifications/quota/purchase", json!({"count": 0}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = s
        .post("/notifications/quota/purchase", json!({"count": 1}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"total": 2, "used": 1, "left": 1}));
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{}", id(&b)),
            Some(json!({"notifications": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Off then on again for one already counted: no quota needed twice.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{}", id(&a)),
            Some(json!({"notifications": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get("/notifications/quota").await;
    assert_eq!(v, json!({"total": 2, "used": 2, "left": 0}));
    s.stop().await;
}

on_both!(notification_quota, quota);

/// A real SMTP server (aiosmtpd, from PyPI: `bash .ci/install-deps`) writing every
/// message it accepts into a Maildir.
struct Smtp {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    async fn start() -> Smtp {
        Smtp::start_with(&[]).await
    }

    /// With extra command-line options (`--tlscert`/`--tlskey`: STARTTLS required;
    /// `--smtpscert`/`--smtpskey`: implicit TLS).
    async fn start_with(extra: &[String]) -> Smtp {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let maildir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args([
                "-c",
                "aiosmtpd.handlers.Mailbox",
                &maildir.path().join("mail").display().to_string(),
            ])
            .spawn()
            .expect("python3 runs");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Smtp {
                    child,
                    port,
                    maildir,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start on {port}: install it with `bash .ci/install-deps` (pip install aiosmtpd)");
    }

    /// The messages received so far (raw RFC 5322 text).
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail").join("new");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    async fn wait(&self, n: usize) -> Vec<String> {
        for _ in 0..150 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} messages did not arrive: {:?}", self.messages());
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Quoted-printable soft line breaks and `=XX` escapes undone, enough to search text.
fn unqp(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn email(backend: Backend) {
    let Some((s, clock)) = start_clocked(backend, &[]).await else {
        return;
    };
    let smtp = Smtp::start().await;
    let (st, ch) = s
        .post(
            "/notifications/channels",
            json!({"kind": "email", "name": "ops mail",
                   "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none"},
                   "from": "Vellum <pki@example.com>", "to": ["ops@example.com", "oncall@example.com"],
                   "events": ["certificate.expiring", "managed.uploaded"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let (st, t) = s
        .post(
            &format!("/notifications/channels/{}/test", id(&ch)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["delivered"], json!(true), "{t}");
    assert_eq!(t["remote_status"], json!(250));
    let got = smtp.wait(1).await;
    assert!(
        got[0].contains("Subject: [Vellum] Test message from Vellum"),
        "{}",
        got[0]
    );

    // A certificate with 10 days left: uploaded (one message), then the 30-day reminder.
    let (c, k) = third_party("mail.example", clock.now(), 10);
    let m = upload(&s, "mail shop", &c, &k).await;
    let got = smtp.wait(3).await;
    let all = got
        .iter()
        .map(|g| unqp(g))
        .collect::<Vec<_>>()
        .join("\n----\n");
    let reminder = got
        .iter()
        .map(|g| unqp(g))
        .find(|g| g.contains("expires in 10 days"))
        .unwrap_or_else(|| panic!("no reminder among {all}"));
    for needle in [
        "To: ops@example.com, oncall@example.com",
        "Content-Type: text/plain",
        "Content-Type: text/html",
        "Certificate: mail shop (mail.example)",
        "Names (SANs): ",
        "api.mail.example",
        "Tags: team=web",
        "Expires: ",
        "What to do:",
        &format!("vellum admin managed delete {}", id(&m)),
        "<th align=\"left\"",
    ] {
        assert!(reminder.contains(needle), "{needle:?} not in {reminder}");
    }
    assert!(all.contains("was uploaded"), "{all}");
    // The delivery log records the server's answer.
    let (_, v) = s
        .get("/notifications/deliveries?event=certificate.expiring")
        .await;
    assert_eq!(v["items"][0]["remote_status"], 250, "{v}");
    assert_eq!(v["items"][0]["status"], "delivered");
    s.stop().await;
}

on_both!(email_reaches_a_real_smtp_server, email);

/// A CA made by the test and a certificate it issued for 127.0.0.1 / localhost, plus a
/// self-signed one nobody trusts; PEM files in a temporary directory.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn make() -> TlsFiles {
        use rcgen::{BasicConstraints, IsCa, Issuer};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "Notifications test mail CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).unwrap();
        let leaf = |signed: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, "localhost");
            p.subject_alt_names
                .push(SanType::IpAddress(std::net::IpAddr::V4(
                    std::net::Ipv4Addr::LOCALHOST,
                )));
            let cert = if signed {
                p.signed_by(&key, &issuer).unwrap()
            } else {
                p.self_signed(&key).unwrap()
            };
            (cert.pem(), key.serialize_pem())
        };
        let (trusted, trusted_key) = leaf(true);
        let (stranger, stranger_key) = leaf(false);
        for (name, text) in [
            ("roots.pem", ca_cert.pem()),
            ("mail.pem", trusted),
            ("mail.key", trusted_key),
            ("stranger.pem", stranger),
            ("stranger.key", stranger_key),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        TlsFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// aiosmtpd options: STARTTLS required (aiosmtpd's default once it has a
    /// certificate) or implicit TLS, with the trusted certificate or the stranger.
    fn args(&self, implicit: bool, trusted: bool) -> Vec<String> {
        let (cert, key) = if trusted {
            ("mail.pem", "mail.key")
        } else {
            ("stranger.pem", "stranger.key")
        };
        let (c, k) = if implicit {
            ("--smtpscert", "--smtpskey")
        } else {
            ("--tlscert", "--tlskey")
        };
        vec![c.into(), self.path(cert), k.into(), self.path(key)]
    }
}

async fn mail_channel(s: &TestServer, name: &str, port: u16, tls: &str, events: Value) -> String {
    let (st, ch) = s
        .post(
            "/notifications/channels",
            json!({"kind": "email", "name": name,
                   "smtp": {"host": "127.0.0.1", "port": port, "tls": tls},
                   "from": "Vellum <pki@example.com>", "to": ["ops@example.com"],
                   "events": events}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    id(&ch)
}

async fn test_call(s: &TestServer, channel: &str) -> Value {
    let (st, t) = s
        .post(
            &format!("/notifications/channels/{channel}/test"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    t
}

/// E-mail over TLS to real SMTP servers: STARTTLS (required by the server) and implicit
/// TLS, the server's certificate trusted through `notifications.extra_roots_file`; a
/// plain-text channel to a server that requires STARTTLS fails readably (test call and
/// delivery log); an untrusted certificate is refused.
async fn email_tls(backend: Backend) {
    let files = TlsFiles::make();
    let roots = files.path("roots.pem");
    let Some((s, clock)) = start_clocked(
        backend,
        &[("VELLUM_NOTIFICATIONS_EXTRA_ROOTS_FILE", roots.as_str())],
    )
    .await
    else {
        return;
    };

    // STARTTLS: the test message and an event's delivery both arrive.
    let starttls = Smtp::start_with(&files.args(false, true)).await;
    let tls_ch = mail_channel(
        &s,
        "starttls",
        starttls.port,
        "starttls",
        json!(["managed.uploaded"]),
    )
    .await;
    let t = test_call(&s, &tls_ch).await;
    assert_eq!(t["delivered"], json!(true), "{t}");
    assert_eq!(t["remote_status"], json!(250), "{t}");
    let got = starttls.wait(1).await;
    assert!(
        got[0].contains("Subject: [Vellum] Test message from Vellum"),
        "{}",
        got[0]
    );

    // The same server through a channel without TLS: it refuses before any message.
    let plain_ch = mail_channel(
        &s,
        "no tls",
        starttls.port,
        "none",
        json!(["managed.uploaded"]),
    )
    .await;
    let t = test_call(&s, &plain_ch).await;
    assert_eq!(t["delivered"], json!(false), "{t}");
    let err = t["error"].as_str().unwrap_or_default();
    assert!(err.contains("STARTTLS"), "{t}");
    assert!(!err.contains("Error {") && !err.contains("kind:"), "{t}");

    // An uploaded certificate: delivered over STARTTLS; the plain channel's delivery
    // fails with the server's answer in the log (and waits for a retry).
    let (c, k) = third_party("tls-mail.example", clock.now(), 90);
    upload(&s, "tls mail", &c, &k).await;
    let got = starttls.wait(2).await;
    assert!(got.iter().any(|g| unqp(g).contains("tls mail")), "{got:#?}");
    let (ok, failed) = loop {
        let (_, v) = s
            .get("/notifications/deliveries?event=managed.uploaded")
            .await;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let of = |ch: &str| {
            items
                .iter()
                .find(|d| d["channel_id"] == json!(ch))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let (ok, failed) = (of(&tls_ch), of(&plain_ch));
        if ok["status"] == "delivered" && failed["attempts"].as_i64().unwrap_or(0) >= 1 {
            break (ok, failed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ok["remote_status"], json!(250), "{ok}");
    assert_eq!(failed["status"], "pending", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("STARTTLS"),
        "{failed}"
    );
    assert_eq!(starttls.messages().len(), 2, "nothing arrived in clear");

    // A server whose certificate nobody trusts: refused, and the answer says why.
    let stranger = Smtp::start_with(&files.args(false, false)).await;
    let ch = mail_channel(&s, "stranger", stranger.port, "starttls", json!(["*"])).await;
    let t = test_call(&s, &ch).await;
    assert_eq!(t["delivered"], json!(false), "{t}");
    assert!(
        t["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("certificate"),
        "{t}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stranger.messages().is_empty());

    // Implicit TLS (SMTPS), trusted: delivered.
    let smtps = Smtp::start_with(&files.args(true, true)).await;
    let ch = mail_channel(&s, "smtps", smtps.port, "implicit", json!(["*"])).await;
    let t = test_call(&s, &ch).await;
    assert_eq!(t["delivered"], json!(true), "{t}");
    assert_eq!(t["remote_status"], json!(250), "{t}");
    smtps.wait(1).await;
    s.stop().await;
}

on_both!(email_over_starttls_and_implicit_tls, email_tls);

/// Two replicas on one PostgreSQL, 1,000 managed certificates crossing their 30-day
/// threshold: every reminder reaches the receiver exactly once, although both replicas'
/// schedulers are also made to run the same pass at the same moment (past the lease that
/// normally keeps one of them idle) and both replicas' workers deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_send_each_reminder_once() {
    if crate::common::postgres_missing() {
        return;
    }
    let url = crate::common::fresh_pg_database().await;
    let key = "44".repeat(32);
    let clock = vellum_core::time::Clock::fixed(vellum_core::time::now());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra = [
        ("VELLUM_MASTER_KEY", key.as_str()),
        ("VELLUM_NOTIFICATIONS_SCHEDULER_INTERVAL_SECS", "1"),
        ("VELLUM_NOTIFICATIONS_DELIVERY_INTERVAL_MS", "50"),
    ];
    let start = |dir: &std::path::Path| {
        let env = crate::common::env_for(dir, &url, &extra);
        let config = vellum_core::config::Config::load_with_env(None, &env).unwrap();
        vellum_server::start_with_clock(config, clock.clone())
    };
    let a = start(d1.path()).await.unwrap();
    let b = start(d2.path()).await.unwrap();
    let sa = TestServer::attach(a, d1, Backend::Postgres, url.clone());
    let sb = TestServer::attach(b, d2, Backend::Postgres, url.clone());
    let r = Receiver::start(0).await;
    webhook(&sa, &r, json!(["certificate.expiring"])).await;

    // 1,000 certificates expiring in 20 days, written through the store (uploading each
    // through the API would measure key generation, not the scheduler).
    let now = clock.now();
    let tenant = {
        let mut conn = sa.app().store.reader().acquire().await.unwrap();
        store::tenants::find_tenant(&mut conn, "default")
            .await
            .unwrap()
            .unwrap()
    };
    let mut tx = sa.app().store.begin().await.unwrap();
    for i in 0..1000 {
        let row = store::managed::ManagedRow {
            id: uuid::Uuid::now_v7().simple().to_string(),
            tenant_id: tenant.id.clone(),
            name: format!("fleet-{i}"),
            source: vellum_core::status::ManagedSource::Uploaded,
            tags_json: "{}".into(),
            notifications: true,
            subject: format!("CN=host-{i}.fleet.example"),
            common_name: format!("host-{i}.fleet.example"),
            sans_json: "[]".into(),
            issuer: "CN=Elsewhere".into(),
            serial: format!("{i:x}"),
            key_algorithm: "ec-p256".into(),
            not_before: now - DAY,
            not_after: now + 20 * DAY + i,
            leakage_risk: false,
            certificate_der: vec![0x30],
            chain_der: Vec::new(),
            key_sealed: None,
            created_at: now,
            deleted_at: None,
            origin_certificate_id: None,
            shared_by_tenant_id: None,
            shared_by_name: None,
            revoked_at: None,
        };
        store::managed::insert(&mut tx, &row).await.unwrap();
    }
    tx.commit().await.unwrap();
    // Both replicas run the same pass at once, beside their background schedulers.
    let (x, y) = tokio::join!(
        ra::notify::schedule(sa.app(), now),
        ra::notify::schedule(sb.app(), now)
    );
    let queued = x.unwrap().queued + y.unwrap().queued;
    assert!(queued <= 1000, "queued {queued}");
    let got = r.wait("certificate.expiring", 1000).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let got_after = r.of_type("certificate.expiring");
    assert_eq!(got_after.len(), 1000, "every reminder once, none twice");
    let mut ids: Vec<String> = got.iter().map(|g| g.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    let mut certs: Vec<String> = got_after
        .iter()
        .map(|g| {
            g.body["data"]["certificate"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    certs.sort();
    certs.dedup();
    assert_eq!(certs.len(), 1000, "one reminder per certificate");
    sb.stop().await;
    sa.stop().await;
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `vellum` binary killed with SIGKILL in the middle of a delivery burst, then
/// started again: every event arrives, and the only repeats are deliveries that were in
/// flight at the kill, with their event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (https, http) = (free_port(), free_port());
    // A slow receiver: each request takes 300 ms, so a burst is still in flight when the
    // process dies.
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    {
        let got = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let got = got.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let id = headers
                        .get("vellum-event-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    got.lock().unwrap().push(id);
                    AxStatus::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
    }
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vellum"))
            .arg("serve")
            .env("VELLUM_DATA_DIR", &data)
            .env("VELLUM_LISTEN_HTTPS", format!("127.0.0.1:{https}"))
            .env("VELLUM_LISTEN_HTTP", format!("127.0.0.1:{http}"))
            .env("VELLUM_NOTIFICATIONS_DELIVERY_INTERVAL_MS", "50")
            .env("VELLUM_NOTIFICATIONS_TIMEOUT_SECS", "2")
            .env("VELLUM_NOTIFICATIONS_LEASE_SECS", "9")
            .env("VELLUM_BOOTSTRAP_ROOT_QUOTA", "5000")
            .env("VELLUM_BOOTSTRAP_INTERMEDIATE_QUOTA", "1000")
            .env("VELLUM_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("vellum starts")
    };
    let base = format!("https://localhost:{https}/admin/v1");
    let wait_up = || async {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", https))
                .await
                .is_ok()
                && data.join("admin-token").exists()
                && data.join("root.pem").exists()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("vellum did not start");
    };
    let mut child = spawn();
    wait_up().await;
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let client = crate::common::client_trusting(&data.join("root.pem"));
    let call = |path: String, body: Value| {
        let (client, token, base) = (client.clone(), token.clone(), base.clone());
        async move {
            let resp = client
                .post(format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(st.is_success(), "{path}: {st} {v}");
            v
        }
    };
    call(
        "/notifications/channels".into(),
        json!({"kind": "webhook", "name": "slow", "url": format!("http://127.0.0.1:{}/hook", hook.port()), "secret": SECRET, "events": ["certificate.issued"]}),
    )
    .await;
    let cas = client
        .get(format!("{base}/cas?kind=intermediate&status=enabled"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let inter = cas["items"][0]["id"].as_str().unwrap().to_string();
    const N: usize = 300;
    for i in 0..N {
        call(
            format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": format!("k{i}.kill.example"), "validity_days": 30}),
        )
        .await;
    }
    // Kill mid-burst.
    while got.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = got.lock().unwrap().len();
    assert!(
        at_kill < N,
        "the burst was not over at the kill ({at_kill})"
    );
    // Requests already sent still complete at the receiver; then the process comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut child = spawn();
    wait_up().await;
    let mut distinct = 0;
    for _ in 0..600 {
        let mut ids = got.lock().unwrap().clone();
        ids.sort();
        ids.dedup();
        distinct = ids.len();
        if distinct == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(distinct, N, "every event arrived");
    let all = got.lock().unwrap().clone();
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for id in &all {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|c| *c <= 2), "at most one repeat each");
    let repeats = all.len() - N;
    // Only what was in flight at the kill (64 at most at once) may arrive twice.
    assert!(repeats <= 64, "{repeats} repeats");
    eprintln!("kill -9: {at_kill} delivered before, {repeats} repeated");
}

fn unix(v: &Value) -> i64 {
    time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp()
}

/// The CA events: quota.low (once per assignment), ca.revoked, ca.service_ending and
/// ca.expiring as the clock moves, each with the CA's facts.
async fn ca_events(backend: Backend) {
    let Some((s, clock)) = start_clocked(backend, &[]).await else {
        return;
    };
    let r = Receiver::start(0).await;
    webhook(
        &s,
        &r,
        json!([
            "quota.low",
            "ca.revoked",
            "ca.service_ending",
            "ca.expiring"
        ]),
    )
    .await;
    let (st, v) = s
        .call(
            Method::PUT,
            "/notifications/settings",
            Some(json!({"quota_low_percent": 50})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (root, inter) = s.enabled_pair("Events Root", 100, 10).await;
    for i in 0..6 {
        let (st, v) = s
            .post(
                &format!("/cas/{inter}/certificates"),
                json!({"type": "server", "common_name": format!("q{i}.example"), "validity_days": 30}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let low = r.wait("quota.low", 1).await;
    let ca = &low[0].body["data"]["ca"];
    assert_eq!(ca["id"], json!(inter));
    assert_eq!(ca["quota_remaining"], 4);
    assert_eq!(ca["quota_assigned"], 10);
    assert_eq!(low[0].body["data"]["threshold_percent"], 50);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(r.of_type("quota.low").len(), 1, "once per assignment");

    let (st, v) = s
        .post(
            &format!("/cas/{inter}/revoke"),
            json!({"reason": "cessationOfOperation"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rev = r.wait("ca.revoked", 1).await;
    assert_eq!(rev[0].body["data"]["ca"]["id"], json!(inter));
    assert_eq!(rev[0].body["data"]["ca"]["status"], "revoked");

    let (_, rv) = s.get(&format!("/cas/{root}")).await;
    let service_until = unix(&rv["service_until"]);
    clock.set(service_until - 5 * DAY);
    let end = r.wait("ca.service_ending", 1).await;
    assert_eq!(end[0].body["data"]["ca"]["id"], json!(root));
    assert_eq!(end[0].body["data"]["threshold_days"], 7);
    assert!(end[0].body["data"]["renew"]["api"]
        .as_str()
        .unwrap()
        .contains("/service/renew"));
    let not_after = unix(&rv["not_after"]);
    clock.set(not_after - 20 * DAY);
    // The bootstrap CAs expire too (by then, or earlier): find this root's event.
    let mut mine = None;
    for _ in 0..150 {
        mine = r
            .of_type("ca.expiring")
            .into_iter()
            .find(|g| g.body["data"]["ca"]["id"] == json!(root));
        if mine.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mine = mine.unwrap_or_else(|| panic!("no ca.expiring for {root}: {:#?}", r.all()));
    assert_eq!(mine.body["data"]["threshold_days"], 30);
    assert!(mine.signature_ok);
    s.stop().await;
}

on_both!(ca_events, ca_events);

/// `managed.shared` goes to the recipient tenant's channels, not the owner's.
async fn shared_event(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Share Root", 100, 10).await;
    let (st, cert) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "shared.example", "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{cert}");
    let (st, t) = s
        .post("/tenants", json!({"name": "sis", "entity": "default"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, tok) = s
        .post(
            "/tokens",
            json!({"tenant": "sis", "role": "admin", "name": "admin of sis"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let tok = tok["token"].as_str().unwrap().to_string();
    let (r_sister, r_owner) = (Receiver::start(0).await, Receiver::start(0).await);
    let (st, v) = s
        .call_as(
            &tok,
            Method::POST,
            "/notifications/channels",
            Some(json!({"kind": "webhook", "name": "sister hook", "url": r_sister.url(), "secret": SECRET, "events": ["managed.shared"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    webhook(s, &r_owner, json!(["managed.shared"])).await;
    let (st, v) = s
        .post(
            &format!("/certificates/{}/share", id(&cert)),
            json!({"tenant": id(&t)}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let got = r_sister.wait("managed.shared", 1).await;
    let d = &got[0].body["data"];
    assert!(got[0].signature_ok);
    assert_eq!(got[0].body["tenant_id"], json!(id(&t)));
    assert_eq!(d["certificate"]["common_name"], "shared.example");
    assert_eq!(d["certificate"]["source"], "shared");
    assert_eq!(d["shared_by"]["name"], "default");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        r_owner.all().is_empty(),
        "not the owner's event: {:#?}",
        r_owner.all()
    );
}
crate::both_backends!(shared_to_you, shared_event);

/// `enrollment.refused`: an EST client finds the intermediate's quota spent. The webhook
/// gets one event naming the CA, the door, the reason and what to do; more refusals within
/// the hour send nothing new; the next hour's first refusal is announced again.
async fn enrollment_refused(backend: Backend) {
    use crate::est::{add_client, cn_csr, enroll, est_client, PASSWORD};
    let Some((s, clock)) = start_clocked(backend, &[]).await else {
        return;
    };
    let r = Receiver::start(0).await;
    webhook(&s, &r, json!(["enrollment.refused"])).await;
    let (root, inter) = s.enabled_pair("Refusing Root", 10, 1).await;
    add_client(&s, &inter, "dev", None).await;
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/cas/{inter}/est"),
            Some(json!({"label": "refusing", "auth": ["basic"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let http = est_client(&s, None);
    let key = KeyPair::generate().unwrap();
    let csr = cn_csr(&key, "door.devices.example");
    let basic = Some(("dev", PASSWORD));
    // The one unit of quota: issued, no event.
    let a = enroll(&s, &http, Some("refusing"), "simpleenroll", basic, &csr).await;
    assert_eq!(a.certs().len(), 1);
    // Spent: refused (503), one event.
    let a = enroll(&s, &http, Some("refusing"), "simpleenroll", basic, &csr).await;
    a.text_error(StatusCode::SERVICE_UNAVAILABLE, &inter);
    let got = r.wait("enrollment.refused", 1).await;
    let d = &got[0].body["data"];
    assert_eq!(d["ca"]["id"], json!(inter), "{d:#}");
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(d["ca"]["common_name"], ca["common_name"], "{d:#}");
    assert!(got[0].signature_ok);
    assert_eq!(d["ca"]["parent_id"], json!(root), "{d:#}");
    assert_eq!(d["ca"]["kind"], "intermediate", "{d:#}");
    assert_eq!(d["ca"]["quota_remaining"], 0, "{d:#}");
    assert_eq!(d["ca"]["quota_assigned"], 1, "{d:#}");
    assert_eq!(d["door"], "est", "{d:#}");
    assert_eq!(d["common_name"], "door.devices.example", "{d:#}");
    assert_eq!(d["reason"], "quota_exhausted", "{d:#}");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("EST enrollment") && message.contains("no quota left"),
        "{d:#}"
    );
    assert_eq!(
        d["assign"]["api"],
        json!(format!(
            "POST /admin/v1/cas/{root}/quota/assign {{\"intermediate_id\": \"{inter}\", \"count\": N}}"
        )),
        "{d:#}"
    );
    assert!(
        d["assign"]["advice"]
            .as_str()
            .unwrap()
            .contains("assign quota"),
        "{d:#}"
    );
    assert_eq!(got[0].body["type"], "enrollment.refused");

    // Two more refusals within the hour: nothing new.
    clock.advance(60);
    for _ in 0..2 {
        let a = enroll(&s, &http, Some("refusing"), "simpleenroll", basic, &csr).await;
        a.text_error(StatusCode::SERVICE_UNAVAILABLE, &inter);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(r.of_type("enrollment.refused").len(), 1, "{:#?}", r.all());
    let (_, v) = s
        .get("/notifications/deliveries?event=enrollment.refused")
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");

    // The next hour: announced again, as a new event.
    clock.advance(3600);
    let a = enroll(&s, &http, Some("refusing"), "simpleenroll", basic, &csr).await;
    a.text_error(StatusCode::SERVICE_UNAVAILABLE, &inter);
    let got = r.wait("enrollment.refused", 2).await;
    assert_ne!(got[0].event_id, got[1].event_id);
    s.stop().await;
}

on_both!(enrollment_refused_once_per_ca_and_hour, enrollment_refused);

/// `enrollment.refused` from the ACME door: a finalize that finds the intermediate's
/// quota spent is refused (the order stays ready) and announced once, naming the door.
async fn acme_enrollment_refused(backend: Backend) {
    use crate::acme::{csr_for, dir_url, order_ip};
    use crate::common::acme::{new_account, server_with_responder};
    use instant_acme::{Identifier, NewOrder, OrderStatus};
    use std::net::{IpAddr, Ipv4Addr};
    let (s, responder) = server_with_responder(backend).await;
    let r = Receiver::start(0).await;
    webhook(&s, &r, json!(["enrollment.refused"])).await;
    let (root, inter) = s.enabled_pair("ACME Refusing", 5, 1).await;
    let account = new_account(&s, &dir_url(&s, &inter)).await;
    // The one unit of quota: issued, no event.
    order_ip(&account, &responder)
        .await
        .expect("first certificate");
    // Spent: the next finalize is refused, the order stays ready, one event.
    let ids = [Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    assert_eq!(order.state().status, OrderStatus::Ready);
    let (_, csr) = csr_for(&["127.0.0.1"]);
    let err = order.finalize_csr(&csr).await.unwrap_err();
    assert!(format!("{err:?}").contains("assign quota"), "{err:?}");
    let got = r.wait("enrollment.refused", 1).await;
    let d = &got[0].body["data"];
    assert_eq!(d["door"], "acme", "{d:#}");
    assert_eq!(d["ca"]["id"], json!(inter), "{d:#}");
    assert_eq!(d["reason"], "quota_exhausted", "{d:#}");
    // No CN in the order: the certificate is named by its SAN.
    assert_eq!(
        d["sans"],
        json!([{"type": "ip", "value": "127.0.0.1"}]),
        "{d:#}"
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("an ACME enrollment for \"127.0.0.1\" was refused"),
        "{d:#}"
    );
    assert!(
        d["assign"]["api"].as_str().unwrap().contains(&root),
        "{d:#}"
    );
    assert!(got[0].signature_ok);
    // A retry within the hour: refused again, nothing new announced.
    order.finalize_csr(&csr).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(r.of_type("enrollment.refused").len(), 1, "{:#?}", r.all());
    s.stop().await;
}

on_both!(
    acme_enrollment_refused_once_per_ca_and_hour,
    acme_enrollment_refused
);
