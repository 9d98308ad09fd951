//! The audit log: recording admin actions and reading them back.

use crate::problem::ApiResult;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Permission, Principal, RefusalSlot};
use super::json::{list, parse_rfc3339, rfc3339, Query};
use crate::App;
use store::{self, audit::AuditEvent, audit::AuditFilter};
use vellum_core::error::{Error, Result};
use vellum_core::status::AuditOutcome;

/// Records the outcome of a state-changing call. A failure to write the event is logged,
/// not returned: the change it describes has already happened.
pub async fn record<T>(
    app: &App,
    who: &Principal,
    action: &str,
    target: Option<&str>,
    result: &Result<T>,
) {
    record_detail(app, who, action, target, result, None).await
}

/// [`record`] with a detail of the caller's on success too (e.g. `from=pem to=pkcs12`);
/// a failure's detail is `detail` followed by the error. Never pass key material.
pub async fn record_detail<T>(
    app: &App,
    who: &Principal,
    action: &str,
    target: Option<&str>,
    result: &Result<T>,
    extra: Option<&str>,
) {
    if let Err(Error::Unavailable { .. }) = result {
        // The database is down (or its disk full): the event cannot be written either, and
        // trying would hold the answer for another acquire timeout.
        tracing::warn!(action, target = ?target, "not audited: the database is unavailable");
        return;
    }
    let (outcome, detail) = match (result, extra) {
        (Ok(_), extra) => (AuditOutcome::Success, extra.map(str::to_string)),
        (Err(e), None) => (AuditOutcome::Failure, Some(e.client_detail())),
        (Err(e), Some(x)) => (
            AuditOutcome::Failure,
            Some(format!("{x}: {}", e.client_detail())),
        ),
    };
    let event = AuditEvent {
        at: vellum_core::time::now(),
        tenant_id: Some(who.tenant_id.clone()),
        actor: Some(who.token_id.clone()),
        actor_name: Some(who.token_name.clone()),
        action: action.to_string(),
        target: target.map(str::to_string),
        source_ip: who.source_ip.clone(),
        outcome,
        detail,
        ..AuditEvent::default()
    };
    write(app, &event).await;
}

/// Records a successful step of a cross-tenant action (a share) in the OTHER tenant's
/// log: the actor is the caller's token, `detail` says which tenant acted and on which
/// certificate.
pub async fn record_for_tenant(
    app: &App,
    who: &Principal,
    tenant_id: &str,
    action: &str,
    target: &str,
    detail: &str,
) {
    let event = AuditEvent {
        at: vellum_core::time::now(),
        tenant_id: Some(tenant_id.to_string()),
        actor: Some(who.token_id.clone()),
        actor_name: Some(who.token_name.clone()),
        action: action.to_string(),
        target: Some(target.to_string()),
        source_ip: who.source_ip.clone(),
        outcome: AuditOutcome::Success,
        detail: Some(detail.to_string()),
        ..AuditEvent::default()
    };
    write(app, &event).await;
}

async fn write(app: &App, event: &AuditEvent) {
    let written = async {
        let mut tx = app.store.begin().await?;
        store::audit::insert(&mut tx, event).await?;
        tx.commit().await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = written {
        tracing::error!(error = %e, action = event.action, "could not write audit event");
    }
}

/// The admin router's layer that audits every 403 refusal of an authenticated caller in
/// one place: it gives the request a [`RefusalSlot`], which `Principal::require` (and the
/// `X-Vellum-Tenant` check) fill when they refuse, and writes the event after the
/// handler has answered, before the answer leaves. A refusal happens before a handler
/// picks its action name, so the event's action is the route (`POST /cas/{id}/revoke`),
/// its target the route's first parameter, its outcome `failure` and its detail the
/// refusal's message.
pub async fn audit_refusals(mut req: Request, next: Next) -> Response {
    let slot = RefusalSlot::default();
    req.extensions_mut().insert(slot.clone());
    // Cheap copies only (an Arc'd route, the URI): the action and target strings are made
    // only when a refusal happened, not on every admin request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let response = next.run(req).await;
    if let Some(r) = slot.take() {
        let pattern = route
            .as_ref()
            .map(|p| p.as_str().trim_start_matches("/admin/v1").to_string())
            .unwrap_or_else(|| uri.path().to_string());
        let target = route
            .as_ref()
            .and_then(|p| first_param(p.as_str(), uri.path()));
        let event = AuditEvent {
            at: vellum_core::time::now(),
            tenant_id: Some(r.who.tenant_id.clone()),
            actor: Some(r.who.token_id.clone()),
            actor_name: Some(r.who.token_name.clone()),
            action: format!("{method} {pattern}"),
            target,
            source_ip: r.who.source_ip.clone(),
            outcome: AuditOutcome::Failure,
            detail: Some(r.detail),
            ..AuditEvent::default()
        };
        write(&r.app, &event).await;
    }
    response
}

/// The value of the route's first `{parameter}` in `path`, percent-decoded. The two are
/// aligned from their ends: a nested router sees the path without its prefix, while the
/// matched route keeps it.
fn first_param(pattern: &str, path: &str) -> Option<String> {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let at = pat.iter().position(|s| s.starts_with('{'))?;
    let shift = pat.len().checked_sub(segs.len())?;
    let raw = segs.get(at.checked_sub(shift)?)?;
    Some(
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Query of `GET /audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    action: Option<String>,
    target: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

impl AuditQuery {
    /// The store's filter for these parameters (`limit` 1–1000, default 100; a malformed
    /// time or cursor is a 422 naming it).
    pub fn to_filter(&self) -> Result<AuditFilter> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        Ok(AuditFilter {
            action: self.action.clone().filter(|a| !a.is_empty()),
            target: self.target.clone().filter(|t| !t.is_empty()),
            actor: self.actor.clone().filter(|a| !a.is_empty()),
            since: self
                .since
                .as_deref()
                .map(|s| parse_rfc3339("since", s))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| parse_rfc3339("until", s))
                .transpose()?,
            before_id: self
                .cursor
                .as_deref()
                .map(|c| {
                    c.parse::<i64>().map_err(|_| {
                        Error::invalid("cursor", "is not a cursor returned by this API")
                    })
                })
                .transpose()?,
            limit,
        })
    }

    /// Whether the query pages (`limit` or `cursor`), which a CSV download does not.
    pub fn pages(&self) -> bool {
        self.limit.is_some() || self.cursor.is_some()
    }

    /// The filters as `k=v` pairs for an audit event's detail (`all` when none).
    pub fn describe(&self) -> String {
        super::certificates::describe_filter(&json!({
            "action": self.action, "actor": self.actor, "target": self.target,
            "since": self.since, "until": self.until,
        }))
    }
}

/// One event as the API shows it.
pub fn event_json(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "at": rfc3339(e.at),
        "tenant_id": e.tenant_id,
        "actor": e.actor,
        "actor_name": e.actor_name,
        "action": e.action,
        "target": e.target,
        "source_ip": e.source_ip,
        "outcome": e.outcome,
        "detail": e.detail,
    })
}

/// `GET /audit?action=&target=&actor=&since=&until=&limit=&cursor=`: newest first.
pub async fn list_events(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Audit)?;
    let filter = q.to_filter()?;
    let limit = filter.limit;
    let mut conn = app.store.reader().acquire().await?;
    let events = store::audit::list(&mut conn, &who.tenant_id, &filter).await?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    let items = events.iter().map(event_json).collect();
    Ok(axum::Json(list(items, next)))
}

#[cfg(test)]
mod refusal_tests {
    use super::first_param;

    #[test]
    fn the_target_is_the_routes_first_parameter() {
        assert_eq!(
            first_param("/admin/v1/cas/{id}/revoke", "/admin/v1/cas/abc/revoke").as_deref(),
            Some("abc")
        );
        assert_eq!(
            first_param(
                "/admin/v1/cas/{id}/est/clients/{username}",
                "/admin/v1/cas/c1/est/clients/d%20x"
            )
            .as_deref(),
            Some("c1")
        );
        assert_eq!(first_param("/admin/v1/cas", "/admin/v1/cas"), None);
        // A nested router's view of the path, without the prefix.
        assert_eq!(
            first_param(
                "/admin/v1/certificates/{id}/revoke",
                "/certificates/c9/revoke"
            )
            .as_deref(),
            Some("c9")
        );
    }
}
