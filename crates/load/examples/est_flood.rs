//! Password-guessing flood against EST simpleenroll, to measure the server's memory
//! (docs/ARCHITECTURE.md, "Rate limits"): `--concurrency` workers send
//! `simpleenroll` with HTTP Basic `<user-prefix><i % users>:wrong-<n>` for `--seconds`,
//! over kept-alive TLS connections, and print how many answers of each status came back.
//!
//!   cargo run --release --example est_flood -- --url https://localhost:8443 \
//!     --ca-file data/root.pem --users 50 --concurrency 64 --seconds 20

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

#[derive(Parser)]
struct Args {
    /// Base URL of the HTTPS listener.
    #[arg(long, default_value = "https://localhost:8443")]
    url: String,
    /// Root the server's certificate chains to.
    #[arg(long, default_value = "./data/root.pem")]
    ca_file: PathBuf,
    /// User names `<prefix>0` … `<prefix><users-1>`.
    #[arg(long, default_value_t = 50)]
    users: u64,
    /// Prefix of the user names.
    #[arg(long, default_value = "flood")]
    user_prefix: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// How long to flood.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("est_flood: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let pem = std::fs::read(&args.ca_file)
        .map_err(|e| format!("reading --ca-file {}: {e}", args.ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("--ca-file: not a PEM certificate: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("--ca-file: unusable root certificate: {e}"))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let url = format!("{}/.well-known/est/simpleenroll", args.url);
    let tally: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let body = "MIIBAA==";
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (http, url, tally, prefix) = (
            http.clone(),
            url.clone(),
            tally.clone(),
            args.user_prefix.clone(),
        );
        let users = args.users.max(1);
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while Instant::now() < until {
                let user = format!("{prefix}{}", n % users);
                let status = match http
                    .post(&url)
                    .basic_auth(&user, Some(format!("wrong-{n}")))
                    .header("content-type", "application/pkcs10")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16().to_string();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(e) => format!("error: {}", e.without_url()),
                };
                *tally
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(status)
                    .or_default() += 1;
                n += args.concurrency;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    let total: u64 = t.values().sum();
    println!(
        "{total} requests in {} s ({:.0}/s): {t:?}",
        args.seconds,
        total as f64 / args.seconds as f64
    );
    Ok(())
}
