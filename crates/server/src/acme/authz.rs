//! Authorizations and challenges; validation runs in the background through `va`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::jws::KeyRef;
use super::order::AUTHZ_REUSE_SECS;
use super::problem::{AcmeError, AcmeResult};
use super::{authenticate, reply, with_retry_after, Ctx};
use crate::App;
use ra::acme::inflight::Running;
use ra::acme::state::{self, Refused};
use ra::acme::takeover::{pause_after, ATTEMPTS};
use ra::acme::writes::Change;
use ra::ratelimit::{self, Rate};
use store::{self, acme::Authz, acme::Challenge};
use va::{Identifier, VaError};
use vellum_core::status::{AuthzStatus, ChallengeType, IdentifierType};
use vellum_core::time::rfc3339;

fn challenge_json(ctx: &Ctx, c: &Challenge) -> Value {
    let mut v = json!({
        "type": c.kind,
        "url": ctx.url(&format!("chall/{}", c.id)),
        "token": c.token,
        "status": c.status,
    });
    if let Some(t) = c.validated_at {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error_json {
        v["error"] = serde_json::from_str(e).unwrap_or(Value::Null);
    }
    v
}

/// The authorization object (`a` as it is now: `state::authz_effective` applied).
fn authz_json(ctx: &Ctx, a: &Authz, challenges: &[Challenge]) -> Value {
    let shown: Vec<Value> = challenges
        .iter()
        .filter(|c| state::challenge_shown(a.status, c.status))
        .map(|c| challenge_json(ctx, c))
        .collect();
    let mut v = json!({
        "identifier": {"type": a.id_type, "value": a.id_value},
        "status": a.status,
        "expires": rfc3339(a.expires_at),
        "challenges": shown,
    });
    if a.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

/// An authorization of the account with its challenges (one read).
async fn load_authz(ctx: &Ctx, account_id: &str, id: &str) -> AcmeResult<(Authz, Vec<Challenge>)> {
    store::acme::find_authz(&ctx.app.store, id)
        .await?
        .filter(|(a, _)| a.account_id == account_id)
        .ok_or_else(|| AcmeError::not_found(format!("no authorization {id} for this account")))
}

/// `POST authz/{id}`: fetch (POST-as-GET) or deactivate (`{"status":"deactivated"}`).
pub(super) async fn authz(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(
        &app,
        &ca,
        &format!("authz/{id}"),
        &headers,
        &body,
        KeyRef::Kid,
    )
    .await?;
    let account = req.account()?.clone();
    let (mut a, challenges) = app
        .acme_inflight
        .read(
            || load_authz(&ctx, &account.id, &id),
            |(a, _)| {
                let now = vellum_core::time::now();
                let status = state::authz_effective(a.status, a.expires_at, now);
                if req.is_post_as_get() && state::authz_in_progress(status) {
                    vec![id.clone()]
                } else {
                    Vec::new()
                }
            },
        )
        .await?;
    if !req.is_post_as_get() {
        let payload = req.json()?;
        let requested = payload.get("status").and_then(Value::as_str);
        match requested.map(str::parse::<AuthzStatus>) {
            Some(Ok(to)) if state::authz_update_allowed(to) => {
                // The stored status decides (the store's update is conditional on it):
                // an expired pending authorization can still be deactivated.
                let to = state::deactivate_authz(a.status).map_err(|r| refusal(&id, r))?;
                let mut tx = app.store.begin().await?;
                let from = state::DEACTIVATABLE;
                if !store::acme::transition_authz(&mut tx, &id, from, to).await? {
                    // It changed since it was read.
                    return Err(refusal(&id, Refused::AuthzNotDeactivatable(a.status)));
                }
                let err = AcmeError::unauthorized(format!("authorization {id} was deactivated"))
                    .to_json();
                let (orders, lost) = (state::UNFINISHED_ORDERS, state::ORDER_AUTHZ_LOST);
                store::acme::fail_orders_of_authz(&mut tx, &id, &err.to_string(), orders, lost)
                    .await?;
                tx.commit().await?;
                a.status = to;
            }
            _ => {
                return Err(AcmeError::malformed(
                    "an authorization may only be updated to {\"status\": \"deactivated\"}",
                ))
            }
        }
    }
    a.status = state::authz_effective(a.status, a.expires_at, vellum_core::time::now());
    let resp = reply(
        StatusCode::OK,
        authz_json(&ctx, &a, &challenges),
        Some(&ctx.url(&format!("authz/{id}"))),
        &[],
    );
    Ok(if state::authz_in_progress(a.status) {
        with_retry_after(resp, 1)
    } else {
        resp
    })
}

/// `POST chall/{id}`: `{}` starts validation; POST-as-GET fetches.
pub(super) async fn challenge(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(
        &app,
        &ca,
        &format!("chall/{id}"),
        &headers,
        &body,
        KeyRef::Kid,
    )
    .await?;
    let account = req.account()?.clone();
    let load = || async {
        store::acme::find_challenge(&app.store, &id)
            .await?
            .filter(|(_, a)| a.account_id == account.id)
            .ok_or_else(|| AcmeError::not_found(format!("no challenge {id} for this account")))
    };
    let (mut ch, a) = app
        .acme_inflight
        .read(load, |(ch, a)| {
            if req.is_post_as_get() && state::challenge_in_progress(ch.status) {
                vec![a.id.clone()]
            } else {
                Vec::new()
            }
        })
        .await?;
    let now = vellum_core::time::now();
    let start = !req.is_post_as_get()
        && state::challenge_start(ch.status, a.status, a.expires_at, now)
            .map_err(|r| refusal(&a.id, r))?;
    if start {
        let started = app
            .acme_writer
            .apply(Change::StartChallenge {
                id: id.clone(),
                at: now,
            })
            .await?;
        if started {
            ch.status = state::CHALLENGE_START.to;
            spawn_validation(&app, &ctx.ca.id, &ch, &a, &account.thumbprint).await?;
        }
    }
    let up = format!("<{}>;rel=\"up\"", ctx.url(&format!("authz/{}", a.id)));
    let resp = reply(StatusCode::OK, challenge_json(&ctx, &ch), None, &[up]);
    Ok(if state::challenge_in_progress(ch.status) {
        with_retry_after(resp, 1)
    } else {
        resp
    })
}

/// The ACME problem for a refusal of the state machine about authorization `id`.
fn refusal(id: &str, r: Refused) -> AcmeError {
    match r {
        Refused::AuthzNotPending(s) => AcmeError::malformed(format!("authorization {id} is {s}")),
        Refused::AuthzExpired => AcmeError::malformed(format!("authorization {id} has expired")),
        Refused::AuthzNotDeactivatable(s) => AcmeError::malformed(format!(
            "authorization {id} is {s}; only pending or valid ones can be deactivated"
        )),
        other => AcmeError::internal(format!("authorization {id}: unexpected refusal {other:?}")),
    }
}

/// Starts validating `ch` (now `processing`) of `a` in the background, registered as
/// running here (polls wait for it, the takeover leaves it alone), for the account whose
/// key has `thumbprint`, under the failed-validation limit of CA `ca_id`.
pub(super) async fn spawn_validation(
    app: &Arc<App>,
    ca_id: &str,
    ch: &Challenge,
    a: &Authz,
    thumbprint: &str,
) -> vellum_core::error::Result<()> {
    let fail_rate = Rate::per_hour(
        ratelimit::for_ca(app, ca_id)
            .await?
            .acme_failed_validations_per_name_per_hour,
    );
    let key_authorization = format!("{}.{}", ch.token, thumbprint);
    let running = app.acme_inflight.start(&a.id, &ch.id);
    tokio::spawn(validate(
        app.clone(),
        ch.clone(),
        a.clone(),
        key_authorization,
        running,
        fail_rate,
    ));
    Ok(())
}

async fn attempt(
    app: &App,
    ch: &Challenge,
    a: &Authz,
    key_authorization: &str,
) -> Result<(), VaError> {
    let ident = match a.id_type {
        IdentifierType::Ip => match a.id_value.parse() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(a.id_value.clone()),
        },
        IdentifierType::Dns => Identifier::Dns(a.id_value.clone()),
    };
    match ch.kind {
        ChallengeType::Http01 => {
            app.validator
                .http01(&ident, &ch.token, key_authorization)
                .await
        }
        ChallengeType::Dns01 => app.validator.dns01(&a.id_value, key_authorization).await,
        ChallengeType::TlsAlpn01 => app.validator.tls_alpn01(&ident, key_authorization).await,
    }
}

/// How long a validation's outcome is retried while the database is unavailable.
const RECORD_RETRY: Duration = Duration::from_secs(120);

/// Validates with retries, then records the outcome on the challenge, its authorization
/// and the orders waiting for it; then releases the polls waiting (`running`).
async fn validate(
    app: Arc<App>,
    ch: Challenge,
    a: Authz,
    key_authorization: String,
    running: Running,
    fail_rate: Rate,
) {
    let mut outcome = Ok(());
    for n in 0..ATTEMPTS {
        outcome = attempt(&app, &ch, &a, &key_authorization).await;
        match &outcome {
            Ok(()) => break,
            Err(e) if n + 1 < ATTEMPTS => {
                tracing::debug!(challenge = %ch.id, error = %e.detail, "validation attempt failed; retrying");
                tokio::time::sleep(pause_after(n)).await;
            }
            Err(_) => {}
        }
    }
    vellum_core::metrics::acme_validation(ch.kind.as_str(), outcome.is_ok());
    if outcome.is_err() {
        // Counted for newOrder's limit on failed validations per account and name.
        app.limits
            .acme_failed_validations
            .record(&ratelimit::key(&[&a.account_id, &a.id_value]), fail_rate);
    }
    // A database outage must not leave the challenge `processing` for good: the result
    // is recorded again, with growing pauses, until the database answers (or for at most
    // RECORD_RETRY; after that, a replica's takeover sweep validates it again once its
    // lease has passed, `ra::acme::takeover`).
    let deadline = tokio::time::Instant::now() + RECORD_RETRY;
    let mut pause = Duration::from_millis(250);
    loop {
        match record(&app, &ch, &a, outcome.clone()).await {
            Ok(true) => break,
            Ok(false) => {
                // Another replica took the validation over (this one was slower than the
                // lease) and recorded its outcome first; that one stands.
                tracing::info!(challenge = %ch.id, "validation result not recorded: the challenge was no longer processing");
                break;
            }
            Err(e)
                if e.status == StatusCode::SERVICE_UNAVAILABLE
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(challenge = %ch.id, error = %e.detail, "database unavailable; recording the validation result again shortly");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(challenge = %ch.id, error = %e.detail, "could not record a validation result");
                break;
            }
        }
    }
    drop(running);
}

/// Records the outcome; false when the challenge was no longer processing (an outcome
/// was recorded already), which changes nothing.
async fn record(
    app: &App,
    ch: &Challenge,
    a: &Authz,
    outcome: Result<(), VaError>,
) -> AcmeResult<bool> {
    let now = vellum_core::time::now();
    let change = match outcome {
        Ok(()) => Change::Validated {
            challenge_id: ch.id.clone(),
            authz_id: a.id.clone(),
            at: now,
            reusable_until: now + AUTHZ_REUSE_SECS,
        },
        Err(e) => {
            let problem = json!({
                "type": e.kind.acme_type(),
                "detail": e.detail,
                "status": 400,
            });
            let order_err = json!({
                "type": "urn:ietf:params:acme:error:unauthorized",
                "detail": format!("validation of {} failed", a.id_value),
                "status": 403,
                "subproblems": [{
                    "type": e.kind.acme_type(),
                    "detail": e.detail,
                    "identifier": {"type": a.id_type, "value": a.id_value},
                }],
            });
            Change::Failed {
                challenge_id: ch.id.clone(),
                authz_id: a.id.clone(),
                at: now,
                challenge_error: problem.to_string(),
                order_error: order_err.to_string(),
            }
        }
    };
    Ok(app.acme_writer.apply(change).await?)
}
