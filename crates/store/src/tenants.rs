//! Tenants and API tokens.

use super::{query, Conn, Row};
use crate::pool::Tx;
use vellum_core::error::{Error, Result};

/// A tenant: one customer of the CA service, isolated from the others.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Stable identifier.
    pub id: String,
    /// Unique name (`default` for the bootstrap tenant).
    pub name: String,
    /// The verified legal entity the tenant belongs to.
    pub entity: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// An API token (its secret is never stored, only its SHA-256).
#[derive(Debug, Clone, Default)]
pub struct Token {
    /// Stable identifier (appears in audit events as the actor).
    pub id: String,
    /// Tenant the token acts in.
    pub tenant_id: String,
    /// What the token may do (`super`, `admin`, `operator`, `auditor`).
    pub role: vellum_core::status::Role,
    /// Human label.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was revoked, Unix seconds; `None` until revoked.
    pub revoked_at: Option<i64>,
}

fn tenant(row: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        entity: row.try_get("entity")?,
        created_at: row.try_get("created_at")?,
    })
}

fn token(row: &Row) -> Result<Token> {
    Ok(Token {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        role: super::decode_spelled(row, "api_tokens", "role")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Inserts a tenant; a duplicate name is a 409.
pub async fn insert_tenant(conn: &mut Conn, t: &Tenant) -> Result<()> {
    let res = query("INSERT INTO tenants (id, name, entity, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.entity)
        .bind(t.created_at)
        .execute(conn)
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(Error::conflict(format!(
            "a tenant named {:?} already exists",
            t.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Finds a tenant by id or by name.
pub async fn find_tenant(conn: &mut Conn, id_or_name: &str) -> Result<Option<Tenant>> {
    let row = query("SELECT * FROM tenants WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(tenant).transpose()
}

/// A page of tenants, oldest first (ids are time-ordered UUIDv7): only `only` when given,
/// ids after `after`, at most `limit` (1–1000).
pub async fn list_tenants(
    conn: &mut Conn,
    only: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Tenant>> {
    let sql = format!(
        "SELECT * FROM tenants WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR id > $2) \
         ORDER BY id LIMIT {}",
        limit.clamp(1, 1000)
    );
    let rows = query(&sql).bind(only).bind(after).fetch_all(conn).await?;
    rows.iter().map(tenant).collect()
}

/// Inserts a token with the hash of its secret (`token_hash`: lower-case hex SHA-256) and
/// the id of the token that created it (`None` for the bootstrap token).
pub async fn insert_token(
    conn: &mut Conn,
    t: &Token,
    token_hash: &str,
    created_by: Option<&str>,
) -> Result<()> {
    query(
        "INSERT INTO api_tokens (id, tenant_id, role, name, token_hash, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.tenant_id)
    .bind(t.role.as_str())
    .bind(&t.name)
    .bind(token_hash)
    .bind(t.created_at)
    .bind(created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// The unrevoked token whose secret hashes to `token_hash`.
pub async fn token_by_hash(conn: &mut Conn, token_hash: &str) -> Result<Option<Token>> {
    let row = query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(token_hash)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(token).transpose()
}

/// A token by id, revoked or not.
pub async fn token_by_id(conn: &mut Conn, id: &str) -> Result<Option<Token>> {
    let row = query("SELECT * FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(token).transpose()
}

/// A page of tokens of a tenant (all tenants when `None`), oldest first: ids after
/// `after`, at most `limit` (1–1000).
pub async fn list_tokens(
    conn: &mut Conn,
    tenant_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Token>> {
    let sql = format!(
        "SELECT * FROM api_tokens WHERE ($1 IS NULL OR tenant_id = $1) \
         AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT {}",
        limit.clamp(1, 1000)
    );
    let rows = query(&sql)
        .bind(tenant_id)
        .bind(after)
        .fetch_all(conn)
        .await?;
    rows.iter().map(token).collect()
}

/// Marks a token revoked; false when it was already revoked.
pub async fn revoke_token(conn: &mut Tx, id: &str, at: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// True for UNIQUE / PRIMARY KEY violations on either backend.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}
