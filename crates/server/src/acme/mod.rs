//! ACME front end (RFC 8555, RFC 8737, RFC 8738, RFC 9773 ARI, ACME profiles).
//!
//! One directory per intermediate CA at `/acme/{ca_id}/directory`, and `/acme/directory`
//! for the default CA. Every resource URL sits under `/acme/{ca_id}/`. Every response
//! carries a fresh `Replay-Nonce` and `Link: <directory>;rel="index"`.

mod account;
mod authz;
pub mod jws;
pub mod nonce;
mod order;
pub mod problem;
mod revoke;
pub mod takeover;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::App;
use problem::{AcmeError, AcmeResult};
use store::{self, acme::Settings, cas::CaRow};
use vellum_core::status::CaStatus;

/// Per-request context: the CA behind the directory and its ACME settings.
pub struct Ctx {
    pub app: Arc<App>,
    pub ca: Arc<CaRow>,
    pub settings: Arc<Settings>,
    /// `https://host/acme/{ca_id}`.
    pub base: String,
}

impl Ctx {
    /// Loads the CA of a directory: an enabled intermediate with ACME on. Read at most a
    /// second ago (`store::cache`): issuance re-checks the CA when it commits.
    pub async fn load(app: &Arc<App>, ca_id: &str) -> AcmeResult<Ctx> {
        let cached = app
            .store
            .caches()
            .read_through(&app.store.caches().acme, ca_id, || async {
                let mut conn = app.store.reader().acquire().await?;
                let Some(ca) = store::cas::get_any_tenant(&mut conn, ca_id)
                    .await?
                    .filter(|c| !c.is_root() && c.status == CaStatus::Enabled)
                else {
                    return Ok(None);
                };
                let settings = store::acme::settings(&mut conn, ca_id).await?;
                Ok::<_, vellum_core::error::Error>(Some((Arc::new(ca), Arc::new(settings))))
            })
            .await?
            .ok_or_else(|| AcmeError::not_found(format!("no ACME directory for CA {ca_id}")))?;
        let (ca, settings) = (cached.0.clone(), cached.1.clone());
        if !settings.enabled {
            return Err(AcmeError::not_found(format!(
                "ACME is turned off for CA {ca_id}"
            )));
        }
        Ok(Ctx {
            base: format!("{}/acme/{}", app.config.public_url(), ca.id),
            app: app.clone(),
            ca,
            settings,
        })
    }

    /// Absolute URL of a path under this directory.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }
}

/// The intermediate behind `/acme/directory`.
pub fn default_ca(app: &App) -> String {
    app.config
        .acme
        .default_ca
        .clone()
        .unwrap_or_else(|| app.defaults.intermediate_id.clone())
}

/// Routes under `/acme`.
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/acme/directory", get(default_directory))
        .route("/acme/{ca}/directory", get(directory))
        .route(
            "/acme/{ca}/new-nonce",
            get(new_nonce_get).head(new_nonce_head),
        )
        .route("/acme/{ca}/new-account", post(account::new_account))
        .route("/acme/{ca}/acct/{id}", post(account::account))
        .route("/acme/{ca}/acct/{id}/orders", post(account::orders))
        .route("/acme/{ca}/key-change", post(account::key_change))
        .route("/acme/{ca}/new-order", post(order::new_order))
        .route("/acme/{ca}/order/{id}", post(order::order))
        .route("/acme/{ca}/order/{id}/finalize", post(order::finalize))
        .route("/acme/{ca}/cert/{id}", post(order::certificate))
        .route("/acme/{ca}/cert/{id}/{alt}", post(order::certificate_alt))
        .route("/acme/{ca}/authz/{id}", post(authz::authz))
        .route("/acme/{ca}/chall/{id}", post(authz::challenge))
        .route("/acme/{ca}/revoke-cert", post(revoke::revoke_cert))
        .route("/acme/{ca}/renewal-info/{id}", get(revoke::renewal_info))
        .layer(axum::middleware::from_fn_with_state(app, decorate))
}

/// Adds `Replay-Nonce`, `Link: rel="index"` and `Cache-Control: no-store` to every
/// ACME response, errors included.
async fn decorate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let ca = path
        .strip_prefix("/acme/")
        .and_then(|rest| rest.split('/').next())
        .filter(|seg| *seg != "directory")
        .map(str::to_string)
        .unwrap_or_else(|| default_ca(&app));
    let h = resp.headers_mut();
    let nonce = app.acme_nonces.issue(vellum_core::time::now());
    if let Ok(v) = HeaderValue::from_str(&nonce) {
        h.insert("replay-nonce", v);
    }
    let index = format!(
        "<{}/acme/{ca}/directory>;rel=\"index\"",
        app.config.public_url()
    );
    if let Ok(v) = HeaderValue::from_str(&index) {
        h.append(header::LINK, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The directory object of a CA.
pub fn directory_json(ctx: &Ctx) -> Value {
    let mut meta = json!({
        "externalAccountRequired": ctx.settings.require_eab,
        "profiles": {
            "tls-server": "TLS server certificate (serverAuth EKU)",
            "tls-client": "TLS client certificate (clientAuth EKU)",
        },
        "caaIdentities": [],
    });
    if let Some(tos) = &ctx.app.config.acme.terms_of_service {
        meta["termsOfService"] = json!(tos);
    }
    json!({
        "newNonce": ctx.url("new-nonce"),
        "newAccount": ctx.url("new-account"),
        "newOrder": ctx.url("new-order"),
        "revokeCert": ctx.url("revoke-cert"),
        "keyChange": ctx.url("key-change"),
        "renewalInfo": ctx.url("renewal-info"),
        "meta": meta,
    })
}

async fn directory(State(app): State<Arc<App>>, Path(ca): Path<String>) -> AcmeResult<Response> {
    let ctx = Ctx::load(&app, &ca).await?;
    Ok(axum::Json(directory_json(&ctx)).into_response())
}

async fn default_directory(State(app): State<Arc<App>>) -> AcmeResult<Response> {
    let ctx = Ctx::load(&app, &default_ca(&app)).await?;
    Ok(axum::Json(directory_json(&ctx)).into_response())
}

async fn new_nonce_head(
    State(app): State<Arc<App>>,
    Path(ca): Path<String>,
) -> AcmeResult<StatusCode> {
    Ctx::load(&app, &ca).await?;
    Ok(StatusCode::OK)
}

async fn new_nonce_get(
    State(app): State<Arc<App>>,
    Path(ca): Path<String>,
) -> AcmeResult<StatusCode> {
    Ctx::load(&app, &ca).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON answer with optional `Location` and extra links.
pub fn reply(
    status: StatusCode,
    body: Value,
    location: Option<&str>,
    links: &[String],
) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    if let Some(loc) = location {
        if let Ok(v) = HeaderValue::from_str(loc) {
            h.insert(header::LOCATION, v);
        }
    }
    for l in links {
        if let Ok(v) = HeaderValue::from_str(l) {
            h.append(header::LINK, v);
        }
    }
    resp
}

/// Verifies a POST to `path` under the CA's directory (shared by all handlers).
pub async fn authenticate(
    app: &Arc<App>,
    ca: &str,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    key_ref: jws::KeyRef,
) -> AcmeResult<(Ctx, jws::Verified)> {
    let ctx = Ctx::load(app, ca).await?;
    let url = ctx.url(path);
    let verified = jws::verify(&ctx, headers, body, &url, key_ref).await?;
    Ok((ctx, verified))
}

/// Adds `Retry-After` (seconds).
pub fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
