//! `GET /metrics` (Prometheus text format): the issuance counter per door (admin, ACME,
//! EST) with exact values for this server's CA, the quota gauge against the API's
//! remaining quota, the expiring gauge, the HTTP, transaction and group-commit histograms;
//! the bearer token (401 without or with a wrong one), the listener of its own, and
//! `enabled = false` (404). The exposition is read with a strict line parser.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::acme::{certificate_for_localhost, new_account, server_with_responder};
use crate::common::{Backend, TestServer};

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format 0.0.4 strictly: every line is a `# HELP`,
/// a `# TYPE` (declared once, before its samples) or a sample of a declared family
/// (histograms: `_bucket`, `_sum`, `_count`); names and label names are valid; label
/// values are quoted with the format's escapes; values are floats. Panics otherwise.
fn parse(text: &str) -> Vec<Sample> {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line:?}"));
            assert!(valid_name(name), "{line:?}");
            match kind {
                Some("HELP") => assert!(arg.is_some_and(|h| !h.is_empty()), "{line:?}"),
                Some("TYPE") => {
                    let t = arg.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{line:?}"
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "TYPE declared twice: {line:?}"
                    );
                }
                _ => panic!("unexpected comment line {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "empty line in the exposition");
        let (name_end, labels, rest) = match line.find('{') {
            Some(open) => {
                let (labels, rest) = parse_labels(&line[open + 1..], line);
                (open, labels, rest)
            }
            None => {
                let sp = line.find(' ').unwrap_or_else(|| panic!("{line:?}"));
                (sp, BTreeMap::new(), &line[sp..])
            }
        };
        let name = &line[..name_end];
        assert!(valid_name(name), "{line:?}");
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line:?}"));
        assert!(
            !value.contains(' '),
            "timestamps are not expected: {line:?}"
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family = types.get(name).map(|t| (name, t)).or_else(|| {
            ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                types
                    .get(base)
                    .filter(|t| *t == "histogram" || *t == "summary")
                    .map(|t| (base, t))
            })
        });
        let (_, kind) =
            family.unwrap_or_else(|| panic!("sample of an undeclared family: {line:?}"));
        if name.ends_with("_bucket") && kind == "histogram" {
            assert!(labels.contains_key("le"), "{line:?}");
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// Parses `l="v",…}` (after the `{`); returns the labels and the rest of the line.
fn parse_labels<'a>(mut s: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return (labels, rest);
        }
        let eq = s.find("=\"").unwrap_or_else(|| panic!("{line:?}"));
        let name = &s[..eq];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name in {line:?}"
        );
        let mut value = String::new();
        let mut chars = s[eq + 2..].char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break eq + 2 + i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => panic!("bad escape in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "label twice in {line:?}"
        );
        s = &s[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The value of the one sample named `name` whose labels include `want` (0 when absent).
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {want:?} matches {found:?}");
    found.first().map_or(0.0, |s| s.value)
}

async fn scrape(url: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("scrape");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn est_enroll(s: &TestServer, ca: &str) {
    crate::est::add_client(s, ca, "metrics-dev", None).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "metrics-device-1");
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    let http = crate::est::est_client(s, None);
    let a = crate::est::enroll(
        s,
        &http,
        None,
        "simpleenroll",
        Some(("metrics-dev", crate::est::PASSWORD)),
        &der,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.certs().len(), 1);
}

const ADMIN_ISSUED: usize = 3;

async fn counts_every_door(backend: Backend) {
    let (s, responder) = server_with_responder(backend).await;
    let inter = s.app().defaults.intermediate_id.clone();

    // N through the admin API (one of them expiring within 30 days), one refused there.
    for i in 0..ADMIN_ISSUED {
        let cn = format!("m{i}.metrics.example");
        let days = if i == 0 { 10 } else { 90 };
        let (st, v) = s
            .post(
                &format!("/cas/{inter}/certificates"),
                json!({"type": "server", "common_name": cn, "validity_days": days}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "too-long.metrics.example", "validity_days": 40000}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // One through ACME, one through EST (both on the default intermediate).
    let account = new_account(&s, &format!("{}/acme/directory", s.base)).await;
    certificate_for_localhost(&account, &responder, None).await;
    est_enroll(&s, &inter).await;

    let (st, ct, text) = scrape(&format!("{}/metrics", s.http_base), None).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let m = parse(&text);
    let issued = |door: &str, outcome: &str| {
        value(
            &m,
            "vellum_issuances_total",
            &[("door", door), ("ca", &inter), ("outcome", outcome)],
        )
    };
    assert_eq!(issued("admin", "issued"), ADMIN_ISSUED as f64);
    assert_eq!(issued("admin", "refused-other"), 1.0);
    assert_eq!(issued("acme", "issued"), 1.0);
    assert_eq!(issued("est", "issued"), 1.0);
    assert_eq!(issued("admin", "refused-quota"), 0.0);

    // The quota gauge is what the API says is left; the expiring gauge counts the 10-day
    // certificate only (ACME's default is 90 days, EST's 365).
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    let remaining = ca["quota_remaining"].as_i64().unwrap();
    assert_eq!(
        value(&m, "vellum_ca_quota_remaining", &[("ca", &inter)]),
        remaining as f64
    );
    assert_eq!(
        value(&m, "vellum_certificates_expiring_30d", &[("ca", &inter)]),
        1.0
    );

    // Process-wide series (other tests share the process): at least this test's share.
    assert!(value(&m, "vellum_acme_orders_total", &[("status", "valid")]) >= 1.0);
    assert!(
        value(
            &m,
            "vellum_acme_validations_total",
            &[("challenge", "http-01"), ("outcome", "valid")]
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "vellum_est_enrollments_total",
            &[
                ("operation", "simpleenroll"),
                ("auth", "basic"),
                ("outcome", "issued")
            ]
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "vellum_http_request_duration_seconds_count",
            &[("route", "admin"), ("status_class", "2xx")]
        ) >= (ADMIN_ISSUED + 1) as f64
    );
    assert!(
        value(
            &m,
            "vellum_http_request_duration_seconds_count",
            &[("route", "admin"), ("status_class", "4xx")]
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "vellum_http_request_duration_seconds_bucket",
            &[("route", "admin"), ("status_class", "2xx"), ("le", "+Inf")]
        ) >= (ADMIN_ISSUED + 1) as f64
    );
    assert!(
        value(
            &m,
            "vellum_db_transaction_duration_seconds_count",
            &[("outcome", "commit")]
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "vellum_db_group_commit_jobs_sum",
            &[("writer", "vellum-recorder")]
        ) >= (ADMIN_ISSUED + 2) as f64
    );
    // No label holds a certificate id or serial: the only free-form label is the CA id.
    for sample in &m {
        for (k, v) in &sample.labels {
            assert!(
                [
                    "door",
                    "ca",
                    "outcome",
                    "status",
                    "challenge",
                    "operation",
                    "auth",
                    "route",
                    "status_class",
                    "le",
                    "writer",
                    "channel"
                ]
                .contains(&k.as_str()),
                "unexpected label {k}={v} on {}",
                sample.name
            );
        }
    }
    // The route exists only on the plain-HTTP listener.
    let st = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

each_backend!(counts_every_door, counts_every_door);

/// A bearer token and a listener of its own: 401 without the token or with a wrong one,
/// the exposition with the right one; nothing on the plain-HTTP listener.
async fn token_and_own_listener(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-secret-1\n").unwrap();
    let token_path = token_file.display().to_string();
    let s = TestServer::start_with(
        backend,
        &[
            ("VELLUM_METRICS_LISTEN", "127.0.0.1:0"),
            ("VELLUM_METRICS_BEARER_TOKEN_FILE", &token_path),
        ],
    )
    .await;
    let addr = s
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("own listener");
    let url = format!("http://{addr}/metrics");
    let (st, _, body) = scrape(&url, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (st, _, _) = scrape(&url, Some("scrape-secret-2")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, text) = scrape(&url, Some("scrape-secret-1")).await;
    assert_eq!(st, StatusCode::OK);
    let m = parse(&text);
    let inter = s.app().defaults.intermediate_id.clone();
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(
        value(&m, "vellum_ca_quota_remaining", &[("ca", &inter)]),
        ca["quota_remaining"].as_f64().unwrap()
    );
    // Moved, not copied: the plain-HTTP listener has no /metrics.
    let (st, _, _) = scrape(&format!("{}/metrics", s.http_base), Some("scrape-secret-1")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

each_backend!(bearer_token_and_own_listener, token_and_own_listener);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabled_metrics_answer_404() {
    let s = TestServer::start_with(Backend::Sqlite, &[("VELLUM_METRICS_ENABLED", "false")]).await;
    let (st, _, _) = scrape(&format!("{}/metrics", s.http_base), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(s.running.as_ref().unwrap().metrics_addr.is_none());
    s.stop().await;
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\",y=\"\"} 3\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let m = parse(good);
    assert_eq!(m.len(), 4);
    assert_eq!(m[0].labels["x"], "q\"\\");
    for bad in [
        "a_total 3\n",                          // undeclared
        "# TYPE a counter\na{x=\"1} 3\n",       // unterminated
        "# TYPE a counter\na 3 4 5\n",          // junk
        "# TYPE a counter\n# TYPE a counter\n", // declared twice
        "# TYPE h histogram\nh_bucket 1\n",     // bucket without le
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}
