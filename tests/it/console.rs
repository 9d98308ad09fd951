//! The web console (issue 15): its sessions over plain HTTPS (cookie flags, CSRF, sign-out,
//! a revoked token), its overview numbers, and the pages driven in a real Chromium
//! (Debian's `chromium` + `chromium-driver`, installed by `.ci/install-deps`), with
//! screenshots under `target/console-screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use rcgen::{CertificateParams, DnType, KeyPair};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{openssl, Backend, TestServer};

/// Signs in over HTTPS; the cookie header value to send back and the answer.
async fn sign_in(s: &TestServer, token: &str) -> (String, Value, reqwest::header::HeaderMap) {
    let r = s
        .client
        .post(format!("{}/console/session", s.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let headers = r.headers().clone();
    let set = headers
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    let pair = set.split(';').next().unwrap().to_string();
    (pair, r.json().await.unwrap(), headers)
}

async fn with_cookie(
    s: &TestServer,
    cookie: &str,
    csrf: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s
        .client
        .request(method, format!("{}{path}", s.base))
        .header("Cookie", cookie);
    if let Some(c) = csrf {
        req = req.header("X-CSRF-Token", c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn sessions(s: &TestServer) {
    // The page and its script come with a strict policy.
    let r = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.text().await.unwrap().contains("/console/app.js"));

    // A wrong token: 422 on the field, no cookie.
    let r = s
        .client
        .post(format!("{}/console/session", s.base))
        .json(&json!({"token": "vlm_not-a-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.headers().get("set-cookie").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "token");
    assert!(
        v["detail"].as_str().unwrap().contains("unknown or revoked"),
        "{v}"
    );

    // An operator token's session: the cookie's flags, and the session acts as the token.
    let (_, op) = s.tenant_with_token("console-ops", "operator").await;
    let (cookie, me, headers) = sign_in(s, &op).await;
    let set = headers["set-cookie"].to_str().unwrap();
    for flag in [
        "__Host-vellum-session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(flag), "{flag} missing from {set}");
    }
    assert_eq!(me["role"], "operator");
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    // The cookie's value is not stored: only its hash.
    let secret = cookie.split_once('=').unwrap().1.to_string();
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let n: i64 =
        store::query("SELECT COUNT(*) FROM console_sessions WHERE id_hash = $1 OR token_hash = $1")
            .bind(secret.as_str())
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .try_get(0usize)
            .unwrap();
    assert_eq!(n, 0, "the session id is stored hashed");
    drop(conn);

    let (st, v) = with_cookie(s, &cookie, None, Method::GET, "/console/session", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["csrf_token"], csrf.as_str());
    let (st, v) = with_cookie(s, &cookie, None, Method::GET, "/admin/v1/cas", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Its role's limits hold: an operator changes no CA, CSRF token or not.
    let (st, _) = with_cookie(
        s,
        &cookie,
        Some(&csrf),
        Method::POST,
        "/admin/v1/cas",
        Some(json!({"kind": "root", "common_name": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // CSRF: a state change by cookie needs the session's token.
    let body = json!({"name": "csrf probe", "format": "pem"});
    let (st, v) = with_cookie(
        s,
        &cookie,
        None,
        Method::POST,
        "/admin/v1/csrs",
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("X-CSRF-Token"),
        "{v}"
    );
    let (st, _) = with_cookie(
        s,
        &cookie,
        Some("not-it"),
        Method::POST,
        "/admin/v1/csrs",
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Another session's token does not fit this one.
    let (_, other, _) = sign_in(s, &op).await;
    let (st, _) = with_cookie(
        s,
        &cookie,
        other["csrf_token"].as_str(),
        Method::POST,
        "/admin/v1/csrs",
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = with_cookie(
        s,
        &cookie,
        Some(&csrf),
        Method::POST,
        "/admin/v1/csrs",
        Some(json!({"common_name": "csrf.console.example", "key_algorithm": "ec-p256"})),
    )
    .await;
    assert!(
        st.is_success() || st == StatusCode::UNPROCESSABLE_ENTITY,
        "{st} {v}"
    );
    assert_ne!(st, StatusCode::FORBIDDEN);
    // Sign-in and the session's changes are audited as the token.
    let (_, log) = s
        .call_full(
            Some(&s.token),
            Some("console-ops"),
            Method::GET,
            "/audit?action=console.sign_in",
            None,
        )
        .await;
    assert!(!log["items"].as_array().unwrap().is_empty(), "{log}");

    // Sign-out needs the CSRF token too, then the cookie is dead.
    let (st, _) = with_cookie(s, &cookie, None, Method::DELETE, "/console/session", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = with_cookie(
        s,
        &cookie,
        Some(&csrf),
        Method::DELETE,
        "/console/session",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = with_cookie(s, &cookie, None, Method::GET, "/admin/v1/cas", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Revoking the token ends its sessions.
    let (tok_st, tok) = s
        .post("/tokens", json!({"role": "auditor", "name": "short-lived"}))
        .await;
    assert_eq!(tok_st, StatusCode::CREATED, "{tok}");
    let (cookie2, _, _) = sign_in(s, tok["token"].as_str().unwrap()).await;
    let (st, _) = with_cookie(s, &cookie2, None, Method::GET, "/admin/v1/cas", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/tokens/{}", tok["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (st, v) = with_cookie(s, &cookie2, None, Method::GET, "/admin/v1/cas", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
}
both_backends!(
    console_sessions_are_cookies_with_csrf_acting_as_their_token,
    sessions
);

async fn overview_counts(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Overview Root", 50, 20).await;
    let (st, before) = s.get("/overview").await;
    assert_eq!(st, StatusCode::OK, "{before}");
    let admin_today = |o: &Value| o["issued"][29]["admin"].as_i64().unwrap();
    let mut ids = Vec::new();
    for (cn, days) in [
        ("a.ov.example", 3),
        ("b.ov.example", 10),
        ("c.ov.example", 200),
        ("d.ov.example", 11),
    ] {
        let (st, v) = s
            .post(
                &format!("/cas/{inter}/certificates"),
                json!({"type": "server", "common_name": cn, "validity_days": days}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // A revoked certificate leaves the expiry chart (the kept counters go down), not the
    // issuance chart.
    let (st, v) = s
        .post(
            &format!("/certificates/{}/revoke", ids[3]),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, o) = s.get("/overview").await;
    assert_eq!(st, StatusCode::OK, "{o}");
    let weeks = o["expiring"].as_array().unwrap();
    assert_eq!(weeks.len(), 13);
    // Week 0 holds the 3-day one, week 1 the 10-day one; the 200-day one is beyond.
    let counts: Vec<i64> = weeks.iter().map(|w| w["count"].as_i64().unwrap()).collect();
    assert_eq!(counts[0], 1, "{counts:?}");
    assert_eq!(counts[1], 1, "{counts:?}");
    assert_eq!(counts.iter().sum::<i64>(), 2, "{counts:?}");
    let days = o["issued"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(admin_today(&o) - admin_today(&before), 4, "{o}");
    // Weeks after the first start at a UTC midnight, in order.
    let froms: Vec<&str> = weeks.iter().map(|w| w["from"].as_str().unwrap()).collect();
    assert!(froms.windows(2).all(|p| p[0] < p[1]), "{froms:?}");
    assert!(
        froms[1..].iter().all(|f| f.ends_with("T00:00:00Z")),
        "{froms:?}"
    );
    let ca = o["cas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == inter.as_str())
        .expect("the intermediate is listed");
    assert_eq!(ca["total"], 20);
    assert_eq!(ca["left"], 16);
}
both_backends!(overview_counts_expiry_issuance_and_quota, overview_counts);

/// An auditor's console session reads, and every change it tries is refused by the
/// server (403), CSRF token or not: hiding the buttons is not the only wall.
async fn auditor_refused(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Auditor Root", 20, 10).await;
    let (st, cert) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "aud.console.example", "validity_days": 90}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{cert}");
    let cert_id = cert["id"].as_str().unwrap();
    let (st, tok) = s
        .post(
            "/tokens",
            json!({"role": "auditor", "name": "console reader"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let (cookie, me, _) = sign_in(s, tok["token"].as_str().unwrap()).await;
    assert_eq!(me["role"], "auditor");
    let csrf = me["csrf_token"].as_str().unwrap().to_string();

    let (st, v) = with_cookie(
        s,
        &cookie,
        None,
        Method::GET,
        &format!("/admin/v1/certificates?ca_id={inter}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"][0]["id"], cert_id, "the auditor reads the list");
    let (st, _) = with_cookie(s, &cookie, None, Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(st, StatusCode::OK);

    let refused: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/admin/v1/cas".into(),
            json!({"kind": "root", "common_name": "x"}),
        ),
        (
            Method::POST,
            format!("/admin/v1/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "no.console.example", "validity_days": 30}),
        ),
        (
            Method::POST,
            format!("/admin/v1/certificates/{cert_id}/revoke"),
            json!({}),
        ),
        (
            Method::PATCH,
            format!("/admin/v1/certificates/{cert_id}"),
            json!({"tags": {"env": "x"}}),
        ),
        (
            Method::POST,
            "/admin/v1/certificates/bulk".into(),
            json!({"action": "revoke", "ids": [cert_id]}),
        ),
        (
            Method::POST,
            format!("/admin/v1/certificates/{cert_id}/export"),
            json!({"format": "pem"}),
        ),
        (
            Method::POST,
            format!("/admin/v1/cas/{inter}/acme/eab"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/admin/v1/cas/{inter}/est/clients"),
            json!({"username": "dev", "password": "long-enough-pass"}),
        ),
        (
            Method::PUT,
            format!("/admin/v1/cas/{inter}/crl"),
            json!({"enabled": false}),
        ),
    ];
    for (method, path, body) in refused {
        let (st, v) = with_cookie(s, &cookie, Some(&csrf), method.clone(), &path, Some(body)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {v}");
    }
    // Nothing changed.
    let (_, c) = s.get(&format!("/certificates/{cert_id}")).await;
    assert_eq!(c["status"], "issued", "{c}");
    assert_eq!(c["tags"], json!({}), "{c}");
    let (_, crl) = s.get(&format!("/cas/{inter}/crl")).await;
    assert_eq!(crl["enabled"], true, "{crl}");
    // Its own snooze is allowed (it changes only its reminders).
    let (st, v) = with_cookie(
        s,
        &cookie,
        Some(&csrf),
        Method::POST,
        "/admin/v1/pending/snooze",
        Some(json!({"kind": "all", "days": 7})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
both_backends!(
    console_auditor_session_reads_and_every_change_is_refused,
    auditor_refused
);

/// `GET /audit.csv`: the filtered log, every row, audited once; no paging; the roles that
/// read the log only.
async fn audit_csv(s: &TestServer) {
    for i in 0..3 {
        let (st, v) = s
            .post(
                "/tokens",
                json!({"role": "operator", "name": format!("csv-op-{i}")}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let get_csv = |path: &'static str, token: String| {
        let client = s.client.clone();
        let url = format!("{}/admin/v1{path}", s.base);
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            let st = r.status();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (st, ct, r.text().await.unwrap())
        }
    };
    let (st, ct, body) = get_csv("/audit.csv?action=token.create", s.token.clone()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let mut lines = body.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,at,action,outcome,actor,actor_name,target,source_ip,detail"
    );
    let rows: Vec<&str> = lines.collect();
    // The same events as the list shows.
    let (_, listed) = s.get("/audit?action=token.create&limit=1000").await;
    let listed = listed["items"].as_array().unwrap().clone();
    assert!(listed.len() >= 3, "{listed:?}");
    assert_eq!(rows.len(), listed.len(), "{body}");
    assert!(
        rows[0].starts_with(&format!("{},", listed[0]["id"])),
        "{body}"
    );
    assert!(
        rows.iter().all(|r| r.contains(",token.create,success,")),
        "{body}"
    );
    // Newest first, as the list.
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // Without a filter: every event, the download itself included (audited first).
    let (_, _, all) = get_csv("/audit.csv", s.token.clone()).await;
    assert!(all.contains(",audit.export_csv,success,"), "{all}");
    assert!(all.lines().count() > 4, "{all}");
    // No paging.
    let (st, v) = s.get("/audit.csv?limit=5").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "limit");
    // A malformed bound names itself.
    let (st, v) = s.get("/audit.csv?since=yesterday").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "since");
    // An operator does not read the log.
    let (_, op) = s.tenant_with_token("csv-ops", "operator").await;
    let (st, _, _) = get_csv("/audit.csv", op).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}
both_backends!(
    audit_csv_holds_the_filtered_log_for_readers_of_it,
    audit_csv
);

// ---- The browser -------------------------------------------------------------------------

struct Browser {
    // Declared before `driver`, so that the session's connection goes first.
    client: Client,
    driver: Driver,
    shots: PathBuf,
    downloads: PathBuf,
}

impl Browser {
    async fn start(downloads: &Path, name: &str) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        ensure_chromium();
        // Its own process group: Chromium's processes join it, so one signal to the group
        // ends them all (killing chromedriver alone leaves its Chromium running).
        // Guarded from here on: a panic below (no session) still ends the driver's group.
        let driver = Driver {
            child: std::process::Command::new("chromedriver")
                .process_group(0)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("chromedriver runs: install Debian's chromium and chromium-driver with `bash .ci/install-deps`"),
            ended: false,
        };
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--ignore-certificate-errors", "--window-size=1280,800"],
                "prefs": {"download.default_directory": downloads.display().to_string(),
                          "download.prompt_for_download": false},
            }),
        );
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let client = client.expect("chromedriver accepts a session");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("console-screenshots")
            .join(name);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            client,
            shots,
            downloads: downloads.to_path_buf(),
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` (a JS expression) is truthy; panics with a screenshot after 15 s.
    async fn until(&self, what: &str, script: &str) {
        for _ in 0..150 {
            let v = self
                .client
                .execute(
                    &format!("try {{ return !!({script}); }} catch (e) {{ return false; }}"),
                    vec![],
                )
                .await
                .unwrap();
            if v == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shot(&format!("timeout-{}", what.replace(' ', "-")))
            .await;
        let body = self.js("return document.body.innerText").await;
        panic!("timed out waiting for {what} ({script}); the page says:\n{body}");
    }

    async fn css(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    async fn xpath(&self, xpath: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("no {xpath}: {e}"))
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.css(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn submit_dialog(&self) {
        self.css("#dialog button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
    }

    async fn dialog_closed(&self, what: &str) {
        self.until(what, "!document.querySelector('#dialog').open")
            .await;
    }

    /// Every visible input, select and text area has a label (or an aria-label).
    async fn all_labelled(&self, page: &str) {
        let v = self
            .js(
                "return [...document.querySelectorAll('input,select,textarea')]\
                 .filter(e => e.type !== 'hidden' && e.offsetParent !== null\
                 && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
                 .map(e => e.outerHTML)",
            )
            .await;
        assert_eq!(v, json!([]), "unlabelled inputs on {page}");
    }

    /// Opens `hash` and waits until its page is drawn with `h1` as its title.
    async fn page(&self, base: &str, hash: &str, h1: &str) {
        self.client.goto(&format!("{base}/{hash}")).await.unwrap();
        self.until(
            &format!("the page {hash}"),
            &format!(
                "document.querySelector('main h1') && document.querySelector('main h1').textContent === {} \
                 && !document.querySelector('main').innerText.includes('Loading…')",
                json!(h1)
            ),
        )
        .await;
        let broken = self
            .js("return document.querySelector('main').innerText.includes('Something went wrong')")
            .await;
        assert_eq!(broken, false, "{hash} failed to draw");
    }

    /// Sends a DevTools command to the page (chromedriver's `goog/cdp/execute`).
    async fn cdp(&self, cmd: &'static str, params: Value) {
        self.client
            .issue_cmd(Cdp(cmd, params))
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }

    /// Makes the viewport `w`×`h` CSS pixels. Headless Chromium keeps a window at least
    /// 500 px wide, so a phone's width is emulated (DevTools' device metrics); the
    /// viewport's width is checked either way.
    async fn size(&self, w: u32, h: u32) {
        if w < 500 {
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": w, "height": h, "deviceScaleFactor": 1, "mobile": true}),
            )
            .await;
        } else {
            self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
                .await;
            self.client.set_window_size(w, h).await.unwrap();
        }
        assert_eq!(
            self.js("return window.innerWidth").await,
            json!(w),
            "the viewport is {w} px wide"
        );
    }

    /// How many CSS pixels the page is wider than the window (0 when it fits).
    async fn overflow(&self) -> i64 {
        self.js("return document.documentElement.scrollWidth - window.innerWidth")
            .await
            .as_i64()
            .unwrap()
    }

    /// Presses one key (a WebDriver key code such as `\u{E004}` for Tab) on the focused
    /// element.
    async fn key(&self, key: &str) {
        self.client
            .active_element()
            .await
            .unwrap()
            .send_keys(key)
            .await
            .unwrap();
    }

    /// The focused element, described: tag, text or name, and whether it is in the dialog.
    async fn focused(&self) -> Value {
        self.js(
            "const a = document.activeElement; return [a.tagName, (a.name || a.textContent || '').trim(), \
             !!a.closest('#dialog')]",
        )
        .await
    }

    async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        self.driver.kill_group();
    }
}

/// A DevTools command through chromedriver: `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"cmd": self.0, "params": self.1}).to_string()),
        )
    }
}

/// chromedriver, in a process group of its own that Chromium's processes join.
struct Driver {
    child: std::process::Child,
    /// The group was killed and the driver reaped.
    ended: bool,
}

impl Driver {
    /// Ends chromedriver and the Chromium it started: the whole process group of the
    /// driver (its id), then reaps the driver.
    fn kill_group(&mut self) {
        if self.ended {
            // Once reaped, the id may belong to someone else's process by now.
            return;
        }
        self.ended = true;
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    /// A failed test (even one failing before the browser's session exists) leaves no
    /// chromedriver and no Chromium behind.
    fn drop(&mut self) {
        self.kill_group();
    }
}

async fn ca_by_name(s: &TestServer, cn: &str) -> Value {
    let (_, v) = s.get("/cas?limit=1000").await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["common_name"] == cn)
        .cloned()
        .unwrap_or_else(|| panic!("no CA named {cn}: {v}"))
}

/// Enables the CA `id` from its row (generate) and waits for its badge.
async fn enable_in_browser(b: &Browser, id: &str) {
    click_in_ca(b, id, "Enable").await;
    b.submit_dialog().await;
    b.dialog_closed("the enable dialog").await;
    b.until(
        "the CA enabled",
        &format!("document.querySelector(\"[data-ca='{id}'] .badge\").textContent === 'enabled'"),
    )
    .await;
}

async fn click_in_ca(b: &Browser, ca_id: &str, label: &str) {
    b.xpath(&format!(
        "//div[@data-ca='{ca_id}']//button[normalize-space()='{label}']"
    ))
    .await
    .click()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_user_builds_a_hierarchy_issues_and_downloads_a_pfx_in_chromium() {
    let s = TestServer::start(Backend::Sqlite).await;
    let downloads = s.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::start(&downloads, "journey").await;
    let c = &b.client;

    // Sign-in: a wrong token is refused next to the field.
    c.goto(&format!("{}/", s.base)).await.unwrap();
    b.fill("input[name=token]", "vlm_wrong").await;
    b.shot("01-sign-in").await;
    b.css("button[type=submit]").await.click().await.unwrap();
    b.until(
        "the token error",
        "document.querySelector('[data-field=token] .error') && \
         !document.querySelector('[data-field=token] .error').hidden && \
         document.querySelector('[data-field=token] .error').textContent.includes('unknown or revoked')",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelector('input[name=token]').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    b.shot("02-sign-in-refused").await;
    b.fill("input[name=token]", &s.token).await;
    b.css("button[type=submit]").await.click().await.unwrap();
    b.until(
        "the overview",
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'Overview'",
    )
    .await;
    // The reminder dialog, if any, offers the 7-day snooze.
    if b.js("return document.querySelector('#dialog').open").await == Value::Bool(true) {
        b.xpath("//button[normalize-space()='Do not remind me again for 7 days']")
            .await
            .click()
            .await
            .unwrap();
        b.dialog_closed("the pending dialog").await;
    }
    b.until(
        "two charts",
        "document.querySelectorAll('svg.chart').length === 2",
    )
    .await;
    b.all_labelled("overview").await;
    b.shot("03-overview").await;

    // The session cookie: HttpOnly, Secure, SameSite=Strict.
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "__Host-vellum-session")
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.secure(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    // The script cannot read it.
    assert_eq!(b.js("return document.cookie").await, "");

    // A root with its first intermediate.
    c.goto(&format!("{}/#/cas", s.base)).await.unwrap();
    b.xpath("//button[normalize-space()='Purchase root CA']")
        .await
        .click()
        .await
        .unwrap();
    b.fill("#dialog [name=common_name]", "Console Root").await;
    b.fill("#dialog [name=intermediate_common_name]", "Console Dept A")
        .await;
    b.fill("#dialog [name=quota]", "40").await;
    b.shot("04-purchase-root").await;
    b.submit_dialog().await;
    b.dialog_closed("the purchase dialog").await;
    b.until(
        "the new root",
        "document.body.innerText.includes('Console Root')",
    )
    .await;
    let root = ca_by_name(&s, "Console Root").await;
    let root_id = root["id"].as_str().unwrap().to_string();
    let dept_a = ca_by_name(&s, "Console Dept A").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Enable the root, then its intermediate (generate).
    // (the root's dialog is checked for labels first)
    click_in_ca(&b, &root_id, "Enable").await;
    b.css("#dialog select[name=mode]").await;
    b.all_labelled("enable dialog").await;
    b.js("document.querySelector('#dialog').close(); return 1;")
        .await;
    enable_in_browser(&b, &root_id).await;
    enable_in_browser(&b, &dept_a).await;

    // A second intermediate.
    click_in_ca(&b, &root_id, "Add intermediate").await;
    b.fill("#dialog [name=common_name]", "Console Dept B").await;
    b.submit_dialog().await;
    b.dialog_closed("the intermediate dialog").await;
    b.until(
        "dept B",
        "document.body.innerText.includes('Console Dept B')",
    )
    .await;
    let dept_b = ca_by_name(&s, "Console Dept B").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    enable_in_browser(&b, &dept_b).await;

    // Quota: more than the root has is refused next to the field, in the API's words.
    click_in_ca(&b, &dept_a, "Assign quota").await;
    b.fill("#dialog [name=count]", "100000").await;
    b.submit_dialog().await;
    b.until(
        "the quota refusal",
        "document.querySelector('#dialog .form-error, #dialog [data-field=count] .error:not([hidden])')",
    )
    .await;
    let refusal = b
        .js("return document.querySelector('#dialog').innerText")
        .await;
    assert!(refusal.as_str().unwrap().contains("40"), "{refusal}");
    b.shot("05-quota-refused").await;
    b.fill("#dialog [name=count]", "5").await;
    b.submit_dialog().await;
    b.dialog_closed("the quota dialog").await;
    assert_eq!(ca_by_name(&s, "Console Dept A").await["quota_remaining"], 5);
    b.shot("06-hierarchy").await;

    // Revoke with a typed confirmation.
    click_in_ca(&b, &dept_b, "Revoke").await;
    b.fill("#dialog [name=confirm]", "Dept B").await;
    b.submit_dialog().await;
    b.until(
        "the confirmation refusal",
        "document.querySelector('[data-field=confirm] .error:not([hidden])')",
    )
    .await;
    assert_eq!(ca_by_name(&s, "Console Dept B").await["status"], "enabled");
    b.fill("#dialog [name=confirm]", "Console Dept B").await;
    b.submit_dialog().await;
    b.dialog_closed("the revoke dialog").await;
    assert_eq!(ca_by_name(&s, "Console Dept B").await["status"], "revoked");

    // Apply for a certificate: a validity beyond the CA's is refused on that field.
    click_in_ca(&b, &dept_a, "Apply for certificate").await;
    b.fill("#dialog [name=common_name]", "app.console.example")
        .await;
    b.fill("#dialog [name=san_value_0]", "app.console.example")
        .await;
    b.fill("#dialog [name=validity_days]", "40000").await;
    b.all_labelled("apply dialog").await;
    b.shot("07-apply").await;
    b.submit_dialog().await;
    b.until(
        "the validity refusal",
        "document.querySelector('[data-field=validity_days] .error:not([hidden])')",
    )
    .await;
    b.shot("08-apply-refused").await;
    b.fill("#dialog [name=validity_days]", "90").await;
    b.submit_dialog().await;
    b.until("the download dialog", "document.querySelector('#dialog-title') && document.querySelector('#dialog-title').textContent.startsWith('Download')").await;
    b.css("#dialog select[name=format]")
        .await
        .select_by_value("pkcs12")
        .await
        .unwrap();
    b.fill("#dialog [name=password]", "pfx-pass-1234").await;
    b.shot("09-download").await;
    b.submit_dialog().await;
    b.dialog_closed("the download dialog").await;
    let pfx = wait_for_file(&b.downloads).await;
    let (ok, text) = openssl(&[
        "pkcs12",
        "-in",
        pfx.to_str().unwrap(),
        "-passin",
        "pass:pfx-pass-1234",
        "-nokeys",
        "-clcerts",
    ]);
    assert!(ok && text.contains("app.console.example"), "{text}");
    let (ok, text) = openssl(&[
        "pkcs12",
        "-in",
        pfx.to_str().unwrap(),
        "-passin",
        "pass:pfx-pass-1234",
        "-nocerts",
        "-nodes",
    ]);
    assert!(
        ok && text.contains("PRIVATE KEY"),
        "the PFX holds the key: {text}"
    );

    // The certificate list: search finds it; the row carries its actions.
    c.goto(&format!("{}/#/certificates?q=console.example", s.base))
        .await
        .unwrap();
    b.until("the certificate row", "document.querySelector('tbody tr') && document.body.innerText.includes('app.console.example')").await;
    b.all_labelled("certificates").await;
    b.shot("10-certificates").await;

    // Upload a certificate bought elsewhere with the wrong key: the reason, on the field.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["bought.example".to_string()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "bought.example");
    let cert = p.self_signed(&key).unwrap();
    let other_key = KeyPair::generate().unwrap();
    c.goto(&format!("{}/#/managed", s.base)).await.unwrap();
    b.xpath("//button[normalize-space()='Upload a certificate']")
        .await
        .click()
        .await
        .unwrap();
    b.fill("#dialog [name=name]", "bought elsewhere").await;
    b.js(&format!(
        "document.querySelector('#dialog [name=certificate_pem]').value = {};\
         document.querySelector('#dialog [name=private_key_pem]').value = {}; return 1;",
        json!(cert.pem()),
        json!(other_key.serialize_pem())
    ))
    .await;
    b.submit_dialog().await;
    b.until(
        "the key refusal",
        "[...document.querySelectorAll('#dialog .error:not([hidden]), #dialog .form-error')].some(e => e.textContent.includes('do not match'))",
    )
    .await;
    b.shot("11-upload-refused").await;
    b.js(&format!(
        "document.querySelector('#dialog [name=private_key_pem]').value = {}; return 1;",
        json!(key.serialize_pem())
    ))
    .await;
    b.submit_dialog().await;
    b.dialog_closed("the upload dialog").await;
    b.until(
        "the managed row",
        "document.body.innerText.includes('bought elsewhere')",
    )
    .await;
    b.shot("12-managed").await;

    // The audit page shows the console's own events.
    c.goto(&format!("{}/#/audit", s.base)).await.unwrap();
    b.until(
        "audit rows",
        "document.body.innerText.includes('console.sign_in')",
    )
    .await;
    b.shot("13-audit").await;

    // Phone width: nothing wider than the screen.
    b.size(390, 844).await;
    c.goto(&format!("{}/#/cas", s.base)).await.unwrap();
    b.until(
        "the CA page",
        "document.body.innerText.includes('Console Dept A')",
    )
    .await;
    let overflow = b
        .js("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 1,
        "the page is wider than a phone: {overflow}"
    );
    b.shot("14-phone").await;
    b.size(1280, 800).await;

    // Keyboard only: Tab reaches the sign-out button and Enter signs out.
    b.css("#sign-out").await;
    b.js("document.querySelector('#sign-out').focus(); return 1;")
        .await;
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    b.until(
        "the sign-in page",
        "document.querySelector('input[name=token]')",
    )
    .await;
    let cookies = c.get_all_cookies().await.unwrap();
    assert!(
        cookies
            .iter()
            .all(|k| k.name() != "__Host-vellum-session" || k.value().is_empty()),
        "the cookie is cleared"
    );
    // Signed out: a neutral notice (not the error style), and no header.
    assert_eq!(
        b.js("return [!!document.querySelector('main .notice'), !!document.querySelector('main .form-error'), \
              getComputedStyle(document.querySelector('#top')).display]")
            .await,
        json!([true, false, "none"])
    );
    b.shot("15-signed-out").await;

    // An auditor sees no action button (and the server would refuse anyway).
    let (st, tok) = s
        .post(
            "/tokens",
            json!({"role": "auditor", "name": "console auditor"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    b.fill("input[name=token]", tok["token"].as_str().unwrap())
        .await;
    b.css("button[type=submit]").await.click().await.unwrap();
    b.until(
        "the auditor's session",
        "document.querySelector('#who').textContent.includes('(auditor)')",
    )
    .await;
    if b.js("return document.querySelector('#dialog').open").await == Value::Bool(true) {
        b.js("document.querySelector('#dialog').close(); return 1;")
            .await;
    }
    c.goto(&format!("{}/#/cas", s.base)).await.unwrap();
    b.until(
        "the CA page",
        "document.body.innerText.includes('Console Dept A')",
    )
    .await;
    let buttons = b
        .js("return document.querySelectorAll('.ca .actions button').length + \
             [...document.querySelectorAll('button')].filter(x => x.textContent === 'Purchase root CA').length")
        .await;
    assert_eq!(buttons, 0, "an auditor sees no action");
    b.shot("16-auditor").await;

    b.stop().await;
    s.stop().await;
}

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

/// Signs in as `token` on the sign-in page and closes the pending-items reminder if any.
async fn browser_sign_in(b: &Browser, base: &str, token: &str) {
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.fill("input[name=token]", token).await;
    b.css("button[type=submit]").await.click().await.unwrap();
    b.until(
        "the session",
        "document.querySelector('#who').textContent !== '' && document.querySelector('main h1')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if b.js("return document.querySelector('#dialog').open").await == Value::Bool(true) {
        b.js("document.querySelector('#dialog').close(); return 1;")
            .await;
    }
}

/// A private CA with certificates (one at leakage risk), their synced copies, and a
/// tenant of the same entity as the default one (to share with).
async fn seeded(s: &TestServer, cn: &str) -> (String, String, Vec<Value>) {
    let (root, inter) = s.enabled_pair(cn, 50, 20).await;
    let mut certs = vec![];
    for (name, days) in [("web", 90), ("long", 400), ("api", 60)] {
        let (st, c) = s
            .post(
                &format!("/cas/{inter}/certificates"),
                json!({"type": "server", "common_name": format!("{name}.pages.example"),
                       "validity_days": days, "tags": {"env": "dev"}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{c}");
        certs.push(c);
    }
    let (st, v) = s
        .post(
            &format!("/cas/{inter}/certificates/sync"),
            json!({"all": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    (root, inter, certs)
}

/// Every page, at 1280×800 and at a phone's 390×844: drawn without error, every input
/// labelled, nothing wider than the window, a screenshot each; and each kind of dialog
/// labelled too, with its screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_and_dialog_is_labelled_fits_a_phone_and_is_photographed_in_chromium() {
    let s = TestServer::start(Backend::Sqlite).await;
    let (_root, inter, _certs) = seeded(&s, "Pages Root").await;
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    let ca_name = ca["common_name"].as_str().unwrap().to_string();
    let downloads = s.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::start(&downloads, "pages").await;
    browser_sign_in(&b, &s.base, &s.token).await;
    let ca_hash = format!("#/ca?id={inter}");
    let pages: Vec<(&str, &str, &str)> = vec![
        ("overview", "#/overview", "Overview"),
        ("cas", "#/cas", "Private CAs"),
        ("ca-settings", &ca_hash, &ca_name),
        ("certificates", "#/certificates", "Certificates"),
        ("managed", "#/managed", "Certificate management"),
        ("notifications", "#/notifications", "Notifications"),
        ("audit", "#/audit", "Audit"),
        ("tenants", "#/tenants", "Tenants and tokens"),
    ];
    for (w, h, size) in [(1280u32, 800u32, "1280x800"), (390, 844, "390x844")] {
        b.size(w, h).await;
        for (name, hash, h1) in &pages {
            b.page(&s.base, hash, h1).await;
            b.all_labelled(&format!("{name} at {size}")).await;
            let over = b.overflow().await;
            assert!(over <= 1, "{name} is {over} px wider than {size}");
            // Nor does a table scroll sideways inside the page.
            let wide = b
                .js(
                    "return Math.max(0, ...Array.from(document.querySelectorAll('.table-wrap'), \
                     (w) => w.scrollWidth - w.clientWidth))",
                )
                .await;
            assert!(
                wide.as_i64().unwrap() <= 1,
                "a table of {name} scrolls {wide} px sideways at {size}"
            );
            if w < 500 {
                // Each cell of a row drawn as a card names its column.
                let unlabelled = b
                    .js("return Array.from(document.querySelectorAll('.table-wrap tbody td')).filter((td) => \
                         getComputedStyle(td).display !== 'none' && td.textContent.trim() && !td.querySelector('input, button') \
                         && !td.dataset.label).length")
                    .await;
                assert_eq!(
                    unlabelled,
                    json!(0),
                    "cells of {name} without their column's name at {size}"
                );
            }
            b.shot(&format!("{name}-{size}")).await;
        }
    }
    b.size(1280, 800).await;

    // Each dialog: labelled, photographed, closed with Escape.
    let dialogs: Vec<(&str, &str, &str, &str)> = vec![
        (
            "purchase-root",
            "#/cas",
            "Private CAs",
            "//button[normalize-space()='Purchase root CA']",
        ),
        (
            "apply",
            "#/certificates",
            "Certificates",
            "//button[normalize-space()='Apply for a certificate']",
        ),
        (
            "download",
            "#/certificates",
            "Certificates",
            "(//tbody//button[normalize-space()='Download'])[1]",
        ),
        (
            "tags",
            "#/certificates",
            "Certificates",
            "(//tbody//button[normalize-space()='Tags'])[1]",
        ),
        (
            "share",
            "#/certificates",
            "Certificates",
            "(//tbody//button[normalize-space()='Share'])[1]",
        ),
        (
            "upload",
            "#/managed",
            "Certificate management",
            "//button[normalize-space()='Upload a certificate']",
        ),
        (
            "convert",
            "#/managed",
            "Certificate management",
            "//button[normalize-space()='Convert a file']",
        ),
        (
            "webhook",
            "#/notifications",
            "Notifications",
            "//button[normalize-space()='Add webhook']",
        ),
        (
            "email",
            "#/notifications",
            "Notifications",
            "//button[normalize-space()='Add e-mail']",
        ),
        (
            "new-token",
            "#/tenants",
            "Tenants and tokens",
            "//button[normalize-space()='New token']",
        ),
    ];
    for (name, hash, h1, button) in dialogs {
        b.page(&s.base, hash, h1).await;
        b.xpath(button).await.click().await.unwrap();
        b.until(
            &format!("the {name} dialog"),
            "document.querySelector('#dialog').open && document.querySelector('#dialog input, #dialog select, #dialog textarea')",
        )
        .await;
        b.all_labelled(&format!("the {name} dialog")).await;
        b.shot(&format!("dialog-{name}")).await;
        b.key(ESCAPE).await;
        b.dialog_closed(&format!("the {name} dialog")).await;
    }
    b.stop().await;
    s.stop().await;
}

/// The console's features beyond the first slice, driven as a user would: the keyboard
/// alone through a dialog; tags; a share seen read-only in the other tenant through the
/// super-admin's tenant switch; bulk revoke (and the CRL); reminders off by filter; a
/// CA's EST clients, EAB key and rate limits; audit filters and CSV; toasts on a phone;
/// a neutral sign-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_share_bulk_settings_audit_and_the_keyboard_work_in_chromium() {
    let s = TestServer::start(Backend::Sqlite).await;
    let (_root, inter, certs) = seeded(&s, "Features Root").await;
    let (st, sister) = s
        .post("/tenants", json!({"name": "sister", "entity": "default"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sister}");
    let sister_id = sister["id"].as_str().unwrap().to_string();
    let downloads = s.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::start(&downloads, "features").await;
    browser_sign_in(&b, &s.base, &s.token).await;
    let web = certs[0]["id"].as_str().unwrap().to_string();

    // Keyboard only: Tab to a row's Tags button, Enter opens the dialog, Tab stays inside
    // it, Escape closes it and focus comes back to the button.
    b.page(&s.base, "#/certificates?q=web.pages", "Certificates")
        .await;
    b.js("document.querySelector('#main').focus(); return 1;")
        .await;
    let mut reached = false;
    for _ in 0..80 {
        b.key(TAB).await;
        let f = b.focused().await;
        if f[0] == "BUTTON" && f[1] == "Tags" {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches the row's Tags button");
    b.key(ENTER).await;
    b.until("the tags dialog", "document.querySelector('#dialog').open")
        .await;
    for _ in 0..6 {
        b.key(TAB).await;
        let f = b.focused().await;
        assert_eq!(f[2], true, "focus stays in the dialog: {f}");
    }
    b.key(ESCAPE).await;
    b.dialog_closed("the tags dialog").await;
    let f = b.focused().await;
    assert_eq!(f[1], "Tags", "focus returns to the opener: {f}");

    // Tags: a refusal on the field in the API's words, then saved.
    b.xpath("(//tbody//button[normalize-space()='Tags'])[1]")
        .await
        .click()
        .await
        .unwrap();
    b.fill(
        "#dialog [name=tags]",
        &format!("env=prod\nteam={}", "x".repeat(300)),
    )
    .await;
    b.submit_dialog().await;
    b.until(
        "the tags refusal",
        "document.querySelector('#dialog [data-field=tags] .error:not([hidden])') && \
         document.querySelector('#dialog [data-field=tags] .error').textContent.includes('256')",
    )
    .await;
    b.shot("01-tags-refused").await;
    b.fill("#dialog [name=tags]", "env=prod\nteam=web").await;
    b.submit_dialog().await;
    b.dialog_closed("the tags dialog").await;
    let (_, c) = s.get(&format!("/certificates/{web}")).await;
    assert_eq!(c["tags"], json!({"env": "prod", "team": "web"}), "{c}");

    // Share with the sister tenant (same entity), then see it there, read-only.
    b.page(&s.base, "#/certificates?q=web.pages", "Certificates")
        .await;
    b.xpath("(//tbody//button[normalize-space()='Share'])[1]")
        .await
        .click()
        .await
        .unwrap();
    b.css("#dialog select[name=tenant]")
        .await
        .select_by_value(&sister_id)
        .await
        .unwrap();
    b.shot("02-share").await;
    b.submit_dialog().await;
    b.dialog_closed("the share dialog").await;
    let (_, c) = s.get(&format!("/certificates/{web}")).await;
    assert_eq!(c["shared_with"]["tenant_id"], sister_id.as_str(), "{c}");
    b.until(
        "the shared mark",
        "document.body.innerText.includes('shared with sister')",
    )
    .await;
    // The super-admin's tenant switch.
    b.css("#tenant-select")
        .await
        .select_by_value(&sister_id)
        .await
        .unwrap();
    b.until(
        "the sister's overview",
        "location.hash === '#/overview' && document.querySelector('main h1').textContent === 'Overview'",
    )
    .await;
    b.page(&s.base, "#/managed", "Certificate management").await;
    b.until(
        "the received share",
        "document.body.innerText.includes('shared by default')",
    )
    .await;
    let row_buttons = b
        .js("return [...document.querySelectorAll('tbody tr button')].map(x => x.textContent)")
        .await;
    assert_eq!(
        row_buttons,
        json!(["Download", "Remove"]),
        "read-only there: no tags, no share"
    );
    b.xpath("//tbody//button[normalize-space()='Download']")
        .await
        .click()
        .await
        .unwrap();
    let formats = b
        .js("return [...document.querySelectorAll('#dialog [name=format] option')].map(o => o.value)")
        .await;
    assert_eq!(formats, json!(["pem", "der"]), "no key to download there");
    b.shot("03-shared-read-only").await;
    b.key(ESCAPE).await;
    b.dialog_closed("the download dialog").await;
    b.js("const s = document.querySelector('#tenant-select'); s.value = [...s.options].find(o => o.textContent === 'default').value; \
          s.dispatchEvent(new Event('change')); return 1;")
        .await;

    // Bulk revoke of two selected certificates; both on the CRL.
    b.page(&s.base, "#/certificates?q=pages.example", "Certificates")
        .await;
    b.until(
        "three rows",
        "document.querySelectorAll('tbody tr').length === 3",
    )
    .await;
    let picked = [
        certs[1]["id"].as_str().unwrap().to_string(),
        certs[2]["id"].as_str().unwrap().to_string(),
    ];
    for id in &picked {
        b.css(&format!("tr[data-id='{id}'] input.pick"))
            .await
            .click()
            .await
            .unwrap();
    }
    assert_eq!(
        b.js("return document.querySelector('#selected-count').textContent")
            .await,
        "Selected: 2"
    );
    b.xpath("//div[contains(@class,'toolbar')]/button[normalize-space()='Revoke']")
        .await
        .click()
        .await
        .unwrap();
    b.submit_dialog().await;
    b.until(
        "the bulk report",
        "document.querySelector('#dialog-title') && document.querySelector('#dialog-title').textContent === 'Revoke: 2 done, 0 failed'",
    )
    .await;
    b.shot("04-bulk-report").await;
    b.key(ESCAPE).await;
    b.dialog_closed("the bulk report").await;
    let crl = s
        .client
        .get(format!("{}/crl/{inter}.crl", s.http_base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let crl_file = s.dir.path().join("inter.crl");
    std::fs::write(&crl_file, &crl).unwrap();
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        crl_file.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    for c in &certs[1..] {
        let (_, now) = s
            .get(&format!("/certificates/{}", c["id"].as_str().unwrap()))
            .await;
        assert_eq!(now["status"], "revoked", "{now}");
        let serial = c["serial"].as_str().unwrap().to_uppercase();
        assert!(
            text.to_uppercase().contains(serial.trim_start_matches('0')),
            "{serial} on the CRL:\n{text}"
        );
    }

    // Reminders off for everything the (empty) filter shows.
    b.page(&s.base, "#/managed", "Certificate management").await;
    b.xpath("//button[normalize-space()='Reminders off for all shown']")
        .await
        .click()
        .await
        .unwrap();
    b.submit_dialog().await;
    b.dialog_closed("the reminders dialog").await;
    let mut off = false;
    for _ in 0..50 {
        let (_, m) = s.get("/managed").await;
        let items = m["items"].as_array().unwrap();
        if !items.is_empty() && items.iter().all(|x| x["notifications"] == false) {
            off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(off, "every managed certificate has reminders off");

    // A toast on a phone sits above the page instead of covering it.
    b.size(390, 844).await;
    b.page(&s.base, "#/managed", "Certificate management").await;
    b.css("tbody tr input[type=checkbox]")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "the toast",
        "document.querySelector('#toast').innerText.includes('Reminders on')",
    )
    .await;
    let placed = b
        .js("const t = document.querySelector('#toast'); return [getComputedStyle(t).position, \
             t.getBoundingClientRect().bottom <= document.querySelector('main').getBoundingClientRect().top + 1]")
        .await;
    assert_eq!(placed, json!(["static", true]), "the toast covers the page");
    b.shot("05-phone-toast").await;
    b.size(1280, 800).await;

    // The CA's settings: an EST client (refused, added, removed), an EAB key shown once,
    // a rate limit.
    b.page(&s.base, &format!("#/ca?id={inter}"), &{
        let (_, ca) = s.get(&format!("/cas/{inter}")).await;
        ca["common_name"].as_str().unwrap().to_string()
    })
    .await;
    let est = "section[aria-labelledby=ca-est]";
    b.fill(&format!("{est} [name=username]"), "device-1").await;
    b.fill(&format!("{est} [name=password]"), "short").await;
    b.xpath("//button[normalize-space()='Add EST client']")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "the password refusal",
        &format!("document.querySelector('{est} [data-field=password] .error:not([hidden])')"),
    )
    .await;
    b.fill(&format!("{est} [name=password]"), "long-enough-password")
        .await;
    b.xpath("//button[normalize-space()='Add EST client']")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "the EST client row",
        "document.querySelector('table[aria-label=\"EST clients\"]') && \
         document.querySelector('table[aria-label=\"EST clients\"]').innerText.includes('device-1')",
    )
    .await;
    let (_, clients) = s.get(&format!("/cas/{inter}/est/clients")).await;
    assert_eq!(clients["items"][0]["username"], "device-1", "{clients}");
    b.xpath("//button[normalize-space()='New EAB key']")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "the EAB key",
        "document.querySelector('[data-eab=hmac]') && document.querySelector('[data-eab=hmac]').textContent.length > 20",
    )
    .await;
    let hmac = b
        .js("return document.querySelector('[data-eab=hmac]').textContent")
        .await;
    let (_, acme) = s.get(&format!("/cas/{inter}/acme")).await;
    assert!(
        !acme.to_string().contains(hmac.as_str().unwrap()),
        "the HMAC key is shown once, never read back"
    );
    b.shot("06-ca-settings").await;
    // A negative limit: refused next to its field, in words (not serde's).
    b.fill(
        "section[aria-labelledby=ca-limits] [name=acme_orders_per_account_per_hour]",
        "-1",
    )
    .await;
    b.xpath("//button[normalize-space()='Save rate limits']")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "the refusal of -1 next to its field",
        "(() => { const f = document.querySelector('section[aria-labelledby=ca-limits] form'); \
          const e = f && f.querySelector('.error:not([hidden])'); \
          return e && e.textContent.includes('must be a whole number from 0') && e.textContent.includes('-1') \
            && f.querySelector('[name=acme_orders_per_account_per_hour][aria-invalid=true]'); })()",
    )
    .await;
    let shown = b
        .js("return document.querySelector('section[aria-labelledby=ca-limits] .error:not([hidden])').textContent")
        .await;
    assert!(!shown.as_str().unwrap().contains("u32"), "{shown}");
    b.fill(
        "section[aria-labelledby=ca-limits] [name=acme_orders_per_account_per_hour]",
        "7",
    )
    .await;
    // Marked, so that the page redrawn after the save is told from this one.
    b.js(
        "document.querySelector('section[aria-labelledby=ca-limits]').dataset.old = '1'; return 1;",
    )
    .await;
    b.xpath("//button[normalize-space()='Save rate limits']")
        .await
        .click()
        .await
        .unwrap();
    let mut saved = false;
    for _ in 0..50 {
        let (_, rl) = s.get(&format!("/cas/{inter}/rate-limits")).await;
        if rl["overrides"]["acme_orders_per_account_per_hour"] == 7 {
            saved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saved, "the rate limit is saved");
    b.until(
        "the page redrawn",
        "document.querySelector('section[aria-labelledby=ca-limits]') && \
         !document.querySelector('section[aria-labelledby=ca-limits]').dataset.old && \
         document.querySelector('table[aria-label=\"EST clients\"]')",
    )
    .await;
    b.xpath("//table[@aria-label='EST clients']//button[normalize-space()='Remove']")
        .await
        .click()
        .await
        .unwrap();
    b.submit_dialog().await;
    b.dialog_closed("the removal").await;
    b.until(
        "no EST client",
        "!document.querySelector('table[aria-label=\"EST clients\"]')",
    )
    .await;
    let (_, clients) = s.get(&format!("/cas/{inter}/est/clients")).await;
    assert_eq!(clients["items"], json!([]), "{clients}");

    // Audit: filtered by action, and the same as CSV.
    b.page(&s.base, "#/audit", "Audit").await;
    b.fill("#aflt-action", "certificate.revoke").await;
    b.xpath("//form//button[normalize-space()='Filter']")
        .await
        .click()
        .await
        .unwrap();
    b.until(
        "the filtered log",
        "location.hash.includes('action=certificate.revoke') && document.querySelectorAll('main tbody tr').length === 2 && \
         [...document.querySelectorAll('main tbody tr')].every(r => r.children[1].textContent === 'certificate.revoke')",
    )
    .await;
    b.shot("07-audit-filtered").await;
    b.xpath("//button[normalize-space()='Export CSV']")
        .await
        .click()
        .await
        .unwrap();
    let csv = wait_for_file(&b.downloads).await;
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.ends_with("audit.csv"), "{}", csv.display());
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows.iter().all(|r| r.contains(",certificate.revoke,")),
        "{text}"
    );

    // Signing out: a neutral notice, no header.
    b.css("#sign-out").await.click().await.unwrap();
    b.until(
        "the sign-in page",
        "document.querySelector('input[name=token]')",
    )
    .await;
    assert_eq!(
        b.js("return [document.querySelector('main .notice') && document.querySelector('main .notice').textContent, \
              !!document.querySelector('main .form-error'), getComputedStyle(document.querySelector('#top')).display]")
            .await,
        json!(["Signed out.", false, "none"])
    );
    b.shot("08-signed-out").await;
    b.stop().await;
    s.stop().await;
}

/// The first finished download in `dir`: not Chromium's `.crdownload` nor its hidden
/// `.org.chromium.Chromium.*` scratch file, and not growing any more.
async fn wait_for_file(dir: &Path) -> PathBuf {
    let mut last: Option<(PathBuf, u64)> = None;
    for _ in 0..150 {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                !name.starts_with('.') && !name.ends_with(".crdownload")
            })
            .and_then(|p| Some((p.clone(), std::fs::metadata(&p).ok()?.len())));
        if let (Some((p, n)), Some((q, m))) = (&done, &last) {
            if p == q && n == m && *n > 0 {
                return p.clone();
            }
        }
        last = done;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing was downloaded to {}", dir.display());
}

/// Installs Chromium and its WebDriver through the project's own script when missing
/// (`cargo test --release` on a fresh Debian machine, as root).
fn ensure_chromium() {
    let have = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if have("chromedriver") && have("chromium") {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/install-deps");
    let _ = std::process::Command::new("bash")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        have("chromedriver") && have("chromium"),
        "the console's browser test needs Debian's chromium and chromium-driver: \
         run `bash .ci/install-deps` as root (it installs them)"
    );
}
