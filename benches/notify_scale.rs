//! Notifications at scale (issue 14): the due-reminder pass over a tenant with a million
//! managed certificates, and webhook delivery throughput to a loopback receiver.
//!
//! ```text
//! cargo bench --bench notify_scale                         # SQLite, 1,000,000 rows
//! NOTIFY_N=100000 cargo bench --bench notify_scale          # smaller
//! VELLUM_BENCH_DATABASE_URL=postgres://… cargo bench --bench notify_scale
//! ```
//!
//! The server runs in this process with a fixed clock the bench moves. Managed
//! certificates (reminders on) expire uniformly over the next 365 days; the data directory
//! (`NOTIFY_DIR`, default `/tmp/vellum-notify-<backend>-<N>`) keeps them between runs and
//! each run starts over from "nothing looked at yet". Reported:
//! - the first look at every row (all `remind_at` due: the upgrade or a new tenant's case);
//! - an idle pass (nothing due) — what every minute costs;
//! - a day's pass: the clock moves one day, ~N × 3/365 certificates cross a threshold
//!   and each becomes a queued webhook delivery (median of `NOTIFY_DAYS`, default 5);
//! - delivery: `NOTIFY_EVENTS` (default 20,000) events queued at once, delivered by the
//!   server's worker to an HTTP receiver on loopback; events per second.
//!
//! Goals: the due-reminder pass < 1 s with 1,000,000 certificates; ≥ 2,000 deliveries/s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use store::managed::ManagedRow;
use vellum_core::status::{ManagedSource, NotificationEvent};

const DAY: i64 = 86_400;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time of this process so far (user + system, ms; Linux `/proc/self/stat`, 10 ms
/// ticks): what a pass costs apart from waiting for a loaded machine. It includes the
/// server's delivery worker running meanwhile; PostgreSQL's own CPU is not in it.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 13 {
        return 0.0;
    }
    (f[11] + f[12]) * 10.0
}

async fn count(app: &vellum_server::App, sql: &str) -> i64 {
    let mut conn = app.store.reader().acquire().await.expect("conn");
    store::query(sql)
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

async fn exec(app: &vellum_server::App, sql: &str) {
    let mut tx = app.store.begin().await.expect("tx");
    store::query(sql).execute(&mut tx).await.expect(sql);
    tx.commit().await.expect("commit");
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
    let n = env_num("NOTIFY_N", 1_000_000);
    let days = env_num("NOTIFY_DAYS", 5);
    let events = env_num("NOTIFY_EVENTS", 20_000);
    let pg = std::env::var("VELLUM_BENCH_DATABASE_URL").ok();
    let backend = if pg.is_some() { "postgres" } else { "sqlite" };
    let dir = std::env::var("NOTIFY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(format!("/tmp/vellum-notify-{backend}-{n}")));
    std::fs::create_dir_all(&dir).expect("data dir");
    let database_url = pg.unwrap_or_else(|| format!("sqlite://{}/vellum.db", dir.display()));
    // The clock starts where the seeding started, so the rows' expiries keep their spread.
    let origin_file = dir.join("bench-origin");
    let origin: i64 = std::fs::read_to_string(&origin_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(vellum_core::time::now);
    std::fs::write(&origin_file, origin.to_string()).expect("origin");
    let clock = vellum_core::time::Clock::fixed(origin);
    let env: Vec<(String, String)> = vec![
        ("VELLUM_DATA_DIR".into(), dir.display().to_string()),
        ("VELLUM_LISTEN_HTTPS".into(), "127.0.0.1:0".into()),
        ("VELLUM_LISTEN_HTTP".into(), "127.0.0.1:0".into()),
        ("VELLUM_DATABASE_URL".into(), database_url.clone()),
        ("VELLUM_LIMITS_DB_CONNECTIONS".into(), "8".into()),
        (
            "VELLUM_NOTIFICATIONS_DELIVERY_INTERVAL_MS".into(),
            "50".into(),
        ),
        (
            "VELLUM_NOTIFICATIONS_DEFAULT_QUOTA".into(),
            "2000000".into(),
        ),
    ];
    let config = vellum_core::config::Config::load_with_env(None, &env).expect("config");
    let running = vellum_server::start_with_clock(config, clock.clone())
        .await
        .expect("server starts");
    let app = running.app.clone();
    // The bench runs the passes itself: the background scheduler never gets the lease.
    {
        let mut tx = app.store.begin().await.expect("tx");
        store::crls::take_lease(&mut tx, "notify-schedule", "bench", 0, i64::MAX / 2)
            .await
            .expect("lease");
        tx.commit().await.expect("commit");
    }
    let tenant = {
        let mut conn = app.store.reader().acquire().await.expect("conn");
        store::tenants::find_tenant(&mut conn, "default")
            .await
            .expect("tenant")
            .expect("default tenant")
    };

    // Seed.
    let have = count(&app, "SELECT COUNT(*) AS n FROM managed_certificates").await as usize;
    if have < n {
        let t = Instant::now();
        let mut i = have;
        while i < n {
            let mut tx = app.store.begin().await.expect("tx");
            for _ in 0..5000.min(n - i) {
                let not_after = origin + DAY + (i as i64 * 365 * DAY) / n as i64;
                let row = ManagedRow {
                    id: uuid::Uuid::now_v7().simple().to_string(),
                    tenant_id: tenant.id.clone(),
                    name: format!("fleet-{i}"),
                    source: ManagedSource::Uploaded,
                    tags_json: format!("{{\"env\":\"{}\"}}", ["prod", "stage", "dev"][i % 3]),
                    notifications: true,
                    subject: format!("CN=host-{i}.fleet.example"),
                    common_name: format!("host-{i}.fleet.example"),
                    sans_json: format!("[{{\"dns\":\"host-{i}.fleet.example\"}}]"),
                    issuer: "CN=Elsewhere CA".into(),
                    serial: format!("{i:x}"),
                    key_algorithm: "ec-p256".into(),
                    not_before: origin - DAY,
                    not_after,
                    leakage_risk: false,
                    certificate_der: vec![0x30, 0x00],
                    chain_der: Vec::new(),
                    key_sealed: None,
                    created_at: origin,
                    deleted_at: None,
                    origin_certificate_id: None,
                    shared_by_tenant_id: None,
                    shared_by_name: None,
                    revoked_at: None,
                };
                store::managed::insert(&mut tx, &row).await.expect("insert");
                i += 1;
            }
            tx.commit().await.expect("commit");
        }
        println!(
            "seeded {} managed certificates in {:.0} s",
            n - have,
            t.elapsed().as_secs_f64()
        );
    }
    // Start over: nothing looked at, nothing sent.
    exec(&app, "DELETE FROM notification_deliveries").await;
    exec(&app, "DELETE FROM notification_reminders").await;
    exec(&app, "DELETE FROM notification_channels").await;
    exec(&app, "UPDATE managed_reminders SET remind_at = 0").await;
    if backend == "postgres" {
        exec(&app, "ANALYZE managed_certificates").await;
        exec(&app, "ANALYZE managed_reminders").await;
    }

    // The first look at every row (no channel yet: nothing to queue).
    let t = Instant::now();
    let mut passes = 0;
    loop {
        let r = ra::notify::schedule(&app, clock.now()).await.expect("pass");
        passes += 1;
        if r.looked_at == 0 {
            break;
        }
    }
    let first = t.elapsed().as_secs_f64();
    println!(
        "{backend} N={n}: first look at every row: {first:.1} s in {passes} passes ({:.0} rows/s)",
        n as f64 / first
    );

    // A loopback receiver and a channel for the reminders.
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    {
        let received = received.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let received = received.clone();
                async move {
                    received.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    }
    let ch = ra::notify::create_channel(
        &app,
        &tenant.id,
        &ra::notify::ChannelInput {
            kind: Some(vellum_core::status::ChannelKind::Webhook),
            name: Some("bench".into()),
            events: Some(vec!["*".into()]),
            url: Some(format!("http://127.0.0.1:{port}/hook")),
            secret: Some("bench-secret-0123456789".into()),
            ..Default::default()
        },
    )
    .await
    .expect("channel");

    // Idle passes.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = ra::notify::schedule(&app, clock.now()).await.expect("pass");
        idle.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.looked_at, 0);
    }
    println!("{backend} N={n}: idle pass: median {:.1} ms", median(idle));

    // A day at a time.
    let mut day_ms = Vec::new();
    let mut day_cpu = Vec::new();
    let mut queued = 0;
    for _ in 0..days {
        clock.advance(DAY);
        let t = Instant::now();
        let cpu = cpu_ms();
        let mut looked = 0;
        loop {
            let r = ra::notify::schedule(&app, clock.now()).await.expect("pass");
            looked += r.looked_at;
            queued += r.queued;
            if r.looked_at < 50_000 {
                break;
            }
        }
        day_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        day_cpu.push(cpu_ms() - cpu);
        println!(
            "  day pass: {looked} certificates looked at, {:.0} ms ({:.0} ms CPU in this process)",
            day_ms.last().unwrap(),
            day_cpu.last().unwrap()
        );
    }
    println!(
        "{backend} N={n}: a day's pass: median {:.0} ms, {:.0} ms CPU ({queued} reminders queued over {days} days)",
        median(day_ms),
        median(day_cpu)
    );
    let _ = ch;

    // Let the reminders' deliveries drain, then time a burst.
    while count(
        &app,
        "SELECT COUNT(*) AS n FROM notification_deliveries WHERE status = 'pending'",
    )
    .await
        > 0
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = received.load(Ordering::Relaxed);
    let evs: Vec<ra::notify::Event> = (0..events)
        .map(|i| ra::notify::Event {
            tenant_id: tenant.id.clone(),
            kind: NotificationEvent::CertificateIssued,
            data: json!({"certificate": {"id": format!("bench-{i}"), "common_name": format!("b{i}.example")}}),
        })
        .collect();
    let mut tx = app.store.begin().await.expect("tx");
    ra::notify::emit(&mut tx, &evs, clock.now())
        .await
        .expect("emit");
    tx.commit().await.expect("commit");
    let t = Instant::now();
    while received.load(Ordering::Relaxed) - before < events as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(t.elapsed() < Duration::from_secs(600), "deliveries stalled");
    }
    let secs = t.elapsed().as_secs_f64();
    // Wait for the outcomes to be recorded too.
    while count(
        &app,
        "SELECT COUNT(*) AS n FROM notification_deliveries WHERE status = 'pending'",
    )
    .await
        > 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = t.elapsed().as_secs_f64();
    println!(
        "{backend}: {events} webhook deliveries to loopback: received in {secs:.2} s ({:.0}/s), all recorded delivered in {recorded:.2} s ({:.0}/s)",
        events as f64 / secs,
        events as f64 / recorded
    );
    running.shutdown().await;
}
