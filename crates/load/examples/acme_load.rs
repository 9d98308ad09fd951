//! ACME load generator: many accounts run the full flow concurrently — newOrder → authz →
//! http-01 (answered by this program's own responder on loopback) → finalize → download —
//! and the program reports orders/s and p50/p99 per step.
//!
//! Every order is for a fresh DNS name (`o<N>.<zone>`) so no authorization is reused: the
//! program runs a loopback DNS server (`va::testdns`) that maps those names to
//! 127.0.0.1. Start the server with its validator pointed at this program:
//!
//! ```sh
//! VELLUM_VA_HTTP_PORT=5002 VELLUM_VA_DNS_RESOLVER=127.0.0.1:5053 target/release/vellum serve &
//! cargo run --release --example acme_load -- --http-port 5002 --dns-port 5053 --orders 2000 --concurrency 64
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use instant_acme::{
    Account, ChallengeType, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

/// `println!` that ignores a closed stdout (`acme_load … | head` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Drives a Vellum ACME directory with concurrent full-flow orders.
#[derive(Debug, Parser)]
#[command(name = "acme_load")]
struct Args {
    /// ACME directory URL.
    #[arg(long, default_value = "https://localhost:8443/acme/directory")]
    directory: String,
    /// Root certificate the server's TLS chains to.
    #[arg(long, default_value = "./data/root.pem")]
    ca_file: PathBuf,
    /// Port of this program's http-01 responder (the server's VELLUM_VA_HTTP_PORT).
    #[arg(long, default_value_t = 5002)]
    http_port: u16,
    /// Port of this program's DNS server (the server's VELLUM_VA_DNS_RESOLVER).
    #[arg(long, default_value_t = 5053)]
    dns_port: u16,
    /// Zone the order names are made in.
    #[arg(long, default_value = "load.vellum.test")]
    zone: String,
    /// Orders in total (counted ones; warm-up orders come on top).
    #[arg(long, default_value_t = 1000)]
    orders: u64,
    /// Orders in flight at once (one account per worker).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Orders per worker before the clock starts.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Speak HTTP/1.1 only (default: HTTP/2 when the server offers it, as instant-acme does).
    #[arg(long)]
    http1: bool,
    /// Stop after this many seconds even if not all orders are done.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
}

const STEPS: [&str; 5] = [
    "new_order",
    "challenge",
    "validation",
    "finalize",
    "download",
];

#[derive(Default)]
struct Stats {
    steps: Mutex<Vec<Vec<f64>>>,
    total: Mutex<Vec<f64>>,
    errors: Mutex<HashMap<String, u64>>,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

async fn one_order(
    account: &Account,
    name: &str,
    tokens: &Arc<Mutex<HashMap<String, String>>>,
    dns: &va::testdns::TestDns,
) -> Result<[f64; 5], String> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    dns.set_a(name, Ipv4Addr::LOCALHOST);
    let t = Instant::now();
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("newOrder: {e}"))?;
    let new_order = ms(t);
    let t = Instant::now();
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| format!("authz: {e}"))?;
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or("no http-01 offered")?;
            tokens.lock().map_err(|_| "lock")?.insert(
                ch.token.clone(),
                ch.key_authorization().as_str().to_string(),
            );
            ch.set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
    }
    let challenge = ms(t);
    let t = Instant::now();
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .backoff(1.5)
        .timeout(Duration::from_secs(30));
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("order ended {status:?}"));
    }
    let validation = ms(t);
    let t = Instant::now();
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let finalize = ms(t);
    let t = Instant::now();
    let pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("download: {e}"))?;
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err("download: no certificate".into());
    }
    let download = ms(t);
    dns.remove(name);
    Ok([new_order, challenge, validation, finalize, download])
}

/// An HTTPS client trusting `ca_file`, with TCP_NODELAY: instant-acme's default client
/// leaves Nagle's algorithm on, so every HTTP/2 POST (HEADERS, then DATA) waits ~40 ms for
/// the server's delayed ACK, which would measure the client, not the server.
fn http_client(ca_file: &std::path::Path, http1_only: bool) -> Result<Box<dyn HttpClient>, String> {
    use rustls_pki_types::pem::PemObject;
    let root = rustls_pki_types::CertificateDer::from_pem_file(ca_file)
        .map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).map_err(|e| e.to_string())?;
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1();
    let https = if http1_only {
        builder.wrap_connector(http)
    } else {
        builder.enable_http2().wrap_connector(http)
    };
    Ok(Box::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    ))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let responder = {
        let tokens = tokens.clone();
        axum::Router::new().route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(move |axum::extract::Path(t): axum::extract::Path<String>| {
                let tokens = tokens.clone();
                async move {
                    let v = tokens.lock().ok().and_then(|m| m.get(&t).cloned());
                    match v {
                        Some(v) => (axum::http::StatusCode::OK, v),
                        None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                    }
                }
            }),
        )
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.http_port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{}: {e}", args.http_port);
            std::process::exit(2);
        }
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, responder).await;
    });
    let dns = match va::testdns::TestDns::start_on(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        args.dns_port,
    )) {
        Ok((d, _)) => Arc::new(d),
        Err(e) => {
            eprintln!(
                "cannot start the DNS server on 127.0.0.1:{}: {e}",
                args.dns_port
            );
            std::process::exit(2);
        }
    };

    // One account per worker, created before the clock starts.
    let mut accounts = Vec::new();
    for _ in 0..args.concurrency {
        let builder = match http_client(&args.ca_file, args.http1) {
            Ok(http) => Account::builder_with_http(http),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        match builder
            .create(
                &NewAccount {
                    contact: &[],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                args.directory.clone(),
                None,
            )
            .await
        {
            Ok((a, _)) => accounts.push(Arc::new(a)),
            Err(e) => {
                eprintln!("cannot create an account at {}: {e}", args.directory);
                std::process::exit(2);
            }
        }
    }
    let counter = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(Stats {
        steps: Mutex::new(vec![Vec::new(); 5]),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let seq = Arc::new(AtomicU64::new(0));

    // Warm-up.
    let mut warm = Vec::new();
    for a in &accounts {
        let (a, tokens, dns, seq, zone, n) = (
            a.clone(),
            tokens.clone(),
            dns.clone(),
            seq.clone(),
            args.zone.clone(),
            args.warmup,
        );
        warm.push(tokio::spawn(async move {
            for _ in 0..n {
                let name = format!("w{}.{zone}", seq.fetch_add(1, Ordering::Relaxed));
                let _ = one_order(&a, &name, &tokens, &dns).await;
            }
        }));
    }
    for w in warm {
        let _ = w.await;
    }

    let start = Instant::now();
    let mut workers = Vec::new();
    for a in &accounts {
        let (a, tokens, dns, seq, counter, stats, zone, total) = (
            a.clone(),
            tokens.clone(),
            dns.clone(),
            seq.clone(),
            counter.clone(),
            stats.clone(),
            args.zone.clone(),
            args.orders,
        );
        workers.push(tokio::spawn(async move {
            while counter.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                let name = format!("o{}.{zone}", seq.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                match one_order(&a, &name, &tokens, &dns).await {
                    Ok(steps) => {
                        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
                        if let Ok(mut s) = stats.steps.lock() {
                            for (i, v) in steps.iter().enumerate() {
                                s[i].push(*v);
                            }
                        }
                        if let Ok(mut tot) = stats.total.lock() {
                            tot.push(elapsed);
                        }
                    }
                    Err(e) => {
                        let key = e.split(':').next().unwrap_or("error").to_string();
                        if let Ok(mut errs) = stats.errors.lock() {
                            *errs.entry(key).or_default() += 1;
                        }
                        if let Ok(errs) = stats.errors.lock() {
                            if errs.values().sum::<u64>() <= 3 {
                                eprintln!("order failed: {e}");
                            }
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let wall = start.elapsed().as_secs_f64();
    let mut total = stats.total.lock().map(|t| t.clone()).unwrap_or_default();
    let ok = total.len();
    say!(
        "orders completed: {ok} in {wall:.2} s  →  {:.1} orders/s (concurrency {})",
        ok as f64 / wall,
        args.concurrency
    );
    say!(
        "{:<12} {:>9} {:>9} {:>9}",
        "step",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    if let Ok(mut steps) = stats.steps.lock() {
        for (i, name) in STEPS.iter().enumerate() {
            let v = &mut steps[i];
            let max = v.iter().cloned().fold(0.0, f64::max);
            say!(
                "{:<12} {:>9.1} {:>9.1} {:>9.1}",
                name,
                percentile(v, 50.0),
                percentile(v, 99.0),
                max
            );
        }
    }
    let max = total.iter().cloned().fold(0.0, f64::max);
    say!(
        "{:<12} {:>9.1} {:>9.1} {:>9.1}",
        "whole order",
        percentile(&mut total, 50.0),
        percentile(&mut total, 99.0),
        max
    );
    let errors = stats.errors.lock().map(|e| e.clone()).unwrap_or_default();
    if !errors.is_empty() {
        say!("errors: {errors:?}");
    }
}
