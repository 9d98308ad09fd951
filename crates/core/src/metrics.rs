//! The process's Prometheus metrics: one registry every layer reaches (the store times
//! its transactions, `ra` counts issuances, the front ends time requests), rendered in the
//! Prometheus text exposition format by the `prometheus` crate (never by hand).
//!
//! Cost on the hot paths: every counter and histogram is a set of atomics (the
//! `prometheus` crate's histograms are lock-free too). Label sets known in advance (route
//! family × status class, transaction outcome, ACME order status) are resolved once, here;
//! the per-CA series are resolved per call through the crate's label map (a read-locked
//! hash map: one uncontended atomic besides the hash), which is negligible next to the
//! signature and the transaction an issuance costs.
//!
//! Label values are closed sets ([`Door`], [`IssueOutcome`], [`RouteFamily`]…) or CA ids:
//! certificate ids, serials and account ids never become labels (bounded cardinality).
//!
//! Gauges that describe the database (quota remaining, certificates expiring) are not
//! kept here: the scrape computes them ([`Snapshot`]) and [`render`] adds them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The content type of [`render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which door an issuance came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The admin API, the CLI and admin renewals.
    Admin,
    /// ACME finalize.
    Acme,
    /// EST enrollments.
    Est,
}

impl Door {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Admin => "admin",
            Door::Acme => "acme",
            Door::Est => "est",
        }
    }
}

/// What became of an issuance request that reached the issuance path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Signed and recorded.
    Issued,
    /// Refused: the CA had no quota left.
    RefusedQuota,
    /// Refused for any other reason (names, validity, CA state, a failed write).
    RefusedOther,
}

impl IssueOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueOutcome::Issued => "issued",
            IssueOutcome::RefusedQuota => "refused-quota",
            IssueOutcome::RefusedOther => "refused-other",
        }
    }
}

/// The route families of the HTTP duration histogram (never the raw path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFamily {
    /// `/admin/v1/…`.
    Admin,
    /// `/acme/…`.
    Acme,
    /// `/.well-known/est/…`.
    Est,
    /// `/crl/…` and `/ca/…` (CRLs and CA certificates).
    Crl,
    /// `/ocsp/…`.
    Ocsp,
    /// The web console (`/`, `/console/…`).
    Console,
    /// `/metrics`.
    Metrics,
    /// Anything else (`/healthz`, unknown paths).
    Other,
}

impl RouteFamily {
    /// Every family, in the order of [`RouteFamily::index`].
    pub const ALL: [RouteFamily; 8] = [
        RouteFamily::Admin,
        RouteFamily::Acme,
        RouteFamily::Est,
        RouteFamily::Crl,
        RouteFamily::Ocsp,
        RouteFamily::Console,
        RouteFamily::Metrics,
        RouteFamily::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteFamily::Admin => "admin",
            RouteFamily::Acme => "acme",
            RouteFamily::Est => "est",
            RouteFamily::Crl => "crl",
            RouteFamily::Ocsp => "ocsp",
            RouteFamily::Console => "console",
            RouteFamily::Metrics => "metrics",
            RouteFamily::Other => "other",
        }
    }

    /// The family of a request path: a prefix map, so a path an attacker makes up lands
    /// in a known family (or `other`), never in a label of its own.
    pub fn of_path(path: &str) -> RouteFamily {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/admin") {
            RouteFamily::Admin
        } else if under("/acme") {
            RouteFamily::Acme
        } else if under("/.well-known/est") {
            RouteFamily::Est
        } else if under("/crl") || under("/ca") {
            RouteFamily::Crl
        } else if under("/ocsp") {
            RouteFamily::Ocsp
        } else if path == "/" || under("/console") {
            RouteFamily::Console
        } else if path == "/metrics" {
            RouteFamily::Metrics
        } else {
            RouteFamily::Other
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

fn status_class_index(status: u16) -> usize {
    match status {
        300..=399 => 1,
        400..=499 => 2,
        500..=599 => 3,
        // 1xx never ends a request here; count it with the successes.
        _ => 0,
    }
}

/// What an EST enrollment was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EstOutcome {
    /// A certificate was issued.
    Issued,
    /// Refused (names, quota, CA state…).
    Refused,
}

/// What became of one notification delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The remote accepted it.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// It failed for good (retries exhausted, or the channel is gone).
    Failed,
}

impl DeliveryOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Failed => "failed",
        }
    }
}

/// Gauges computed from the database at scrape time (see `ra::metrics`).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `(intermediate CA id, quota remaining)` of every enabled intermediate.
    pub quota_remaining: Vec<(String, i64)>,
    /// `(CA id, live certificates expiring within 30 days)`.
    pub expiring_30d: Vec<(String, i64)>,
}

/// The registry and its series.
struct Metrics {
    registry: Registry,
    issuances: IntCounterVec,
    acme_orders: [IntCounter; 2],
    acme_validations: IntCounterVec,
    acme_takeovers: IntCounterVec,
    est_enrollments: IntCounterVec,
    crl_signings: IntCounterVec,
    crl_signing_seconds: Histogram,
    ocsp_signings: IntCounterVec,
    ocsp_signing_seconds: Histogram,
    /// `[family][status class]`, resolved once.
    http: Vec<[Histogram; 4]>,
    /// `[commit, rollback]`.
    db_tx: [Histogram; 2],
    batch_jobs: HistogramVec,
    deliveries: IntCounterVec,
}

/// Buckets of request and transaction durations: 0.5 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of signing durations: 0.1 ms to 1 s (an RSA-4096 CRL of many entries).
const SIGNING_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Buckets of group-commit batch sizes (jobs per transaction; at most 512).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Registers `c`; a refusal (a name registered twice) is logged and the series is left
/// out of `/metrics`, never a panic on a request's path.
fn register(r: &Registry, name: &str, c: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = r.register(c) {
        tracing::error!(metric = name, error = %e, "metric not registered; left out of /metrics");
    }
}

// The names, labels and buckets below are constants; `new` fails only on an invalid
// one, which the unit tests (they build the registry) would show first. Should it fail
// anyway, the process runs without metrics (logged), never panics.
type Built<T> = std::result::Result<T, prometheus::Error>;

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Built<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    register(r, name, Box::new(c.clone()));
    Ok(c)
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Built<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    register(r, name, Box::new(h.clone()));
    Ok(h)
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Built<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    register(r, name, Box::new(h.clone()));
    Ok(h)
}

impl Metrics {
    fn new() -> Built<Metrics> {
        let r = Registry::new();
        let acme_orders = counter_vec(
            &r,
            "vellum_acme_orders_total",
            "ACME orders that reached a final status, by that status.",
            &["status"],
        )?;
        let http_vec = histogram_vec(
            &r,
            "vellum_http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by route family and status class.",
            &["route", "status_class"],
            DURATION_BUCKETS,
        )?;
        let db_tx_vec = histogram_vec(
            &r,
            "vellum_db_transaction_duration_seconds",
            "Time from BEGIN to COMMIT or ROLLBACK of a write transaction.",
            &["outcome"],
            DURATION_BUCKETS,
        )?;
        let http = RouteFamily::ALL
            .iter()
            .map(|f| STATUS_CLASSES.map(|c| http_vec.with_label_values(&[f.as_str(), c])))
            .collect();
        Ok(Metrics {
            issuances: counter_vec(
                &r,
                "vellum_issuances_total",
                "Requests that reached the issuance path, by door, issuing CA and outcome.",
                &["door", "ca", "outcome"],
            )?,
            acme_orders: [
                acme_orders.with_label_values(&["valid"]),
                acme_orders.with_label_values(&["invalid"]),
            ],
            acme_validations: counter_vec(
                &r,
                "vellum_acme_validations_total",
                "Finished ACME challenge validations (after retries), by challenge type and outcome.",
                &["challenge", "outcome"],
            )?,
            acme_takeovers: counter_vec(
                &r,
                "vellum_acme_takeovers_total",
                "ACME challenges left processing by a replica that stopped, validated again here, by challenge type.",
                &["challenge"],
            )?,
            est_enrollments: counter_vec(
                &r,
                "vellum_est_enrollments_total",
                "EST enrollments of authenticated clients, by operation, authentication kind and outcome.",
                &["operation", "auth", "outcome"],
            )?,
            crl_signings: counter_vec(
                &r,
                "vellum_crl_signings_total",
                "CRLs signed, by CA.",
                &["ca"],
            )?,
            crl_signing_seconds: histogram(
                &r,
                "vellum_crl_signing_duration_seconds",
                "Time to sign one CRL.",
                SIGNING_BUCKETS,
            )?,
            ocsp_signings: counter_vec(
                &r,
                "vellum_ocsp_signings_total",
                "OCSP responses signed, by CA.",
                &["ca"],
            )?,
            ocsp_signing_seconds: histogram(
                &r,
                "vellum_ocsp_signing_duration_seconds",
                "Time to sign one OCSP response.",
                SIGNING_BUCKETS,
            )?,
            http,
            db_tx: [
                db_tx_vec.with_label_values(&["commit"]),
                db_tx_vec.with_label_values(&["rollback"]),
            ],
            batch_jobs: histogram_vec(
                &r,
                "vellum_db_group_commit_jobs",
                "Jobs written per group-commit transaction, by writer.",
                &["writer"],
                BATCH_BUCKETS,
            )?,
            deliveries: counter_vec(
                &r,
                "vellum_notification_deliveries_total",
                "Notification delivery attempts, by channel kind and outcome.",
                &["channel", "outcome"],
            )?,
            registry: r,
        })
    }
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| {
    Metrics::new()
        .map_err(|e| tracing::error!(error = %e, "metrics could not be built; none are recorded"))
        .ok()
});

/// Whether this process records metrics at all (see [`set_recording`]).
static RECORDING: AtomicBool = AtomicBool::new(true);

/// Turns recording on or off for the whole process. The `vellum serve` binary turns it
/// off when `[metrics] enabled = false`: nobody can scrape the values, so no counter,
/// histogram or label lookup is paid for on any request. It is a process-wide switch, so
/// only a binary that runs one server sets it (tests that run many servers in one process
/// leave it on). It is also what the metrics A/B benchmark compares (docs/PERFORMANCE.md).
pub fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

fn metrics() -> Option<&'static Metrics> {
    if !RECORDING.load(Ordering::Relaxed) {
        return None;
    }
    METRICS.as_ref()
}

/// Counts one request of the issuance path. `ca` is the issuing CA's id when the request
/// named an existing CA of its tenant, `None` otherwise (no label from unchecked input).
pub fn issuance(door: Door, ca: Option<&str>, outcome: IssueOutcome) {
    let Some(m) = metrics() else { return };
    m.issuances
        .with_label_values(&[door.as_str(), ca.unwrap_or(""), outcome.as_str()])
        .inc();
}

/// Counts an ACME order reaching `valid` (`true`) or `invalid` (`false`), `n` of them.
pub fn acme_orders(valid: bool, n: u64) {
    if let Some(m) = metrics() {
        m.acme_orders[usize::from(!valid)].inc_by(n);
    }
}

/// Counts one finished ACME validation of a challenge type (`http-01`…).
pub fn acme_validation(challenge: &'static str, valid: bool) {
    let Some(m) = metrics() else { return };
    m.acme_validations
        .with_label_values(&[challenge, if valid { "valid" } else { "invalid" }])
        .inc();
}

/// Counts one ACME challenge (of type `challenge`) taken over from a replica that stopped
/// before recording its outcome (`ra::acme::takeover`).
pub fn acme_takeover(challenge: &'static str) {
    let Some(m) = metrics() else { return };
    m.acme_takeovers.with_label_values(&[challenge]).inc();
}

/// Counts one EST enrollment: operation (`simpleenroll`…), authentication kind.
pub fn est_enrollment(operation: &'static str, auth: &'static str, outcome: EstOutcome) {
    let outcome = match outcome {
        EstOutcome::Issued => "issued",
        EstOutcome::Refused => "refused",
    };
    let Some(m) = metrics() else { return };
    m.est_enrollments
        .with_label_values(&[operation, auth, outcome])
        .inc();
}

/// Counts one CRL signed for `ca` in `took`.
pub fn crl_signed(ca: &str, took: Duration) {
    if let Some(m) = metrics() {
        m.crl_signings.with_label_values(&[ca]).inc();
        m.crl_signing_seconds.observe(took.as_secs_f64());
    }
}

/// Counts one OCSP response signed for `ca` in `took`.
pub fn ocsp_signed(ca: &str, took: Duration) {
    if let Some(m) = metrics() {
        m.ocsp_signings.with_label_values(&[ca]).inc();
        m.ocsp_signing_seconds.observe(took.as_secs_f64());
    }
}

/// Records one HTTP request's duration (lock-free: the label set is resolved already).
pub fn http_request(family: RouteFamily, status: u16, took: Duration) {
    if let Some(m) = metrics() {
        m.http[family.index()][status_class_index(status)].observe(took.as_secs_f64());
    }
}

/// Records one write transaction's duration, committed or rolled back.
pub fn db_transaction(committed: bool, took: Duration) {
    if let Some(m) = metrics() {
        m.db_tx[usize::from(!committed)].observe(took.as_secs_f64());
    }
}

/// The batch-size histogram of one group-commit writer.
#[derive(Clone)]
pub struct GroupCommitSizes(Option<Histogram>);

impl GroupCommitSizes {
    /// Records one transaction of `jobs` jobs.
    pub fn observe(&self, jobs: usize) {
        if let Some(h) = &self.0 {
            h.observe(jobs as f64);
        }
    }
}

/// The batch-size histogram of the group-commit writer `writer` (resolved once, at its
/// start; the writers are named in the code, so the label set is closed).
pub fn group_commit_sizes(writer: &str) -> GroupCommitSizes {
    GroupCommitSizes(metrics().map(|m| m.batch_jobs.with_label_values(&[writer])))
}

/// Counts one notification delivery attempt on a channel kind (`webhook`, `email`, or
/// `none` when the channel is gone).
pub fn notification_delivery(channel: &'static str, outcome: DeliveryOutcome) {
    let Some(m) = metrics() else { return };
    m.deliveries
        .with_label_values(&[channel, outcome.as_str()])
        .inc();
}

/// The whole exposition: every series of the registry, then the gauges of `snapshot`.
pub fn render(snapshot: &Snapshot) -> crate::Result<String> {
    let mut families = metrics().map(|m| m.registry.gather()).unwrap_or_default();
    let scrape = Registry::new();
    let quota = IntGaugeVec::new(
        Opts::new(
            "vellum_ca_quota_remaining",
            "Certificates an enabled intermediate CA may still issue.",
        ),
        &["ca"],
    )
    .map_err(crate::Error::internal)?;
    let expiring = IntGaugeVec::new(
        Opts::new(
            "vellum_certificates_expiring_30d",
            "Live (not revoked, not deleted) certificates expiring within 30 days, by issuing CA.",
        ),
        &["ca"],
    )
    .map_err(crate::Error::internal)?;
    for (ca, n) in &snapshot.quota_remaining {
        quota.with_label_values(&[ca]).set(*n);
    }
    for (ca, n) in &snapshot.expiring_30d {
        expiring.with_label_values(&[ca]).set(*n);
    }
    scrape
        .register(Box::new(quota))
        .map_err(crate::Error::internal)?;
    scrape
        .register(Box::new(expiring))
        .map_err(crate::Error::internal)?;
    families.extend(scrape.gather());
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(crate::Error::internal)?;
    String::from_utf8(out).map_err(crate::Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_closed_families() {
        for (path, family) in [
            ("/admin/v1/cas", RouteFamily::Admin),
            ("/administrator", RouteFamily::Other),
            ("/acme/directory", RouteFamily::Acme),
            ("/.well-known/est/simpleenroll", RouteFamily::Est),
            ("/crl/abc.crl", RouteFamily::Crl),
            ("/ca/abc.pem", RouteFamily::Crl),
            ("/ocsp/abc/MEUw", RouteFamily::Ocsp),
            ("/", RouteFamily::Console),
            ("/console/app.js", RouteFamily::Console),
            ("/metrics", RouteFamily::Metrics),
            ("/metrics/x", RouteFamily::Other),
            ("/healthz", RouteFamily::Other),
        ] {
            assert_eq!(RouteFamily::of_path(path), family, "{path}");
        }
        assert_eq!(status_class_index(204), 0);
        assert_eq!(status_class_index(304), 1);
        assert_eq!(status_class_index(404), 2);
        assert_eq!(status_class_index(503), 3);
    }

    /// What one admin issuance records, timed alone (`cargo test --release -p vellum-core
    /// -- --ignored metrics_cost_per_issuance --nocapture`; see docs/PERFORMANCE.md).
    #[test]
    #[ignore]
    fn metrics_cost_per_issuance() {
        let sizes = group_commit_sizes("vellum-recorder");
        let n = 1_000_000u32;
        let started = std::time::Instant::now();
        for i in 0..n {
            let took = Duration::from_micros(u64::from(i % 5000));
            issuance(Door::Admin, Some("01a2-bench-ca"), IssueOutcome::Issued);
            http_request(RouteFamily::Admin, 201, took);
            db_transaction(true, took);
            sizes.observe(8);
        }
        let per = started.elapsed() / n;
        println!("metrics recorded per issuance: {per:?}");
    }

    #[test]
    fn the_exposition_carries_counters_and_scrape_gauges() {
        issuance(Door::Est, Some("ca-unit"), IssueOutcome::RefusedQuota);
        http_request(RouteFamily::Ocsp, 200, Duration::from_millis(2));
        let text = render(&Snapshot {
            quota_remaining: vec![("ca-unit".into(), 7)],
            expiring_30d: vec![],
        })
        .unwrap();
        assert!(text.contains(
            "vellum_issuances_total{ca=\"ca-unit\",door=\"est\",outcome=\"refused-quota\"} 1"
        ));
        assert!(text.contains("# TYPE vellum_http_request_duration_seconds histogram"));
        assert!(text.contains("vellum_ca_quota_remaining{ca=\"ca-unit\"} 7"));
    }
}
