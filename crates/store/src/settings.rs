//! Installation-wide facts (key/value), e.g. which CA the bootstrap created.

use super::{query, Conn};
use vellum_core::error::Result;

/// The value of `key`, if set.
pub async fn get(conn: &mut Conn, key: &str) -> Result<Option<String>> {
    let row = query("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("value")).transpose()?)
}

/// Sets `key` (insert or overwrite).
pub async fn put(conn: &mut Conn, key: &str, value: &str) -> Result<()> {
    query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}
