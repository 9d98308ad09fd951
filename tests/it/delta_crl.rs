//! Delta CRLs (RFC 5280 §5.2.4): the per-CA switch and its refusals, freshestCRL in base
//! CRLs and new certificates, deltaCRLIndicator naming the base, one number sequence, a
//! revocation in the delta before the next base, and `openssl verify -crl_check
//! -use_deltas` (an independent judge) before and after, on both backends.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use x509_parser::prelude::*;

use crate::common::{openssl, TestServer};

const FRESHEST_CRL: &str = "2.5.29.46";
const DELTA_INDICATOR: &str = "2.5.29.27";

struct Crl {
    number: u64,
    serials: Vec<String>,
    /// (critical, extnValue) of deltaCRLIndicator.
    delta_indicator: Option<(bool, Vec<u8>)>,
    /// (critical, extnValue) of freshestCRL.
    freshest: Option<(bool, Vec<u8>)>,
    pem: String,
}

fn read_crl(der: &[u8]) -> Crl {
    let (_, crl) = parse_x509_crl(der).expect("a DER CRL");
    let ext = |oid: &str| {
        crl.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| (e.critical, e.value.to_vec()))
    };
    let n = crl.crl_number().expect("a CRL number").to_u64_digits();
    Crl {
        number: n.first().copied().unwrap_or(0),
        serials: crl
            .iter_revoked_certificates()
            .map(|r| ca::serial_hex(r.raw_serial()))
            .collect(),
        delta_indicator: ext(DELTA_INDICATOR),
        freshest: ext(FRESHEST_CRL),
        pem: ::pem::encode(&::pem::Pem::new("X509 CRL", der.to_vec())),
    }
}

fn integer(value: &[u8]) -> u64 {
    yasna::parse_der(value, |r| r.read_u64()).expect("an INTEGER")
}

async fn fetch(s: &TestServer, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = s
        .client
        .get(format!("{}{path}", s.http_base))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.bytes().await.unwrap().to_vec())
}

async fn base(s: &TestServer, ca: &str) -> Crl {
    let (st, der) = fetch(s, &format!("/crl/{ca}.crl")).await;
    assert_eq!(st, StatusCode::OK);
    read_crl(&der)
}

async fn delta(s: &TestServer, ca: &str) -> Crl {
    let (st, der) = fetch(s, &format!("/crl/{ca}-delta.crl")).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&der));
    let d = read_crl(&der);
    // The PEM twin is the same CRL.
    let (st, pem) = fetch(s, &format!("/crl/{ca}-delta.pem")).await;
    assert_eq!(st, StatusCode::OK);
    let pem = String::from_utf8(pem).unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"), "{pem}");
    d
}

async fn set_crl(s: &TestServer, ca: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PUT, &format!("/cas/{ca}/crl"), Some(body))
        .await
}

/// Issues a server certificate; returns (id, serial, PEM, DER).
async fn issue(s: &TestServer, ca: &str, cn: &str) -> (String, String, String, Vec<u8>) {
    let (st, v) = s
        .post(
            &format!("/cas/{ca}/certificates"),
            json!({"type": "server", "common_name": cn, "sans": [{"type": "dns", "value": cn}], "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let pem = v["certificate_pem"].as_str().unwrap().to_string();
    let der = ::pem::parse(&pem).unwrap().contents().to_vec();
    (
        v["id"].as_str().unwrap().to_string(),
        v["serial"].as_str().unwrap().to_string(),
        pem,
        der,
    )
}

fn cert_freshest(der: &[u8]) -> Option<(bool, Vec<u8>)> {
    let (_, cert) = parse_x509_certificate(der).unwrap();
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == FRESHEST_CRL)
        .map(|e| (e.critical, e.value.to_vec()))
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn delta_off(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Delta Off", 20, 10).await;
    let (st, v) = s.get(&format!("/cas/{inter}/crl")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["delta_enabled"], false);
    assert_eq!(v["delta_interval_minutes"], 60);
    assert!(v["delta_url"].is_null());
    // No delta: no freshestCRL anywhere, and the delta URL says why.
    let b = base(s, &inter).await;
    assert!(b.freshest.is_none() && b.delta_indicator.is_none());
    let (_, _, _, der) = issue(s, &inter, "off.example").await;
    assert!(cert_freshest(&der).is_none());
    let (st, body) = fetch(s, &format!("/crl/{inter}-delta.crl")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        contains(&body, "does not publish delta CRLs"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Out-of-range settings are refused in words, naming the field.
    for (body, field, words) in [
        (
            json!({"enabled": true, "delta_enabled": true, "delta_interval_minutes": 2}),
            "delta_interval_minutes",
            "between 5 and 1440",
        ),
        (
            json!({"enabled": true, "delta_interval_minutes": 1441}),
            "delta_interval_minutes",
            "between 5 and 1440",
        ),
        (
            json!({"enabled": false, "delta_enabled": true}),
            "delta_enabled",
            "need the CRL itself",
        ),
        (
            json!({"enabled": true, "next_update_hours": 1, "delta_enabled": true, "delta_interval_minutes": 60}),
            "delta_interval_minutes",
            "shorter than the base CRL's period",
        ),
    ] {
        let (st, v) = set_crl(s, &inter, body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(words), "{v}");
    }
    let (_, v) = s.get(&format!("/cas/{inter}/crl")).await;
    assert_eq!(v["delta_enabled"], false, "nothing changed: {v}");
}
both_backends!(delta_off_no_freshest_crl_and_refusals, delta_off);

async fn ca_pem(s: &TestServer, id: &str) -> String {
    let (_, v) = s.get(&format!("/cas/{id}")).await;
    v["certificate_pem"].as_str().unwrap().to_string()
}

fn verify(dir: &std::path::Path, files: &[(&str, &str)], crls: &[&str]) -> (bool, String) {
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let mut args = vec![
        "verify".to_string(),
        "-crl_check".into(),
        "-use_deltas".into(),
        "-CAfile".into(),
        p("root.pem"),
        "-untrusted".into(),
        p("inter.pem"),
    ];
    for c in crls {
        args.push("-CRLfile".into());
        args.push(p(c));
    }
    args.push(p("leaf.pem"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args)
}

async fn delta_on(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Delta On", 20, 10).await;
    let (st, v) = set_crl(
        s,
        &inter,
        json!({"enabled": true, "delta_enabled": true, "delta_interval_minutes": 30}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["delta_enabled"], true);
    assert_eq!(v["delta_interval_minutes"], 30);
    let delta_url = format!("{}/crl/{inter}-delta.crl", s.http_base);
    assert_eq!(v["delta_url"], delta_url.as_str(), "{v}");

    // A new certificate names the delta CRL in freshestCRL (non-critical).
    let (id, serial, leaf_pem, der) = issue(s, &inter, "on.example").await;
    let (critical, value) = cert_freshest(&der).expect("freshestCRL in the new certificate");
    assert!(!critical);
    assert!(contains(&value, &delta_url), "{value:?}");

    // The base carries freshestCRL; the delta carries deltaCRLIndicator (critical) = the
    // base's number, and its own number is above the base's.
    let b1 = base(s, &inter).await;
    let (critical, value) = b1.freshest.clone().expect("freshestCRL in the base CRL");
    assert!(!critical);
    assert!(contains(&value, &delta_url));
    assert!(b1.delta_indicator.is_none());
    let d1 = delta(s, &inter).await;
    let (critical, value) = d1.delta_indicator.clone().expect("deltaCRLIndicator");
    assert!(critical, "deltaCRLIndicator is critical");
    assert_eq!(integer(&value), b1.number);
    assert!(d1.number > b1.number, "{} > {}", d1.number, b1.number);
    assert!(d1.freshest.is_none());
    assert!(d1.serials.is_empty());

    let (root_pem, inter_pem) = (ca_pem(s, &root).await, ca_pem(s, &inter).await);
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("root.pem", root_pem.as_str()),
        ("inter.pem", inter_pem.as_str()),
        ("leaf.pem", leaf_pem.as_str()),
        ("base.pem", b1.pem.as_str()),
        ("delta.pem", d1.pem.as_str()),
    ];
    let (ok, out) = verify(dir.path(), &files, &["base.pem", "delta.pem"]);
    assert!(ok && out.contains("OK"), "before the revocation: {out}");

    // A revocation after the base: in the next delta, not in the base until the next base.
    let (st, v) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "key_compromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let d2 = delta(s, &inter).await;
    assert_eq!(d2.serials, vec![serial.clone()], "the delta lists it");
    assert!(d2.number > d1.number);
    assert_eq!(integer(&d2.delta_indicator.clone().unwrap().1), b1.number);
    let b = base(s, &inter).await;
    assert_eq!(b.number, b1.number, "the base waits for its schedule");
    assert!(b.serials.is_empty());
    let files = [("delta.pem", d2.pem.as_str())];
    let (ok, out) = verify(dir.path(), &files, &["base.pem", "delta.pem"]);
    assert!(
        !ok && out.contains("certificate revoked"),
        "after the revocation: {out}"
    );
    // Without -use_deltas the base alone still says OK: the delta is what carries it.
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("inter.pem"),
        "-CRLfile",
        &p("base.pem"),
        &p("leaf.pem"),
    ]);
    assert!(ok, "base alone: {out}");

    // The next base (its period nearly over) lists it, with a number above every delta;
    // the delta after it points at it and lists nothing.
    let now = vellum_core::time::now();
    s.sql(&format!(
        "UPDATE crls SET this_update = {}, next_update = {} WHERE ca_id = '{inter}'",
        now - 23 * 3600,
        now + 600
    ))
    .await;
    let b2 = base(s, &inter).await;
    assert!(b2.number > d2.number, "{} > {}", b2.number, d2.number);
    assert_eq!(b2.serials, vec![serial.clone()]);
    let d3 = delta(s, &inter).await;
    assert!(d3.number > b2.number);
    assert_eq!(integer(&d3.delta_indicator.clone().unwrap().1), b2.number);
    assert!(
        d3.serials.is_empty(),
        "already on the base: {:?}",
        d3.serials
    );
    let files = [
        ("base.pem", b2.pem.as_str()),
        ("delta.pem", d3.pem.as_str()),
    ];
    let (ok, out) = verify(dir.path(), &files, &["base.pem", "delta.pem"]);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // The admin view shows the delta's numbers.
    let (_, v) = s.get(&format!("/cas/{inter}/crl")).await;
    assert_eq!(v["delta_crl_number"], d3.number);
    assert_eq!(v["delta_base_crl_number"], b2.number);

    // Off again: the base is re-signed without freshestCRL, the delta URL is gone, new
    // certificates name no delta.
    let (st, v) = set_crl(s, &inter, json!({"enabled": true, "delta_enabled": false})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let b3 = base(s, &inter).await;
    assert!(b3.number > d3.number);
    assert!(b3.freshest.is_none());
    let (st, _) = fetch(s, &format!("/crl/{inter}-delta.crl")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, _, _, der) = issue(s, &inter, "later.example").await;
    assert!(cert_freshest(&der).is_none());
}
both_backends!(delta_on_freshest_indicator_sequence_and_openssl, delta_on);

/// A root that publishes delta ARLs names them in the intermediates it signs afterwards
/// (freshestCRL next to the CRL distribution point), as leaves of a delta-publishing
/// intermediate do.
async fn intermediate_names_root_deltas(s: &TestServer) {
    let (root, inter) = s.buy_root("Delta Root", "ec-p256", 10).await;
    s.enable(&root).await;
    let (st, v) = set_crl(s, &root, json!({"enabled": true, "delta_enabled": true})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.enable(&inter).await;
    let der = ::pem::parse(ca_pem(s, &inter).await)
        .unwrap()
        .into_contents();
    let (critical, value) = cert_freshest(&der).expect("freshestCRL in the intermediate");
    assert!(!critical);
    let delta_url = format!("{}/crl/{root}-delta.crl", s.http_base);
    assert!(contains(&value, &delta_url), "{value:?}");
    // Without deltas on the root, an intermediate names none.
    let (root2, inter2) = s.buy_root("No Delta Root", "ec-p256", 10).await;
    s.enable(&root2).await;
    s.enable(&inter2).await;
    let der = ::pem::parse(ca_pem(s, &inter2).await)
        .unwrap()
        .into_contents();
    assert!(cert_freshest(&der).is_none());
}
both_backends!(
    an_intermediate_names_its_roots_delta_arls,
    intermediate_names_root_deltas
);
