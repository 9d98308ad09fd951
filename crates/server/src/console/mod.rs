//! The web console (issue 15): a page and its script, compiled into the binary, served
//! at `/` on the HTTPS listener; and its sessions (`/console/session`).
//!
//! The page is one HTML shell, one stylesheet and one script written for Vellum (no
//! framework, no build step, nothing fetched at run time). The script calls the admin API
//! (`/admin/v1`) with the session cookie instead of a bearer token: every page goes
//! through the same handlers, the same `ra` rules and the same permission checks as the
//! API and the CLI, and shows the API's problem documents next to the field they name.
//! Sessions (`ra::console`): signed in with an API token, a `__Host-` cookie that is
//! `HttpOnly; Secure; SameSite=Strict`, idle and absolute expiry, and a CSRF token every
//! state change must carry in `X-CSRF-Token`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::admin::audit::record;
use crate::admin::auth::{authenticate_token, ConsoleSession, Principal};
use crate::admin::json::{rfc3339, Json};
use crate::listener::RemoteAddr;
use crate::problem::ApiResult;
use crate::App;
use ra::tokens::token_hash;
use vellum_core::error::Error;

/// The session cookie. `__Host-`: browsers accept it only with `Secure`, `Path=/` and no
/// `Domain`, so no other host or plain-HTTP page can set or shadow it.
pub const COOKIE_NAME: &str = "__Host-vellum-session";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Only this origin's script and style; no framing; no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Routes of the console (merged into the HTTPS router).
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css))
        .route(
            "/console/session",
            get(session).post(sign_in).delete(sign_out),
        )
}

/// The session cookie's value in `headers`, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Always revalidated: a new binary's page is used at once.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure_headers(h);
    r
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Body of `POST /console/session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    token: String,
}

fn session_json(who: &Principal, secret: &str, expires_at: i64) -> serde_json::Value {
    json!({
        "csrf_token": ra::console::csrf_token(secret),
        "token_id": who.token_id,
        "token_name": who.token_name,
        "role": who.role.as_str(),
        "tenant_id": who.tenant_id,
        "expires_at": rfc3339(expires_at),
    })
}

fn cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /console/session {token}`: signs in with an API token (the same failed-login
/// limits as bearer tokens); sets the cookie and answers the CSRF token.
async fn sign_in(
    State(app): State<Arc<App>>,
    remote: Option<axum::Extension<RemoteAddr>>,
    Json(body): Json<SignIn>,
) -> ApiResult<Response> {
    let secret = body.token.trim();
    if secret.is_empty() {
        return Err(Error::invalid("token", "paste an API token (vlm_…)").into());
    }
    let ip = remote.as_ref().map(|r| r.0 .0.ip());
    let token = authenticate_token(&app, secret, ip)
        .await
        .map_err(|e| match e {
            Error::Unauthorized(_) => Error::invalid(
                "token",
                "this API token is unknown or revoked: use the token printed by `vellum serve` \
                 (the file admin-token in the data directory) or one made with `vellum admin token create`",
            ),
            e => e,
        })?;
    let who = Principal::of_token(&token, ip.map(|i| i.to_string()));
    let res = ra::console::open(&app, &token_hash(secret)).await;
    record(&app, &who, "console.sign_in", Some(&token.id), &res).await;
    let session = res?;
    let mut r = (
        StatusCode::CREATED,
        axum::Json(session_json(
            &who,
            &session,
            app.now() + ra::console::IDLE_SECS,
        )),
    )
        .into_response();
    r.headers_mut()
        .insert(SET_COOKIE, cookie(&session, ra::console::MAX_SECS));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The console session a request authenticated with (401 for a bearer token or none).
fn console_session(who: &Principal) -> Result<&ConsoleSession, Error> {
    who.console
        .as_ref()
        .ok_or_else(|| Error::Unauthorized("not signed in to the console".into()))
}

/// `GET /console/session`: who the session is, and its CSRF token (401 when none).
async fn session(who: Principal) -> ApiResult<Response> {
    let s = console_session(&who)?;
    let mut r = axum::Json(session_json(&who, &s.secret, s.expires_at)).into_response();
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `DELETE /console/session`: signs out (CSRF-checked like every state change).
async fn sign_out(State(app): State<Arc<App>>, who: Principal) -> ApiResult<Response> {
    let secret = &console_session(&who)?.secret;
    let res = ra::console::close(&app, secret).await;
    record(&app, &who, "console.sign_out", Some(&who.token_id), &res).await;
    res?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(SET_COOKIE, cookie("", 0));
    Ok(r)
}
