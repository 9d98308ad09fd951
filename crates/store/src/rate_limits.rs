//! Per-CA overrides of the configured rate limits (`ca_rate_limits`).

use crate::pool::Tx;
use serde::{Deserialize, Serialize};

use super::{query, Conn};
use vellum_core::error::Result;

/// Overrides of one CA; `None` keeps the configured value (`[rate_limits]`). The names are
/// the configuration keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// ACME accounts one source IP may create per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_new_accounts_per_ip_per_hour: Option<u32>,
    /// ACME orders per account per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_orders_per_account_per_hour: Option<u32>,
    /// Failed ACME validations per account and name per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_failed_validations_per_name_per_hour: Option<u32>,
    /// Failed EST Basic logins per user name before back-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_failed_logins_per_user: Option<u32>,
    /// Failed EST Basic logins per source IP before back-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_failed_logins_per_ip: Option<u32>,
}

/// The overrides of `ca_id` (none when never set).
pub async fn get(conn: &mut Conn, ca_id: &str) -> Result<Overrides> {
    let row = query("SELECT limits_json FROM ca_rate_limits WHERE ca_id = $1")
        .bind(ca_id)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => {
            serde_json::from_str(&r.try_get::<String, _>("limits_json")?).unwrap_or_default()
        }
        None => Overrides::default(),
    })
}

/// Stores the overrides of `ca_id`.
pub async fn put(conn: &mut Tx, ca_id: &str, o: &Overrides, now: i64) -> Result<()> {
    conn.retire_caches();
    query(
        "INSERT INTO ca_rate_limits (ca_id, limits_json, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (ca_id) DO UPDATE SET limits_json = excluded.limits_json, \
         updated_at = excluded.updated_at",
    )
    .bind(ca_id)
    .bind(serde_json::to_string(o).unwrap_or_else(|_| "{}".into()))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
