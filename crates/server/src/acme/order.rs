//! Orders: newOrder (identifiers, policy, authorization reuse), order state, finalize
//! through the one issuance path, certificate download.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

use super::jws::KeyRef;
use super::problem::{AcmeError, AcmeResult};
use super::{authenticate, reply, with_retry_after, Ctx};
use crate::App;
use ca::cert_pem;
use ca::profile::{San, SubjectFields};
use ra::acme::state::{self, Refused};
use ra::acme::writes::Change;
use ra::issue::{self, IssueRequest, KeySource};
use ra::ratelimit::{self, Rate};
use ra::record::Followup;
use store::{self, acme::Authz, acme::Challenge, acme::Order};
use vellum_core::error::Error;
use vellum_core::status::{
    AcmeProfile, AuditOutcome, CertificateSource, ChallengeType, IdentifierType,
};
use vellum_core::time::rfc3339;

/// How long a pending order or authorization lives.
pub(super) const PENDING_LIFETIME_SECS: i64 = 7 * 86_400;
/// How long a valid authorization can be reused.
pub(super) const AUTHZ_REUSE_SECS: i64 = 30 * 86_400;

/// One identifier of an order (as stored in `identifiers_json`, too).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
pub(super) struct Ident {
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    pub value: String,
}

impl Ident {
    fn json(&self) -> Value {
        json!({"type": self.kind, "value": self.value})
    }
}

fn parse_identifiers(ctx: &Ctx, v: &Value) -> AcmeResult<Vec<Ident>> {
    let list = v
        .get("identifiers")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| AcmeError::malformed("newOrder needs a non-empty \"identifiers\" array"))?;
    if list.len() > issue::MAX_SANS {
        return Err(AcmeError::new(
            "rejectedIdentifier",
            StatusCode::BAD_REQUEST,
            format!(
                "{} identifiers requested; at most {} per order",
                list.len(),
                issue::MAX_SANS
            ),
        ));
    }
    let mut out = BTreeSet::new();
    let mut rejected = AcmeError::new("rejectedIdentifier", StatusCode::BAD_REQUEST, "");
    for item in list {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let value = item
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind.parse::<IdentifierType>() {
            Ok(IdentifierType::Dns) => {
                let name = value.trim_end_matches('.').to_ascii_lowercase();
                let why = if name.parse::<std::net::IpAddr>().is_ok() {
                    Some(format!(
                        "{value:?} is an IP address: order it as an \"ip\" identifier (RFC 8738)"
                    ))
                } else if let Some(problem) = ra::names::dns_name_problem(&name) {
                    Some(format!("{value:?} is not a valid DNS name: it {problem}"))
                } else if name.starts_with("*.")
                    && !ctx.settings.challenges.contains(&ChallengeType::Dns01)
                {
                    Some("wildcards need dns-01, which this directory does not offer".to_string())
                } else if !domain_allowed(&ctx.settings.allowed_domains, &name) {
                    Some(format!(
                        "{name} is outside the names this CA may certify ({})",
                        ctx.settings.allowed_domains.join(", ")
                    ))
                } else {
                    None
                };
                match why {
                    Some(w) => {
                        rejected = rejected.with_subproblem(
                            "rejectedIdentifier",
                            &w,
                            json!({"type": IdentifierType::Dns, "value": value}),
                        )
                    }
                    None => {
                        out.insert(Ident {
                            kind: IdentifierType::Dns,
                            value: name,
                        });
                    }
                }
            }
            Ok(IdentifierType::Ip) => match value.parse::<std::net::IpAddr>() {
                Ok(ip) if ctx.settings.allow_ip => {
                    out.insert(Ident {
                        kind: IdentifierType::Ip,
                        value: ip.to_string(),
                    });
                }
                Ok(_) => {
                    rejected = rejected.with_subproblem(
                        "rejectedIdentifier",
                        "this CA does not certify IP addresses",
                        json!({"type": IdentifierType::Ip, "value": value}),
                    )
                }
                Err(_) => {
                    rejected = rejected.with_subproblem(
                        "malformed",
                        &format!("{value:?} is not an IP address"),
                        json!({"type": IdentifierType::Ip, "value": value}),
                    )
                }
            },
            Err(_) => {
                return Err(AcmeError::new(
                    "unsupportedIdentifier",
                    StatusCode::BAD_REQUEST,
                    format!("identifier type {kind:?} is not supported (dns, ip)"),
                ))
            }
        }
    }
    if !rejected.subproblems.is_empty() {
        let n = rejected.subproblems.len();
        rejected.detail = format!(
            "{n} identifier{} rejected: {}",
            if n == 1 { " was" } else { "s were" },
            rejected
                .subproblems
                .iter()
                .filter_map(|s| s["detail"].as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Err(rejected);
    }
    Ok(out.into_iter().collect())
}

/// Whether `name` is allowed by the suffix/exact list (empty list = anything).
pub(super) fn domain_allowed(allowed: &[String], name: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = a.strip_prefix("*.").or_else(|| a.strip_prefix('.')) {
            bare.ends_with(&format!(".{suffix}"))
        } else {
            bare == a || bare.ends_with(&format!(".{a}"))
        }
    })
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The order object.
pub(super) async fn order_json(ctx: &Ctx, o: &Order) -> AcmeResult<Value> {
    let authz_ids = o
        .authz_ids()
        .map_err(|_| AcmeError::internal("stored authorization list unreadable"))?;
    let identifiers: Value = serde_json::from_str(&o.identifiers_json).unwrap_or(json!([]));
    let status = state::order_effective(o.status, o.expires_at, vellum_core::time::now());
    let mut v = json!({
        "status": status,
        "expires": rfc3339(o.expires_at),
        "identifiers": identifiers,
        "authorizations": authz_ids.iter().map(|id| ctx.url(&format!("authz/{id}"))).collect::<Vec<_>>(),
        "finalize": ctx.url(&format!("order/{}/finalize", o.id)),
        "profile": o.profile,
    });
    if let Some(nb) = o.not_before {
        v["notBefore"] = json!(rfc3339(nb));
    }
    if let Some(na) = o.not_after {
        v["notAfter"] = json!(rfc3339(na));
    }
    if let Some(c) = &o.certificate_id {
        v["certificate"] = json!(ctx.url(&format!("cert/{c}")));
    }
    if let Some(e) = &o.error_json {
        v["error"] = serde_json::from_str(e).unwrap_or(Value::Null);
    }
    if let Some(r) = &o.replaces {
        v["replaces"] = json!(r);
    }
    Ok(v)
}

fn parse_time(v: &Value, field: &str) -> AcmeResult<Option<i64>> {
    match v.get(field).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| Some(t.unix_timestamp()))
            .map_err(|_| {
                AcmeError::malformed(format!("{field} {s:?} is not an RFC 3339 timestamp"))
            }),
    }
}

/// `POST newOrder`.
pub(super) async fn new_order(
    State(app): State<Arc<App>>,
    Path(ca): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(&app, &ca, "new-order", &headers, &body, KeyRef::Kid).await?;
    let account = req.account()?.clone();
    let payload = req.json()?;
    let idents = parse_identifiers(&ctx, &payload)?;
    let profile = match payload.get("profile").and_then(Value::as_str) {
        None => AcmeProfile::default(),
        Some(p) => p.parse().map_err(|_| {
            AcmeError::new(
                "invalidProfile",
                StatusCode::BAD_REQUEST,
                format!("profile {p:?} is not offered; use tls-server or tls-client"),
            )
        })?,
    };
    let now = vellum_core::time::now();
    let not_before = parse_time(&payload, "notBefore")?;
    let not_after = parse_time(&payload, "notAfter")?;
    if let Some(nb) = not_before {
        if nb > now + 86_400 {
            return Err(AcmeError::malformed(
                "notBefore more than a day in the future is not supported",
            ));
        }
    }
    if let Some(na) = not_after {
        if na <= now + 3600 {
            return Err(AcmeError::malformed(
                "notAfter must be at least an hour in the future",
            ));
        }
    }
    check_rate_limits(&ctx, &account.id, &idents).await?;
    let replaces = payload
        .get("replaces")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(r) = &replaces {
        super::revoke::check_replaces(&ctx, &account, r).await?;
    }
    // Reused authorizations are looked up first (on a reader: the writer is for writes),
    // so that the order, its new authorizations, their challenges and the links are each
    // one INSERT, group-committed with other requests' changes. A reused authorization
    // was valid and unexpired when read; only its own account can deactivate it.
    let mut conn = app.store.reader().acquire().await?;
    let mut authz_ids = Vec::with_capacity(idents.len());
    let mut new_authzs = Vec::new();
    let mut new_challenges = Vec::new();
    for id in &idents {
        let wildcard = id.value.starts_with("*.");
        let bare = id.value.trim_start_matches("*.").to_string();
        let reuse =
            store::acme::reusable_authz(&mut conn, &account.id, id.kind, &bare, wildcard, now)
                .await?;
        if let Some(a) = reuse {
            authz_ids.push(a.id);
            continue;
        }
        let authz = Authz {
            id: uuid::Uuid::now_v7().simple().to_string(),
            account_id: account.id.clone(),
            id_type: id.kind,
            id_value: bare,
            wildcard,
            status: state::AUTHZ_CREATED,
            expires_at: now + PENDING_LIFETIME_SECS,
            created_at: now,
        };
        for kind in &ctx.settings.challenges {
            // RFC 8738 §7: no dns-01 for IP addresses; RFC 8555 §7.1.3: wildcards
            // only through dns-01.
            let fits = match (id.kind, kind) {
                (IdentifierType::Dns, ChallengeType::Dns01) => true,
                (IdentifierType::Dns, _) => !wildcard,
                (IdentifierType::Ip, ChallengeType::Dns01) => false,
                (IdentifierType::Ip, ChallengeType::Http01 | ChallengeType::TlsAlpn01) => true,
            };
            if fits {
                new_challenges.push(Challenge {
                    id: uuid::Uuid::now_v7().simple().to_string(),
                    authz_id: authz.id.clone(),
                    kind: *kind,
                    token: token(),
                    status: state::CHALLENGE_CREATED,
                    validated_at: None,
                    error_json: None,
                });
            }
        }
        authz_ids.push(authz.id.clone());
        new_authzs.push(authz);
    }
    let order = Order {
        id: uuid::Uuid::now_v7().simple().to_string(),
        account_id: account.id.clone(),
        ca_id: ctx.ca.id.clone(),
        // Every authorization reused and valid: the order is ready at once.
        status: state::order_created(new_authzs.is_empty()),
        identifiers_json: Value::Array(idents.iter().map(Ident::json).collect()).to_string(),
        profile,
        not_before,
        not_after,
        expires_at: now + PENDING_LIFETIME_SECS,
        error_json: None,
        certificate_id: None,
        replaces,
        created_at: now,
        authz_ids_json: json!(authz_ids).to_string(),
    };
    drop(conn);
    app.acme_writer
        .apply(Change::NewOrder {
            order: Box::new(order.clone()),
            authzs: new_authzs,
            challenges: new_challenges,
            authz_ids,
        })
        .await?;
    let loc = ctx.url(&format!("order/{}", order.id));
    Ok(reply(
        StatusCode::CREATED,
        order_json(&ctx, &order).await?,
        Some(&loc),
        &[],
    ))
}

/// Failed validations of the names (per account and name) and orders of the account, per
/// hour: refused with `rateLimited` (one subproblem per name) and `Retry-After`.
async fn check_rate_limits(ctx: &Ctx, account_id: &str, idents: &[Ident]) -> AcmeResult<()> {
    let app = &ctx.app;
    let limits = ratelimit::for_ca(app, &ctx.ca.id).await?;
    let per_name = limits.acme_failed_validations_per_name_per_hour;
    let mut refused = AcmeError::rate_limited(String::new(), 1);
    let mut wait = 0;
    for id in idents {
        let bare = id.value.trim_start_matches("*.");
        if let Err(d) = app.limits.acme_failed_validations.check(
            &ratelimit::key(&[account_id, bare]),
            Rate::per_hour(per_name),
        ) {
            wait = wait.max(d.secs());
            refused = refused.with_subproblem(
                "rateLimited",
                &format!(
                    "{bare} failed validation {per_name} times in the last hour for this account (rate limit acme_failed_validations_per_name_per_hour); retry in {} s",
                    d.secs()
                ),
                id.json(),
            );
        }
    }
    if !refused.subproblems.is_empty() {
        let names: Vec<&str> = refused
            .subproblems
            .iter()
            .filter_map(|s| s["identifier"]["value"].as_str())
            .collect();
        let mut e = AcmeError::rate_limited(
            format!(
                "too many failed validations of {}: at most {per_name} per account and name per hour (rate limit acme_failed_validations_per_name_per_hour); fix the validation setup and retry in {wait} s",
                names.join(", ")
            ),
            wait,
        );
        e.subproblems = refused.subproblems;
        return Err(e);
    }
    let per_account = limits.acme_orders_per_account_per_hour;
    if let Err(d) = app
        .limits
        .acme_orders
        .acquire(account_id, Rate::per_hour(per_account))
    {
        return Err(AcmeError::rate_limited(
            format!(
                "too many new orders for this account: at most {per_account} per hour (rate limit acme_orders_per_account_per_hour); retry in {} s",
                d.secs()
            ),
            d.secs(),
        ));
    }
    Ok(())
}

/// An order of the account, as it is now (expiry applied: `state::order_effective`).
async fn load_order(ctx: &Ctx, account_id: &str, id: &str) -> AcmeResult<Order> {
    let mut o = store::acme::find_order(&ctx.app.store, id)
        .await?
        .filter(|o| o.account_id == account_id && o.ca_id == ctx.ca.id)
        .ok_or_else(|| AcmeError::not_found(format!("no order {id} for this account")))?;
    o.status = state::order_effective(o.status, o.expires_at, vellum_core::time::now());
    Ok(o)
}

/// `POST order/{id}` (POST-as-GET).
pub(super) async fn order(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(
        &app,
        &ca,
        &format!("order/{id}"),
        &headers,
        &body,
        KeyRef::Kid,
    )
    .await?;
    let account_id = &req.account()?.id;
    let o = app
        .acme_inflight
        .read(
            || load_order(&ctx, account_id, &id),
            |o| {
                if state::order_awaits_validation(o.status) {
                    o.authz_ids().unwrap_or_default()
                } else {
                    Vec::new()
                }
            },
        )
        .await?;
    let resp = reply(
        StatusCode::OK,
        order_json(&ctx, &o).await?,
        Some(&ctx.url(&format!("order/{id}"))),
        &[],
    );
    Ok(if state::order_in_progress(o.status) {
        with_retry_after(resp, 1)
    } else {
        resp
    })
}

fn describe(set: &BTreeSet<Ident>) -> String {
    set.iter()
        .map(|i| format!("{}:{}", i.kind, i.value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ACME problem for a refusal of the state machine about order `id`.
fn refusal(id: &str, r: Refused) -> AcmeError {
    match r {
        Refused::OrderNotReady(status) => Error::OrderNotReady {
            order: id.to_string(),
            status,
        }
        .into(),
        other => AcmeError::internal(format!("order {id}: unexpected refusal {other:?}")),
    }
}

/// `POST order/{id}/finalize`.
pub(super) async fn finalize(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    let (ctx, req) = authenticate(
        &app,
        &ca,
        &format!("order/{id}/finalize"),
        &headers,
        &body,
        KeyRef::Kid,
    )
    .await?;
    let account = req.account()?.clone();
    let o = load_order(&ctx, &account.id, &id).await?;
    state::finalize_allowed(o.status).map_err(|r| refusal(&id, r))?;
    let payload = req.json()?;
    let csr_b64 = payload
        .get("csr")
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeError::malformed("finalize needs a \"csr\" (base64url DER)"))?;
    let der = URL_SAFE_NO_PAD
        .decode(csr_b64.trim_end_matches('='))
        .map_err(|_| AcmeError::bad_csr("csr is not base64url"))?;
    let csr = ra::csr::from_der("csr", &der).map_err(|e| AcmeError::bad_csr(e.client_detail()))?;
    let names = csr
        .common_name
        .iter()
        .map(|cn| ("subject CN", cn.clone()))
        .chain(csr.sans.iter().map(|s| ("subjectAltName", s.to_string())));
    for (what, value) in names {
        if let Some(problem) = ra::names::text_problem(&value) {
            return Err(AcmeError::bad_csr(format!(
                "the CSR's {what} {value:?} {problem}"
            )));
        }
    }
    let wanted: BTreeSet<Ident> = store::decode_json::<Vec<Ident>>(
        "acme_orders",
        "identifiers_json",
        &o.id,
        &o.identifiers_json,
    )?
    .into_iter()
    .collect();
    let mut got: BTreeSet<Ident> = csr
        .sans
        .iter()
        .filter_map(|s| match s {
            San::Dns(d) => Some(Ident {
                kind: IdentifierType::Dns,
                value: d.to_ascii_lowercase(),
            }),
            San::Ip(ip) => Some(Ident {
                kind: IdentifierType::Ip,
                value: ip.to_string(),
            }),
            _ => None,
        })
        .collect();
    if csr
        .sans
        .iter()
        .any(|s| matches!(s, San::Email(_) | San::Uri(_)))
    {
        return Err(AcmeError::bad_csr(
            "the CSR requests e-mail or URI names, which ACME orders cannot certify",
        ));
    }
    if let Some(cn) = &csr.common_name {
        let cn_ident = match cn.parse::<std::net::IpAddr>() {
            Ok(ip) => Ident {
                kind: IdentifierType::Ip,
                value: ip.to_string(),
            },
            Err(_) => Ident {
                kind: IdentifierType::Dns,
                value: cn.to_ascii_lowercase(),
            },
        };
        if !wanted.contains(&cn_ident) {
            return Err(AcmeError::bad_csr(format!(
                "the CSR's common name {cn:?} is not one of the order's identifiers ({})",
                describe(&wanted)
            )));
        }
        got.insert(cn_ident);
    }
    if got != wanted {
        let missing: BTreeSet<_> = wanted.difference(&got).cloned().collect();
        let extra: BTreeSet<_> = got.difference(&wanted).cloned().collect();
        return Err(AcmeError::bad_csr(format!(
            "the CSR must name exactly the order's identifiers; missing: [{}], not in the order: [{}]",
            describe(&missing),
            describe(&extra)
        )));
    }
    let now = vellum_core::time::now();
    let validity_days = match o.not_after {
        Some(na) => ((na - now) + 86_399) / 86_400,
        None => ctx.settings.default_validity_days,
    };
    let cn = csr
        .common_name
        .clone()
        .or_else(|| {
            wanted
                .iter()
                .find(|i| i.kind == IdentifierType::Dns)
                .map(|i| i.value.clone())
        })
        .unwrap_or_default();
    let sans: Vec<San> = wanted
        .iter()
        .filter_map(|i| match i.kind {
            IdentifierType::Ip => i.value.parse().ok().map(San::Ip),
            IdentifierType::Dns => Some(San::Dns(i.value.clone())),
        })
        .collect();
    let mut tags = BTreeMap::new();
    tags.insert("acme_order".to_string(), o.id.clone());
    let request = IssueRequest {
        tenant_id: ctx.ca.tenant_id.clone(),
        ca_id: ctx.ca.id.clone(),
        leaf_type: o.profile.leaf_type(),
        subject: SubjectFields {
            common_name: cn,
            ..Default::default()
        },
        sans,
        validity_days,
        include_crl: true,
        key: KeySource::Provided {
            spki_der: csr.spki_der.clone(),
            key_algorithm: csr.key_algorithm.clone(),
            is_rsa: csr.is_rsa,
        },
        source: CertificateSource::Acme,
        name: None,
        tags,
        requester: Some(account.id.clone()),
        spec_json: json!({"acme_order": o.id, "profile": o.profile}),
        renewed_from: None,
        audit: Some(store::audit::AuditEvent {
            at: now,
            tenant_id: Some(ctx.ca.tenant_id.clone()),
            actor: Some(format!("acme:{}", account.id)),
            action: "certificate.issue.acme".into(),
            outcome: AuditOutcome::Success,
            ..Default::default()
        }),
        acme_names: true,
        followup: Some(Followup::AcmeOrderValid {
            order_id: id.clone(),
        }),
        est_client: None,
    };
    // The order becomes valid in the transaction that records the certificate, if it is
    // still ready then (of concurrent finalizes, one wins; the others' certificates are
    // never recorded nor sent), so the answer can be written from what was committed,
    // without reading the order again.
    // A refusal of the recorder (no quota, the order claimed by another finalize, the CA
    // changed) is the domain error `acme::problem` maps: the order's status comes with it.
    let issued = issue::issue(&app, request).await?;
    let mut o = o;
    o.status = state::ORDER_ISSUED.to;
    o.certificate_id = Some(issued.record.id.clone());
    Ok(reply(
        StatusCode::OK,
        order_json(&ctx, &o).await?,
        Some(&ctx.url(&format!("order/{id}"))),
        &[],
    ))
}

async fn cert_response(
    app: &Arc<App>,
    ca: &str,
    id: &str,
    alt: bool,
    headers: &HeaderMap,
    body: &Bytes,
) -> AcmeResult<Response> {
    let path = if alt {
        format!("cert/{id}/1")
    } else {
        format!("cert/{id}")
    };
    let (ctx, req) = authenticate(app, ca, &path, headers, body, KeyRef::Kid).await?;
    let account = req.account()?;
    let cert = {
        let mut conn = app.store.reader().acquire().await?;
        store::certificates::get(&mut conn, &ctx.ca.tenant_id, id).await?
    }
    .filter(|c| {
        c.ca_id.as_deref() == Some(ctx.ca.id.as_str())
            && c.requester.as_deref() == Some(account.id.as_str())
    })
    .ok_or_else(|| AcmeError::not_found(format!("no certificate {id} for this account")))?;
    let mut chain = cert_pem(&cert.certificate_der);
    // The issuer's current certificate once a renewal has switched over (same key), or
    // the certificate of the key that signed this one (renewed with a new key since).
    let ca = ra::rollover::current(app, (*ctx.ca).clone()).await?;
    let mut conn = app.store.reader().acquire().await?;
    let inter = ra::rollover::issuer_certificate(&mut conn, &ca, &cert.certificate_der).await?;
    if let Some(inter) = &inter {
        chain.push_str(&cert_pem(inter));
    }
    if alt {
        if let (Some(pid), Some(inter)) = (&ca.parent_id, &inter) {
            if let Some(root) = store::cas::get_any_tenant(&mut conn, pid).await? {
                if let Some(der) = ra::rollover::issuer_certificate(&mut conn, &root, inter).await?
                {
                    chain.push_str(&cert_pem(&der));
                }
            }
        }
    }
    drop(conn);
    let mut resp = chain.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    if !alt {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "<{}>;rel=\"alternate\"",
            ctx.url(&format!("cert/{id}/1"))
        )) {
            resp.headers_mut().append(header::LINK, v);
        }
    }
    Ok(resp)
}

/// `POST cert/{id}` (POST-as-GET): leaf + intermediate.
pub(super) async fn certificate(
    State(app): State<Arc<App>>,
    Path((ca, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    cert_response(&app, &ca, &id, false, &headers, &body).await
}

/// `POST cert/{id}/1`: the alternate chain that also includes the root.
pub(super) async fn certificate_alt(
    State(app): State<Arc<App>>,
    Path((ca, id, alt)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> AcmeResult<Response> {
    if alt != "1" {
        return Err(AcmeError::not_found("no such alternate chain"));
    }
    cert_response(&app, &ca, &id, true, &headers, &body).await
}
