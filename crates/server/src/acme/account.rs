//! Accounts: newAccount (with EAB), update, deactivate, orders list, keyChange.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::jws::{self, KeyRef};
use super::problem::{AcmeError, AcmeResult};
use super::{authenticate, reply, Ctx};
use crate::listener::RemoteAddr;
use crate::App;
use ra::ratelimit::{self, Rate};
use store::{self, acme::Account};
use vellum_core::status::AccountStatus;

/// Orders per page of the orders list.
const ORDERS_PAGE: i64 = 100;

/// The account object.
pub(super) fn account_json(ctx: &Ctx, a: &Account) -> Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "termsOfServiceAgreed": a.tos_agreed,
        "orders": ctx.url(&format!("acct/{}/orders", a.id)),
        "createdAt": vellum_core::time::rfc3339(a.created_at),
    })
}

/// Most contacts an account may list.
pub(super) const MAX_CONTACTS: usize = 4;
/// Longest contact URL (`mailto:` + an RFC 5321 address of at most 254 characters).
pub(super) const MAX_CONTACT_LEN: usize = 7 + 254;

fn invalid_contact(detail: String) -> AcmeError {
    AcmeError::new("invalidContact", StatusCode::BAD_REQUEST, detail)
}

/// The first characters of a (possibly huge) peer-supplied string, for a message.
fn excerpt(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn check_contacts(v: &Value) -> AcmeResult<Vec<String>> {
    let Some(list) = v.get("contact") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| AcmeError::malformed("contact must be an array of mailto: URLs"))?;
    // Size rules first, so that an oversized list costs nothing more to refuse.
    if list.len() > MAX_CONTACTS {
        return Err(invalid_contact(format!(
            "{} contacts given; an account may list at most {MAX_CONTACTS}",
            list.len()
        )));
    }
    for c in list {
        if let Some(s) = c.as_str().filter(|s| s.len() > MAX_CONTACT_LEN) {
            return Err(invalid_contact(format!(
                "contact {} is {} characters long; at most {MAX_CONTACT_LEN} (\"mailto:\" and an address of at most 254) are accepted",
                excerpt(s),
                s.len()
            )));
        }
    }
    let mut out = Vec::new();
    for c in list {
        let s = c
            .as_str()
            .ok_or_else(|| AcmeError::malformed("contact entries must be strings"))?;
        let addr = s.strip_prefix("mailto:").ok_or_else(|| {
            AcmeError::new(
                "unsupportedContact",
                StatusCode::BAD_REQUEST,
                format!("contact {s:?} is not a mailto: URL; only e-mail contacts are supported"),
            )
        })?;
        let valid = match addr.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !addr.contains(',')
                    && !addr.contains('?')
                    && ra::names::valid_dns_name(domain)
                    && domain.contains('.')
            }
            None => false,
        };
        if !valid {
            return Err(invalid_contact(format!(
                "contact {s:?} is not a valid e-mail address"
            )));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

/// Checks an externalAccountBinding (RFC 8555 §7.3.4); returns the kid.
async fn check_eab(ctx: &Ctx, eab: &Value, jwk: &Value, url: &str) -> AcmeResult<String> {
    let f = jws::parse_flattened(eab)?;
    let alg = f
        .protected
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(alg, "HS256" | "HS384" | "HS512") {
        return Err(AcmeError::malformed(format!(
            "externalAccountBinding must be MAC-signed (HS256), got {alg:?}"
        )));
    }
    if f.protected.get("nonce").is_some() {
        return Err(AcmeError::malformed(
            "externalAccountBinding must not carry a nonce",
        ));
    }
    if f.protected.get("url").and_then(Value::as_str) != Some(url) {
        return Err(AcmeError::malformed(
            "externalAccountBinding url must equal the newAccount URL",
        ));
    }
    let kid = f
        .protected
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeError::malformed("externalAccountBinding has no kid"))?
        .to_string();
    let key = {
        let mut conn = ctx.app.store.reader().acquire().await?;
        store::acme::eab(&mut conn, &kid).await?
    }
    .filter(|k| k.ca_id == ctx.ca.id)
    .ok_or_else(|| AcmeError::unauthorized(format!("unknown external account key id {kid:?}")))?;
    if key.account_id.is_some() {
        return Err(AcmeError::unauthorized(format!(
            "external account key {kid:?} is already bound to an account"
        )));
    }
    let secret = ctx.app.master.open(&kid, &key.key_sealed)?;
    let mac_alg = match alg {
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let k = aws_lc_rs::hmac::Key::new(mac_alg, &secret);
    let message = format!("{}.{}", f.protected_b64, f.payload_b64);
    aws_lc_rs::hmac::verify(&k, message.as_bytes(), &f.signature).map_err(|_| {
        AcmeError::unauthorized("externalAccountBinding MAC does not verify with that key")
    })?;
    let bound: Value = URL_SAFE_NO_PAD
        .decode(&f.payload_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| AcmeError::malformed("externalAccountBinding payload is not a JWK"))?;
    if jws::thumbprint(&bound)? != jws::thumbprint(jwk)? {
        return Err(AcmeError::malformed(
            "externalAccountBinding payload is not the key of the account being created",
        ));
    }
    Ok(kid)
}

/// `POST newAccount`.
pub(super) async fn new_account(
    State(app): State<Arc<App>>,
    Path(ca): Path<String>,
    remote: Option<Extension<RemoteAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(&app, &ca, "new-account", &headers, &body, KeyRef::Jwk).await?;
    let jwk = req
        .jwk
        .clone()
        .ok_or_else(|| AcmeError::malformed("newAccount needs a jwk"))?;
    let payload = req.json()?;
    let thumb = jws::thumbprint(&jwk)?;
    let existing = {
        let mut conn = app.store.reader().acquire().await?;
        store::acme::account_by_thumbprint(&mut conn, &thumb).await?
    };
    if let Some(a) = existing.filter(|a| a.ca_id == ctx.ca.id) {
        let loc = ctx.url(&format!("acct/{}", a.id));
        return Ok(reply(
            StatusCode::OK,
            account_json(&ctx, &a),
            Some(&loc),
            &[],
        ));
    }
    if payload.get("onlyReturnExisting").and_then(Value::as_bool) == Some(true) {
        return Err(AcmeError::account_does_not_exist(
            "no account exists with this key",
        ));
    }
    let contact = check_contacts(&payload)?;
    let tos = payload
        .get("termsOfServiceAgreed")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if ctx.app.config.acme.terms_of_service.is_some() && !tos {
        return Err(AcmeError::new(
            "userActionRequired",
            StatusCode::FORBIDDEN,
            "agree to the terms of service (termsOfServiceAgreed: true) to create an account",
        ));
    }
    if let Some(Extension(RemoteAddr(addr))) = remote {
        let ip = addr.ip().to_string();
        let per_hour = ratelimit::for_ca(&app, &ctx.ca.id)
            .await?
            .acme_new_accounts_per_ip_per_hour;
        if let Err(d) = app.limits.acme_new_accounts.acquire(
            &ratelimit::key(&[&ctx.ca.id, &ip]),
            Rate::per_hour(per_hour),
        ) {
            return Err(AcmeError::rate_limited(
                format!(
                    "too many new accounts from {ip}: at most {per_hour} per hour at this directory (rate limit acme_new_accounts_per_ip_per_hour); retry in {} s",
                    d.secs()
                ),
                d.secs(),
            ));
        }
    }
    let eab_kid = match payload.get("externalAccountBinding") {
        Some(eab) => Some(check_eab(&ctx, eab, &jwk, &ctx.url("new-account")).await?),
        None if ctx.settings.require_eab => {
            return Err(AcmeError::new(
                "externalAccountRequired",
                StatusCode::UNAUTHORIZED,
                "this directory requires an external account binding: ask the CA administrator for an EAB kid and HMAC key",
            ))
        }
        None => None,
    };
    let account = Account {
        id: uuid::Uuid::now_v7().simple().to_string(),
        ca_id: ctx.ca.id.clone(),
        tenant_id: ctx.ca.tenant_id.clone(),
        thumbprint: thumb,
        jwk_json: jwk.to_string(),
        status: ra::acme::state::ACCOUNT_CREATED,
        contact,
        tos_agreed: tos,
        eab_kid: eab_kid.clone(),
        created_at: vellum_core::time::now(),
    };
    let mut tx = app.store.begin().await?;
    if let Some(kid) = &eab_kid {
        if !store::acme::bind_eab(&mut tx, kid, &account.id).await? {
            return Err(AcmeError::unauthorized(format!(
                "external account key {kid:?} is already bound"
            )));
        }
    }
    match store::acme::insert_account(&mut tx, &account).await {
        Ok(()) => {}
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    let loc = ctx.url(&format!("acct/{}", account.id));
    Ok(reply(
        StatusCode::CREATED,
        account_json(&ctx, &account),
        Some(&loc),
        &[],
    ))
}

/// `POST acct/{id}`: fetch (POST-as-GET), update contacts, or deactivate.
pub(super) async fn account(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(
        &app,
        &ca,
        &format!("acct/{id}"),
        &headers,
        &body,
        KeyRef::Kid,
    )
    .await?;
    let mut a = req.account()?.clone();
    if a.id != id {
        return Err(AcmeError::unauthorized(
            "requests about an account must be signed by that account",
        ));
    }
    if !req.is_post_as_get() {
        let payload = req.json()?;
        if payload.get("contact").is_some() {
            a.contact = check_contacts(&payload)?;
        }
        match payload.get("status").and_then(Value::as_str) {
            None => {}
            Some(s) if s.parse().is_ok_and(ra::acme::state::account_update_allowed) => {
                a.status = AccountStatus::Deactivated
            }
            Some(other) => {
                return Err(AcmeError::malformed(format!(
                    "status may only be set to \"deactivated\", not {other:?}"
                )))
            }
        }
        let mut tx = app.store.begin().await?;
        store::acme::update_account(&mut tx, &a.id, &a.contact, a.status).await?;
        tx.commit().await?;
    }
    let loc = ctx.url(&format!("acct/{}", a.id));
    Ok(reply(
        StatusCode::OK,
        account_json(&ctx, &a),
        Some(&loc),
        &[],
    ))
}

/// `POST acct/{id}/orders` (POST-as-GET): the account's orders, paged with `Link: next`.
pub(super) async fn orders(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let path = match &query {
        Some(q) => format!("acct/{id}/orders?{q}"),
        None => format!("acct/{id}/orders"),
    };
    let (ctx, req) = authenticate(&app, &ca, &path, &headers, &body, KeyRef::Kid).await?;
    let a = req.account()?;
    if a.id != id {
        return Err(AcmeError::unauthorized(
            "only the account itself may list its orders",
        ));
    }
    let after = query
        .as_deref()
        .and_then(|q| q.strip_prefix("cursor="))
        .map(str::to_string);
    let ids = {
        let mut conn = app.store.reader().acquire().await?;
        store::acme::order_ids(&mut conn, &a.id, after.as_deref(), ORDERS_PAGE).await?
    };
    let mut links = Vec::new();
    if ids.len() as i64 == ORDERS_PAGE {
        if let Some(last) = ids.last() {
            links.push(format!(
                "<{}>;rel=\"next\"",
                ctx.url(&format!("acct/{id}/orders?cursor={last}"))
            ));
        }
    }
    let urls: Vec<String> = ids.iter().map(|o| ctx.url(&format!("order/{o}"))).collect();
    Ok(reply(StatusCode::OK, json!({"orders": urls}), None, &links))
}

/// `POST key-change` (RFC 8555 §7.3.5).
pub(super) async fn key_change(
    State(app): State<Arc<App>>,
    Path(ca): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(&app, &ca, "key-change", &headers, &body, KeyRef::Kid).await?;
    let a = req.account()?.clone();
    let inner_value = req.json()?;
    let inner = jws::parse_flattened(&inner_value)?;
    let alg = inner
        .protected
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if inner.protected.get("url").and_then(Value::as_str) != Some(ctx.url("key-change").as_str()) {
        return Err(AcmeError::malformed(
            "the inner JWS url must equal the keyChange URL",
        ));
    }
    if inner.protected.contains_key("nonce") || inner.protected.contains_key("kid") {
        return Err(AcmeError::malformed(
            "the inner JWS carries jwk only (no nonce, no kid)",
        ));
    }
    let new_jwk = inner
        .protected
        .get("jwk")
        .cloned()
        .ok_or_else(|| AcmeError::malformed("the inner JWS has no jwk (the new key)"))?;
    jws::verify_signature(&inner, &alg, &new_jwk)?;
    let payload: Value = URL_SAFE_NO_PAD
        .decode(&inner.payload_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| AcmeError::malformed("the inner JWS payload is not JSON"))?;
    let account_url = ctx.url(&format!("acct/{}", a.id));
    if payload.get("account").and_then(Value::as_str) != Some(account_url.as_str()) {
        return Err(AcmeError::malformed(
            "the inner payload's account is not the signing account",
        ));
    }
    let old = payload
        .get("oldKey")
        .ok_or_else(|| AcmeError::malformed("the inner payload has no oldKey"))?;
    if jws::thumbprint(old)? != a.thumbprint {
        return Err(AcmeError::malformed(
            "oldKey is not the account's current key",
        ));
    }
    let new_thumb = jws::thumbprint(&new_jwk)?;
    let mut tx = app.store.begin().await?;
    if !store::acme::change_key(&mut tx, &a.id, &new_thumb, &new_jwk.to_string()).await? {
        let mut e = AcmeError::new(
            "malformed",
            StatusCode::CONFLICT,
            "the new key is already in use by another account",
        );
        let other = {
            let mut conn = app.store.reader().acquire().await?;
            store::acme::account_by_thumbprint(&mut conn, &new_thumb).await?
        };
        if let Some(o) = other {
            e.headers.push((
                axum::http::header::LOCATION,
                ctx.url(&format!("acct/{}", o.id)),
            ));
        }
        return Err(e);
    }
    tx.commit().await?;
    let mut conn = app.store.reader().acquire().await?;
    let updated = store::acme::account_by_id(&mut conn, &a.id)
        .await?
        .ok_or_else(|| AcmeError::internal("account vanished"))?;
    Ok(reply(
        StatusCode::OK,
        account_json(&ctx, &updated),
        Some(&account_url),
        &[],
    ))
}
