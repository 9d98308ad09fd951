//! `POST /tools/check-installation` against real TLS servers: the server's own HTTPS
//! listener (a Vellum-issued certificate, so in the default tenant's inventory) and the
//! refusals that keep the tool from being a way into other networks.

use crate::common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn https_port(s: &TestServer) -> u16 {
    s.base
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the base URL")
}

async fn check_installation(s: &TestServer) {
    let port = https_port(s);
    let (st, r) = s
        .post(
            "/tools/check-installation",
            json!({"host": "localhost", "port": port}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["server_name"], "localhost");
    assert_eq!(r["name_matches"], true, "{r}");
    assert_eq!(r["chain_complete"], true, "{r}");
    assert_eq!(r["in_inventory"], true, "{r}");
    let id = r["inventory_id"].as_str().unwrap();
    let (st, cert) = s.get(&format!("/certificates/{id}")).await;
    assert_eq!(
        (st, cert["source"].as_str()),
        (StatusCode::OK, Some("system"))
    );
    assert!(r["days_to_expiry"].as_i64().unwrap() > 30, "{r}");
    assert!(
        r["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{r}"
    );
    assert!(r["presented"][0]["names"]
        .as_array()
        .unwrap()
        .contains(&json!("localhost")));
    assert_eq!(r["problems"], json!([]), "{r}");

    // Another name on the same server: the report says the name does not match.
    let (st, r) = s
        .post(
            "/tools/check-installation",
            json!({"host": "127.0.0.1", "port": port, "server_name": "shop.example"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["name_matches"], false);
    assert!(r["problems"][0]
        .as_str()
        .unwrap()
        .contains("does not cover shop.example"));

    // Another tenant does not own that certificate.
    let (_, other) = s.tenant_with_token("probe-other", "operator").await;
    let (st, r) = s
        .call_as(
            &other,
            Method::POST,
            "/tools/check-installation",
            Some(json!({"host": "localhost", "port": port})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["in_inventory"], false);
    assert_eq!(r["inventory_id"], serde_json::Value::Null);
    // Its chain ends at a root this tenant does not hold: linked, but not complete here.
    assert_eq!(r["chain_complete"], false, "{r}");
    assert!(
        r["missing_issuer"]
            .as_str()
            .unwrap()
            .contains("Vellum Root CA"),
        "{r}"
    );
    assert!(
        r["problems"][0]
            .as_str()
            .unwrap()
            .contains("clients must trust it already"),
        "{r}"
    );

    // Once that tenant keeps the certificate among its managed ones (uploaded with its key
    // and chain), the check finds it there: same bytes, found through its serial.
    let tls = s.data_dir().join("tls");
    let chain = std::fs::read_to_string(tls.join("server.crt")).unwrap();
    let root = std::fs::read_to_string(s.data_dir().join("root.pem")).unwrap_or_default();
    let key = std::fs::read_to_string(tls.join("server.key")).unwrap();
    let (st, m) = s
        .call_as(
            &other,
            Method::POST,
            "/managed",
            Some(json!({"name": "vellum listener", "certificate_pem": chain,
                        "private_key_pem": key, "chain_pem": root})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    let (st, r) = s
        .call_as(
            &other,
            Method::POST,
            "/tools/check-installation",
            Some(json!({"host": "localhost", "port": port})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["in_inventory"], true, "{r}");
    assert_eq!(r["inventory_list"], "managed", "{r}");
    assert_eq!(r["inventory_id"], m["id"], "{r}");
    // The issuing tenant still finds it among its issued certificates.
    let (_, r) = s
        .post(
            "/tools/check-installation",
            json!({"host": "localhost", "port": port}),
        )
        .await;
    assert_eq!(r["inventory_list"], "certificates", "{r}");

    // Outside the allowed networks (default: loopback), by address and by name.
    for (body, field, says) in [
        (
            json!({"host": "10.1.2.3", "port": 443}),
            "host",
            "outside the networks",
        ),
        (
            json!({"host": "192.0.2.1"}),
            "host",
            "installation_check_networks",
        ),
        (
            json!({"host": "https://localhost/"}),
            "host",
            "without scheme",
        ),
        (
            json!({"host": "localhost", "port": 0}),
            "port",
            "between 1 and 65535",
        ),
        (
            json!({"host": "localhost", "port": 70000}),
            "port",
            "between 1 and 65535",
        ),
        (
            json!({"host": "no-such-host.invalid", "port": 443}),
            "host",
            "resolve",
        ),
    ] {
        let (st, e) = s.post("/tools/check-installation", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
        assert!(e["detail"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    // Nothing listening on an allowed address: a clear refusal, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (st, e) = s
        .post(
            "/tools/check-installation",
            json!({"host": "127.0.0.1", "port": closed_port}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("cannot connect"),
        "{e}"
    );

    // An auditor may not make the server connect anywhere; every check is audited.
    let (_, auditor) = s.tenant_with_token("probe-auditor", "auditor").await;
    let (st, _) = s
        .call_as(
            &auditor,
            Method::POST,
            "/tools/check-installation",
            Some(json!({"host": "localhost", "port": port})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, audit) = s.get("/audit?action=tools.check_installation").await;
    let items = audit["items"].as_array().unwrap();
    assert!(items.len() >= 8, "{audit}");
    assert!(items.iter().any(|e| e["outcome"] == "failure"));
}
both_backends!(
    check_installation_reports_what_a_server_presents,
    check_installation
);
