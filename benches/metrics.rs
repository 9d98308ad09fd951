//! What the metrics cost one issuance: the recording calls one admin (or EST) issuance
//! makes, timed with recording on and off (`vellum_core::metrics::set_recording`, what
//! `[metrics] enabled = false` does in `vellum serve`), alone and with two threads
//! recording at once (the server's two workers on this machine, the contended case).
//!
//! Run: `cargo bench --bench metrics`. Per issuance, pessimistically: one issuance
//! counter (a per-CA label lookup), one HTTP request histogram, one write transaction
//! histogram and one group-commit batch histogram (in the server those two are shared by
//! a whole batch of issuances). Compare with the server CPU one issuance costs
//! (`benches/issue_ab.sh`: about 0.26 ms) for the share; docs/PERFORMANCE.md has both.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use vellum_core::metrics::{self, Door, GroupCommitSizes, IssueOutcome, RouteFamily};

/// The recording calls of one issuance.
fn one_issuance(sizes: &GroupCommitSizes, ca: &str) {
    let took = black_box(Duration::from_micros(850));
    metrics::issuance(Door::Admin, Some(ca), IssueOutcome::Issued);
    metrics::http_request(RouteFamily::Admin, 201, took);
    metrics::db_transaction(true, took);
    sizes.observe(black_box(12));
}

/// `iters` issuances on each of `threads` threads at once; the time of the slowest.
fn contended(threads: usize, iters: u64, sizes: &GroupCommitSizes) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let sizes = sizes.clone();
            s.spawn(move || {
                let ca = format!("ca-{}", t % 2);
                for _ in 0..iters {
                    one_issuance(&sizes, &ca);
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_per_issuance");
    for on in [true, false] {
        metrics::set_recording(on);
        // Resolved after the switch, as a writer resolves it at its start.
        let sizes = metrics::group_commit_sizes("bench");
        let label = if on { "on" } else { "off" };
        g.bench_function(format!("{label}/1_thread"), |b| {
            b.iter(|| one_issuance(&sizes, "ca-0"))
        });
        g.bench_function(format!("{label}/2_threads"), |b| {
            b.iter_custom(|iters| contended(2, iters, &sizes))
        });
    }
    g.finish();
    metrics::set_recording(true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
