//! revokeCert (RFC 8555 §7.6) and ACME Renewal Information (RFC 9773).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::jws::{self, KeyRef};
use super::problem::{AcmeError, AcmeResult};
use super::{authenticate, with_retry_after, Ctx};
use crate::App;
use store::{self, acme::Account, certificates::CertRow};
use vellum_core::status::{IdentifierType, RevocationReason};
use vellum_core::time::rfc3339;

fn reason(code: i64) -> AcmeResult<RevocationReason> {
    RevocationReason::from_code(code).ok_or_else(|| {
        AcmeError::new(
            "badRevocationReason",
            StatusCode::BAD_REQUEST,
            format!(
                "reason code {code} is not accepted (0-5, 9, 10; certificateHold and \
                 removeFromCRL are not)"
            ),
        )
    })
}

async fn cert_by_serial(ctx: &Ctx, serial: &str) -> AcmeResult<Option<CertRow>> {
    let mut conn = ctx.app.store.reader().acquire().await?;
    Ok(store::certificates::by_serial(&mut conn, &ctx.ca.id, serial).await?)
}

/// `POST revoke-cert`.
pub(super) async fn revoke_cert(
    State(app): State<Arc<App>>,
    Path(ca): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) =
        authenticate(&app, &ca, "revoke-cert", &headers, &body, KeyRef::Either).await?;
    let payload = req.json()?;
    let der = payload
        .get("certificate")
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
        .ok_or_else(|| AcmeError::malformed("revokeCert needs \"certificate\" (base64url DER)"))?;
    let reason = reason(payload.get("reason").and_then(Value::as_i64).unwrap_or(0))?;
    let (_, x) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| AcmeError::malformed("certificate is not a DER X.509 certificate"))?;
    let serial = ca::serial_hex(x.raw_serial());
    let cert = cert_by_serial(&ctx, &serial)
        .await?
        .filter(|c| c.certificate_der == der)
        .ok_or_else(|| AcmeError::not_found("this CA did not issue that certificate"))?;
    let allowed = match &req.account {
        Some(account) => account_may_revoke(&ctx, account, &cert, &x).await?,
        None => {
            let jwk = req
                .jwk
                .as_ref()
                .ok_or_else(|| AcmeError::malformed("missing key"))?;
            jws::spki_thumbprint(x.public_key().raw).as_deref()
                == Some(jws::thumbprint(jwk)?.as_str())
        }
    };
    if !allowed {
        return Err(AcmeError::unauthorized(
            "only the account that ordered this certificate, an account authorized for all its names, or the certificate's own key may revoke it",
        ));
    }
    if cert.revoked_at.is_some() {
        return Err(AcmeError::new(
            "alreadyRevoked",
            StatusCode::BAD_REQUEST,
            format!("certificate {serial} is already revoked"),
        ));
    }
    match ra::revoke::revoke_certificate(&app, &cert.tenant_id, &cert.id, reason).await {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        Err(vellum_core::error::Error::Conflict(_)) => Err(AcmeError::new(
            "alreadyRevoked",
            StatusCode::BAD_REQUEST,
            format!("certificate {serial} is already revoked"),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn account_may_revoke(
    ctx: &Ctx,
    account: &Account,
    cert: &CertRow,
    x: &x509_parser::certificate::X509Certificate<'_>,
) -> AcmeResult<bool> {
    if cert.requester.as_deref() == Some(account.id.as_str()) {
        return Ok(true);
    }
    let names: Vec<(IdentifierType, String)> = match x.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((
                    IdentifierType::Dns,
                    d.trim_start_matches("*.").to_ascii_lowercase(),
                )),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?),
                        _ => return None,
                    };
                    Some((IdentifierType::Ip, ip.to_string()))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        return Ok(false);
    }
    let mut conn = ctx.app.store.reader().acquire().await?;
    let held =
        store::acme::valid_authz_values(&mut conn, &account.id, vellum_core::time::now()).await?;
    Ok(names.iter().all(|n| held.contains(n)))
}

/// Splits an RFC 9773 certID (`base64url(AKI keyIdentifier).base64url(serial)`).
fn parse_cert_id(id: &str) -> AcmeResult<(Vec<u8>, String)> {
    let (aki, serial) = id.split_once('.').ok_or_else(|| {
        AcmeError::malformed("a renewalInfo certID is base64url(AKI).base64url(serial)")
    })?;
    let aki = URL_SAFE_NO_PAD
        .decode(aki.trim_end_matches('='))
        .map_err(|_| AcmeError::malformed("certID: the key identifier is not base64url"))?;
    let serial = URL_SAFE_NO_PAD
        .decode(serial.trim_end_matches('='))
        .map_err(|_| AcmeError::malformed("certID: the serial is not base64url"))?;
    Ok((aki, ca::serial_hex(&serial)))
}

async fn cert_for_id(ctx: &Ctx, id: &str) -> AcmeResult<CertRow> {
    let (_aki, serial) = parse_cert_id(id)?;
    cert_by_serial(ctx, &serial)
        .await?
        .ok_or_else(|| AcmeError::not_found(format!("no certificate with certID {id} here")))
}

/// Checks `replaces` of a newOrder: a certificate of this CA ordered by this account.
pub(super) async fn check_replaces(ctx: &Ctx, account: &Account, id: &str) -> AcmeResult<()> {
    let cert = cert_for_id(ctx, id).await?;
    if cert.requester.as_deref() != Some(account.id.as_str()) {
        return Err(AcmeError::malformed(
            "replaces names a certificate this account did not order",
        ));
    }
    Ok(())
}

/// `GET renewal-info/{certID}`: the suggested renewal window.
pub(super) async fn renewal_info(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
) -> AcmeResult<Response> {
    let ctx = Ctx::load(&app, &ca).await?;
    let cert = cert_for_id(&ctx, &id).await?;
    let now = vellum_core::time::now();
    let (start, end) = if cert.revoked_at.is_some() {
        (now - 86_400, now - 3600)
    } else {
        let life = (cert.not_after - cert.not_before).max(1);
        let start = cert.not_before + life * 2 / 3;
        (start, start + life / 6)
    };
    let body = json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}});
    Ok(with_retry_after(axum::Json(body).into_response(), 21_600))
}
