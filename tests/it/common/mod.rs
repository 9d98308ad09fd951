//! Test harness: a real server on ephemeral ports with a temporary data dir, spoken to over
//! real HTTPS. Every storage test runs against SQLite, and against PostgreSQL when
//! `VELLUM_TEST_DATABASE_URL` is set (each test gets a database of its own).

#![allow(dead_code)]

pub mod acme;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use sqlx::Connection;

pub use vellum_server::Running;

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// PostgreSQL URL for tests, if configured.
pub fn pg_url() -> Option<String> {
    std::env::var("VELLUM_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// True (after saying so) when no PostgreSQL server is configured for the tests: the
/// caller skips its PostgreSQL case.
pub fn postgres_missing() -> bool {
    let missing = pg_url().is_none();
    if missing {
        eprintln!("skipped: VELLUM_TEST_DATABASE_URL is not set");
    }
    missing
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn fresh_pg_database() -> String {
    let base = pg_url().expect("VELLUM_TEST_DATABASE_URL");
    let name = format!("vt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to VELLUM_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

/// Runs a test body against both backends (PostgreSQL only when configured). With
/// `acme_responder`, the server validates http-01 against a loopback responder and the
/// body gets both (`body(&server, &responder)`).
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident, acme_responder) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (s, r) =
                    $crate::common::acme::server_with_responder($crate::common::Backend::Sqlite)
                        .await;
                super::$body(&s, &r).await;
                s.stop().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if $crate::common::postgres_missing() {
                    return;
                }
                let (s, r) =
                    $crate::common::acme::server_with_responder($crate::common::Backend::Postgres)
                        .await;
                super::$body(&s, &r).await;
                s.stop().await;
            }
        }
    };
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let s = $crate::common::TestServer::start($crate::common::Backend::Sqlite).await;
                super::$body(&s).await;
                s.stop().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if $crate::common::postgres_missing() {
                    return;
                }
                let s = $crate::common::TestServer::start($crate::common::Backend::Postgres).await;
                super::$body(&s).await;
                s.stop().await;
            }
        }
    };
}

/// `mod $name { sqlite, postgres }` for a test body that starts its own server(s): each
/// calls `$body(Backend::…, args…)`; the PostgreSQL one is skipped without
/// `VELLUM_TEST_DATABASE_URL`.
#[macro_export]
macro_rules! each_backend {
    ($name:ident, $body:ident $(, $arg:expr)*) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::common::Backend::Sqlite $(, $arg)*).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if $crate::common::postgres_missing() {
                    return;
                }
                super::$body($crate::common::Backend::Postgres $(, $arg)*).await;
            }
        }
    };
}

/// A running server plus a client that trusts its root.
pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http_base: String,
    pub token: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub database_url: String,
}

/// Environment for a server with its data in `data_dir`.
pub fn env_for(
    data_dir: &Path,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "VELLUM_DATA_DIR".to_string(),
            data_dir.display().to_string(),
        ),
        ("VELLUM_LISTEN_HTTPS".into(), "127.0.0.1:0".into()),
        ("VELLUM_LISTEN_HTTP".into(), "127.0.0.1:0".into()),
        ("VELLUM_DATABASE_URL".into(), database_url.to_string()),
        ("VELLUM_LIMITS_DB_CONNECTIONS".into(), "8".into()),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// Starts a server from an explicit environment.
pub async fn start_with_env(env: &[(String, String)]) -> vellum_core::error::Result<Running> {
    let config = vellum_core::config::Config::load_with_env(None, env)?;
    vellum_server::start(config).await
}

/// A TLS client configuration trusting `root_pem` (the server's root), still to be told
/// whether it presents a client certificate.
pub fn tls_trusting(
    root_pem: &Path,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    vellum_server::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(root_pem).expect("root.pem");
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
}

/// A TLS connection (ALPN http/1.1) to the server's HTTPS listener with `request` written
/// to it as is, for tests that need the raw bytes of an answer.
pub async fn raw_http1_connection(
    s: &TestServer,
    request: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut cfg = tls_trusting(&s.data_dir().join("root.pem")).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.running.as_ref().unwrap().https_addr)
        .await
        .unwrap();
    let mut tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(request).await.unwrap();
    tls
}

/// An HTTPS client trusting `root_pem`.
pub fn client_trusting(root_pem: &Path) -> reqwest::Client {
    let tls = tls_trusting(root_pem).with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

impl TestServer {
    /// Starts a server on a new data dir (and a new database for PostgreSQL).
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, &[]).await
    }

    /// Like [`TestServer::start`] with extra environment.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}/vellum.db", data.display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        let env = env_for(&data, &database_url, extra);
        let running = start_with_env(&env).await.expect("server starts");
        Self::attach(running, dir, backend, database_url)
    }

    /// Like [`TestServer::start_with`], with the rules reading `clock` (a fixed clock the
    /// test moves).
    pub async fn start_with_clock(
        backend: Backend,
        extra: &[(&str, &str)],
        clock: vellum_core::time::Clock,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}/vellum.db", data.display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        let env = env_for(&data, &database_url, extra);
        let config = vellum_core::config::Config::load_with_env(None, &env).expect("config");
        let running = vellum_server::start_with_clock(config, clock)
            .await
            .expect("server starts");
        Self::attach(running, dir, backend, database_url)
    }

    /// Wraps an already started server.
    pub fn attach(
        running: Running,
        dir: tempfile::TempDir,
        backend: Backend,
        database_url: String,
    ) -> TestServer {
        let base = format!("https://localhost:{}", running.https_addr.port());
        let http_base = format!("http://127.0.0.1:{}", running.http_addr.port());
        let token = std::fs::read_to_string(&running.paths.admin_token)
            .unwrap()
            .trim()
            .to_string();
        let client = client_trusting(&running.paths.root_pem);
        TestServer {
            running: Some(running),
            dir,
            base,
            http_base,
            token,
            client,
            backend,
            database_url,
        }
    }

    /// The server's shared state.
    pub fn app(&self) -> &vellum_server::App {
        &self.running.as_ref().unwrap().app
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Stops the server gracefully and hands back its directory (for restarts).
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir
    }

    /// Calls the admin API with the super-admin token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// Calls the admin API with `token`.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_full(Some(token), None, method, path, body).await
    }

    /// Calls the admin API with an optional token and tenant header.
    pub async fn call_full(
        &self,
        token: Option<&str>,
        tenant: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/admin/v1{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = tenant {
            req = req.header("X-Vellum-Tenant", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let is_problem = resp
            .headers()
            .get("content-type")
            .map(|v| {
                v.to_str()
                    .unwrap_or_default()
                    .starts_with("application/problem+json")
            })
            .unwrap_or(false);
        let text = resp.text().await.unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            assert!(
                is_problem,
                "error answers are problem+json: {status} {value}"
            );
            assert_eq!(value["status"], json!(status.as_u16()), "{value}");
        }
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Buys a root (EC P-256 unless `alg` says otherwise); returns (root id, intermediate id).
    pub async fn buy_root(&self, cn: &str, alg: &str, quota: i64) -> (String, String) {
        let (s, v) = self
            .post(
                "/cas",
                json!({"kind": "root", "common_name": cn, "key_algorithm": alg,
                       "validity_days": 3650, "service_months": 24, "quota": quota}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["intermediate_id"].as_str().unwrap().to_string(),
        )
    }

    /// Enables a CA by generating its key; asserts success and returns the CA.
    pub async fn enable(&self, id: &str) -> Value {
        let (s, v) = self
            .post(&format!("/cas/{id}/enable"), json!({"mode": "generate"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// A root and its intermediate, both enabled, `assigned` quota moved to the intermediate.
    pub async fn enabled_pair(&self, cn: &str, quota: i64, assigned: i64) -> (String, String) {
        let (root, inter) = self.buy_root(cn, "ec-p256", quota).await;
        self.enable(&root).await;
        self.enable(&inter).await;
        if assigned > 0 {
            let (s, v) = self
                .post(
                    &format!("/cas/{root}/quota/assign"),
                    json!({"intermediate_id": inter, "count": assigned}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        (root, inter)
    }

    /// Creates a tenant and a token of `role` in it; returns (tenant id, token).
    pub async fn tenant_with_token(&self, name: &str, role: &str) -> (String, String) {
        let (s, t) = self
            .post(
                "/tenants",
                json!({"name": name, "entity": format!("{name} GmbH")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        let tid = t["id"].as_str().unwrap().to_string();
        let (s, tok) = self
            .post(
                "/tokens",
                json!({"tenant": name, "role": role, "name": format!("{role} of {name}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{tok}");
        (tid, tok["token"].as_str().unwrap().to_string())
    }

    /// Runs a statement directly on the server's database (to age rows in tests), and
    /// forgets the in-memory copy of recent ACME rows, which only the store's own
    /// functions keep up to date.
    pub async fn sql(&self, statement: &str) {
        let store = &self.app().store;
        let mut tx = store.begin().await.unwrap();
        store::query(statement).execute(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        if let Some(recent) = store.recent() {
            recent.clear();
        }
    }
}

/// Runs `openssl` with args; returns (success, stdout+stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
