//! End-entity certificates: the record every issuance writes before the certificate
//! leaves the server.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Conn;
use crate::error::{Error, Result};

/// One certificate as stored.
#[derive(Debug, Clone, Default)]
pub struct CertRow {
    pub id: String,
    pub tenant_id: String,
    pub ca_id: Option<String>,
    /// Lower-case hex.
    pub serial: String,
    /// `server` or `client`.
    pub cert_type: String,
    pub common_name: String,
    /// JSON list of `{"type","value"}`.
    pub sans_json: String,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
    /// `private_ca`, `acme`, `est`, `uploaded`, `system`.
    pub source: String,
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
}

fn row_to_cert(r: &AnyRow) -> Result<CertRow> {
    Ok(CertRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        ca_id: r.try_get("ca_id")?,
        serial: r.try_get("serial")?,
        cert_type: r.try_get("cert_type")?,
        common_name: r.try_get("common_name")?,
        sans_json: r.try_get("sans_json")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        source: r.try_get("source")?,
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
    })
}

/// Records a certificate. A duplicate serial for the same CA is refused by the database.
pub async fn insert(conn: &mut Conn, c: &CertRow) -> Result<()> {
    let res = sqlx::query(
        "INSERT INTO certificates (id, tenant_id, ca_id, serial, cert_type, common_name, sans_json, \
         not_before, not_after, source, name, tags_json, spec_json, key_algorithm, leakage_risk, \
         certificate_der, key_sealed, requester, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(&c.id)
    .bind(&c.tenant_id)
    .bind(&c.ca_id)
    .bind(&c.serial)
    .bind(&c.cert_type)
    .bind(&c.common_name)
    .bind(&c.sans_json)
    .bind(c.not_before)
    .bind(c.not_after)
    .bind(&c.source)
    .bind(&c.name)
    .bind(&c.tags_json)
    .bind(&c.spec_json)
    .bind(&c.key_algorithm)
    .bind(c.leakage_risk as i64)
    .bind(&c.certificate_der)
    .bind(&c.key_sealed)
    .bind(&c.requester)
    .bind(c.created_at)
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if super::tenants::is_unique_violation(&e) => Err(Error::internal(format!(
            "serial {} already used by this CA",
            c.serial
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A certificate by id, whatever its tenant.
pub async fn get_any_tenant(conn: &mut Conn, id: &str) -> Result<Option<CertRow>> {
    let row = sqlx::query("SELECT * FROM certificates WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_cert).transpose()
}
