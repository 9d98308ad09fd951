//! End-entity certificates: the record every issuance writes before the certificate
//! leaves the server.

use super::filter::{page, Common, Where, CERTIFICATES};
use super::{query, Conn, Row};
use vellum_core::error::{Error, Result};
use vellum_core::status::{CertificateSource, CertificateStatus, LeafType, RevocationReason};

/// One certificate as stored.
#[derive(Debug, Clone, Default)]
pub struct CertRow {
    /// Stable identifier (UUIDv7, so ids sort in creation order).
    pub id: String,
    /// The tenant the certificate belongs to.
    pub tenant_id: String,
    /// The issuing intermediate CA. Every certificate issued here has one; the column
    /// allows NULL, which nothing writes today.
    pub ca_id: Option<String>,
    /// Serial, lower-case hex without leading zero bytes; unique per CA.
    pub serial: String,
    /// TLS server or TLS client profile.
    pub cert_type: LeafType,
    /// Subject commonName.
    pub common_name: String,
    /// Subject alternative names: JSON array of `{"type": "dns"|"ip"|"email"|"uri",
    /// "value": …}`.
    pub sans_json: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// When it was revoked, Unix seconds; `None` until revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked; `None` until revoked.
    pub revocation_reason: Option<RevocationReason>,
    /// The door it was issued through: `private_ca`, `acme`, `est`, `system`.
    pub source: CertificateSource,
    /// Optional name in the inventory (at most 128 characters on the admin API).
    pub name: Option<String>,
    /// Inventory tags: JSON object of tag → value (both strings); `{}` without tags.
    pub tags_json: String,
    /// The request that produced it, as JSON: the certificate specification
    /// (`ra::spec::CertSpec`, which renewals decode and repeat) for the admin API and EST;
    /// `{"acme_order", "profile"}` for ACME; `{"purpose": "server-tls"}` for the server's
    /// own TLS certificate.
    pub spec_json: String,
    /// API name of the subject key's algorithm (`ec-p256`, `rsa-2048`…).
    pub key_algorithm: String,
    /// True when it was issued for more than 365 days (`ra::issue::LEAKAGE_RISK_DAYS`).
    pub leakage_risk: bool,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The subject's private key as PKCS#8 PEM sealed with the master key (bound to the
    /// certificate's id) when the server generated it; `None` when the requester holds
    /// the key (CSR).
    pub key_sealed: Option<Vec<u8>>,
    /// Who asked: the API token id (admin), the ACME account id, `est:basic:{user}`,
    /// `est:cert:{serial}` or `est:trusted:{serial}` (EST), `system` (the server's own
    /// TLS certificate).
    pub requester: Option<String>,
    /// When it was deleted from the inventory, Unix seconds; `None` unless deleted (only a
    /// revoked or expired certificate can be).
    pub deleted_at: Option<i64>,
    /// When it was recorded, Unix seconds.
    pub created_at: i64,
    /// The id of the certificate this one renewed; `None` for a first issuance.
    pub renewed_from: Option<String>,
    /// Optional subject fields as a JSON object with the keys `organization`,
    /// `organizational_unit`, `locality`, `state`, `country` (null when absent).
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

/// Whether a certificate has a synced copy in its tenant's managed list, and with whom it
/// is shared: read in the same SELECT as the certificate (correlated subqueries on the
/// `managed_*_origin` indexes), never on the issuance path.
#[derive(Debug, Clone, Default)]
pub struct CertLinks {
    /// A live synced copy exists in the tenant's managed list.
    pub synced: bool,
    /// The live share, if any.
    pub shared_with: Option<ShareLink>,
}

/// The tenant a certificate is shared with.
#[derive(Debug, Clone)]
pub struct ShareLink {
    /// The recipient tenant.
    pub tenant_id: String,
    /// Its name.
    pub tenant_name: String,
    /// When it was shared, Unix seconds.
    pub shared_at: i64,
}

/// The [`CertLinks`] columns, correlated to `certificates`.
const LINK_COLUMNS: &str = "CAST(CASE WHEN EXISTS (SELECT 1 FROM managed_certificates m \
     WHERE m.tenant_id = certificates.tenant_id AND m.origin_certificate_id = certificates.id \
     AND m.source = 'synced' AND m.deleted_at IS NULL) THEN 1 ELSE 0 END AS BIGINT) AS link_synced, \
     (SELECT m.tenant_id FROM managed_certificates m WHERE m.origin_certificate_id = certificates.id \
     AND m.source = 'shared' AND m.deleted_at IS NULL) AS link_shared_tenant, \
     (SELECT m.created_at FROM managed_certificates m WHERE m.origin_certificate_id = certificates.id \
     AND m.source = 'shared' AND m.deleted_at IS NULL) AS link_shared_at, \
     (SELECT t.name FROM managed_certificates m JOIN tenants t ON t.id = m.tenant_id \
     WHERE m.origin_certificate_id = certificates.id AND m.source = 'shared' \
     AND m.deleted_at IS NULL) AS link_shared_name";

fn row_to_links(r: &Row) -> Result<CertLinks> {
    let tenant: Option<String> = r.try_get("link_shared_tenant")?;
    Ok(CertLinks {
        synced: r.try_get::<i64, _>("link_synced")? != 0,
        shared_with: match tenant {
            Some(tenant_id) => Some(ShareLink {
                tenant_id,
                tenant_name: r
                    .try_get::<Option<String>, _>("link_shared_name")?
                    .unwrap_or_default(),
                shared_at: r
                    .try_get::<Option<i64>, _>("link_shared_at")?
                    .unwrap_or_default(),
            }),
            None => None,
        },
    })
}

/// A certificate of `tenant_id` by id (deleted ones are gone), with its links.
pub async fn get_linked(
    conn: &mut Conn,
    tenant_id: &str,
    id: &str,
) -> Result<Option<(CertRow, CertLinks)>> {
    let row = query(&format!(
        "SELECT certificates.*, {LINK_COLUMNS} FROM certificates \
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref()
        .map(|r| Ok((row_to_cert(r)?, row_to_links(r)?)))
        .transpose()
}

/// Certificates of `tenant_id` by id, deleted ones included (sync reports them), in no
/// particular order.
pub async fn get_many(conn: &mut Conn, tenant_id: &str, ids: &[String]) -> Result<Vec<CertRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT * FROM certificates WHERE tenant_id = $1 AND id IN ({})",
        marks.join(", ")
    );
    let mut q = query(&sql).bind(tenant_id);
    for id in ids {
        q = q.bind(id);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter().map(row_to_cert).collect()
}

/// A page of the certificates `ca_id` issued in `tenant_id` (deleted ones included), ids
/// after `after`, oldest first.
pub async fn page_of_ca(
    conn: &mut Conn,
    tenant_id: &str,
    ca_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<CertRow>> {
    let rows = query(&format!(
        "SELECT * FROM certificates WHERE tenant_id = $1 AND ca_id = $2 AND id > $3 \
         ORDER BY id LIMIT {}",
        limit.clamp(1, 1000)
    ))
    .bind(tenant_id)
    .bind(ca_id)
    .bind(after)
    .fetch_all(conn)
    .await?;
    rows.iter().map(row_to_cert).collect()
}

const CERT_COLUMNS: usize = 22;
/// Rows per multi-row INSERT (22 × 100 values: far below both engines' limits).
const CERT_ROWS_PER_STATEMENT: usize = 100;

/// Records a certificate. A serial its CA already used is an internal error (the
/// database refuses the row).
pub async fn insert(conn: &mut Conn, c: &CertRow) -> Result<()> {
    insert_many(conn, &[c]).await
}

/// Records certificates with one multi-row INSERT per 100 rows (the group commit of
/// `ra::record`), and counts them for the overview ([`super::stats::count_recorded`]). A serial its CA already used fails the whole statement with an internal
/// error.
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
    // The overview's counters, in the same transaction.
    super::stats::count_recorded(conn, rows).await
}

/// A certificate by id, whatever its tenant (deleted ones included).
pub async fn get_any_tenant(conn: &mut Conn, id: &str) -> Result<Option<CertRow>> {
    let row = query("SELECT * FROM certificates WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_cert).transpose()
}

/// The certificate a CA issued with `serial` (lower-case hex), whatever its tenant
/// (deleted ones included).
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
    /// Only certificates of this issuing CA.
    pub ca_id: Option<String>,
    /// Only certificates in this status at the `now` of [`list`] (`issued` excludes
    /// `expiring` ones).
    pub status: Option<CertificateStatus>,
    /// Only this profile.
    pub cert_type: Option<LeafType>,
    /// Substring of the CN or of a SAN, case-insensitive.
    pub q: Option<String>,
    /// `key` (the tag is set) or `key=value` (set to that value).
    pub tag: Option<String>,
    /// Only certificates from this door.
    pub source: Option<CertificateSource>,
    /// Only certificates carrying the leakage-risk flag.
    pub leakage_risk: bool,
    /// Ids strictly greater than this (UUIDv7: creation order).
    pub after: Option<String>,
    /// Most rows returned (clamped to 1–1000).
    pub limit: i64,
}

/// Days before expiry from which a certificate counts as `expiring`.
pub const EXPIRING_DAYS: i64 = vellum_core::status::EXPIRING_DAYS;

impl CertFilter {
    /// The WHERE clause of this filter for the tenant at `now` (`store::filter`).
    fn clause(&self, tenant_id: &str, now: i64) -> Where {
        let mut w = Where::tenant(tenant_id);
        if let Some(ca) = &self.ca_id {
            w.push("ca_id = {}", ca.clone());
        }
        if let Some(t) = &self.cert_type {
            w.push("cert_type = {}", t.as_str().to_string());
        }
        w.common(&self.common(), now, true);
        w
    }

    /// The filters shared with the managed list.
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
    ) -> Result<Vec<Row>> {
        let w = self.clause(tenant_id, now);
        page(
            conn,
            &CERTIFICATES,
            tenant_id,
            &w,
            &self.common(),
            columns,
            limit,
        )
        .await
    }
}

/// The tenant's certificates matching `f` at `now`, oldest first, deleted ones hidden; at
/// most `f.limit` (1–1000); each with its [`CertLinks`] (same SELECT).
pub async fn list(
    conn: &mut Conn,
    tenant_id: &str,
    f: &CertFilter,
    now: i64,
) -> Result<Vec<(CertRow, CertLinks)>> {
    let columns = format!("certificates.*, {LINK_COLUMNS}");
    let rows = f
        .page(conn, tenant_id, now, &columns, f.limit.clamp(1, 1000))
        .await?;
    rows.iter()
        .map(|r| Ok((row_to_cert(r)?, row_to_links(r)?)))
        .collect()
}

/// Like [`list`] without the links (no per-row subqueries): the CSV export's pages.
pub async fn list_rows(
    conn: &mut Conn,
    tenant_id: &str,
    f: &CertFilter,
    now: i64,
) -> Result<Vec<CertRow>> {
    let rows = f
        .page(conn, tenant_id, now, "*", f.limit.clamp(1, 1000))
        .await?;
    rows.iter().map(row_to_cert).collect()
}

/// The ids of the tenant's certificates matching `f` at `now`, oldest first, at most
/// `limit` of them (`f.limit` is not used): the selection of a bulk action, which asks
/// for one more than it accepts to tell "too many" apart.
pub async fn ids(
    conn: &mut Conn,
    tenant_id: &str,
    f: &CertFilter,
    now: i64,
    limit: i64,
) -> Result<Vec<String>> {
    let rows = f.page(conn, tenant_id, now, "id", limit).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(Into::into))
        .collect()
}

/// Marks a certificate revoked at `at` for `reason`. False when it was already revoked,
/// is deleted or does not exist. The caller bumps the CA's revocation revision
/// ([`crate::crls::bump_revision`]) in the same transaction so its CRL is re-signed, then
/// takes it out of the overview's counters ([`crate::stats::uncount`], last).
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

/// What [`delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Nothing: no such live row, or it is neither revoked nor expired.
    No,
    /// A revoked certificate.
    Revoked,
    /// An expired, unrevoked one: the caller takes it out of the expiry counters
    /// ([`crate::stats::uncount`], last in its transaction).
    Unrevoked,
}

/// Hides a revoked or expired certificate from the inventory (it stays on CRLs while it
/// has not expired).
pub async fn delete(conn: &mut Conn, id: &str, now: i64) -> Result<Deleted> {
    let row = query(
        "UPDATE certificates SET deleted_at = $1 \
         WHERE id = $2 AND deleted_at IS NULL AND (revoked_at IS NOT NULL OR not_after <= $1) \
         RETURNING revoked_at",
    )
    .bind(now)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => Deleted::No,
        Some(r) if r.try_get::<Option<i64>, _>("revoked_at")?.is_some() => Deleted::Revoked,
        Some(_) => Deleted::Unrevoked,
    })
}

/// Records that certificate `id` renewed certificate `from`.
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
    /// Serial, lower-case hex without leading zero bytes.
    pub serial: String,
    /// When it was revoked, Unix seconds (the entry's revocationDate).
    pub revoked_at: i64,
    /// The entry's reason code (`unspecified` when none was stored).
    pub reason: RevocationReason,
}

/// Unexpired revoked certificates of a CA at `now` (its CRL entries; deleted ones
/// included), by revocation time then serial.
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
