//! `vellum admin csr …`: CSRs made on the server (the key is generated and kept there) to
//! take to another CA; the certificate that comes back is uploaded with
//! `vellum admin managed upload --csr-id ID`.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{AdminClient, CliError};
use super::{certs, output, query};

/// `vellum admin csr …`
#[derive(Debug, Subcommand)]
pub(crate) enum CsrCmd {
    /// Generate a key on the server and a PKCS#10 CSR for it.
    Create {
        /// Subject common name (may be empty when --san is given).
        #[arg(long, default_value = "")]
        cn: String,
        /// Subject alternative name as TYPE:VALUE (dns:, ip:, email:, uri:); repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// `server` (DNS names, IPs; the default) or `client` (e-mail, URIs).
        #[arg(long = "type")]
        cert_type: Option<String>,
        /// Key algorithm: ec-p256 (default), ec-p384, ed25519, rsa-2048, rsa-3072, rsa-4096.
        #[arg(long)]
        key_algorithm: Option<String>,
        /// Subject organization (O).
        #[arg(long)]
        organization: Option<String>,
        /// Subject organizational unit (OU).
        #[arg(long)]
        organizational_unit: Option<String>,
        /// Subject locality (L).
        #[arg(long)]
        locality: Option<String>,
        /// Subject state or province (ST).
        #[arg(long)]
        state: Option<String>,
        /// Subject country (C), two letters.
        #[arg(long)]
        country: Option<String>,
        /// Also write the CSR (PEM) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the CSRs made here.
    List {
        /// Most items to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this item (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one CSR (with its PEM).
    Show {
        /// CSR id.
        id: String,
        /// Also write the CSR (PEM) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete a CSR and its key (irreversible).
    Delete {
        /// CSR id.
        id: String,
    },
}

/// Runs a CSR command; returns what to print.
pub(crate) async fn run(
    client: &AdminClient,
    cmd: &CsrCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body, out) = match cmd {
        CsrCmd::Create {
            cn,
            sans,
            cert_type,
            key_algorithm,
            organization,
            organizational_unit,
            locality,
            state,
            country,
            out,
        } => {
            let sans = sans
                .iter()
                .map(|s| certs::parse_san(s))
                .collect::<Result<Vec<_>, _>>()?;
            let mut b = json!({"common_name": cn, "sans": sans});
            for (k, v) in [
                ("type", cert_type),
                ("key_algorithm", key_algorithm),
                ("organization", organization),
                ("organizational_unit", organizational_unit),
                ("locality", locality),
                ("state", state),
                ("country", country),
            ] {
                if let Some(v) = v {
                    b[k] = json!(v);
                }
            }
            (Method::POST, "/csrs".to_string(), Some(b), out.as_ref())
        }
        CsrCmd::List { limit, cursor } => (
            Method::GET,
            format!(
                "/csrs{}",
                query(&[
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            None,
        ),
        CsrCmd::Show { id, out } => (Method::GET, format!("/csrs/{id}"), None, out.as_ref()),
        CsrCmd::Delete { id } => (Method::DELETE, format!("/csrs/{id}"), None, None),
    };
    let value = client.call(method, &path, body).await?;
    if let Some(path) = out {
        let pem = value["csr_pem"].as_str().unwrap_or_default();
        std::fs::write(path, pem)
            .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
    }
    if json_out {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n");
    }
    Ok(match cmd {
        CsrCmd::List { .. } => output::items_table(
            &value,
            &[
                ("ID", "id"),
                ("COMMON NAME", "common_name"),
                ("KEY", "key_algorithm"),
                ("CREATED", "created_at"),
            ],
        ),
        CsrCmd::Delete { id } => format!("deleted CSR {id} and its key\n"),
        _ => output::object(&value),
    })
}
