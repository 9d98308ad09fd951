//! One keyed read and one one-row write transaction on SQLite: through the server's store
//! (`store::sql`: rusqlite, called in the caller's thread) and through a sqlx SQLite
//! connection (each statement handed to sqlx's connection thread and the result handed
//! back). Sequential, so the numbers are round-trip latencies; CPU per operation is lower
//! still for the direct path, which wakes no other thread.
//!
//! Run: `cargo bench --bench store` (about 30 s).

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sqlx::any::AnyConnectOptions;
use sqlx::{ConnectOptions, Connection};

use store::{self, Store};

const GET: &str = "SELECT value FROM settings WHERE key = $1";
const PUT: &str = "INSERT INTO settings (key, value) VALUES ($1, $2) \
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value";

fn bench_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (ours, theirs) = rt.block_on(async {
        let ours = Store::connect(&url, 4).await.expect("store");
        {
            let mut tx = ours.begin().await.expect("begin");
            store::settings::put(&mut tx, "bench", "value")
                .await
                .expect("put");
            tx.commit().await.expect("commit");
        }
        sqlx::any::install_default_drivers();
        let theirs = AnyConnectOptions::from_str(&url)
            .expect("url")
            .connect()
            .await
            .expect("sqlx connection");
        (ours, tokio::sync::Mutex::new(theirs))
    });

    let mut group = c.benchmark_group("sqlite_read");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("direct", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = ours.reader().acquire().await.expect("acquire");
                black_box(store::settings::get(&mut conn, "bench").await.expect("get"))
            })
        })
    });
    group.bench_function("sqlx_thread", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = theirs.lock().await;
                let row = sqlx::query(GET)
                    .bind("bench")
                    .fetch_optional(&mut *conn)
                    .await
                    .expect("get");
                black_box(row.is_some())
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("sqlite_write_tx");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("direct", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tx = ours.begin().await.expect("begin");
                store::settings::put(&mut tx, "bench", "v")
                    .await
                    .expect("put");
                tx.commit().await.expect("commit");
            })
        })
    });
    group.bench_function("sqlx_thread", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = theirs.lock().await;
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query(PUT)
                    .bind("bench")
                    .bind("v")
                    .execute(&mut *tx)
                    .await
                    .expect("put");
                tx.commit().await.expect("commit");
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
