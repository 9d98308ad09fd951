//! ACME state: settings, EAB keys, accounts, orders, authorizations, challenges, nonces.

use super::recent::Rows;
use super::{decode_spelled, placeholder_list, query, Conn, Row, Tx};
use vellum_core::error::Result;
use vellum_core::status::{
    AccountStatus, AcmeProfile, AuthzStatus, ChallengeStatus, ChallengeType, IdentifierType,
    OrderStatus, Transition,
};

/// Most rows one multi-row INSERT carries (the widest, orders, binds 12 values a row).
pub const ROWS_PER_INSERT: usize = 500;

/// Per-CA ACME settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The intermediate CA whose ACME directory these settings govern.
    pub ca_id: String,
    /// False: every ACME endpoint of the CA answers 404.
    pub enabled: bool,
    /// True: new accounts must carry an external account binding (an EAB key of this CA).
    pub require_eab: bool,
    /// Suffixes (`example.com` allows it and its subdomains) or exact names; empty = any.
    pub allowed_domains: Vec<String>,
    /// Whether orders may name IP addresses.
    pub allow_ip: bool,
    /// Challenge types offered; a new authorization gets one challenge of each type that
    /// suits its identifier.
    pub challenges: Vec<ChallengeType>,
    /// Validity of issued certificates, in days, when an order asks for no `notAfter`.
    pub default_validity_days: i64,
}

impl Settings {
    /// The settings a CA has before anyone changed them.
    pub fn defaults(ca_id: &str) -> Settings {
        Settings {
            ca_id: ca_id.to_string(),
            enabled: true,
            require_eab: false,
            allowed_domains: Vec::new(),
            allow_ip: true,
            challenges: vec![
                ChallengeType::Http01,
                ChallengeType::Dns01,
                ChallengeType::TlsAlpn01,
            ],
            default_validity_days: 90,
        }
    }
}

/// The settings of `ca_id` (defaults when never set).
pub async fn settings(conn: &mut Conn, ca_id: &str) -> Result<Settings> {
    let row = query("SELECT * FROM acme_settings WHERE ca_id = $1")
        .bind(ca_id)
        .fetch_optional(conn)
        .await?;
    let Some(r) = row else {
        return Ok(Settings::defaults(ca_id));
    };
    let ca_id: String = r.try_get("ca_id")?;
    Ok(Settings {
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        require_eab: r.try_get::<i64, _>("require_eab")? != 0,
        allowed_domains: super::decode_json(
            "acme_settings",
            "allowed_domains_json",
            &ca_id,
            &r.try_get::<String, _>("allowed_domains_json")?,
        )?,
        allow_ip: r.try_get::<i64, _>("allow_ip")? != 0,
        challenges: super::decode_json(
            "acme_settings",
            "challenges_json",
            &ca_id,
            &r.try_get::<String, _>("challenges_json")?,
        )?,
        ca_id,
        default_validity_days: r.try_get("default_validity_days")?,
    })
}

/// Stores the settings of a CA (insert or overwrite).
pub async fn put_settings(conn: &mut Tx, s: &Settings) -> Result<()> {
    conn.retire_caches();
    query(
        "INSERT INTO acme_settings (ca_id, enabled, require_eab, allowed_domains_json, allow_ip, \
         challenges_json, default_validity_days) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (ca_id) DO UPDATE SET enabled = excluded.enabled, require_eab = excluded.require_eab, \
         allowed_domains_json = excluded.allowed_domains_json, allow_ip = excluded.allow_ip, \
         challenges_json = excluded.challenges_json, default_validity_days = excluded.default_validity_days",
    )
    .bind(&s.ca_id)
    .bind(s.enabled as i64)
    .bind(s.require_eab as i64)
    .bind(serde_json::to_string(&s.allowed_domains).unwrap_or_default())
    .bind(s.allow_ip as i64)
    .bind(serde_json::to_string(&s.challenges).unwrap_or_default())
    .bind(s.default_validity_days)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records single-use nonces `(nonce, expires_at)` as redeemed, 200 per statement, and
/// returns those that were not already (the others are replays). The nonces must be
/// distinct.
pub async fn redeem_nonces(
    conn: &mut Conn,
    nonces: &[(&str, i64)],
) -> Result<std::collections::HashSet<String>> {
    let mut fresh = std::collections::HashSet::new();
    for chunk in nonces.chunks(200) {
        let sql = format!(
            "INSERT INTO acme_used_nonces (nonce, expires_at) VALUES {} \
             ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
            super::values_placeholders(conn, chunk.len(), 2)
        );
        let mut q = query(&sql);
        for (nonce, expires_at) in chunk {
            q = q.bind(*nonce).bind(*expires_at);
        }
        for row in q.fetch_all(&mut *conn).await? {
            fresh.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(fresh)
}

/// Forgets redeemed nonces that expired before `now` (they can no longer be replayed
/// anyway). Returns how many were forgotten.
pub async fn purge_nonces(conn: &mut Conn, now: i64) -> Result<u64> {
    let res = query("DELETE FROM acme_used_nonces WHERE expires_at < $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(res.rows_affected())
}

/// An EAB key.
#[derive(Debug, Clone)]
pub struct EabKey {
    /// Key identifier the client presents (`eab_` + 32 lower-case hex digits).
    pub kid: String,
    /// The CA whose ACME directory accepts it.
    pub ca_id: String,
    /// The CA's tenant.
    pub tenant_id: String,
    /// The 32-byte HMAC key, sealed with the master key bound to `kid` (the plain key is
    /// shown once, when created).
    pub key_sealed: Vec<u8>,
    /// The account it was bound to; `None` until used (a key binds one account only).
    pub account_id: Option<String>,
}

/// Stores a new, unbound EAB key created at `now`.
pub async fn insert_eab(conn: &mut Tx, k: &EabKey, now: i64) -> Result<()> {
    conn.retire_caches();
    query(
        "INSERT INTO acme_eab_keys (kid, ca_id, tenant_id, key_sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&k.kid)
    .bind(&k.ca_id)
    .bind(&k.tenant_id)
    .bind(&k.key_sealed)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// An EAB key by kid, bound or not.
pub async fn eab(conn: &mut Conn, kid: &str) -> Result<Option<EabKey>> {
    let row = query("SELECT * FROM acme_eab_keys WHERE kid = $1")
        .bind(kid)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(EabKey {
            kid: r.try_get("kid")?,
            ca_id: r.try_get("ca_id")?,
            tenant_id: r.try_get("tenant_id")?,
            key_sealed: r.try_get("key_sealed")?,
            account_id: r.try_get("account_id")?,
        })
    })
    .transpose()
}

/// Binds an EAB key to an account. False when it is bound already or does not exist.
pub async fn bind_eab(conn: &mut Conn, kid: &str, account_id: &str) -> Result<bool> {
    let res =
        query("UPDATE acme_eab_keys SET account_id = $1 WHERE kid = $2 AND account_id IS NULL")
            .bind(account_id)
            .bind(kid)
            .execute(conn)
            .await?;
    Ok(res.rows_affected() == 1)
}

/// An ACME account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Stable identifier (UUIDv7, simple form), the last segment of the account URL.
    pub id: String,
    /// The CA whose ACME directory it was created at.
    pub ca_id: String,
    /// The CA's tenant.
    pub tenant_id: String,
    /// RFC 7638 thumbprint of the account key (base64url SHA-256, no padding); unique
    /// across accounts.
    pub thumbprint: String,
    /// The account's public key, a JWK as JSON text.
    pub jwk_json: String,
    /// Account status as stored.
    pub status: AccountStatus,
    /// Contact URLs (`mailto:`), as the client gave them.
    pub contact: Vec<String>,
    /// Whether the client agreed to the terms of service (`termsOfServiceAgreed`).
    pub tos_agreed: bool,
    /// The EAB key it was created with; `None` without external account binding.
    pub eab_kid: Option<String>,
    /// When it was created, Unix seconds.
    pub created_at: i64,
}

fn account(r: &Row) -> Result<Account> {
    let id: String = r.try_get("id")?;
    Ok(Account {
        contact: super::decode_json(
            "acme_accounts",
            "contact_json",
            &id,
            &r.try_get::<String, _>("contact_json")?,
        )?,
        id,
        ca_id: r.try_get("ca_id")?,
        tenant_id: r.try_get("tenant_id")?,
        thumbprint: r.try_get("thumbprint")?,
        jwk_json: r.try_get("jwk_json")?,
        status: decode_spelled(r, "acme_accounts", "status")?,
        tos_agreed: r.try_get::<i64, _>("tos_agreed")? != 0,
        eab_kid: r.try_get("eab_kid")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts an account. A thumbprint already in use is an error (unique constraint).
pub async fn insert_account(conn: &mut Conn, a: &Account) -> Result<()> {
    query(
        "INSERT INTO acme_accounts (id, ca_id, tenant_id, thumbprint, jwk_json, status, contact_json, \
         tos_agreed, eab_kid, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&a.id)
    .bind(&a.ca_id)
    .bind(&a.tenant_id)
    .bind(&a.thumbprint)
    .bind(&a.jwk_json)
    .bind(a.status.as_str())
    .bind(serde_json::to_string(&a.contact).unwrap_or_default())
    .bind(a.tos_agreed as i64)
    .bind(&a.eab_kid)
    .bind(a.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An account by id, whatever its status.
pub async fn account_by_id(conn: &mut Conn, id: &str) -> Result<Option<Account>> {
    let row = query("SELECT * FROM acme_accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(account).transpose()
}

/// The account whose key has this RFC 7638 thumbprint.
pub async fn account_by_thumbprint(conn: &mut Conn, thumbprint: &str) -> Result<Option<Account>> {
    let row = query("SELECT * FROM acme_accounts WHERE thumbprint = $1")
        .bind(thumbprint)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(account).transpose()
}

/// Sets an account's contact list and status (unconditionally).
pub async fn update_account(
    conn: &mut Tx,
    id: &str,
    contact: &[String],
    status: AccountStatus,
) -> Result<()> {
    conn.retire_caches();
    query("UPDATE acme_accounts SET contact_json = $1, status = $2 WHERE id = $3")
        .bind(serde_json::to_string(contact).unwrap_or_default())
        .bind(status.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces an account's key (keyChange): its thumbprint and JWK. False when the new key
/// is already in use by an account, or there is no account `id`.
pub async fn change_key(conn: &mut Tx, id: &str, thumbprint: &str, jwk_json: &str) -> Result<bool> {
    conn.retire_caches();
    let res = query("UPDATE acme_accounts SET thumbprint = $1, jwk_json = $2 WHERE id = $3")
        .bind(thumbprint)
        .bind(jwk_json)
        .bind(id)
        .execute(conn)
        .await;
    match res {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(e) if super::tenants::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An ACME order.
#[derive(Debug, Clone)]
pub struct Order {
    /// Stable identifier (UUIDv7, simple form), the last segment of the order URL.
    pub id: String,
    /// The account that placed it.
    pub account_id: String,
    /// The CA whose ACME directory it was placed at.
    pub ca_id: String,
    /// As stored: a pending order past `expires_at` is still `pending` here
    /// (`ra::acme::state::order_effective` says what it is).
    pub status: OrderStatus,
    /// The identifiers asked for: JSON array of `{"type": "dns"|"ip", "value": …}`, a
    /// wildcard name with its `*.`.
    pub identifiers_json: String,
    /// The certificate profile asked for (`tls-server` unless the order named another).
    pub profile: AcmeProfile,
    /// The `notBefore` the client asked for, Unix seconds; `None` when it asked for none.
    pub not_before: Option<i64>,
    /// The `notAfter` the client asked for, Unix seconds (finalization derives the
    /// certificate's validity from it); `None` when it asked for none.
    pub not_after: Option<i64>,
    /// Unix seconds after which a still pending order reads as invalid (a ready one can
    /// still be finalized).
    pub expires_at: i64,
    /// Why the order became invalid: an RFC 8555 problem document as JSON text; `None`
    /// unless it failed.
    pub error_json: Option<String>,
    /// The issued certificate's id (`certificates.id`); `None` until the order is valid.
    pub certificate_id: Option<String>,
    /// The ARI certificate identifier (RFC 9773) of the certificate this order replaces,
    /// as the client sent it; `None` when it replaces none.
    pub replaces: Option<String>,
    /// When it was placed, Unix seconds.
    pub created_at: i64,
    /// Its authorizations' ids in identifier order (JSON array).
    pub authz_ids_json: String,
}

impl Order {
    /// The ids of the order's authorizations, in identifier order.
    pub fn authz_ids(&self) -> serde_json::Result<Vec<String>> {
        serde_json::from_str(&self.authz_ids_json)
    }
}

fn order(r: &Row) -> Result<Order> {
    Ok(Order {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        ca_id: r.try_get("ca_id")?,
        status: decode_spelled(r, "acme_orders", "status")?,
        identifiers_json: r.try_get("identifiers_json")?,
        profile: decode_spelled(r, "acme_orders", "profile")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        expires_at: r.try_get("expires_at")?,
        error_json: r.try_get("error_json")?,
        certificate_id: r.try_get("certificate_id")?,
        replaces: r.try_get("replaces")?,
        created_at: r.try_get("created_at")?,
        authz_ids_json: r
            .try_get::<Option<String>, _>("authz_ids_json")?
            .unwrap_or_else(|| "[]".into()),
    })
}

/// Inserts orders, [`ROWS_PER_INSERT`] per statement (and into the in-memory copy of recent
/// rows at commit).
pub async fn insert_orders(tx: &mut Tx, orders: &[&Order]) -> Result<()> {
    tx.on_commit_copy(orders, Rows::insert_orders);
    let conn: &mut Conn = tx;
    for chunk in orders.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO acme_orders (id, account_id, ca_id, status, identifiers_json, profile, \
             not_before, not_after, expires_at, replaces, created_at, authz_ids_json) VALUES {}",
            super::values_placeholders(conn, chunk.len(), 12)
        );
        let mut q = query(&sql);
        for o in chunk {
            q = q
                .bind(&o.id)
                .bind(&o.account_id)
                .bind(&o.ca_id)
                .bind(o.status.as_str())
                .bind(&o.identifiers_json)
                .bind(o.profile.as_str())
                .bind(o.not_before)
                .bind(o.not_after)
                .bind(o.expires_at)
                .bind(&o.replaces)
                .bind(o.created_at)
                .bind(&o.authz_ids_json);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// An order by id.
pub async fn order_by_id(conn: &mut Conn, id: &str) -> Result<Option<Order>> {
    let row = query("SELECT * FROM acme_orders WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(order).transpose()
}

/// Order ids of an account greater than `after`, oldest first, at most `limit`.
pub async fn order_ids(
    conn: &mut Conn,
    account_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>> {
    let rows =
        query("SELECT id FROM acme_orders WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(account_id)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(conn)
            .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// An order (claimed for finalization) becomes `status` (valid) with its certificate
/// (unconditionally: the caller holds the finalization claim).
pub async fn order_issued(
    tx: &mut Tx,
    id: &str,
    certificate_id: &str,
    status: OrderStatus,
) -> Result<()> {
    query("UPDATE acme_orders SET status = $1, certificate_id = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(certificate_id)
        .bind(id)
        .execute(tx)
        .await?;
    let (id, cert) = (id.to_string(), certificate_id.to_string());
    tx.on_commit(move |r| {
        r.update_orders([&id], |o| {
            o.status = status;
            o.certificate_id = Some(cert.clone());
        })
    });
    Ok(())
}

/// Every order that needs authorization `authz_id` and is in one of `from` (unfinished)
/// becomes `to` (invalid) with a problem document.
pub async fn fail_orders_of_authz(
    tx: &mut Tx,
    authz_id: &str,
    error_json: &str,
    from: &[OrderStatus],
    to: OrderStatus,
) -> Result<()> {
    let conn: &mut Conn = tx;
    let sql = format!(
        "UPDATE acme_orders SET status = {}, error_json = {} WHERE status IN ({}) \
         AND id IN (SELECT order_id FROM acme_order_authzs WHERE authz_id = {}) RETURNING id",
        placeholder_list(conn, 1, 1),
        placeholder_list(conn, 2, 1),
        placeholder_list(conn, 3, from.len()),
        placeholder_list(conn, 3 + from.len(), 1),
    );
    let mut q = query(&sql).bind(to.as_str()).bind(error_json);
    for f in from {
        q = q.bind(f.as_str());
    }
    let rows = q.bind(authz_id).fetch_all(tx).await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let error_json = error_json.to_string();
    if to == OrderStatus::Invalid && !ids.is_empty() {
        let n = ids.len() as u64;
        tx.after_commit(move || vellum_core::metrics::acme_orders(false, n));
    }
    tx.on_commit(move |r| {
        r.update_orders(&ids, |o| {
            o.status = to;
            o.error_json = Some(error_json.clone());
        })
    });
    Ok(())
}

/// An authorization.
#[derive(Debug, Clone)]
pub struct Authz {
    /// Stable identifier (UUIDv7, simple form), the last segment of the authorization URL.
    pub id: String,
    /// The account it belongs to (reused only by that account's orders).
    pub account_id: String,
    /// DNS name or IP address.
    pub id_type: IdentifierType,
    /// The identifier without any `*.` prefix (an IP address in its canonical text form).
    pub id_value: String,
    /// True when the order asked for `*.` + `id_value`.
    pub wildcard: bool,
    /// As stored: a pending authorization past `expires_at` is still `pending` here
    /// (`ra::acme::state::authz_effective` says what it is).
    pub status: AuthzStatus,
    /// Unix seconds: when a pending authorization expires; once valid, until when it may
    /// be reused.
    pub expires_at: i64,
    /// When it was created, Unix seconds.
    pub created_at: i64,
}

fn authz(r: &Row) -> Result<Authz> {
    Ok(Authz {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        id_type: decode_spelled(r, "acme_authzs", "id_type")?,
        id_value: r.try_get("id_value")?,
        wildcard: r.try_get::<i64, _>("wildcard")? != 0,
        status: decode_spelled(r, "acme_authzs", "status")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts authorizations, [`ROWS_PER_INSERT`] per statement (and into the in-memory copy
/// of recent rows at commit).
pub async fn insert_authzs(tx: &mut Tx, authzs: &[&Authz]) -> Result<()> {
    tx.on_commit_copy(authzs, Rows::insert_authzs);
    let conn: &mut Conn = tx;
    for chunk in authzs.chunks(ROWS_PER_INSERT) {
        let sql = format!(
        "INSERT INTO acme_authzs (id, account_id, id_type, id_value, wildcard, status, expires_at, created_at) \
         VALUES {}",
        super::values_placeholders(conn, chunk.len(), 8)
    );
        let mut q = query(&sql);
        for a in chunk {
            q = q
                .bind(&a.id)
                .bind(&a.account_id)
                .bind(a.id_type.as_str())
                .bind(&a.id_value)
                .bind(a.wildcard as i64)
                .bind(a.status.as_str())
                .bind(a.expires_at)
                .bind(a.created_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A valid authorization of the account for the identifier, unexpired at `now`, for reuse
/// by a new order: the one that lasts longest; `None` when there is none.
pub async fn reusable_authz(
    conn: &mut Conn,
    account_id: &str,
    id_type: IdentifierType,
    id_value: &str,
    wildcard: bool,
    now: i64,
) -> Result<Option<Authz>> {
    let row = query(
        "SELECT * FROM acme_authzs WHERE account_id = $1 AND id_type = $2 AND id_value = $3 \
         AND wildcard = $4 AND status = 'valid' AND expires_at > $5 ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(account_id)
    .bind(id_type.as_str())
    .bind(id_value)
    .bind(wildcard as i64)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(authz).transpose()
}

/// The identifiers (type, value without `*.`) of the account's valid authorizations
/// unexpired at `now`.
pub async fn valid_authz_values(
    conn: &mut Conn,
    account_id: &str,
    now: i64,
) -> Result<Vec<(IdentifierType, String)>> {
    let rows = query(
        "SELECT id_type, id_value FROM acme_authzs WHERE account_id = $1 AND status = 'valid' AND expires_at > $2",
    )
    .bind(account_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                decode_spelled(r, "acme_authzs", "id_type")?,
                r.try_get("id_value")?,
            ))
        })
        .collect()
}

/// An authorization in one of `from` becomes `to`. False when it was in none of them.
pub async fn transition_authz(
    tx: &mut Tx,
    id: &str,
    from: &[AuthzStatus],
    to: AuthzStatus,
) -> Result<bool> {
    let conn: &mut Conn = tx;
    let sql = format!(
        "UPDATE acme_authzs SET status = {} WHERE id = {} AND status IN ({})",
        placeholder_list(conn, 1, 1),
        placeholder_list(conn, 2, 1),
        placeholder_list(conn, 3, from.len()),
    );
    let mut q = query(&sql).bind(to.as_str()).bind(id);
    for f in from {
        q = q.bind(f.as_str());
    }
    if q.execute(tx).await?.rows_affected() != 1 {
        return Ok(false);
    }
    let id = id.to_string();
    tx.on_commit(move |r| r.update_authzs([&id], |a| a.status = to));
    Ok(true)
}

/// Links orders to their authorizations: `(order_id, authz_id, position)` rows, position
/// being the identifier's index in the order.
pub async fn link(conn: &mut Conn, rows: &[(&str, &str, i64)]) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO acme_order_authzs (order_id, authz_id, position) VALUES {}",
            super::values_placeholders(conn, chunk.len(), 3)
        );
        let mut q = query(&sql);
        for (order_id, authz_id, position) in chunk {
            q = q.bind(*order_id).bind(*authz_id).bind(*position);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Stable identifier (UUIDv7, simple form), the last segment of the challenge URL.
    pub id: String,
    /// The authorization it proves.
    pub authz_id: String,
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    pub kind: ChallengeType,
    /// The challenge token: 32 random bytes, base64url without padding.
    pub token: String,
    /// Challenge status as stored.
    pub status: ChallengeStatus,
    /// When the last validation attempt finished, successful or not, Unix seconds;
    /// `None` until one has.
    pub validated_at: Option<i64>,
    /// Why validation failed: an RFC 8555 problem document as JSON text; `None` unless it
    /// failed.
    pub error_json: Option<String>,
}

/// Inserts challenges, [`ROWS_PER_INSERT`] per statement (and into the in-memory copy of
/// recent rows at commit).
pub async fn insert_challenges(tx: &mut Tx, challenges: &[&Challenge]) -> Result<()> {
    tx.on_commit_copy(challenges, Rows::insert_challenges);
    let conn: &mut Conn = tx;
    for chunk in challenges.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO acme_challenges (id, authz_id, type, token, status) VALUES {}",
            super::values_placeholders(conn, chunk.len(), 5)
        );
        let mut q = query(&sql);
        for c in chunk {
            q = q
                .bind(&c.id)
                .bind(&c.authz_id)
                .bind(c.kind.as_str())
                .bind(&c.token)
                .bind(c.status.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Challenge columns under `c_` names, for queries that join them with an authorization.
const CHALLENGE_COLUMNS_AS_C: &str = "c.id AS c_id, c.authz_id AS c_authz_id, c.type AS c_type, \
     c.token AS c_token, c.status AS c_status, c.validated_at AS c_validated_at, \
     c.error_json AS c_error_json";

/// The challenge in a row's `c_` columns (none when a LEFT JOIN found none).
fn challenge_as_c(r: &Row) -> Result<Option<Challenge>> {
    let Some(id) = r.try_get::<Option<String>, _>("c_id")? else {
        return Ok(None);
    };
    Ok(Some(Challenge {
        id,
        authz_id: r.try_get("c_authz_id")?,
        kind: decode_spelled(r, "acme_challenges", "c_type")?,
        token: r.try_get("c_token")?,
        status: decode_spelled(r, "acme_challenges", "c_status")?,
        validated_at: r.try_get("c_validated_at")?,
        error_json: r.try_get("c_error_json")?,
    }))
}

/// An authorization with its challenges (by type), in one query; `None` when there is no
/// such authorization.
pub async fn authz_with_challenges(
    conn: &mut Conn,
    id: &str,
) -> Result<Option<(Authz, Vec<Challenge>)>> {
    let sql = format!(
        "SELECT a.*, {CHALLENGE_COLUMNS_AS_C} FROM acme_authzs a \
         LEFT JOIN acme_challenges c ON c.authz_id = a.id WHERE a.id = $1 ORDER BY c.type"
    );
    let rows = query(&sql).bind(id).fetch_all(conn).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut challenges = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(c) = challenge_as_c(r)? {
            challenges.push(c);
        }
    }
    Ok(Some((authz(first)?, challenges)))
}

/// A challenge with its authorization, in one query; `None` when there is no such
/// challenge.
pub async fn challenge_with_authz(conn: &mut Conn, id: &str) -> Result<Option<(Challenge, Authz)>> {
    let sql = format!(
        "SELECT a.*, {CHALLENGE_COLUMNS_AS_C} FROM acme_challenges c \
         JOIN acme_authzs a ON a.id = c.authz_id WHERE c.id = $1"
    );
    let row = query(&sql).bind(id).fetch_optional(conn).await?;
    let Some(r) = row else { return Ok(None) };
    match challenge_as_c(&r)? {
        Some(c) => Ok(Some((c, authz(&r)?))),
        None => Ok(None),
    }
}

/// Records the outcome of a validation: the challenge, if still in `t.from`, becomes
/// `t.to` at `at`, with `error_json` (a problem document) or none. False when it was not
/// in `t.from` (nothing changed).
pub async fn finish_challenge(
    tx: &mut Tx,
    id: &str,
    t: Transition<ChallengeStatus>,
    at: i64,
    error_json: Option<&str>,
) -> Result<bool> {
    let done = query(
        "UPDATE acme_challenges SET status = $1, validated_at = $2, error_json = $3 \
         WHERE id = $4 AND status = $5",
    )
    .bind(t.to.as_str())
    .bind(at)
    .bind(error_json)
    .bind(id)
    .bind(t.from.as_str())
    .execute(tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let status = t.to;
    let (id, error_json) = (id.to_string(), error_json.map(str::to_string));
    tx.on_commit(move |r| {
        r.update_challenges([&id], |c| {
            c.status = status;
            c.validated_at = Some(at);
            c.error_json = error_json.clone();
        })
    });
    Ok(true)
}

/// An order: from the in-memory copy of recent rows (`store::recent`) when it is there,
/// else from the database.
pub async fn find_order(store: &super::Store, id: &str) -> Result<Option<Order>> {
    if let Some(o) = store.recent().and_then(|r| r.order(id)) {
        return Ok(Some(o));
    }
    let mut conn = store.reader().acquire().await?;
    order_by_id(&mut conn, id).await
}

/// An authorization with its challenges, as [`find_order`] finds orders.
pub async fn find_authz(store: &super::Store, id: &str) -> Result<Option<(Authz, Vec<Challenge>)>> {
    if let Some(a) = store.recent().and_then(|r| r.authz(id)) {
        return Ok(Some(a));
    }
    let mut conn = store.reader().acquire().await?;
    authz_with_challenges(&mut conn, id).await
}

/// A challenge with its authorization, as [`find_order`] finds orders.
pub async fn find_challenge(store: &super::Store, id: &str) -> Result<Option<(Challenge, Authz)>> {
    if let Some(c) = store.recent().and_then(|r| r.challenge(id)) {
        return Ok(Some(c));
    }
    let mut conn = store.reader().acquire().await?;
    challenge_with_authz(&mut conn, id).await
}
