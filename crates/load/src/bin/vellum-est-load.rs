//! `vellum-est-load`: a load generator for EST `simpleenroll` (RFC 7030) against a running
//! Vellum server on this machine.
//!
//! See `docs/PERFORMANCE.md` (section "EST") for how it is used and what it measured.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;
use loadgen::{percentile, prepare_ca, Api, Res, Tally};
use rand::RngCore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Time limit of a phase when `--duration` is not given.
const DEFAULT_TIME_LIMIT_SECS: u64 = 600;
/// EST client account the generator creates (and replaces) for itself.
const LOAD_USER: &str = "vellum-est-load";

/// Load generator for Vellum's EST simpleenroll.
///
/// N workers each keep one TLS connection (HTTP/1.1 keep-alive) to the server and send
/// `POST /.well-known/est/<ca>/simpleenroll` back to back, with HTTP Basic credentials
/// and P-256 CSRs generated before the clock starts; it then reports enrollments per
/// second and latency percentiles. Before the run it creates an EST client account for
/// itself and tops up the intermediate's quota through the admin API, so it needs the
/// super-admin token. It only talks to loopback addresses and always stops by itself:
/// after --requests, after --duration, or after a 600 s safety limit.
///
/// Exit status: 0 when every measured request got 200, 2 when some did not, 1 when the
/// run could not start.
#[derive(Debug, Parser)]
#[command(name = "vellum-est-load", version)]
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

    /// PEM file with the root the server's TLS certificate chains to
    /// (default: <DATA_DIR>/root.pem).
    #[arg(long)]
    ca_file: Option<PathBuf>,

    /// Intermediate CA id to enroll with (default: the first enabled intermediate).
    #[arg(long)]
    ca: Option<String>,

    /// Concurrent workers, each with its own kept-alive TLS connection.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,

    /// Measured enrollments in total (default 20000 unless only --duration is given).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: Option<u64>,

    /// Stop the measured phase after this many seconds (requests in flight finish).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: Option<u64>,

    /// Enrollments sent before the measured phase (connections, password cache); not
    /// counted.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    warmup: u64,

    /// Distinct P-256 CSRs generated before the clock starts and sent round-robin.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    csrs: u64,

    /// Worker threads of the generator's runtime (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,

    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,

    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
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
            eprintln!("vellum-est-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, threads)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("vellum-est-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The loopback address the URL resolves to; anything else is refused.
async fn loopback_addr(url: &reqwest::Url) -> Res<(SocketAddr, String)> {
    if url.scheme() != "https" {
        return Err(format!("--url must be https://, not {}", url.scheme()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("--url {url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "{host} resolves to {addrs:?}; vellum-est-load only talks to loopback addresses"
        ));
    }
    // Prefer IPv4 (the server listens on 127.0.0.1 by default).
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .unwrap_or(addrs[0]);
    Ok((addr, host))
}

fn roots(args: &Args) -> Res<rustls::RootCertStore> {
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
    Ok(roots)
}

fn tls_config(roots: rustls::RootCertStore) -> Res<Arc<rustls::ClientConfig>> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

fn token(args: &Args) -> Res<String> {
    match &args.token {
        Some(t) => Ok(t.trim().to_string()),
        None => {
            let p = args.data_dir.join("admin-token");
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    format!(
                        "cannot read {}: {e} (pass --token or --data-dir)",
                        p.display()
                    )
                })
        }
    }
}

/// (Re)creates the generator's EST account with a fresh random password.
async fn prepare_account(api: &Api, ca: &str) -> Res<String> {
    let mut raw = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let password = STANDARD.encode(raw);
    let path = format!("/cas/{ca}/est/clients");
    let body = json!({"username": LOAD_USER, "password": password});
    if api
        .call(reqwest::Method::POST, &path, Some(body.clone()))
        .await
        .is_err()
    {
        api.call(
            reqwest::Method::DELETE,
            &format!("{path}/{LOAD_USER}"),
            None,
        )
        .await?;
        api.call(reqwest::Method::POST, &path, Some(body)).await?;
    }
    Ok(password)
}

/// Pre-generated P-256 CSRs, base64 DER on one line.
fn generate_csrs(n: u64) -> Res<Vec<String>> {
    (0..n)
        .map(|i| {
            let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(
                rcgen::DnType::CommonName,
                format!("device-{i}.load.example"),
            );
            let der = params
                .serialize_request(&key)
                .map_err(|e| e.to_string())?
                .der()
                .to_vec();
            Ok(STANDARD.encode(der))
        })
        .collect()
}

/// Everything the workers of a phase share.
struct Phase {
    connector: TlsConnector,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    /// Request head up to (and without) Content-Length.
    head: String,
    csrs: Arc<Vec<String>>,
    next: AtomicU64,
    end: u64,
    deadline: Instant,
    start: Instant,
    timeout: Duration,
}

/// One HTTP/1.1 exchange: returns (status, body).
async fn exchange(
    conn: &mut TlsStream<TcpStream>,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Res<(u16, Vec<u8>)> {
    conn.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buf.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) =
            resp.parse(buf).map_err(|e| format!("bad response: {e}"))?
        {
            let status = resp.code.unwrap_or(0);
            let len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("response without Content-Length")?;
            while buf.len() < head_len + len {
                let mut chunk = [0u8; 8192];
                let n = conn
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("connection closed mid-body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, buf[head_len..head_len + len].to_vec()));
        }
        let mut chunk = [0u8; 8192];
        let n = conn
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connect(p: &Phase) -> Res<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(p.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    p.connector
        .connect(p.server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

async fn worker(p: Arc<Phase>) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<TlsStream<TcpStream>> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut request = Vec::with_capacity(1024);
    loop {
        if Instant::now() >= p.deadline {
            break;
        }
        let i = p.next.fetch_add(1, Ordering::Relaxed);
        if i >= p.end {
            break;
        }
        let csr = &p.csrs[(i % p.csrs.len() as u64) as usize];
        request.clear();
        request.extend_from_slice(p.head.as_bytes());
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", csr.len() + 2).as_bytes());
        request.extend_from_slice(csr.as_bytes());
        request.extend_from_slice(b"\r\n");
        let t0 = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(p.timeout, connect(&p)).await {
                Ok(Ok(c)) => {
                    t.connections += 1;
                    conn.insert(c)
                }
                Ok(Err(e)) => {
                    t.fail("connect".into(), e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    t.fail("timeout".into(), "connect timed out".into());
                    continue;
                }
            },
        };
        let res = tokio::time::timeout(p.timeout, exchange(c, &request, &mut buf)).await;
        let done = Instant::now();
        match res {
            Ok(Ok((200, body))) if body.ends_with(b"\r\n") => {
                t.ok_us
                    .push(done.duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                let sec = done.duration_since(p.start).as_secs() as usize;
                if t.per_second.len() <= sec {
                    t.per_second.resize(sec + 1, 0);
                }
                t.per_second[sec] += 1;
            }
            Ok(Ok((status, body))) => t.fail(
                status.to_string(),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            ),
            Ok(Err(e)) => {
                conn = None;
                t.fail("transport".into(), e);
            }
            Err(_) => {
                conn = None;
                t.fail("timeout".into(), "no answer in time".into());
            }
        }
    }
    t
}

async fn phase(
    template: &Phase,
    concurrency: u64,
    first: u64,
    count: Option<u64>,
    limit: Duration,
) -> Res<(Tally, Duration)> {
    let start = Instant::now();
    let p = Arc::new(Phase {
        connector: template.connector.clone(),
        addr: template.addr,
        server_name: template.server_name.clone(),
        head: template.head.clone(),
        csrs: template.csrs.clone(),
        next: AtomicU64::new(first),
        end: count.map(|c| first + c).unwrap_or(u64::MAX),
        deadline: start + limit,
        start,
        timeout: template.timeout,
    });
    let handles: Vec<_> = (0..concurrency)
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
    let (addr, host) = loopback_addr(&url).await?;
    let roots = roots(&args)?;
    let tls = tls_config(roots)?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .map_err(|e| e.to_string())?;
    let base = args.url.trim_end_matches('/').to_string();
    let api = Api {
        http,
        base: format!("{base}/admin/v1"),
        token: token(&args)?,
    };

    let requests = match (args.requests, args.duration) {
        (Some(r), _) => Some(r),
        (None, Some(_)) => None,
        (None, None) => Some(20_000),
    };
    let limit = Duration::from_secs(args.duration.unwrap_or(DEFAULT_TIME_LIMIT_SECS));
    let need = (args.warmup + requests.unwrap_or_else(|| 10_000 * limit.as_secs())) as i64;
    let (ca, added) = prepare_ca(&api, args.ca.clone(), need.max(1)).await?;
    if !args.json && added > 0 {
        eprintln!("vellum-est-load: assigned {added} quota to intermediate {ca}");
    }
    let password = prepare_account(&api, &ca).await?;

    let t0 = Instant::now();
    let csrs = Arc::new(generate_csrs(args.csrs)?);
    if !args.json {
        eprintln!(
            "vellum-est-load: generated {} P-256 CSRs in {:.2} s (before the clock)",
            csrs.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let path = format!("/.well-known/est/{ca}/simpleenroll");
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let basic = STANDARD.encode(format!("{LOAD_USER}:{password}"));
    let template = Phase {
        connector: TlsConnector::from(tls),
        addr,
        server_name: ServerName::try_from(host.clone()).map_err(|e| e.to_string())?,
        head: format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic {basic}\r\n\
             Content-Type: application/pkcs10\r\n"
        ),
        csrs,
        next: AtomicU64::new(0),
        end: 0,
        deadline: Instant::now(),
        start: Instant::now(),
        timeout: Duration::from_secs(args.timeout),
    };

    let mut warm_errors = 0;
    if args.warmup > 0 {
        let (w, _) = phase(
            &template,
            args.concurrency,
            0,
            Some(args.warmup),
            Duration::from_secs(DEFAULT_TIME_LIMIT_SECS),
        )
        .await?;
        warm_errors = w.errors.values().sum::<u64>();
    }
    let (mut t, wall) = phase(&template, args.concurrency, args.warmup, requests, limit).await?;

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
    let stopped_by = if requests.is_some_and(|r| ok + failed >= r) {
        "requests"
    } else {
        "time"
    };
    if args.json {
        println!(
            "{}",
            json!({
                "url": base,
                "ca": ca,
                "concurrency": args.concurrency,
                "threads": threads,
                "warmup": args.warmup,
                "warmup_errors": warm_errors,
                "requests": ok + failed,
                "ok": ok,
                "errors": t.errors,
                "error_samples": t.samples,
                "connections": t.connections,
                "wall_seconds": secs,
                "enrollments_per_second": rate,
                "latency_ms": { "mean": mean, "p50": p50, "p90": p90, "p99": p99, "max": max },
                "stopped_by": stopped_by,
            })
        );
    } else {
        println!(
            "vellum-est-load: simpleenroll, HTTP/1.1 keep-alive, {} connections on {} threads, CA {}",
            args.concurrency, threads, ca
        );
        if args.warmup > 0 {
            println!(
                "warm-up:         {} enrollments ({warm_errors} failed), not counted",
                args.warmup
            );
        }
        println!("enrollments:     {} (stopped by {stopped_by})", ok + failed);
        println!("ok (200):        {ok}");
        if t.errors.is_empty() {
            println!("errors:          none");
        } else {
            for (k, n) in &t.errors {
                println!(
                    "errors {k:>9}: {n}  e.g. {}",
                    t.samples
                        .get(k)
                        .map(String::as_str)
                        .unwrap_or("")
                        .trim_end()
                );
            }
        }
        println!("TLS connections: {}", t.connections);
        println!("wall time:       {secs:.2} s");
        println!("enrollments/s:   {rate:.1}");
        println!(
            "latency ms:      mean {mean:.2}  p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}"
        );
    }
    Ok(failed == 0)
}
