//! CRL numbering across restarts and replicas, and the background refresh job's lease.

use crate::common::{env_for, start_with_env, Backend, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use x509_parser::prelude::*;

pub(crate) async fn crl_number(s: &TestServer, ca: &str) -> u64 {
    let resp = s
        .client
        .get(format!("{}/crl/{ca}.crl", s.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let der = resp.bytes().await.unwrap();
    let (_, crl) = parse_x509_crl(&der).unwrap();
    let n = crl.crl_number().unwrap().to_u64_digits();
    n.first().copied().unwrap_or(0)
}

async fn revoke_one(s: &TestServer, inter: &str) {
    let (st, c) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "n.example", "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let (st, _) = s
        .post(
            &format!("/certificates/{}/revoke", c["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

/// CRL numbers keep increasing across a restart (they live in the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crl_numbers_survive_restarts() {
    let s = TestServer::start(Backend::Sqlite).await;
    let inter = s.app().defaults.intermediate_id.clone();
    let n1 = crl_number(&s, &inter).await;
    revoke_one(&s, &inter).await;
    let n2 = crl_number(&s, &inter).await;
    assert!(n2 > n1);
    assert_eq!(
        crl_number(&s, &inter).await,
        n2,
        "unchanged CRL is served from the store"
    );
    let data = s.data_dir();
    let url = s.database_url.clone();
    let keep = s.stop_keep_dir().await;
    let running = start_with_env(&env_for(&data, &url, &[])).await.unwrap();
    let s2 = TestServer::attach(running, keep, Backend::Sqlite, url);
    assert_eq!(
        crl_number(&s2, &inter).await,
        n2,
        "the stored CRL survives the restart"
    );
    revoke_one(&s2, &inter).await;
    assert!(crl_number(&s2, &inter).await > n2);
    s2.stop().await;
}

async fn lease_and_refresh(s: &TestServer) {
    let app = s.app();
    let inter = app.defaults.intermediate_id.clone();
    let n1 = crl_number(s, &inter).await;
    // The server's own job takes the lease at start; let it lapse, as if that replica
    // died. Its first round runs concurrently with the test and may come after the
    // UPDATE on a loaded machine (then it holds the lease again): lapse it until
    // replica-a wins, which it must within a few rounds.
    let mut checked = 0;
    for _ in 0..50 {
        s.sql("UPDATE leases SET expires_at = 0").await;
        checked = vellum_server::crl::job::tick(app, "replica-a")
            .await
            .unwrap();
        if checked >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // One holder at a time.
    assert!(checked >= 2, "replica-a took the lapsed lease ({checked})");
    assert_eq!(
        vellum_server::crl::job::tick(app, "replica-b")
            .await
            .unwrap(),
        0,
        "lease held by replica-a"
    );
    assert!(
        vellum_server::crl::job::tick(app, "replica-a")
            .await
            .unwrap()
            >= 2,
        "the holder renews"
    );
    // A CRL close to its nextUpdate is re-signed by the job, with a higher number.
    let now = vellum_core::time::now();
    s.sql(&format!(
        "UPDATE crls SET this_update = {}, next_update = {} WHERE ca_id = '{inter}'",
        now - 23 * 3600,
        now + 600
    ))
    .await;
    vellum_server::crl::job::tick(app, "replica-a")
        .await
        .unwrap();
    let n2 = crl_number(s, &inter).await;
    assert!(n2 > n1, "refreshed before nextUpdate: {n1} → {n2}");
    // After the lease expires, another replica takes over.
    s.sql("UPDATE leases SET expires_at = 0").await;
    assert!(
        vellum_server::crl::job::tick(app, "replica-b")
            .await
            .unwrap()
            >= 2
    );
}
both_backends!(
    refresh_job_holds_a_lease_and_renews_before_next_update,
    lease_and_refresh
);
