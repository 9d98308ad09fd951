//! End-entity certificates: the record every issuance writes before the certificate
//! leaves the server.

use super::{query, Conn, Row};
use vellum_core::error::{Error, Result};
use vellum_core::status::{CertificateSource, CertificateStatus, LeafType, RevocationReason};

/// One certificate as stored.
#[derive(Debug, Clone, Default)]
pub struct CertRow {
    pub id: String,
    pub tenant_id: String,
    pub ca_id: Option<String>,
    /// Lower-case hex.
    pub serial: String,
    pub cert_type: LeafType,
    pub common_name: String,
    /// JSON list of `{"type","value"}`.
    pub sans_json: String,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<RevocationReason>,
    /// `private_ca`, `acme`, `est`, `uploaded`, `system`.
    pub source: CertificateSource,
    pub name: Option<String>,
    pub tags_json: String,
    /// The request that produced it (for renewal).
    pub spec_json: String,
    pub key_algorithm: String,
    pub leakage_risk: bool,
    pub certificate_der: Vec<u8>,
    /// Sealed PKCS#8 key when the server generated it.
    pub key_sealed: Option<Vec<u8>>,
    /// Who asked: token id, ACME account, EST client.
    pub requester: Option<String>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
    /// The certificate this one renewed.
    pub renewed_from: Option<String>,
    /// Optional subject fields (O, OU, L, ST, C) as JSON.
    pub subject_json: String,
    /// The EST account it was enrolled for (its holder then logs in to EST with it under
    /// that account's name rules); `None` for other doors.
    pub est_client: Option<String>,
}

impl CertRow {
    /// Its status at `now` (revoked, expired, expiring or issued).
    pub fn status(&self, now: i64) -> CertificateStatus {
        CertificateStatus::at(self.revoked_at, self.not_after, now)
    }
}

fn row_to_cert(r: &Row) -> Result<CertRow> {
    Ok(CertRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        ca_id: r.try_get("ca_id")?,
        serial: r.try_get("serial")?,
        cert_type: super::decode_spelled(r, "certificates", "cert_type")?,
        common_name: r.try_get("common_name")?,
        sans_json: r.try_get("sans_json")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: super::decode_spelled_opt(r, "certificates", "revocation_reason")?,
        source: super::decode_spelled(r, "certificates", "source")?,
        name: r.try_get("name")?,
        tags_json: r.try_get("tags_json")?,
        spec_json: r.try_get("spec_json")?,
        key_algorithm: r.try_get("key_algorithm")?,
        leakage_risk: r.try_get::<i64, _>("leakage_risk")? != 0,
        certificate_der: r.try_get("certificate_der")?,
        key_sealed: r.try_get("key_sealed")?,
        requester: r.try_get("requester")?,
        deleted_at: r.try_get("deleted_at")?,
        created_at: r.try_get("created_at")?,
        renewed_from: r.try_get("renewed_from")?,
        subject_json: r.try_get("subject_json")?,
        est_client: r.try_get("est_client")?,
    })
}

const CERT_COLUMNS: usize = 22;
/// Rows per multi-row INSERT (22 × 100 values: far below both engines' limits).
const CERT_ROWS_PER_STATEMENT: usize = 100;

/// Records a certificate. A duplicate serial for the same CA is refused by the database.
pub async fn insert(conn: &mut Conn, c: &CertRow) -> Result<()> {
    insert_many(conn, &[c]).await
}

/// Records certificates with one multi-row INSERT per 100 rows (the group commit of
/// `ra::record`). A duplicate serial fails the whole statement.
pub async fn insert_many(conn: &mut Conn, rows: &[&CertRow]) -> Result<()> {
    for chunk in rows.chunks(CERT_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO certificates (id, tenant_id, ca_id, serial, cert_type, common_name, sans_json, \
             not_before, not_after, source, name, tags_json, spec_json, key_algorithm, leakage_risk, \
             certificate_der, key_sealed, requester, created_at, renewed_from, subject_json, est_client) VALUES {}",
            super::values_placeholders(conn, chunk.len(), CERT_COLUMNS)
        );
        let mut q = query(&sql);
        for c in chunk {
            q = q
                .bind(&c.id)
                .bind(&c.tenant_id)
                .bind(&c.ca_id)
                .bind(&c.serial)
                .bind(c.cert_type.as_str())
                .bind(&c.common_name)
                .bind(&c.sans_json)
                .bind(c.not_before)
                .bind(c.not_after)
                .bind(c.source.as_str())
                .bind(&c.name)
                .bind(&c.tags_json)
                .bind(&c.spec_json)
                .bind(&c.key_algorithm)
                .bind(c.leakage_risk as i64)
                .bind(&c.certificate_der)
                .bind(&c.key_sealed)
                .bind(&c.requester)
                .bind(c.created_at)
                .bind(&c.renewed_from)
                .bind(&c.subject_json)
                .bind(&c.est_client);
        }
        match q.execute(&mut *conn).await {
            Ok(_) => {}
            Err(e) if super::tenants::is_unique_violation(&e) => {
                return Err(Error::internal(format!(
                    "a serial among {} new certificates is already used by its CA",
                    chunk.len()
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A certificate by id, whatever its tenant.
pub async fn get_any_tenant(conn: &mut Conn, id: &str) -> Result<Option<CertRow>> {
    let row = query("SELECT * FROM certificates WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_cert).transpose()
}

/// The certificate a CA issued with `serial` (hex), whatever its tenant.
pub async fn by_serial(conn: &mut Conn, ca_id: &str, serial: &str) -> Result<Option<CertRow>> {
    let row = query("SELECT * FROM certificates WHERE ca_id = $1 AND serial = $2")
        .bind(ca_id)
        .bind(serial)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_cert).transpose()
}

/// A certificate of `tenant_id` by id (deleted ones are gone for the tenant).
pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<CertRow>> {
    let row =
        query("SELECT * FROM certificates WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL")
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(conn)
            .await?;
    row.as_ref().map(row_to_cert).transpose()
}

/// Filters of the inventory.
#[derive(Debug, Default, Clone)]
pub struct CertFilter {
    pub ca_id: Option<String>,
    pub status: Option<CertificateStatus>,
    pub cert_type: Option<LeafType>,
    /// Substring of the CN or of a SAN.
    pub q: Option<String>,
    /// `key` or `key=value`.
    pub tag: Option<String>,
    pub source: Option<CertificateSource>,
    /// Only certificates carrying the leakage-risk flag.
    pub leakage_risk: bool,
    /// Ids strictly greater than this (UUIDv7: creation order).
    pub after: Option<String>,
    pub limit: i64,
}

/// Days before expiry from which a certificate counts as `expiring`.
pub const EXPIRING_DAYS: i64 = vellum_core::status::EXPIRING_DAYS;

use super::like_escape;

/// The tenant's certificates matching `f`, oldest first.
pub async fn list(
    conn: &mut Conn,
    tenant_id: &str,
    f: &CertFilter,
    now: i64,
) -> Result<Vec<CertRow>> {
    let mut sql =
        String::from("SELECT * FROM certificates WHERE tenant_id = $1 AND deleted_at IS NULL");
    let mut args: Vec<String> = vec![tenant_id.to_string()];
    let mut ints: Vec<i64> = Vec::new();
    let mut text = |sql: &mut String, clause: &str, v: String| {
        args.push(v);
        sql.push_str(&clause.replace("{}", &format!("${}", args.len())));
    };
    if let Some(ca) = &f.ca_id {
        text(&mut sql, " AND ca_id = {}", ca.clone());
    }
    if let Some(t) = &f.cert_type {
        text(&mut sql, " AND cert_type = {}", t.as_str().to_string());
    }
    if let Some(s) = f.source {
        text(&mut sql, " AND source = {}", s.as_str().to_string());
    }
    if let Some(q) = &f.q {
        let pattern = format!("%{}%", like_escape(&q.to_ascii_lowercase()));
        text(
            &mut sql,
            " AND (LOWER(common_name) LIKE {} ESCAPE '\\'",
            pattern.clone(),
        );
        text(
            &mut sql,
            " OR LOWER(sans_json) LIKE {} ESCAPE '\\')",
            pattern,
        );
    }
    if let Some(tag) = &f.tag {
        text(
            &mut sql,
            " AND tags_json LIKE {} ESCAPE '\\'",
            super::tag_like_pattern(tag),
        );
    }
    if f.leakage_risk {
        sql.push_str(" AND leakage_risk = 1");
    }
    if let Some(a) = &f.after {
        text(&mut sql, " AND id > {}", a.clone());
    }
    let soon = now + EXPIRING_DAYS * 86_400;
    let n = args.len();
    match f.status {
        Some(CertificateStatus::Revoked) => sql.push_str(" AND revoked_at IS NOT NULL"),
        Some(CertificateStatus::Expired) => {
            sql.push_str(&format!(
                " AND revoked_at IS NULL AND not_after <= ${}",
                n + 1
            ));
            ints.push(now);
        }
        Some(CertificateStatus::Expiring) => {
            sql.push_str(&format!(
                " AND revoked_at IS NULL AND not_after > ${} AND not_after <= ${}",
                n + 1,
                n + 2
            ));
            ints.extend([now, soon]);
        }
        Some(CertificateStatus::Issued) => {
            sql.push_str(&format!(
                " AND revoked_at IS NULL AND not_after > ${}",
                n + 1
            ));
            ints.push(soon);
        }
        None => {}
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 1000)));
    let mut q = query(&sql);
    for a in &args {
        q = q.bind(a);
    }
    for i in &ints {
        q = q.bind(*i);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter().map(row_to_cert).collect()
}

/// Marks a certificate revoked. False when it was already revoked (or is gone).
pub async fn revoke(conn: &mut Conn, id: &str, at: i64, reason: RevocationReason) -> Result<bool> {
    let res = query(
        "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
         WHERE id = $3 AND revoked_at IS NULL AND deleted_at IS NULL",
    )
    .bind(at)
    .bind(reason.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Hides a revoked or expired certificate from the inventory (it stays on CRLs while it
/// has not expired). False when it is neither revoked nor expired.
pub async fn delete(conn: &mut Conn, id: &str, now: i64) -> Result<bool> {
    let res = query(
        "UPDATE certificates SET deleted_at = $1 \
         WHERE id = $2 AND deleted_at IS NULL AND (revoked_at IS NOT NULL OR not_after <= $1)",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Records which certificate a renewal replaced.
pub async fn set_renewed_from(conn: &mut Conn, id: &str, from: &str) -> Result<()> {
    query("UPDATE certificates SET renewed_from = $1 WHERE id = $2")
        .bind(from)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A revoked certificate, as listed on its CA's CRL.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: RevocationReason,
}

/// Unexpired revoked certificates of a CA (its CRL entries), by revocation time.
pub async fn revoked_for_crl(conn: &mut Conn, ca_id: &str, now: i64) -> Result<Vec<Revoked>> {
    let rows = query(
        "SELECT serial, revoked_at, revocation_reason FROM certificates \
         WHERE ca_id = $1 AND revoked_at IS NOT NULL AND not_after > $2 ORDER BY revoked_at, serial",
    )
    .bind(ca_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Revoked {
                serial: r.try_get("serial")?,
                revoked_at: r.try_get("revoked_at")?,
                reason: super::decode_spelled_opt(r, "certificates", "revocation_reason")?
                    .unwrap_or(RevocationReason::Unspecified),
            })
        })
        .collect()
}

/// Replaces a certificate's tags (and the tags of its stored specification, so that a
/// renewal carries them). False when the tenant has no such certificate.
pub async fn set_tags(
    conn: &mut Conn,
    tenant_id: &str,
    id: &str,
    tags_json: &str,
    spec_json: &str,
) -> Result<bool> {
    let res = query(
        "UPDATE certificates SET tags_json = $1, spec_json = $2 \
         WHERE id = $3 AND tenant_id = $4 AND deleted_at IS NULL",
    )
    .bind(tags_json)
    .bind(spec_json)
    .bind(id)
    .bind(tenant_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}
