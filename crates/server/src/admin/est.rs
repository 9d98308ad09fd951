//! Per-intermediate EST settings and EST client accounts (HTTP Basic).

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::{self, Json};
use crate::App;
use ra::hierarchy;
use store::{
    self,
    est::{Client, Settings, AUTH_METHODS},
};
use vellum_core::error::{Error, Result};

fn urls(app: &App, s: &Settings) -> Value {
    let base = format!("{}/.well-known/est", app.config.public_url());
    let mut v = json!({ "by_id": format!("{base}/{}", s.ca_id) });
    if let Some(l) = &s.label {
        v["labelled"] = json!(format!("{base}/{l}"));
    }
    if app.est_default_ca() == s.ca_id {
        v["default"] = json!(base);
    }
    v
}

fn view(app: &App, s: &Settings) -> Value {
    json!({
        "ca_id": s.ca_id,
        "enabled": s.enabled,
        "label": s.label,
        "auth": s.auth,
        "default_validity_days": s.default_validity_days,
        "certificate_type": s.certificate_type,
        "client_cert_trust": s
            .client_cert_trust_pem
            .as_deref()
            .map(anchor_views)
            .unwrap_or_default(),
        "client_cert_trust_pem": s.client_cert_trust_pem,
        "client_cert_name_patterns": s.client_cert_name_patterns,
        "urls": urls(app, s),
    })
}

/// Subject, expiry and SHA-256 fingerprint of each configured trust anchor.
fn anchor_views(pem_text: &str) -> Vec<Value> {
    ::pem::parse_many(pem_text)
        .unwrap_or_default()
        .iter()
        .filter_map(|b| {
            let der = b.contents();
            let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
            Some(json!({
                "subject": c.subject().to_string(),
                "not_after": json::rfc3339(c.validity().not_after.timestamp()),
                "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der)),
            }))
        })
        .collect()
}

/// Most trust anchors one EST service takes.
const MAX_TRUST_ANCHORS: usize = 50;

/// Checks `client_cert_trust_pem`: one or more PEM CA certificates (basicConstraints
/// CA:TRUE), unexpired; returns the bundle re-encoded (only the certificates).
fn check_trust_pem(text: &str, now: i64) -> Result<String> {
    const FIELD: &str = "client_cert_trust_pem";
    let blocks = ::pem::parse_many(text).map_err(|_| {
        Error::invalid(
            FIELD,
            "must be PEM: one or more -----BEGIN CERTIFICATE----- blocks (convert DER with `openssl x509 -inform DER -in ca.der -out ca.pem`)",
        )
    })?;
    if blocks.is_empty() {
        return Err(Error::invalid(
            FIELD,
            "must be PEM: one or more -----BEGIN CERTIFICATE----- blocks (give null to remove the trust anchors)",
        ));
    }
    if blocks.len() > MAX_TRUST_ANCHORS {
        return Err(Error::invalid(
            FIELD,
            format!(
                "holds {} certificates; at most {MAX_TRUST_ANCHORS} trust anchors are accepted",
                blocks.len()
            ),
        ));
    }
    let mut out = String::new();
    for (i, b) in blocks.iter().enumerate() {
        let n = i + 1;
        if b.tag() != "CERTIFICATE" {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "block {n} is a {} block; only CERTIFICATE blocks are trust anchors",
                    b.tag()
                ),
            ));
        }
        let (rest, c) = x509_parser::parse_x509_certificate(b.contents()).map_err(|_| {
            Error::invalid(
                FIELD,
                format!("certificate {n} is not a well-formed X.509 certificate"),
            )
        })?;
        if !rest.is_empty() {
            return Err(Error::invalid(
                FIELD,
                format!("certificate {n} has trailing bytes after the certificate"),
            ));
        }
        if !c.is_ca() {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "certificate {n} ({}) is not a CA certificate (basicConstraints CA:TRUE); give the CA that issues the device certificates, not a device certificate",
                    c.subject()
                ),
            ));
        }
        if c.validity().not_after.timestamp() <= now {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "certificate {n} ({}) expired at {}",
                    c.subject(),
                    json::rfc3339(c.validity().not_after.timestamp())
                ),
            ));
        }
        out.push_str(&ca::cert_pem(b.contents()));
    }
    Ok(out)
}

fn client_view(c: &Client) -> Value {
    json!({
        "ca_id": c.ca_id,
        "username": c.username,
        "name_patterns": c.name_patterns,
        "created_at": json::rfc3339(c.created_at),
        "created_by": c.created_by,
    })
}

async fn intermediate(app: &App, who: &Principal, id: &str) -> Result<store::cas::CaRow> {
    hierarchy::load_intermediate(app, &who.tenant_id, id, "EST").await
}

/// `GET /cas/{id}/est`.
pub async fn get_settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    intermediate(&app, &who, &id).await?;
    let mut conn = app.store.reader().acquire().await?;
    let s = store::est::settings(&mut conn, &id).await?;
    Ok(axum::Json(view(&app, &s)))
}

/// Body of `PUT /cas/{id}/est` (omitted fields keep their value; `"label": null` removes
/// the label).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    label: Option<Option<String>>,
    auth: Option<Vec<String>>,
    default_validity_days: Option<i64>,
    certificate_type: Option<String>,
    /// Trust anchors for client-certificate enrollment (PEM bundle); `null` removes them.
    #[serde(default, deserialize_with = "present")]
    client_cert_trust_pem: Option<Option<String>>,
    /// Name patterns for enrollments through the trust anchors.
    client_cert_name_patterns: Option<Vec<String>>,
}

/// `Some(None)` for an explicit `null`, `None` (via `default`) when absent.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PUT /cas/{id}/est`.
pub async fn put_settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<SettingsBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        let ca = intermediate(&app, &who, &id).await?;
        let mut s = {
            let mut conn = app.store.reader().acquire().await?;
            store::est::settings(&mut conn, &id).await?
        };
        if let Some(v) = body.enabled {
            s.enabled = v;
        }
        if let Some(label) = &body.label {
            if let Some(l) = label {
                ra::est::check_label(l)?;
            }
            s.label = label.clone();
        }
        if let Some(list) = &body.auth {
            if list.is_empty() {
                return Err(Error::invalid(
                    "auth",
                    "at least one authentication method is needed: basic, client_cert",
                ));
            }
            for (i, m) in list.iter().enumerate() {
                if !AUTH_METHODS.contains(&m.as_str()) {
                    return Err(Error::invalid(
                        format!("auth[{i}]"),
                        format!("{m:?} is not an authentication method; use basic or client_cert"),
                    ));
                }
            }
            let mut list = list.clone();
            list.dedup();
            s.auth = list;
        }
        if let Some(t) = &body.certificate_type {
            s.certificate_type = t.parse().map_err(|_| {
                Error::invalid(
                    "certificate_type",
                    format!("{t:?} is not a certificate type; use client or server"),
                )
            })?;
        }
        if let Some(trust) = &body.client_cert_trust_pem {
            s.client_cert_trust_pem = match trust {
                Some(text) => Some(check_trust_pem(text, vellum_core::time::now())?),
                None => None,
            };
        }
        if let Some(patterns) = &body.client_cert_name_patterns {
            check_patterns("client_cert_name_patterns", patterns)?;
            s.client_cert_name_patterns = patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
        }
        if let Some(days) = body.default_validity_days {
            // The same rule every issuance is held to, so enrollments do not fail later.
            ra::issue::check_validity(&ca, days, vellum_core::time::now()).map_err(
                |e| match e {
                    Error::Invalid { detail, .. } => {
                        Error::invalid("default_validity_days", detail)
                    }
                    other => other,
                },
            )?;
            s.default_validity_days = days;
        }
        let mut tx = app.store.begin().await?;
        store::est::put_settings(&mut tx, &s).await?;
        tx.commit().await?;
        Ok(s)
    }
    .await;
    record(&app, &who, "ca.est.settings", Some(&id), &res).await;
    Ok(axum::Json(view(&app, &res?)))
}

/// Body of `POST /cas/{id}/est/clients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    username: String,
    password: String,
    #[serde(default)]
    name_patterns: Vec<String>,
}

fn check_client(body: &ClientBody) -> Result<()> {
    let u = &body.username;
    if u.is_empty()
        || u.len() > 64
        || !u
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ':' && c != '/')
    {
        return Err(Error::invalid(
            "username",
            "must be 1 to 64 printable ASCII characters without spaces, ':' or '/'",
        ));
    }
    if body.password.chars().count() < 8 || body.password.len() > 1024 {
        return Err(Error::invalid("password", "must be 8 to 1024 characters"));
    }
    check_patterns("name_patterns", &body.name_patterns)
}

/// Name patterns: at most 100, each 1–253 printable ASCII characters.
fn check_patterns(field: &str, patterns: &[String]) -> Result<()> {
    if patterns.len() > 100 {
        return Err(Error::invalid(field, "at most 100 patterns"));
    }
    for (i, p) in patterns.iter().enumerate() {
        if p.is_empty() || p.len() > 253 || !p.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                "must be 1 to 253 printable ASCII characters without spaces ('*' matches any characters)",
            ));
        }
    }
    Ok(())
}

/// `POST /cas/{id}/est/clients` → 201 (the password is stored as an argon2id hash only).
pub async fn create_client(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ClientBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::CaLifecycle)?;
    let target = format!("{id}/{}", body.username);
    let res = async {
        let ca = intermediate(&app, &who, &id).await?;
        check_client(&body)?;
        let password = zeroize::Zeroizing::new(body.password.clone());
        let hash = tokio::task::spawn_blocking(move || ra::est::hash_password(&password))
            .await
            .map_err(Error::internal)??;
        let client = Client {
            ca_id: ca.id.clone(),
            username: body.username.clone(),
            tenant_id: ca.tenant_id.clone(),
            password_hash: hash,
            name_patterns: body
                .name_patterns
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            created_at: vellum_core::time::now(),
            created_by: Some(who.token_id.clone()),
        };
        let mut tx = app.store.begin().await?;
        if !store::est::insert_client(&mut tx, &client).await? {
            return Err(Error::conflict(format!(
                "CA {id} already has an EST client named {:?}",
                body.username
            )));
        }
        tx.commit().await?;
        Ok(client)
    }
    .await;
    record(&app, &who, "est.client.create", Some(&target), &res).await;
    Ok((StatusCode::CREATED, axum::Json(client_view(&res?))))
}

/// `GET /cas/{id}/est/clients?limit=&cursor=`: by user name, a page at a time (the
/// cursor is the last user name of the page).
pub async fn list_clients(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    json::Query(page): json::Query<json::Page>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let limit = page.limit()?;
    intermediate(&app, &who, &id).await?;
    let mut conn = app.store.reader().acquire().await?;
    let rows = store::est::clients(&mut conn, &id, page.after(), limit).await?;
    let next = json::next_cursor(&rows, limit, |c| &c.username);
    Ok(axum::Json(json::list(
        rows.iter().map(client_view).collect(),
        next,
    )))
}

/// `DELETE /cas/{id}/est/clients/{username}` → 200 with the removed account; it cannot
/// authenticate any more, on any replica, from the next request on.
pub async fn delete_client(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((id, username)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::CaLifecycle)?;
    let target = format!("{id}/{username}");
    let res = async {
        intermediate(&app, &who, &id).await?;
        let mut tx = app.store.begin().await?;
        let client = store::est::client(&mut tx, &id, &username)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("CA {id} has no EST client named {username:?}"))
            })?;
        store::est::delete_client(&mut tx, &id, &username).await?;
        tx.commit().await?;
        Ok(client)
    }
    .await;
    record(&app, &who, "est.client.delete", Some(&target), &res).await;
    Ok(axum::Json(client_view(&res?)))
}
