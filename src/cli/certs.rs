//! `vellum admin cert …`: apply, list, show, export (writes files), revoke, delete, renew,
//! bulk (by ids or filters) and csv (the list streamed into a file).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{AdminClient, CliError};
use super::output;

/// `vellum admin cert …`
#[derive(Debug, Subcommand)]
pub(crate) enum CertCmd {
    /// Apply for a certificate from an intermediate CA.
    Apply {
        /// Issuing intermediate CA id.
        #[arg(long)]
        ca: String,
        /// server or client.
        #[arg(long = "type", default_value = "server")]
        cert_type: String,
        /// Common name.
        #[arg(long)]
        cn: Option<String>,
        /// Subject alternative name as TYPE:VALUE (dns, ip, email, uri); repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: i64,
        /// Key the server generates (default ec-p256); or give --csr.
        #[arg(long, conflicts_with = "csr")]
        key_algorithm: Option<String>,
        /// PKCS#10 request (PEM file) holding your own public key.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Organization (O).
        #[arg(long)]
        org: Option<String>,
        /// Organizational unit (OU).
        #[arg(long)]
        ou: Option<String>,
        /// Two-letter country code (C).
        #[arg(long)]
        country: Option<String>,
        /// State or province (ST).
        #[arg(long)]
        state: Option<String>,
        /// Locality (L).
        #[arg(long)]
        locality: Option<String>,
        /// Label in the inventory.
        #[arg(long)]
        name: Option<String>,
        /// Tag as KEY=VALUE; repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Leave the CRL distribution point out.
        #[arg(long)]
        no_crl: bool,
    },
    /// List certificates.
    List {
        /// Only certificates of this intermediate CA.
        #[arg(long)]
        ca: Option<String>,
        /// issued, expiring, expired or revoked.
        #[arg(long)]
        status: Option<String>,
        /// server or client.
        #[arg(long = "type")]
        cert_type: Option<String>,
        /// Search CN and SANs.
        #[arg(long)]
        q: Option<String>,
        /// KEY or KEY=VALUE.
        #[arg(long)]
        tag: Option<String>,
        /// The door that issued them: private_ca, acme, est or system.
        #[arg(long)]
        source: Option<String>,
        /// Most certificates to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this certificate (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one certificate.
    Show {
        /// The certificate's id.
        id: String,
        /// Print only the certificate (PEM).
        #[arg(long)]
        pem: bool,
    },
    /// Download a certificate (and its key, when the server holds it) into a file.
    Export {
        /// The certificate's id.
        id: String,
        #[command(flatten)]
        file: ExportArgs,
    },
    /// Revoke a certificate (irreversible).
    Revoke {
        /// The certificate's id.
        id: String,
        /// RFC 5280 reason, e.g. keyCompromise.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a revoked or expired certificate from the inventory.
    Delete {
        /// The certificate's id.
        id: String,
    },
    /// Revoke, renew, delete or export up to 1,000 certificates at once, named by --id or
    /// selected by the list's filters.
    Bulk {
        /// revoke, renew, delete or export.
        #[arg(value_parser = ["revoke", "renew", "delete", "export"])]
        action: String,
        /// A certificate's id; repeatable (or select with the filter flags).
        #[arg(long = "id", conflicts_with_all = ["ca", "status", "cert_type", "q", "tag", "source", "leakage_risk", "all"])]
        ids: Vec<String>,
        #[command(flatten)]
        filter: CertFilterArgs,
        /// Select every certificate (at most 1,000; no other filter).
        #[arg(long)]
        all: bool,
        /// revoke: RFC 5280 reason, e.g. keyCompromise.
        #[arg(long)]
        reason: Option<String>,
        /// renew: renew certificates that are not about to expire too.
        #[arg(long)]
        force: bool,
        /// export: pem-zip (one PEM per certificate) or pkcs12 (one .pfx each).
        #[arg(long)]
        format: Option<String>,
        /// export as pkcs12: the one password of every file.
        #[arg(long)]
        password: Option<String>,
        /// export: the zip file to write (default certificates.zip; created 0600).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Download the certificate list as CSV (streamed; the list's filters apply).
    Csv {
        #[command(flatten)]
        filter: CertFilterArgs,
        /// The CSV file to write (created 0600).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Renew: a new certificate with the same specification.
    Renew {
        /// The certificate's id.
        id: String,
        /// Renew even if it is not about to expire.
        #[arg(long)]
        force: bool,
    },
    /// Copy certificates a CA issued into the managed list (source synced); again is a no-op.
    Sync {
        /// The issuing intermediate CA (or a root: its intermediates' certificates).
        #[arg(long)]
        ca: String,
        /// A certificate to sync; repeatable.
        #[arg(long = "id", required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Sync every certificate the CA issued (revoked and deleted ones are skipped).
        #[arg(long)]
        all: bool,
    },
    /// Share a certificate (without its key) with another tenant of the same entity.
    Share {
        /// The certificate's id.
        id: String,
        /// The recipient tenant's id.
        #[arg(long)]
        tenant: String,
    },
    /// Withdraw the share of a certificate (the recipient's copy disappears).
    Unshare {
        /// The certificate's id.
        id: String,
    },
}

/// The certificate list's filters, for `cert bulk` and `cert csv`.
#[derive(Debug, clap::Args)]
pub(crate) struct CertFilterArgs {
    /// Only certificates of this intermediate CA.
    #[arg(long)]
    ca: Option<String>,
    /// issued, expiring, expired or revoked.
    #[arg(long)]
    status: Option<String>,
    /// server or client.
    #[arg(long = "type")]
    cert_type: Option<String>,
    /// Search CN and SANs.
    #[arg(long)]
    q: Option<String>,
    /// KEY or KEY=VALUE.
    #[arg(long)]
    tag: Option<String>,
    /// The door that issued them: private_ca, acme, est or system.
    #[arg(long)]
    source: Option<String>,
    /// Only certificates valid for more than a year (leakage risk).
    #[arg(long)]
    leakage_risk: bool,
}

impl CertFilterArgs {
    fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("ca_id", self.ca.clone()),
            ("status", self.status.clone()),
            ("type", self.cert_type.clone()),
            ("q", self.q.clone()),
            ("tag", self.tag.clone()),
            ("source", self.source.clone()),
            ("risk", self.leakage_risk.then(|| "leakage".to_string())),
        ]
    }
}

/// The filter object of a bulk body from `(key, value)` pairs (given ones only).
pub(crate) fn filter_object(pairs: &[(&str, Option<String>)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), json!(v))))
            .collect(),
    )
}

/// `body` with its selection: `ids`, else the filter (`all` allows an empty one).
pub(crate) fn select(
    mut body: Value,
    ids: &[String],
    filter: Value,
    all: bool,
) -> Result<Value, CliError> {
    let has_filter = filter.as_object().is_some_and(|m| !m.is_empty());
    if !ids.is_empty() {
        body["ids"] = json!(ids);
    } else if has_filter || all {
        body["filter"] = filter;
    } else {
        return Err(CliError(
            "name the certificates with --id, select them with a filter flag, or pass --all".into(),
        ));
    }
    Ok(body)
}

/// Runs a bulk call: an export is written to `out`, anything else answers the per-item
/// report.
pub(crate) async fn bulk(
    client: &AdminClient,
    path: &str,
    body: Value,
    out: &Path,
    json_out: bool,
) -> Result<String, CliError> {
    if body["action"] == "export" {
        let n = client.download(Method::POST, path, Some(body), out).await?;
        return Ok(format!(
            "wrote {} ({n} bytes; manifest.json inside lists each result)\n",
            out.display()
        ));
    }
    let value = client.call(Method::POST, path, Some(body)).await?;
    if json_out {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n");
    }
    let mut text = format!(
        "succeeded: {}, failed: {}\n",
        value["succeeded"], value["failed"]
    );
    for r in value["results"].as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or_default();
        if r["ok"] == true {
            match r["certificate_id"].as_str() {
                Some(new) => text.push_str(&format!("ok      {id} -> {new}\n")),
                None => text.push_str(&format!("ok      {id}\n")),
            }
        } else {
            text.push_str(&format!(
                "failed  {id}: {} {}\n",
                r["status"],
                r["error"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(text)
}

const CERT_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("COMMON NAME", "common_name"),
    ("SERIAL", "serial"),
    ("NOT AFTER", "not_after"),
    ("SOURCE", "source"),
];

pub(crate) fn parse_san(s: &str) -> Result<Value, CliError> {
    let (kind, value) = s.split_once(':').ok_or_else(|| {
        CliError(format!(
            "--san {s:?}: use TYPE:VALUE, e.g. dns:www.example.com"
        ))
    })?;
    Ok(json!({"type": kind, "value": value}))
}

/// How `cert export` and `managed export` ask for their file.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
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
}

impl ExportArgs {
    /// POSTs the export to `path` and writes the file (0600: it may hold a key).
    pub(crate) async fn download(
        &self,
        client: &AdminClient,
        path: &str,
        id: &str,
    ) -> Result<String, CliError> {
        let mut body = json!({"format": self.format, "include_chain": !self.no_chain,
                              "legacy": self.legacy});
        if let Some(p) = &self.password {
            body["password"] = json!(p);
        }
        let bytes = client.call_bytes(Method::POST, path, Some(body)).await?;
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{id}.{}", ext_for(&self.format))));
        vellum_core::fsutil::write_private(&out, &bytes).map_err(|e| CliError(e.to_string()))?;
        Ok(format!("wrote {} ({} bytes)\n", out.display(), bytes.len()))
    }
}

/// The file extension of an export format.
pub(crate) fn ext_for(format: &str) -> &'static str {
    match format {
        "der" => "cer",
        "pkcs12" | "pfx" => "p12",
        "jks" => "jks",
        "pkcs8" => "key",
        _ => "pem",
    }
}

/// Runs a certificate command; returns what to print.
pub(crate) async fn run(
    client: &AdminClient,
    cmd: &CertCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body, table) = match cmd {
        CertCmd::Apply {
            ca,
            cert_type,
            cn,
            sans,
            days,
            key_algorithm,
            csr,
            org,
            ou,
            country,
            state,
            locality,
            name,
            tags,
            no_crl,
        } => {
            let mut m = Map::new();
            m.insert("type".into(), json!(cert_type));
            m.insert("common_name".into(), json!(cn.clone().unwrap_or_default()));
            m.insert(
                "sans".into(),
                Value::Array(
                    sans.iter()
                        .map(|s| parse_san(s))
                        .collect::<Result<_, _>>()?,
                ),
            );
            m.insert("validity_days".into(), json!(days));
            m.insert("include_crl".into(), json!(!no_crl));
            for (k, v) in [
                ("key_algorithm", key_algorithm),
                ("organization", org),
                ("organizational_unit", ou),
                ("country", country),
                ("state", state),
                ("locality", locality),
                ("name", name),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), json!(v));
                }
            }
            if let Some(path) = csr {
                let pem = super::client::read_pem_file(path, "--csr")?;
                m.insert("csr_pem".into(), json!(pem));
            }
            let mut t = Map::new();
            for tag in tags {
                let (k, v) = tag
                    .split_once('=')
                    .ok_or_else(|| CliError(format!("--tag {tag:?}: use KEY=VALUE")))?;
                t.insert(k.into(), json!(v));
            }
            m.insert("tags".into(), Value::Object(t));
            (
                Method::POST,
                format!("/cas/{ca}/certificates"),
                Some(Value::Object(m)),
                None,
            )
        }
        CertCmd::List {
            ca,
            status,
            cert_type,
            q,
            tag,
            source,
            limit,
            cursor,
        } => (
            Method::GET,
            format!(
                "/certificates{}",
                super::query(&[
                    ("ca_id", ca.clone()),
                    ("status", status.clone()),
                    ("type", cert_type.clone()),
                    ("q", q.clone()),
                    ("tag", tag.clone()),
                    ("source", source.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Some(CERT_COLUMNS),
        ),
        CertCmd::Show { id, .. } => (Method::GET, format!("/certificates/{id}"), None, None),
        CertCmd::Export { id, file } => {
            return file
                .download(client, &format!("/certificates/{id}/export"), id)
                .await
        }
        CertCmd::Bulk {
            action,
            ids,
            filter,
            all,
            reason,
            force,
            format,
            password,
            out,
        } => {
            let mut body = json!({"action": action});
            for (k, v) in [
                ("reason", reason),
                ("format", format),
                ("password", password),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if *force {
                body["force"] = json!(true);
            }
            let out = out
                .clone()
                .unwrap_or_else(|| PathBuf::from("certificates.zip"));
            let body = select(body, ids, filter_object(&filter.pairs()), *all)?;
            return bulk(client, "/certificates/bulk", body, &out, json_out).await;
        }
        CertCmd::Csv { filter, out } => {
            let path = format!("/certificates.csv{}", super::query(&filter.pairs()));
            let n = client.download(Method::GET, &path, None, out).await?;
            return Ok(format!("wrote {} ({n} bytes)\n", out.display()));
        }
        CertCmd::Revoke { id, reason } => {
            let body = match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            };
            (
                Method::POST,
                format!("/certificates/{id}/revoke"),
                Some(body),
                None,
            )
        }
        CertCmd::Delete { id } => (Method::DELETE, format!("/certificates/{id}"), None, None),
        CertCmd::Renew { id, force } => (
            Method::POST,
            format!("/certificates/{id}/renew"),
            Some(json!({"force": force})),
            None,
        ),
        CertCmd::Sync { ca, ids, all } => {
            let body = if *all {
                json!({"all": true})
            } else {
                json!({"certificate_ids": ids})
            };
            (
                Method::POST,
                format!("/cas/{ca}/certificates/sync"),
                Some(body),
                None,
            )
        }
        CertCmd::Share { id, tenant } => (
            Method::POST,
            format!("/certificates/{id}/share"),
            Some(json!({"tenant": tenant})),
            None,
        ),
        CertCmd::Unshare { id } => (
            Method::DELETE,
            format!("/certificates/{id}/share"),
            None,
            None,
        ),
    };
    let value = client.call(method, &path, body).await?;
    if let CertCmd::Show { pem: true, .. } = cmd {
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
