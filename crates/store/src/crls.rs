//! Signed CRLs, the revision counters that tell when one is stale, and job leases.

use super::{query, Conn};
use crate::pool::Tx;
use vellum_core::error::Result;

/// The latest CRL of a CA.
#[derive(Debug, Clone)]
pub struct CrlRow {
    /// The CA that signed it (one stored CRL per CA).
    pub ca_id: String,
    /// Its cRLNumber, taken from [`next_number`]: strictly increasing per CA.
    pub crl_number: i64,
    /// The CA's `revocation_revision` this CRL reflects.
    pub revision: i64,
    /// Its thisUpdate (when it was signed), Unix seconds.
    pub this_update: i64,
    /// Its nextUpdate, Unix seconds.
    pub next_update: i64,
    /// How many revoked certificates it lists.
    pub entries: i64,
    /// Whether it carries freshestCRL (the CA published delta CRLs when it was signed).
    pub freshest: bool,
    /// The signed CRL, DER.
    pub der: Vec<u8>,
}

/// The stored CRL of `ca_id`, if any.
pub async fn get(conn: &mut Conn, ca_id: &str) -> Result<Option<CrlRow>> {
    let row = query("SELECT * FROM crls WHERE ca_id = $1")
        .bind(ca_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(CrlRow {
            ca_id: r.try_get("ca_id")?,
            crl_number: r.try_get("crl_number")?,
            revision: r.try_get("revision")?,
            this_update: r.try_get("this_update")?,
            next_update: r.try_get("next_update")?,
            entries: r.try_get("entries")?,
            freshest: r.try_get::<i64, _>("freshest")? != 0,
            der: r.try_get("der")?,
        })
    })
    .transpose()
}

/// Stores a CRL as its CA's latest, unless one with a higher or equal number is already
/// stored (then nothing changes).
pub async fn put(conn: &mut Conn, c: &CrlRow) -> Result<()> {
    query(
        "INSERT INTO crls (ca_id, crl_number, revision, this_update, next_update, entries, \
         freshest, der) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (ca_id) DO UPDATE SET crl_number = excluded.crl_number, \
         revision = excluded.revision, this_update = excluded.this_update, \
         next_update = excluded.next_update, entries = excluded.entries, \
         freshest = excluded.freshest, der = excluded.der \
         WHERE crls.crl_number < excluded.crl_number",
    )
    .bind(&c.ca_id)
    .bind(c.crl_number)
    .bind(c.revision)
    .bind(c.this_update)
    .bind(c.next_update)
    .bind(c.entries)
    .bind(c.freshest as i64)
    .bind(&c.der)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest delta CRL of a CA (RFC 5280 §5.2.4).
#[derive(Debug, Clone)]
pub struct DeltaRow {
    /// The CA that signed it (one stored delta per CA).
    pub ca_id: String,
    /// Its cRLNumber, from the same sequence as base CRLs ([`next_number`]).
    pub crl_number: i64,
    /// The number of the base CRL it is relative to (its deltaCRLIndicator).
    pub base_number: i64,
    /// The CA's `revocation_revision` this delta reflects.
    pub revision: i64,
    /// Its thisUpdate, Unix seconds.
    pub this_update: i64,
    /// Its nextUpdate, Unix seconds.
    pub next_update: i64,
    /// How many revoked certificates it lists (those not on its base).
    pub entries: i64,
    /// The signed delta CRL, DER.
    pub der: Vec<u8>,
}

/// The stored delta CRL of `ca_id`, if any.
pub async fn get_delta(conn: &mut Conn, ca_id: &str) -> Result<Option<DeltaRow>> {
    let row = query("SELECT * FROM delta_crls WHERE ca_id = $1")
        .bind(ca_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(DeltaRow {
            ca_id: r.try_get("ca_id")?,
            crl_number: r.try_get("crl_number")?,
            base_number: r.try_get("base_number")?,
            revision: r.try_get("revision")?,
            this_update: r.try_get("this_update")?,
            next_update: r.try_get("next_update")?,
            entries: r.try_get("entries")?,
            der: r.try_get("der")?,
        })
    })
    .transpose()
}

/// Stores a delta CRL as its CA's latest, unless one with a higher or equal number is
/// already stored (then nothing changes).
pub async fn put_delta(conn: &mut Conn, d: &DeltaRow) -> Result<()> {
    query(
        "INSERT INTO delta_crls (ca_id, crl_number, base_number, revision, this_update, \
         next_update, entries, der) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (ca_id) DO UPDATE SET crl_number = excluded.crl_number, \
         base_number = excluded.base_number, revision = excluded.revision, \
         this_update = excluded.this_update, next_update = excluded.next_update, \
         entries = excluded.entries, der = excluded.der \
         WHERE delta_crls.crl_number < excluded.crl_number",
    )
    .bind(&d.ca_id)
    .bind(d.crl_number)
    .bind(d.base_number)
    .bind(d.revision)
    .bind(d.this_update)
    .bind(d.next_update)
    .bind(d.entries)
    .bind(&d.der)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets whether a CA publishes delta CRLs and their nextUpdate interval in `minutes`,
/// and bumps its revocation revision (the base is re-signed with or without freshestCRL
/// when its flag no longer matches).
pub async fn set_delta_settings(
    conn: &mut Tx,
    ca_id: &str,
    enabled: bool,
    minutes: i64,
) -> Result<()> {
    conn.retire_caches();
    query(
        "UPDATE cas SET crl_delta_enabled = $1, crl_delta_minutes = $2, \
         revocation_revision = revocation_revision + 1 WHERE id = $3",
    )
    .bind(enabled as i64)
    .bind(minutes)
    .bind(ca_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the next CRL number of a CA (strictly increasing, persisted, shared by replicas)
/// and returns it with the CA's current revocation revision. An error when there is no
/// such CA.
pub async fn next_number(conn: &mut Conn, ca_id: &str) -> Result<(i64, i64)> {
    let row = query(
        "UPDATE cas SET crl_number = crl_number + 1 WHERE id = $1 \
         RETURNING crl_number, revocation_revision",
    )
    .bind(ca_id)
    .fetch_one(conn)
    .await?;
    Ok((
        row.try_get("crl_number")?,
        row.try_get("revocation_revision")?,
    ))
}

/// Marks a CA's CRL stale (a certificate it issued was revoked, or its settings changed)
/// by bumping its revocation revision. No error when there is no such CA.
pub async fn bump_revision(conn: &mut Conn, ca_id: &str) -> Result<()> {
    query("UPDATE cas SET revocation_revision = revocation_revision + 1 WHERE id = $1")
        .bind(ca_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The CA's current revocation revision. An error when there is no such CA.
pub async fn revision(conn: &mut Conn, ca_id: &str) -> Result<i64> {
    let row = query("SELECT revocation_revision FROM cas WHERE id = $1")
        .bind(ca_id)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get("revocation_revision")?)
}

/// Sets whether a CA publishes a CRL and its nextUpdate interval in `hours`, and bumps its
/// revocation revision so that the next CRL is signed afresh.
pub async fn set_settings(conn: &mut Tx, ca_id: &str, enabled: bool, hours: i64) -> Result<()> {
    conn.retire_caches();
    query(
        "UPDATE cas SET crl_enabled = $1, crl_next_update_hours = $2, \
         revocation_revision = revocation_revision + 1 WHERE id = $3",
    )
    .bind(enabled as i64)
    .bind(hours)
    .bind(ca_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ids of enabled CAs with CRLs on, by id (candidates for background regeneration).
pub async fn ca_ids_with_crl(conn: &mut Conn) -> Result<Vec<String>> {
    let rows = query("SELECT id FROM cas WHERE crl_enabled = 1 AND status = 'enabled' ORDER BY id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// Takes or renews the lease `name` for `holder` until `until` (Unix seconds). True when
/// `holder` now holds it: the lease was free, had expired before `now`, or was its own;
/// false while another holder's lease runs.
pub async fn take_lease(
    conn: &mut Conn,
    name: &str,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<bool> {
    let res = query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(until)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}
