//! First start on an empty data directory, and the checks of every later start.
//!
//! Creates (once): the master key, the `default` tenant, a super-admin token (only its hash
//! is stored; the secret goes to `<data>/admin-token`, 0600), an enabled root CA and an
//! enabled intermediate with quota, `<data>/root.pem`, and the server's own TLS certificate
//! issued from the intermediate. Later starts reuse all of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{App, Defaults};
use ca::keys::{KeyAlgorithm, MasterKey};
use ca::profile::{LeafType, San, SubjectFields};
use ca::{cert_pem, Signer};
use ra::hierarchy::{self, EnableMode, Purchase};
use ra::issue::{self, IssueRequest, KeySource};
use ra::tokens::{new_token_secret, token_hash};
use ra::Authority;
use store::{self, settings, tenants, Store};
use vellum_core::config::Config;
use vellum_core::error::{Error, Result};
use vellum_core::status::{CaStatus, CertificateSource};
use vellum_core::time::Clock;

const KEY_ROOT: &str = "bootstrap.root_id";
const KEY_INTERMEDIATE: &str = "bootstrap.intermediate_id";
const KEY_ADMIN_TOKEN: &str = "bootstrap.admin_token_id";
/// `started` while the first start is creating the default hierarchy, `done` after.
/// (Installations from before this key record their ids only when done, so ids without
/// this key mean done.)
const KEY_STAGE: &str = "bootstrap.stage";

/// Files the server writes and prints.
#[derive(Debug, Clone)]
pub struct Paths {
    pub admin_token: PathBuf,
    pub root_pem: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

/// Opens the database and brings the installation to its bootstrapped state.
pub async fn prepare(config: Config, clock: Clock) -> Result<(App, Paths)> {
    vellum_core::fsutil::create_private_dir(&config.data_dir).map_err(|e| {
        Error::config(format!(
            "creating data dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let (master, _) = MasterKey::load_or_create(
        config.master_key.as_deref(),
        &config.data_dir.join("master.key"),
    )?;
    let store = Store::connect_with(
        &config.database_url(),
        config.limits.db_connections,
        store::Timeouts {
            acquire: config.limits.db_acquire_timeout(),
            statement: config.limits.db_statement_timeout(),
        },
    )
    .await?;
    let _lock = store.bootstrap_lock().await?;
    ra::backup::check_master_key(&store, &master).await?;

    let mut conn = store.reader().acquire().await?;
    let tenant = match tenants::find_tenant(&mut conn, "default").await? {
        Some(t) => t,
        None => {
            let t = tenants::Tenant {
                id: uuid::Uuid::now_v7().to_string(),
                name: "default".into(),
                entity: "default".into(),
                created_at: vellum_core::time::now(),
            };
            let mut tx = store.begin().await?;
            tenants::insert_tenant(&mut tx, &t).await?;
            tx.commit().await?;
            t
        }
    };
    let root_id = settings::get(&mut conn, KEY_ROOT).await?;
    let inter_id = settings::get(&mut conn, KEY_INTERMEDIATE).await?;
    let stage = settings::get(&mut conn, KEY_STAGE).await?;
    drop(conn);

    let paths = Paths {
        admin_token: config.admin_token_path(),
        root_pem: config.root_pem_path(),
        tls_cert: config.data_dir.join("tls").join("server.crt"),
        tls_key: config.data_dir.join("tls").join("server.key"),
    };
    let validator = va::Validator::new(va::VaConfig {
        http_port: config.va.http_port,
        tls_port: config.va.tls_port,
        dns_resolver: match &config.va.dns_resolver {
            Some(s) => Some(s.parse().map_err(|_| {
                Error::config(format!(
                    "va.dns_resolver {s:?} is not host:port (an IP address and a port)"
                ))
            })?),
            None => None,
        },
        timeout: std::time::Duration::from_secs(config.va.timeout_secs),
    })
    .map_err(|e| Error::config(format!("ACME validator: {e}")))?;
    let acme_nonce_key = master.derive("vellum acme nonce v1");
    let acme_nonces = match store.backend() {
        store::Backend::Sqlite => crate::acme::nonce::Nonces::local(acme_nonce_key.as_ref()),
        store::Backend::Postgres => {
            crate::acme::nonce::Nonces::shared(acme_nonce_key, store.clone())?
        }
    };
    let mut app = App {
        ra: Authority::new(config, store, master, clock)?,
        acme_nonces,
        acme_inflight: Default::default(),
        validator,
        defaults: Defaults {
            tenant_id: tenant.id.clone(),
            root_id: root_id.clone().unwrap_or_default(),
            intermediate_id: inter_id.clone().unwrap_or_default(),
        },
    };
    ensure_admin_token(&app, &paths).await?;
    let (root, inter) = match (root_id, inter_id, stage.as_deref()) {
        (Some(r), Some(i), None | Some("done")) => (r, i),
        (r, i, _) => ensure_bootstrap_cas(&app, (r, i)).await?,
    };
    app.defaults.root_id = root;
    app.defaults.intermediate_id = inter;
    check_master_key(&app).await?;
    hierarchy::check_token_keys(&app).await?;
    write_root_pem(&app, &paths).await?;
    Ok((app, paths))
}

/// Creates the super-admin token file when the data dir has none. The secret is written
/// to `admin-token.new` first, then its hash committed, then the file renamed into place:
/// a start interrupted in between finds the `.new` file and finishes the job (if its
/// hash made it into the database) instead of leaving a token nobody holds.
async fn ensure_admin_token(app: &App, paths: &Paths) -> Result<()> {
    if paths.admin_token.exists() {
        return Ok(());
    }
    let pending = paths.admin_token.with_extension("new");
    if let Ok(text) = std::fs::read_to_string(&pending) {
        let secret = text.trim();
        let known = {
            let mut conn = app.store.reader().acquire().await?;
            tenants::token_by_hash(&mut conn, &token_hash(secret)).await?
        };
        if known.is_some() {
            std::fs::rename(&pending, &paths.admin_token).map_err(|e| {
                Error::config(format!("writing {}: {e}", paths.admin_token.display()))
            })?;
            return Ok(());
        }
    }
    let secret = new_token_secret();
    let token = tenants::Token {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: app.defaults.tenant_id.clone(),
        role: vellum_core::status::Role::Super,
        // A plain name: the console's header shows it (the file's path is in the log).
        name: "bootstrap super-admin".to_string(),
        created_at: vellum_core::time::now(),
        revoked_at: None,
    };
    vellum_core::fsutil::write_private(&pending, format!("{secret}\n").as_bytes())?;
    // A data dir without a token file gets a super-admin token of its own. Older ones are
    // not revoked: other replicas sharing a PostgreSQL database may be using theirs
    // (`DELETE /admin/v1/tokens/{id}` retires a lost one).
    let mut tx = app.store.begin().await?;
    tenants::insert_token(&mut tx, &token, &token_hash(&secret), None).await?;
    settings::put(&mut tx, KEY_ADMIN_TOKEN, &token.id).await?;
    tx.commit().await?;
    std::fs::rename(&pending, &paths.admin_token)
        .map_err(|e| Error::config(format!("writing {}: {e}", paths.admin_token.display())))?;
    tracing::info!(path = %paths.admin_token.display(), "created the super-admin token");
    Ok(())
}

/// Brings the default hierarchy to its bootstrapped state, resuming wherever an earlier
/// start stopped (killed, power lost): every step is one transaction, and each is taken
/// only when the state shows it has not happened yet.
/// 1. the ids of the root and the intermediate are chosen and recorded (settings);
/// 2. both are bought with those ids (one transaction: both rows or neither);
/// 3. the root is enabled, 4. the intermediate is enabled (each a conditional update of
///    a pending CA), 5. quota is assigned if none was.
///
/// So however often the first start is interrupted, there is exactly one bootstrap root
/// and one bootstrap intermediate.
async fn ensure_bootstrap_cas(
    app: &App,
    recorded: (Option<String>, Option<String>),
) -> Result<(String, String)> {
    let b = &app.config.bootstrap;
    let key_algorithm: KeyAlgorithm = b
        .key_algorithm
        .parse()
        .map_err(|e: String| Error::config(format!("bootstrap.key_algorithm: {e}")))?;
    let tenant = &app.defaults.tenant_id;
    let (root_id, inter_id) = match recorded {
        (Some(r), Some(i)) => (r, i),
        _ => {
            let ids = (
                uuid::Uuid::now_v7().to_string(),
                uuid::Uuid::now_v7().to_string(),
            );
            let mut tx = app.store.begin().await?;
            settings::put(&mut tx, KEY_STAGE, "started").await?;
            settings::put(&mut tx, KEY_ROOT, &ids.0).await?;
            settings::put(&mut tx, KEY_INTERMEDIATE, &ids.1).await?;
            tx.commit().await?;
            ids
        }
    };
    let existing = {
        let mut conn = app.store.reader().acquire().await?;
        store::cas::get_any_tenant(&mut conn, &root_id).await?
    };
    if existing.is_none() {
        let purchase = Purchase {
            subject: SubjectFields {
                common_name: b.root_common_name.clone(),
                organization: Some("Vellum".into()),
                ..Default::default()
            },
            key_algorithm,
            validity_days: 3650,
            service_months: 120,
            quota: b.root_quota,
            intermediate_common_name: Some(b.intermediate_common_name.clone()),
        };
        hierarchy::purchase_root_with_ids(
            app,
            tenant,
            &purchase,
            root_id.clone(),
            inter_id.clone(),
        )
        .await?;
    }
    for id in [&root_id, &inter_id] {
        if hierarchy::load(app, tenant, id).await?.status == CaStatus::Pending {
            hierarchy::enable(app, tenant, id, EnableMode::Generate).await?;
        }
    }
    let inter = hierarchy::load(app, tenant, &inter_id).await?;
    if inter.quota_assigned == 0 {
        hierarchy::assign_quota(app, tenant, &root_id, &inter_id, b.intermediate_quota).await?;
    }
    let mut tx = app.store.begin().await?;
    settings::put(&mut tx, KEY_STAGE, "done").await?;
    tx.commit().await?;
    tracing::info!(root = %root_id, intermediate = %inter_id, "bootstrapped the default CA hierarchy");
    Ok((root_id, inter_id))
}

/// Fails early, with a clear message, when the master key cannot open the CA keys.
async fn check_master_key(app: &App) -> Result<()> {
    let ca = hierarchy::load(app, &app.defaults.tenant_id, &app.defaults.intermediate_id).await?;
    if ca.key_sealed.is_some() {
        Signer::load(&app.master, &ca).map_err(|_| {
            Error::config(
                "the master key does not open the CA keys in this database; \
                 set VELLUM_MASTER_KEY (or <data>/master.key) to the key this database was created with",
            )
        })?;
    }
    Ok(())
}

async fn write_root_pem(app: &App, paths: &Paths) -> Result<()> {
    let root = hierarchy::load(app, &app.defaults.tenant_id, &app.defaults.root_id).await?;
    if let Some(der) = &root.certificate_der {
        let pem = cert_pem(der);
        if std::fs::read_to_string(&paths.root_pem).ok().as_deref() != Some(pem.as_str()) {
            vellum_core::fsutil::write_public(&paths.root_pem, pem.as_bytes())?;
        }
    }
    Ok(())
}

/// The names the self-issued server certificate covers.
pub fn server_names(config: &Config) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for extra in &config.tls.names {
        if !names.contains(extra) {
            names.push(extra.clone());
        }
    }
    for url in [config.public_url(), config.public_http_url()] {
        if let Some(host) = url_host(&url) {
            if !names.contains(&host) {
                names.push(host);
            }
        }
    }
    names
}

fn url_host(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1)?;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    (!host.is_empty()).then_some(host)
}

/// The PEM chain and key the HTTPS listener serves: the operator's pair when configured,
/// else the self-issued certificate (issued again when missing, expiring within 30 days,
/// or not covering the configured names).
pub async fn server_tls_material(app: &App, paths: &Paths) -> Result<(String, String)> {
    if let (Some(cert), Some(key)) = (&app.config.tls.cert_file, &app.config.tls.key_file) {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .map_err(|e| Error::config(format!("reading {}: {e}", p.display())))
        };
        return Ok((read(cert)?, read(key)?));
    }
    let names = server_names(&app.config);
    if let (Ok(chain), Ok(key)) = (
        std::fs::read_to_string(&paths.tls_cert),
        std::fs::read_to_string(&paths.tls_key),
    ) {
        if server_cert_still_good(&chain, &names) {
            return Ok((chain, key));
        }
    }
    let sans = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(n.clone()),
        })
        .collect::<Vec<_>>();
    let issued = issue::issue(
        app,
        IssueRequest {
            tenant_id: app.defaults.tenant_id.clone(),
            ca_id: app.defaults.intermediate_id.clone(),
            leaf_type: LeafType::Server,
            subject: SubjectFields {
                common_name: "localhost".into(),
                organization: Some("Vellum".into()),
                ..Default::default()
            },
            sans,
            validity_days: 365,
            include_crl: true,
            key: KeySource::Generate(KeyAlgorithm::EcP256),
            source: CertificateSource::System,
            name: Some("vellum server TLS".into()),
            tags: BTreeMap::new(),
            requester: Some("system".into()),
            spec_json: serde_json::json!({"purpose": "server-tls"}),
            renewed_from: None,
            audit: None,
            acme_names: false,
            followup: None,
            est_client: None,
        },
    )
    .await?;
    let inter =
        hierarchy::load(app, &app.defaults.tenant_id, &app.defaults.intermediate_id).await?;
    let mut chain = cert_pem(&issued.record.certificate_der);
    if let Some(der) = &inter.certificate_der {
        chain.push_str(&cert_pem(der));
    }
    let key = issued
        .private_key_pem
        .map(|k| k.to_string())
        .ok_or_else(|| Error::internal("server key missing"))?;
    vellum_core::fsutil::write_public(&paths.tls_cert, chain.as_bytes())?;
    vellum_core::fsutil::write_private(&paths.tls_key, key.as_bytes())?;
    tracing::info!(serial = %issued.record.serial, "issued the server TLS certificate");
    Ok((chain, key))
}

fn server_cert_still_good(chain_pem: &str, names: &[String]) -> bool {
    let Some(first) = pem::parse_many(chain_pem)
        .ok()
        .and_then(|b| b.into_iter().next())
    else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(first.contents()) else {
        return false;
    };
    if cert.validity().not_after.timestamp() < vellum_core::time::now() + 30 * 86_400 {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let present: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.iter().all(|n| present.contains(n))
}
