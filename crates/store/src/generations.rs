//! CA generations: every certificate a CA has held (renewal and rollover, issue 17).
//!
//! The `cas` row is the CA's identity and holds the *current* generation's certificate
//! and key, so issuance, CRLs and OCSP read one row as before. A renewal inserts the next
//! generation here (and, the first time, generation 1 copied from the row); when its
//! switch-over time has come, [`switch_over`] copies it into the `cas` row with one
//! conditional `UPDATE … WHERE serial = <old serial>`. The issuance recorder spends quota
//! only while the row still holds the serial a leaf was signed under
//! ([`crate::cas::spend`]), so a leaf signed under the old certificate but recorded after
//! the switch is refused (CA changed: retry), never recorded under the wrong issuer.

use super::{query, Conn, Row};
use crate::pool::Tx;
use vellum_core::error::Result;
use vellum_core::status::KeyStorage;

/// One generation of a CA's certificate.
#[derive(Debug, Clone, Default)]
pub struct GenerationRow {
    /// `{ca_id}:{generation}` (names the sealing context of the key).
    pub id: String,
    /// The CA.
    pub ca_id: String,
    /// 1 for the certificate the CA was enabled with, then one more per renewal.
    pub generation: i64,
    /// The generation that introduced this generation's key (a same-key renewal keeps its
    /// predecessor's).
    pub key_generation: i64,
    /// The certificate's serial, lower-case hex without leading zero bytes.
    pub serial: String,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The key, PKCS#8 PEM sealed under the master key with context
    /// `ca-generation:{id}`; `None` for a key kept in the PKCS#11 token.
    pub key_sealed: Option<Vec<u8>>,
    /// Where the key is kept.
    pub key_storage: KeyStorage,
    /// `pkcs11` keys: the token object's CKA_ID, lower-case hex.
    pub pkcs11_key_id: Option<String>,
    /// `pkcs11` keys: the token object's CKA_LABEL.
    pub pkcs11_key_label: Option<String>,
    /// Start of the certificate's validity, Unix seconds.
    pub not_before: i64,
    /// End of the certificate's validity, Unix seconds.
    pub not_after: i64,
    /// A root renewed with a new key: the new key certified by the old key (DER).
    pub cross_signed_der: Option<Vec<u8>>,
    /// When it became (or becomes) the current certificate, Unix seconds.
    pub switch_over_at: i64,
    /// When it was made, Unix seconds.
    pub created_at: i64,
}

impl GenerationRow {
    /// The row id of generation `generation` of CA `ca_id`.
    pub fn id_of(ca_id: &str, generation: i64) -> String {
        format!("{ca_id}:{generation}")
    }

    /// The sealing context of this generation's key.
    pub fn seal_context(&self) -> String {
        format!("ca-generation:{}", self.id)
    }
}

fn row_to_generation(r: &Row) -> Result<GenerationRow> {
    Ok(GenerationRow {
        id: r.try_get("id")?,
        ca_id: r.try_get("ca_id")?,
        generation: r.try_get("generation")?,
        key_generation: r.try_get("key_generation")?,
        serial: r.try_get("serial")?,
        certificate_der: r.try_get("certificate_der")?,
        key_sealed: r.try_get("key_sealed")?,
        key_storage: super::decode_spelled(r, "ca_generations", "key_storage")?,
        pkcs11_key_id: r.try_get("pkcs11_key_id")?,
        pkcs11_key_label: r.try_get("pkcs11_key_label")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        cross_signed_der: r.try_get("cross_signed_der")?,
        switch_over_at: r.try_get("switch_over_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Every generation of CA `ca_id`, oldest first (none before its first renewal).
pub async fn list(conn: &mut Conn, ca_id: &str) -> Result<Vec<GenerationRow>> {
    let rows = query("SELECT * FROM ca_generations WHERE ca_id = $1 ORDER BY generation")
        .bind(ca_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_generation).collect()
}

/// Deletes the renewals of CA `ca_id` newer than its current generation `current` (a
/// renewal still waiting for its switch-over when the CA was revoked: it never becomes
/// current). Returns the rows deleted.
pub async fn delete_waiting(
    conn: &mut Tx,
    ca_id: &str,
    current: i64,
) -> Result<Vec<GenerationRow>> {
    let rows = query("DELETE FROM ca_generations WHERE ca_id = $1 AND generation > $2 RETURNING *")
        .bind(ca_id)
        .bind(current)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_generation).collect()
}

/// Inserts a generation. A second row for the same CA and generation is an error (a
/// concurrent renewal won).
pub async fn insert(conn: &mut Tx, g: &GenerationRow) -> Result<()> {
    query(
        "INSERT INTO ca_generations (id, ca_id, generation, key_generation, serial, \
         certificate_der, key_sealed, key_storage, pkcs11_key_id, pkcs11_key_label, not_before, \
         not_after, cross_signed_der, switch_over_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&g.id)
    .bind(&g.ca_id)
    .bind(g.generation)
    .bind(g.key_generation)
    .bind(&g.serial)
    .bind(&g.certificate_der)
    .bind(&g.key_sealed)
    .bind(g.key_storage.as_str())
    .bind(&g.pkcs11_key_id)
    .bind(&g.pkcs11_key_label)
    .bind(g.not_before)
    .bind(g.not_after)
    .bind(&g.cross_signed_der)
    .bind(g.switch_over_at)
    .bind(g.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks CA `id` (enabled, holding certificate `serial`, with no renewal waiting) as
/// waiting for a renewal that takes over at `at`. False, changing nothing, when the CA is
/// no longer in that state (a concurrent renewal, reset or revocation won).
pub async fn mark_waiting(conn: &mut Tx, id: &str, serial: &str, at: i64) -> Result<bool> {
    conn.retire_caches();
    let res = query(
        "UPDATE cas SET rollover_at = $1 WHERE id = $2 AND status = 'enabled' AND serial = $3 \
         AND rollover_at IS NULL",
    )
    .bind(at)
    .bind(id)
    .bind(serial)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// What a switch-over writes into the `cas` row: the new generation's certificate and
/// key (sealed under the CA's id, the context `cas.key_sealed` is opened with).
#[derive(Debug, Clone)]
pub struct Current<'a> {
    /// The generation taking over.
    pub generation: &'a GenerationRow,
    /// Its key sealed for the `cas` row (`None` for a key in the token).
    pub key_sealed: Option<Vec<u8>>,
}

/// Makes `next` the current certificate of CA `ca_id`, if the CA still holds
/// `old_serial`, is enabled, and its switch-over time (`rollover_at`) has come at `now`.
/// Bumps the CA's revocation revision (its CRL is then signed again, by the new
/// certificate) and announces the change to the OCSP responders. False, changing nothing,
/// otherwise.
pub async fn switch_over(
    conn: &mut Tx,
    ca_id: &str,
    old_serial: &str,
    next: &Current<'_>,
    now: i64,
) -> Result<bool> {
    conn.retire_caches();
    let g = next.generation;
    let res = query(
        "UPDATE cas SET serial = $1, certificate_der = $2, key_sealed = $3, key_storage = $4, \
         pkcs11_key_id = $5, pkcs11_key_label = $6, not_before = $7, not_after = $8, \
         generation = $9, key_generation = $10, rollover_at = NULL \
         WHERE id = $11 AND serial = $12 AND status = 'enabled' AND rollover_at IS NOT NULL \
         AND rollover_at <= $13",
    )
    .bind(&g.serial)
    .bind(&g.certificate_der)
    .bind(&next.key_sealed)
    .bind(g.key_storage.as_str())
    .bind(&g.pkcs11_key_id)
    .bind(&g.pkcs11_key_label)
    .bind(g.not_before)
    .bind(g.not_after)
    .bind(g.generation)
    .bind(g.key_generation)
    .bind(ca_id)
    .bind(old_serial)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    super::crls::bump_revision(conn, ca_id).await?;
    // The stored CRL and delta were signed by the old certificate: the next fetch signs
    // afresh (with delta CRLs on, a revision bump alone would not renew the base).
    for table in ["crls", "delta_crls"] {
        query(&format!("DELETE FROM {table} WHERE ca_id = $1"))
            .bind(ca_id)
            .execute(&mut *conn)
            .await?;
    }
    super::ocsp::ca_changed(conn, ca_id, now).await?;
    Ok(true)
}

/// Ids of enabled CAs whose waiting renewal is due at `now` (the background job's round).
pub async fn due(conn: &mut Conn, now: i64) -> Result<Vec<String>> {
    let rows = query(
        "SELECT id FROM cas WHERE status = 'enabled' AND rollover_at IS NOT NULL \
         AND rollover_at <= $1 ORDER BY id",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}
