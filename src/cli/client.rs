//! HTTPS client of the admin API used by the CLI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::Method;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

/// A failed call: the problem detail (or transport error) to print.
#[derive(Debug)]
pub(crate) struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connection settings of the CLI.
pub(crate) struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
    tenant: Option<String>,
}

/// Where the CLI finds the server and its credentials.
pub(crate) struct Target {
    pub url: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub tenant: Option<String>,
}

fn read_trimmed(p: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| CliError(format!("cannot read {}: {e}", p.display())))
}

impl AdminClient {
    /// Builds a client trusting the CA file (default `<data>/root.pem`) and the system's
    /// web PKI roots are not used: the admin API is served by a private CA.
    pub(crate) fn new(t: Target) -> Result<AdminClient, CliError> {
        vellum_server::install_crypto_provider();
        let token = match (&t.token, &t.token_file) {
            (Some(tok), _) => tok.clone(),
            (None, Some(f)) => read_trimmed(f)?,
            (None, None) => read_trimmed(&t.data_dir.join("admin-token")).map_err(|e| {
                CliError(format!(
                    "{e}\nPass --token, --token-file, or --data-dir of the server"
                ))
            })?,
        };
        let ca_file = t
            .ca_file
            .clone()
            .unwrap_or_else(|| t.data_dir.join("root.pem"));
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&ca_file).map_err(|e| {
            CliError(format!(
                "cannot read the CA file {}: {e}\nPass --ca-file with the server's root certificate",
                ca_file.display()
            ))
        })?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| CliError(format!("{}: {e}", ca_file.display())))?;
            roots
                .add(cert)
                .map_err(|e| CliError(format!("{}: {e}", ca_file.display())))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| CliError(e.to_string()))?;
        Ok(AdminClient {
            http,
            base: format!("{}/admin/v1", t.url.trim_end_matches('/')),
            token,
            tenant: t.tenant,
        })
    }

    /// Calls the API and returns the raw body (downloads); errors as for [`AdminClient::call`].
    pub(crate) async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Vec<u8>, CliError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CliError(e.to_string()))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Err(CliError(format!("{status}: {}", cli_wording(&value))))
        }
    }

    /// Calls the API and streams the body into `out` (created 0600: a download may hold a
    /// private key), chunk by chunk, so a large CSV never sits in memory; returns the bytes
    /// written. Errors as for [`AdminClient::call`]; a failed download leaves no file.
    pub(crate) async fn download(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        out: &Path,
    ) -> Result<u64, CliError> {
        use std::io::Write;
        let mut resp = self.send(method, path, body).await?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.map_err(|e| CliError(e.to_string()))?;
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(CliError(format!("{status}: {}", cli_wording(&value))));
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let fail = |e: String| {
            let _ = std::fs::remove_file(out);
            CliError(format!("writing {}: {e}", out.display()))
        };
        let mut file = opts
            .open(out)
            .map_err(|e| CliError(format!("creating {}: {e}", out.display())))?;
        let mut n = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    file.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
                    n += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(e) => return Err(fail(format!("the download broke off: {e}"))),
            }
        }
        file.sync_all().map_err(|e| fail(e.to_string()))?;
        Ok(n)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::Response, CliError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(t) = &self.tenant {
            req = req.header("X-Vellum-Tenant", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
            .await
            .map_err(|e| CliError(unreachable(&self.base, &e)))
    }

    /// Calls the API; a non-2xx answer becomes the problem's detail.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CliError(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            Err(CliError(format!("{status}: {}", cli_wording(&value))))
        }
    }
}

/// API field names and body hints as the CLI's flags: the problem detail names the JSON
/// field (`validity_days: …`, `pass "force": true`), the person at the terminal typed
/// flags (`--days`, `--force`).
const FLAGS: &[(&str, &str)] = &[
    ("common_name", "--cn"),
    ("validity_days", "--days"),
    ("csr_pem", "--csr"),
    ("key_algorithm", "--key-algorithm"),
    ("organization", "--org"),
    ("organizational_unit", "--ou"),
    ("country", "--country"),
    ("state", "--state"),
    ("locality", "--locality"),
    ("sans", "--san"),
    ("tags", "--tag"),
    ("name", "--name"),
    ("type", "--type"),
    ("certificate_pem", "--cert"),
    ("private_key_pem", "--key"),
    ("count", "--count"),
    ("quota", "--quota"),
    ("reason", "--reason"),
    ("format", "--format"),
    ("password", "--password"),
    ("url", "--webhook-url"),
    ("secret", "--secret"),
    ("events", "--event"),
    ("event", "--event"),
    ("smtp.host", "--smtp-host"),
    ("smtp.port", "--smtp-port"),
    ("smtp.tls", "--tls"),
    ("smtp.username", "--smtp-username"),
    ("smtp.password", "--smtp-password-file"),
    ("from", "--from"),
    ("to", "--to"),
    ("reminder_days", "--reminder-days"),
    ("quota_low_percent", "--quota-low-percent"),
    ("since", "--since"),
    ("limit", "--limit"),
];

/// The problem's detail in the CLI's words (see [`FLAGS`]).
pub(crate) fn cli_wording(problem: &Value) -> String {
    let Some(detail) = problem["detail"].as_str() else {
        return "(no detail)".into();
    };
    let mut out = detail
        .replace("pass \"force\": true", "pass --force")
        .replace("\"force\": true", "--force");
    if let Some(field) = problem["field"].as_str() {
        let base = field.split('[').next().unwrap_or(field);
        if let Some((_, flag)) = FLAGS.iter().find(|(f, _)| *f == base) {
            let index = field
                .strip_prefix(base)
                .and_then(|r| r.strip_prefix('['))
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok());
            let named = match index {
                Some(i) => format!("{flag} (the {} one)", ordinal(i + 1)),
                None => flag.to_string(),
            };
            if let Some(rest) = out.strip_prefix(&format!("{field}: ")) {
                out = format!("{named}: {rest}");
            }
        }
    }
    out
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Reads a PEM file the CLI sends (`--csr`, `--cert`, `--key`): a file that is not text
/// or holds no PEM block is refused with what to do, before anything is sent.
pub(crate) fn read_pem_file(path: &Path, flag: &str) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
    match String::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN ") => Ok(text),
        _ => Err(CliError(format!(
            "{flag} {}: must be PEM (text starting with -----BEGIN …); this looks like DER or another binary format. Convert it first, e.g. `openssl x509 -inform DER -in FILE -out FILE.pem` for a certificate, `openssl req -inform DER …` for a CSR, `openssl pkey -inform DER …` for a key",
            path.display()
        ))),
    }
}

/// Why the server at `base` could not be reached, and where its URL came from.
fn unreachable(base: &str, e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    let from = if std::env::var_os("VELLUM_URL").is_some() {
        "VELLUM_URL"
    } else {
        "--url (or VELLUM_URL; default https://localhost:8443)"
    };
    format!(
        "cannot reach the Vellum server at {base} ({cause}). The URL comes from {from}: \
         is `vellum serve` running there, and is that its HTTPS listener?"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problems_use_the_cli_flags() {
        assert_eq!(
            cli_wording(
                &json!({"detail": "certificate x is valid until y; pass \"force\": true to renew it anyway"})
            ),
            "certificate x is valid until y; pass --force to renew it anyway"
        );
        assert_eq!(
            cli_wording(
                &json!({"field": "validity_days", "detail": "validity_days: must be between 1 and 36500 days"})
            ),
            "--days: must be between 1 and 36500 days"
        );
        assert_eq!(
            cli_wording(
                &json!({"field": "sans[1]", "detail": "sans[1]: the DNS name \"a_b\" holds '_'"})
            ),
            "--san (the 2nd one): the DNS name \"a_b\" holds '_'"
        );
        assert_eq!(cli_wording(&json!({})), "(no detail)");
    }

    #[test]
    fn der_files_are_refused_as_not_pem() {
        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("csr.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0xff, 0x80, 0x00]).unwrap();
        let e = read_pem_file(&der, "--csr").unwrap_err().to_string();
        assert!(e.contains("must be PEM") && !e.contains("UTF-8"), "{e}");
    }
}
