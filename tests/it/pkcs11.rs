//! CA keys in an HSM (issue 17), with SoftHSM2 as the token: a root and an intermediate
//! enabled with `key_storage: "pkcs11"` (RSA and EC P-256, both backends), certificates
//! issued through the admin API, ACME and EST and verified by `openssl verify`, the CRL
//! signed in the token and checked by `openssl verify -crl_check`, OCSP responses (CA-
//! and delegated-signed) verified by `openssl ocsp`; the private key never leaves the token
//! (no sealed key on the row, nothing new in the data dir, CKA_SENSITIVE and not
//! CKA_EXTRACTABLE, its secret attributes unreadable); restarts find the key again, and
//! a server without the token (or with a wrong PIN) refuses to start with a clear message.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process (at the first `C_Initialize`), and this
//! is one test binary: the tests share one token directory in a temporary dir and each
//! initialises a token of its own in it through PKCS#11 (`C_InitToken` on the free slot).
//! Skipped, with the reason printed, only when SoftHSM2 is not installed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::acme::{certificate_for_localhost, new_account, Responder};
use crate::common::{env_for, openssl, start_with_env, Backend, TestServer};

const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];
const PIN: &str = "98765432";
const SO_PIN: &str = "12345678";

struct SoftHsm {
    module: PathBuf,
    ctx: Pkcs11,
    _dir: tempfile::TempDir,
}

/// The process's SoftHSM (module loaded, token directory set); `None` when not installed.
fn softhsm() -> Option<&'static SoftHsm> {
    static HSM: OnceLock<Option<SoftHsm>> = OnceLock::new();
    HSM.get_or_init(|| {
        let module = MODULES.iter().map(PathBuf::from).find(|p| p.exists())?;
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        // Before the library's first C_Initialize in this process (nothing else loads it).
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let ctx = Pkcs11::new(&module).expect("load libsofthsm2");
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => panic!("C_Initialize: {e}"),
        }
        Some(SoftHsm {
            module,
            ctx,
            _dir: dir,
        })
    })
    .as_ref()
}

/// A fresh token labelled `label` (user PIN [`PIN`]); `None` (and the reason printed)
/// without SoftHSM2.
fn token(label: &str) -> Option<(&'static SoftHsm, String)> {
    let Some(hsm) = softhsm() else {
        eprintln!(
            "skipped: SoftHSM2 is not installed (apt-get install softhsm2; looked for {})",
            MODULES.join(", ")
        );
        return None;
    };
    static INIT: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INIT.lock().unwrap_or_else(|p| p.into_inner());
    let label = format!(
        "{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let free = hsm
        .ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| !hsm.ctx.get_token_info(*s).unwrap().token_initialized())
        .expect("SoftHSM offers a free slot");
    let so = AuthPin::from(SO_PIN);
    hsm.ctx.init_token(free, &so, &label).expect("C_InitToken");
    let session = hsm.ctx.open_rw_session(free).unwrap();
    session.login(UserType::So, Some(&so)).unwrap();
    session.init_pin(&AuthPin::from(PIN)).unwrap();
    session.logout().unwrap();
    drop(session);
    Some((hsm, label))
}

fn pkcs11_env<'a>(hsm: &'a SoftHsm, label: &'a str) -> Vec<(&'static str, String)> {
    vec![
        ("VELLUM_PKCS11_MODULE", hsm.module.display().to_string()),
        ("VELLUM_PKCS11_TOKEN_LABEL", label.to_string()),
        ("VELLUM_PKCS11_PIN", PIN.to_string()),
    ]
}

async fn start(backend: Backend, extra: &[(&'static str, String)]) -> TestServer {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(backend, &extra).await
}

/// Enables `id` with its key in the token; asserts the CA's JSON says so.
async fn enable_in_token(s: &TestServer, id: &str) -> Value {
    let (st, v) = s
        .post(
            &format!("/cas/{id}/enable"),
            json!({"mode": "generate", "key_storage": "pkcs11"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key_storage"], "pkcs11", "{v}");
    assert_eq!(v["key_source"], "generated", "{v}");
    assert_eq!(v["pkcs11_key"]["label"], format!("vellum-ca-{id}"), "{v}");
    assert_eq!(
        v["pkcs11_key"]["id"].as_str().unwrap().len(),
        32,
        "a 16-byte CKA_ID: {v}"
    );
    v
}

struct Files(tempfile::TempDir);

impl Files {
    fn put(&self, name: &str, data: &[u8]) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, data).unwrap();
        p.display().to_string()
    }
    fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
}

fn pem_of(der: &[u8]) -> String {
    ca::cert_pem(der)
}

/// `openssl verify` of `leaf` (PEM) under the hierarchy, optionally with CRLs.
fn verify(f: &Files, leaf_pem: &str, crl: bool) -> (bool, String) {
    let leaf = f.put("leaf.pem", leaf_pem.as_bytes());
    let (root, inter) = (f.path("root.pem"), f.path("inter.pem"));
    let mut args = vec!["verify", "-CAfile", &root, "-untrusted", &inter];
    let crls = f.path("crls.pem");
    if crl {
        args.extend(["-crl_check_all", "-CRLfile", &crls]);
    }
    args.push(&leaf);
    openssl(&args)
}

/// Files whose bytes contain a PEM private key, below `dir`.
fn private_key_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

async fn fetch(s: &TestServer, url: &str) -> Vec<u8> {
    let resp = s.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp.bytes().await.unwrap().to_vec()
}

async fn hierarchy_in_the_token(backend: Backend, alg: &str) {
    let Some((hsm, label)) = token(&format!("{alg}-{backend:?}")) else {
        return;
    };
    let (responder, va_port) = Responder::start().await;
    let mut env = pkcs11_env(hsm, &label);
    env.push(("VELLUM_VA_HTTP_PORT", va_port.to_string()));
    let s = start(backend, &env).await;
    let keys_before = private_key_files(&s.data_dir());

    let (root, inter) = s.buy_root(&format!("HSM Root {alg}"), alg, 50).await;
    let r = enable_in_token(&s, &root).await;
    let i = enable_in_token(&s, &inter).await;
    assert_eq!(r["key_algorithm"], alg);
    assert_eq!(i["key_algorithm"], alg);
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 20}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let f = Files(tempfile::tempdir().unwrap());
    f.put(
        "root.pem",
        r["certificate_pem"].as_str().unwrap().as_bytes(),
    );
    f.put(
        "inter.pem",
        i["certificate_pem"].as_str().unwrap().as_bytes(),
    );
    // The root's self-signature and the intermediate's were made in the token.
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &f.path("root.pem"),
        &f.path("root.pem"),
    ]);
    assert!(ok, "self-signed root: {out}");
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &f.path("root.pem"),
        &f.path("inter.pem"),
    ]);
    assert!(ok, "intermediate signed by the root's token key: {out}");
    let inter_der = ::pem::parse(i["certificate_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    let (_, x) = x509_parser::parse_x509_certificate(&inter_der).unwrap();
    let want_sig = if alg.starts_with("rsa") {
        "1.2.840.113549.1.1.11"
    } else {
        "1.2.840.10045.4.3.2"
    };
    assert_eq!(x.signature_algorithm.algorithm.to_id_string(), want_sig);

    // Admin door.
    let (st, admin) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "hsm.example",
                   "sans": [{"type": "dns", "value": "hsm.example"}], "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{admin}");
    let admin_pem = admin["certificate_pem"].as_str().unwrap().to_string();
    let (ok, out) = verify(&f, &admin_pem, false);
    assert!(ok, "admin leaf: {out}");

    // ACME door.
    let account = new_account(&s, &crate::acme::dir_url(&s, &inter)).await;
    let (_, acme_der) = certificate_for_localhost(&account, &responder, None).await;
    let (ok, out) = verify(&f, &pem_of(&acme_der), false);
    assert!(ok, "ACME leaf: {out}");

    // EST door.
    crate::est::add_client(&s, &inter, "dev", None).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let a = crate::est::enroll(
        &s,
        &crate::est::est_client(&s, None),
        Some(&inter),
        "simpleenroll",
        Some(("dev", crate::est::PASSWORD)),
        &crate::est::cn_csr(&key, "device.hsm.example"),
    )
    .await;
    let est_der = a.certs().remove(0);
    let (ok, out) = verify(&f, &pem_of(&est_der), false);
    assert!(ok, "EST leaf: {out}");

    // CRLs of both CAs signed in the token: the revoked admin leaf is refused under
    // -crl_check_all, the ACME and EST leaves pass.
    let (st, v) = s
        .post(
            &format!("/certificates/{}/revoke", admin["id"].as_str().unwrap()),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut crls = String::new();
    for ca in [&root, &inter] {
        let der = fetch(&s, &format!("{}/crl/{ca}.crl", s.http_base)).await;
        let pem = ::pem::encode(&::pem::Pem::new("X509 CRL", der));
        let file = f.put(&format!("{ca}.crl.pem"), pem.as_bytes());
        let issuer = if ca == &root { "root.pem" } else { "inter.pem" };
        let (ok, out) = openssl(&["crl", "-in", &file, "-noout", "-CAfile", &f.path(issuer)]);
        assert!(ok && out.contains("verify OK"), "CRL of {ca}: {out}");
        crls.push_str(&pem);
    }
    f.put("crls.pem", crls.as_bytes());
    let (ok, out) = verify(&f, &admin_pem, true);
    assert!(
        !ok && out.contains("revoked"),
        "revoked leaf refused: {out}"
    );
    for (door, der) in [("ACME", &acme_der), ("EST", &est_der)] {
        let (ok, out) = verify(&f, &pem_of(der), true);
        assert!(ok, "{door} leaf with CRLs: {out}");
    }

    // OCSP: responses signed by the CA's token key, then by a delegated signer whose
    // certificate the token key signed.
    for delegated in [false, true] {
        let (st, v) = s
            .call(
                Method::PUT,
                &format!("/cas/{inter}/ocsp"),
                Some(json!({"enabled": true, "delegated_signer": delegated})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let url = v["url"].as_str().unwrap().to_string();
        let (st, c) = s
            .post(
                &format!("/cas/{inter}/certificates"),
                json!({"type": "server", "common_name": "ocsp.hsm.example", "validity_days": 30}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{c}");
        let leaf = f.put(
            "ocsp-leaf.pem",
            c["certificate_pem"].as_str().unwrap().as_bytes(),
        );
        let chain = f.put(
            "chain.pem",
            [
                std::fs::read_to_string(f.path("inter.pem")).unwrap(),
                std::fs::read_to_string(f.path("root.pem")).unwrap(),
            ]
            .concat()
            .as_bytes(),
        );
        let (ok, out) = openssl(&[
            "ocsp",
            "-issuer",
            &f.path("inter.pem"),
            "-cert",
            &leaf,
            "-url",
            &url,
            "-CAfile",
            &chain,
            "-resp_text",
        ]);
        assert!(ok, "OCSP (delegated {delegated}): {out}");
        assert!(out.contains("Response verify OK"), "{out}");
        assert!(out.contains(": good"), "{out}");
        assert_eq!(
            out.contains("OCSP Responder"),
            delegated,
            "the delegated signer's certificate is sent along only when delegated: {out}"
        );
    }

    // The private keys never left the token.
    let token = s.app().hsm.clone().expect("the server opened the token");
    for id in [&root, &inter] {
        let row = {
            let mut conn = s.app().store.reader().acquire().await.unwrap();
            store::cas::get_any_tenant(&mut conn, id)
                .await
                .unwrap()
                .unwrap()
        };
        assert_eq!(row.key_storage, vellum_core::status::KeyStorage::Pkcs11);
        assert!(row.key_sealed.is_none(), "no sealed key for CA {id}");
        let key_id = row.pkcs11_key_id.clone().unwrap();
        let p = token.protection(&key_id).unwrap();
        assert!(p.token && p.private && p.sensitive && p.sign, "{p:?}");
        assert!(!p.extractable, "CKA_EXTRACTABLE must be false: {p:?}");
        assert_eq!(p.rsa, alg.starts_with("rsa"));
        assert!(
            !p.secret_readable && !p.secret_values_returned,
            "CKA_PRIVATE_EXPONENT / CKA_VALUE must not be readable: {p:?}"
        );
    }
    assert_eq!(
        private_key_files(&s.data_dir()),
        keys_before,
        "no private key written to the data dir"
    );
    s.stop().await;
}

each_backend!(
    rsa_hierarchy_in_the_token,
    hierarchy_in_the_token,
    "rsa-2048"
);
each_backend!(ec_hierarchy_in_the_token, hierarchy_in_the_token, "ec-p256");

/// Refusals in words, restarts, and startup errors.
async fn refusals_and_restarts(backend: Backend) {
    let Some((hsm, label)) = token(&format!("refusals-{backend:?}")) else {
        return;
    };
    // A wrong PIN stops the start, saying so (on a token nobody in this process is
    // logged in to: PKCS#11 answers "already logged in" before it checks a PIN).
    let (_, fresh) = token(&format!("pin-{backend:?}")).unwrap();
    let mut wrong = pkcs11_env(hsm, &fresh);
    wrong.retain(|(k, _)| *k != "VELLUM_PKCS11_PIN");
    wrong.push(("VELLUM_PKCS11_PIN", "11112222".to_string()));
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = match backend {
        Backend::Sqlite => format!("sqlite://{}/vellum.db", dir.path().join("data").display()),
        Backend::Postgres => crate::common::fresh_pg_database().await,
    };
    let err = start_with_env(&env_for(&dir.path().join("data"), &db, &wrong))
        .await
        .err()
        .expect("refuses a wrong PIN")
        .to_string();
    assert!(err.contains("PIN is wrong"), "{err}");
    assert!(!err.contains("11112222"), "the PIN is never shown: {err}");
    let missing = pkcs11_env(hsm, "no-such-token");
    let missing: Vec<(&str, &str)> = missing.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let err = start_with_env(&env_for(&dir.path().join("data"), &db, &missing))
        .await
        .err()
        .expect("refuses a token that is not there")
        .to_string();
    assert!(err.contains("no-such-token"), "{err}");

    // A server without a token refuses pkcs11 at enable time.
    let plain = TestServer::start(backend).await;
    let (root, _) = plain.buy_root("No Token Root", "ec-p256", 5).await;
    let (st, v) = plain
        .post(
            &format!("/cas/{root}/enable"),
            json!({"mode": "generate", "key_storage": "pkcs11"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("no PKCS#11 token configured"), "{v}");
    plain.stop().await;

    let env = pkcs11_env(hsm, &label);
    let s = start(backend, &env).await;
    let (root, inter) = s.buy_root("Token Root", "ec-p256", 5).await;
    for (body, needle) in [
        (
            json!({"mode": "upload", "key_storage": "pkcs11",
                   "certificate_pem": "x", "private_key_pem": "y"}),
            "cannot be uploaded",
        ),
        (
            json!({"mode": "generate", "key_storage": "vault"}),
            "key_storage",
        ),
    ] {
        let (st, v) = s.post(&format!("/cas/{root}/enable"), body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v.to_string().contains(needle), "{needle}: {v}");
    }
    let (ed_root, _) = s.buy_root("Ed Root", "ed25519", 5).await;
    let (st, v) = s
        .post(
            &format!("/cas/{ed_root}/enable"),
            json!({"mode": "generate", "key_storage": "pkcs11"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("ed25519"), "{v}");
    // A database-held root may carry a token-held intermediate.
    s.enable(&root).await;
    let i = enable_in_token(&s, &inter).await;
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let key_id = i["pkcs11_key"]["id"].as_str().unwrap().to_string();

    // Restart: without the token the server refuses to start, naming the CA; with the
    // token it finds the key again and issues.
    let data = s.data_dir();
    let url = s.database_url.clone();
    let keep = s.stop_keep_dir().await;
    let err = start_with_env(&env_for(&data, &url, &[]))
        .await
        .err()
        .expect("refuses to start without the token")
        .to_string();
    assert!(err.contains(&inter) && err.contains("PKCS#11"), "{err}");
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let running = start_with_env(&env_for(&data, &url, &extra))
        .await
        .expect("starts with the token");
    let s = TestServer::attach(running, keep, backend, url);
    let (st, c) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "client", "common_name": "after-restart", "validity_days": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let f = Files(tempfile::tempdir().unwrap());
    let (_, r) = s.get(&format!("/cas/{root}")).await;
    f.put(
        "root.pem",
        r["certificate_pem"].as_str().unwrap().as_bytes(),
    );
    f.put(
        "inter.pem",
        i["certificate_pem"].as_str().unwrap().as_bytes(),
    );
    let (ok, out) = verify(&f, c["certificate_pem"].as_str().unwrap(), false);
    assert!(ok, "{out}");

    // A reset (after revoking what it issued) destroys the key in the token.
    let (st, v) = s
        .post(
            &format!("/certificates/{}/revoke", c["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.post(&format!("/cas/{inter}/reset"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key_storage"], "database", "{v}");
    assert_eq!(v["pkcs11_key"], Value::Null, "{v}");
    let token = s.app().hsm.clone().unwrap();
    assert!(
        token.protection(&key_id).is_err(),
        "the reset CA's key is gone"
    );
    s.stop().await;
}

each_backend!(refusals_and_restarts, refusals_and_restarts);

/// CA renewal with keys in the token: a root renewed with a new key (generated in the
/// token, label `vellum-ca-{id}-g2`) and its intermediate renewed by it with a new key;
/// the new leaf verifies with the new root alone and with the old root through the
/// cross-signed certificate (signed by the old key, in the token); the old key, still in
/// the token, keeps signing its CRL; no private key in the database or the data dir.
async fn renewal_in_the_token(backend: Backend) {
    let Some((hsm, label)) = token(&format!("renew-{backend:?}")) else {
        return;
    };
    let s = start(backend, &pkcs11_env(hsm, &label)).await;
    let keys_before = private_key_files(&s.data_dir());
    let (st, v) = s
        .post(
            "/cas",
            json!({"kind": "root", "common_name": "Token Rollover Root", "key_algorithm": "ec-p256",
                   "validity_days": 3650, "service_months": 24, "quota": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let root = v["id"].as_str().unwrap().to_string();
    let inter = v["intermediate_id"].as_str().unwrap().to_string();
    let old_root = enable_in_token(&s, &root).await;
    enable_in_token(&s, &inter).await;
    let (st, v) = s
        .post(
            &format!("/cas/{root}/quota/assign"),
            json!({"intermediate_id": inter, "count": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let f = Files(tempfile::tempdir().unwrap());
    let old_root_file = f.put(
        "old-root.pem",
        old_root["certificate_pem"].as_str().unwrap().as_bytes(),
    );

    let (st, r) = s
        .post(
            &format!("/cas/{root}/renew"),
            json!({"same_key": false, "validity_days": 3650}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["ca"]["key_storage"], "pkcs11", "{r}");
    assert_eq!(
        r["ca"]["pkcs11_key"]["label"],
        format!("vellum-ca-{root}-g2"),
        "{r}"
    );
    assert_ne!(r["ca"]["pkcs11_key"]["id"], old_root["pkcs11_key"]["id"]);
    let new_root_file = f.put(
        "root.pem",
        r["generation"]["certificate_pem"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );
    let cross = r["generation"]["cross_signed_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, ri) = s
        .post(
            &format!("/cas/{inter}/renew"),
            json!({"same_key": false, "validity_days": 365}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ri}");
    assert_eq!(
        ri["ca"]["pkcs11_key"]["label"],
        format!("vellum-ca-{inter}-g2"),
        "{ri}"
    );
    let inter_pem = ri["generation"]["certificate_pem"]
        .as_str()
        .unwrap()
        .to_string();
    f.put("inter.pem", inter_pem.as_bytes());
    let (st, leaf) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "token-rollover.example", "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{leaf}");
    let leaf_pem = leaf["certificate_pem"].as_str().unwrap();
    let (ok, out) = verify(&f, leaf_pem, false);
    assert!(ok, "new root alone: {out}");
    let leaf_file = f.put("leaf2.pem", leaf_pem.as_bytes());
    let bundle = f.put("bundle.pem", format!("{inter_pem}{cross}").as_bytes());
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &old_root_file,
        "-untrusted",
        &bundle,
        &leaf_file,
    ]);
    assert!(ok, "old root through the cross certificate: {out}");
    // The old root key (in the token) signs the CRL at /crl/{root}.crl.
    let der = fetch(&s, &format!("{}/crl/{root}.crl", s.http_base)).await;
    let crl = f.put("old-root.crl", &der);
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &crl,
        "-CAfile",
        &old_root_file,
        "-noout",
    ]);
    assert!(ok && out.contains("verify OK"), "{out}");
    let der = fetch(&s, &format!("{}/crl/{root}-g2.crl", s.http_base)).await;
    let crl = f.put("new-root.crl", &der);
    let (ok, out) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &crl,
        "-CAfile",
        &new_root_file,
        "-noout",
    ]);
    assert!(ok && out.contains("verify OK"), "{out}");
    // No key material outside the token.
    let (_, gens) = s.get(&format!("/cas/{root}/generations")).await;
    assert_eq!(gens["generations"].as_array().unwrap().len(), 2, "{gens}");
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let n: i64 =
        store::query("SELECT COUNT(*) AS n FROM ca_generations WHERE key_sealed IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(n, 0, "token keys are never sealed into the database");
    drop(conn);
    assert_eq!(private_key_files(&s.data_dir()), keys_before);
    s.stop().await;
}

each_backend!(renewal_in_the_token, renewal_in_the_token);
