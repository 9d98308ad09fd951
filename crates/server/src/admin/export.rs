//! The one export path: issued certificates (`POST /certificates/{id}/export`), managed
//! certificates (`POST /managed/{id}/export`) and conversions (`POST /tools/convert`) all
//! render their file here, through `ca::formats`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use ca::formats::{self, ExportInput, FormatError};
use vellum_core::error::{Error, Result};

/// Body of `POST /certificates/{id}/export` and `POST /managed/{id}/export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    /// pem, der, pkcs12 (pfx), jks or pkcs8.
    pub format: String,
    /// Required for pkcs12 and jks; encrypts pkcs8.
    pub password: Option<String>,
    /// Default true.
    pub include_chain: Option<bool>,
    /// PKCS#12 with 3DES/SHA-1 for old consumers.
    pub legacy: Option<bool>,
}

/// Audits one export as `{prefix}.export.{format}` on the certificate `id`, whatever its
/// outcome, without the material (a failure is recorded by its message only); hands
/// `res` back. Issued and managed exports, single and bulk, all come here.
pub async fn audited<T>(
    app: &crate::App,
    who: &super::auth::Principal,
    prefix: &str,
    id: &str,
    format: &str,
    res: Result<T>,
) -> Result<T> {
    let outcome: Result<()> = match &res {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::bad_request(e.client_detail())),
    };
    super::audit::record(
        app,
        who,
        &format!("{prefix}.export.{format}"),
        Some(id),
        &outcome,
    )
    .await;
    res
}

/// The key-store alias (PKCS#12 friendly name, JKS alias) of a certificate: its CN, or
/// its id when it has none.
pub fn alias<'a>(common_name: &'a str, id: &'a str) -> &'a str {
    if common_name.is_empty() {
        id
    } else {
        common_name
    }
}

/// The domain error of a format error.
pub fn format_error(e: FormatError) -> Error {
    match e {
        FormatError::KeyNotHeld => Error::conflict(
            "this format needs the private key, and the server does not hold it (the certificate was issued from a CSR)",
        ),
        FormatError::Password(m) => Error::invalid("password", m),
        other => Error::internal(other),
    }
}

/// A rendered export: its bytes, content type and file name.
#[derive(Debug)]
pub struct File {
    /// The file's bytes (may hold a private key: never log them).
    pub bytes: Vec<u8>,
    /// Its media type.
    pub content_type: &'static str,
    /// `<alias>.<ext>`, the alias reduced to letters, digits, `-` and `.`.
    pub name: String,
}

impl File {
    /// The file as an attachment (`no-store`).
    pub fn into_response(self) -> Response {
        attachment(self.bytes, self.content_type, &self.name)
    }
}

/// `bytes` as a download named `name` (`Content-Disposition: attachment`, `no-store`).
pub fn attachment(bytes: impl IntoResponse, content_type: &str, name: &str) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `name` reduced to what a file name may safely hold everywhere: ASCII letters,
/// digits, `-` and `.`; anything else becomes `_`.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' {
                ch
            } else {
                '_'
            }
        })
        .collect()
}

/// The file of `input` in `format` as an attachment named after the alias (`no-store`).
/// `password` protects pkcs12 and jks (required) and pkcs8 (optional).
pub fn render(
    input: &ExportInput,
    format: &str,
    password: Option<&str>,
    legacy: bool,
) -> Result<Response> {
    Ok(render_file(input, format, password, legacy)?.into_response())
}

/// The file of `input` in `format` ([`render`] without the HTTP wrapping: the bulk
/// export zips these).
pub fn render_file(
    input: &ExportInput,
    format: &str,
    password: Option<&str>,
    legacy: bool,
) -> Result<File> {
    let needs_password = |fmt: &str| {
        password
            .ok_or_else(|| Error::invalid("password", format!("is required for the {fmt} format")))
    };
    let file_stem = file_stem(input.alias);
    let (bytes, content_type, ext): (Vec<u8>, &str, &str) = match format {
        "pem" => (
            formats::pem_bundle(input).into_bytes(),
            "application/x-pem-file",
            "pem",
        ),
        "der" => (formats::der(input), "application/pkix-cert", "cer"),
        "pkcs12" | "pfx" => (
            formats::pkcs12(input, needs_password("pkcs12")?, legacy).map_err(format_error)?,
            "application/x-pkcs12",
            "p12",
        ),
        "jks" => (
            formats::jks(input, needs_password("jks")?).map_err(format_error)?,
            "application/x-java-keystore",
            "jks",
        ),
        "pkcs8" => {
            let key = input
                .key_pkcs8_der
                .ok_or_else(|| format_error(FormatError::KeyNotHeld))?;
            (
                formats::pkcs8_pem(key, password)
                    .map_err(format_error)?
                    .into_bytes(),
                "application/x-pem-file",
                "key",
            )
        }
        other => {
            return Err(Error::invalid(
                "format",
                format!("{other:?} is not an export format; use pem, der, pkcs12, jks or pkcs8"),
            ))
        }
    };
    Ok(File {
        bytes,
        content_type,
        name: format!("{file_stem}.{ext}"),
    })
}
