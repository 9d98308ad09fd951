//! EST front end (RFC 7030 as clarified by RFC 8951): devices enroll over TLS with HTTP
//! Basic or a client certificate; every enrollment goes through `ra::issue` and spends one
//! unit of the intermediate CA's quota.
//!
//! `/.well-known/est/{operation}` serves the default intermediate (`est.default_ca`, else
//! the bootstrap intermediate); `/.well-known/est/{label}/{operation}` serves the CA whose
//! EST label (set through the admin API) is `label` — its id works as well.
//!
//! Answers are base64 on one line followed by CRLF, with `Content-Transfer-Encoding:
//! base64`; errors are a status and a one-line `text/plain` reason.

pub mod auth;
pub mod encode;
pub mod enroll;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};

use crate::listener::{ClientCert, RemoteAddr};
use crate::App;
use auth::{Identity, PasswordCache};
use store::{
    self,
    est::{Client, Settings},
};
use vellum_core::error::Error;

/// Realm of `WWW-Authenticate: Basic`.
pub const REALM: &str = "Vellum EST";

pub use ra::est::{Operation, OPERATIONS};

/// The HTTP method of an operation.
fn method(op: Operation) -> Method {
    match op {
        Operation::CaCerts | Operation::CsrAttrs => Method::GET,
        _ => Method::POST,
    }
}

/// An EST refusal: a status and a one-line reason, sent as `text/plain`.
#[derive(Debug, Clone)]
pub struct EstError {
    /// HTTP status.
    pub status: StatusCode,
    /// One line saying which rule failed.
    pub message: String,
    /// `Retry-After`, seconds.
    pub retry_after: Option<u64>,
    /// `Allow` (405).
    pub allow: Option<&'static str>,
    /// The database was unavailable: the refusal is not audited (the write would wait
    /// for the database again and fail the same way).
    pub database_unavailable: bool,
}

impl EstError {
    fn new(status: StatusCode, message: impl Into<String>) -> EstError {
        // One line: a reason must not be able to smuggle in more.
        let message: String = message
            .into()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        EstError {
            status,
            message,
            retry_after: None,
            allow: None,
            database_unavailable: false,
        }
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> EstError {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    /// 401 (answered with `WWW-Authenticate: Basic`).
    pub fn unauthorized(m: impl Into<String>) -> EstError {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> EstError {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> EstError {
        Self::new(StatusCode::NOT_FOUND, m)
    }
}

impl From<Error> for EstError {
    fn from(e: Error) -> EstError {
        match e {
            Error::Invalid { field, detail } => EstError::bad_request(format!("{field}: {detail}")),
            Error::BadRequest { detail, .. } => EstError::bad_request(detail),
            Error::Unauthorized(m) => EstError::unauthorized(m),
            Error::Forbidden(m) => EstError::forbidden(m),
            Error::NotFound(m) => EstError::not_found(m),
            // The issuing CA cannot issue now (service period over, not enabled, …).
            Error::Conflict(m) => EstError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            // It changed under the request: a retry sees the new state.
            Error::CaChanged { detail, .. } => {
                let mut e = EstError::new(StatusCode::SERVICE_UNAVAILABLE, detail);
                e.retry_after = Some(1);
                e
            }
            Error::QuotaExhausted { detail, .. } => {
                let mut e = EstError::new(StatusCode::SERVICE_UNAVAILABLE, detail);
                e.retry_after = Some(3600);
                e
            }
            // No EST request carries an ACME order; should one arrive here, it is a conflict.
            e @ Error::OrderNotReady { .. } => {
                EstError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Error::TooLarge(n) => EstError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body exceeds the limit of {n} bytes"),
            ),
            Error::UnsupportedMediaType(m) => EstError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            Error::RateLimited {
                detail,
                retry_after,
            } => {
                let mut e = EstError::new(StatusCode::TOO_MANY_REQUESTS, detail);
                e.retry_after = Some(retry_after);
                e
            }
            // RFC 7030 section 4.2.3: 503 with Retry-After, the client tries again later.
            Error::Unavailable {
                detail,
                retry_after,
            } => {
                let mut e = EstError::new(StatusCode::SERVICE_UNAVAILABLE, detail);
                e.retry_after = Some(retry_after);
                e.database_unavailable = true;
                e
            }
            e @ (Error::Config(_) | Error::Internal(_)) => {
                tracing::error!(error = %e, "EST request failed");
                EstError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the server log has the details",
                )
            }
        }
    }
}

impl IntoResponse for EstError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, format!("{}\r\n", self.message)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(a) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(a));
        }
        resp
    }
}

/// State of the EST front end (one per server).
#[derive(Debug, Default)]
pub struct EstState {
    /// Recently verified passwords.
    pub passwords: PasswordCache,
}

/// The CA a request is for, with its EST settings.
pub struct Ctx {
    /// The intermediate CA (enabled).
    pub ca_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its EST settings (enabled).
    pub settings: Settings,
    /// The Basic account the request names, looked up together with the CA.
    pub client: Option<Client>,
}

impl Ctx {
    /// The CA of a label (or id), or of the default path, with the Basic account
    /// `username`: an enabled intermediate with EST turned on; 404 otherwise. One round
    /// trip to the database, or none when read less than a second ago (`store::cache`).
    pub async fn load(
        app: &App,
        label: Option<&str>,
        username: Option<&str>,
    ) -> Result<Ctx, EstError> {
        let key = label
            .map(str::to_string)
            .unwrap_or_else(|| app.est_default_ca());
        let cache_key = format!("{key}\0{}", username.unwrap_or_default());
        let service = app
            .store
            .caches()
            .read_through(&app.store.caches().est, &cache_key, || async {
                let mut conn = app.store.reader().acquire().await?;
                store::est::service(&mut conn, &key, username).await
            })
            .await?;
        let Some(svc) = service else {
            return Err(EstError::not_found(match label {
                Some(l) => format!("no EST service is labelled {l:?}"),
                None => format!("the default EST CA {key} does not exist"),
            }));
        };
        let ca_id = svc.settings.ca_id.clone();
        if svc.kind.is_root() {
            return Err(EstError::not_found(format!(
                "CA {ca_id} is a root CA; EST is served by intermediate CAs"
            )));
        }
        if svc.status != vellum_core::status::CaStatus::Enabled {
            return Err(EstError::not_found(format!(
                "no EST service for CA {ca_id}: it is {}",
                svc.status
            )));
        }
        if !svc.settings.enabled {
            return Err(EstError::not_found(format!(
                "EST is turned off for CA {ca_id}"
            )));
        }
        Ok(Ctx {
            ca_id,
            tenant_id: svc.tenant_id.clone(),
            settings: svc.settings.clone(),
            client: svc.client.clone(),
        })
    }
}

/// Routes under `/.well-known/est`.
pub fn router(config: &vellum_core::config::Config) -> Router<Arc<App>> {
    let limits = &config.rate_limits;
    let state = EstState {
        passwords: PasswordCache::new(limits.argon2_workers(), limits.argon2_queue),
    };
    Router::new()
        .route("/.well-known/est/{op}", any(default_operation))
        .route("/.well-known/est/{label}/{op}", any(labelled_operation))
        .layer(Extension(Arc::new(state)))
}

async fn default_operation(
    State(app): State<Arc<App>>,
    Extension(est): Extension<Arc<EstState>>,
    Path(op): Path<String>,
    req: Request,
) -> Response {
    dispatch(&app, &est, None, &op, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn labelled_operation(
    State(app): State<Arc<App>>,
    Extension(est): Extension<Arc<EstState>>,
    Path((label, op)): Path<(String, String)>,
    req: Request,
) -> Response {
    dispatch(&app, &est, Some(&label), &op, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn base64_response(content_type: &'static str, der: &[u8]) -> Response {
    let mut resp = (StatusCode::OK, encode::base64_line(der)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

async fn dispatch(
    app: &App,
    est: &EstState,
    label: Option<&str>,
    op: &str,
    req: Request,
) -> Result<Response, EstError> {
    // The body is read first, whatever the answer: a client still sending when a refusal
    // arrives sees a reset stream (HTTP/2) or a broken pipe instead of the reason.
    let (parts, body) = req.into_parts();
    let body = read_body(app, body).await?;
    let operation = Operation::parse(op).ok_or_else(|| {
        EstError::not_found(format!(
            "unknown EST operation {op:?}; the operations are {}",
            OPERATIONS
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if operation == Operation::FullCmc {
        return Err(EstError::new(
            StatusCode::NOT_IMPLEMENTED,
            "fullcmc is not supported by this EST server; use simpleenroll, simplereenroll or serverkeygen",
        ));
    }
    if parts.method != method(operation) {
        let mut e = EstError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} takes {}, not {}",
                operation.name(),
                method(operation),
                parts.method
            ),
        );
        e.allow = Some(if method(operation) == Method::GET {
            "GET"
        } else {
            "POST"
        });
        return Err(e);
    }
    let credentials = auth::basic_credentials(&parts.headers);
    let username = match &credentials {
        Ok(Some((user, _))) => Some(user.as_str()),
        _ => None,
    };
    let ctx = Ctx::load(app, label, username).await?;
    match operation {
        Operation::CaCerts => cacerts(app, &ctx).await,
        Operation::CsrAttrs => Ok(base64_response(
            "application/csrattrs",
            &encode::csr_attrs(),
        )),
        Operation::SimpleEnroll | Operation::SimpleReenroll | Operation::ServerKeygen => {
            enroll_operation(app, est, &ctx, operation, credentials?, &parts, &body).await
        }
        Operation::FullCmc => Err(EstError::not_found("fullcmc")),
    }
}

/// The whole request body (the edge's body limit applies: 413 beyond it).
async fn read_body(app: &App, body: Body) -> Result<axum::body::Bytes, EstError> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        // The limit's error sits some layers down the chain (the edge's body wrappers).
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut too_large = false;
        while let Some(c) = cause {
            too_large |= c.is::<http_body_util::LengthLimitError>();
            cause = c.source();
        }
        if too_large {
            EstError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body exceeds the limit of {} bytes",
                    app.config.limits.body_bytes
                ),
            )
        } else {
            EstError::bad_request(format!("the request body could not be read: {e}"))
        }
    })
}

/// `GET cacerts`: the intermediate and its root, certs-only.
async fn cacerts(app: &App, ctx: &Ctx) -> Result<Response, EstError> {
    let ca = {
        let mut conn = app.store.reader().acquire().await?;
        store::cas::get_any_tenant(&mut conn, &ctx.ca_id)
            .await?
            .ok_or_else(|| EstError::not_found(format!("no CA {}", ctx.ca_id)))?
    };
    // The renewed certificate's chain once its switch-over time has come.
    let ca = ra::rollover::current(app, ca).await?;
    let signer = ra::signer_for(app, &ca).await?;
    let chain: Vec<&[u8]> = signer.chain_der().iter().map(Vec::as_slice).collect();
    Ok(base64_response(CERTS_ONLY, &encode::certs_only(&chain)))
}

async fn enroll_operation(
    app: &App,
    est: &EstState,
    ctx: &Ctx,
    op: Operation,
    credentials: Option<(String, zeroize::Zeroizing<String>)>,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Response, EstError> {
    let source_ip = parts
        .extensions
        .get::<RemoteAddr>()
        .map(|r| r.0.ip().to_string());
    let client_cert = parts.extensions.get::<ClientCert>();
    let remote_ip = parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip());
    let identity = authenticate(est, app, ctx, op, credentials, client_cert, remote_ip).await?;
    let renewing = match &identity {
        Identity::Renewing { cert } => Some(cert.as_ref().clone()),
        _ => None,
    };
    let outcome = async {
        let request = enroll::parse(body)?;
        if let Some(old) = &renewing {
            enroll::check_same_names(old, &request)?;
        }
        enroll::check_patterns(&identity, &request)?;
        let issued = enroll::issue(
            app,
            ctx,
            &identity,
            op,
            &request,
            renewing.as_ref(),
            source_ip.clone(),
        )
        .await?;
        Ok::<_, EstError>(issued)
    }
    .await;
    let issued = match outcome {
        Ok(i) => i,
        Err(e) => {
            if e.status != StatusCode::INTERNAL_SERVER_ERROR && !e.database_unavailable {
                enroll::audit_failure(app, ctx, &identity, op, source_ip, &e.message).await;
            }
            return Err(e);
        }
    };
    let pkcs7 = encode::certs_only(&[&issued.record.certificate_der]);
    if op != Operation::ServerKeygen {
        return Ok(base64_response(CERTS_ONLY, &pkcs7));
    }
    let key_pem = issued
        .private_key_pem
        .as_ref()
        .ok_or_else(|| Error::internal("serverkeygen issued without a generated key"))?;
    let key_der = zeroize::Zeroizing::new(
        ::pem::parse(key_pem.as_bytes())
            .map_err(Error::internal)?
            .into_contents(),
    );
    let (body, boundary) = encode::multipart(&[
        ("application/pkcs8", key_der.as_slice()),
        (CERTS_ONLY, pkcs7.as_slice()),
    ]);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    let ct = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}"))
        .map_err(Error::internal)?;
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Who is asking, by the CA's accepted methods: HTTP Basic when an Authorization header
/// is sent, else the TLS client certificate (see [`auth::check_enroll_cert`] for which
/// certificates may enroll). simplereenroll always needs the certificate being renewed,
/// issued by this CA.
async fn authenticate(
    est: &EstState,
    app: &App,
    ctx: &Ctx,
    op: Operation,
    credentials: Option<(String, zeroize::Zeroizing<String>)>,
    client_cert: Option<&ClientCert>,
    remote_ip: Option<std::net::IpAddr>,
) -> Result<Identity, EstError> {
    let ca = &ctx.ca_id;
    let basic_on = ctx.settings.allows("basic");
    let cert_on = ctx.settings.allows("client_cert");
    if op == Operation::SimpleReenroll {
        if !cert_on {
            return Err(EstError::forbidden(format!(
                "simplereenroll needs TLS client-certificate authentication, which is turned off for CA {ca}"
            )));
        }
        let Some(cert) = client_cert else {
            return Err(EstError::unauthorized(format!(
                "simplereenroll: present the certificate being renewed (issued by CA {ca}) as the TLS client certificate"
            )));
        };
        return auth::check_renewal_cert(app, ctx, cert).await;
    }
    match credentials {
        Some((username, password)) => {
            if !basic_on {
                return Err(EstError::forbidden(format!(
                    "HTTP Basic authentication is turned off for the EST service of CA {ca}; use a TLS client certificate"
                )));
            }
            auth::check_basic(
                app,
                &est.passwords,
                ca,
                &username,
                ctx.client.as_ref(),
                &password,
                remote_ip,
            )
            .await
        }
        None => match client_cert {
            Some(cert) if cert_on => auth::check_enroll_cert(app, ctx, cert).await,
            _ if basic_on => Err(EstError::unauthorized(format!(
                "{} needs credentials: HTTP Basic (an EST client of CA {ca}){}",
                op.name(),
                if cert_on {
                    " or a TLS client certificate this EST service issued to an EST account (or one from a configured trust anchor)"
                } else {
                    ""
                }
            ))),
            _ => Err(EstError::forbidden(format!(
                "{} needs a TLS client certificate this EST service issued to an EST account, or one from a configured trust anchor (HTTP Basic is turned off for CA {ca})",
                op.name()
            ))),
        },
    }
}
