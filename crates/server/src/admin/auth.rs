//! Who is calling: bearer tokens, roles and the tenant a request acts in.

use std::sync::Arc;

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
}

/// The authenticated caller of an admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id (the actor in audit events).
    pub token_id: String,
    /// Role of the token.
    pub role: Role,
    /// Tenant the request acts in (for the super-admin: `X-Vellum-Tenant` or `default`).
    pub tenant_id: String,
    /// Source IP of the request.
    pub source_ip: Option<String>,
}

impl Principal {
    /// 403 unless the role grants `p`.
    pub fn require(&self, p: Permission) -> Result<()> {
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
                }
            )))
        }
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            Error::Unauthorized("missing Authorization: Bearer <token> header".into())
        })?;
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
        let remote_ip = parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip());
        let token = authenticate_token(app, secret, remote_ip).await?;
        // Decoded by the store: an unknown role there is an internal error already.
        let role = token.role;
        let mut tenant_id = token.tenant_id.clone();
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
                    return Err(Error::forbidden(
                        "only the super-admin may act in another tenant (X-Vellum-Tenant)",
                    )
                    .into())
                }
            }
        }
        let source_ip = parts
            .extensions
            .get::<RemoteAddr>()
            .map(|r| r.0.ip().to_string());
        Ok(Principal {
            token_id: token.id.clone(),
            role,
            tenant_id,
            source_ip,
        })
    }
}

/// The live token `secret`. Unknown tokens are counted per source IP; while the IP is
/// locked (exponential back-off after `rate_limits.admin_failed_logins_per_ip` failures)
/// every token from it is refused with 429 before any lookup.
async fn authenticate_token(
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
