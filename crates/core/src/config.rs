//! Configuration: an optional TOML file, then `VELLUM_*` environment overrides.
//!
//! Every key of the file can be overridden by an environment variable whose name is
//! `VELLUM_` followed by the key path in upper case with `.` replaced by `_`
//! (`tls.cert_file` → `VELLUM_TLS_CERT_FILE`). Values are read as TOML literals when they
//! parse as one (`8443`, `true`, `["a","b"]`) and as plain strings otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Every configurable key, as a dotted TOML path. The environment override of each is
/// derived from it (see the module documentation).
pub const KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "listen_https",
    "listen_http",
    "public_url",
    "public_http_url",
    "master_key",
    "tls.cert_file",
    "tls.key_file",
    "tls.names",
    "limits.body_bytes",
    "limits.request_timeout_secs",
    "limits.header_timeout_secs",
    "limits.concurrency",
    "limits.db_connections",
    "limits.db_acquire_timeout_secs",
    "limits.db_statement_timeout_secs",
    "log.level",
    "log.json",
    "bootstrap.root_common_name",
    "bootstrap.intermediate_common_name",
    "bootstrap.root_quota",
    "bootstrap.intermediate_quota",
    "bootstrap.key_algorithm",
    "va.http_port",
    "va.tls_port",
    "va.dns_resolver",
    "va.timeout_secs",
    "acme.default_ca",
    "acme.terms_of_service",
    "est.default_ca",
    "rate_limits.acme_new_accounts_per_ip_per_hour",
    "rate_limits.acme_orders_per_account_per_hour",
    "rate_limits.acme_failed_validations_per_name_per_hour",
    "rate_limits.est_failed_logins_per_user",
    "rate_limits.est_failed_logins_per_ip",
    "rate_limits.admin_failed_logins_per_ip",
    "rate_limits.backoff_base_secs",
    "rate_limits.backoff_max_secs",
    "rate_limits.max_keys",
    "rate_limits.argon2_workers",
    "rate_limits.argon2_queue",
    "rate_limits.ocsp_on_demand_signings_per_second",
    "tools.installation_check_networks",
    "tools.installation_check_timeout_secs",
    "notifications.scheduler_interval_secs",
    "notifications.delivery_interval_ms",
    "notifications.networks",
    "notifications.timeout_secs",
    "notifications.lease_secs",
    "notifications.default_quota",
    "notifications.extra_roots_file",
    "metrics.enabled",
    "metrics.listen",
    "metrics.bearer_token_file",
    "pkcs11.module",
    "pkcs11.token_label",
    "pkcs11.slot",
    "pkcs11.pin_file",
    "pkcs11.sessions",
];

/// The environment variable holding the PKCS#11 user PIN (read as is, never from the
/// file, never stored).
pub const PKCS11_PIN_ENV: &str = "VELLUM_PKCS11_PIN";

/// The whole server configuration, after file and environment were merged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory holding the database (SQLite), master key, admin token and root.pem.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default `sqlite://<data_dir>/vellum.db`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// HTTPS listener: admin API, ACME, EST.
    #[serde(default = "default_https")]
    pub listen_https: SocketAddr,
    /// Plain HTTP listener: CRLs and CA certificates.
    #[serde(default = "default_http")]
    pub listen_http: SocketAddr,
    /// Base URL of the HTTPS listener as clients reach it.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Base URL of the HTTP listener as clients reach it (written into certificates).
    #[serde(default)]
    pub public_http_url: Option<String>,
    /// 32-byte master key, hex (64 characters) or base64. Default: `<data_dir>/master.key`.
    #[serde(default)]
    pub master_key: Option<String>,
    /// TLS settings of the HTTPS listener.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Limits enforced at the edge.
    #[serde(default)]
    pub limits: Limits,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// What the first start creates.
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// How the ACME validation authority reaches clients.
    #[serde(default)]
    pub va: VaSettings,
    /// ACME front end.
    #[serde(default)]
    pub acme: AcmeConfig,
    /// EST front end.
    #[serde(default)]
    pub est: EstConfig,
    /// Rate limits of the public doors (ACME, EST, admin authentication).
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The admin tools' settings.
    #[serde(default)]
    pub tools: ToolsConfig,
    /// Notifications: scheduler, delivery, where channels may connect.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// `GET /metrics` (Prometheus): where it is served and who may read it.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The PKCS#11 token (HSM) that holds the keys of CAs enabled with `key_storage =
    /// "pkcs11"`; `None`: no token, such CAs cannot be enabled or used.
    #[serde(default)]
    pub pkcs11: Option<Pkcs11Config>,
}

/// `GET /metrics`: on the plain-HTTP listener by default; `listen` moves it to a listener
/// of its own (and off the plain-HTTP one), `bearer_token_file` requires
/// `Authorization: Bearer <the file's content>`, `enabled = false` answers 404.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether `/metrics` is served at all (default true).
    pub enabled: bool,
    /// A listener of its own for `/metrics` (e.g. `127.0.0.1:9464`); default: the
    /// plain-HTTP listener.
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token scrapers must send (surrounding whitespace is
    /// ignored); default: none required.
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: None,
            bearer_token_file: None,
        }
    }
}

/// Where the PKCS#11 token is and how to log in to it (`[pkcs11]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token, by its label (the usual way to name it).
    #[serde(default)]
    pub token_label: Option<String>,
    /// The token, by its slot id (when labels are not unique).
    #[serde(default)]
    pub slot: Option<u64>,
    /// A file holding the user PIN (its first line); else `VELLUM_PKCS11_PIN` gives it.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Logged-in sessions kept open for signing (1–64; default 4). More sessions let more
    /// signatures run at once on a token that computes them in parallel.
    #[serde(default = "default_pkcs11_sessions")]
    pub sessions: usize,
    /// The PIN from `VELLUM_PKCS11_PIN`; never read from the file.
    #[serde(skip)]
    pub pin: Option<String>,
}

fn default_pkcs11_sessions() -> usize {
    4
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("slot", &self.slot)
            .field("pin_file", &self.pin_file)
            .field("sessions", &self.sessions)
            .field("pin", &self.pin.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl Pkcs11Config {
    /// The user PIN: `VELLUM_PKCS11_PIN`, else the first line of `pin_file`.
    pub fn read_pin(&self) -> Result<String> {
        if let Some(pin) = &self.pin {
            return Ok(pin.clone());
        }
        let Some(path) = &self.pin_file else {
            return Err(Error::config(format!(
                "pkcs11: no PIN; set pkcs11.pin_file or {PKCS11_PIN_ENV}"
            )));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("pkcs11.pin_file {}: {e}", path.display())))?;
        let pin = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_string();
        if pin.is_empty() {
            return Err(Error::config(format!(
                "pkcs11.pin_file {} is empty",
                path.display()
            )));
        }
        Ok(pin)
    }
}

/// Rate limits of the public doors, counted per replica (see `ra::ratelimit`). A limit
/// of 0 turns that limit off. The ACME and EST limits can be overridden per CA
/// (`PUT /admin/v1/cas/{id}/rate-limits`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// ACME accounts one source IP may create per hour at one CA's directory.
    pub acme_new_accounts_per_ip_per_hour: u32,
    /// ACME orders one account may create per hour.
    pub acme_orders_per_account_per_hour: u32,
    /// Failed ACME validations per account and name per hour; beyond it newOrder refuses
    /// orders for that name.
    pub acme_failed_validations_per_name_per_hour: u32,
    /// Failed EST Basic logins per (CA, user name) before back-off starts.
    pub est_failed_logins_per_user: u32,
    /// Failed EST Basic logins per (CA, source IP) before back-off starts.
    pub est_failed_logins_per_ip: u32,
    /// Failed admin-token authentications per source IP before back-off starts.
    pub admin_failed_logins_per_ip: u32,
    /// First lock of the back-off, seconds; each further failure doubles it.
    pub backoff_base_secs: u64,
    /// Longest lock of the back-off, seconds.
    pub backoff_max_secs: u64,
    /// Keys each counter holds at most (memory bound; ~40 bytes a key).
    pub max_keys: usize,
    /// Threads verifying EST passwords (argon2id, ~19 MiB each while busy);
    /// 0: one per core, at most 4.
    pub argon2_workers: usize,
    /// Password verifications waiting for a worker; more get 503 with Retry-After.
    pub argon2_queue: usize,
    /// OCSP responses each CA signs per second (and at most at once) for requests no held
    /// response answers: unknown serials not answered in the last minute, and nonces.
    /// Beyond it an unknown serial gets `tryLater` and a nonce the held response without
    /// it (`ra::ocsp`).
    pub ocsp_on_demand_signings_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            acme_new_accounts_per_ip_per_hour: 100,
            acme_orders_per_account_per_hour: 1000,
            acme_failed_validations_per_name_per_hour: 5,
            est_failed_logins_per_user: 5,
            est_failed_logins_per_ip: 50,
            admin_failed_logins_per_ip: 20,
            backoff_base_secs: 1,
            backoff_max_secs: 900,
            max_keys: 65_536,
            argon2_workers: 0,
            argon2_queue: 64,
            ocsp_on_demand_signings_per_second: 100,
        }
    }
}

impl RateLimits {
    /// The back-off rule for `free` failures.
    pub fn backoff(&self, free: u32) -> BackoffRule {
        BackoffRule {
            free,
            base: std::time::Duration::from_secs(self.backoff_base_secs.max(1)),
            max: std::time::Duration::from_secs(
                self.backoff_max_secs.max(self.backoff_base_secs.max(1)),
            ),
        }
    }

    /// Argon2 worker threads in force.
    pub fn argon2_workers(&self) -> usize {
        match self.argon2_workers {
            0 => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 4),
            n => n,
        }
    }
}

/// Lock-out rule of a failed-login back-off (`ra::ratelimit::Backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffRule {
    /// Failures allowed before the first lock (0: never lock).
    pub free: u32,
    /// First lock.
    pub base: std::time::Duration,
    /// Longest lock.
    pub max: std::time::Duration,
}

/// Ports and resolver the ACME validator uses (tests and private networks change them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaSettings {
    /// Port of http-01 validation requests.
    pub http_port: u16,
    /// Port of tls-alpn-01 validation handshakes.
    pub tls_port: u16,
    /// DNS resolver `host:port`; default: the system's.
    pub dns_resolver: Option<String>,
    /// The time one validation attempt may take, seconds (lookups, connections and
    /// redirects included; 1-60). A challenge is attempted up to three times, and a
    /// challenge whose replica died is taken over after a lease derived from it.
    pub timeout_secs: u64,
}

/// Bounds of `va.timeout_secs`.
pub const VA_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=60;

impl Default for VaSettings {
    fn default() -> Self {
        VaSettings {
            http_port: 80,
            tls_port: 443,
            dns_resolver: None,
            timeout_secs: 10,
        }
    }
}

/// The admin tools' settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Networks (CIDR, e.g. `10.0.0.0/8`) that `POST /tools/check-installation` may
    /// connect to; every address a host resolves to must be in one. Default: loopback
    /// only, so the tool is no way into the networks around the server until the operator
    /// lists them.
    pub installation_check_networks: Vec<String>,
    /// Seconds one installation check may take (connect and handshake), 1–30.
    pub installation_check_timeout_secs: u64,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            installation_check_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            installation_check_timeout_secs: 5,
        }
    }
}

impl ToolsConfig {
    /// The networks installation checks may reach (validated at load).
    pub fn allowed_networks(&self) -> Vec<ipnet::IpNet> {
        self.installation_check_networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

/// Notification settings: how often reminders are looked for and deliveries attempted,
/// and which networks webhook and SMTP targets may be in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Seconds between two passes of the reminder scheduler (1–60; default 60).
    pub scheduler_interval_secs: u64,
    /// Milliseconds between two looks for due deliveries when none were due (50–10,000).
    pub delivery_interval_ms: u64,
    /// Networks (CIDR) webhook URLs and SMTP servers may resolve to; every address of a
    /// target must be in one. Default: any (`0.0.0.0/0`, `::/0`); list yours to keep
    /// tenant admins from reaching the server's own networks.
    pub networks: Vec<String>,
    /// Seconds one delivery may take (connect, TLS, answer), 1–60.
    pub timeout_secs: u64,
    /// Seconds a claimed delivery belongs to the worker that claimed it; a worker that
    /// dies mid-delivery leaves it due again after this. At least 2 × timeout_secs + 5
    /// (a delivery in flight is never claimed twice); default 120.
    pub lease_secs: u64,
    /// Certificates a new tenant may have reminders on before buying more.
    pub default_quota: i64,
    /// A PEM file of extra CA certificates trusted for HTTPS webhooks and SMTP TLS, beside
    /// the system's (e.g. this installation's own root).
    pub extra_roots_file: Option<PathBuf>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            scheduler_interval_secs: 60,
            delivery_interval_ms: 500,
            networks: vec!["0.0.0.0/0".into(), "::/0".into()],
            timeout_secs: 10,
            lease_secs: 120,
            default_quota: 100,
            extra_roots_file: None,
        }
    }
}

impl NotificationsConfig {
    /// The networks delivery targets may be in (validated at load).
    pub fn allowed_networks(&self) -> Vec<ipnet::IpNet> {
        self.networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

/// ACME front-end settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    /// Intermediate CA behind `/acme/directory` (default: the bootstrap intermediate).
    pub default_ca: Option<String>,
    /// Terms-of-service URL; when set, new accounts must agree to it.
    pub terms_of_service: Option<String>,
}

/// EST front-end settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EstConfig {
    /// Intermediate CA behind `/.well-known/est/{operation}` (default: the bootstrap
    /// intermediate).
    pub default_ca: Option<String>,
}

/// TLS settings of the HTTPS listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Operator-provided certificate chain (PEM). With `key_file`, replaces the
    /// certificate Vellum would issue itself.
    pub cert_file: Option<PathBuf>,
    /// Operator-provided private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the self-issued server certificate.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Limits enforced at the edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body, bytes.
    pub body_bytes: usize,
    /// Longest time a request may take, seconds.
    pub request_timeout_secs: u64,
    /// Longest time a client may take to send its request headers, seconds.
    pub header_timeout_secs: u64,
    /// Requests served at once per listener; more wait in line.
    pub concurrency: usize,
    /// Database connections in the pool (readers, for SQLite; all, for PostgreSQL).
    pub db_connections: u32,
    /// Longest wait for a PostgreSQL connection, seconds (connecting included): past it,
    /// the request is answered 503 with `Retry-After`. Used capped below
    /// `request_timeout_secs` ([`Limits::db_acquire_timeout`]), so that a database outage
    /// is answered as one, not as a timeout.
    pub db_acquire_timeout_secs: u64,
    /// Longest a PostgreSQL statement may run, seconds (its `statement_timeout`; 0: no
    /// limit). A statement stuck behind a lock or on an overloaded server is cancelled,
    /// its transaction rolled back and the request answered 503 with `Retry-After`,
    /// rather than holding a pooled connection until the request times out (background
    /// jobs have no request timeout). Migrations run without it. SQLite has no such
    /// statements (its writers wait `busy_timeout`).
    pub db_statement_timeout_secs: u64,
}

impl Limits {
    /// The wait for a database connection in force: `db_acquire_timeout_secs`, but at
    /// most half of `request_timeout_secs` (a request may wait for a connection twice:
    /// a read, then its write transaction), and at least 1 s.
    pub fn db_acquire_timeout(&self) -> std::time::Duration {
        let cap = (self.request_timeout_secs * 1000 / 2).max(1000);
        std::time::Duration::from_millis((self.db_acquire_timeout_secs * 1000).min(cap))
    }

    /// The PostgreSQL statement timeout in force, `None` when off.
    pub fn db_statement_timeout(&self) -> Option<std::time::Duration> {
        (self.db_statement_timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(self.db_statement_timeout_secs))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            header_timeout_secs: 10,
            concurrency: 512,
            db_connections: 16,
            db_acquire_timeout_secs: 5,
            db_statement_timeout_secs: 20,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `vellum=debug,info`.
    pub level: String,
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            json: false,
        }
    }
}

/// What the first start on an empty data directory creates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bootstrap {
    /// Common name of the bootstrap root CA.
    pub root_common_name: String,
    /// Common name of the bootstrap intermediate CA.
    pub intermediate_common_name: String,
    /// Certificate quota the bootstrap root is purchased with.
    pub root_quota: i64,
    /// Part of it assigned to the bootstrap intermediate.
    pub intermediate_quota: i64,
    /// Key algorithm of both bootstrap CAs.
    pub key_algorithm: String,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            root_common_name: "Vellum Root CA".into(),
            intermediate_common_name: "Vellum Issuing CA".into(),
            root_quota: 1000,
            intermediate_quota: 100,
            key_algorithm: "ec-p256".into(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_https() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Config {
    /// Reads the file (if any), applies the process environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(file, &env)
    }

    /// Like [`Config::load`], with an explicit environment (for tests).
    pub fn load_with_env(file: Option<&Path>, env: &[(String, String)]) -> Result<Config> {
        let mut root = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    Error::config(format!(
                        "config file {} is not valid TOML: {e}",
                        path.display()
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        for key in KEYS {
            let var = env_name(key);
            if let Some((_, value)) = env.iter().find(|(k, _)| *k == var) {
                set_path(&mut root, key, parse_env_value(value));
            }
        }
        let mut config: Config = toml::Value::Table(root)
            .try_into()
            .map_err(|e| Error::config(format!("invalid configuration: {e}")))?;
        if let Some(p) = config.pkcs11.as_mut() {
            p.pin = env
                .iter()
                .find(|(k, _)| k == PKCS11_PIN_ENV)
                .map(|(_, v)| v.clone());
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::config(
                "tls.cert_file and tls.key_file must be set together".to_string(),
            ));
        }
        if !VA_TIMEOUT_SECS.contains(&self.va.timeout_secs) {
            return Err(Error::config(format!(
                "va.timeout_secs must be between {} and {} seconds, not {}",
                VA_TIMEOUT_SECS.start(),
                VA_TIMEOUT_SECS.end(),
                self.va.timeout_secs
            )));
        }
        if self.limits.body_bytes == 0 || self.limits.concurrency == 0 {
            return Err(Error::config(
                "limits.body_bytes and limits.concurrency must be above 0".to_string(),
            ));
        }
        if self.limits.db_acquire_timeout_secs == 0 || self.limits.request_timeout_secs == 0 {
            return Err(Error::config(
                "limits.db_acquire_timeout_secs and limits.request_timeout_secs must be above 0"
                    .to_string(),
            ));
        }
        if self.rate_limits.argon2_queue == 0 || self.rate_limits.argon2_workers > 64 {
            return Err(Error::config(
                "rate_limits.argon2_queue must be above 0 and rate_limits.argon2_workers at most 64"
                    .to_string(),
            ));
        }
        for n in &self.tools.installation_check_networks {
            if n.parse::<ipnet::IpNet>().is_err() {
                return Err(Error::config(format!(
                    "tools.installation_check_networks: {n:?} is not a network in CIDR \
                     notation (e.g. 10.0.0.0/8 or fd00::/8)"
                )));
            }
        }
        for n in &self.notifications.networks {
            if n.parse::<ipnet::IpNet>().is_err() {
                return Err(Error::config(format!(
                    "notifications.networks: {n:?} is not a network in CIDR notation \
                     (e.g. 10.0.0.0/8 or fd00::/8)"
                )));
            }
        }
        if !(1..=60).contains(&self.notifications.scheduler_interval_secs) {
            return Err(Error::config(
                "notifications.scheduler_interval_secs must be between 1 and 60".to_string(),
            ));
        }
        if !(50..=10_000).contains(&self.notifications.delivery_interval_ms) {
            return Err(Error::config(
                "notifications.delivery_interval_ms must be between 50 and 10000".to_string(),
            ));
        }
        if !(1..=60).contains(&self.notifications.timeout_secs) {
            return Err(Error::config(
                "notifications.timeout_secs must be between 1 and 60".to_string(),
            ));
        }
        if self.notifications.lease_secs < 2 * self.notifications.timeout_secs + 5
            || self.notifications.lease_secs > 3600
        {
            return Err(Error::config(format!(
                "notifications.lease_secs must be between 2 × timeout_secs + 5 ({}) and 3600",
                2 * self.notifications.timeout_secs + 5
            )));
        }
        if self.notifications.default_quota < 0 {
            return Err(Error::config(
                "notifications.default_quota must be 0 or more".to_string(),
            ));
        }
        if !(1..=30).contains(&self.tools.installation_check_timeout_secs) {
            return Err(Error::config(
                "tools.installation_check_timeout_secs must be between 1 and 30".to_string(),
            ));
        }
        if let Some(p) = &self.pkcs11 {
            if p.token_label.is_none() == p.slot.is_none() {
                return Err(Error::config(
                    "pkcs11: set exactly one of pkcs11.token_label and pkcs11.slot".to_string(),
                ));
            }
            if p.pin.is_none() && p.pin_file.is_none() {
                return Err(Error::config(format!(
                    "pkcs11: no PIN; set pkcs11.pin_file or {PKCS11_PIN_ENV}"
                )));
            }
            if !(1..=64).contains(&p.sessions) {
                return Err(Error::config(
                    "pkcs11.sessions must be between 1 and 64".to_string(),
                ));
            }
        }
        if !(1..=self.bootstrap.root_quota).contains(&self.bootstrap.intermediate_quota) {
            return Err(Error::config(
                "bootstrap.intermediate_quota must be between 1 and bootstrap.root_quota"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// The database URL in force: the configured one or the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}/vellum.db", self.data_dir.display()),
        }
    }

    /// Base URL of the HTTPS listener (no trailing slash).
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{}", display_addr(self.listen_https)),
        }
    }

    /// Base URL of the plain-HTTP distribution listener (no trailing slash).
    pub fn public_http_url(&self) -> String {
        match &self.public_http_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            // An IP literal, not "localhost": it is written into CDP and AIA URIs, where
            // linters (and some verifiers) expect a resolvable host.
            None if self.listen_http.ip().is_loopback() => format!("http://{}", self.listen_http),
            None => format!("http://{}", display_addr(self.listen_http)),
        }
    }

    /// Where the super-admin token is written.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin-token")
    }

    /// Where the bootstrap root certificate is written.
    pub fn root_pem_path(&self) -> PathBuf {
        self.data_dir.join("root.pem")
    }
}

/// `localhost` for loopback and unspecified addresses, so that URLs match the server
/// certificate; the address itself otherwise.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// `tls.cert_file` → `VELLUM_TLS_CERT_FILE`.
pub fn env_name(key: &str) -> String {
    format!("VELLUM_{}", key.replace('.', "_").to_uppercase())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match wrapped.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut toml::Table, key: &str, value: toml::Value) {
    let mut table = root;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            // Keys that hold strings stay strings even when the value looks like a number.
            let value = match (&value, part) {
                (
                    toml::Value::Integer(i),
                    "master_key" | "database_url" | "default_ca" | "token_label",
                ) => toml::Value::String(i.to_string()),
                _ => value,
            };
            table.insert(part.to_string(), value);
            return;
        }
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => table = t,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.listen_https.port(), 8443);
        assert_eq!(c.listen_http.port(), 8080);
        assert_eq!(c.database_url(), "sqlite://./data/vellum.db");
        assert_eq!(c.public_url(), "https://localhost:8443");
        assert_eq!(c.public_http_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn environment_overrides_file_and_nested_keys() {
        let dir = std::env::temp_dir().join(format!("vellum-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("v.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/a\"\n[limits]\nbody_bytes = 10\n[tls]\nnames = [\"a.example\"]\n",
        )
        .unwrap();
        let c = Config::load_with_env(
            Some(&file),
            &env(&[
                ("VELLUM_DATA_DIR", "/srv/b"),
                ("VELLUM_LIMITS_CONCURRENCY", "7"),
                ("VELLUM_TLS_NAMES", "[\"x.example\", \"10.0.0.1\"]"),
                ("VELLUM_LISTEN_HTTPS", "0.0.0.0:9443"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(c.limits.body_bytes, 10);
        assert_eq!(c.limits.concurrency, 7);
        assert_eq!(c.tls.names, vec!["x.example", "10.0.0.1"]);
        assert_eq!(c.listen_https.port(), 9443);
        assert_eq!(c.database_url(), "sqlite:///srv/b/vellum.db");
    }

    #[test]
    fn bad_values_are_reported_with_the_key() {
        let err = Config::load_with_env(None, &env(&[("VELLUM_LISTEN_HTTP", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_http"), "{err}");
    }

    #[test]
    fn the_documented_example_file_is_valid_and_matches_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/vellum.toml"
        ));
        let c = Config::load_with_env(Some(path), &[]).unwrap();
        let d = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.listen_https, d.listen_https);
        assert_eq!(c.limits.body_bytes, d.limits.body_bytes);
        assert_eq!(c.bootstrap.root_quota, 1000);
        assert_eq!(c.bootstrap.intermediate_quota, 100);
        let (r, dr) = (&c.rate_limits, &d.rate_limits);
        assert_eq!(
            (
                r.acme_new_accounts_per_ip_per_hour,
                r.acme_orders_per_account_per_hour,
                r.acme_failed_validations_per_name_per_hour,
                r.est_failed_logins_per_user,
                r.est_failed_logins_per_ip,
                r.admin_failed_logins_per_ip,
                r.backoff_base_secs,
                r.backoff_max_secs,
                r.max_keys,
                r.argon2_workers,
                r.argon2_queue,
            ),
            (
                dr.acme_new_accounts_per_ip_per_hour,
                dr.acme_orders_per_account_per_hour,
                dr.acme_failed_validations_per_name_per_hour,
                dr.est_failed_logins_per_user,
                dr.est_failed_logins_per_ip,
                dr.admin_failed_logins_per_ip,
                dr.backoff_base_secs,
                dr.backoff_max_secs,
                dr.max_keys,
                dr.argon2_workers,
                dr.argon2_queue,
            )
        );
    }

    #[test]
    fn rate_limits_are_overridable_by_environment() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("VELLUM_RATE_LIMITS_ACME_NEW_ACCOUNTS_PER_IP_PER_HOUR", "0"),
                ("VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_USER", "2"),
                ("VELLUM_RATE_LIMITS_ARGON2_WORKERS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rate_limits.acme_new_accounts_per_ip_per_hour, 0);
        assert_eq!(c.rate_limits.est_failed_logins_per_user, 2);
        assert_eq!(c.rate_limits.argon2_workers(), 3);
        assert_eq!(c.rate_limits.acme_orders_per_account_per_hour, 1000);
    }

    #[test]
    fn the_validation_timeout_is_bounded() {
        let c = Config::load_with_env(None, &env(&[("VELLUM_VA_TIMEOUT_SECS", "4")])).unwrap();
        assert_eq!(c.va.timeout_secs, 4);
        assert_eq!(VaSettings::default().timeout_secs, 10);
        for bad in ["0", "61"] {
            let err = Config::load_with_env(None, &env(&[("VELLUM_VA_TIMEOUT_SECS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("va.timeout_secs must be between 1 and 60"),
                "{err}"
            );
        }
    }

    #[test]
    fn half_a_tls_pair_is_refused() {
        let err = Config::load_with_env(None, &env(&[("VELLUM_TLS_CERT_FILE", "/x.pem")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.key_file"), "{err}");
    }

    #[test]
    fn pkcs11_section_takes_the_pin_from_the_environment_only() {
        let c = Config::load_with_env(
            None,
            &env(&[
                ("VELLUM_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
                ("VELLUM_PKCS11_TOKEN_LABEL", "1234"),
                ("VELLUM_PKCS11_PIN", "0042"),
            ]),
        )
        .unwrap();
        let p = c.pkcs11.expect("pkcs11 section");
        assert_eq!(p.token_label.as_deref(), Some("1234"));
        assert_eq!(p.read_pin().unwrap(), "0042");
        assert!(!format!("{p:?}").contains("0042"), "the PIN never prints");
        let err = Config::load_with_env(
            None,
            &env(&[
                ("VELLUM_PKCS11_MODULE", "/m.so"),
                ("VELLUM_PKCS11_SLOT", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("VELLUM_PKCS11_PIN"), "{err}");
        let err = Config::load_with_env(
            None,
            &env(&[
                ("VELLUM_PKCS11_MODULE", "/m.so"),
                ("VELLUM_PKCS11_PIN", "1"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("token_label"), "{err}");
    }
}
