//! Issue 17: `vellum backup` of a running server, `vellum restore` into a fresh data dir
//! (and database), CRL numbers that never go back, refusals of damaged files and wrong
//! keys; `vellum rotate-master-key`.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{env_for, fresh_pg_database, start_with_env, Backend, TestServer};
use crate::crl::crl_number;

/// Runs the `vellum` binary with only `env` (and PATH, for pg_dump); (success, output).
fn vellum(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("vellum runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn issue(s: &TestServer, inter: &str, cn: &str) -> String {
    let (st, c) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": cn, "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    c["id"].as_str().unwrap().to_string()
}

async fn revoke(s: &TestServer, id: &str) {
    let (st, v) = s
        .post(
            &format!("/certificates/{id}/revoke"),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// A new, empty place to restore into: a data dir, and the database URL to give
/// (`None`: the data dir's SQLite file).
async fn fresh_target(backend: Backend) -> (tempfile::TempDir, PathBuf, Option<String>) {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_pg_database().await),
    };
    (t, data, url)
}

fn restore_args<'a>(file: &'a str, data: &'a str, url: Option<&'a str>) -> Vec<&'a str> {
    let mut a = vec!["restore", file, "--data-dir", data];
    if let Some(u) = url {
        a.extend(["--database-url", u]);
    }
    a
}

fn copy_master_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("master.key"), to.join("master.key")).unwrap();
}

async fn backup_and_restore(s: &TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let work = tempfile::tempdir().unwrap();
    let data = s.data_dir();
    let data_s = data.display().to_string();
    let server_env = [
        ("VELLUM_DATA_DIR", data_s.as_str()),
        ("VELLUM_DATABASE_URL", s.database_url.as_str()),
    ];

    // Before the backup: three certificates, one revoked.
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(issue(s, &inter, &format!("before-{i}.example")).await);
    }
    revoke(s, &before[0]).await;
    let n1 = crl_number(s, &inter).await;

    // Backups of the running server: under the master key, and under a passphrase.
    let b1 = work.path().join("b1.vbk");
    let b1s = b1.display().to_string();
    let (ok, out) = vellum(&["backup", "--out", &b1s], &server_env);
    assert!(ok, "{out}");
    assert!(
        out.contains("backup written") && out.contains("sealed with: master key"),
        "{out}"
    );
    let raw = std::fs::read(&b1).unwrap();
    assert!(raw.starts_with(b"VELLUM-BACKUP 1\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&b1).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup is readable by its owner only");
    }
    let (ok, out) = vellum(&["backup", "--out", &b1s], &server_env);
    assert!(!ok && out.contains("exists"), "never overwrites: {out}");
    let b2 = work.path().join("b2.vbk");
    let b2s = b2.display().to_string();
    let mut pass_env = server_env.to_vec();
    pass_env.push(("VELLUM_BACKUP_PASSPHRASE", "correct horse battery staple"));
    let (ok, out) = vellum(&["backup", "--out", &b2s], &pass_env);
    assert!(ok && out.contains("sealed with: the passphrase"), "{out}");
    // No snapshot or partial file is left beside the backups.
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // After the backup: more certificates, another revocation, a higher CRL number.
    let mut after = Vec::new();
    for i in 0..2 {
        after.push(issue(s, &inter, &format!("after-{i}.example")).await);
    }
    revoke(s, &after[0]).await;
    let n2 = crl_number(s, &inter).await;
    assert!(n2 > n1);

    // Refusals: a damaged file, a wrong master key, a missing or wrong passphrase.
    let bad = work.path().join("bad.vbk");
    let mut damaged = raw.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&bad, &damaged).unwrap();
    let (_t, d, url) = fresh_target(s.backend).await;
    copy_master_key(&data, &d);
    let (ok, out) = vellum(
        &restore_args(
            &bad.display().to_string(),
            &d.display().to_string(),
            url.as_deref(),
        ),
        &[],
    );
    assert!(!ok && out.contains("checksum mismatch"), "{out}");
    let (_t, d, url) = fresh_target(s.backend).await;
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("master.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    let (ok, out) = vellum(
        &restore_args(&b1s, &d.display().to_string(), url.as_deref()),
        &[],
    );
    assert!(!ok && out.contains("wrong master key"), "{out}");
    assert!(
        !d.join("vellum.db").exists(),
        "nothing restored with a wrong key"
    );
    let (_t, d, url) = fresh_target(s.backend).await;
    let (ok, out) = vellum(
        &restore_args(&b2s, &d.display().to_string(), url.as_deref()),
        &[],
    );
    assert!(!ok && out.contains("sealed with a passphrase"), "{out}");
    let (ok, out) = vellum(
        &restore_args(&b2s, &d.display().to_string(), url.as_deref()),
        &[("VELLUM_BACKUP_PASSPHRASE", "wrong horse battery staple")],
    );
    assert!(!ok && out.contains("wrong passphrase"), "{out}");

    // The passphrase alone rebuilds the installation: the master key comes along.
    let (ok, out) = vellum(
        &restore_args(&b2s, &d.display().to_string(), url.as_deref()),
        &[("VELLUM_BACKUP_PASSPHRASE", "correct horse battery staple")],
    );
    assert!(ok && out.contains("restored"), "{out}");
    assert_eq!(
        std::fs::read_to_string(d.join("master.key"))
            .unwrap()
            .trim(),
        std::fs::read_to_string(data.join("master.key"))
            .unwrap()
            .trim(),
        "the passphrase backup brought the master key"
    );

    // The master-key backup into a fresh data dir holding the master key.
    let (t, d, url) = fresh_target(s.backend).await;
    copy_master_key(&data, &d);
    let ds = d.display().to_string();
    let (ok, out) = vellum(&restore_args(&b1s, &ds, url.as_deref()), &[]);
    assert!(ok && out.contains("restored"), "{out}");
    let (ok, out) = vellum(&restore_args(&b1s, &ds, url.as_deref()), &[]);
    assert!(
        !ok,
        "a second restore into the same place is refused: {out}"
    );
    assert!(
        out.contains("exists") || out.contains("not empty") || out.contains("tables"),
        "{out}"
    );

    // A server on the restored data: every certificate of the backup, none after it.
    let url = url.unwrap_or_else(|| format!("sqlite://{}/vellum.db", d.display()));
    let running = start_with_env(&env_for(&d, &url, &[])).await.unwrap();
    let r = TestServer::attach(running, t, s.backend, url);
    for id in &before {
        let (st, c) = r.get(&format!("/certificates/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{id} is in the backup: {c}");
    }
    let (_, c) = r.get(&format!("/certificates/{}", before[0])).await;
    assert_eq!(c["status"], "revoked", "{c}");
    for id in &after {
        let (st, _) = r.get(&format!("/certificates/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{id} came after the backup");
    }
    // No CRL number served before comes again; issuing and revoking go on.
    let n3 = crl_number(&r, &inter).await;
    assert!(
        n3 > n2,
        "the restored CRL number {n3} is above {n2}, the last one served"
    );
    let fresh = issue(&r, &inter, "after-restore.example").await;
    revoke(&r, &fresh).await;
    assert!(crl_number(&r, &inter).await > n3);
    r.stop().await;
}
both_backends!(
    backup_while_serving_then_restore_keeps_every_certificate_and_crl_numbers_go_forward,
    backup_and_restore
);

async fn rotation(s: TestServer) {
    let inter = s.app().defaults.intermediate_id.clone();
    let id = issue(&s, &inter, "rotate.example").await;
    // Another kind of sealed secret: a webhook channel's signing secret.
    let (st, v) = s
        .post(
            "/notifications/channels",
            json!({"kind": "webhook", "name": "hook", "url": "https://127.0.0.1:9/hook",
                   "secret": "a webhook secret of some length", "events": ["*"]}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let data = s.data_dir();
    let data_s = data.display().to_string();
    let url = s.database_url.clone();
    let env = [
        ("VELLUM_DATA_DIR", data_s.as_str()),
        ("VELLUM_DATABASE_URL", url.as_str()),
    ];
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let new_file = work.path().join("new.key");
    let new_key = "5a".repeat(32);
    std::fs::write(&new_file, format!("{new_key}\n")).unwrap();
    let nf = new_file.display().to_string();

    // Refused while a server runs (once its jobs hold their lease, taken at start).
    for _ in 0..100 {
        let mut conn = s.app().store.reader().acquire().await.unwrap();
        let now = vellum_core::time::now();
        if !store::backup::live_leases(&mut conn, now)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        drop(conn);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, out) = vellum(&["rotate-master-key", "--new-key-file", &nf], &env);
    assert!(
        !ok && out.contains("a server is using the database"),
        "{out}"
    );
    // A file that is not a key.
    let junk = work.path().join("junk.key");
    std::fs::write(&junk, "not a key").unwrap();
    let (ok, out) = vellum(
        &[
            "rotate-master-key",
            "--new-key-file",
            &junk.display().to_string(),
            "--force",
        ],
        &env,
    );
    assert!(!ok && out.contains("openssl rand -hex 32"), "{out}");
    assert_eq!(
        std::fs::read_to_string(data.join("master.key")).unwrap(),
        old_key
    );

    // Rotated with the server stopped (its lease has not lapsed yet: --force).
    let keep = s.stop_keep_dir().await;
    let (ok, out) = vellum(
        &["rotate-master-key", "--new-key-file", &nf, "--force"],
        &env,
    );
    assert!(ok, "{out}");
    let count = |col: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{col}: ")))
            .unwrap_or_else(|| panic!("no {col} in {out}"))
            .parse()
            .unwrap()
    };
    assert!(count("cas.key_sealed") >= 2, "{out}");
    assert!(count("certificates.key_sealed") >= 1, "{out}");
    assert!(
        out.contains("notification_channels.secret_sealed: 1"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("master.key"))
            .unwrap()
            .trim(),
        new_key
    );
    // Run again (as after a crash between the commit and the key file): nothing to redo.
    let (ok, out) = vellum(
        &["rotate-master-key", "--new-key-file", &nf, "--force"],
        &env,
    );
    assert!(ok && out.contains("already sealed"), "{out}");

    // The old key no longer starts a server, and says why.
    let err = start_with_env(&env_for(
        &data,
        &url,
        &[("VELLUM_MASTER_KEY", old_key.trim())],
    ))
    .await
    .map(|_| ())
    .expect_err("the old key is refused");
    assert!(err.to_string().contains("sealed under master key"), "{err}");

    // The new key opens everything: the CA signs, the stored leaf key exports.
    let running = start_with_env(&env_for(&data, &url, &[])).await.unwrap();
    let r = TestServer::attach(running, keep, s_backend(&url), url);
    issue(&r, &inter, "after-rotation.example").await;
    let resp = r
        .client
        .post(format!("{}/admin/v1/certificates/{id}/export", r.base))
        .bearer_auth(&r.token)
        .json(&json!({"format": "pem"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("BEGIN PRIVATE KEY"));
    r.stop().await;
}

fn s_backend(url: &str) -> Backend {
    if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_master_key_reseals_every_secret_sqlite() {
    rotation(TestServer::start(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_master_key_reseals_every_secret_postgres() {
    if crate::common::postgres_missing() {
        return;
    }
    rotation(TestServer::start(Backend::Postgres).await).await;
}

/// Every `*_sealed` column of the schema is one a rotation re-seals.
async fn sealed_columns(s: &TestServer) {
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let schema = store::backup::sealed_columns_in_schema(&mut conn)
        .await
        .unwrap();
    let mut listed: Vec<String> = store::backup::SEALED
        .iter()
        .map(|c| format!("{}.{}", c.table, c.column))
        .collect();
    listed.sort();
    assert!(!schema.is_empty());
    assert_eq!(schema, listed, "a sealed column the rotation does not know");
}
both_backends!(every_sealed_column_is_rotated, sealed_columns);
