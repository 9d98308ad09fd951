//! CRL signing with 10k, 100k and 1M revoked entries, through the crate's own
//! `ca::crl::sign` (build the rcgen params, DER-encode, ECDSA P-256 signature).
//!
//! Run: `cargo bench --bench crl`. Entries are generated before the timed part; the signing
//! root is an EC P-256 self-signed CA made with the crate's profile code.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use rand::RngCore;

use ca::crl::{self, Entry};
use ca::keys::KeyAlgorithm;
use ca::profile::{self, SubjectFields, Validity};
use ca::Signer;

const NOW: i64 = 1_750_000_000;

fn signer() -> Signer {
    let key = KeyAlgorithm::EcP256.generate().expect("P-256 key");
    let subject = SubjectFields {
        common_name: "Vellum Bench Root".into(),
        ..Default::default()
    };
    let validity = Validity {
        not_before: NOW - 86_400,
        not_after: NOW + 10 * 365 * 86_400,
    };
    let (der, _serial) = profile::self_signed_root(&subject, validity, &key).expect("root");
    Signer::from_parts("bench", der, key).expect("signer")
}

/// `n` entries with random 16-byte serials (top bit cleared, as issued serials are
/// positive) and spread-out revocation times.
fn entries(n: usize) -> Vec<Entry> {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|i| {
            let mut serial = [0u8; 16];
            rng.fill_bytes(&mut serial);
            serial[0] &= 0x7f;
            serial[0] |= 0x01;
            Entry {
                serial_hex: hex::encode(serial),
                revoked_at: NOW - (i as i64 % 86_400),
                reason: vellum_core::status::RevocationReason::KeyCompromise,
            }
        })
        .collect()
}

fn bench_crl_sign(c: &mut Criterion) {
    let signer = signer();
    let mut group = c.benchmark_group("crl_sign");
    // Flat sampling for the big lists: every sample runs the same (small) number of
    // iterations, so 10 samples of the 1M list take ~10 signatures instead of the 55 that
    // linear sampling needs. The whole bench takes about a minute.
    for &(n, samples, secs, mode) in &[
        (10_000usize, 20usize, 5u64, SamplingMode::Auto),
        (100_000, 10, 5, SamplingMode::Flat),
        (1_000_000, 10, 10, SamplingMode::Flat),
    ] {
        let list = entries(n);
        // Sanity check outside the timing: the CRL carries every entry.
        let der = crl::sign(&signer, 1, NOW, NOW + 86_400, &list).expect("sign");
        eprintln!("crl_sign/{n}: {} bytes of DER", der.len());
        group.sample_size(samples);
        group.sampling_mode(mode);
        group.measurement_time(Duration::from_secs(secs));
        group.warm_up_time(Duration::from_secs(1));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &list, |b, list| {
            b.iter(|| {
                crl::sign(
                    black_box(&signer),
                    2,
                    NOW,
                    NOW + 86_400,
                    black_box(list.as_slice()),
                )
                .expect("sign")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_crl_sign);
criterion_main!(benches);
