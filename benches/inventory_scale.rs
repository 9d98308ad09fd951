//! The inventory at scale (issue 13): a tenant with a million certificates, issued and
//! managed, with varied names, tags, dates and states; what the list, search and filter
//! pages, `/pending` and the CSV downloads cost on it.
//!
//! The server runs in this process (so its resident memory during a CSV download is this
//! process's), on a data directory that survives between runs: seeding a million rows
//! takes minutes, measuring seconds.
//!
//! ```text
//! cargo bench --bench inventory_scale                      # SQLite, 1,000,000 rows
//! SCALE_N=200000 cargo bench --bench inventory_scale       # smaller
//! SCALE_DIR=/tmp/scale-pg VELLUM_BENCH_DATABASE_URL=postgres://… cargo bench --bench inventory_scale
//! ```
//!
//! `SCALE_N` is the number of private-CA certificates; a fifth as many managed ones are
//! added. `SCALE_DIR` (default `/tmp/vellum-scale-<backend>-<N>`) keeps the data
//! directory; delete it to seed again. `SCALE_ONLY=pages` times only the console's pages;
//! `SCALE_ONLY=q=host,tag=team` runs only the queries
//! containing one of those strings (and no CSV). Each query runs `SCALE_REPS` times (default 40)
//! after one warm-up; the report gives the median, p99 and maximum in milliseconds and
//! the rows of the first page. Goals (issue 13): p99 < 50 ms for a page of 50 under any
//! filter combination, `/pending` < 200 ms, a CSV of every row with RSS growth < 50 MB.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use store::certificates::CertRow;
use store::managed::ManagedRow;
use vellum_core::status::{CertificateSource, LeafType, ManagedSource, RevocationReason};

const DAY: i64 = 86_400;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Bench {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Bench {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}/admin/v1{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("server answers");
        let st = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(st.is_success(), "{path}: {st} {v}");
        v
    }

    /// Median, p99 and max in ms of `reps` GETs of `path` (after one warm-up), and the
    /// number of items of the last answer; `None` when the route does not exist.
    async fn time_get(&self, path: &str, reps: usize) -> Option<(f64, f64, f64, usize)> {
        let url = format!("{}/admin/v1{}", self.base, path);
        let warm = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("server answers");
        if warm.status() == StatusCode::NOT_FOUND || warm.status() == StatusCode::METHOD_NOT_ALLOWED
        {
            return None;
        }
        assert!(warm.status().is_success(), "{path}: {}", warm.status());
        let mut times = Vec::with_capacity(reps);
        let mut items = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let v: Value = self
                .client
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("server answers")
                .json()
                .await
                .expect("json");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            items = v["items"]
                .as_array()
                .map(Vec::len)
                .or_else(|| v["total"].as_u64().map(|n| n as usize))
                .unwrap_or(0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        Some((p(0.5), p(0.99), *times.last().unwrap(), items))
    }

    /// Streams a CSV download; rows, seconds, and the largest RSS growth seen (MiB).
    async fn csv(&self, path: &str) -> Option<(usize, f64, f64)> {
        let before = rss_kib();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let t = Instant::now();
        let mut resp = self
            .client
            .get(format!("{}/admin/v1{}", self.base, path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("server answers");
        if resp.status() == StatusCode::NOT_FOUND {
            sampler.abort();
            return None;
        }
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let mut lines = 0usize;
        while let Some(chunk) = resp.chunk().await.expect("body") {
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let secs = t.elapsed().as_secs_f64();
        sampler.abort();
        let grew = peak
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(before);
        Some((lines.saturating_sub(1), secs, grew as f64 / 1024.0))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let n = env_num("SCALE_N", 1_000_000);
    let managed_n = n / 5;
    let reps = env_num("SCALE_REPS", 40);
    let pg = std::env::var("VELLUM_BENCH_DATABASE_URL").ok();
    let backend = if pg.is_some() { "postgres" } else { "sqlite" };
    let dir = std::env::var("SCALE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(format!("/tmp/vellum-scale-{backend}-{n}")));
    std::fs::create_dir_all(&dir).expect("data dir");
    let database_url = pg.unwrap_or_else(|| format!("sqlite://{}/vellum.db", dir.display()));
    let env: Vec<(String, String)> = vec![
        ("VELLUM_DATA_DIR".into(), dir.display().to_string()),
        ("VELLUM_LISTEN_HTTPS".into(), "127.0.0.1:0".into()),
        ("VELLUM_LISTEN_HTTP".into(), "127.0.0.1:0".into()),
        ("VELLUM_DATABASE_URL".into(), database_url.clone()),
        ("VELLUM_LIMITS_DB_CONNECTIONS".into(), "8".into()),
    ];
    let config = vellum_core::config::Config::load_with_env(None, &env).expect("config");
    let running = vellum_server::start(config).await.expect("server starts");
    vellum_server::install_crypto_provider();
    let token = std::fs::read_to_string(&running.paths.admin_token)
        .expect("token")
        .trim()
        .to_string();
    let root_pem = std::fs::read(&running.paths.root_pem).expect("root.pem");
    let mut roots = reqwest::Certificate::from_pem_bundle(&root_pem).expect("root");
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(600));
    for r in roots.drain(..) {
        builder = builder.add_root_certificate(r);
    }
    let b = Bench {
        client: builder.build().expect("client"),
        base: format!("https://localhost:{}", running.https_addr.port()),
        token,
    };
    let app = &running.app;
    let tenant = {
        let t = b.call(reqwest::Method::GET, "/tenants", None).await;
        t["items"][0]["id"].as_str().expect("tenant").to_string()
    };

    // Seed (once per data directory).
    let seeded_marker = dir.join("seeded");
    if !seeded_marker.exists() {
        seed(&b, app, &tenant, n, managed_n).await;
        std::fs::write(&seeded_marker, format!("{n}\n")).expect("marker");
    }
    // SQLite's search index runs behind the table (`store::search`): a bulk load is
    // indexed by the server's job within minutes; the figures below are of the steady
    // state, so finish that first (PostgreSQL: nothing to do).
    let t = Instant::now();
    let indexed = ra::inventory::catch_up_search(app)
        .await
        .expect("search index catches up");
    if indexed > 0 {
        println!(
            "# search index: {indexed} rows indexed in {:.1} s before measuring",
            t.elapsed().as_secs_f64()
        );
    }

    println!("# inventory_scale: {backend}, {n} certificates + {managed_n} managed, {reps} runs per query");
    println!(
        "{:<70} {:>8} {:>8} {:>8} {:>6}",
        "query", "p50 ms", "p99 ms", "max ms", "rows"
    );
    let queries = [
        "/certificates?limit=50",
        "/certificates?limit=50&status=issued",
        "/certificates?limit=50&status=expiring",
        "/certificates?limit=50&status=expired",
        "/certificates?limit=50&status=revoked",
        "/certificates?limit=50&type=client",
        "/certificates?limit=50&source=acme",
        "/certificates?limit=50&risk=leakage",
        "/certificates?limit=50&tag=env=prod",
        "/certificates?limit=50&tag=team=team-7",
        "/certificates?limit=50&tag=rare",
        "/certificates?limit=50&q=dept-3.example",
        "/certificates?limit=50&q=host-123456",
        "/certificates?limit=50&q=nothing-matches-this",
        "/certificates?limit=50&status=expiring&tag=env=prod",
        "/certificates?limit=50&status=expired&tag=team=team-7&q=dept-1",
        "/certificates?limit=50&status=revoked&risk=leakage&type=client",
        "/certificates?limit=50&cursor=MIDDLE",
        "/certificates?limit=50&cursor=MIDDLE&status=expiring",
        "/managed?limit=50",
        "/managed?limit=50&status=expiring",
        "/managed?limit=50&status=expired",
        "/managed?limit=50&tag=env=prod",
        "/managed?limit=50&q=vendor-77",
        "/managed?limit=50&q=nothing-matches-this",
        "/managed?limit=50&risk=leakage&status=issued",
        "/pending",
    ];
    // `SCALE_ONLY=q=host,tag=team`: only the queries containing one of these (and no CSV).
    let only: Vec<String> = std::env::var("SCALE_ONLY")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let middle = middle_id(app, &tenant).await;
    for q in queries {
        if !only.is_empty() && !only.iter().any(|o| o != "pages" && q.contains(o.as_str())) {
            continue;
        }
        let path = q.replace("MIDDLE", &middle);
        match b.time_get(&path, reps).await {
            Some((p50, p99, max, rows)) => {
                println!("{q:<70} {p50:>8.1} {p99:>8.1} {max:>8.1} {rows:>6}")
            }
            None => println!("{q:<70} (no such route)"),
        }
    }
    // The console's pages (issue 15: server time per page < 100 ms): each page's API
    // calls, timed one after another and summed (the browser sends them in parallel, so
    // this bounds the page's server time from above). `SCALE_ONLY=pages` runs only these.
    if only.is_empty() || only.iter().any(|o| o == "pages") {
        let ca = b
            .call(reqwest::Method::GET, "/cas?kind=intermediate&limit=1", None)
            .await;
        let ca = ca["items"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pages: Vec<(&str, Vec<String>)> = vec![
            ("overview", vec!["/overview".into(), "/pending".into()]),
            ("cas", vec!["/cas?limit=1000".into()]),
            (
                "ca settings",
                [
                    "",
                    "/crl",
                    "/acme",
                    "/est",
                    "/est/clients?limit=1000",
                    "/rate-limits",
                ]
                .iter()
                .map(|p| format!("/cas/{ca}{p}"))
                .collect(),
            ),
            (
                "certificates",
                vec![
                    "/certificates?limit=50".into(),
                    "/cas?kind=intermediate&limit=1000".into(),
                ],
            ),
            (
                "certificates, filtered",
                vec![
                    "/certificates?limit=50&status=expiring&tag=env=prod".into(),
                    "/cas?kind=intermediate&limit=1000".into(),
                ],
            ),
            (
                "certificates, searched",
                vec![
                    "/certificates?limit=50&q=host-123456".into(),
                    "/cas?kind=intermediate&limit=1000".into(),
                ],
            ),
            ("managed", vec!["/managed?limit=50".into()]),
            (
                "notifications",
                vec![
                    "/notifications/channels".into(),
                    "/notifications/quota".into(),
                    "/notifications/deliveries?limit=50".into(),
                ],
            ),
            ("audit", vec!["/audit?limit=100".into()]),
            (
                "tenants",
                vec!["/tenants?limit=1000".into(), "/tokens?limit=1000".into()],
            ),
        ];
        println!(
            "{:<70} {:>8} {:>8} {:>8}",
            "console page (its calls, summed)", "p50 ms", "p99 ms", "max ms"
        );
        for (name, paths) in pages {
            let mut each = Vec::new();
            for path in &paths {
                match b.time_get(path, reps).await {
                    Some(t) => each.push(t),
                    None => panic!("{name}: {path} is not a route"),
                }
            }
            // Summing each call's p50 (p99, max) bounds the page's from above.
            let sum = |f: fn(&(f64, f64, f64, usize)) -> f64| each.iter().map(f).sum::<f64>();
            println!(
                "{:<70} {:>8.1} {:>8.1} {:>8.1}",
                format!("{name}: {}", paths.join(" ")),
                sum(|t| t.0),
                sum(|t| t.1),
                sum(|t| t.2)
            );
        }
    }
    for path in ["/certificates.csv", "/managed.csv"] {
        if !only.is_empty() {
            break;
        }
        match b.csv(path).await {
            Some((rows, secs, grew)) => {
                println!("{path:<70} {rows} rows in {secs:.1} s, RSS growth {grew:.1} MiB")
            }
            None => println!("{path:<70} (no such route)"),
        }
    }
    running.shutdown().await;
}

/// The id of the certificate in the middle of the list (a deep page's cursor).
async fn middle_id(app: &vellum_server::App, tenant: &str) -> String {
    let mut conn = app.store.reader().acquire().await.expect("conn");
    let f = store::certificates::CertFilter {
        limit: 1,
        ..Default::default()
    };
    let first = store::certificates::list_rows(&mut conn, tenant, &f, 0)
        .await
        .expect("list");
    // UUIDv7 ids: the first row's id with its time part moved half-way to now.
    first
        .first()
        .map(|r| {
            let t0 = u64::from_str_radix(&r.id[..12], 16).unwrap_or(0);
            let now = vellum_core::time::now() as u64 * 1000;
            format!("{:012x}{}", t0 + (now.saturating_sub(t0)) / 2, &r.id[12..])
        })
        .unwrap_or_default()
}

/// Issues one certificate and uploads one managed certificate through the API (so the
/// rows are real), then writes `n` and `managed_n` variations of them straight through
/// the store, in transactions of 5,000.
async fn seed(b: &Bench, app: &vellum_server::App, tenant: &str, n: usize, managed_n: usize) {
    use reqwest::Method;
    let t0 = Instant::now();
    let root = b
        .call(
            Method::POST,
            "/cas",
            Some(
                json!({"kind": "root", "common_name": "Scale Root", "key_algorithm": "ec-p256",
                        "validity_days": 3650, "service_months": 24, "quota": 10}),
            ),
        )
        .await;
    let root_id = root["id"].as_str().expect("root id").to_string();
    let int_id = root["intermediate_id"]
        .as_str()
        .expect("intermediate id")
        .to_string();
    for id in [&root_id, &int_id] {
        b.call(
            Method::POST,
            &format!("/cas/{id}/enable"),
            Some(json!({"mode": "generate"})),
        )
        .await;
    }
    b.call(
        Method::POST,
        &format!("/cas/{root_id}/quota/assign"),
        Some(json!({"intermediate_id": int_id, "count": 5})),
    )
    .await;
    let issued = b
        .call(Method::POST, &format!("/cas/{int_id}/certificates"), Some(json!({"type": "server", "common_name": "template.example", "sans": [{"type": "dns", "value": "template.example"}], "validity_days": 90})))
        .await;
    let cert_id = issued["id"].as_str().expect("certificate id").to_string();
    let template: CertRow = {
        let mut conn = app.store.reader().acquire().await.expect("conn");
        store::certificates::get(&mut conn, tenant, &cert_id)
            .await
            .expect("get")
            .expect("row")
    };
    let pem = issued["certificate_pem"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let chain = issued["chain_pem"].as_str().unwrap_or_default().to_string();
    let key = b
        .client
        .post(format!("{}/admin/v1/certificates/{cert_id}/export", b.base))
        .bearer_auth(&b.token)
        .json(&json!({"format": "pkcs8"}))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("key");
    let up = b
        .call(Method::POST, "/managed", Some(json!({"name": "template", "certificate_pem": pem, "private_key_pem": key, "chain_pem": chain})))
        .await;
    let managed_template: ManagedRow = {
        let mut conn = app.store.reader().acquire().await.expect("conn");
        store::managed::get(&mut conn, tenant, up["id"].as_str().expect("managed id"))
            .await
            .expect("get")
            .expect("row")
    };

    let now = vellum_core::time::now();
    let envs = ["prod", "staging", "dev"];
    let sources = [
        CertificateSource::PrivateCa,
        CertificateSource::Acme,
        CertificateSource::Est,
    ];
    let mut i = 0usize;
    while i < n {
        let end = (i + 5_000).min(n);
        let rows: Vec<CertRow> = (i..end)
            .map(|k| {
                // Dates spread from 60 days expired to 400 days ahead; 1 % revoked; 5 %
                // over a year (leakage risk); one in 10,000 carries the tag "rare".
                let not_after = now - 60 * DAY + ((k * 7_919) % (460 * DAY as usize)) as i64;
                let validity = if k % 20 == 0 { 500 * DAY } else { 90 * DAY };
                let cn = format!("host-{k}.dept-{}.example", k % 50);
                let mut tags = json!({"env": envs[k % 3], "team": format!("team-{}", k % 40)});
                if k % 10_000 == 0 {
                    tags["rare"] = json!("yes");
                }
                CertRow {
                    id: uuid::Uuid::now_v7().simple().to_string(),
                    serial: format!("5ca1e{k:011x}"),
                    cert_type: if k % 4 == 0 {
                        LeafType::Client
                    } else {
                        LeafType::Server
                    },
                    sans_json: json!([{"type": "dns", "value": cn}]).to_string(),
                    common_name: cn,
                    not_before: not_after - validity,
                    not_after,
                    revoked_at: (k % 100 == 0).then_some(now - DAY),
                    revocation_reason: (k % 100 == 0).then_some(RevocationReason::Superseded),
                    source: sources[k % 3],
                    tags_json: tags.to_string(),
                    leakage_risk: validity > 365 * DAY,
                    created_at: now - (n - k) as i64,
                    ..template.clone()
                }
            })
            .collect();
        let mut tx = app.store.begin().await.expect("begin");
        let refs: Vec<&CertRow> = rows.iter().collect();
        for part in refs.chunks(500) {
            store::certificates::insert_many(&mut tx, part)
                .await
                .expect("insert");
        }
        // The batch insert of issuance writes no revocation: revoke 1 % as the API would.
        for r in rows.iter().filter(|r| r.revoked_at.is_some()) {
            store::certificates::revoke(&mut tx, &r.id, now - DAY, RevocationReason::Superseded)
                .await
                .expect("revoke");
        }
        tx.commit().await.expect("commit");
        i = end;
        if i % 100_000 == 0 {
            eprintln!(
                "seeded {i} certificates ({:.0} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let mut i = 0usize;
    while i < managed_n {
        let end = (i + 5_000).min(managed_n);
        let mut tx = app.store.begin().await.expect("begin");
        for k in i..end {
            let not_after = now - 60 * DAY + ((k * 7_919) % (460 * DAY as usize)) as i64;
            let validity = if k % 10 == 0 { 730 * DAY } else { 365 * DAY };
            let cn = format!("vendor-{k}.partner-{}.example", k % 30);
            let row = ManagedRow {
                id: uuid::Uuid::now_v7().simple().to_string(),
                name: format!("bought {k}"),
                source: ManagedSource::Uploaded,
                tags_json: json!({"env": envs[k % 3], "vendor": format!("v{}", k % 12)})
                    .to_string(),
                notifications: k % 7 != 0,
                sans_json: json!([{"type": "dns", "value": cn}]).to_string(),
                common_name: cn,
                serial: format!("be11{k:012x}"),
                not_before: not_after - validity,
                not_after,
                leakage_risk: validity > 365 * DAY,
                created_at: now - (managed_n - k) as i64,
                ..managed_template.clone()
            };
            store::managed::insert(&mut tx, &row).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        i = end;
    }
    eprintln!(
        "seeded {n} certificates and {managed_n} managed in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
