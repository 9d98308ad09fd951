//! EST state: per-intermediate settings, HTTP Basic client accounts, and the certificate
//! look-ups client-certificate authentication needs.

use super::certificates::CertRow;
use super::{decode_spelled, query, Conn, Row};
use crate::pool::Tx;
use vellum_core::error::{Error, Result};
use vellum_core::status::{CaKind, CaStatus, LeafType};

/// Authentication methods an EST service may accept.
pub const AUTH_METHODS: &[&str] = &["basic", "client_cert"];

/// Per-CA EST settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The intermediate CA.
    pub ca_id: String,
    /// False: every EST endpoint of the CA answers 404.
    pub enabled: bool,
    /// Path segment of `/.well-known/est/{label}/…` (unique across the installation).
    pub label: Option<String>,
    /// Accepted authentication methods: `basic`, `client_cert`.
    pub auth: Vec<String>,
    /// Validity of enrolled certificates, days.
    pub default_validity_days: i64,
    /// Profile of enrolled certificates.
    pub certificate_type: LeafType,
    /// Trust anchors for client-certificate login (PEM bundle of CA certificates, e.g. a
    /// device maker's CA); `None`: only certificates this service issued to an EST account
    /// log in.
    pub client_cert_trust_pem: Option<String>,
    /// Glob patterns every name enrolled through a trust anchor must match (empty: any).
    pub client_cert_name_patterns: Vec<String>,
}

impl Settings {
    /// The settings a CA has before anyone changed them.
    pub fn defaults(ca_id: &str) -> Settings {
        Settings {
            ca_id: ca_id.to_string(),
            enabled: true,
            label: None,
            auth: AUTH_METHODS.iter().map(|s| s.to_string()).collect(),
            default_validity_days: 365,
            certificate_type: LeafType::Client,
            client_cert_trust_pem: None,
            client_cert_name_patterns: Vec::new(),
        }
    }

    /// True when `method` (`basic`, `client_cert`) is accepted.
    pub fn allows(&self, method: &str) -> bool {
        self.auth.iter().any(|m| m == method)
    }
}

fn settings_row(r: &Row) -> Result<Settings> {
    let ca_id: String = r.try_get("ca_id")?;
    Ok(Settings {
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        label: r.try_get("label")?,
        auth: super::decode_json(
            "est_settings",
            "auth_json",
            &ca_id,
            &r.try_get::<String, _>("auth_json")?,
        )?,
        default_validity_days: r.try_get("default_validity_days")?,
        certificate_type: decode_spelled(r, "est_settings", "certificate_type")?,
        client_cert_trust_pem: r.try_get("client_cert_trust_pem")?,
        client_cert_name_patterns: super::decode_json(
            "est_settings",
            "client_cert_name_patterns_json",
            &ca_id,
            &r.try_get::<String, _>("client_cert_name_patterns_json")?,
        )?,
        ca_id,
    })
}

/// The settings of `ca_id` (defaults when never set).
pub async fn settings(conn: &mut Conn, ca_id: &str) -> Result<Settings> {
    let row = query("SELECT * FROM est_settings WHERE ca_id = $1")
        .bind(ca_id)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(r) => settings_row(&r),
        None => Ok(Settings::defaults(ca_id)),
    }
}

/// The settings of the CA whose label is `label`, if any.
pub async fn settings_by_label(conn: &mut Conn, label: &str) -> Result<Option<Settings>> {
    let row = query("SELECT * FROM est_settings WHERE label = $1")
        .bind(label)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(settings_row).transpose()
}

/// Stores the settings of a CA. A label already used by another CA is refused with a 409.
pub async fn put_settings(conn: &mut Tx, s: &Settings) -> Result<()> {
    conn.retire_caches();
    let res = query(
        "INSERT INTO est_settings (ca_id, enabled, label, auth_json, default_validity_days, \
         certificate_type, client_cert_trust_pem, client_cert_name_patterns_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (ca_id) DO UPDATE SET enabled = excluded.enabled, label = excluded.label, \
         auth_json = excluded.auth_json, default_validity_days = excluded.default_validity_days, \
         certificate_type = excluded.certificate_type, \
         client_cert_trust_pem = excluded.client_cert_trust_pem, \
         client_cert_name_patterns_json = excluded.client_cert_name_patterns_json",
    )
    .bind(&s.ca_id)
    .bind(s.enabled as i64)
    .bind(&s.label)
    .bind(serde_json::to_string(&s.auth).map_err(Error::internal)?)
    .bind(s.default_validity_days)
    .bind(s.certificate_type.as_str())
    .bind(&s.client_cert_trust_pem)
    .bind(serde_json::to_string(&s.client_cert_name_patterns).map_err(Error::internal)?)
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if super::tenants::is_unique_violation(&e) => Err(Error::conflict(format!(
            "the EST label {:?} is already used by another CA",
            s.label.as_deref().unwrap_or_default()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// An EST client account (HTTP Basic).
#[derive(Debug, Clone)]
pub struct Client {
    /// The intermediate CA the account enrolls with.
    pub ca_id: String,
    /// Basic user name (unique per CA).
    pub username: String,
    /// Tenant of the CA.
    pub tenant_id: String,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// Glob patterns (`*` = any characters) every requested name must match; empty = any.
    pub name_patterns: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Token id of the admin who created it.
    pub created_by: Option<String>,
}

fn client_row(r: &Row) -> Result<Client> {
    let ca_id: String = r.try_get("ca_id")?;
    let username: String = r.try_get("username")?;
    Ok(Client {
        name_patterns: super::decode_json(
            "est_clients",
            "name_patterns_json",
            &format!("{ca_id}/{username}"),
            &r.try_get::<String, _>("name_patterns_json")?,
        )?,
        ca_id,
        username,
        tenant_id: r.try_get("tenant_id")?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// Creates a client account. False when the user name is taken for this CA.
pub async fn insert_client(conn: &mut Tx, c: &Client) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "INSERT INTO est_clients (ca_id, username, tenant_id, password_hash, name_patterns_json, \
         created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&c.ca_id)
    .bind(&c.username)
    .bind(&c.tenant_id)
    .bind(&c.password_hash)
    .bind(serde_json::to_string(&c.name_patterns).map_err(Error::internal)?)
    .bind(c.created_at)
    .bind(&c.created_by)
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) if super::tenants::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A client account of `ca_id`.
pub async fn client(conn: &mut Conn, ca_id: &str, username: &str) -> Result<Option<Client>> {
    let row = query("SELECT * FROM est_clients WHERE ca_id = $1 AND username = $2")
        .bind(ca_id)
        .bind(username)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(client_row).transpose()
}

/// A page of the client accounts of `ca_id`, by user name: names after `after`, at most
/// `limit` (1–1000).
pub async fn clients(
    conn: &mut Conn,
    ca_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Client>> {
    let sql = format!(
        "SELECT * FROM est_clients WHERE ca_id = $1 AND ($2 IS NULL OR username > $2) \
         ORDER BY username LIMIT {}",
        limit.clamp(1, 1000)
    );
    let rows = query(&sql).bind(ca_id).bind(after).fetch_all(conn).await?;
    rows.iter().map(client_row).collect()
}

/// Deletes a client account. False when there was none.
pub async fn delete_client(conn: &mut Tx, ca_id: &str, username: &str) -> Result<bool> {
    conn.retire_caches();
    let res = query("DELETE FROM est_clients WHERE ca_id = $1 AND username = $2")
        .bind(ca_id)
        .bind(username)
        .execute(conn)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Certificates of `tenant_id` with this serial (lower-case hex) whose DER is exactly
/// `der`, with the status of their issuing CA. Deleted certificates are included: they
/// may still be presented, and are refused by the caller as revoked or expired.
pub async fn certificate_by_der(
    conn: &mut Conn,
    tenant_id: &str,
    serial: &str,
    der: &[u8],
) -> Result<Option<(CertRow, CaStatus)>> {
    let rows = query(
        "SELECT c.id AS id, a.status AS ca_status FROM certificates c JOIN cas a ON a.id = c.ca_id \
         WHERE c.serial = $1 AND c.tenant_id = $2",
    )
    .bind(serial)
    .bind(tenant_id)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: String = r.try_get("id")?;
        let ca_status: CaStatus = decode_spelled(&r, "cas", "ca_status")?;
        if let Some(c) = super::certificates::get_any_tenant(&mut *conn, &id).await? {
            if c.certificate_der == der {
                return Ok(Some((c, ca_status)));
            }
        }
    }
    Ok(None)
}

/// What an EST request needs to know about its CA, read in one query.
#[derive(Debug, Clone)]
pub struct Service {
    /// The CA's EST settings (defaults when never set).
    pub settings: Settings,
    /// The CA's tenant.
    pub tenant_id: String,
    /// The CA's kind.
    pub kind: CaKind,
    /// The CA's status.
    pub status: CaStatus,
    /// Whether the CA has a label (false: it was addressed by id or as the default).
    pub by_label: bool,
    /// The Basic account asked for, if it exists.
    pub client: Option<Client>,
}

/// The CA whose EST label is `key`, or whose id is `key`, with its settings and, when
/// `username` is given, that client account: one round trip, as every enrollment needs it.
pub async fn service(
    conn: &mut Conn,
    key: &str,
    username: Option<&str>,
) -> Result<Option<Service>> {
    let row = query(
        "SELECT c.id AS ca_id, c.tenant_id AS tenant_id, c.kind AS kind, c.status AS status, \
         s.enabled AS enabled, s.label AS label, s.auth_json AS auth_json, \
         s.default_validity_days AS default_validity_days, s.certificate_type AS certificate_type, \
         s.client_cert_trust_pem AS client_cert_trust_pem, \
         s.client_cert_name_patterns_json AS client_cert_name_patterns_json, \
         k.username AS username, k.password_hash AS password_hash, \
         k.name_patterns_json AS name_patterns_json, k.created_at AS created_at, \
         k.created_by AS created_by \
         FROM cas c LEFT JOIN est_settings s ON s.ca_id = c.id \
         LEFT JOIN est_clients k ON k.ca_id = c.id AND k.username = $2 \
         WHERE c.id = COALESCE((SELECT ca_id FROM est_settings WHERE label = $1), $1)",
    )
    .bind(key)
    .bind(username.unwrap_or(""))
    .fetch_optional(conn)
    .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    // The joined rows decode as the tables' own rows do; absent ones are NULL.
    let settings = match r.try_get::<Option<i64>, _>("enabled")? {
        Some(_) => settings_row(&r)?,
        None => Settings::defaults(&r.try_get::<String, _>("ca_id")?),
    };
    let client = match r.try_get::<Option<String>, _>("username")? {
        Some(_) => Some(client_row(&r)?),
        None => None,
    };
    let tenant_id: String = r.try_get("tenant_id")?;
    let by_label = settings.label.as_deref() == Some(key);
    Ok(Some(Service {
        settings,
        tenant_id,
        kind: decode_spelled(&r, "cas", "kind")?,
        status: decode_spelled(&r, "cas", "status")?,
        by_label,
        client,
    }))
}
