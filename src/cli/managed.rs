//! `vellum admin managed …` (certificates from any CA, kept with their key) and
//! `vellum admin convert` (format conversion through the server).

use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::certs::ext_for;
use super::client::{AdminClient, CliError};
use super::output;

/// `vellum admin managed …`
#[derive(Debug, Subcommand)]
pub(crate) enum ManagedCmd {
    /// Upload a certificate issued by any CA, with its private key (PEM files).
    Upload {
        /// Label in the inventory.
        #[arg(long)]
        name: String,
        /// The certificate (PEM file; further certificates in it count as chain).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM file; may be encrypted, then give --key-passphrase).
        #[arg(long)]
        key: PathBuf,
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
        /// pem, der, pkcs12, jks or pkcs8.
        #[arg(long, default_value = "pem")]
        format: String,
        /// Password (required for pkcs12 and jks; encrypts pkcs8).
        #[arg(long)]
        password: Option<String>,
        /// Leave the chain out.
        #[arg(long)]
        no_chain: bool,
        /// PKCS#12 with 3DES/SHA-1 for old Windows and Java 8.
        #[arg(long)]
        legacy: bool,
        /// Output file (default: <id>.<extension>).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
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
            chain,
            key_passphrase,
            tags,
        } => {
            let mut b = json!({
                "name": name,
                "certificate_pem": read_material(cert)?,
                "private_key_pem": read_material(key)?,
                "tags": tags_object(tags)?,
            });
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
        ManagedCmd::Share { id, tenant } => (
            Method::POST,
            format!("/managed/{id}/share"),
            Some(json!({"tenant": tenant})),
            None,
        ),
        ManagedCmd::Export {
            id,
            format,
            password,
            no_chain,
            legacy,
            out,
        } => {
            let mut body = json!({"format": format, "include_chain": !no_chain, "legacy": legacy});
            if let Some(p) = password {
                body["password"] = json!(p);
            }
            let bytes = client
                .call_bytes(Method::POST, &format!("/managed/{id}/export"), Some(body))
                .await?;
            let out = out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{id}.{}", ext_for(format))));
            vellum_core::fsutil::write_private(&out, &bytes)
                .map_err(|e| CliError(e.to_string()))?;
            return Ok(format!("wrote {} ({} bytes)\n", out.display(), bytes.len()));
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
