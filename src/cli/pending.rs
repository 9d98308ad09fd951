//! `vellum admin pending …`: the pending items of the tenant (`GET /pending`) and the
//! calling token's snoozes of their reminders.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{AdminClient, CliError};
use super::{output, query};

/// `vellum admin pending [snooze|unsnooze]`
#[derive(Debug, Args)]
pub(crate) struct PendingArgs {
    #[command(subcommand)]
    pub command: Option<PendingCmd>,
}

/// Snoozes of the reminder (without one: list the pending items).
#[derive(Debug, Subcommand)]
pub(crate) enum PendingCmd {
    /// Do not remind this token of a kind of pending item for a few days (the counts
    /// stay).
    Snooze {
        /// expiring, expired, notifications_off, quota_low, service_ending,
        /// pending_enable, refundable, or all.
        kind: String,
        /// Days (1–30, default 7).
        #[arg(long)]
        days: Option<i64>,
    },
    /// Lift this token's snooze of a kind (default: of every kind).
    Unsnooze {
        /// The kind to remind of again (default: all).
        kind: Option<String>,
    },
}

/// Runs a pending command; returns what to print.
pub(crate) async fn run(
    client: &AdminClient,
    args: &PendingArgs,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body) = match &args.command {
        None => (Method::GET, "/pending".to_string(), None),
        Some(PendingCmd::Snooze { kind, days }) => {
            let mut b = json!({"kind": kind});
            if let Some(d) = days {
                b["days"] = json!(d);
            }
            (Method::POST, "/pending/snooze".to_string(), Some(b))
        }
        Some(PendingCmd::Unsnooze { kind }) => (
            Method::DELETE,
            format!("/pending/snooze{}", query(&[("kind", kind.clone())])),
            None,
        ),
    };
    let value = client.call(method, &path, body).await?;
    if json_out {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n");
    }
    Ok(match &args.command {
        None => render(&value),
        Some(_) => output::object(&value),
    })
}

/// The pending items as text: one line per kind, then the first items of each kind that
/// has some.
pub(crate) fn render(v: &Value) -> String {
    let kinds = v["kinds"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "remind: {}  total: {}\n\n",
        if v["remind"] == true { "yes" } else { "no" },
        output::cell(&v["total"])
    );
    let rows: Vec<Vec<String>> = kinds
        .iter()
        .map(|k| {
            vec![
                output::cell(&k["kind"]),
                output::cell(&k["count"]),
                output::cell(&k["snoozed_until"]),
                output::cell(&k["action"]),
            ]
        })
        .collect();
    out.push_str(&output::table(
        &["KIND", "COUNT", "SNOOZED UNTIL", "ACTION"],
        &rows,
    ));
    for k in &kinds {
        let items = k["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            continue;
        }
        let count = k["count"].as_i64().unwrap_or(0);
        let shown = if count > items.len() as i64 {
            format!(" (first {} of {count})", items.len())
        } else {
            String::new()
        };
        out.push_str(&format!("\n{}{shown}:\n", output::cell(&k["kind"])));
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                ["type", "id", "name", "not_after", "detail"]
                    .iter()
                    .map(|f| output::cell(&i[*f]))
                    .collect()
            })
            .collect();
        out.push_str(&output::table(
            &["TYPE", "ID", "NAME", "NOT AFTER", "DETAIL"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_then_their_first_items() {
        let v = json!({
            "remind": true,
            "total": 21,
            "kinds": [
                {"kind": "expiring", "count": 21, "snoozed_until": null,
                 "action": "POST /admin/v1/certificates/{id}/renew",
                 "items": [{"id": "c1", "type": "certificate", "name": "a.example",
                            "not_after": "2026-02-01T00:00:00Z", "detail": "expires in 3 days"}]},
                {"kind": "refundable", "count": 0, "snoozed_until": "2026-02-08T00:00:00Z",
                 "action": "POST /admin/v1/cas/{id}/refund", "items": []},
            ]
        });
        let text = render(&v);
        assert!(text.starts_with("remind: yes  total: 21\n"), "{text}");
        assert!(
            text.contains("refundable  0      2026-02-08T00:00:00Z"),
            "{text}"
        );
        assert!(text.contains("expiring (first 1 of 21):"), "{text}");
        assert!(text.contains("certificate  c1  a.example"), "{text}");
        assert!(!text.contains("refundable:"), "{text}");
    }
}
