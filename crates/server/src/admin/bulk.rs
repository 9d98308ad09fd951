//! Bulk actions (`POST /certificates/bulk`, `POST /managed/bulk`): one call names up to
//! `ra::bulk::MAX_ITEMS` certificates by `ids` or by the list's `filter`, the selection is
//! resolved first (a filter matching too many refuses the whole call), then each item goes
//! through the function its single call uses (`certificates::revoke_one`, `renew_one`,
//! `delete_one`, `export_one`; `managed::delete_one`, `export_one`, `notifications_one`),
//! so rules, quota and per-item audit are the same; one item's failure does not stop the
//! others. Answers `{succeeded, failed, results}`, or for `export` a zip of the files with
//! that report as `manifest.json`.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::audit::record_detail;
use super::auth::{Permission, Principal};
use super::export::{ExportBody, File};
use super::json::Json;
use super::{certificates, managed};
use crate::problem::{self, ApiResult};
use crate::App;
use vellum_core::error::{Error, Result};
use vellum_core::status::{parse_field, BulkAction, BulkFormat, RevocationReason};

/// Body of `POST /certificates/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertBulkBody {
    action: String,
    ids: Option<Vec<String>>,
    filter: Option<certificates::FilterQuery>,
    /// revoke: the reason (default unspecified).
    reason: Option<String>,
    /// renew: renew certificates that are not yet expiring too.
    force: Option<bool>,
    /// export: `pem-zip` (default) or `pkcs12`.
    format: Option<String>,
    /// export as pkcs12: the one password of every file.
    password: Option<String>,
}

/// Body of `POST /managed/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedBulkBody {
    action: String,
    ids: Option<Vec<String>>,
    filter: Option<managed::FilterQuery>,
    /// export: `pem-zip` (default) or `pkcs12`.
    format: Option<String>,
    /// export as pkcs12: the one password of every file.
    password: Option<String>,
    /// notifications: on or off.
    on: Option<bool>,
}

/// The outcomes of a bulk call, in the order of its selection.
#[derive(Default)]
struct Report {
    succeeded: usize,
    failed: usize,
    results: Vec<Value>,
}

impl Report {
    fn ok(&mut self, id: &str, extra: Option<(&str, &str)>) {
        self.succeeded += 1;
        let mut v = json!({"id": id, "ok": true});
        if let Some((k, x)) = extra {
            v[k] = json!(x);
        }
        self.results.push(v);
    }

    /// The item's error as the single call answers it: its HTTP status and message.
    fn failed(&mut self, id: &str, e: &Error) {
        self.failed += 1;
        self.results.push(json!({
            "id": id,
            "ok": false,
            "status": problem::status(e).as_u16(),
            "error": e.client_detail(),
        }));
    }

    /// Records an item whose success carries nothing more than its id.
    fn outcome<T>(&mut self, id: &str, res: Result<T>) {
        match res {
            Ok(_) => self.ok(id, None),
            Err(e) => self.failed(id, &e),
        }
    }

    fn json(&self) -> Value {
        json!({"succeeded": self.succeeded, "failed": self.failed, "results": self.results})
    }
}

/// Exactly one of `ids` and `filter` (422 naming `ids` otherwise).
fn one_selection<'a, F>(
    ids: &'a Option<Vec<String>>,
    filter: &'a Option<F>,
) -> Result<Selection<'a, F>> {
    match (ids, filter) {
        (Some(_), Some(_)) => Err(Error::invalid("ids", "give either ids or filter, not both")),
        (None, None) => Err(Error::invalid(
            "ids",
            "give the certificates to act on: ids (a list) or filter (the list's filters)",
        )),
        (Some(ids), None) => Ok(Selection::Ids(ids)),
        (None, Some(f)) => Ok(Selection::Filter(f)),
    }
}

/// What a bulk call acts on: named ids, or what a filter selects.
enum Selection<'a, F> {
    Ids(&'a [String]),
    Filter(&'a F),
}

/// Named ids, checked (`ra::bulk::check_ids`), and how the audit names them.
fn by_ids(ids: &[String]) -> Result<(Vec<String>, String)> {
    let ids = ra::bulk::check_ids(ids)?;
    let n = ids.len();
    Ok((ids, format!("ids={n}")))
}

/// The 500 of a state the checks above make impossible (never a panic in a handler).
fn impossible(what: &str) -> Error {
    Error::internal(format!("bulk action: {what}"))
}

/// 422 naming `field` when it is given for an action that does not use it.
fn unused<T>(field: &str, v: &Option<T>, action: BulkAction) -> Result<()> {
    match v {
        Some(_) => Err(Error::invalid(
            field,
            format!("is not used by the {action} action"),
        )),
        None => Ok(()),
    }
}

/// The export body of each item of a bulk export (`password` required for pkcs12).
fn export_body(
    format: &Option<String>,
    password: &Option<String>,
) -> Result<(BulkFormat, ExportBody)> {
    let format = match format.as_deref() {
        None => BulkFormat::PemZip,
        Some(f) => parse_field("format", f)?,
    };
    let single = match format {
        BulkFormat::PemZip => {
            if password.is_some() {
                return Err(Error::invalid(
                    "password",
                    "is used by the pkcs12 format only (PEM files are not encrypted)",
                ));
            }
            "pem"
        }
        BulkFormat::Pkcs12 => {
            if password.as_deref().is_none_or(str::is_empty) {
                return Err(Error::invalid(
                    "password",
                    "is required for the pkcs12 format",
                ));
            }
            "pkcs12"
        }
    };
    Ok((
        format,
        ExportBody {
            format: single.into(),
            password: password.clone(),
            include_chain: Some(true),
            legacy: None,
        },
    ))
}

/// Writes the one `certificates.bulk` / `managed.bulk` event of the call.
async fn audit_bulk(
    app: &App,
    who: &Principal,
    event: &str,
    action: BulkAction,
    selection: &str,
    report: &Report,
) {
    let detail = format!(
        "action={action} {selection} succeeded={} failed={}",
        report.succeeded, report.failed
    );
    let ok: Result<()> = Ok(());
    record_detail(app, who, event, None, &ok, Some(&detail)).await;
}

/// The zip of a bulk export: one file per exported certificate (names made unique with
/// the id), then `manifest.json` (the report). Stored, not deflated: PKCS#12 files are
/// encrypted and PEM files small.
fn zip(files: Vec<(String, File)>, format: BulkFormat, report: &Report) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o600);
    let mut taken = HashSet::new();
    taken.insert("manifest.json".to_string());
    for (id, f) in files {
        let (stem, ext) = match format {
            BulkFormat::PemZip => (f.name.trim_end_matches(".pem").to_string(), "pem"),
            BulkFormat::Pkcs12 => (f.name.trim_end_matches(".p12").to_string(), "pfx"),
        };
        let mut name = format!("{stem}.{ext}");
        if !taken.insert(name.clone()) {
            name = format!("{stem}-{id}.{ext}");
            taken.insert(name.clone());
        }
        w.start_file(name, opts).map_err(Error::internal)?;
        w.write_all(&f.bytes).map_err(Error::internal)?;
    }
    w.start_file("manifest.json", opts)
        .map_err(Error::internal)?;
    w.write_all(report.json().to_string().as_bytes())
        .map_err(Error::internal)?;
    Ok(w.finish().map_err(Error::internal)?.into_inner())
}

fn zip_response(bytes: Vec<u8>, name: &str, report: &Report) -> Response {
    let mut resp = super::export::attachment(bytes, "application/zip", name);
    let h = resp.headers_mut();
    h.insert("x-vellum-succeeded", report.succeeded.into());
    h.insert("x-vellum-failed", report.failed.into());
    resp
}

/// `POST /certificates/bulk`: revoke, renew, delete or export up to 1,000 certificates.
pub async fn certificates(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<CertBulkBody>,
) -> ApiResult<Response> {
    // Every action needs what its single call needs (export included): an auditor is
    // refused before anything is resolved.
    who.require(Permission::Issue)?;
    let action: BulkAction = parse_field("action", &body.action)?;
    let chosen = one_selection(&body.ids, &body.filter)?;
    let mut export = None;
    match action {
        BulkAction::Revoke => {
            RevocationReason::parse_loose("reason", body.reason.as_deref())?;
            unused("force", &body.force, action)?;
            unused("format", &body.format, action)?;
            unused("password", &body.password, action)?;
        }
        BulkAction::Renew | BulkAction::Delete | BulkAction::Export => {
            unused("reason", &body.reason, action)?;
            if action != BulkAction::Renew {
                unused("force", &body.force, action)?;
            }
            if action == BulkAction::Export {
                export = Some(export_body(&body.format, &body.password)?);
            } else {
                unused("format", &body.format, action)?;
                unused("password", &body.password, action)?;
            }
        }
        BulkAction::Notifications => {
            return Err(Error::invalid(
                "action",
                "must be revoke, renew, delete or export (notifications are a setting of managed certificates)",
            )
            .into())
        }
    }
    let (ids, selection) = match chosen {
        Selection::Ids(ids) => by_ids(ids)?,
        Selection::Filter(f) => (
            ra::bulk::certificate_ids(&app, &who.tenant_id, &f.to_filter()?).await?,
            format!("filter=[{}]", f.describe()),
        ),
    };
    let mut report = Report::default();
    let mut files = Vec::new();
    for id in &ids {
        match action {
            BulkAction::Revoke => report.outcome(
                id,
                certificates::revoke_one(&app, &who, id, body.reason.as_deref()).await,
            ),
            BulkAction::Renew => {
                let force = body.force.unwrap_or(false);
                match certificates::renew_one(&app, &who, id, force).await {
                    Ok(issued) => report.ok(id, Some(("certificate_id", &issued.record.id))),
                    Err(e) => report.failed(id, &e),
                }
            }
            BulkAction::Delete => {
                report.outcome(id, certificates::delete_one(&app, &who, id).await)
            }
            BulkAction::Export => {
                let Some((_, single)) = export.as_ref() else {
                    return Err(impossible("export without its body").into());
                };
                match certificates::export_one(&app, &who, id, single).await {
                    Ok(f) => {
                        report.ok(id, None);
                        files.push((id.clone(), f));
                    }
                    Err(e) => report.failed(id, &e),
                }
            }
            BulkAction::Notifications => {
                return Err(impossible("notifications on certificates").into())
            }
        }
    }
    audit_bulk(&app, &who, "certificates.bulk", action, &selection, &report).await;
    if let Some((format, _)) = export {
        let bytes = zip(files, format, &report)?;
        return Ok(zip_response(bytes, "certificates.zip", &report));
    }
    Ok(axum::Json(report.json()).into_response())
}

/// `POST /managed/bulk`: delete, export or set notifications of up to 1,000 managed
/// certificates.
pub async fn managed(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<ManagedBulkBody>,
) -> ApiResult<Response> {
    who.require(Permission::Issue)?;
    let action: BulkAction = parse_field("action", &body.action)?;
    let chosen = one_selection(&body.ids, &body.filter)?;
    let mut export = None;
    match action {
        BulkAction::Delete => {
            unused("format", &body.format, action)?;
            unused("password", &body.password, action)?;
            unused("on", &body.on, action)?;
        }
        BulkAction::Export => {
            unused("on", &body.on, action)?;
            export = Some(export_body(&body.format, &body.password)?);
        }
        BulkAction::Notifications => {
            unused("format", &body.format, action)?;
            unused("password", &body.password, action)?;
            if body.on.is_none() {
                return Err(Error::invalid(
                    "on",
                    "is required for the notifications action (true or false)",
                )
                .into());
            }
        }
        BulkAction::Revoke | BulkAction::Renew => {
            return Err(Error::invalid(
                "action",
                "must be delete, export or notifications (managed certificates are not revoked or renewed here)",
            )
            .into())
        }
    }
    let (ids, selection) = match chosen {
        Selection::Ids(ids) => by_ids(ids)?,
        Selection::Filter(f) => (
            ra::bulk::managed_ids(&app, &who.tenant_id, &f.to_filter()?).await?,
            format!("filter=[{}]", f.describe()),
        ),
    };
    let mut report = Report::default();
    let mut files = Vec::new();
    for id in &ids {
        match action {
            BulkAction::Delete => report.outcome(id, managed::delete_one(&app, &who, id).await),
            BulkAction::Notifications => {
                let on = body.on.unwrap_or(true);
                report.outcome(id, managed::notifications_one(&app, &who, id, on).await)
            }
            BulkAction::Export => {
                let Some((_, single)) = export.as_ref() else {
                    return Err(impossible("export without its body").into());
                };
                match managed::export_one(&app, &who, id, single).await {
                    Ok(f) => {
                        report.ok(id, None);
                        files.push((id.clone(), f));
                    }
                    Err(e) => report.failed(id, &e),
                }
            }
            BulkAction::Revoke | BulkAction::Renew => {
                return Err(impossible("revoke or renew of managed certificates").into())
            }
        }
    }
    audit_bulk(&app, &who, "managed.bulk", action, &selection, &report).await;
    if let Some((format, _)) = export {
        let bytes = zip(files, format, &report)?;
        return Ok(zip_response(bytes, "managed.zip", &report));
    }
    Ok(axum::Json(report.json()).into_response())
}
