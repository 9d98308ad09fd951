//! A challenge left `processing` by a replica that died (issue 17) is validated by the
//! replicas still running (`ra::acme::takeover`): the dead replica is simulated by writing
//! the row's state with SQL, with no validation running in this process.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::acme::{csr_for, fixtures};
use crate::common::acme::{Post, Raw, Responder};
use crate::common::TestServer;

/// An order of one identifier, its authorization and its http-01 challenge, whose key
/// authorization the responder serves.
struct Pending {
    order: Value,
    order_url: String,
    authz_id: String,
    challenge_id: String,
    challenge_url: String,
}

async fn order_of(raw: &Raw, responder: &Responder, identifier: Value) -> Pending {
    let (st, _, order) = raw
        .send(Post {
            payload: Some(json!({ "identifiers": [identifier] })),
            ..raw.post(raw.url("new-order"))
        })
        .await;
    assert_eq!(st, StatusCode::CREATED, "{order}");
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let (_, _, authz) = raw
        .send(Post {
            payload: None,
            ..raw.post(authz_url.clone())
        })
        .await;
    let ch = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()
        .clone();
    let token = ch["token"].as_str().unwrap();
    let thumb = vellum_server::acme::jws::thumbprint(&raw.jwk).unwrap();
    responder.put(token, &format!("{token}.{thumb}"));
    let last = |u: &str| u.rsplit('/').next().unwrap().to_string();
    let challenge_url = ch["url"].as_str().unwrap().to_string();
    Pending {
        order_url: order["finalize"]
            .as_str()
            .unwrap()
            .trim_end_matches("/finalize")
            .to_string(),
        order,
        authz_id: last(&authz_url),
        challenge_id: last(&challenge_url),
        challenge_url,
    }
}

/// What a dead replica leaves: the challenge `processing` since `since`, nothing running.
async fn processing_since(s: &TestServer, challenge_id: &str, since: i64) {
    s.sql(&format!(
        "UPDATE acme_challenges SET status = 'processing', processing_since = {since} \
         WHERE id = '{challenge_id}'"
    ))
    .await;
}

async fn stored_since(s: &TestServer, challenge_id: &str) -> Option<i64> {
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let row = store::query("SELECT processing_since FROM acme_challenges WHERE id = $1")
        .bind(challenge_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.try_get::<Option<i64>, _>(0).unwrap()
}

async fn status_of(raw: &Raw, url: &str) -> Value {
    let (st, _, v) = raw
        .send(Post {
            payload: None,
            ..raw.post(url.to_string())
        })
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// A challenge processing for longer than the lease, with no validation running here, is
/// claimed and validated by the server's sweep, and the order is then finalized. One
/// processing for less than the lease, and one whose validation runs in this process, are
/// not validated again.
async fn a_stale_challenge_is_taken_over(s: &TestServer, responder: &Responder) {
    let inter = s.app().defaults.intermediate_id.clone();
    let mut raw = Raw::new(s, &inter);
    raw.register().await;
    let stale = order_of(&raw, responder, json!({"type": "ip", "value": "127.0.0.1"})).await;
    // Names nobody resolves: validated, they would fail (and read `invalid`).
    let fresh = order_of(
        &raw,
        responder,
        json!({"type": "dns", "value": "fresh.takeover.test"}),
    )
    .await;
    let held = order_of(
        &raw,
        responder,
        json!({"type": "dns", "value": "held.takeover.test"}),
    )
    .await;

    // Written in this order, so the sweep that claims `stale` (written last) sees the
    // other two as they are here.
    let now = vellum_core::time::now();
    processing_since(s, &fresh.challenge_id, now).await;
    let _running = s
        .app()
        .acme_inflight
        .start(&held.authz_id, &held.challenge_id);
    processing_since(s, &held.challenge_id, 1).await;
    processing_since(s, &stale.challenge_id, 1).await;

    let t = Instant::now();
    let challenge = loop {
        let c = status_of(&raw, &stale.challenge_url).await;
        if c["status"] != "processing" {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the stale challenge was not taken over within 20 s: {c}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(challenge["status"], "valid", "{challenge}");
    assert!(challenge["validated"].is_string(), "{challenge}");
    // Counted (the registry is the process's: other tests may have added to it).
    let text = s
        .client
        .get(format!("{}/metrics", s.http_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let taken: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vellum_acme_takeovers_total{challenge=\"http-01\"} "))
        .unwrap_or_else(|| panic!("no http-01 takeover counter in:\n{text}"))
        .parse()
        .unwrap();
    assert!(taken >= 1.0, "vellum_acme_takeovers_total {taken}");
    let o = status_of(&raw, &stale.order_url).await;
    assert_eq!(o["status"], "ready", "{o}");
    let (_, csr) = csr_for(&["127.0.0.1"]);
    let (st, _, o) = raw
        .send(Post {
            payload: Some(json!({"csr": URL_SAFE_NO_PAD.encode(&csr)})),
            ..raw.post(stale.order["finalize"].as_str().unwrap().to_string())
        })
        .await;
    assert_eq!(
        (st, o["status"].as_str()),
        (StatusCode::OK, Some("valid")),
        "{o}"
    );

    // Processing for less than the lease: left to its (live) validation.
    let c = status_of(&raw, &fresh.challenge_url).await;
    assert_eq!(c["status"], "processing", "{c}");
    assert_eq!(stored_since(s, &fresh.challenge_id).await, Some(now));
    // Stale but validated in this process: claimed (its lease renewed), not validated
    // a second time.
    let c = status_of(&raw, &held.challenge_url).await;
    assert_eq!(c["status"], "processing", "{c}");
    assert!(stored_since(s, &held.challenge_id).await >= Some(now));
    // The stale one's claim moved its lease too.
    assert!(stored_since(s, &stale.challenge_id).await >= Some(now));
}
both_backends!(
    acme_takeover_validates_a_stale_challenge,
    a_stale_challenge_is_taken_over,
    acme_responder
);

/// The claim is one conditional UPDATE: of two sweeps at once, each stale challenge is
/// claimed by exactly one (on PostgreSQL the second waits for the first's row locks and
/// re-checks the staleness on the rows it committed). Only stale challenges of
/// unexpired authorizations are claimed; a row never stamped is left alone. And it agrees
/// with `ra::acme::takeover::taken_over`.
async fn concurrent_sweeps_claim_each_challenge_once(s: &TestServer) {
    use ra::acme::takeover;
    use store::acme as sa;
    use vellum_core::status::ChallengeStatus;
    let app = s.app();
    // The sweeps here run an hour ahead (`now`), so that the server's own sweep, on the
    // real clock, finds none of these rows stale and leaves them to this test.
    let real = vellum_core::time::now();
    let now = real + 3600;
    let account = fixtures::account(app, "sweep", real);
    let names = ["s1", "s2", "s3", "s4", "fresh", "expired", "unstamped"];
    let authzs: Vec<_> = names
        .iter()
        .map(|n| {
            let mut a = fixtures::authz(&account, &format!("az-{n}"), &format!("{n}.test"), real);
            a.expires_at = if *n == "expired" { now - 1 } else { now + 3600 };
            a
        })
        .collect();
    let challenges: Vec<_> = names
        .iter()
        .map(|n| {
            let (id, authz) = (format!("ch-{n}"), format!("az-{n}"));
            fixtures::challenge(
                &id,
                &authz,
                vellum_core::status::ChallengeType::Http01,
                ChallengeStatus::Pending,
            )
        })
        .collect();
    let mut tx = app.store.begin().await.unwrap();
    sa::insert_account(&mut tx, &account).await.unwrap();
    sa::insert_authzs(&mut tx, &authzs.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    sa::insert_challenges(&mut tx, &challenges.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let lease = takeover::lease(Duration::from_secs(10));
    let since = |n: &str| match n {
        "fresh" => Some(now - 5),
        "unstamped" => None,
        _ => Some(real),
    };
    for n in names {
        let v = since(n).map_or("NULL".to_string(), |v| v.to_string());
        s.sql(&format!(
            "UPDATE acme_challenges SET status = 'processing', processing_since = {v} \
             WHERE id = 'ch-{n}'"
        ))
        .await;
    }
    let expires = |n: &str| {
        authzs
            .iter()
            .find(|a| a.id == format!("az-{n}"))
            .unwrap()
            .expires_at
    };
    let rule = |at: i64, since: &dyn Fn(&str) -> Option<i64>| {
        let mut ids: Vec<String> = names
            .iter()
            .filter(|n| takeover::taken_over(since(n), expires(n), at, lease))
            .map(|n| format!("ch-{n}"))
            .collect();
        ids.sort();
        ids
    };
    let expected = rule(now, &since);
    assert_eq!(expected, ["ch-s1", "ch-s2", "ch-s3", "ch-s4"]);

    let stale_before = takeover::stale_before(now, lease);
    // The first sweep claims two (its limit) and holds them uncommitted while a second,
    // with room for all, runs.
    let mut first = app.store.begin().await.unwrap();
    let mut one = store::acme_sets::claim_stale_challenges(&mut first, now, stale_before, 2)
        .await
        .unwrap();
    assert_eq!(one.len(), 2, "{one:?}");
    let store2 = app.store.clone();
    let second = tokio::spawn(async move {
        let t = Instant::now();
        let mut tx = store2.begin().await.unwrap();
        let ids = store::acme_sets::claim_stale_challenges(&mut tx, now, stale_before, 100)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (ids, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.commit().await.unwrap();
    let (mut two, waited) = second.await.unwrap();
    assert!(
        waited >= Duration::from_millis(300),
        "the second sweep waited for the first: {waited:?}"
    );
    assert_eq!(
        two.len(),
        2,
        "the second claims the other two: {one:?} {two:?}"
    );
    one.append(&mut two);
    one.sort();
    assert_eq!(one, expected, "each stale challenge claimed exactly once");
    // Claimed rows hold a new lease: a sweep now finds nothing.
    let mut tx = app.store.begin().await.unwrap();
    let again = store::acme_sets::claim_stale_challenges(&mut tx, now, stale_before, 100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    for n in ["fresh", "expired", "unstamped"] {
        assert_eq!(stored_since(s, &format!("ch-{n}")).await, since(n), "{n}");
    }
    // Through the ra rule's entry point, a lease later: the four claimed at `now` and
    // `fresh` are stale by then; still never the expired or the unstamped one.
    let later = now + lease.as_secs() as i64 + 1;
    let since_then = |n: &str| {
        if n.starts_with('s') {
            Some(now)
        } else {
            since(n)
        }
    };
    let mut claimed = takeover::claim(&app.store, later, lease).await.unwrap();
    claimed.sort();
    assert_eq!(claimed, rule(later, &since_then));
    assert_eq!(claimed.len(), 5, "{claimed:?}");
}
both_backends!(
    acme_takeover_claims_each_challenge_once,
    concurrent_sweeps_claim_each_challenge_once
);

/// A validation result for a challenge that is no longer processing changes nothing (a
/// replica that was only slow, after another took its validation over and recorded
/// first): neither the challenge nor its authorization nor its order.
async fn a_late_result_changes_nothing(s: &TestServer) {
    use ra::acme::writes::Change;
    use store::acme as sa;
    use vellum_core::status::{AuthzStatus, ChallengeStatus, OrderStatus};
    let app = s.app();
    let now = vellum_core::time::now();
    let account = fixtures::account(app, "late", now);
    let mut jobs = Vec::new();
    for n in ["ok", "ko"] {
        let authz = fixtures::authz(&account, &format!("az-late-{n}"), &format!("{n}.test"), now);
        jobs.push(Change::NewOrder {
            order: Box::new(fixtures::order(
                &account,
                &format!("ord-late-{n}"),
                &[&authz.id],
                now,
            )),
            challenges: vec![fixtures::challenge(
                &format!("ch-late-{n}"),
                &authz.id,
                vellum_core::status::ChallengeType::Http01,
                ChallengeStatus::Pending,
            )],
            authz_ids: vec![authz.id.clone()],
            authzs: vec![authz],
        });
    }
    let mut tx = app.store.begin().await.unwrap();
    sa::insert_account(&mut tx, &account).await.unwrap();
    tx.commit().await.unwrap();
    let w = &app.acme_writer;
    for j in jobs {
        assert!(w.apply(j).await.unwrap());
    }
    for n in ["ok", "ko"] {
        let start = Change::StartChallenge {
            id: format!("ch-late-{n}"),
            at: now,
        };
        assert!(w.apply(start).await.unwrap());
    }
    let validated = |n: &str, at: i64| Change::Validated {
        challenge_id: format!("ch-late-{n}"),
        authz_id: format!("az-late-{n}"),
        at,
        reusable_until: at + 86_400,
    };
    let failed = |n: &str, at: i64| Change::Failed {
        challenge_id: format!("ch-late-{n}"),
        authz_id: format!("az-late-{n}"),
        at,
        challenge_error: "{\"detail\":\"late\"}".into(),
        order_error: "{\"detail\":\"late\"}".into(),
    };
    // First outcomes: recorded.
    assert!(w.apply(validated("ok", now)).await.unwrap());
    assert!(w.apply(failed("ko", now)).await.unwrap());
    // Late ones (the other way round): refused, nothing changes.
    assert!(!w.apply(failed("ok", now + 5)).await.unwrap());
    assert!(!w.apply(validated("ko", now + 5)).await.unwrap());
    assert!(!w.apply(validated("ok", now + 5)).await.unwrap());
    let mut conn = app.store.reader().acquire().await.unwrap();
    for (n, ch, az, ord) in [
        (
            "ok",
            ChallengeStatus::Valid,
            AuthzStatus::Valid,
            OrderStatus::Ready,
        ),
        (
            "ko",
            ChallengeStatus::Invalid,
            AuthzStatus::Invalid,
            OrderStatus::Invalid,
        ),
    ] {
        let (c, a) = sa::challenge_with_authz(&mut conn, &format!("ch-late-{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.status, a.status), (ch, az), "{n}");
        assert_eq!(
            c.validated_at,
            Some(now),
            "the first outcome's time stands: {n}"
        );
        let o = sa::order_by_id(&mut conn, &format!("ord-late-{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.status, ord, "{n}");
        // SQLite's in-memory copy says what the database says.
        if let Some(recent) = app.store.recent() {
            let id = format!("ch-late-{n}");
            let db = sa::challenge_with_authz(&mut conn, &id).await.unwrap();
            assert_eq!(format!("{:?}", recent.challenge(&id)), format!("{db:?}"));
            let id = format!("ord-late-{n}");
            assert_eq!(format!("{:?}", recent.order(&id)), format!("{:?}", Some(o)));
        }
    }
}
both_backends!(
    acme_takeover_late_result_changes_nothing,
    a_late_result_changes_nothing
);
