//! Certificate authorities: rows, state transitions and quota moves.
//!
//! Every transition is a single conditional `UPDATE … WHERE status = <expected>`, so two
//! racing requests cannot both succeed; quota moves are guarded by `… >= count` conditions
//! and `CHECK (… >= 0)` constraints, so quota never goes below zero on any backend.

use super::{decode_spelled, query, Conn, Row};
use crate::pool::Tx;
use vellum_core::error::Result;
use vellum_core::status::{CaKind, CaStatus, KeySource, KeyStorage, RevocationReason};

/// One CA as stored.
#[derive(Debug, Clone, Default)]
pub struct CaRow {
    /// Stable identifier (UUIDv7, so ids sort in creation order).
    pub id: String,
    /// The tenant that bought the CA; every admin query is scoped by it.
    pub tenant_id: String,
    /// Root or intermediate.
    pub kind: CaKind,
    /// The issuing root of an intermediate; `None` for a root.
    pub parent_id: Option<String>,
    /// Lifecycle state (pending → enabled → revoked, pending → refunded, revoked or
    /// refunded → removed); changed only by the conditional updates of this module.
    pub status: CaStatus,
    /// Subject commonName as purchased (trimmed).
    pub common_name: String,
    /// Subject organizationName (O), if purchased with one.
    pub organization: Option<String>,
    /// Subject organizationalUnitName (OU), if purchased with one.
    pub organizational_unit: Option<String>,
    /// Subject countryName (C), if purchased with one.
    pub country: Option<String>,
    /// Subject stateOrProvinceName (ST), if purchased with one.
    pub state: Option<String>,
    /// Subject localityName (L), if purchased with one.
    pub locality: Option<String>,
    /// RFC 4514 rendering of the subject (of the certificate once enabled).
    pub subject: String,
    /// Key algorithm by its API name (`ec-p256`, `rsa-3072`, `ed25519`…): the one asked
    /// for at purchase, then the one of the key actually installed when enabled.
    pub key_algorithm: String,
    /// Validity asked for the CA certificate, in days: a certificate generated at
    /// enablement runs that long from then (an intermediate's is cut to end no later than
    /// its root's certificate); an uploaded one keeps its own validity.
    pub validity_days: i64,
    /// When the CA was bought, Unix seconds (starts the refund window).
    pub purchased_at: i64,
    /// End of the paid service period, Unix seconds (an intermediate inherits its root's):
    /// from then on the CA can be neither enabled nor spend quota.
    pub service_until: i64,
    /// Calendar months of service bought, counted from `service_started_at` (a root's;
    /// an intermediate carries its root's).
    pub service_months: i64,
    /// Where the service months count from: the purchase, or the renewal that restarted
    /// a lapsed service.
    pub service_started_at: i64,
    /// Inventory tags, a JSON object of strings.
    pub tags_json: String,
    /// When it was last enabled, Unix seconds; `None` while pending (cleared by a reset).
    pub enabled_at: Option<i64>,
    /// `generated` or `uploaded`, once enabled.
    pub key_source: Option<KeySource>,
    /// Start of the CA certificate's validity, Unix seconds; `None` while pending.
    pub not_before: Option<i64>,
    /// End of the CA certificate's validity, Unix seconds; `None` while pending.
    pub not_after: Option<i64>,
    /// Serial of the CA certificate, lower-case hex without leading zero bytes; `None`
    /// while pending. The issuance recorder spends quota only while it still matches the
    /// serial the leaves were signed under.
    pub serial: Option<String>,
    /// The CA certificate, DER; `None` while pending.
    pub certificate_der: Option<Vec<u8>>,
    /// The CA's private key as PKCS#8 PEM, sealed with the master key (AES-256-GCM: a
    /// 12-byte nonce, then ciphertext and tag) bound to the CA's id; `None` while pending.
    pub key_sealed: Option<Vec<u8>>,
    /// Where the private key is kept: sealed here (`database`) or in the PKCS#11 token.
    pub key_storage: KeyStorage,
    /// `pkcs11` keys: the token object's CKA_ID, lower-case hex.
    pub pkcs11_key_id: Option<String>,
    /// `pkcs11` keys: the token object's CKA_LABEL.
    pub pkcs11_key_label: Option<String>,
    /// Roots: certificate units purchased in all (zeroed by a refund); 0 for
    /// intermediates.
    pub quota_total: i64,
    /// Roots: purchased units not yet assigned to an intermediate; 0 for intermediates.
    /// `quota_total = quota_available + Σ quota_assigned` of its intermediates.
    pub quota_available: i64,
    /// Intermediates: units their root assigned them, less those given back (reset,
    /// refund); 0 for roots.
    pub quota_assigned: i64,
    /// Intermediates: units left to issue certificates with (one per certificate); 0 for
    /// roots.
    pub quota_remaining: i64,
    /// Intermediates: end-entity certificates recorded so far (units spent).
    pub issued_count: i64,
    /// When the CA was revoked, Unix seconds; `None` unless revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked; `None` unless revoked.
    pub revocation_reason: Option<RevocationReason>,
    /// When it was refunded, Unix seconds; `None` unless refunded.
    pub refunded_at: Option<i64>,
    /// When it was removed, Unix seconds; `None` unless removed.
    pub removed_at: Option<i64>,
    /// Whether the CA publishes a CRL (and its leaves name the distribution point).
    pub crl_enabled: bool,
    /// A new CRL's nextUpdate is its thisUpdate plus this many hours (at least 1).
    pub crl_next_update_hours: i64,
    /// The last CRL number taken (0: no CRL signed yet); see [`crate::crls::next_number`].
    pub crl_number: i64,
    /// Bumped whenever the CA's CRL content or settings change.
    pub revocation_revision: i64,
    /// Whether the CA publishes delta CRLs (RFC 5280 §5.2.4) next to its base CRL (then
    /// base CRLs and new certificates carry freshestCRL, and the base is re-signed on its
    /// schedule only: revocations reach verifiers through the delta).
    pub crl_delta_enabled: bool,
    /// A new delta CRL's nextUpdate is its thisUpdate plus this many minutes.
    pub crl_delta_minutes: i64,
    /// Whether the CA answers OCSP requests (and its new certificates carry the AIA
    /// OCSP URL).
    pub ocsp_enabled: bool,
    /// Whether its OCSP responses are signed by a delegated OCSP signing certificate
    /// (else by the CA key itself).
    pub ocsp_delegated: bool,
    /// nextUpdate − thisUpdate of its OCSP responses, hours.
    pub ocsp_validity_hours: i64,
    /// When the row was inserted, Unix seconds (the purchase time).
    pub created_at: i64,
    /// When a renewed certificate waiting in `ca_generations` becomes the current one
    /// (see [`crate::generations`]); `None` when none waits.
    pub rollover_at: Option<i64>,
    /// The generation of the current certificate (1 until the first renewal takes over).
    pub generation: i64,
    /// The generation that introduced the current key: names the CRL and certificate
    /// URLs that new certificates carry (1: `/crl/{id}.crl`; n: `/crl/{id}-g{n}.crl`).
    pub key_generation: i64,
}

impl CaRow {
    /// True for root CAs.
    pub fn is_root(&self) -> bool {
        self.kind.is_root()
    }

    /// Whether the CA has a key to sign with: sealed here, or named in the PKCS#11 token.
    pub fn has_key(&self) -> bool {
        match self.key_storage {
            KeyStorage::Database => self.key_sealed.is_some(),
            KeyStorage::Pkcs11 => self.pkcs11_key_id.is_some(),
        }
    }
}

pub(crate) fn row_to_ca(r: &Row) -> Result<CaRow> {
    Ok(CaRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        kind: decode_spelled(r, "cas", "kind")?,
        parent_id: r.try_get("parent_id")?,
        status: decode_spelled(r, "cas", "status")?,
        common_name: r.try_get("common_name")?,
        organization: r.try_get("organization")?,
        organizational_unit: r.try_get("organizational_unit")?,
        country: r.try_get("country")?,
        state: r.try_get("state")?,
        locality: r.try_get("locality")?,
        subject: r.try_get("subject")?,
        key_algorithm: r.try_get("key_algorithm")?,
        validity_days: r.try_get("validity_days")?,
        purchased_at: r.try_get("purchased_at")?,
        service_until: r.try_get("service_until")?,
        service_months: r.try_get("service_months")?,
        service_started_at: r.try_get("service_started_at")?,
        tags_json: r.try_get("tags_json")?,
        enabled_at: r.try_get("enabled_at")?,
        key_source: super::decode_spelled_opt(r, "cas", "key_source")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        serial: r.try_get("serial")?,
        certificate_der: r.try_get("certificate_der")?,
        key_sealed: r.try_get("key_sealed")?,
        key_storage: decode_spelled(r, "cas", "key_storage")?,
        pkcs11_key_id: r.try_get("pkcs11_key_id")?,
        pkcs11_key_label: r.try_get("pkcs11_key_label")?,
        quota_total: r.try_get("quota_total")?,
        quota_available: r.try_get("quota_available")?,
        quota_assigned: r.try_get("quota_assigned")?,
        quota_remaining: r.try_get("quota_remaining")?,
        issued_count: r.try_get("issued_count")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: super::decode_spelled_opt(r, "cas", "revocation_reason")?,
        refunded_at: r.try_get("refunded_at")?,
        removed_at: r.try_get("removed_at")?,
        crl_enabled: r.try_get::<i64, _>("crl_enabled")? != 0,
        crl_next_update_hours: r.try_get("crl_next_update_hours")?,
        crl_number: r.try_get("crl_number")?,
        revocation_revision: r.try_get("revocation_revision")?,
        crl_delta_enabled: r.try_get::<i64, _>("crl_delta_enabled")? != 0,
        crl_delta_minutes: r.try_get("crl_delta_minutes")?,
        ocsp_enabled: r.try_get::<i64, _>("ocsp_enabled")? != 0,
        ocsp_delegated: r.try_get::<i64, _>("ocsp_delegated")? != 0,
        ocsp_validity_hours: r.try_get("ocsp_validity_hours")?,
        created_at: r.try_get("created_at")?,
        rollover_at: r.try_get("rollover_at")?,
        generation: r.try_get("generation")?,
        key_generation: r.try_get("key_generation")?,
    })
}

/// Inserts a newly purchased (pending) CA.
pub async fn insert(conn: &mut Tx, ca: &CaRow) -> Result<()> {
    conn.retire_caches();
    query(
        "INSERT INTO cas (id, tenant_id, kind, parent_id, status, common_name, organization, \
         organizational_unit, country, state, locality, subject, key_algorithm, validity_days, \
         purchased_at, service_until, quota_total, quota_available, created_at, service_months, \
         service_started_at, tags_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22)",
    )
    .bind(&ca.id)
    .bind(&ca.tenant_id)
    .bind(ca.kind.as_str())
    .bind(&ca.parent_id)
    .bind(ca.status.as_str())
    .bind(&ca.common_name)
    .bind(&ca.organization)
    .bind(&ca.organizational_unit)
    .bind(&ca.country)
    .bind(&ca.state)
    .bind(&ca.locality)
    .bind(&ca.subject)
    .bind(&ca.key_algorithm)
    .bind(ca.validity_days)
    .bind(ca.purchased_at)
    .bind(ca.service_until)
    .bind(ca.quota_total)
    .bind(ca.quota_available)
    .bind(ca.created_at)
    .bind(ca.service_months)
    .bind(ca.service_started_at)
    .bind(if ca.tags_json.is_empty() { "{}" } else { &ca.tags_json })
    .execute(conn)
    .await?;
    Ok(())
}

/// A CA of `tenant_id` by id (removed ones included: they are kept for audit).
pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<CaRow>> {
    let row = query("SELECT * FROM cas WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_ca).transpose()
}

/// A CA by id, whatever its tenant (public distribution points, background jobs).
pub async fn get_any_tenant(conn: &mut Conn, id: &str) -> Result<Option<CaRow>> {
    let row = query("SELECT * FROM cas WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_ca).transpose()
}

/// Filters for [`list`].
#[derive(Debug, Default, Clone)]
pub struct CaFilter {
    /// Only roots or only intermediates; `None`: both.
    pub kind: Option<CaKind>,
    /// Only the intermediates of this root.
    pub parent_id: Option<String>,
    /// Only CAs in this state; `None`: every state but `removed`.
    pub status: Option<CaStatus>,
    /// `key` or `key=value`.
    pub tag: Option<String>,
    /// Return ids strictly greater than this (ids are time-ordered UUIDv7).
    pub after: Option<String>,
    /// Most rows returned (clamped to 1–1000).
    pub limit: i64,
}

/// CAs of a tenant matching `f`, oldest first (by id), removed ones hidden unless asked
/// for by status; at most `f.limit` (1–1000).
pub async fn list(conn: &mut Conn, tenant_id: &str, f: &CaFilter) -> Result<Vec<CaRow>> {
    let mut sql = String::from("SELECT * FROM cas WHERE tenant_id = $1");
    let mut args: Vec<String> = vec![tenant_id.to_string()];
    let mut push = |sql: &mut String, clause: &str, v: &str| {
        args.push(v.to_string());
        sql.push_str(&format!(" AND {clause} ${}", args.len()));
    };
    match &f.status {
        Some(s) => push(&mut sql, "status =", s.as_str()),
        None => sql.push_str(" AND status <> 'removed'"),
    }
    if let Some(k) = &f.kind {
        push(&mut sql, "kind =", k.as_str());
    }
    if let Some(p) = &f.parent_id {
        push(&mut sql, "parent_id =", p);
    }
    if let Some(tag) = &f.tag {
        let pattern = super::tag_like_pattern(tag);
        push(&mut sql, "tags_json LIKE", &pattern);
        sql.push_str(" ESCAPE '\\'");
    }
    if let Some(a) = &f.after {
        push(&mut sql, "id >", a);
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 1000)));
    let mut q = query(&sql);
    for a in &args {
        q = q.bind(a);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter().map(row_to_ca).collect()
}

/// Direct children of a root (every status but removed), oldest first.
pub async fn children(conn: &mut Conn, parent_id: &str) -> Result<Vec<CaRow>> {
    let rows = query("SELECT * FROM cas WHERE parent_id = $1 AND status <> 'removed' ORDER BY id")
        .bind(parent_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_ca).collect()
}

/// Enabled CAs of every tenant whose key is kept in a PKCS#11 token (startup checks them).
pub async fn enabled_in_token(conn: &mut Conn) -> Result<Vec<CaRow>> {
    let rows =
        query("SELECT * FROM cas WHERE status = 'enabled' AND key_storage = 'pkcs11' ORDER BY id")
            .fetch_all(conn)
            .await?;
    rows.iter().map(row_to_ca).collect()
}

/// What enabling writes.
#[derive(Debug, Clone)]
pub struct Enablement {
    /// RFC 4514 rendering of the certificate's subject (replaces the purchased one).
    pub subject: String,
    /// API name of the installed key's algorithm (`ec-p256`…).
    pub key_algorithm: String,
    /// Whether the key was generated here or uploaded.
    pub key_source: KeySource,
    /// Start of the certificate's validity, Unix seconds.
    pub not_before: i64,
    /// End of the certificate's validity, Unix seconds.
    pub not_after: i64,
    /// The certificate's serial, lower-case hex without leading zero bytes.
    pub serial: String,
    /// The CA certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The private key as PKCS#8 PEM sealed with the master key, bound to the CA's id;
    /// `None` when the key is in the PKCS#11 token.
    pub key_sealed: Option<Vec<u8>>,
    /// Where the key is kept.
    pub key_storage: KeyStorage,
    /// `pkcs11` keys: the token object's CKA_ID (hex) and CKA_LABEL.
    pub pkcs11_key: Option<(String, String)>,
}

/// pending → enabled: installs the key and certificate of `e`, sets `enabled_at` to `at`
/// and clears any earlier revocation fields. False when the CA was not pending any more.
pub async fn enable(conn: &mut Tx, id: &str, e: &Enablement, at: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET status = 'enabled', enabled_at = $1, subject = $2, key_algorithm = $3, \
         key_source = $4, not_before = $5, not_after = $6, serial = $7, certificate_der = $8, \
         key_sealed = $9, revoked_at = NULL, revocation_reason = NULL, key_storage = $11, \
         pkcs11_key_id = $12, pkcs11_key_label = $13 \
         WHERE id = $10 AND status = 'pending'",
    )
    .bind(at)
    .bind(&e.subject)
    .bind(&e.key_algorithm)
    .bind(e.key_source.as_str())
    .bind(e.not_before)
    .bind(e.not_after)
    .bind(&e.serial)
    .bind(&e.certificate_der)
    .bind(&e.key_sealed)
    .bind(id)
    .bind(e.key_storage.as_str())
    .bind(e.pkcs11_key.as_ref().map(|k| k.0.as_str()))
    .bind(e.pkcs11_key.as_ref().map(|k| k.1.as_str()))
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Adds `count` purchased units to a root's `quota_total` and `quota_available`. False
/// when `root_id` is not a pending or enabled root.
pub async fn purchase_quota(conn: &mut Tx, root_id: &str, count: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET quota_total = quota_total + $1, quota_available = quota_available + $1 \
         WHERE id = $2 AND kind = 'root' AND status IN ('pending', 'enabled')",
    )
    .bind(count)
    .bind(root_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Takes `count` from an enabled root's available quota. False when it has less, or
/// `root_id` is not an enabled root.
pub async fn take_available(conn: &mut Tx, root_id: &str, count: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET quota_available = quota_available - $1 \
         WHERE id = $2 AND kind = 'root' AND status = 'enabled' AND quota_available >= $1",
    )
    .bind(count)
    .bind(root_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Credits `count` to the `quota_assigned` and `quota_remaining` of an enabled
/// intermediate of `root_id`. False when `intermediate_id` is not one.
pub async fn credit_intermediate(
    conn: &mut Tx,
    root_id: &str,
    intermediate_id: &str,
    count: i64,
) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET quota_assigned = quota_assigned + $1, quota_remaining = quota_remaining + $1 \
         WHERE id = $2 AND parent_id = $3 AND kind = 'intermediate' AND status = 'enabled'",
    )
    .bind(count)
    .bind(intermediate_id)
    .bind(root_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Spends `count` units of an intermediate's quota at once, or nothing when fewer than
/// `count` are left (quota never goes below zero) or when the CA is no longer enabled, in
/// service at `now`, and holding the certificate with serial `ca_serial` (the one the
/// leaves were signed under). True when spent.
pub async fn spend(
    conn: &mut Conn,
    intermediate_id: &str,
    ca_serial: &str,
    now: i64,
    count: i64,
) -> Result<bool> {
    let res = query(
        "UPDATE cas SET quota_remaining = quota_remaining - $1, issued_count = issued_count + $1 \
         WHERE id = $2 AND status = 'enabled' AND quota_remaining >= $1 AND serial = $3 \
         AND service_until > $4",
    )
    .bind(count)
    .bind(intermediate_id)
    .bind(ca_serial)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Takes the row lock of CA `id` (PostgreSQL; SQLite's one writer holds every lock already)
/// without changing it. A transaction that will touch an intermediate and its root calls
/// this on the root first, the order quota moves use ([`lock_quota_pair`]), so two such
/// transactions queue instead of deadlocking.
pub async fn lock(conn: &mut Tx, id: &str) -> Result<()> {
    query("UPDATE cas SET id = id WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives an intermediate's unspent quota (`quota_remaining`) back to its root's
/// `quota_available` (reset, refund). Returns the units moved: 0 when there were none, or
/// the CA does not exist or has no parent.
pub async fn return_unspent_quota(conn: &mut Tx, intermediate_id: &str) -> Result<i64> {
    conn.retire_caches();
    let row = query("SELECT parent_id, quota_remaining FROM cas WHERE id = $1")
        .bind(intermediate_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(0) };
    let parent: Option<String> = row.try_get("parent_id")?;
    let remaining: i64 = row.try_get("quota_remaining")?;
    let Some(parent) = parent else { return Ok(0) };
    if remaining <= 0 {
        return Ok(0);
    }
    // The root is credited only with what the intermediate gave up: had its quota moved
    // since the read above, nothing moves and the transaction must not commit.
    let moved = query(
        "UPDATE cas SET quota_remaining = quota_remaining - $1, quota_assigned = quota_assigned - $1 \
         WHERE id = $2 AND quota_remaining = $1",
    )
    .bind(remaining)
    .bind(intermediate_id)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(vellum_core::error::Error::conflict(format!(
            "the quota of CA {intermediate_id} changed while it was being returned; retry"
        )));
    }
    query("UPDATE cas SET quota_available = quota_available + $1 WHERE id = $2")
        .bind(remaining)
        .bind(parent)
        .execute(&mut *conn)
        .await?;
    Ok(remaining)
}

/// enabled → revoked, recording `at` and `reason`. False when the CA was not enabled any
/// more.
pub async fn revoke(conn: &mut Tx, id: &str, at: i64, reason: RevocationReason) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET status = 'revoked', revoked_at = $1, revocation_reason = $2, \
         rollover_at = NULL WHERE id = $3 AND status = 'enabled'",
    )
    .bind(at)
    .bind(reason.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Records a revoked (or superseded) CA certificate for its issuer's CRL and bumps the
/// issuer's revocation revision (its CRL is then stale). A second entry for the same
/// issuer and serial is an error (primary key).
pub async fn record_ca_revocation(
    conn: &mut Conn,
    issuer_id: &str,
    subject_ca_id: &str,
    serial: &str,
    at: i64,
    reason: RevocationReason,
) -> Result<()> {
    query(
        "INSERT INTO ca_cert_revocations (issuer_id, subject_ca_id, serial, revoked_at, reason) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(issuer_id)
    .bind(subject_ca_id)
    .bind(serial)
    .bind(at)
    .bind(reason.as_str())
    .execute(&mut *conn)
    .await?;
    super::ocsp::revoked(conn, issuer_id, serial, at).await?;
    super::crls::bump_revision(conn, issuer_id).await
}

/// A revoked CA certificate, as listed on its issuer's CRL.
#[derive(Debug, Clone)]
pub struct CaRevocation {
    /// The CA whose certificate it was.
    pub subject_ca_id: String,
    /// The certificate's serial, lower-case hex without leading zero bytes.
    pub serial: String,
    /// When it was revoked or superseded, Unix seconds (the CRL entry's revocationDate).
    pub revoked_at: i64,
    /// The CRL entry's reason code (`superseded` for a reset).
    pub reason: RevocationReason,
}

/// CA certificates revoked by `issuer_id`, by revocation time then serial.
pub async fn ca_revocations(conn: &mut Conn, issuer_id: &str) -> Result<Vec<CaRevocation>> {
    let rows = query(
        "SELECT subject_ca_id, serial, revoked_at, reason FROM ca_cert_revocations \
         WHERE issuer_id = $1 ORDER BY revoked_at, serial",
    )
    .bind(issuer_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CaRevocation {
                subject_ca_id: r.try_get("subject_ca_id")?,
                serial: r.try_get("serial")?,
                revoked_at: r.try_get("revoked_at")?,
                reason: super::decode_spelled(r, "ca_cert_revocations", "reason")?,
            })
        })
        .collect()
}

/// enabled → pending, discarding key, certificate, serial, validity, key source and
/// `enabled_at` (quota is untouched). False when not enabled any more.
pub async fn reset(conn: &mut Tx, id: &str) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET status = 'pending', enabled_at = NULL, key_source = NULL, \
         not_before = NULL, not_after = NULL, serial = NULL, certificate_der = NULL, \
         key_sealed = NULL, key_storage = 'database', pkcs11_key_id = NULL, \
         pkcs11_key_label = NULL, rollover_at = NULL, generation = 1, key_generation = 1 \
         WHERE id = $1 AND status = 'enabled'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    // Its renewals went with the key they certified.
    query("DELETE FROM ca_generations WHERE ca_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(true)
}

/// pending → refunded at `at`; a root's `quota_total` and `quota_available` are zeroed.
/// False when not pending any more.
pub async fn refund(conn: &mut Tx, id: &str, at: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET status = 'refunded', refunded_at = $1, quota_total = 0, quota_available = 0 \
         WHERE id = $2 AND status = 'pending'",
    )
    .bind(at)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// revoked|refunded → removed at `at`. False when in another state.
pub async fn remove(conn: &mut Tx, id: &str, at: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET status = 'removed', removed_at = $1 \
         WHERE id = $2 AND status IN ('revoked', 'refunded')",
    )
    .bind(at)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// How many certificates issued by `ca_id` are neither revoked, deleted nor expired at
/// `now`.
pub async fn count_live_certificates(conn: &mut Conn, ca_id: &str, now: i64) -> Result<i64> {
    let row = query(
        "SELECT COUNT(*) AS n FROM certificates WHERE ca_id = $1 AND revoked_at IS NULL \
         AND deleted_at IS NULL AND not_after > $2",
    )
    .bind(ca_id)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")?)
}

/// Replaces the tags of a CA of `tenant_id` (any status but removed). False when there is
/// no such CA.
pub async fn set_tags(conn: &mut Tx, tenant_id: &str, id: &str, tags_json: &str) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET tags_json = $1 WHERE id = $2 AND tenant_id = $3 AND status <> 'removed'",
    )
    .bind(tags_json)
    .bind(id)
    .bind(tenant_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// The quota of an enabled root and of one of its enabled intermediates, read after
/// locking both rows in that order (root first, like [`take_available`] then
/// [`credit_intermediate`], so concurrent moves queue instead of deadlocking): no
/// issuance or other quota move changes them until the transaction ends. `None` when
/// either is not (or no longer) enabled, or the intermediate is not the root's.
pub async fn lock_quota_pair(
    conn: &mut Tx,
    root_id: &str,
    intermediate_id: &str,
) -> Result<Option<QuotaPair>> {
    conn.retire_caches();
    let root = query(
        "UPDATE cas SET quota_available = quota_available \
         WHERE id = $1 AND kind = 'root' AND status = 'enabled' RETURNING quota_available",
    )
    .bind(root_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(root) = root else { return Ok(None) };
    let inter = query(
        "UPDATE cas SET quota_remaining = quota_remaining \
         WHERE id = $1 AND parent_id = $2 AND kind = 'intermediate' AND status = 'enabled' \
         RETURNING quota_remaining, quota_assigned",
    )
    .bind(intermediate_id)
    .bind(root_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(inter) = inter else { return Ok(None) };
    Ok(Some(QuotaPair {
        root_available: root.try_get("quota_available")?,
        remaining: inter.try_get("quota_remaining")?,
        assigned: inter.try_get("quota_assigned")?,
    }))
}

/// The quota of a root and one intermediate, as [`lock_quota_pair`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPair {
    /// The root's unassigned quota.
    pub root_available: i64,
    /// The intermediate's unspent quota.
    pub remaining: i64,
    /// Everything the intermediate was ever assigned (minus what went back).
    pub assigned: i64,
}

/// Gives `count` of an intermediate's unspent quota back to its root: false (and nothing
/// changed) when it has fewer than `count` left.
pub async fn withdraw_to_root(
    conn: &mut Tx,
    root_id: &str,
    intermediate_id: &str,
    count: i64,
) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET quota_remaining = quota_remaining - $1, quota_assigned = quota_assigned - $1 \
         WHERE id = $2 AND parent_id = $3 AND quota_remaining >= $1 AND quota_assigned >= $1",
    )
    .bind(count)
    .bind(intermediate_id)
    .bind(root_id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    let res = query(
        "UPDATE cas SET quota_available = quota_available + $1 WHERE id = $2 AND kind = 'root'",
    )
    .bind(count)
    .bind(root_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// A root's service period as it stands, for [`renew_service`]'s condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePeriod {
    /// Where the months count from.
    pub started_at: i64,
    /// Months bought from there.
    pub months: i64,
    /// `started_at` + `months` calendar months.
    pub until: i64,
}

/// Moves a root (pending or enabled) from service period `from` to `to`, and every one of
/// its intermediates with it. False, changing nothing, when the root is in another state
/// or its period is no longer `from` (a concurrent renewal won: read again).
pub async fn renew_service(
    conn: &mut Tx,
    root_id: &str,
    from: &ServicePeriod,
    to: &ServicePeriod,
) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET service_started_at = $1, service_months = $2, service_until = $3 \
         WHERE id = $4 AND kind = 'root' AND status IN ('pending', 'enabled') \
         AND service_started_at = $5 AND service_months = $6 AND service_until = $7",
    )
    .bind(to.started_at)
    .bind(to.months)
    .bind(to.until)
    .bind(root_id)
    .bind(from.started_at)
    .bind(from.months)
    .bind(from.until)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    query(
        "UPDATE cas SET service_started_at = $1, service_months = $2, service_until = $3 \
         WHERE parent_id = $4",
    )
    .bind(to.started_at)
    .bind(to.months)
    .bind(to.until)
    .bind(root_id)
    .execute(conn)
    .await?;
    Ok(true)
}
