//! Per-intermediate ACME settings and External Account Binding keys.

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::Json;
use crate::App;
use ra::hierarchy;
use store::{self, acme::Settings};
use vellum_core::error::{Error, Result};
use vellum_core::status::ChallengeType;

fn view(app: &App, s: &Settings) -> Value {
    json!({
        "ca_id": s.ca_id,
        "enabled": s.enabled,
        "require_eab": s.require_eab,
        "allowed_domains": s.allowed_domains,
        "allow_ip": s.allow_ip,
        "challenges": s.challenges,
        "default_validity_days": s.default_validity_days,
        "directory_url": format!("{}/acme/{}/directory", app.config.public_url(), s.ca_id),
    })
}

async fn intermediate(app: &App, who: &Principal, id: &str) -> Result<store::cas::CaRow> {
    hierarchy::load_intermediate(app, &who.tenant_id, id, "ACME").await
}

/// `GET /cas/{id}/acme`.
pub async fn get_settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    intermediate(&app, &who, &id).await?;
    let mut conn = app.store.reader().acquire().await?;
    let s = store::acme::settings(&mut conn, &id).await?;
    Ok(axum::Json(view(&app, &s)))
}

/// Body of `PUT /cas/{id}/acme` (omitted fields keep their value).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    enabled: Option<bool>,
    require_eab: Option<bool>,
    allowed_domains: Option<Vec<String>>,
    allow_ip: Option<bool>,
    challenges: Option<Vec<String>>,
    default_validity_days: Option<i64>,
}

/// `PUT /cas/{id}/acme`.
pub async fn put_settings(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<SettingsBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        intermediate(&app, &who, &id).await?;
        let mut s = {
            let mut conn = app.store.reader().acquire().await?;
            store::acme::settings(&mut conn, &id).await?
        };
        if let Some(v) = body.enabled {
            s.enabled = v;
        }
        if let Some(v) = body.require_eab {
            s.require_eab = v;
        }
        if let Some(v) = body.allow_ip {
            s.allow_ip = v;
        }
        if let Some(list) = &body.allowed_domains {
            for (i, d) in list.iter().enumerate() {
                let bare = d.trim_start_matches("*.").trim_start_matches('.');
                if !ra::names::valid_dns_name(bare) {
                    return Err(Error::invalid(
                        format!("allowed_domains[{i}]"),
                        format!("{d:?} is not a domain name"),
                    ));
                }
            }
            s.allowed_domains = list.iter().map(|d| d.to_ascii_lowercase()).collect();
        }
        if let Some(list) = &body.challenges {
            if list.is_empty() {
                return Err(Error::invalid(
                    "challenges",
                    "at least one challenge type is needed",
                ));
            }
            let parsed = list.iter().enumerate().map(|(i, c)| {
                c.parse::<ChallengeType>().map_err(|_| {
                    Error::invalid(
                        format!("challenges[{i}]"),
                        format!(
                            "{c:?} is not a challenge type; use http-01, dns-01 or tls-alpn-01"
                        ),
                    )
                })
            });
            s.challenges = parsed.collect::<Result<_>>()?;
        }
        if let Some(days) = body.default_validity_days {
            if !(1..=ra::issue::MAX_LEAF_VALIDITY_DAYS).contains(&days) {
                return Err(Error::invalid(
                    "default_validity_days",
                    "must be between 1 and 36500",
                ));
            }
            s.default_validity_days = days;
        }
        let mut tx = app.store.begin().await?;
        store::acme::put_settings(&mut tx, &s).await?;
        tx.commit().await?;
        Ok(s)
    }
    .await;
    record(&app, &who, "ca.acme.settings", Some(&id), &res).await;
    Ok(axum::Json(view(&app, &res?)))
}

/// `POST /cas/{id}/acme/eab` → `{kid, hmac_key}` (the key is shown once; stored sealed).
pub async fn new_eab(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::CaLifecycle)?;
    let res = async {
        let ca = intermediate(&app, &who, &id).await?;
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        let kid = format!("eab_{}", uuid::Uuid::new_v4().simple());
        let sealed = app.master.seal(&kid, key.as_ref())?;
        let mut tx = app.store.begin().await?;
        store::acme::insert_eab(
            &mut tx,
            &store::acme::EabKey {
                kid: kid.clone(),
                ca_id: ca.id.clone(),
                tenant_id: ca.tenant_id.clone(),
                key_sealed: sealed,
                account_id: None,
            },
            vellum_core::time::now(),
        )
        .await?;
        tx.commit().await?;
        Ok((kid, URL_SAFE_NO_PAD.encode(key.as_ref())))
    }
    .await;
    record(&app, &who, "ca.acme.eab", Some(&id), &res).await;
    let (kid, hmac_key) = res?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "kid": kid,
            "hmac_key": hmac_key,
            "directory_url": format!("{}/acme/{id}/directory", app.config.public_url()),
        })),
    ))
}
