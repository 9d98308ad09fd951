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
    let value = deserialize(de, bytes)?;
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
    bytes: &[u8],
) -> Result<T, Error> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if (inner.is_syntax() || inner.is_eof())
            && path != "."
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
        {
            // Valid JSON that serde_json reports as a syntax error: a number or a list
            // where a choice's name was expected.
            return Error::invalid(path, "must be one of the names this field accepts, as text");
        }
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
        let detail = msg.split(" at line ").next().unwrap_or(&msg);
        Error::invalid(field, in_words(detail))
    })
}

/// serde's shape errors ("invalid value: integer `-1`, expected u32") in words a person
/// reads ("must be a whole number from 0 to 4294967295, not -1"). Messages of Vellum's own
/// deserializers are already in words and pass through.
fn in_words(msg: &str) -> String {
    if msg.starts_with("missing field `") {
        return "is required".into();
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return match rest.split_once(", expected ") {
            Some((_, fields)) => format!(
                "\"{name}\" is not a field here; the fields are {}",
                fields.trim_start_matches("one of ").replace('`', "")
            ),
            None => format!("\"{name}\" is not a field here; this object takes no fields"),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or_default();
        return match rest.split_once(", expected ") {
            Some((_, values)) => format!(
                "must be {}, not \"{name}\"",
                values
                    .trim_start_matches("`")
                    .trim_end_matches('`')
                    .replace("`, `", ", ")
                    .replace('`', "")
            ),
            None => format!("\"{name}\" is not accepted here"),
        };
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.rsplit_once(", expected ") {
                return format!(
                    "must be {}, not {}",
                    expected_words(expected),
                    got_words(got)
                );
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        if let Some((n, expected)) = rest.split_once(", expected ") {
            return format!("must hold {expected}, not {n} items");
        }
    }
    msg.to_string()
}

/// What serde expected, in words.
fn expected_words(expected: &str) -> String {
    let unsigned = |max: u64| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => unsigned(u8::MAX.into()),
        "u16" => unsigned(u16::MAX.into()),
        "u32" => unsigned(u32::MAX.into()),
        "u64" | "usize" => unsigned(u64::MAX),
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" | "u128" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" | "string" | "a string or bytes" => {
            "text (a JSON string)".into()
        }
        "a character" => "a single character".into(),
        "a sequence" => "a list (a JSON array)".into(),
        "a map" => "an object".into(),
        "unit" => "null".into(),
        "variant identifier" | "enum" => "one of the names this field accepts".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object".into(),
        e if e.starts_with("a sequence") || e.starts_with("an array") => {
            "a list (a JSON array)".into()
        }
        e => e.replace('`', ""),
    }
}

/// What serde got, in words (`integer `-1`` → `-1`, `map` → `an object`).
fn got_words(got: &str) -> String {
    for kind in ["integer ", "floating point ", "boolean ", "character "] {
        if let Some(v) = got.strip_prefix(kind) {
            return v.trim_matches('`').to_string();
        }
    }
    if let Some(v) = got.strip_prefix("string ") {
        return format!("the text {v}");
    }
    match got {
        "map" => "an object".into(),
        "sequence" => "a list".into(),
        "null" | "unit value" | "unit" => "null".into(),
        "string" => "text".into(),
        g => g.replace('`', ""),
    }
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
    let urls = PublicationUrls::for_key(http_base, &ca.id, ca.key_generation);
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
        "generation": ca.generation,
        "key_generation": ca.key_generation,
        "rollover_at": ts(ca.rollover_at),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        per_minute: u32,
        enabled: Option<bool>,
        name: Option<String>,
        kind: Option<Kind>,
        sans: Option<Vec<String>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Root,
        Intermediate,
    }

    fn refusal(body: &str) -> (String, String) {
        match parse::<Limits>(body.as_bytes()) {
            Err(Error::Invalid { field, detail }) => (field, detail),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn shape_errors_name_the_field_in_words() {
        let (field, detail) = refusal(r#"{"per_minute": -1}"#);
        assert_eq!(field, "per_minute");
        assert_eq!(
            detail,
            "must be a whole number from 0 to 4294967295, not -1"
        );
        let (field, detail) = refusal(r#"{"per_minute": "ten"}"#);
        assert_eq!(field, "per_minute");
        assert_eq!(
            detail,
            r#"must be a whole number from 0 to 4294967295, not the text "ten""#
        );
        let (_, detail) = refusal(r#"{"per_minute": 1, "enabled": "yes"}"#);
        assert_eq!(detail, r#"must be true or false, not the text "yes""#);
        let (_, detail) = refusal(r#"{"per_minute": 1, "name": 7}"#);
        assert_eq!(detail, "must be text (a JSON string), not 7");
        let (field, detail) = refusal(r#"{"per_minute": 1, "kind": "leaf"}"#);
        assert_eq!(field, "kind");
        assert_eq!(detail, r#"must be root or intermediate, not "leaf""#);
        let (_, detail) = refusal(r#"{"per_minute": 1, "sans": {}}"#);
        assert_eq!(detail, "must be a list (a JSON array), not an object");
        let (field, detail) = refusal(r#"{}"#);
        assert_eq!(
            (field.as_str(), detail.as_str()),
            ("per_minute", "is required")
        );
        let (field, detail) = refusal(r#"{"per_minute": 1, "colour": 1}"#);
        assert_eq!(field, "colour");
        assert!(
            detail.starts_with(r#""colour" is not a field here; the fields are per_minute, "#),
            "{detail}"
        );
        let (field, detail) = refusal(r#"{"per_minute": 1, "kind": 3}"#);
        assert_eq!(field, "kind");
        assert_eq!(
            detail,
            "must be one of the names this field accepts, as text"
        );
        for body in [
            r#"{"per_minute": -1}"#,
            r#"{"per_minute": 1, "kind": 3}"#,
            r#"[]"#,
        ] {
            let (_, detail) = refusal(body);
            assert!(
                !detail.contains('`') && !detail.contains("u32"),
                "{body}: {detail}"
            );
        }
    }
}
