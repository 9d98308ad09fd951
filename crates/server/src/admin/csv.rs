//! `GET /certificates.csv`, `GET /managed.csv` and `GET /audit.csv`: the lists as CSV,
//! streamed with flat memory. A task pages through the store by keyset, [`CHUNK_ROWS`] rows at a time, each
//! chunk on a reader connection acquired for that chunk only (no connection is held for
//! the whole download; SQLite writers are never blocked), and sends each encoded chunk
//! through a bounded channel into the response body. When the client goes away the body
//! (and the channel's receiver) is dropped, the next send fails and the task stops.
//!
//! Every cell that a spreadsheet would read as a formula (starting with `=`, `+`, `-`,
//! `@`, tab or carriage return) gets a leading `'`, as OWASP advises against CSV
//! injection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::audit::{self, record_detail};
use super::auth::{Permission, Principal};
use super::json::{rfc3339, Query};
use super::{certificates, managed};
use crate::problem::ApiResult;
use crate::App;
use store::audit::AuditEvent;
use store::certificates::CertRow;
use store::managed::ManagedRow;
use vellum_core::error::{Error, Result};

/// Rows read per chunk (and per reader connection acquisition).
pub const CHUNK_ROWS: i64 = 1000;
/// Encoded chunks buffered between the reading task and the client.
const CHANNEL_CHUNKS: usize = 2;

/// Header of `GET /certificates.csv`.
pub const CERTIFICATE_COLUMNS: &[&str] = &[
    "id",
    "name",
    "common_name",
    "sans",
    "status",
    "type",
    "ca_id",
    "source",
    "serial",
    "key_algorithm",
    "not_before",
    "not_after",
    "leakage_risk",
    "tags",
];

/// Header of `GET /managed.csv`.
pub const MANAGED_COLUMNS: &[&str] = &[
    "id",
    "name",
    "common_name",
    "sans",
    "status",
    "source",
    "issuer",
    "serial",
    "key_algorithm",
    "not_before",
    "not_after",
    "leakage_risk",
    "tags",
    "notifications",
];

/// Header of `GET /audit.csv`.
pub const AUDIT_COLUMNS: &[&str] = &[
    "id",
    "at",
    "action",
    "outcome",
    "actor",
    "actor_name",
    "target",
    "source_ip",
    "detail",
];

/// `cell` made safe for spreadsheets: a leading `'` when it would start a formula.
pub fn guard(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// SAN values joined by spaces (from the stored `[{"type","value"}]`).
fn sans(json: &str) -> String {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["value"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Tags as `k=v;k2=v2` (keys in order).
fn tags(json: &str) -> String {
    let m: BTreeMap<String, String> = serde_json::from_str(json).unwrap_or_default();
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn certificate_record(c: &CertRow, now: i64) -> Vec<String> {
    vec![
        c.id.clone(),
        c.name.clone().unwrap_or_default(),
        c.common_name.clone(),
        sans(&c.sans_json),
        c.status(now).to_string(),
        c.cert_type.to_string(),
        c.ca_id.clone().unwrap_or_default(),
        c.source.to_string(),
        c.serial.clone(),
        c.key_algorithm.clone(),
        rfc3339(c.not_before),
        rfc3339(c.not_after),
        c.leakage_risk.to_string(),
        tags(&c.tags_json),
    ]
}

fn managed_record(m: &ManagedRow, now: i64) -> Vec<String> {
    vec![
        m.id.clone(),
        m.name.clone(),
        m.common_name.clone(),
        sans(&m.sans_json),
        m.status(now).to_string(),
        m.source.to_string(),
        m.issuer.clone(),
        m.serial.clone(),
        m.key_algorithm.clone(),
        rfc3339(m.not_before),
        rfc3339(m.not_after),
        m.leakage_risk.to_string(),
        tags(&m.tags_json),
        m.notifications.to_string(),
    ]
}

/// An audit event with its id as text (the stream's keyset cursor).
struct AuditRow(String, AuditEvent);

fn audit_record(r: &AuditRow, _now: i64) -> Vec<String> {
    let e = &r.1;
    vec![
        r.0.clone(),
        rfc3339(e.at),
        e.action.clone(),
        e.outcome.as_str().to_string(),
        e.actor.clone().unwrap_or_default(),
        e.actor_name.clone().unwrap_or_default(),
        e.target.clone().unwrap_or_default(),
        e.source_ip.clone().unwrap_or_default(),
        e.detail.clone().unwrap_or_default(),
    ]
}

/// Encodes records as CSV lines, each cell guarded.
fn encode(records: impl Iterator<Item = Vec<String>>, capacity: usize) -> Bytes {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(capacity));
    for r in records {
        // Writing into a Vec cannot fail.
        let _ = w.write_record(r.iter().map(|c| guard(c).into_owned()));
    }
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// Audits the download once as `action` with the filter's description (never the rows),
/// then streams `header` and the rows `fetch(after)` returns page after page (keyset:
/// each page after the previous page's last id) until a short page.
#[allow(clippy::too_many_arguments)]
async fn audited_stream<R, F, Fut>(
    app: &App,
    who: &Principal,
    action: &str,
    filter_described: &str,
    filename: &str,
    header: &'static [&'static str],
    mut fetch: F,
    id: fn(&R) -> &str,
    record: fn(&R, i64) -> Vec<String>,
    now: i64,
) -> Response
where
    R: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<R>>> + Send,
{
    let ok: Result<()> = Ok(());
    record_detail(app, who, action, None, &ok, Some(filter_described)).await;
    let (tx, rx) =
        tokio::sync::mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(CHANNEL_CHUNKS);
    tokio::spawn(async move {
        let head = encode(
            std::iter::once(header.iter().map(|h| h.to_string()).collect()),
            256,
        );
        if tx.send(Ok(head)).await.is_err() {
            return;
        }
        let mut after: Option<String> = None;
        loop {
            let rows = match fetch(after.take()).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "CSV export stopped: reading the inventory failed");
                    let _ = tx
                        .send(Err(std::io::Error::other("reading the inventory failed")))
                        .await;
                    return;
                }
            };
            let full = rows.len() as i64 == CHUNK_ROWS;
            after = rows.last().map(|r| id(r).to_string());
            let bytes = encode(rows.iter().map(|r| record(r, now)), rows.len() * 256);
            drop(rows);
            if tx.send(Ok(bytes)).await.is_err() {
                return; // the client went away
            }
            if !full {
                return;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    super::export::attachment(body, "text/csv; charset=utf-8", filename)
}

/// `GET /certificates.csv?ca_id=&status=&type=&q=&tag=&source=&risk=`: every
/// certificate the list would show, as CSV (audited once as `certificates.export_csv`).
pub async fn certificates(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<certificates::FilterQuery>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let mut filter = q.to_filter()?;
    filter.limit = CHUNK_ROWS;
    let now = app.now();
    let store = app.store.clone();
    let tenant = who.tenant_id.clone();
    let fetch = move |after: Option<String>| {
        let store = store.clone();
        let tenant = tenant.clone();
        let mut f = filter.clone();
        f.after = after;
        async move {
            let mut conn = store.reader().acquire().await?;
            store::certificates::list_rows(&mut conn, &tenant, &f, now).await
        }
    };
    Ok(audited_stream(
        &app,
        &who,
        "certificates.export_csv",
        &q.describe(),
        "certificates.csv",
        CERTIFICATE_COLUMNS,
        fetch,
        |r: &CertRow| &r.id,
        certificate_record,
        now,
    )
    .await)
}

/// `GET /managed.csv?status=&q=&tag=&source=&risk=`: every managed certificate the list
/// would show, as CSV (audited once as `managed.export_csv`).
pub async fn managed(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<managed::FilterQuery>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let mut filter = q.to_filter()?;
    filter.limit = CHUNK_ROWS;
    let now = app.now();
    let store = app.store.clone();
    let tenant = who.tenant_id.clone();
    let fetch = move |after: Option<String>| {
        let store = store.clone();
        let tenant = tenant.clone();
        let mut f = filter.clone();
        f.after = after;
        async move {
            let mut conn = store.reader().acquire().await?;
            store::managed::list(&mut conn, &tenant, &f, now).await
        }
    };
    Ok(audited_stream(
        &app,
        &who,
        "managed.export_csv",
        &q.describe(),
        "managed.csv",
        MANAGED_COLUMNS,
        fetch,
        |r: &ManagedRow| &r.id,
        managed_record,
        now,
    )
    .await)
}

/// `GET /audit.csv?action=&target=&actor=&since=&until=`: every event `GET /audit` would
/// list for these filters, newest first, as CSV (audited once as `audit.export_csv`).
/// No `limit`/`cursor` (422 `field: limit`): the file holds them all.
pub async fn audit(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(q): Query<audit::AuditQuery>,
) -> ApiResult<Response> {
    who.require(Permission::Audit)?;
    if q.pages() {
        return Err(Error::invalid(
            "limit",
            "the CSV holds every event the filters select: drop limit and cursor",
        )
        .into());
    }
    let mut filter = q.to_filter()?;
    filter.limit = CHUNK_ROWS;
    let store = app.store.clone();
    let tenant = who.tenant_id.clone();
    let fetch = move |after: Option<String>| {
        let store = store.clone();
        let tenant = tenant.clone();
        let mut f = filter.clone();
        // Newest first: each chunk continues below the previous chunk's last id.
        f.before_id = after.and_then(|a| a.parse().ok());
        async move {
            let mut conn = store.reader().acquire().await?;
            let rows = store::audit::list(&mut conn, &tenant, &f).await?;
            Ok(rows
                .into_iter()
                .map(|e| AuditRow(e.id.to_string(), e))
                .collect())
        }
    };
    Ok(audited_stream(
        &app,
        &who,
        "audit.export_csv",
        &q.describe(),
        "audit.csv",
        AUDIT_COLUMNS,
        fetch,
        |r: &AuditRow| &r.0,
        audit_record,
        app.now(),
    )
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_quoted_and_others_untouched() {
        assert_eq!(guard("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for c in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(guard(c).starts_with('\''), "{c:?}");
        }
        assert_eq!(guard("web.example"), "web.example");
        assert_eq!(guard(""), "");
    }

    #[test]
    fn sans_and_tags_are_flattened() {
        assert_eq!(
            sans(r#"[{"type":"dns","value":"a.example"},{"type":"ip","value":"10.0.0.1"}]"#),
            "a.example 10.0.0.1"
        );
        assert_eq!(tags(r#"{"env":"prod","app":"web"}"#), "app=web;env=prod");
    }
}
