//! Tenants and API tokens.

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record;
use super::auth::{Permission, Principal, Role};
use super::json::{list, next_cursor, rfc3339, ts, Json, Page, Query};
use crate::App;
use ra::tokens::{new_token_secret, token_hash};
use store::{self, tenants};
use vellum_core::error::Error;

/// Body of `POST /tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
    entity: String,
}

fn tenant_json(t: &tenants::Tenant) -> Value {
    json!({"id": t.id, "name": t.name, "entity": t.entity, "created_at": rfc3339(t.created_at)})
}

fn token_json(t: &tenants::Token) -> Value {
    json!({
        "id": t.id,
        "tenant_id": t.tenant_id,
        "role": t.role,
        "name": t.name,
        "created_at": rfc3339(t.created_at),
        "revoked_at": ts(t.revoked_at),
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `POST /tenants` (super-admin).
pub async fn create_tenant(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<NewTenant>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::Platform)?;
    let res = async {
        if !valid_name(&body.name) {
            return Err(Error::invalid(
                "name",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        if body.entity.trim().is_empty() || body.entity.len() > 256 {
            return Err(Error::invalid("entity", "must be 1-256 characters"));
        }
        let t = tenants::Tenant {
            id: uuid::Uuid::now_v7().to_string(),
            name: body.name.clone(),
            entity: body.entity.trim().to_string(),
            created_at: vellum_core::time::now(),
        };
        let mut tx = app.store.begin().await?;
        tenants::insert_tenant(&mut tx, &t).await?;
        tx.commit().await?;
        Ok(t)
    }
    .await;
    let target = res
        .as_ref()
        .map(|t| t.id.clone())
        .unwrap_or(body.name.clone());
    record(&app, &who, "tenant.create", Some(&target), &res).await;
    Ok((StatusCode::CREATED, axum::Json(tenant_json(&res?))))
}

/// `GET /tenants?limit=&cursor=`: every tenant for the super-admin, the own one otherwise;
/// oldest first, a page at a time.
pub async fn list_tenants(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(page): Query<Page>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Read)?;
    let limit = page.limit()?;
    let only = (who.role != Role::Super).then_some(who.tenant_id.as_str());
    let mut conn = app.store.reader().acquire().await?;
    let rows = tenants::list_tenants(&mut conn, only, page.after(), limit).await?;
    let next = next_cursor(&rows, limit, |t| &t.id);
    Ok(axum::Json(list(
        rows.iter().map(tenant_json).collect(),
        next,
    )))
}

/// Body of `POST /tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Tenant id or name; default: the caller's tenant.
    tenant: Option<String>,
    role: String,
    name: String,
}

/// `POST /tokens`: the secret is in the response, once.
pub async fn create_token(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    who.require(Permission::ManageTokens)?;
    let res = async {
        let role = match body.role.parse().ok() {
            Some(Role::Super) | None => {
                return Err(Error::invalid(
                    "role",
                    "must be one of: admin, operator, auditor",
                ))
            }
            Some(r) => r,
        };
        if body.name.trim().is_empty() || body.name.len() > 128 {
            return Err(Error::invalid("name", "must be 1-128 characters"));
        }
        let mut conn = app.store.reader().acquire().await?;
        let named = match &body.tenant {
            Some(t) => Some((t, tenants::find_tenant(&mut conn, t).await?)),
            None => None,
        };
        let tenant = match named {
            // Only the super-admin learns whether another tenant exists: anyone else gets
            // the same 403 for a tenant that exists and for one that does not.
            Some((_, Some(t))) if t.id == who.tenant_id || who.role == Role::Super => t,
            Some(_) if who.role != Role::Super => {
                return Err(Error::forbidden(
                    "only the super-admin may create tokens for another tenant",
                ))
            }
            Some((t, _)) => return Err(Error::invalid("tenant", format!("no tenant named {t:?}"))),
            None => tenants::find_tenant(&mut conn, &who.tenant_id)
                .await?
                .ok_or_else(|| Error::internal("caller's tenant vanished"))?,
        };
        drop(conn);
        let secret = new_token_secret();
        let token = tenants::Token {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant.id.clone(),
            role,
            name: body.name.trim().to_string(),
            created_at: vellum_core::time::now(),
            revoked_at: None,
        };
        let mut tx = app.store.begin().await?;
        tenants::insert_token(&mut tx, &token, &token_hash(&secret), Some(&who.token_id)).await?;
        tx.commit().await?;
        Ok((token, secret))
    }
    .await;
    let target = res.as_ref().ok().map(|(t, _)| t.id.clone());
    record(&app, &who, "token.create", target.as_deref(), &res).await;
    let (token, secret) = res?;
    let mut v = token_json(&token);
    v["token"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// `GET /tokens?limit=&cursor=`: tokens of the caller's tenant (all tenants for the
/// super-admin), oldest first, a page at a time.
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(page): Query<Page>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::ManageTokens)?;
    let limit = page.limit()?;
    let scope = (who.role != Role::Super).then_some(who.tenant_id.as_str());
    let mut conn = app.store.reader().acquire().await?;
    let rows = tenants::list_tokens(&mut conn, scope, page.after(), limit).await?;
    let next = next_cursor(&rows, limit, |t| &t.id);
    Ok(axum::Json(list(
        rows.iter().map(token_json).collect(),
        next,
    )))
}

/// `DELETE /tokens/{id}`: revokes a token at once.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::ManageTokens)?;
    let res = async {
        let mut conn = app.store.reader().acquire().await?;
        let token = tenants::token_by_id(&mut conn, &id)
            .await?
            .filter(|t| who.role == Role::Super || t.tenant_id == who.tenant_id)
            .ok_or_else(|| Error::not_found(format!("no token with id {id} in this tenant")))?;
        drop(conn);
        if token.role == Role::Super && who.role != Role::Super {
            return Err(Error::forbidden(
                "only the super-admin may revoke a super-admin token",
            ));
        }
        let mut tx = app.store.begin().await?;
        if !tenants::revoke_token(&mut tx, &id, vellum_core::time::now()).await? {
            return Err(Error::conflict(format!("token {id} is already revoked")));
        }
        tx.commit().await?;
        let mut conn = app.store.reader().acquire().await?;
        tenants::token_by_id(&mut conn, &id)
            .await?
            .ok_or_else(|| Error::internal("token vanished"))
    }
    .await;
    record(&app, &who, "token.revoke", Some(&id), &res).await;
    Ok(axum::Json(token_json(&res?)))
}
