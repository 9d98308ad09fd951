//! Database outages: while PostgreSQL cannot be reached, every door answers 503 with
//! `Retry-After` within the pool's acquire timeout (never a 500, never a hang up to the
//! request timeout), and the server reconnects by itself once it is back, with the quota
//! arithmetic intact. The outage is a TCP proxy in front of the test database that is cut
//! (every connection dropped, new ones refused) and restored on the same port.
//! `conformance/faults.sh` does the same with a real `pg_ctl stop`/`start` under load, a
//! replica killed with SIGKILL, and SQLite on a full disk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::acme::{Post, Raw};
use crate::common::{Backend, TestServer};

/// A TCP proxy to `upstream` on a port of its own that can be cut and restored.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            upstream,
            tasks: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (tasks, upstream) = (self.tasks.clone(), self.upstream.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection and stops listening: the server sees its connections die
    /// and new ones refused, as when PostgreSQL stops.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port.
    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

fn server_body(cn: &str) -> Value {
    json!({"type": "server", "common_name": cn, "sans": [{"type": "dns", "value": cn}], "validity_days": 30})
}

/// The admin API's answer during the outage: 503 problem+json naming the database, with
/// `Retry-After`, well within the request timeout.
async fn expect_unavailable(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) {
    let started = Instant::now();
    let mut req = s
        .client
        .request(method, format!("{}/admin/v1{path}", s.base))
        .bearer_auth(&s.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{path}: Retry-After {retry}");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "urn:vellum:problem:unavailable", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("database is unavailable"),
        "{v}"
    );
    // The acquire timeout is 1 s here; the request timeout 30 s.
    assert!(took < Duration::from_secs(5), "{path} took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_answers_503_then_recovers() {
    if crate::common::postgres_missing() {
        return;
    }
    let direct = crate::common::fresh_pg_database().await;
    // postgres://user:pass@HOST:PORT/db → the proxy in place of HOST:PORT.
    let (creds, rest) = direct.split_once('@').unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let proxy = Proxy::start(hostport.to_string()).await;
    let url = format!("{creds}@127.0.0.1:{}/{db}", proxy.port);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = crate::common::env_for(
        &data,
        &url,
        &[("VELLUM_LIMITS_DB_ACQUIRE_TIMEOUT_SECS", "1")],
    );
    let running = crate::common::start_with_env(&env).await.unwrap();
    let s = TestServer::attach(running, dir, Backend::Postgres, url);
    let (root, inter) = s.enabled_pair("Outage", 100, 50).await;
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            server_body("before.outage.test"),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let mut acme = Raw::new(&s, &inter);
    acme.register().await;
    let est_ca = s.app().defaults.intermediate_id.clone();
    crate::est::add_client(&s, &est_ca, "dev", Some(json!(["*.outage.test"]))).await;
    let est_http = crate::est::est_client(&s, None);
    let est_csr = crate::est::cn_csr(&rcgen::KeyPair::generate().unwrap(), "d.outage.test");
    let enroll = || {
        crate::est::enroll(
            &s,
            &est_http,
            None,
            "simpleenroll",
            Some(("dev", crate::est::PASSWORD)),
            &est_csr,
        )
    };
    assert_eq!(enroll().await.certs().len(), 1);
    let (_, e) = s.get(&format!("/cas/{est_ca}")).await;
    let est_issued = e["issued_count"].as_i64().unwrap();
    // Taken now: during the outage new-nonce answers 503 too (once the CA's cached row
    // is older than a second).
    let nonce = acme.nonce().await;

    proxy.cut();
    expect_unavailable(
        &s,
        reqwest::Method::POST,
        &format!("/cas/{inter}/certificates"),
        Some(server_body("during.outage.test")),
    )
    .await;
    expect_unavailable(&s, reqwest::Method::GET, &format!("/cas/{inter}"), None).await;
    expect_unavailable(&s, reqwest::Method::GET, "/certificates", None).await;
    // ACME: an RFC 8555 problem document, 503 with Retry-After.
    let (st, h, v) = acme
        .send(Post {
            nonce: Some(nonce),
            payload: Some(json!({"identifiers": [{"type": "dns", "value": "o.outage.test"}]})),
            ..acme.post(acme.url("new-order"))
        })
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(
        v["type"], "urn:ietf:params:acme:error:serverInternal",
        "{v}"
    );
    assert!(h.contains_key("retry-after"), "{h:?}");
    // EST: 503 with Retry-After and the sentence (RFC 7030 section 4.2.3). The password
    // was verified a moment ago; the account is read again once its cached row is old.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = enroll().await;
    a.text_error(StatusCode::SERVICE_UNAVAILABLE, "database is unavailable");
    assert!(a.header("retry-after").parse::<u64>().unwrap() >= 1);
    // Health check: 503 too (a load balancer takes the replica out).
    let health = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(health.headers().contains_key("retry-after"));

    proxy.restore().await;
    // The pool reconnects by itself: no restart, the next requests succeed.
    let started = Instant::now();
    let issued = loop {
        let (st, v) = s
            .call(
                reqwest::Method::POST,
                &format!("/cas/{inter}/certificates"),
                Some(server_body("after.outage.test")),
            )
            .await;
        if st == StatusCode::CREATED {
            break v;
        }
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no recovery: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(issued["serial"].is_string(), "{issued}");
    let (st, _) = s.get("/certificates").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(enroll().await.certs().len(), 1, "EST works again");

    // Quota: the refused issuance spent nothing.
    let (_, i) = s.get(&format!("/cas/{inter}")).await;
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    assert_eq!(i["issued_count"], 2, "{i}");
    let (_, e) = s.get(&format!("/cas/{est_ca}")).await;
    assert_eq!(
        e["issued_count"].as_i64().unwrap(),
        est_issued + 1,
        "one EST enrollment since, none during the outage: {e}"
    );
    assert_eq!(
        i["quota_assigned"].as_i64().unwrap(),
        i["issued_count"].as_i64().unwrap() + i["quota_remaining"].as_i64().unwrap(),
        "{i}"
    );
    assert_eq!(
        r["quota_total"].as_i64().unwrap(),
        r["quota_available"].as_i64().unwrap() + i["quota_assigned"].as_i64().unwrap(),
        "{r}"
    );
    s.stop().await;
}

/// A statement stuck behind a lock another client holds is ended by PostgreSQL after
/// `limits.db_statement_timeout_secs` (1 s here): the issuance is answered 503 with
/// `Retry-After` and words saying the database did not answer in time, its transaction
/// rolled back (no quota spent); once the lock is gone, issuance works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_stuck_on_a_lock_answers_503() {
    use sqlx::Connection as _;
    if crate::common::postgres_missing() {
        return;
    }
    let url = crate::common::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = crate::common::env_for(
        &data,
        &url,
        &[("VELLUM_LIMITS_DB_STATEMENT_TIMEOUT_SECS", "1")],
    );
    let running = crate::common::start_with_env(&env).await.unwrap();
    let s = TestServer::attach(running, dir, Backend::Postgres, url.clone());
    let (_root, inter) = s.enabled_pair("Stuck", 100, 50).await;
    let path = format!("/cas/{inter}/certificates");
    let (st, v) = s.post(&path, server_body("before.stuck.test")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Another client holds the certificates table (an operator's long transaction).
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = other.begin().await.unwrap();
    sqlx::query("LOCK TABLE certificates IN EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let started = Instant::now();
    let (st, v) = s.post(&path, server_body("stuck.stuck.test")).await;
    let took = started.elapsed();
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["type"], "urn:vellum:problem:unavailable", "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("did not answer in time"), "{detail}");
    assert!(detail.contains("nothing was done"), "{detail}");
    assert!(
        took < Duration::from_secs(8),
        "answered after the statement timeout, not the request timeout: {took:?}"
    );
    held.rollback().await.unwrap();

    let (st, v) = s.post(&path, server_body("after.stuck.test")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, i) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        i["issued_count"], 2,
        "the refused issuance spent nothing: {i}"
    );
    assert_eq!(
        i["quota_assigned"].as_i64().unwrap(),
        i["issued_count"].as_i64().unwrap() + i["quota_remaining"].as_i64().unwrap(),
        "{i}"
    );
    s.stop().await;
}
