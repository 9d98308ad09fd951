//! `vellum-load`: a load generator for the admin apply endpoint
//! (`POST /admin/v1/cas/{ca}/certificates`) of a running Vellum server on this machine.
//!
//! See `docs/PERFORMANCE.md` for how it is used and what it measured.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use loadgen::{percentile, prepare_ca, Api, Res, Tally};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::json;

/// Time limit of the measured phase when `--duration` is not given.
const DEFAULT_TIME_LIMIT_SECS: u64 = 600;
/// Requests of a run when neither `--requests` nor `--duration` is given.
const DEFAULT_REQUESTS: u64 = 20_000;

/// Load generator for Vellum's certificate apply endpoint.
///
/// Issues certificates through `POST /admin/v1/cas/{ca}/certificates` from N concurrent
/// workers over HTTPS keep-alive connections, then reports throughput and latency. Before
/// the run it tops up the intermediate's certificate quota (purchasing it for the root and
/// assigning it), so it needs the super-admin token. It only talks to loopback addresses
/// and always stops by itself: after --requests, after --duration, or after a 600 s safety
/// limit, whichever comes first.
///
/// Exit status: 0 when every measured request got 201, 2 when some did not, 1 when the
/// run could not start.
#[derive(Debug, Parser)]
#[command(name = "vellum-load", version)]
struct Args {
    /// Base URL of the server's HTTPS listener (must resolve to a loopback address).
    #[arg(long, default_value = "https://localhost:8443")]
    url: String,

    /// The server's data directory: the token is read from <DATA_DIR>/admin-token and the
    /// trusted root from <DATA_DIR>/root.pem unless --token / --ca-file are given.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,

    /// Super-admin bearer token (default: <DATA_DIR>/admin-token).
    #[arg(long, env = "VELLUM_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// PEM file with the root certificate the server's TLS certificate chains to
    /// (default: <DATA_DIR>/root.pem).
    #[arg(long)]
    ca_file: Option<PathBuf>,

    /// Intermediate CA id to issue from (default: the first enabled intermediate).
    #[arg(long)]
    ca: Option<String>,

    /// Concurrent workers (each keeps one request in flight).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,

    /// Measured requests in total (default 20000 unless only --duration is given).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: Option<u64>,

    /// Stop the measured phase after this many seconds (requests in flight finish).
    /// Without it a 600 s safety limit applies.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: Option<u64>,

    /// What each request asks for: `generated` (the server generates an EC P-256 key) or
    /// `csr` (a pre-generated P-256 CSR is sent; the key stays with the client).
    #[arg(long, value_enum, default_value_t = Mode::Generated)]
    mode: Mode,

    /// Distinct CSRs generated before the clock starts and sent round-robin (csr mode).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    csrs: u64,

    /// Requests sent (at the same concurrency) before the measured phase; not counted.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    warmup: u64,

    /// Quota the intermediate must have before the run (default: warmup + requests, or
    /// warmup + 10000 x duration when only --duration is given).
    #[arg(long)]
    quota: Option<i64>,

    /// Use HTTP/2 (requests multiplexed over one connection) instead of HTTP/1.1 keep-alive
    /// (one connection per worker).
    #[arg(long)]
    http2: bool,

    /// Worker threads of the load generator's runtime (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,

    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,

    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Server-generated EC P-256 keys.
    Generated,
    /// Client CSRs (EC P-256).
    Csr,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Generated => "generated",
            Mode::Csr => "csr",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = args.threads.map(|t| t as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vellum-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, threads)) {
        Ok(clean) => {
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("vellum-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses URLs that do not resolve to loopback addresses only.
async fn check_loopback(url: &reqwest::Url) -> Res<()> {
    if url.scheme() != "https" {
        return Err(format!("--url must be https://, not {}", url.scheme()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("--url {url} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() || !addrs.iter().all(IpAddr::is_loopback) {
        return Err(format!(
            "{host} resolves to {addrs:?}; vellum-load only talks to loopback addresses"
        ));
    }
    Ok(())
}

fn build_client(args: &Args) -> Res<(reqwest::Client, String)> {
    let token = match &args.token {
        Some(t) => t.trim().to_string(),
        None => {
            let p = args.data_dir.join("admin-token");
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    format!(
                        "cannot read {}: {e} (pass --token or --data-dir)",
                        p.display()
                    )
                })?
        }
    };
    let ca_file = args
        .ca_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("root.pem"));
    let pem = std::fs::read(&ca_file).map_err(|e| {
        format!(
            "cannot read {}: {e} (pass --ca-file or --data-dir)",
            ca_file.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", ca_file.display()));
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = if args.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(args.concurrency as usize)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(args.timeout))
        .connect_timeout(Duration::from_secs(10));
    b = if args.http2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    Ok((b.build().map_err(|e| e.to_string())?, token))
}

/// Pre-generated P-256 CSRs, PEM, JSON-escaped for splicing into request bodies.
fn generate_csrs(n: u64) -> Res<Vec<String>> {
    (0..n)
        .map(|i| {
            let name = format!("csr-{i}.load.example");
            let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params =
                rcgen::CertificateParams::new(vec![name.clone()]).map_err(|e| e.to_string())?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let pem = params
                .serialize_request(&key)
                .map_err(|e| e.to_string())?
                .pem()
                .map_err(|e| e.to_string())?;
            Ok(serde_json::Value::String(pem).to_string())
        })
        .collect()
}

/// The body of request `i`.
fn body(i: u64, csrs: &[String]) -> String {
    if csrs.is_empty() {
        format!(
            r#"{{"type":"server","common_name":"load-{i}.example","sans":[{{"type":"dns","value":"load-{i}.example"}}],"validity_days":30,"key_algorithm":"ec-p256"}}"#
        )
    } else {
        let csr = &csrs[(i % csrs.len() as u64) as usize];
        format!(
            r#"{{"type":"server","common_name":"load-{i}.example","sans":[{{"type":"dns","value":"load-{i}.example"}}],"validity_days":30,"csr_pem":{csr}}}"#
        )
    }
}

struct Phase {
    client: reqwest::Client,
    endpoint: String,
    auth: String,
    csrs: Arc<Vec<String>>,
    /// Next request number.
    next: AtomicU64,
    /// Request numbers below `end` are sent.
    end: u64,
    deadline: Instant,
    start: Instant,
}

async fn worker(p: Arc<Phase>) -> Tally {
    let mut t = Tally::default();
    loop {
        if Instant::now() >= p.deadline {
            break;
        }
        let i = p.next.fetch_add(1, Ordering::Relaxed);
        if i >= p.end {
            break;
        }
        let body = body(i, &p.csrs);
        let t0 = Instant::now();
        let res = p
            .client
            .post(&p.endpoint)
            .header(reqwest::header::AUTHORIZATION, &p.auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let outcome = match res {
            Ok(resp) => {
                let status = resp.status();
                // Read the whole body so the connection goes back to the pool.
                match resp.bytes().await {
                    Ok(_) if status == reqwest::StatusCode::CREATED => Ok(()),
                    Ok(b) => Err((
                        status.as_u16().to_string(),
                        String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
                    )),
                    Err(e) => Err((format!("{}+body-error", status.as_u16()), e.to_string())),
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                Err((kind.to_string(), e.to_string()))
            }
        };
        let done = Instant::now();
        match outcome {
            Ok(()) => {
                let us = done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32;
                t.ok_us.push(us);
                let sec = done.duration_since(p.start).as_secs() as usize;
                if t.per_second.len() <= sec {
                    t.per_second.resize(sec + 1, 0);
                }
                t.per_second[sec] += 1;
            }
            Err((kind, sample)) => t.fail(kind, sample),
        }
    }
    t
}

/// What every phase shares.
struct Target {
    client: reqwest::Client,
    endpoint: String,
    auth: String,
    csrs: Arc<Vec<String>>,
    concurrency: u64,
}

/// Runs one phase (warm-up or measured): requests numbered from `first`, at most `count`
/// of them, for at most `limit`. Returns what it saw and its wall time.
async fn phase(
    target: &Target,
    first: u64,
    count: Option<u64>,
    limit: Duration,
) -> Res<(Tally, Duration)> {
    let start = Instant::now();
    let p = Arc::new(Phase {
        client: target.client.clone(),
        endpoint: target.endpoint.clone(),
        auth: target.auth.clone(),
        csrs: target.csrs.clone(),
        next: AtomicU64::new(first),
        end: count.map(|c| first + c).unwrap_or(u64::MAX),
        deadline: start + limit,
        start,
    });
    let handles: Vec<_> = (0..target.concurrency)
        .map(|_| tokio::spawn(worker(p.clone())))
        .collect();
    let mut all = Tally::default();
    for h in handles {
        all.merge(h.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    Ok((all, start.elapsed()))
}

async fn run(args: Args, threads: usize) -> Res<bool> {
    let url = reqwest::Url::parse(&args.url).map_err(|e| format!("--url {}: {e}", args.url))?;
    check_loopback(&url).await?;
    let (client, token) = build_client(&args)?;
    let base = args.url.trim_end_matches('/').to_string();
    let api = Api {
        http: client.clone(),
        base: format!("{base}/admin/v1"),
        token: token.clone(),
    };

    let requests = match (args.requests, args.duration) {
        (Some(r), _) => Some(r),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_REQUESTS),
    };
    let limit = Duration::from_secs(args.duration.unwrap_or(DEFAULT_TIME_LIMIT_SECS));
    let need = args.quota.unwrap_or_else(|| {
        let measured = requests.unwrap_or_else(|| 10_000 * limit.as_secs());
        (args.warmup + measured) as i64
    });
    let (ca, added) = prepare_ca(&api, args.ca.clone(), need.max(1)).await?;
    if !args.json && added > 0 {
        eprintln!("vellum-load: assigned {added} quota to intermediate {ca}");
    }

    let csrs = Arc::new(if args.mode == Mode::Csr {
        let t0 = Instant::now();
        let v = generate_csrs(args.csrs)?;
        if !args.json {
            eprintln!(
                "vellum-load: generated {} CSRs in {:.2} s (before the clock)",
                v.len(),
                t0.elapsed().as_secs_f64()
            );
        }
        v
    } else {
        Vec::new()
    });
    let target = Target {
        client,
        endpoint: format!("{base}/admin/v1/cas/{ca}/certificates"),
        auth: format!("Bearer {token}"),
        csrs,
        concurrency: args.concurrency,
    };

    let mut warm_errors = 0;
    if args.warmup > 0 {
        let limit = Duration::from_secs(DEFAULT_TIME_LIMIT_SECS);
        let (w, _) = phase(&target, 0, Some(args.warmup), limit).await?;
        warm_errors = w.errors.values().sum::<u64>();
    }
    // Request numbers continue after the warm-up so names stay distinct.
    let (mut t, wall) = phase(&target, args.warmup, requests, limit).await?;

    t.ok_us.sort_unstable();
    let ok = t.ok_us.len() as u64;
    let failed: u64 = t.errors.values().sum();
    let secs = wall.as_secs_f64();
    let rate = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
    let mean = if ok > 0 {
        t.ok_us.iter().map(|&u| u as f64).sum::<f64>() / ok as f64 / 1000.0
    } else {
        0.0
    };
    let (p50, p90, p99, max) = (
        percentile(&t.ok_us, 0.50),
        percentile(&t.ok_us, 0.90),
        percentile(&t.ok_us, 0.99),
        t.ok_us.last().map(|&u| u as f64 / 1000.0).unwrap_or(0.0),
    );
    // Full seconds only (the last one is partial).
    let full: Vec<u64> = if t.per_second.len() > 1 {
        t.per_second[..t.per_second.len() - 1].to_vec()
    } else {
        Vec::new()
    };
    let mut sorted_full = full.clone();
    sorted_full.sort_unstable();
    let stopped_by = if requests.is_some_and(|r| ok + failed >= r) {
        "requests"
    } else {
        "time"
    };

    if args.json {
        let out = json!({
            "url": base,
            "ca": ca,
            "mode": args.mode.as_str(),
            "http": if args.http2 { "2" } else { "1.1" },
            "concurrency": args.concurrency,
            "threads": threads,
            "warmup": args.warmup,
            "warmup_errors": warm_errors,
            "requests": ok + failed,
            "ok": ok,
            "errors": t.errors,
            "error_samples": t.samples,
            "wall_seconds": secs,
            "certificates_per_second": rate,
            "latency_ms": { "mean": mean, "p50": p50, "p90": p90, "p99": p99, "max": max },
            "per_second": full,
            "stopped_by": stopped_by,
        });
        println!("{out}");
    } else {
        println!(
            "vellum-load: {} mode, HTTP/{}, {} workers on {} threads, CA {}",
            args.mode.as_str(),
            if args.http2 { "2" } else { "1.1" },
            args.concurrency,
            threads,
            ca
        );
        if args.warmup > 0 {
            println!(
                "warm-up:        {} requests ({warm_errors} failed), not counted",
                args.warmup
            );
        }
        println!("requests:       {} (stopped by {stopped_by})", ok + failed);
        println!("ok (201):       {ok}");
        if t.errors.is_empty() {
            println!("errors:         none");
        } else {
            for (k, n) in &t.errors {
                println!(
                    "errors {k:>7}: {n}  e.g. {}",
                    t.samples.get(k).map(String::as_str).unwrap_or("")
                );
            }
        }
        println!("wall time:      {secs:.2} s");
        println!("certificates/s: {rate:.1}");
        println!(
            "latency ms:     mean {mean:.2}  p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}"
        );
        if !sorted_full.is_empty() {
            println!(
                "per second:     min {}  median {}  max {} ({} full seconds)",
                sorted_full[0],
                sorted_full[sorted_full.len() / 2],
                sorted_full[sorted_full.len() - 1],
                sorted_full.len()
            );
        }
    }
    Ok(failed == 0)
}
