//! The server as a whole: bootstrap files, restarts, health, edge limits, error shapes,
//! keys at rest, graceful shutdown, replicas and the CLI.

use std::os::unix::fs::PermissionsExt;

use crate::common::{env_for, start_with_env, Backend, TestServer};
use reqwest::StatusCode;
use serde_json::json;

async fn health_and_files(s: &TestServer) {
    for url in [
        format!("{}/healthz", s.base),
        format!("{}/healthz", s.http_base),
    ] {
        let resp = s.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
    }
    let data = s.data_dir();
    let mut private = vec![
        ("", 0o700),
        ("admin-token", 0o600),
        ("master.key", 0o600),
        ("tls/server.key", 0o600),
        ("root.pem", 0o644),
    ];
    if s.backend == Backend::Sqlite {
        // The database holds password hashes, the audit trail and sealed keys; SQLite gives
        // its WAL and shared-memory files the database file's mode.
        private.extend([
            ("vellum.db", 0o600),
            ("vellum.db-wal", 0o600),
            ("vellum.db-shm", 0o600),
        ]);
    }
    for (file, mode) in private {
        let m = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{file}");
    }
    // The HTTPS certificate chains to root.pem and names localhost and 127.0.0.1.
    let chain = std::fs::read_to_string(data.join("tls/server.crt")).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + intermediate"
    );
    let resp = s
        .client
        .get(format!(
            "https://127.0.0.1:{}/healthz",
            s.running.as_ref().unwrap().https_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "IP SAN accepted");
    // Unknown endpoints are problem documents too.
    let (st, v) = s.get("/nothing-here").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(v["detail"].as_str().unwrap().contains("nothing-here"));
}
both_backends!(health_and_bootstrap_files, health_and_files);

async fn bad_requests(s: &TestServer) {
    let url = format!("{}/admin/v1/cas", s.base);
    let send = |body: &'static str, ct: &'static str| {
        let req = s
            .client
            .post(url.clone())
            .bearer_auth(&s.token)
            .header("content-type", ct)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            (st, ct, v)
        }
    };
    let (st, ct, v) = send("{not json", "application/json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(ct, "application/problem+json");
    assert!(
        v["detail"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );
    let (st, _, v) = send("kind=root", "application/x-www-form-urlencoded").await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    let (st, _, _) = send("", "application/json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, v) = send("[]", "application/json").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // One JSON document, nothing after it but whitespace.
    for body in [
        r#"{"kind": "root", "common_name": "trailing"} garbage"#,
        r#"{"kind": "root", "common_name": "two"} {"kind": "root", "common_name": "docs"}"#,
        r#"{"kind": "root", "common_name": "brace"}}"#,
    ] {
        let (st, ct, v) = send(body, "application/json").await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(ct, "application/problem+json");
        assert!(v["detail"].as_str().unwrap().contains("trailing"), "{v}");
    }
    let (st, _, v) = send(
        "{\"kind\": \"root\", \"common_name\": \"ws\"} \n\t",
        "application/json",
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "trailing whitespace is fine: {v}");
    let (st, _, v) = send(
        r#"{"kind": "root", "common_name": "json+suffix"}"#,
        "application/vnd.x+json; charset=utf-8",
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // A body without a Content-Type is refused like one with the wrong type, on every
    // route that takes one (a PUT among them).
    let (root, _) = s.buy_root("Content types", "ec-p256", 1).await;
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/cas".to_string(),
            r#"{"kind": "root", "common_name": "no type"}"#,
        ),
        (
            reqwest::Method::PUT,
            format!("/cas/{root}/crl"),
            r#"{"enabled": false}"#,
        ),
        (
            reqwest::Method::POST,
            format!("/cas/{root}/revoke"),
            r#"{}"#,
        ),
        (
            reqwest::Method::POST,
            "/tokens".to_string(),
            r#"{"role": "auditor", "name": "x"}"#,
        ),
    ] {
        let r = s
            .client
            .request(method.clone(), format!("{}/admin/v1{path}", s.base))
            .bearer_auth(&s.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let st = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(
            st,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{method} {path}: {v}"
        );
        assert_eq!(v["status"], 415);
    }
    let r = s
        .client
        .put(format!("{}/admin/v1/cas/{root}/crl", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(r#"{"enabled": false} garbage"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
both_backends!(bad_input_gets_precise_4xx, bad_requests);

/// The database never holds a plaintext private key: not the PEM, not the key bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_encrypted_at_rest() {
    let s = TestServer::start(Backend::Sqlite).await;
    let (root, inter) = s.buy_root("Secret keeper", "ec-p256", 1).await;
    s.enable(&root).await;
    s.enable(&inter).await;
    let app = s.app();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for id in [
        &root,
        &inter,
        &app.defaults.root_id,
        &app.defaults.intermediate_id,
    ] {
        let mut conn = app.store.reader().acquire().await.unwrap();
        let row = store::cas::get_any_tenant(&mut conn, id)
            .await
            .unwrap()
            .unwrap();
        let sealed = row.key_sealed.expect("sealed key");
        let pem = app.master.open(id, &sealed).unwrap();
        let pem = String::from_utf8(pem.to_vec()).unwrap();
        let der = ::pem::parse(&pem).unwrap().into_contents();
        // PKCS#8 EC key: ... 02 01 01 04 20 <32-byte private scalar> ...
        let pos = der
            .windows(5)
            .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
            .expect("EC private key");
        secrets.push(der[pos + 5..pos + 37].to_vec());
        secrets.push(der.clone());
    }
    let data = s.data_dir();
    let _keep = s.stop_keep_dir().await;
    let mut bytes = Vec::new();
    for f in ["vellum.db", "vellum.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 10_000);
    assert!(
        !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
        "no PEM key in the database"
    );
    for secret in secrets {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "raw key bytes found"
        );
    }
}

/// A restart reuses the master key, token, CAs, root.pem and TLS certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_reuses_everything() {
    let s = TestServer::start(Backend::Sqlite).await;
    let data = s.data_dir();
    let defaults = s.app().defaults.clone();
    let token = s.token.clone();
    let root_pem = std::fs::read_to_string(data.join("root.pem")).unwrap();
    let tls = std::fs::read_to_string(data.join("tls/server.crt")).unwrap();
    let (created, _) = s.buy_root("Survivor", "ec-p256", 1).await;
    let database_url = s.database_url.clone();
    let keep = s.stop_keep_dir().await;
    // Start again on the same data dir.
    let running = start_with_env(&env_for(&data, &database_url, &[]))
        .await
        .unwrap();
    let s2 = TestServer::attach(running, keep, Backend::Sqlite, database_url);
    assert_eq!(s2.app().defaults.root_id, defaults.root_id);
    assert_eq!(s2.app().defaults.intermediate_id, defaults.intermediate_id);
    assert_eq!(s2.token, token);
    assert_eq!(
        std::fs::read_to_string(data.join("root.pem")).unwrap(),
        root_pem
    );
    assert_eq!(
        std::fs::read_to_string(data.join("tls/server.crt")).unwrap(),
        tls
    );
    let (st, v) = s2.get(&format!("/cas/{created}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, cas) = s2.get("/cas").await;
    assert_eq!(
        cas["items"].as_array().unwrap().len(),
        4,
        "no second bootstrap"
    );
    s2.stop().await;
}

/// In-flight requests finish during a graceful shutdown; new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = TestServer::start(Backend::Sqlite).await;
    let (root, _) = s.buy_root("Slow", "rsa-4096", 1).await;
    let client = s.client.clone();
    let url = format!("{}/admin/v1/cas/{root}/enable", s.base);
    let token = s.token.clone();
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"mode": "generate"}))
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let running = s.running.take().unwrap();
    let addr = running.https_addr;
    running.shutdown().await;
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request got an answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

/// Two replicas on one PostgreSQL database share one bootstrap; a wrong master key is
/// refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_postgres_database() {
    if crate::common::postgres_missing() {
        return;
    }
    let url = crate::common::fresh_pg_database().await;
    let key = "11".repeat(32);
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let env1 = env_for(d1.path(), &url, &[("VELLUM_MASTER_KEY", &key)]);
    let env2 = env_for(d2.path(), &url, &[("VELLUM_MASTER_KEY", &key)]);
    let (a, b) = tokio::join!(start_with_env(&env1), start_with_env(&env2));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.app.defaults.root_id, b.app.defaults.root_id);
    assert_eq!(
        a.app.defaults.intermediate_id,
        b.app.defaults.intermediate_id
    );
    let sa = TestServer::attach(a, d1, Backend::Postgres, url.clone());
    let sb = TestServer::attach(b, d2, Backend::Postgres, url.clone());
    // A CA bought on one replica is enabled on the other.
    let (root, _) = sa.buy_root("Shared", "ec-p256", 1).await;
    let v = sb.enable(&root).await;
    assert_eq!(v["status"], "enabled");
    let wrong = env_for(d3.path(), &url, &[("VELLUM_MASTER_KEY", &"22".repeat(32))]);
    let err = start_with_env(&wrong)
        .await
        .err()
        .expect("wrong master key refused")
        .to_string();
    assert!(err.contains("master key"), "{err}");
    sa.stop().await;
    sb.stop().await;
}

/// The CLI builds a hierarchy against a live server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_builds_a_hierarchy() {
    let s = TestServer::start(Backend::Sqlite).await;
    let data = s.data_dir();
    let base = s.base.clone();
    let run = move |args: Vec<String>| {
        let data = data.clone();
        let base = base.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_vellum"))
                    .arg("admin")
                    .arg("--url")
                    .arg(&base)
                    .arg("--data-dir")
                    .arg(&data)
                    .args(&args)
                    .output()
                    .unwrap();
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).to_string(),
                    String::from_utf8_lossy(&out.stderr).to_string(),
                )
            })
            .await
            .unwrap()
        }
    };
    let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let (ok, out, err) = run(args(
        "--json ca create-root --cn CliRoot --key-algorithm ec-p384 --quota 20",
    ))
    .await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let root = v["id"].as_str().unwrap().to_string();
    let inter = v["intermediate_id"].as_str().unwrap().to_string();
    let (ok, out, err) = run(args(&format!("ca enable {inter}"))).await;
    assert!(!ok, "intermediate before root fails: {out}");
    assert!(
        err.contains("409") && err.contains("enable the root"),
        "{err}"
    );
    for id in [&root, &inter] {
        let (ok, out, err) = run(args(&format!("ca enable {id}"))).await;
        assert!(ok, "{err}");
        assert!(out.contains("enabled"), "{out}");
    }
    let (ok, _, err) = run(args(&format!(
        "ca assign-quota {root} --intermediate {inter} --count 5"
    )))
    .await;
    assert!(ok, "{err}");
    // Certificates: apply, list, export to a file, renew, revoke.
    let (ok, out, err) = run(args(&format!(
        "--json cert apply --ca {inter} --cn app.example --san dns:app.example --san ip:10.0.0.7 --days 30 --tag env=prod"
    )))
    .await;
    assert!(ok, "{err}");
    let cert: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cert_id = cert["id"].as_str().unwrap().to_string();
    assert_eq!(cert["sans"][1]["value"], "10.0.0.7");
    let (ok, out, _) = run(args("cert list --tag env=prod")).await;
    assert!(
        ok && out.contains(&cert_id) && out.contains("app.example"),
        "{out}"
    );
    let p12 = s.dir.path().join("app.p12");
    let (ok, out, err) = run(args(&format!(
        "cert export {cert_id} --format pkcs12 --password s3cret --out {}",
        p12.display()
    )))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    let (ok, info) = crate::common::openssl(&[
        "pkcs12",
        "-info",
        "-in",
        p12.to_str().unwrap(),
        "-passin",
        "pass:s3cret",
        "-noenc",
    ]);
    assert!(ok && info.contains("app.example"), "{info}");
    let (ok, _, err) = run(args(&format!("cert renew {cert_id}"))).await;
    assert!(ok, "30 days is expiring, so no --force needed: {err}");
    let (ok, _, err) = run(args(&format!(
        "cert revoke {cert_id} --reason keyCompromise"
    )))
    .await;
    assert!(ok, "{err}");
    let (ok, out, _) = run(args(&format!("ca crl {inter}"))).await;
    assert!(ok && out.contains("crl_number"), "{out}");
    let (ok, _, err) = run(args(&format!("cert apply --ca {inter} --san nonsense"))).await;
    assert!(!ok && err.contains("TYPE:VALUE"), "{err}");

    let (ok, out, _) = run(args("ca list --kind intermediate")).await;
    assert!(ok);
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert!(
        out.contains(&inter) && out.contains("CliRoot Issuing CA"),
        "{out}"
    );
    let (ok, pem, _) = run(args(&format!("ca show {inter} --pem"))).await;
    assert!(ok && pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let (ok, out, _) = run(args(&format!("audit --target {inter}"))).await;
    assert!(
        ok && out.contains("ca.enable.generate")
            && out.contains("failure")
            && out.contains("success"),
        "{out}"
    );
    let (ok, out, err) = run(args("tenant create --name cli-t --entity CliCorp")).await;
    assert!(ok, "{err}");
    assert!(out.contains("cli-t"));
    let (ok, _, err) = run(args(&format!("ca revoke {inter} --reason superseded"))).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(args(&format!("ca revoke {inter}"))).await;
    assert!(
        !ok && err.contains("already") || err.contains("revoked"),
        "{err}"
    );
    s.stop().await;
}

/// Bodies over the limit get 413 (a small limit so that the whole body fits in the socket
/// buffers and the client reads the answer instead of a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_get_413() {
    let s = TestServer::start_with(Backend::Sqlite, &[("VELLUM_LIMITS_BODY_BYTES", "16384")]).await;
    let big = format!(
        "{{\"kind\": \"root\", \"common_name\": \"{}\"}}",
        "x".repeat(60_000)
    );
    let r = s
        .client
        .post(format!("{}/admin/v1/cas", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    if r.version() == reqwest::Version::HTTP_11 {
        // The unread rest of the body makes the connection unusable: the server says so.
        assert_eq!(r.headers()["connection"], "close");
    }
    let small = s
        .post(
            "/cas",
            serde_json::json!({"kind": "root", "common_name": "fits"}),
        )
        .await;
    assert_eq!(small.0, StatusCode::CREATED);
    s.stop().await;
}

/// Counts the CAs of the default tenant by name (through the admin API).
async fn bootstrap_cas(s: &TestServer) -> (usize, usize) {
    let (st, v) = s.get("/cas").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    let count = |cn: &str| items.iter().filter(|c| c["common_name"] == cn).count();
    (count("Vellum Root CA"), count("Vellum Issuing CA"))
}

/// A first start killed (SIGKILL) at any point, then started again, ends with exactly one
/// bootstrap root and one bootstrap intermediate, enabled, with quota, and a working
/// admin token. The kill points spread over the whole first start (a few ms to well
/// after it finished), and one data dir is killed several times in a row.
async fn killed_first_start(backend: Backend) {
    let bin = env!("CARGO_BIN_EXE_vellum");
    let delays_ms: &[&[u64]] = &[
        &[5],
        &[15],
        &[25],
        &[35],
        &[45],
        &[60],
        &[80],
        &[120],
        &[200],
        &[10, 30, 50],
        &[40, 40, 40, 40],
        &[70, 20, 90],
    ];
    for kills in delays_ms {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}/vellum.db", data.display()),
            Backend::Postgres => crate::common::fresh_pg_database().await,
        };
        let env = env_for(&data, &url, &[]);
        for ms in kills.iter() {
            let mut child = std::process::Command::new(bin)
                .arg("serve")
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("vellum starts");
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
        let running = start_with_env(&env).await.expect("restart after kill -9");
        let s = TestServer::attach(running, dir, backend, url);
        assert_eq!(
            bootstrap_cas(&s).await,
            (1, 1),
            "killed after {kills:?} ms: exactly one bootstrap root and intermediate"
        );
        let (_, inter) = s
            .get(&format!("/cas/{}", s.app().defaults.intermediate_id))
            .await;
        assert_eq!(inter["status"], "enabled", "{inter}");
        assert_eq!(inter["quota_assigned"], 100, "{inter}");
        assert!(
            !s.data_dir().join("admin-token.new").exists(),
            "the pending token file was settled"
        );
        s.stop().await;
    }
}

each_backend!(first_start_survives_kill_9, killed_first_start);
