//! One keyed read and one one-row write transaction on SQLite, through the server's
//! connection handling (`store::pool::LocalPool`) and through sqlx's own pool, which
//! pings each connection when it is released (a second round trip to sqlx's connection
//! thread per use). Sequential, so the numbers are round-trip latencies.
//!
//! Run: `cargo bench --bench store` (about 30 s).

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use vellum::store::{self, Store};

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
        let opts = AnyConnectOptions::from_str(&url).expect("url");
        let theirs = AnyPoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .expect("sqlx pool");
        (ours, theirs)
    });

    let mut group = c.benchmark_group("sqlite_read");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("local_pool", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = ours.reader().acquire().await.expect("acquire");
                black_box(store::settings::get(&mut conn, "bench").await.expect("get"))
            })
        })
    });
    group.bench_function("sqlx_pool", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut conn = theirs.acquire().await.expect("acquire");
                black_box(store::settings::get(&mut conn, "bench").await.expect("get"))
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("sqlite_write_tx");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("local_pool", |b| {
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
    group.bench_function("sqlx_pool", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tx = theirs.begin().await.expect("begin");
                store::settings::put(&mut tx, "bench", "v")
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
