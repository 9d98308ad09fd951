//! Web console sessions (migration 0019): rows keyed by the SHA-256 of the cookie's
//! session id, pointing at the API token the browser signed in with (by its hash).

use super::sql::{query, Conn};
use vellum_core::error::Result;

/// A live session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// SHA-256 (hex) of the session id.
    pub id_hash: String,
    /// Hash of the API token the session acts as.
    pub token_hash: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last request (updated at most once a minute).
    pub last_seen_at: i64,
    /// Unix seconds after which the session is gone.
    pub expires_at: i64,
}

/// Opens a session.
pub async fn insert(conn: &mut Conn, s: &SessionRow) -> Result<()> {
    query(
        "INSERT INTO console_sessions (id_hash, token_hash, created_at, last_seen_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&s.id_hash)
    .bind(&s.token_hash)
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The session with this id hash, unless expired at `now`.
pub async fn get(conn: &mut Conn, id_hash: &str, now: i64) -> Result<Option<SessionRow>> {
    let row = query(
        "SELECT id_hash, token_hash, created_at, last_seen_at, expires_at \
         FROM console_sessions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(SessionRow {
            id_hash: r.try_get("id_hash")?,
            token_hash: r.try_get("token_hash")?,
            created_at: r.try_get("created_at")?,
            last_seen_at: r.try_get("last_seen_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Records activity: `last_seen_at = now`, `expires_at = expires_at`.
pub async fn touch(conn: &mut Conn, id_hash: &str, now: i64, expires_at: i64) -> Result<()> {
    query("UPDATE console_sessions SET last_seen_at = $1, expires_at = $2 WHERE id_hash = $3")
        .bind(now)
        .bind(expires_at)
        .bind(id_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends a session (sign-out); false when there was none.
pub async fn delete(conn: &mut Conn, id_hash: &str) -> Result<bool> {
    let r = query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Forgets sessions expired before `now`; how many.
pub async fn delete_expired(conn: &mut Conn, now: i64) -> Result<u64> {
    let r = query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}
