//! OCSP: per-CA responder settings, the signed responses held ready, the delegated
//! signing certificates, and the change feed (`ocsp_events`) that tells every replica
//! which cached responses to drop.

use super::{decode_spelled_opt, query, Conn};
use crate::pool::Tx;
use vellum_core::error::Result;
use vellum_core::status::RevocationReason;

/// A signed OCSP response as stored.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// The CA it answers for.
    pub ca_id: String,
    /// The certificate serial, lower-case hex without leading zero bytes.
    pub serial: String,
    /// The CertID hash it echoes (`sha1`, `sha256`).
    pub hash_alg: String,
    /// What it says (`good`, `revoked`).
    pub status: String,
    /// The key and settings that signed it; a response from another responder is stale.
    pub responder: String,
    /// Its thisUpdate, Unix seconds.
    pub this_update: i64,
    /// Its nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The OCSPResponse, DER.
    pub der: Vec<u8>,
}

/// The stored response for `(ca_id, serial, hash_alg)`, if any.
pub async fn get_response(
    conn: &mut Conn,
    ca_id: &str,
    serial: &str,
    hash_alg: &str,
) -> Result<Option<StoredResponse>> {
    let row = query(
        "SELECT ca_id, serial, hash_alg, status, responder, this_update, next_update, der \
         FROM ocsp_responses WHERE ca_id = $1 AND serial = $2 AND hash_alg = $3",
    )
    .bind(ca_id)
    .bind(serial)
    .bind(hash_alg)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(StoredResponse {
            ca_id: r.try_get("ca_id")?,
            serial: r.try_get("serial")?,
            hash_alg: r.try_get("hash_alg")?,
            status: r.try_get("status")?,
            responder: r.try_get("responder")?,
            this_update: r.try_get("this_update")?,
            next_update: r.try_get("next_update")?,
            der: r.try_get("der")?,
        })
    })
    .transpose()
}

/// Stores (or replaces) a signed response.
pub async fn put_response(conn: &mut Conn, r: &StoredResponse) -> Result<()> {
    query(
        "INSERT INTO ocsp_responses (ca_id, serial, hash_alg, status, responder, this_update, \
         next_update, der) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (ca_id, serial, hash_alg) DO UPDATE SET status = excluded.status, \
         responder = excluded.responder, this_update = excluded.this_update, \
         next_update = excluded.next_update, der = excluded.der",
    )
    .bind(&r.ca_id)
    .bind(&r.serial)
    .bind(&r.hash_alg)
    .bind(&r.status)
    .bind(&r.responder)
    .bind(r.this_update)
    .bind(r.next_update)
    .bind(&r.der)
    .execute(conn)
    .await?;
    Ok(())
}

/// The revocation state of a serial a CA issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialStatus {
    /// Issued by the CA, not revoked.
    Good,
    /// Revoked at (Unix seconds) for the reason.
    Revoked(i64, RevocationReason),
}

/// Whether `serial` was issued by `ca_id` and whether it is revoked: a leaf of an
/// intermediate (`certificates`), or an intermediate's certificate of a root (`cas` and
/// `ca_cert_revocations`, where a reset intermediate's old certificate stays listed).
/// `None`: the CA never issued that serial.
pub async fn serial_status(
    conn: &mut Conn,
    ca_id: &str,
    is_root: bool,
    serial: &str,
) -> Result<Option<SerialStatus>> {
    if is_root {
        let row = query(
            "SELECT revoked_at, reason FROM ca_cert_revocations \
             WHERE issuer_id = $1 AND serial = $2",
        )
        .bind(ca_id)
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            let reason = decode_spelled_opt(&r, "ca_cert_revocations", "reason")?
                .unwrap_or(RevocationReason::Unspecified);
            return Ok(Some(SerialStatus::Revoked(
                r.try_get("revoked_at")?,
                reason,
            )));
        }
        let row = query("SELECT id FROM cas WHERE parent_id = $1 AND serial = $2")
            .bind(ca_id)
            .bind(serial)
            .fetch_optional(&mut *conn)
            .await?;
        return Ok(row.map(|_| SerialStatus::Good));
    }
    let row = query(
        "SELECT revoked_at, revocation_reason FROM certificates WHERE ca_id = $1 AND serial = $2",
    )
    .bind(ca_id)
    .bind(serial)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(match r.try_get::<Option<i64>, _>("revoked_at")? {
            None => SerialStatus::Good,
            Some(at) => SerialStatus::Revoked(
                at,
                decode_spelled_opt(&r, "certificates", "revocation_reason")?
                    .unwrap_or(RevocationReason::Unspecified),
            ),
        })
    })
    .transpose()
}

/// A serial's revocation committed: its stored responses go and an event tells every
/// replica to drop what it cached. Call inside the revoking transaction.
pub async fn revoked(conn: &mut Conn, ca_id: &str, serial: &str, at: i64) -> Result<()> {
    query("DELETE FROM ocsp_responses WHERE ca_id = $1 AND serial = $2")
        .bind(ca_id)
        .bind(serial)
        .execute(&mut *conn)
        .await?;
    query("INSERT INTO ocsp_events (ca_id, serial, at) VALUES ($1, $2, $3)")
        .bind(ca_id)
        .bind(serial)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A CA's OCSP settings or signing key changed: every cached response of it goes.
pub async fn ca_changed(conn: &mut Conn, ca_id: &str, at: i64) -> Result<()> {
    query("INSERT INTO ocsp_events (ca_id, serial, at) VALUES ($1, NULL, $2)")
        .bind(ca_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// One entry of the change feed.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its position (increasing in insertion order; on PostgreSQL, commits may land out
    /// of order, so readers look back a little).
    pub seq: i64,
    /// The CA.
    pub ca_id: String,
    /// The revoked serial; `None`: the whole CA.
    pub serial: Option<String>,
}

/// Events with `seq > after`, oldest first, at most `limit`.
pub async fn events_after(conn: &mut Conn, after: i64, limit: i64) -> Result<Vec<Event>> {
    let rows =
        query("SELECT seq, ca_id, serial FROM ocsp_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                seq: r.try_get("seq")?,
                ca_id: r.try_get("ca_id")?,
                serial: r.try_get("serial")?,
            })
        })
        .collect()
}

/// The highest event position so far (0 when there is none).
pub async fn last_event(conn: &mut Conn) -> Result<i64> {
    let row = query("SELECT COALESCE(MAX(seq), 0) AS m FROM ocsp_events")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get("m")?)
}

/// Deletes events older than `before` (Unix seconds); replicas have long seen them.
pub async fn purge_events(conn: &mut Conn, before: i64) -> Result<u64> {
    let res = query("DELETE FROM ocsp_events WHERE at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(res.rows_affected())
}

/// Sets a CA's responder settings, drops its stored responses, and records the change
/// for the other replicas.
pub async fn set_settings(
    conn: &mut Tx,
    ca_id: &str,
    enabled: bool,
    delegated: bool,
    validity_hours: i64,
    at: i64,
) -> Result<()> {
    conn.retire_caches();
    let conn: &mut Conn = conn;
    query(
        "UPDATE cas SET ocsp_enabled = $1, ocsp_delegated = $2, ocsp_validity_hours = $3 \
         WHERE id = $4",
    )
    .bind(enabled as i64)
    .bind(delegated as i64)
    .bind(validity_hours)
    .bind(ca_id)
    .execute(&mut *conn)
    .await?;
    query("DELETE FROM ocsp_responses WHERE ca_id = $1")
        .bind(ca_id)
        .execute(&mut *conn)
        .await?;
    ca_changed(conn, ca_id, at).await
}

/// A delegated OCSP signing certificate with its sealed key.
#[derive(Debug, Clone)]
pub struct SignerRow {
    /// The CA that issued it.
    pub ca_id: String,
    /// Its serial, lower-case hex.
    pub serial: String,
    /// The serial of the CA certificate that signed it (a reset CA gets a new signer).
    pub ca_serial: String,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Its private key, sealed under the master key (context: the CA id + "/ocsp").
    pub key_sealed: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// The current delegated signer of a CA, if any.
pub async fn get_signer(conn: &mut Conn, ca_id: &str) -> Result<Option<SignerRow>> {
    let row = query(
        "SELECT ca_id, serial, ca_serial, certificate_der, key_sealed, not_before, not_after \
         FROM ocsp_signers WHERE ca_id = $1",
    )
    .bind(ca_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(SignerRow {
            ca_id: r.try_get("ca_id")?,
            serial: r.try_get("serial")?,
            ca_serial: r.try_get("ca_serial")?,
            certificate_der: r.try_get("certificate_der")?,
            key_sealed: r.try_get("key_sealed")?,
            not_before: r.try_get("not_before")?,
            not_after: r.try_get("not_after")?,
        })
    })
    .transpose()
}

/// Makes `s` its CA's delegated signer unless a later one is already stored (two
/// replicas rotating at once keep the one that lasts longer).
pub async fn put_signer(conn: &mut Conn, s: &SignerRow) -> Result<()> {
    query(
        "INSERT INTO ocsp_signers (ca_id, serial, ca_serial, certificate_der, key_sealed, \
         not_before, not_after) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (ca_id) DO UPDATE SET serial = excluded.serial, \
         ca_serial = excluded.ca_serial, \
         certificate_der = excluded.certificate_der, key_sealed = excluded.key_sealed, \
         not_before = excluded.not_before, not_after = excluded.not_after \
         WHERE ocsp_signers.not_after < excluded.not_after \
         OR ocsp_signers.ca_serial <> excluded.ca_serial",
    )
    .bind(&s.ca_id)
    .bind(&s.serial)
    .bind(&s.ca_serial)
    .bind(&s.certificate_der)
    .bind(&s.key_sealed)
    .bind(s.not_before)
    .bind(s.not_after)
    .execute(conn)
    .await?;
    Ok(())
}
