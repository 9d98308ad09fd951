//! The registration authority without a server: an [`Authority`] over a fresh SQLite
//! store and a fixed [`Clock`] that the tests move (refund window, service period,
//! renewal window).

use ca::keys::{KeyAlgorithm, MasterKey};
use ca::profile::SubjectFields;
use store::tenants::{self, Tenant};
use store::Store;
use vellum_core::config::Config;
use vellum_core::error::Error;
use vellum_core::time::Clock;

use crate::hierarchy::{self, EnableMode, Purchase};
use crate::issue::Issued;
use crate::spec::{CertSpec, Requester};
use crate::Authority;

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000;
const TENANT: &str = "tenant-1";

struct Fixture {
    ra: Authority,
    _dir: tempfile::TempDir,
}

async fn authority() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "VELLUM_DATA_DIR".to_string(),
        dir.path().display().to_string(),
    )];
    let config = Config::load_with_env(None, &env).unwrap();
    let store = Store::connect(&config.database_url(), 4).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tenants::insert_tenant(
        &mut tx,
        &Tenant {
            id: TENANT.into(),
            name: "t".into(),
            entity: "t".into(),
            created_at: T0,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
    let ra = Authority::new(config, store, master, Clock::fixed(T0)).unwrap();
    Fixture { ra, _dir: dir }
}

fn purchase(months: i64) -> Purchase {
    Purchase {
        subject: SubjectFields {
            common_name: "Test Root".into(),
            ..Default::default()
        },
        key_algorithm: KeyAlgorithm::EcP256,
        validity_days: 3650,
        service_months: months,
        quota: 10,
        intermediate_common_name: Some("Test Issuing".into()),
    }
}

/// A root and an enabled intermediate holding 5 certificates of quota.
async fn hierarchy(ra: &Authority, months: i64) -> String {
    let (root, inter) = hierarchy::purchase_root(ra, TENANT, &purchase(months))
        .await
        .unwrap();
    hierarchy::enable(ra, TENANT, &root.id, EnableMode::Generate)
        .await
        .unwrap();
    hierarchy::enable(ra, TENANT, &inter.id, EnableMode::Generate)
        .await
        .unwrap();
    hierarchy::assign_quota(ra, TENANT, &root.id, &inter.id, 5)
        .await
        .unwrap();
    inter.id
}

async fn issue(ra: &Authority, ca: &str, days: i64) -> Result<Issued, Error> {
    let spec: CertSpec = serde_json::from_value(serde_json::json!({
        "type": "server", "common_name": "a.example", "validity_days": days,
        "sans": [{"type": "dns", "value": "a.example"}]
    }))
    .unwrap();
    let who = Requester {
        tenant_id: TENANT.into(),
        id: Some("test".into()),
        audit: None,
    };
    let req = spec.request(ca, spec.generated_key()?, who)?;
    crate::issue::issue(ra, req).await
}

#[tokio::test]
async fn refund_window_is_seven_days_by_the_clock() {
    let f = authority().await;
    let (a, _) = hierarchy::purchase_root(&f.ra, TENANT, &purchase(12))
        .await
        .unwrap();
    let (b, _) = hierarchy::purchase_root(&f.ra, TENANT, &purchase(12))
        .await
        .unwrap();
    f.ra.clock.advance(7 * DAY);
    let refunded = hierarchy::refund(&f.ra, TENANT, &a.id).await.unwrap();
    assert_eq!(refunded.status, vellum_core::status::CaStatus::Refunded);
    f.ra.clock.advance(1);
    let e = hierarchy::refund(&f.ra, TENANT, &b.id)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("no longer refundable"), "{e}");
}

#[tokio::test]
async fn issuance_stops_when_the_service_period_ends_and_quota_is_spent_once() {
    let f = authority().await;
    let ca = hierarchy(&f.ra, 1).await;
    let issued = issue(&f.ra, &ca, 30).await.unwrap();
    assert_eq!(issued.record.not_before, T0 - 60, "backdated one minute");
    let inter = hierarchy::load(&f.ra, TENANT, &ca).await.unwrap();
    assert_eq!(inter.quota_remaining, 4, "one certificate spent one unit");
    // A certificate may not outlive the service period it is issued in…
    let e = issue(&f.ra, &ca, 90).await.map(|_| ()).unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref field, .. } if field == "validity_days"),
        "{e}"
    );
    // …and once the period is over the CA issues nothing.
    f.ra.clock.set(inter.service_until);
    let e = issue(&f.ra, &ca, 1).await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("service period"), "{e}");
    let inter = hierarchy::load(&f.ra, TENANT, &ca).await.unwrap();
    assert_eq!(inter.quota_remaining, 4, "a refusal spends nothing");
}

#[tokio::test]
async fn renewal_opens_thirty_days_before_expiry() {
    let f = authority().await;
    let ca = hierarchy(&f.ra, 12).await;
    let old = issue(&f.ra, &ca, 90).await.unwrap().record;
    let who = || Requester {
        tenant_id: TENANT.into(),
        id: Some("test".into()),
        audit: None,
    };
    let e = crate::renew::renew(&f.ra, &old, false, who())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("\"force\": true"), "{e}");
    f.ra.clock.advance(61 * DAY);
    let new = crate::renew::renew(&f.ra, &old, false, who())
        .await
        .unwrap()
        .record;
    assert_eq!(new.renewed_from.as_deref(), Some(old.id.as_str()));
    assert_eq!(new.not_before, T0 + 61 * DAY - 60);
    assert_ne!(new.serial, old.serial);
}

#[tokio::test]
async fn spent_quota_refuses_with_the_ca_and_spends_nothing_more() {
    let f = authority().await;
    let ca = hierarchy(&f.ra, 12).await;
    for _ in 0..5 {
        issue(&f.ra, &ca, 30).await.unwrap();
    }
    let e = issue(&f.ra, &ca, 30).await.map(|_| ()).unwrap_err();
    match &e {
        Error::QuotaExhausted { ca: which, detail } => {
            assert_eq!(which, &ca);
            assert!(detail.contains("assign quota"), "{detail}");
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    let inter = hierarchy::load(&f.ra, TENANT, &ca).await.unwrap();
    assert_eq!(inter.quota_remaining, 0, "never below zero");
}

#[tokio::test]
async fn the_recorder_refuses_a_certificate_signed_under_a_former_ca_certificate() {
    use crate::record::{Job, Records, Refusal};
    use store::batch::{Outcome, Work};
    let f = authority().await;
    let ca = hierarchy(&f.ra, 12).await;
    let record = issue(&f.ra, &ca, 30).await.unwrap().record;
    let job = |serial: &str, id: &str| Job {
        ca_id: ca.clone(),
        ca_serial: serial.into(),
        record: store::certificates::CertRow {
            id: id.into(),
            serial: format!("{id:0>40}"),
            ..record.clone()
        },
        audit: None,
        followup: None,
    };
    let inter = hierarchy::load(&f.ra, TENANT, &ca).await.unwrap();
    let current = inter.serial.clone().unwrap();
    let (stale, fresh) = (job("00ff", "c1"), job(&current, "c2"));
    let outcomes = Records::new(f.ra.clock.clone())
        .commit(&f.ra.store, &[&stale, &fresh])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Refused(Refusal::CaChanged {
                ca: ca.clone(),
                status: vellum_core::status::CaStatus::Enabled,
                out_of_service: false,
            }),
            Outcome::Committed,
        ],
        "one job refused, the other of the same batch recorded"
    );
    let e: Error = Refusal::CaChanged {
        ca: ca.clone(),
        status: vellum_core::status::CaStatus::Revoked,
        out_of_service: false,
    }
    .into();
    assert!(matches!(e, Error::CaChanged { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was issued"), "{e}");
    let inter = hierarchy::load(&f.ra, TENANT, &ca).await.unwrap();
    assert_eq!(inter.quota_remaining, 3, "the refused job spent nothing");
}

/// Unix seconds of a UTC date at noon.
fn noon(y: i32, m: u8, d: u8) -> i64 {
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    date.with_hms(12, 0, 0)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
}

/// A hierarchy bought at `at` with `months` of service: (root id, intermediate id).
async fn hierarchy_at(ra: &Authority, at: i64, months: i64) -> (String, String) {
    ra.clock.set(at);
    let inter = hierarchy(ra, months).await;
    let row = hierarchy::load(ra, TENANT, &inter).await.unwrap();
    (row.parent_id.unwrap(), inter)
}

#[tokio::test]
async fn a_one_month_service_allows_the_calendar_month_of_the_purchase() {
    let f = authority().await;
    // Bought on January 1st: one month is 31 days, all through the month.
    let (_, jan) = hierarchy_at(&f.ra, noon(2026, 1, 1), 1).await;
    f.ra.clock.advance(10 * DAY);
    issue(&f.ra, &jan, 31)
        .await
        .expect("31 days on a 1-month service bought on January 1st");
    let e = issue(&f.ra, &jan, 32).await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("the maximum is 31 days"), "{e}");
    // Bought on January 31st: one month ends on February 28th (28 days).
    let (_, end_of_jan) = hierarchy_at(&f.ra, noon(2026, 1, 31), 1).await;
    let row = hierarchy::load(&f.ra, TENANT, &end_of_jan).await.unwrap();
    assert_eq!(row.service_until, noon(2026, 2, 28));
    issue(&f.ra, &end_of_jan, 28).await.unwrap();
    let e = issue(&f.ra, &end_of_jan, 29).await.map(|_| ()).unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref field, .. } if field == "validity_days"),
        "{e}"
    );
    assert!(e.to_string().contains("the maximum is 28 days"), "{e}");
}

#[tokio::test]
async fn renewing_a_service_counts_calendar_months_from_the_purchase_and_moves_intermediates() {
    let f = authority().await;
    let (root, inter) = hierarchy_at(&f.ra, noon(2026, 1, 31), 1).await;
    let renewed = hierarchy::renew_service(&f.ra, TENANT, &root, 1)
        .await
        .unwrap();
    assert_eq!(
        renewed.service_until,
        noon(2026, 3, 31),
        "two months from January 31st, not one month from February 28th"
    );
    assert_eq!(renewed.service_months, 2);
    assert_eq!(renewed.service_started_at, noon(2026, 1, 31));
    let i = hierarchy::load(&f.ra, TENANT, &inter).await.unwrap();
    assert_eq!(
        (i.service_until, i.service_months, i.service_started_at),
        (noon(2026, 3, 31), 2, noon(2026, 1, 31)),
        "the intermediate follows its root"
    );
    // Two months from January 31st: 59 days allowed, not 60.
    issue(&f.ra, &inter, 59).await.unwrap();
    assert!(issue(&f.ra, &inter, 60).await.is_err());
    // Twelve months or more: no longer a short service.
    hierarchy::renew_service(&f.ra, TENANT, &root, 10)
        .await
        .unwrap();
    issue(&f.ra, &inter, 400).await.unwrap();
    // Only roots; months 1..=1200 and at most 1200 in all.
    let e = hierarchy::renew_service(&f.ra, TENANT, &inter, 1)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert!(e.to_string().contains(&root), "names the root: {e}");
    for months in [0, 1201] {
        let e = hierarchy::renew_service(&f.ra, TENANT, &root, months)
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "months"),
            "{e}"
        );
    }
    let e = hierarchy::renew_service(&f.ra, TENANT, &root, 1190)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("buy at most 1188 more"), "{e}");
}

#[tokio::test]
async fn a_lapsed_service_restarts_at_its_renewal() {
    let f = authority().await;
    let (root, inter) = hierarchy_at(&f.ra, noon(2026, 1, 1), 1).await;
    f.ra.clock.set(noon(2026, 3, 15));
    let row = hierarchy::load(&f.ra, TENANT, &inter).await.unwrap();
    assert!(hierarchy::service_expired(&row, f.ra.now()));
    let e = issue(&f.ra, &inter, 1).await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("service period"), "{e}");
    let r = hierarchy::renew_service(&f.ra, TENANT, &root, 1)
        .await
        .unwrap();
    assert_eq!(
        (r.service_started_at, r.service_until, r.service_months),
        (noon(2026, 3, 15), noon(2026, 4, 15), 1)
    );
    let row = hierarchy::load(&f.ra, TENANT, &inter).await.unwrap();
    assert!(!hierarchy::service_expired(&row, f.ra.now()));
    issue(&f.ra, &inter, 31).await.expect("in service again");
}

#[test]
fn renewed_period_arithmetic() {
    use store::cas::ServicePeriod;
    let start = noon(2026, 1, 31);
    let cur = ServicePeriod {
        started_at: start,
        months: 1,
        until: noon(2026, 2, 28),
    };
    let next = hierarchy::renewed_period(cur, 1, start + DAY).unwrap();
    assert_eq!(next.until, noon(2026, 3, 31));
    assert_eq!(next.started_at, start);
    let lapsed = hierarchy::renewed_period(cur, 1, noon(2026, 2, 28)).unwrap();
    assert_eq!(
        (lapsed.started_at, lapsed.until),
        (noon(2026, 2, 28), noon(2026, 3, 28)),
        "a service that ended restarts at the renewal"
    );
}

#[test]
fn setting_quota_moves_the_difference() {
    use store::cas::QuotaPair;
    let pair = |root_available, remaining| QuotaPair {
        root_available,
        remaining,
        assigned: remaining,
    };
    assert_eq!(
        hierarchy::quota_to_move("r", "i", pair(5, 5), 8).unwrap(),
        3
    );
    assert_eq!(
        hierarchy::quota_to_move("r", "i", pair(5, 5), 1).unwrap(),
        -4
    );
    assert_eq!(
        hierarchy::quota_to_move("r", "i", pair(0, 5), 5).unwrap(),
        0
    );
    assert_eq!(
        hierarchy::quota_to_move("r", "i", pair(5, 5), 10).unwrap(),
        5
    );
    let e = hierarchy::quota_to_move("r", "i", pair(5, 5), 11).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("from 5 to 11")
            && m.contains("takes 6")
            && m.contains("has 5 available")
            && m.contains("at most 10"),
        "{m}"
    );
    let e = hierarchy::quota_to_move("r", "i", pair(5, 5), -1).unwrap_err();
    assert!(matches!(e, Error::Invalid { ref field, .. } if field == "remaining"));
}

#[tokio::test]
async fn setting_quota_keeps_what_was_spent_and_the_root_total() {
    let f = authority().await;
    let (root, inter) = hierarchy_at(&f.ra, T0, 12).await;
    // Root: 10 bought, 5 assigned. Spend 2 of the intermediate's 5.
    issue(&f.ra, &inter, 30).await.unwrap();
    issue(&f.ra, &inter, 30).await.unwrap();
    let check = |remaining, available| {
        let ra = &f.ra;
        let (root, inter) = (root.clone(), inter.clone());
        async move {
            let r = hierarchy::load(ra, TENANT, &root).await.unwrap();
            let i = hierarchy::load(ra, TENANT, &inter).await.unwrap();
            assert_eq!(
                (i.quota_remaining, r.quota_available),
                (remaining, available)
            );
            assert_eq!(i.quota_assigned - i.quota_remaining, 2, "spent stays spent");
            assert_eq!(r.quota_total, r.quota_available + i.quota_assigned);
        }
    };
    check(3, 5).await;
    hierarchy::set_quota(&f.ra, TENANT, &root, &inter, 8)
        .await
        .unwrap();
    check(8, 0).await;
    hierarchy::set_quota(&f.ra, TENANT, &root, &inter, 0)
        .await
        .unwrap();
    check(0, 8).await;
    let e = hierarchy::set_quota(&f.ra, TENANT, &root, &inter, 9)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("has 8 available"), "{e}");
    check(0, 8).await;
    let e = hierarchy::set_quota(&f.ra, TENANT, &inter, &inter, 1)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "only from a root: {e}");
}
