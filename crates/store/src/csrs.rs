//! Certificate signing requests made here, with their sealed keys (`csrs`).

use super::{query, Conn, Row};
use vellum_core::error::Result;

/// One CSR.
#[derive(Debug, Clone)]
pub struct CsrRow {
    /// UUIDv7.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Subject CN.
    pub common_name: String,
    /// RFC 4514-style subject.
    pub subject: String,
    /// JSON list of `{"type", "value"}` subject alternative names.
    pub sans_json: String,
    /// API name of the key algorithm (`ec-p256`…).
    pub key_algorithm: String,
    /// The PKCS#10 request (DER).
    pub csr_der: Vec<u8>,
    /// The private key, PKCS#8 sealed with the master key under the context
    /// `csr:<id>`.
    pub key_sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Token id of the creator.
    pub created_by: Option<String>,
}

fn row_to_csr(r: &Row) -> Result<CsrRow> {
    Ok(CsrRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        common_name: r.try_get("common_name")?,
        subject: r.try_get("subject")?,
        sans_json: r.try_get("sans_json")?,
        key_algorithm: r.try_get("key_algorithm")?,
        csr_der: r.try_get("csr_der")?,
        key_sealed: r.try_get("key_sealed")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// Stores a new CSR.
pub async fn insert(conn: &mut Conn, c: &CsrRow) -> Result<()> {
    query(
        "INSERT INTO csrs (id, tenant_id, common_name, subject, sans_json, key_algorithm, \
         csr_der, key_sealed, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&c.id)
    .bind(&c.tenant_id)
    .bind(&c.common_name)
    .bind(&c.subject)
    .bind(&c.sans_json)
    .bind(&c.key_algorithm)
    .bind(&c.csr_der)
    .bind(&c.key_sealed)
    .bind(c.created_at)
    .bind(&c.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant's CSR `id` (`None` when it has none of that id).
pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<CsrRow>> {
    let row = query("SELECT * FROM csrs WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_csr).transpose()
}

/// The tenant's CSRs by id (creation order), after `after`, at most `limit` (1–1000).
pub async fn list(
    conn: &mut Conn,
    tenant_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<CsrRow>> {
    let rows = query(&format!(
        "SELECT * FROM csrs WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT {}",
        limit.clamp(1, 1000)
    ))
    .bind(tenant_id)
    .bind(after.unwrap_or(""))
    .fetch_all(conn)
    .await?;
    rows.iter().map(row_to_csr).collect()
}

/// Deletes the tenant's CSR `id` and its key; false when there was none.
pub async fn delete(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<bool> {
    let res = query("DELETE FROM csrs WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(res.rows_affected() == 1)
}
