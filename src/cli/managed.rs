//! `vellum admin managed …` (certificates from any CA, kept with their key) and
//! `vellum admin convert` (format conversion through the server).

use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{AdminClient, CliError};
use super::output;

/// `vellum admin managed …`
#[derive(Debug, Subcommand)]
pub(crate) enum ManagedCmd {
    /// Upload a certificate issued by any CA, with its private key (PEM files) or the id of
    /// the CSR made here that it answers.
    Upload {
        /// Label in the inventory.
        #[arg(long)]
        name: String,
        /// The certificate (PEM file; further certificates in it count as chain).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM file; may be encrypted, then give --key-passphrase).
        #[arg(long, required_unless_present = "csr_id", conflicts_with = "csr_id")]
        key: Option<PathBuf>,
        /// The CSR made here (`vellum admin csr create`) the certificate answers: its key is
        /// used instead of --key.
        #[arg(long)]
        csr_id: Option<String>,
        /// Intermediate certificates, issuer first, optionally ending with the root (PEM file).
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Passphrase of an encrypted private key.
        #[arg(long)]
        key_passphrase: Option<String>,
        /// Tag as KEY=VALUE; repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List managed certificates.
    List {
        /// issued, expiring or expired.
        #[arg(long)]
        status: Option<String>,
        /// Search CN and SANs.
        #[arg(long)]
        q: Option<String>,
        /// KEY or KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        /// uploaded, synced or shared.
        #[arg(long)]
        source: Option<String>,
        /// Only certificates valid for more than a year (leakage risk).
        #[arg(long)]
        leakage_risk: bool,
        /// Page size (1-1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// The next_cursor of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one managed certificate.
    Show {
        /// The managed certificate's id.
        id: String,
        /// Print only the certificate (PEM).
        #[arg(long)]
        pem: bool,
    },
    /// Change tags, name or reminders of a managed certificate.
    Tag {
        /// The managed certificate's id.
        id: String,
        /// Tag as KEY=VALUE; repeatable; replaces all tags (give none with --clear).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        clear: bool,
        /// New label.
        #[arg(long)]
        name: Option<String>,
        /// Expiry reminders: on or off.
        #[arg(long, value_parser = ["on", "off"])]
        notifications: Option<String>,
    },
    /// Delete a managed certificate and its key (irreversible; a received share ends).
    Delete {
        /// The managed certificate's id.
        id: String,
    },
    /// Delete, export or set reminders of up to 1,000 managed certificates at once, named
    /// by --id or selected by the list's filters.
    Bulk {
        /// delete, export or notifications.
        #[arg(value_parser = ["delete", "export", "notifications"])]
        action: String,
        /// A managed certificate's id; repeatable (or select with the filter flags).
        #[arg(long = "id", conflicts_with_all = ["status", "q", "tag", "source", "leakage_risk", "all"])]
        ids: Vec<String>,
        #[command(flatten)]
        filter: ManagedFilterArgs,
        /// Select every managed certificate (at most 1,000; no other filter).
        #[arg(long)]
        all: bool,
        /// notifications: on or off.
        #[arg(long, value_parser = ["on", "off"])]
        notifications: Option<String>,
        /// export: pem-zip (one PEM per certificate) or pkcs12 (one .pfx each).
        #[arg(long)]
        format: Option<String>,
        /// export as pkcs12: the one password of every file.
        #[arg(long)]
        password: Option<String>,
        /// export: the zip file to write (default managed.zip; created 0600).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Download the managed list as CSV (streamed; the list's filters apply).
    Csv {
        #[command(flatten)]
        filter: ManagedFilterArgs,
        /// The CSV file to write (created 0600).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Share a managed certificate: always refused (uploaded and synced entries and
    /// received shares cannot be shared); use `vellum admin cert share` instead.
    Share {
        /// The managed certificate's id.
        id: String,
        /// The recipient tenant's id.
        #[arg(long)]
        tenant: String,
    },
    /// Download a managed certificate (and its key) into a file.
    Export {
        /// The managed certificate's id.
        id: String,
        #[command(flatten)]
        file: super::certs::ExportArgs,
    },
}

/// The managed list's filters, for `managed bulk` and `managed csv`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManagedFilterArgs {
    /// issued, expiring or expired.
    #[arg(long)]
    status: Option<String>,
    /// Search CN and SANs.
    #[arg(long)]
    q: Option<String>,
    /// KEY or KEY=VALUE.
    #[arg(long)]
    tag: Option<String>,
    /// uploaded, synced or shared.
    #[arg(long)]
    source: Option<String>,
    /// Only certificates valid for more than a year (leakage risk).
    #[arg(long)]
    leakage_risk: bool,
}

impl ManagedFilterArgs {
    fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("status", self.status.clone()),
            ("q", self.q.clone()),
            ("tag", self.tag.clone()),
            ("source", self.source.clone()),
            ("risk", self.leakage_risk.then(|| "leakage".to_string())),
        ]
    }
}

const MANAGED_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("COMMON NAME", "common_name"),
    ("NOT AFTER", "not_after"),
    ("SOURCE", "source"),
    ("LEAKAGE RISK", "leakage_risk"),
];

/// A file as text when it is text, else as base64 (so that the server recognises a DER,
/// PFX or JKS file and says how to convert it).
fn read_material(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
    })
}

fn tags_object(tags: &[String]) -> Result<Value, CliError> {
    let mut t = Map::new();
    for tag in tags {
        let (k, v) = tag
            .split_once('=')
            .ok_or_else(|| CliError(format!("--tag {tag:?}: use KEY=VALUE")))?;
        t.insert(k.into(), json!(v));
    }
    Ok(Value::Object(t))
}

/// Runs a managed-certificate command; returns what to print.
pub(crate) async fn run(
    client: &AdminClient,
    cmd: &ManagedCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body, table) = match cmd {
        ManagedCmd::Upload {
            name,
            cert,
            key,
            csr_id,
            chain,
            key_passphrase,
            tags,
        } => {
            let mut b = json!({
                "name": name,
                "certificate_pem": read_material(cert)?,
                "tags": tags_object(tags)?,
            });
            match (key, csr_id) {
                (Some(k), _) => b["private_key_pem"] = json!(read_material(k)?),
                (None, Some(id)) => b["csr_id"] = json!(id),
                (None, None) => {}
            }
            if let Some(c) = chain {
                b["chain_pem"] = json!(read_material(c)?);
            }
            if let Some(p) = key_passphrase {
                b["key_passphrase"] = json!(p);
            }
            (Method::POST, "/managed".to_string(), Some(b), None)
        }
        ManagedCmd::List {
            status,
            q,
            tag,
            source,
            leakage_risk,
            limit,
            cursor,
        } => (
            Method::GET,
            format!(
                "/managed{}",
                super::query(&[
                    ("status", status.clone()),
                    ("q", q.clone()),
                    ("tag", tag.clone()),
                    ("source", source.clone()),
                    ("risk", leakage_risk.then(|| "leakage".to_string())),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Some(MANAGED_COLUMNS),
        ),
        ManagedCmd::Show { id, .. } => (Method::GET, format!("/managed/{id}"), None, None),
        ManagedCmd::Tag {
            id,
            tags,
            clear,
            name,
            notifications,
        } => {
            let mut b = json!({});
            if *clear || !tags.is_empty() {
                b["tags"] = tags_object(tags)?;
            }
            if let Some(n) = name {
                b["name"] = json!(n);
            }
            if let Some(n) = notifications {
                b["notifications"] = json!(n == "on");
            }
            (Method::PATCH, format!("/managed/{id}"), Some(b), None)
        }
        ManagedCmd::Delete { id } => (Method::DELETE, format!("/managed/{id}"), None, None),
        ManagedCmd::Bulk {
            action,
            ids,
            filter,
            all,
            notifications,
            format,
            password,
            out,
        } => {
            let mut body = json!({"action": action});
            for (k, v) in [("format", format), ("password", password)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let Some(n) = notifications {
                body["on"] = json!(n == "on");
            } else if action == "notifications" {
                return Err(CliError(
                    "notifications: give --notifications on or off".into(),
                ));
            }
            let out = out.clone().unwrap_or_else(|| PathBuf::from("managed.zip"));
            let f = super::certs::filter_object(&filter.pairs());
            let body = super::certs::select(body, ids, f, *all)?;
            return super::certs::bulk(client, "/managed/bulk", body, &out, json_out).await;
        }
        ManagedCmd::Csv { filter, out } => {
            let path = format!("/managed.csv{}", super::query(&filter.pairs()));
            let n = client.download(Method::GET, &path, None, out).await?;
            return Ok(format!("wrote {} ({n} bytes)\n", out.display()));
        }
        ManagedCmd::Share { id, tenant } => (
            Method::POST,
            format!("/managed/{id}/share"),
            Some(json!({"tenant": tenant})),
            None,
        ),
        ManagedCmd::Export { id, file } => {
            return file
                .download(client, &format!("/managed/{id}/export"), id)
                .await
        }
    };
    let value = client.call(method, &path, body).await?;
    if let ManagedCmd::Show { pem: true, .. } = cmd {
        return value["certificate_pem"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError("no certificate in the answer".into()));
    }
    if json_out {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n");
    }
    Ok(match table {
        Some(cols) => output::items_table(&value, cols),
        None => output::object(&value),
    })
}

/// `vellum admin convert`: sends the file to `POST /tools/convert` and writes the answer.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn convert(
    client: &AdminClient,
    from: &str,
    to: &str,
    input: &Path,
    out: &Path,
    password: Option<&str>,
    new_password: Option<&str>,
    legacy: bool,
) -> Result<String, CliError> {
    let bytes = std::fs::read(input)
        .map_err(|e| CliError(format!("cannot read {}: {e}", input.display())))?;
    let mut body = json!({
        "input": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "from": from,
        "to": to,
        "legacy": legacy,
    });
    if let Some(p) = password {
        body["password"] = json!(p);
    }
    if let Some(p) = new_password {
        body["new_password"] = json!(p);
    }
    let result = client
        .call_bytes(Method::POST, "/tools/convert", Some(body))
        .await?;
    vellum_core::fsutil::write_private(out, &result).map_err(|e| CliError(e.to_string()))?;
    Ok(format!(
        "wrote {} ({} bytes)\n",
        out.display(),
        result.len()
    ))
}
