//! JSON in and out of the admin API: body extractors whose errors name the field, object
//! views, list envelopes, timestamps.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::problem::Problem;
use crate::App;
use ca::cert_pem;
use ca::profile::PublicationUrls;
use store::cas::CaRow;
use vellum_core::error::Error;

/// RFC 3339 UTC rendering of Unix seconds.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Optional timestamp as JSON.
pub fn ts(v: Option<i64>) -> Value {
    v.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

/// Parses an RFC 3339 timestamp (query parameters).
pub fn parse_rfc3339(field: &str, s: &str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            Error::invalid(
                field,
                format!("{s:?} is not an RFC 3339 timestamp such as 2026-01-31T00:00:00Z"),
            )
        })
}

/// A required JSON body. Syntax errors are 400s; well-formed JSON that does not fit the
/// expected shape is a 422 naming the field.
pub struct Json<T>(pub T);

/// A JSON body that may be omitted (then `T::default()`).
pub struct OptJson<T>(pub T);

/// The path (`tags.env`, `sans[1].value`) of the first string (key or value) of a JSON
/// document that holds a NUL character.
fn nul_path(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(path.trim_start_matches('.').to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_path(x, &format!("{path}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let here = format!("{path}.{k}");
            if k.contains('\0') {
                Some(here.trim_start_matches('.').to_string())
            } else {
                nul_path(x, &here)
            }
        }),
        _ => None,
    }
}

/// No text of the admin API may hold a NUL character (names, tags, labels…): refused as a
/// 422 naming the field, before any rule or database sees it. Only bodies that contain
/// the escape `\u0000` at all are walked.
fn refuse_nul(bytes: &[u8]) -> Result<(), Error> {
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(()); // the parse below names the syntax error
    };
    match nul_path(&v, "") {
        Some(field) => Err(Error::invalid(
            if field.is_empty() {
                "body".to_string()
            } else {
                field
            },
            "contains the character U+0000 (NUL), which no field accepts",
        )),
        None => Ok(()),
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    refuse_nul(bytes)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = deserialize(de)?;
    // One JSON value and nothing after it but whitespace: `{…} garbage` or `{…} {…}` is
    // not a JSON document.
    de.end().map_err(|e| Error::BadRequest {
        field: None,
        detail: format!("request body is not valid JSON: {e}"),
    })?;
    Ok(value)
}

fn deserialize<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return Error::BadRequest {
                field: None,
                detail: format!("request body is not valid JSON: {msg}"),
            };
        }
        let field = if let Some(rest) = msg.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        } else if let Some(rest) = msg.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or_default();
            if path == "." {
                name.to_string()
            } else {
                path.clone()
            }
        } else if path == "." {
            "body".to_string()
        } else {
            path
        };
        let detail = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        Error::invalid(field, detail)
    })
}

async fn body_bytes(req: Request, app: &Arc<App>) -> Result<(bool, Bytes), Error> {
    let declared_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("application/json") || ct.contains("+json")
        });
    let bytes = Bytes::from_request(req, app).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(app.config.limits.body_bytes)
        } else {
            Error::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    // A body needs a JSON content type; a missing one is refused like a wrong one.
    if !bytes.iter().all(u8::is_ascii_whitespace) && declared_json != Some(true) {
        return Err(Error::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        ));
    }
    Ok((bytes.iter().all(u8::is_ascii_whitespace), bytes))
}

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Json<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Problem> {
        let (empty, bytes) = body_bytes(req, app).await?;
        if empty {
            return Err(Error::bad_request("a JSON object is required as the request body").into());
        }
        Ok(Json(parse(&bytes)?))
    }
}

impl<T: DeserializeOwned + Default> FromRequest<Arc<App>> for OptJson<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Problem> {
        let (empty, bytes) = body_bytes(req, app).await?;
        if empty {
            return Ok(OptJson(T::default()));
        }
        Ok(OptJson(parse(&bytes)?))
    }
}

/// `{"items": [...], "next_cursor": …}`.
pub fn list(items: Vec<Value>, next_cursor: Option<String>) -> Value {
    json!({ "items": items, "next_cursor": next_cursor })
}

/// The `limit` and `cursor` query parameters every list takes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// 1–1000, default 100.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Page {
    /// The page size: default 100; outside 1–1000 a 422 naming `limit`.
    pub fn limit(&self) -> Result<i64, Error> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        Ok(limit)
    }

    /// The cursor, if one was given (an empty one means the first page).
    pub fn after(&self) -> Option<&str> {
        self.cursor.as_deref().filter(|c| !c.is_empty())
    }
}

/// The next page's cursor: the key of the last row when the page is full.
pub fn next_cursor<T>(rows: &[T], limit: i64, key: impl Fn(&T) -> &str) -> Option<String> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| key(r).to_string()))
        .flatten()
}

/// The JSON view of a CA (a contract: see the admin API documentation).
pub fn ca(ca: &CaRow, http_base: &str) -> Value {
    let urls = PublicationUrls::for_ca(http_base, &ca.id);
    let now = vellum_core::time::now();
    let mut v = json!({
        "id": ca.id,
        "kind": ca.kind,
        "parent_id": ca.parent_id,
        "status": ca.status,
        "subject": ca.subject,
        "common_name": ca.common_name,
        "organization": ca.organization,
        "organizational_unit": ca.organizational_unit,
        "country": ca.country,
        "state": ca.state,
        "locality": ca.locality,
        "key_algorithm": ca.key_algorithm,
        "key_source": ca.key_source,
        "key_storage": ca.key_storage,
        "pkcs11_key": match (&ca.pkcs11_key_id, &ca.pkcs11_key_label) {
            (Some(id), Some(label)) => json!({"id": id, "label": label}),
            _ => Value::Null,
        },
        "validity_days": ca.validity_days,
        "serial": ca.serial,
        "certificate_pem": ca.certificate_der.as_deref().map(cert_pem),
        "not_before": ts(ca.not_before),
        "not_after": ts(ca.not_after),
        "purchased_at": rfc3339(ca.purchased_at),
        "service_until": rfc3339(ca.service_until),
        "service_started_at": rfc3339(ca.service_started_at),
        "service_months": ca.service_months,
        "service_expired": ra::hierarchy::service_expired(ca, now),
        "tags": serde_json::from_str::<Value>(&ca.tags_json).unwrap_or(json!({})),
        "enabled_at": ts(ca.enabled_at),
        "revoked_at": ts(ca.revoked_at),
        "revocation_reason": ca.revocation_reason,
        "refunded_at": ts(ca.refunded_at),
        "removed_at": ts(ca.removed_at),
        "refundable": ra::hierarchy::refundable(ca, now),
        "crl_url": urls.crl,
        "certificate_url": urls.certificate,
    });
    if ca.is_root() {
        v["quota_total"] = json!(ca.quota_total);
        v["quota_available"] = json!(ca.quota_available);
    } else {
        v["quota_assigned"] = json!(ca.quota_assigned);
        v["quota_remaining"] = json!(ca.quota_remaining);
        v["issued_count"] = json!(ca.issued_count);
    }
    v
}

/// Query-string extractor whose errors are problem+json 422s naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = Problem;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Problem> {
        let q = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(q).map(Query).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "query".into());
            Problem(Error::invalid(field, format!("query string: {msg}")))
        })
    }
}
