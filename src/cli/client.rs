//! HTTPS client of the admin API used by the CLI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::Method;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

/// A failed call: the problem detail (or transport error) to print.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connection settings of the CLI.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
    tenant: Option<String>,
}

/// Where the CLI finds the server and its credentials.
pub struct Target {
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
    pub fn new(t: Target) -> Result<AdminClient, CliError> {
        crate::install_crypto_provider();
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
    pub async fn call_bytes(
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
            let detail = value["detail"].as_str().unwrap_or("(no detail)");
            Err(CliError(format!("{status}: {detail}")))
        }
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
            .map_err(|e| CliError(format!("cannot reach {}: {e}", self.base)))
    }

    /// Calls the API; a non-2xx answer becomes the problem's detail.
    pub async fn call(
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
            let detail = value["detail"].as_str().unwrap_or("(no detail)");
            Err(CliError(format!("{status}: {detail}")))
        }
    }
}
