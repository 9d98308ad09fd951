//! Managed certificates: the inventory of certificates from any CA (uploaded, synced from a
//! private CA, shared by another tenant). Never on a CRL, never counted against quota.
//! Every query is scoped by tenant; deleted rows are gone for the tenant.

use super::filter::{page, Common, Where, MANAGED};
use super::{query, Conn, Row};
use vellum_core::error::Result;
use vellum_core::status::{CertificateStatus, ManagedSource};

/// One managed certificate as stored.
#[derive(Debug, Clone)]
pub struct ManagedRow {
    /// UUIDv7 (creation order).
    pub id: String,
    /// The owning tenant.
    pub tenant_id: String,
    /// The label the tenant gave it.
    pub name: String,
    /// How it entered the inventory.
    pub source: ManagedSource,
    /// JSON object of tags.
    pub tags_json: String,
    /// Expiry reminders on (the default) or off.
    pub notifications: bool,
    /// RFC 4514-style subject.
    pub subject: String,
    /// The subject's CN (empty when it has none).
    pub common_name: String,
    /// JSON list of `{"type","value"}`.
    pub sans_json: String,
    /// RFC 4514-style issuer.
    pub issuer: String,
    /// Lower-case hex.
    pub serial: String,
    /// API name of the key algorithm (`ec-p256`, `rsa-2048`…).
    pub key_algorithm: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Valid for longer than the leakage-risk limit.
    pub leakage_risk: bool,
    /// The leaf (DER).
    pub certificate_der: Vec<u8>,
    /// The chain after the leaf, issuer first, as concatenated DER certificates.
    pub chain_der: Vec<u8>,
    /// The private key (PKCS#8 PEM) sealed under the master key with the id as context.
    pub key_sealed: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was deleted, Unix seconds (`None` while it is in the inventory).
    pub deleted_at: Option<i64>,
    /// The private-CA certificate a synced or shared copy was made from.
    pub origin_certificate_id: Option<String>,
    /// The owner tenant of a shared copy.
    pub shared_by_tenant_id: Option<String>,
    /// The owner tenant's name (read with the row, never stored).
    pub shared_by_name: Option<String>,
    /// When the origin certificate was revoked, Unix seconds.
    pub revoked_at: Option<i64>,
}

/// What a renewal changes in the synced copy of the renewed certificate.
#[derive(Debug, Clone)]
pub struct SyncedRefresh {
    /// The renewal (the copy's new origin).
    pub origin_certificate_id: String,
    /// RFC 4514-style subject.
    pub subject: String,
    /// The subject's CN.
    pub common_name: String,
    /// JSON list of `{"type","value"}`.
    pub sans_json: String,
    /// RFC 4514-style issuer.
    pub issuer: String,
    /// Lower-case hex.
    pub serial: String,
    /// API name of the key algorithm.
    pub key_algorithm: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Valid for longer than the leakage-risk limit.
    pub leakage_risk: bool,
    /// The new leaf (DER).
    pub certificate_der: Vec<u8>,
    /// The chain after the leaf, issuer first, concatenated DER.
    pub chain_der: Vec<u8>,
    /// The new key sealed under the copy's id (`None` when the server does not hold it).
    pub key_sealed: Option<Vec<u8>>,
}

impl ManagedRow {
    /// Its status at `now`: issued, expiring or expired; revoked when the private-CA
    /// certificate it was synced or shared from was revoked.
    pub fn status(&self, now: i64) -> CertificateStatus {
        CertificateStatus::at(self.revoked_at, self.not_after, now)
    }
}

/// Every column, plus the name of a shared copy's owner tenant (a scalar subquery, so the
/// filters below keep naming the table's columns unqualified).
/// What every read selects: the row and the name of the tenant that shared it.
macro_rules! columns {
    () => {
        "managed_certificates.*, (SELECT t.name FROM tenants t \
         WHERE t.id = managed_certificates.shared_by_tenant_id) AS shared_by_name"
    };
}
const COLUMNS: &str = columns!();
const SELECT: &str = concat!("SELECT ", columns!(), " FROM managed_certificates");

fn row_to_managed(r: &Row) -> Result<ManagedRow> {
    Ok(ManagedRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        source: super::decode_spelled(r, "managed_certificates", "source")?,
        tags_json: r.try_get("tags_json")?,
        notifications: r.try_get::<i64, _>("notifications")? != 0,
        subject: r.try_get("subject")?,
        common_name: r.try_get("common_name")?,
        sans_json: r.try_get("sans_json")?,
        issuer: r.try_get("issuer")?,
        serial: r.try_get("serial")?,
        key_algorithm: r.try_get("key_algorithm")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        leakage_risk: r.try_get::<i64, _>("leakage_risk")? != 0,
        certificate_der: r.try_get("certificate_der")?,
        chain_der: r.try_get("chain_der")?,
        key_sealed: r.try_get("key_sealed")?,
        created_at: r.try_get("created_at")?,
        deleted_at: r.try_get("deleted_at")?,
        origin_certificate_id: r.try_get("origin_certificate_id")?,
        shared_by_tenant_id: r.try_get("shared_by_tenant_id")?,
        shared_by_name: r.try_get("shared_by_name")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// Records a managed certificate.
pub async fn insert(conn: &mut Conn, m: &ManagedRow) -> Result<()> {
    insert_with(conn, m, "").await.map(|_| ())
}

/// Records a synced copy unless the tenant already holds a live one of the same origin
/// (the unique index `managed_synced_origin`); false when it did.
pub async fn insert_synced(conn: &mut Conn, m: &ManagedRow) -> Result<bool> {
    insert_with(conn, m, " ON CONFLICT DO NOTHING").await
}

/// Records a shared copy; false when the origin already has a live shared copy (the
/// unique index `managed_shared_origin`: a certificate is shared once).
pub async fn insert_shared(conn: &mut Conn, m: &ManagedRow) -> Result<bool> {
    match insert_with(conn, m, "").await {
        Ok(_) => Ok(true),
        Err(vellum_core::error::Error::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn insert_with(conn: &mut Conn, m: &ManagedRow, on_conflict: &str) -> Result<bool> {
    let sql = format!(
        "INSERT INTO managed_certificates (id, tenant_id, name, source, tags_json, notifications, \
         subject, common_name, sans_json, issuer, serial, key_algorithm, not_before, not_after, \
         leakage_risk, certificate_der, chain_der, key_sealed, created_at, origin_certificate_id, \
         shared_by_tenant_id, revoked_at) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22){on_conflict}"
    );
    let res = query(&sql)
        .bind(&m.id)
        .bind(&m.tenant_id)
        .bind(&m.name)
        .bind(m.source.as_str())
        .bind(&m.tags_json)
        .bind(m.notifications as i64)
        .bind(&m.subject)
        .bind(&m.common_name)
        .bind(&m.sans_json)
        .bind(&m.issuer)
        .bind(&m.serial)
        .bind(&m.key_algorithm)
        .bind(m.not_before)
        .bind(m.not_after)
        .bind(m.leakage_risk as i64)
        .bind(&m.certificate_der)
        .bind(&m.chain_der)
        .bind(&m.key_sealed)
        .bind(m.created_at)
        .bind(&m.origin_certificate_id)
        .bind(&m.shared_by_tenant_id)
        .bind(m.revoked_at)
        .execute(&mut *conn)
        .await;
    match res {
        Ok(r) if r.rows_affected() == 1 => {
            if m.notifications && m.revoked_at.is_none() {
                // The reminder scheduler looks at it at once (`notify::due_managed`).
                query("INSERT INTO managed_reminders (managed_id, remind_at) VALUES ($1, $2)")
                    .bind(&m.id)
                    .bind(m.created_at)
                    .execute(conn)
                    .await?;
            }
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if super::tenants::is_unique_violation(&e) => Err(
            vellum_core::error::Error::conflict("a live copy of this certificate already exists"),
        ),
        Err(e) => Err(e.into()),
    }
}

/// A managed certificate of `tenant_id` by id (deleted ones are gone).
pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<ManagedRow>> {
    let row = query(&format!(
        "{SELECT} WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(row_to_managed).transpose()
}

/// The tenant's live managed certificates with this serial (lower-case hex): the
/// candidates a presented certificate is compared with, byte for byte.
pub async fn by_serial(conn: &mut Conn, tenant_id: &str, serial: &str) -> Result<Vec<ManagedRow>> {
    let rows = query(concat!(
        "SELECT ",
        columns!(),
        " FROM managed_certificates WHERE tenant_id = $1 AND serial = $2 \
         AND deleted_at IS NULL ORDER BY id LIMIT 100"
    ))
    .bind(tenant_id)
    .bind(serial)
    .fetch_all(conn)
    .await?;
    rows.iter().map(row_to_managed).collect()
}

/// Filters of the managed list.
#[derive(Debug, Default, Clone)]
pub struct ManagedFilter {
    /// Issued, expiring or expired at `now`.
    pub status: Option<CertificateStatus>,
    /// Substring of the CN or of a SAN (case-insensitive).
    pub q: Option<String>,
    /// `key` or `key=value`.
    pub tag: Option<String>,
    /// Only those that entered this way.
    pub source: Option<ManagedSource>,
    /// Only those with the leakage-risk flag.
    pub leakage_risk: bool,
    /// Ids strictly greater than this (UUIDv7: creation order).
    pub after: Option<String>,
    /// Page size (clamped to 1–1000).
    pub limit: i64,
}

impl ManagedFilter {
    /// The WHERE clause of this filter for the tenant at `now` (`store::filter`).
    fn clause(&self, tenant_id: &str, now: i64) -> Where {
        let mut w = Where::tenant(tenant_id);
        // Synced and shared copies of revoked private-CA certificates are revoked.
        w.common(&self.common(), now, true);
        w
    }

    /// The filters shared with the certificate list.
    fn common(&self) -> Common<'_> {
        Common {
            q: self.q.as_deref(),
            tag: self.tag.as_deref(),
            source: self.source.map(|s| s.as_str()),
            leakage_risk: self.leakage_risk,
            status: self.status,
            after: self.after.as_deref(),
        }
    }

    /// The page of this filter: `limit` rows with `columns` (`store::filter::page`).
    async fn page(
        &self,
        conn: &mut Conn,
        tenant_id: &str,
        now: i64,
        columns: &str,
        limit: i64,
    ) -> Result<Vec<super::Row>> {
        let w = self.clause(tenant_id, now);
        page(
            conn,
            &MANAGED,
            tenant_id,
            &w,
            &self.common(),
            columns,
            limit,
        )
        .await
    }
}

/// The tenant's managed certificates matching `f`, oldest first.
pub async fn list(
    conn: &mut Conn,
    tenant_id: &str,
    f: &ManagedFilter,
    now: i64,
) -> Result<Vec<ManagedRow>> {
    let rows = f
        .page(conn, tenant_id, now, COLUMNS, f.limit.clamp(1, 1000))
        .await?;
    rows.iter().map(row_to_managed).collect()
}

/// The ids of the tenant's managed certificates matching `f` at `now`, oldest first, at
/// most `limit` (`f.limit` is not used): a bulk action's selection.
pub async fn ids(
    conn: &mut Conn,
    tenant_id: &str,
    f: &ManagedFilter,
    now: i64,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = f.page(conn, tenant_id, now, "id", limit).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(Into::into))
        .collect()
}

/// Changes name, tags and notifications (each when given). False when the certificate
/// is not the tenant's (or is deleted).
pub async fn update(
    conn: &mut Conn,
    tenant_id: &str,
    id: &str,
    name: Option<&str>,
    tags_json: Option<&str>,
    notifications: Option<bool>,
) -> Result<bool> {
    let res = query(
        "UPDATE managed_certificates SET name = COALESCE($1, name), \
         tags_json = COALESCE($2, tags_json), notifications = COALESCE($3, notifications) \
         WHERE id = $4 AND tenant_id = $5 AND deleted_at IS NULL",
    )
    .bind(name)
    .bind(tags_json)
    .bind(notifications.map(i64::from))
    .bind(id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    match notifications {
        // Switched on: the scheduler looks at it at once (a schedule already running
        // keeps its time); a revoked one has nothing to remind.
        Some(true) => {
            query(
                "INSERT INTO managed_reminders (managed_id, remind_at) \
                 SELECT id, 0 FROM managed_certificates WHERE id = $1 AND revoked_at IS NULL \
                 ON CONFLICT (managed_id) DO UPDATE \
                 SET remind_at = COALESCE(managed_reminders.remind_at, 0)",
            )
            .bind(id)
            .execute(conn)
            .await?;
        }
        // Off: never again.
        Some(false) => forget_reminders(conn, id).await?,
        None => {}
    }
    Ok(true)
}

/// Drops the reminder schedule of managed certificate `id` (reminders off, deleted).
async fn forget_reminders(conn: &mut Conn, id: &str) -> Result<()> {
    query("DELETE FROM managed_reminders WHERE managed_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops the reminder schedules of every copy of private-CA certificate `origin_id`.
async fn forget_copies_reminders(conn: &mut Conn, origin_id: &str) -> Result<()> {
    query(
        "DELETE FROM managed_reminders WHERE managed_id IN \
         (SELECT id FROM managed_certificates WHERE origin_certificate_id = $1)",
    )
    .bind(origin_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a managed certificate for good: the sealed key is destroyed and the row hidden
/// (its facts stay for the audit trail). False when it is not the tenant's or already gone.
pub async fn delete(conn: &mut Conn, tenant_id: &str, id: &str, now: i64) -> Result<bool> {
    let res = query(
        "UPDATE managed_certificates SET deleted_at = $1, key_sealed = NULL \
         WHERE id = $2 AND tenant_id = $3 AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    forget_reminders(conn, id).await?;
    Ok(true)
}

/// The live synced copy of certificate `origin_id` in `tenant_id` (its id), if any.
pub async fn synced_copy_of(
    conn: &mut Conn,
    tenant_id: &str,
    origin_id: &str,
) -> Result<Option<String>> {
    let row = query(
        "SELECT id FROM managed_certificates WHERE tenant_id = $1 AND origin_certificate_id = $2 \
         AND source = 'synced' AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .bind(origin_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// A renewal replaces the certificate, key and facts of the synced copy `id` (name, tags
/// and notifications stay). False when the copy was deleted meanwhile.
pub async fn refresh_synced(conn: &mut Conn, id: &str, r: &SyncedRefresh) -> Result<bool> {
    let res = query(
        "UPDATE managed_certificates SET origin_certificate_id = $1, subject = $2, \
         common_name = $3, sans_json = $4, issuer = $5, serial = $6, key_algorithm = $7, \
         not_before = $8, not_after = $9, leakage_risk = $10, certificate_der = $11, \
         chain_der = $12, key_sealed = $13, revoked_at = NULL \
         WHERE id = $14 AND source = 'synced' AND deleted_at IS NULL",
    )
    .bind(&r.origin_certificate_id)
    .bind(&r.subject)
    .bind(&r.common_name)
    .bind(&r.sans_json)
    .bind(&r.issuer)
    .bind(&r.serial)
    .bind(&r.key_algorithm)
    .bind(r.not_before)
    .bind(r.not_after)
    .bind(r.leakage_risk as i64)
    .bind(&r.certificate_der)
    .bind(&r.chain_der)
    .bind(&r.key_sealed)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    // The new certificate's thresholds are looked at from the start.
    query(
        "INSERT INTO managed_reminders (managed_id, remind_at) \
         SELECT id, 0 FROM managed_certificates WHERE id = $1 AND notifications = 1 \
         ON CONFLICT (managed_id) DO UPDATE SET remind_at = 0",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(true)
}

/// The live shared copy of certificate `origin_id` (in the recipient's tenant), if any.
pub async fn shared_copy_of(conn: &mut Conn, origin_id: &str) -> Result<Option<ManagedRow>> {
    let row = query(&format!(
        "{SELECT} WHERE origin_certificate_id = $1 AND source = 'shared' AND deleted_at IS NULL"
    ))
    .bind(origin_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(row_to_managed).transpose()
}

/// Ends the share of certificate `origin_id`: the recipient's copy is deleted. Returns
/// the recipient tenant, or `None` when it was not shared.
pub async fn end_share(conn: &mut Conn, origin_id: &str, now: i64) -> Result<Option<String>> {
    let row = query(
        "UPDATE managed_certificates SET deleted_at = $1 WHERE origin_certificate_id = $2 \
         AND source = 'shared' AND deleted_at IS NULL RETURNING id, tenant_id",
    )
    .bind(now)
    .bind(origin_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get("id")?;
    forget_reminders(conn, &id).await?;
    Ok(Some(row.try_get("tenant_id")?))
}

/// The origin certificate was revoked at `at`: every live copy (synced or shared) shows it.
pub async fn origin_revoked(conn: &mut Conn, origin_id: &str, at: i64) -> Result<()> {
    query(
        "UPDATE managed_certificates SET revoked_at = $1 WHERE origin_certificate_id = $2 \
         AND deleted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(origin_id)
    .execute(&mut *conn)
    .await?;
    forget_copies_reminders(conn, origin_id).await
}
