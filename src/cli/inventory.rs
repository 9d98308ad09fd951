//! `vellum admin inventory …`: the inventory calls of issue 13 — quota set, tags of
//! certificates and CAs, lists filtered by tag and leakage risk, CA service renewal.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{AdminClient, CliError};
use super::{output, query};

/// `vellum admin inventory …`
#[derive(Debug, Subcommand)]
pub(crate) enum InventoryCmd {
    /// Set an intermediate's remaining quota (lowering it returns the difference to the
    /// root, raising it takes it from the root).
    SetQuota {
        /// Root CA id.
        root: String,
        /// Intermediate CA id.
        #[arg(long)]
        intermediate: String,
        /// The remaining quota it gets.
        #[arg(long)]
        remaining: i64,
    },
    /// Replace a certificate's tags (no --tag: remove them all).
    CertTags {
        /// Certificate id.
        id: String,
        /// Tag as KEY=VALUE; repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Replace a CA's tags (no --tag: remove them all).
    CaTags {
        /// CA id.
        id: String,
        /// Tag as KEY=VALUE; repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List CAs carrying a tag.
    Cas {
        /// KEY or KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        /// root or intermediate.
        #[arg(long)]
        kind: Option<String>,
        /// Most items to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this item (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// List certificates by tag and risk.
    Certs {
        /// KEY or KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        /// `leakage`: only certificates valid for more than a year.
        #[arg(long)]
        risk: Option<String>,
        /// Most items to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this item (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Buy more service months for a root CA (its intermediates follow).
    RenewService {
        /// Root CA id.
        id: String,
        /// Calendar months to add.
        #[arg(long)]
        months: i64,
    },
}

fn tags_body(tags: &[String]) -> Result<Value, CliError> {
    let mut m = Map::new();
    for t in tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| CliError(format!("--tag {t:?}: use KEY=VALUE, e.g. env=prod")))?;
        m.insert(k.to_string(), json!(v));
    }
    Ok(json!({"tags": m}))
}

/// Runs an inventory command; returns what to print.
pub(crate) async fn run(
    client: &AdminClient,
    cmd: &InventoryCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body, table): (_, _, _, Option<&[(&str, &str)]>) = match cmd {
        InventoryCmd::SetQuota {
            root,
            intermediate,
            remaining,
        } => (
            Method::POST,
            format!("/cas/{root}/quota/assign"),
            Some(json!({"intermediate_id": intermediate, "remaining": remaining})),
            None,
        ),
        InventoryCmd::CertTags { id, tags } => (
            Method::PATCH,
            format!("/certificates/{id}"),
            Some(tags_body(tags)?),
            None,
        ),
        InventoryCmd::CaTags { id, tags } => (
            Method::PATCH,
            format!("/cas/{id}"),
            Some(tags_body(tags)?),
            None,
        ),
        InventoryCmd::Cas {
            tag,
            kind,
            limit,
            cursor,
        } => (
            Method::GET,
            format!(
                "/cas{}",
                query(&[
                    ("tag", tag.clone()),
                    ("kind", kind.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Some(&[
                ("ID", "id"),
                ("KIND", "kind"),
                ("STATUS", "status"),
                ("COMMON NAME", "common_name"),
                ("SERVICE UNTIL", "service_until"),
                ("SERVICE EXPIRED", "service_expired"),
                ("TAGS", "tags"),
            ]),
        ),
        InventoryCmd::Certs {
            tag,
            risk,
            limit,
            cursor,
        } => (
            Method::GET,
            format!(
                "/certificates{}",
                query(&[
                    ("tag", tag.clone()),
                    ("risk", risk.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Some(&[
                ("ID", "id"),
                ("STATUS", "status"),
                ("COMMON NAME", "common_name"),
                ("NOT AFTER", "not_after"),
                ("LEAKAGE RISK", "leakage_risk"),
                ("TAGS", "tags"),
            ]),
        ),
        InventoryCmd::RenewService { id, months } => (
            Method::POST,
            format!("/cas/{id}/service/renew"),
            Some(json!({"months": months})),
            None,
        ),
    };
    let value = client.call(method, &path, body).await?;
    if json_out {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n");
    }
    Ok(match table {
        Some(cols) => output::items_table(&value, cols),
        None => output::object(&value),
    })
}
