//! Who is calling: bearer tokens, roles and the tenant a request acts in.

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::listener::RemoteAddr;
use crate::problem::Problem;
use crate::App;
use ra::ratelimit;
use ra::tokens::token_hash;
use store::tenants;
use vellum_core::error::{Error, Result};

pub use vellum_core::status::Role;

/// A kind of action, checked against the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read CAs, certificates, settings.
    Read,
    /// Issue, revoke, download, delete certificates.
    Issue,
    /// Purchase, enable, quota, revoke, reset, refund, remove CAs; CA settings.
    CaLifecycle,
    /// Read the audit log.
    Audit,
    /// Create and revoke tokens of the own tenant.
    ManageTokens,
    /// Create tenants, act in other tenants.
    Platform,
    /// Notification channels, settings, quota, redeliveries (admins: a channel makes the
    /// server connect where its URL says).
    Notifications,
}

/// The authenticated caller of an admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id (the actor in audit events).
    pub token_id: String,
    /// The token's name (copied into audit events as `actor_name`).
    pub token_name: String,
    /// Role of the token.
    pub role: Role,
    /// Tenant the request acts in (for the super-admin: `X-Vellum-Tenant` or `default`).
    pub tenant_id: String,
    /// Source IP of the request.
    pub source_ip: Option<String>,
    /// Where a refusal is noted for the audit layer (`audit::audit_refusals`).
    refusals: Option<RefusalHook>,
    /// The console session the request came with (none for a bearer token).
    pub console: Option<ConsoleSession>,
}

/// The console session a request authenticated with.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The cookie's value (the session's secret; only its hash is stored).
    pub secret: String,
    /// When it ends, Unix seconds.
    pub expires_at: i64,
}

/// The request's [`RefusalSlot`] and the app the audit layer writes with.
#[derive(Clone)]
struct RefusalHook {
    slot: RefusalSlot,
    app: Arc<App>,
}

impl std::fmt::Debug for RefusalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalHook")
    }
}

/// A 403 refusal of an authenticated caller, noted by [`Principal::require`] (or by the
/// extractor, for `X-Vellum-Tenant`) and written to the audit log by
/// `audit::audit_refusals` once the handler has answered: every refusal of a permission
/// is audited in that one place, whichever handler refused.
pub struct Refusal {
    /// Where the event is written.
    pub app: Arc<App>,
    /// Who was refused.
    pub who: Principal,
    /// The refusal's message.
    pub detail: String,
}

/// The request's slot for a [`Refusal`] (a request extension the audit layer inserts).
#[derive(Clone, Default)]
pub struct RefusalSlot(Arc<Mutex<Option<Refusal>>>);

impl std::fmt::Debug for RefusalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalSlot")
    }
}

impl RefusalSlot {
    fn note(&self, r: Refusal) {
        if let Ok(mut slot) = self.0.lock() {
            // The first refusal is the one answered.
            slot.get_or_insert(r);
        }
    }

    /// The refusal noted during the request, if any.
    pub fn take(&self) -> Option<Refusal> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

impl Principal {
    /// The principal of `token` acting in its own tenant (console sign-in, before any
    /// request carries the session).
    pub fn of_token(token: &tenants::Token, source_ip: Option<String>) -> Principal {
        Principal {
            token_id: token.id.clone(),
            token_name: token.name.clone(),
            role: token.role,
            tenant_id: token.tenant_id.clone(),
            source_ip,
            refusals: None,
            console: None,
        }
    }

    /// 403 unless the role grants `p`. A refusal is audited (by the admin router's audit
    /// layer, after the handler answers), with the route as its action.
    pub fn require(&self, p: Permission) -> Result<()> {
        let res = self.check(p);
        if let Err(e) = &res {
            self.note_refusal(e);
        }
        res
    }

    fn note_refusal(&self, e: &Error) {
        if let Some(hook) = &self.refusals {
            hook.slot.note(Refusal {
                app: hook.app.clone(),
                who: self.clone(),
                detail: e.client_detail(),
            });
        }
    }

    fn check(&self, p: Permission) -> Result<()> {
        use Permission::*;
        let ok = match self.role {
            Role::Super => true,
            Role::Admin => p != Platform,
            Role::Operator => matches!(p, Read | Issue),
            Role::Auditor => matches!(p, Read | Audit),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "a token with role {} may not {}",
                self.role.as_str(),
                match p {
                    Read => "read this",
                    Issue => "issue, revoke or download certificates",
                    CaLifecycle =>
                        "change CAs (purchase, enable, quota, revoke, reset, refund, remove)",
                    Audit => "read the audit log",
                    ManageTokens => "manage API tokens",
                    Platform => "manage tenants or act in another tenant",
                    Notifications => "manage notification channels, settings or quota",
                }
            )))
        }
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let remote_ip = parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip());
        let mut console = None;
        let token = match parts.headers.get(AUTHORIZATION) {
            Some(header) => {
                let value = header
                    .to_str()
                    .map_err(|_| Error::Unauthorized("Authorization header is not ASCII".into()))?;
                let secret = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        Error::Unauthorized("Authorization must be \"Bearer <token>\"".into())
                    })?;
                authenticate_token(app, secret, remote_ip).await?
            }
            None => match crate::console::session_cookie(&parts.headers) {
                Some(secret) => {
                    let (token, expires_at) = console_token(app, parts, &secret).await?;
                    console = Some(ConsoleSession { secret, expires_at });
                    token
                }
                None => {
                    return Err(Error::Unauthorized(
                        "missing Authorization: Bearer <token> header".into(),
                    )
                    .into())
                }
            },
        };
        // Decoded by the store: an unknown role there is an internal error already.
        let role = token.role;
        let mut tenant_id = token.tenant_id.clone();
        let source_ip = parts
            .extensions
            .get::<RemoteAddr>()
            .map(|r| r.0.ip().to_string());
        let mut who = Principal {
            token_id: token.id.clone(),
            token_name: token.name.clone(),
            role,
            tenant_id: tenant_id.clone(),
            source_ip,
            refusals: parts
                .extensions
                .get::<RefusalSlot>()
                .map(|slot| RefusalHook {
                    slot: slot.clone(),
                    app: app.clone(),
                }),
            console,
        };
        if let Some(h) = parts.headers.get("x-vellum-tenant") {
            let wanted = h
                .to_str()
                .map_err(|_| Error::bad_request("X-Vellum-Tenant is not ASCII"))?
                .trim();
            let mut conn = app.store.reader().acquire().await?;
            let tenant = tenants::find_tenant(&mut conn, wanted).await?;
            match (role, tenant) {
                (_, Some(t)) if t.id == token.tenant_id => {}
                (Role::Super, Some(t)) => tenant_id = t.id,
                (Role::Super, None) => {
                    return Err(Error::not_found(format!("no tenant named {wanted:?}")).into())
                }
                _ => {
                    let e = Error::forbidden(
                        "only the super-admin may act in another tenant (X-Vellum-Tenant)",
                    );
                    who.note_refusal(&e);
                    return Err(e.into());
                }
            }
        }
        who.tenant_id = tenant_id;
        Ok(who)
    }
}

/// The token behind the console session of cookie value `secret`, and when the session
/// ends. A request that changes anything must carry the session's `X-CSRF-Token`
/// (`ra::console`).
async fn console_token(
    app: &App,
    parts: &Parts,
    secret: &str,
) -> Result<(Arc<tenants::Token>, i64)> {
    let session = ra::console::resume(app, secret).await?.ok_or_else(|| {
        Error::Unauthorized("the console session has ended; sign in again".into())
    })?;
    if !parts.method.is_safe() {
        let given = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ra::console::csrf_ok(secret, given) {
            return Err(Error::forbidden(
                "missing or wrong X-CSRF-Token header: a console session changes nothing \
                 without the token its page was given (reload the page)",
            ));
        }
    }
    let token = live_token(app, &session.token_hash).await.map_err(|_| {
        Error::Unauthorized(
            "the API token this console session signed in with was revoked; sign in again".into(),
        )
    })?;
    Ok((token, session.expires_at))
}

/// The live token `secret`. Unknown tokens are counted per source IP; while the IP is
/// locked (exponential back-off after `rate_limits.admin_failed_logins_per_ip` failures)
/// every token from it is refused with 429 before any lookup.
pub(crate) async fn authenticate_token(
    app: &App,
    secret: &str,
    remote_ip: Option<std::net::IpAddr>,
) -> Result<Arc<tenants::Token>> {
    let ip = remote_ip.map(|ip| ip.to_string());
    let key = ip.as_deref().map(|ip| ratelimit::key(&["admin-ip", ip]));
    if let (Some(k), Some(ip)) = (&key, &ip) {
        if let Err(d) = app.limits.admin_logins.check(k) {
            return Err(Error::rate_limited(
                format!(
                    "too many failed API token authentications from {ip}; retry in {} s",
                    d.secs()
                ),
                d.secs(),
            ));
        }
    }
    let found = live_token(app, &token_hash(secret)).await;
    if let (Err(Error::Unauthorized(_)), Some(k)) = (&found, &key) {
        let limits = &app.config.rate_limits;
        app.limits
            .admin_logins
            .fail(k, limits.backoff(limits.admin_failed_logins_per_ip));
    }
    found
}

/// The live token with this hash, from the cache when it was read less than a second ago
/// (a revocation on this replica empties the cache; see `store::cache`).
async fn live_token(app: &App, hash: &str) -> Result<Arc<tenants::Token>> {
    app.store
        .caches()
        .read_through(&app.store.caches().tokens, hash, || async {
            let mut conn = app.store.reader().acquire().await?;
            tenants::token_by_hash(&mut conn, hash).await
        })
        .await?
        .ok_or_else(|| Error::Unauthorized("unknown or revoked API token".into()))
}
