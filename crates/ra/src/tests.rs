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
