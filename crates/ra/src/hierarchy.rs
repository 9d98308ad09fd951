//! The CA hierarchy lifecycle: purchase, enable, quota, revoke, reset, refund, remove.
//!
//! Each function checks the domain rule, then performs the change in one transaction
//! whose SQL re-checks the state it expects, so concurrent requests cannot both win.

use time::OffsetDateTime;

use crate::Authority;
use ca::keys::KeyAlgorithm;
use ca::profile::{self, PublicationUrls, SubjectFields, Validity};
use ca::{cert_facts, upload};
use store::{self, cas::CaRow, cas::Enablement, cas::QuotaPair, cas::ServicePeriod};
use vellum_core::error::{Error, Result};
use vellum_core::status::{
    CaKind, CaStatus, KeySource, KeyStorage, NotificationEvent, RevocationReason,
};

/// Days a purchase stays refundable.
pub const REFUND_WINDOW_DAYS: i64 = 7;

/// Whether `ca` may be refunded at `now` (no message built: for views and lists).
pub fn refundable(ca: &CaRow, now: i64) -> bool {
    ca.status == CaStatus::Pending && within_refund_window(ca, now)
}

fn within_refund_window(ca: &CaRow, now: i64) -> bool {
    now <= ca.purchased_at + REFUND_WINDOW_DAYS * 86_400
}

/// Whether `ca` may be refunded at `now`: pending, and purchased at most
/// [`REFUND_WINDOW_DAYS`] days ago; the refusal names which rule failed.
pub fn check_refundable(ca: &CaRow, now: i64) -> Result<()> {
    let id = &ca.id;
    if ca.status != CaStatus::Pending {
        let hint = if ca.status == CaStatus::Enabled {
            "; reset it first"
        } else {
            ""
        };
        return Err(Error::conflict(format!(
            "CA {id} is {}; only a pending CA can be refunded{hint}",
            ca.status
        )));
    }
    if !within_refund_window(ca, now) {
        return Err(Error::conflict(format!(
            "CA {id} was purchased at {}, more than {REFUND_WINDOW_DAYS} days ago; it is no longer refundable",
            vellum_core::time::rfc3339(ca.purchased_at)
        )));
    }
    Ok(())
}

/// Largest quota a single purchase may add.
pub const MAX_QUOTA_PURCHASE: i64 = 10_000_000;
/// Longest CA certificate validity, days (100 years).
pub const MAX_CA_VALIDITY_DAYS: i64 = 36_500;

/// What a purchase of a root or an intermediate names.
#[derive(Debug, Clone)]
pub struct Purchase {
    /// The CA certificate's subject.
    pub subject: SubjectFields,
    /// The CA key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// Validity of the CA certificate, days.
    pub validity_days: i64,
    /// Roots only: service period in months.
    pub service_months: i64,
    /// Roots only: certificate quota.
    pub quota: i64,
    /// Roots only: common name of the intermediate bought with it.
    pub intermediate_common_name: Option<String>,
}

/// How a CA gets its key and certificate.
pub enum EnableMode {
    /// Generate a key pair (sealed in the database) and a certificate.
    Generate,
    /// Generate the key pair inside the configured PKCS#11 token (it never leaves it) and
    /// a certificate signed through the token.
    GenerateInToken,
    /// Use an uploaded certificate and its private key.
    Upload {
        /// The CA certificate (PEM).
        certificate_pem: String,
        /// Its private key (PEM).
        private_key_pem: String,
    },
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `months` calendar months after `unix` (day clamped to the month's length).
pub fn add_months(unix: i64, months: i64) -> Result<i64> {
    let t = OffsetDateTime::from_unix_timestamp(unix).map_err(Error::internal)?;
    let total = t.year() as i64 * 12 + (t.month() as i64 - 1) + months;
    let year = i32::try_from(total.div_euclid(12)).map_err(Error::internal)?;
    let month = time::Month::try_from((total.rem_euclid(12) + 1) as u8).map_err(Error::internal)?;
    let day = t.day().min(month.length(year));
    let date = time::Date::from_calendar_date(year, month, day).map_err(Error::internal)?;
    Ok(t.replace_date(date).unix_timestamp())
}

/// Loads a CA of the tenant, or 404.
pub async fn load(ra: &Authority, tenant_id: &str, id: &str) -> Result<CaRow> {
    let mut conn = ra.store.reader().acquire().await?;
    store::cas::get(&mut conn, tenant_id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no CA with id {id} in this tenant")))
}

/// Loads an intermediate CA of the tenant for a front end's settings (`service` names the
/// front end in the refusal for a root: "ACME", "EST").
pub async fn load_intermediate(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    service: &str,
) -> Result<CaRow> {
    let ca = load(ra, tenant_id, id).await?;
    if ca.is_root() {
        return Err(Error::conflict(format!(
            "CA {id} is a root CA; {service} is served by intermediate CAs"
        )));
    }
    Ok(ca)
}

fn validate_purchase(p: &Purchase, root: bool) -> Result<()> {
    let cn = p.subject.common_name.trim();
    if cn.is_empty() || cn.len() > 64 {
        return Err(Error::invalid("common_name", "must be 1 to 64 characters"));
    }
    if let Some(c) = &p.subject.country {
        if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "country",
                "must be a two-letter ISO 3166 code such as \"DE\"",
            ));
        }
    }
    for (field, v) in [
        ("organization", &p.subject.organization),
        ("organizational_unit", &p.subject.organizational_unit),
        ("state", &p.subject.state),
        ("locality", &p.subject.locality),
    ] {
        if v.as_deref().is_some_and(|v| v.len() > 128) {
            return Err(Error::invalid(field, "must be at most 128 characters"));
        }
    }
    if !(1..=MAX_CA_VALIDITY_DAYS).contains(&p.validity_days) {
        return Err(Error::invalid(
            "validity_days",
            format!("must be between 1 and {MAX_CA_VALIDITY_DAYS}"),
        ));
    }
    if root {
        if !(1..=1200).contains(&p.service_months) {
            return Err(Error::invalid(
                "service_months",
                "must be between 1 and 1200",
            ));
        }
        if !(0..=MAX_QUOTA_PURCHASE).contains(&p.quota) {
            return Err(Error::invalid(
                "quota",
                format!("must be between 0 and {MAX_QUOTA_PURCHASE}"),
            ));
        }
    }
    Ok(())
}

fn pending_row(
    tenant_id: &str,
    kind: CaKind,
    parent: Option<&str>,
    p: &Purchase,
    now: i64,
    service: ServicePeriod,
) -> CaRow {
    CaRow {
        id: new_id(),
        tenant_id: tenant_id.to_string(),
        kind,
        parent_id: parent.map(str::to_string),
        status: CaStatus::Pending,
        common_name: p.subject.common_name.trim().to_string(),
        organization: p.subject.organization.clone(),
        organizational_unit: p.subject.organizational_unit.clone(),
        country: p.subject.country.clone(),
        state: p.subject.state.clone(),
        locality: p.subject.locality.clone(),
        subject: p.subject.display_string(),
        key_algorithm: p.key_algorithm.to_string(),
        validity_days: p.validity_days,
        purchased_at: now,
        service_until: service.until,
        service_months: service.months,
        service_started_at: service.started_at,
        quota_total: if kind.is_root() { p.quota } else { 0 },
        quota_available: if kind.is_root() { p.quota } else { 0 },
        crl_enabled: true,
        crl_next_update_hours: 24,
        created_at: now,
        ..CaRow::default()
    }
}

/// Buys a root CA and, with it, one pending intermediate. Returns both.
pub async fn purchase_root(
    ra: &Authority,
    tenant_id: &str,
    p: &Purchase,
) -> Result<(CaRow, CaRow)> {
    purchase_root_with_ids(ra, tenant_id, p, new_id(), new_id()).await
}

/// [`purchase_root`] with the two ids chosen by the caller: the bootstrap records them
/// before buying, so a start interrupted at any point resumes with the same CAs instead
/// of buying another pair. Both rows are inserted in one transaction.
pub async fn purchase_root_with_ids(
    ra: &Authority,
    tenant_id: &str,
    p: &Purchase,
    root_id: String,
    intermediate_id: String,
) -> Result<(CaRow, CaRow)> {
    validate_purchase(p, true)?;
    let now = ra.now();
    let service = ServicePeriod {
        started_at: now,
        months: p.service_months,
        until: add_months(now, p.service_months)?,
    };
    let mut root = pending_row(tenant_id, CaKind::Root, None, p, now, service);
    root.id = root_id;
    let mut ip = p.clone();
    ip.subject.common_name = p
        .intermediate_common_name
        .clone()
        .unwrap_or_else(|| format!("{} Issuing CA", p.subject.common_name.trim()));
    if ip.subject.common_name.len() > 64 {
        return Err(Error::invalid(
            "intermediate_common_name",
            "must be 1 to 64 characters",
        ));
    }
    let mut inter = pending_row(
        tenant_id,
        CaKind::Intermediate,
        Some(&root.id),
        &ip,
        now,
        service,
    );
    inter.id = intermediate_id;
    let mut tx = ra.store.begin().await?;
    store::cas::insert(&mut tx, &root).await?;
    store::cas::insert(&mut tx, &inter).await?;
    tx.commit().await?;
    Ok((root, inter))
}

/// Buys one more intermediate under a root of the tenant.
pub async fn purchase_intermediate(
    ra: &Authority,
    tenant_id: &str,
    parent_id: &str,
    p: &Purchase,
) -> Result<CaRow> {
    validate_purchase(p, false)?;
    let parent = load(ra, tenant_id, parent_id).await.map_err(|_| {
        Error::invalid(
            "parent_id",
            format!("no root CA with id {parent_id} in this tenant"),
        )
    })?;
    if !parent.is_root() {
        return Err(Error::invalid(
            "parent_id",
            format!("CA {parent_id} is an intermediate; intermediates are bought under a root CA"),
        ));
    }
    if !matches!(parent.status, CaStatus::Pending | CaStatus::Enabled) {
        return Err(Error::conflict(format!(
            "root CA {parent_id} is {}; intermediates can only be added to a pending or enabled root",
            parent.status
        )));
    }
    let now = ra.now();
    let row = pending_row(
        tenant_id,
        CaKind::Intermediate,
        Some(parent_id),
        p,
        now,
        service_period(&parent),
    );
    let mut tx = ra.store.begin().await?;
    store::cas::insert(&mut tx, &row).await?;
    tx.commit().await?;
    Ok(row)
}

fn subject_of(ca: &CaRow) -> SubjectFields {
    SubjectFields {
        common_name: ca.common_name.clone(),
        organization: ca.organization.clone(),
        organizational_unit: ca.organizational_unit.clone(),
        locality: ca.locality.clone(),
        state: ca.state.clone(),
        country: ca.country.clone(),
    }
}

/// pending → enabled: generates or installs the CA key and certificate.
pub async fn enable(ra: &Authority, tenant_id: &str, id: &str, mode: EnableMode) -> Result<CaRow> {
    let ca = load(ra, tenant_id, id).await?;
    if ca.status != CaStatus::Pending {
        return Err(Error::conflict(format!(
            "CA {id} is {}; only a pending CA can be enabled",
            ca.status
        )));
    }
    let now = ra.now();
    if ca.service_until <= now {
        return Err(Error::conflict(format!(
            "the service period of CA {id} ended at {}; renew its root's service or purchase a new CA",
            vellum_core::time::rfc3339(ca.service_until)
        )));
    }
    let parent = match &ca.parent_id {
        Some(pid) => {
            let parent = load(ra, tenant_id, pid).await?;
            if parent.status != CaStatus::Enabled {
                return Err(Error::conflict(format!(
                    "parent root CA {pid} is {}; enable the root before its intermediates",
                    parent.status
                )));
            }
            Some(parent)
        }
        None => None,
    };
    let enablement = match mode {
        EnableMode::Generate => {
            generate(ra, &ca, parent.as_ref(), now, KeyStorage::Database).await?
        }
        EnableMode::GenerateInToken => {
            generate(ra, &ca, parent.as_ref(), now, KeyStorage::Pkcs11).await?
        }
        EnableMode::Upload {
            certificate_pem,
            private_key_pem,
        } => {
            let v = upload::validate(
                &certificate_pem,
                &private_key_pem,
                parent.as_ref().and_then(|p| p.certificate_der.as_deref()),
                now,
            )?;
            let facts = cert_facts(&v.certificate_der)?;
            Enablement {
                subject: facts.subject,
                key_algorithm: v.key_algorithm.to_string(),
                key_source: KeySource::Uploaded,
                not_before: facts.not_before,
                not_after: facts.not_after,
                serial: facts.serial,
                key_sealed: Some(ra.master.seal_key(&ca.id, &v.key)?),
                key_storage: KeyStorage::Database,
                pkcs11_key: None,
                certificate_der: v.certificate_der,
            }
        }
    };
    let mut tx = ra.store.begin().await?;
    if !store::cas::enable(&mut tx, id, &enablement, now).await? {
        return Err(Error::conflict(format!(
            "CA {id} changed state while being enabled; fetch it and retry"
        )));
    }
    notify_ca(&mut tx, tenant_id, id, NotificationEvent::CaEnabled, now).await?;
    tx.commit().await?;
    load(ra, tenant_id, id).await
}

async fn generate(
    ra: &Authority,
    ca: &CaRow,
    parent: Option<&CaRow>,
    now: i64,
    storage: KeyStorage,
) -> Result<Enablement> {
    let alg: KeyAlgorithm = ca
        .key_algorithm
        .parse()
        .map_err(|e: String| Error::invalid("key_algorithm", e))?;
    let hsm = match storage {
        KeyStorage::Database => None,
        KeyStorage::Pkcs11 => Some(ra.hsm.clone().ok_or_else(|| {
            Error::invalid(
                "key_storage",
                "is \"pkcs11\" but this server has no PKCS#11 token configured ([pkcs11] \
                 module, token_label or slot, and the PIN); use \"database\" or configure one",
            )
        })?),
    };
    // Key generation takes up to seconds (RSA; any key in a token): keep it off the async
    // workers.
    let ca_id = ca.id.clone();
    let key: ca::CaKey = tokio::task::spawn_blocking(move || match hsm {
        None => alg.generate().map(ca::CaKey::Database),
        Some(hsm) => hsm.generate(alg, &ca_id).map(ca::CaKey::Pkcs11),
    })
    .await
    .map_err(Error::internal)??;
    let (key_sealed, pkcs11_key) = match &key {
        ca::CaKey::Database(k) => (Some(ra.master.seal_key(&ca.id, k)?), None),
        ca::CaKey::Pkcs11(k) => (None, Some((k.id_hex().to_string(), k.label().to_string()))),
    };
    let not_before = now - 60;
    let mut not_after = now + ca.validity_days * 86_400;
    let subject = subject_of(ca);
    let signed = match parent {
        None => profile::self_signed_root(
            &subject,
            Validity {
                not_before,
                not_after,
            },
            &key,
        ),
        Some(parent) => {
            if let Some(limit) = parent.not_after {
                not_after = not_after.min(limit);
            }
            let urls = PublicationUrls::for_key(
                &ra.config.public_http_url(),
                &parent.id,
                parent.key_generation,
            );
            match crate::signer_for(ra, parent).await {
                Ok(signer) => profile::intermediate(
                    &subject,
                    Validity {
                        not_before,
                        not_after,
                    },
                    &key,
                    &signer,
                    &urls,
                    parent.ocsp_enabled,
                    parent.crl_enabled && parent.crl_delta_enabled,
                ),
                Err(e) => Err(e),
            }
        }
    };
    let (der, serial) = match signed {
        Ok(v) => v,
        Err(e) => {
            // Leave no orphan key behind in the token.
            if let (ca::CaKey::Pkcs11(k), Some(hsm)) = (&key, &ra.hsm) {
                let _ = hsm.destroy(k.id_hex());
            }
            return Err(e);
        }
    };
    let facts = cert_facts(&der)?;
    Ok(Enablement {
        subject: facts.subject,
        key_algorithm: alg.to_string(),
        key_source: KeySource::Generated,
        not_before,
        not_after,
        serial,
        key_sealed,
        key_storage: storage,
        pkcs11_key,
        certificate_der: der,
    })
}

/// At startup: every enabled CA whose key is in a PKCS#11 token finds it there (the
/// token is configured, logged in, and holds the key matching the CA's certificate).
/// The error names the CA and what to fix.
pub async fn check_token_keys(ra: &Authority) -> Result<()> {
    let cas = {
        let mut conn = ra.store.reader().acquire().await?;
        store::cas::enabled_in_token(&mut conn).await?
    };
    for ca in cas {
        crate::signer_for(ra, &ca).await.map_err(|e| {
            Error::config(format!(
                "CA {} ({}) keeps its key in a PKCS#11 token: {}",
                ca.id, ca.common_name, e
            ))
        })?;
    }
    Ok(())
}

/// Adds purchased quota to a root.
pub async fn purchase_quota(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    count: i64,
) -> Result<CaRow> {
    if !(1..=MAX_QUOTA_PURCHASE).contains(&count) {
        return Err(Error::invalid(
            "count",
            format!("must be between 1 and {MAX_QUOTA_PURCHASE}"),
        ));
    }
    let ca = load(ra, tenant_id, id).await?;
    if !ca.is_root() {
        return Err(Error::conflict(format!(
            "CA {id} is an intermediate; quota is purchased for its root {} and then assigned",
            ca.parent_id.as_deref().unwrap_or("?")
        )));
    }
    let mut tx = ra.store.begin().await?;
    if !store::cas::purchase_quota(&mut tx, id, count).await? {
        return Err(Error::conflict(format!(
            "root CA {id} is {}; quota can only be purchased for a pending or enabled root",
            ca.status
        )));
    }
    tx.commit().await?;
    load(ra, tenant_id, id).await
}

/// Moves `count` quota from an enabled root to one of its enabled intermediates.
pub async fn assign_quota(
    ra: &Authority,
    tenant_id: &str,
    root_id: &str,
    intermediate_id: &str,
    count: i64,
) -> Result<CaRow> {
    if !(1..=MAX_QUOTA_PURCHASE).contains(&count) {
        return Err(Error::invalid(
            "count",
            format!("must be between 1 and {MAX_QUOTA_PURCHASE}"),
        ));
    }
    check_quota_parties(ra, tenant_id, root_id, intermediate_id).await?;
    let mut tx = ra.store.begin().await?;
    if !store::cas::take_available(&mut tx, root_id, count).await? {
        drop(tx);
        let now_root = load(ra, tenant_id, root_id).await?;
        return Err(Error::conflict(format!(
            "root CA {root_id} has {} certificates of quota available, fewer than the {count} requested; purchase more first",
            now_root.quota_available
        )));
    }
    if !store::cas::credit_intermediate(&mut tx, root_id, intermediate_id, count).await? {
        return Err(Error::conflict(format!(
            "intermediate CA {intermediate_id} changed state; it must be enabled to receive quota"
        )));
    }
    tx.commit().await?;
    load(ra, tenant_id, root_id).await
}

/// The rules both quota moves check first: `root_id` is an enabled root of the tenant and
/// `intermediate_id` one of its enabled intermediates.
async fn check_quota_parties(
    ra: &Authority,
    tenant_id: &str,
    root_id: &str,
    intermediate_id: &str,
) -> Result<()> {
    let root = load(ra, tenant_id, root_id).await?;
    if !root.is_root() {
        return Err(Error::conflict(format!(
            "CA {root_id} is an intermediate; quota is assigned from a root CA"
        )));
    }
    if root.status != CaStatus::Enabled {
        return Err(Error::conflict(format!(
            "root CA {root_id} is {}; it must be enabled to assign quota",
            root.status
        )));
    }
    let inter = load(ra, tenant_id, intermediate_id).await.map_err(|_| {
        Error::invalid(
            "intermediate_id",
            format!("no CA with id {intermediate_id} in this tenant"),
        )
    })?;
    if inter.parent_id.as_deref() != Some(root_id) {
        return Err(Error::invalid(
            "intermediate_id",
            format!("CA {intermediate_id} is not an intermediate of root CA {root_id}"),
        ));
    }
    if inter.status != CaStatus::Enabled {
        return Err(Error::conflict(format!(
            "intermediate CA {intermediate_id} is {}; enable it before assigning quota",
            inter.status
        )));
    }
    Ok(())
}

/// How much quota setting an intermediate's remaining quota to `target` moves, given the
/// quota `now` holds: positive from the root to the intermediate, negative back to the
/// root. Refuses a target below zero or above [`MAX_QUOTA_PURCHASE`] (422), and a raise
/// the root's available quota cannot cover (409 naming the numbers).
pub fn quota_to_move(
    root_id: &str,
    intermediate_id: &str,
    now: QuotaPair,
    target: i64,
) -> Result<i64> {
    if !(0..=MAX_QUOTA_PURCHASE).contains(&target) {
        return Err(Error::invalid(
            "remaining",
            format!("must be between 0 and {MAX_QUOTA_PURCHASE}"),
        ));
    }
    let delta = target - now.remaining;
    if delta > now.root_available {
        return Err(Error::conflict(format!(
            "setting intermediate CA {intermediate_id} from {} to {target} remaining takes {delta} from root CA {root_id}, which has {} available; set at most {} or purchase more first",
            now.remaining,
            now.root_available,
            now.remaining + now.root_available
        )));
    }
    Ok(delta)
}

/// Sets an enabled intermediate's remaining quota to `remaining`: a raise takes the
/// difference from its enabled root's available quota, a cut gives it back. Both rows are
/// locked (root first) before they are read, so the move is exact whatever runs
/// concurrently (issuance, assigns, other sets). Answers with the root.
pub async fn set_quota(
    ra: &Authority,
    tenant_id: &str,
    root_id: &str,
    intermediate_id: &str,
    remaining: i64,
) -> Result<CaRow> {
    if !(0..=MAX_QUOTA_PURCHASE).contains(&remaining) {
        return Err(Error::invalid(
            "remaining",
            format!("must be between 0 and {MAX_QUOTA_PURCHASE}"),
        ));
    }
    check_quota_parties(ra, tenant_id, root_id, intermediate_id).await?;
    let mut tx = ra.store.begin().await?;
    let Some(pair) = store::cas::lock_quota_pair(&mut tx, root_id, intermediate_id).await? else {
        return Err(Error::conflict(format!(
            "root CA {root_id} or intermediate CA {intermediate_id} changed state; both must be enabled to move quota"
        )));
    };
    let delta = quota_to_move(root_id, intermediate_id, pair, remaining)?;
    let moved = match delta {
        0 => true,
        d if d > 0 => {
            store::cas::take_available(&mut tx, root_id, d).await?
                && store::cas::credit_intermediate(&mut tx, root_id, intermediate_id, d).await?
        }
        d => store::cas::withdraw_to_root(&mut tx, root_id, intermediate_id, -d).await?,
    };
    if !moved {
        // Unreachable while the rows are locked; refused rather than half-applied.
        return Err(Error::internal(format!(
            "quota move of {delta} between {root_id} and {intermediate_id} did not apply"
        )));
    }
    tx.commit().await?;
    load(ra, tenant_id, root_id).await
}

/// A CA's service period as stored.
pub fn service_period(ca: &CaRow) -> ServicePeriod {
    ServicePeriod {
        started_at: ca.service_started_at,
        months: ca.service_months,
        until: ca.service_until,
    }
}

/// Whether `ca`'s service period is over at `now` (it issues and enables nothing then).
pub fn service_expired(ca: &CaRow, now: i64) -> bool {
    ca.service_until <= now
}

/// Longest service a root may hold, counted from where its months start: months.
pub const MAX_SERVICE_MONTHS: i64 = 1200;

/// The service period after buying `months` more at `now`. A running service is
/// extended: its months still count from the same start in calendar months (bought on
/// 2026-01-31, 1 month ends on 2026-02-28, 2 months on 2026-03-31). A lapsed one restarts
/// at `now` for `months`. At most [`MAX_SERVICE_MONTHS`] months from the start.
pub fn renewed_period(cur: ServicePeriod, months: i64, now: i64) -> Result<ServicePeriod> {
    if !(1..=MAX_SERVICE_MONTHS).contains(&months) {
        return Err(Error::invalid(
            "months",
            format!("must be between 1 and {MAX_SERVICE_MONTHS}"),
        ));
    }
    if cur.until <= now {
        return Ok(ServicePeriod {
            started_at: now,
            months,
            until: add_months(now, months)?,
        });
    }
    let total = cur.months + months;
    if total > MAX_SERVICE_MONTHS {
        return Err(Error::invalid(
            "months",
            format!(
                "{months} more months would make the service {total} months from {}; at most {MAX_SERVICE_MONTHS} (buy at most {} more)",
                vellum_core::time::rfc3339(cur.started_at),
                (MAX_SERVICE_MONTHS - cur.months).max(0)
            ),
        ));
    }
    Ok(ServicePeriod {
        started_at: cur.started_at,
        months: total,
        until: add_months(cur.started_at, total)?,
    })
}

/// Buys `months` more service for a pending or enabled root; its intermediates follow
/// it in the same transaction. See [`renewed_period`] for the arithmetic.
pub async fn renew_service(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    months: i64,
) -> Result<CaRow> {
    // A concurrent renewal changes the period under us: read again (each one counts).
    for _ in 0..5 {
        let ca = load(ra, tenant_id, id).await?;
        if let Some(root) = &ca.parent_id {
            return Err(Error::conflict(format!(
                "CA {id} is an intermediate; its service follows its root: renew root CA {root}"
            )));
        }
        if !matches!(ca.status, CaStatus::Pending | CaStatus::Enabled) {
            return Err(Error::conflict(format!(
                "root CA {id} is {}; only a pending or enabled root's service can be renewed",
                ca.status
            )));
        }
        let from = service_period(&ca);
        let to = renewed_period(from, months, ra.now())?;
        let mut tx = ra.store.begin().await?;
        if store::cas::renew_service(&mut tx, id, &from, &to).await? {
            tx.commit().await?;
            return load(ra, tenant_id, id).await;
        }
    }
    Err(Error::conflict(format!(
        "the service period of CA {id} kept changing while being renewed; fetch it and retry"
    )))
}

/// enabled → revoked. An intermediate's certificate goes on its root's CRL and its unspent
/// quota returns to the root.
pub async fn revoke(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    reason: RevocationReason,
) -> Result<CaRow> {
    let ca = load(ra, tenant_id, id).await?;
    if ca.status != CaStatus::Enabled {
        return Err(Error::conflict(format!(
            "CA {id} is {}; only an enabled CA can be revoked",
            ca.status
        )));
    }
    if ca.is_root() {
        let live = enabled_children(ra, id).await?;
        if !live.is_empty() {
            return Err(Error::conflict(format!(
                "root CA {id} has enabled intermediates ({}); revoke them first",
                live.join(", ")
            )));
        }
    }
    let now = ra.now();
    let mut tx = ra.store.begin().await?;
    lock_parent_first(&mut tx, &ca).await?;
    if !store::cas::revoke(&mut tx, id, now, reason).await? {
        return Err(Error::conflict(format!(
            "CA {id} changed state; fetch it and retry"
        )));
    }
    // A renewal still waiting for its switch-over never becomes current; it is deleted.
    let waiting = store::generations::delete_waiting(&mut tx, id, ca.generation).await?;
    let kept = store::generations::list(&mut tx, id).await?;
    if let (Some(parent), Some(serial)) = (&ca.parent_id, &ca.serial) {
        store::cas::record_ca_revocation(&mut tx, parent, id, serial, now, reason).await?;
        // Every other certificate the root signed for this CA and that has not expired
        // (older generations, and the waiting renewal's, which may have been downloaded)
        // is revoked with it: each would otherwise still validate the CA's issuance.
        for g in kept.iter().chain(&waiting) {
            if Some(&g.serial) != ca.serial.as_ref() && g.not_after > now {
                store::cas::record_ca_revocation(&mut tx, parent, id, &g.serial, now, reason)
                    .await?;
            }
        }
        store::cas::return_unspent_quota(&mut tx, id).await?;
    }
    notify_ca(&mut tx, tenant_id, id, NotificationEvent::CaRevoked, now).await?;
    tx.commit().await?;
    forget_ocsp(ra, &ca);
    // A waiting renewal's new key in the token will never sign: destroyed (its sealed
    // copy went with its row).
    for g in waiting.iter().filter(|g| {
        g.pkcs11_key_id != ca.pkcs11_key_id
            && !kept.iter().any(|k| k.pkcs11_key_id == g.pkcs11_key_id)
    }) {
        let key = CaRow {
            key_storage: g.key_storage,
            pkcs11_key_id: g.pkcs11_key_id.clone(),
            ..ca.clone()
        };
        destroy_token_key(ra, &key);
    }
    load(ra, tenant_id, id).await
}

/// Drops this process's held OCSP answers about `ca`'s certificate (its root's) and of
/// `ca` itself; other replicas read the same from the OCSP event feed.
fn forget_ocsp(ra: &Authority, ca: &CaRow) {
    if let (Some(parent), Some(serial)) = (&ca.parent_id, &ca.serial) {
        ra.ocsp.forget(parent, Some(serial));
    }
    ra.ocsp.forget(&ca.id, None);
}

/// Queues `kind` with the CA as it is in `tx` (after the change).
async fn notify_ca(
    tx: &mut store::Tx,
    tenant_id: &str,
    id: &str,
    kind: NotificationEvent,
    now: i64,
) -> Result<()> {
    if let Some(ca) = store::cas::get(tx, tenant_id, id).await? {
        crate::notify::emit_one(tx, tenant_id, kind, crate::notify::ca_data(&ca), now).await?;
    }
    Ok(())
}

/// Locks an intermediate's root before the transaction touches the intermediate: revoke,
/// reset and refund return quota to the root, and quota moves lock root then
/// intermediate; taking the rows in the same order keeps PostgreSQL from deadlocking
/// the two.
async fn lock_parent_first(tx: &mut store::Tx, ca: &CaRow) -> Result<()> {
    match &ca.parent_id {
        Some(parent) => store::cas::lock(tx, parent).await,
        None => Ok(()),
    }
}

async fn enabled_children(ra: &Authority, id: &str) -> Result<Vec<String>> {
    let mut conn = ra.store.reader().acquire().await?;
    Ok(store::cas::children(&mut conn, id)
        .await?
        .into_iter()
        .filter(|c| c.status == CaStatus::Enabled)
        .map(|c| c.id)
        .collect())
}

/// enabled → pending: key and certificate discarded (an intermediate's old certificate is
/// listed as superseded on its root's CRL, its unspent quota returns to the root).
pub async fn reset(ra: &Authority, tenant_id: &str, id: &str) -> Result<CaRow> {
    let ca = load(ra, tenant_id, id).await?;
    if ca.status != CaStatus::Enabled {
        return Err(Error::conflict(format!(
            "CA {id} is {}; only an enabled CA can be reset",
            ca.status
        )));
    }
    let live = enabled_children(ra, id).await?;
    if !live.is_empty() {
        return Err(Error::conflict(format!(
            "CA {id} has enabled intermediates ({}); reset or revoke them first",
            live.join(", ")
        )));
    }
    let now = ra.now();
    let mut tx = ra.store.begin().await?;
    lock_parent_first(&mut tx, &ca).await?;
    // Older certificates of a renewed CA stay cryptographically valid too: they go on the
    // root's CRL with the current one, and their keys in the token with its key.
    let older: Vec<store::generations::GenerationRow> = store::generations::list(&mut tx, id)
        .await?
        .into_iter()
        .filter(|g| Some(&g.serial) != ca.serial.as_ref())
        .collect();
    // Change the row first: it locks it, so the count below sees every issuance that
    // committed before us, and none can commit after.
    if !store::cas::reset(&mut tx, id).await? {
        return Err(Error::conflict(format!(
            "CA {id} changed state; fetch it and retry"
        )));
    }
    let live_certs = store::cas::count_live_certificates(&mut tx, id, now).await?;
    if live_certs > 0 {
        tx.rollback().await?;
        return Err(Error::conflict(format!(
            "CA {id} has {live_certs} unexpired, unrevoked certificates; revoke them before resetting"
        )));
    }
    if let (Some(parent), Some(serial)) = (&ca.parent_id, &ca.serial) {
        store::cas::record_ca_revocation(
            &mut tx,
            parent,
            id,
            serial,
            now,
            RevocationReason::Superseded,
        )
        .await?;
        for g in older.iter().filter(|g| g.not_after > now) {
            store::cas::record_ca_revocation(
                &mut tx,
                parent,
                id,
                &g.serial,
                now,
                RevocationReason::Superseded,
            )
            .await?;
        }
        store::cas::return_unspent_quota(&mut tx, id).await?;
    }
    tx.commit().await?;
    forget_ocsp(ra, &ca);
    destroy_token_key(ra, &ca);
    for g in older.iter().filter(|g| g.pkcs11_key_id != ca.pkcs11_key_id) {
        let key = CaRow {
            key_storage: g.key_storage,
            pkcs11_key_id: g.pkcs11_key_id.clone(),
            ..ca.clone()
        };
        destroy_token_key(ra, &key);
    }
    load(ra, tenant_id, id).await
}

/// After a reset: the old key of a `pkcs11` CA is destroyed in the token (its
/// certificate is gone and will never be used again). Best effort: a key the token
/// could not destroy is logged and left for the operator.
fn destroy_token_key(ra: &Authority, ca: &CaRow) {
    if ca.key_storage != KeyStorage::Pkcs11 {
        return;
    }
    let (Some(hsm), Some(key_id)) = (&ra.hsm, &ca.pkcs11_key_id) else {
        return;
    };
    if let Err(e) = hsm.destroy(key_id) {
        tracing::warn!(ca = %ca.id, key_id = %key_id, error = %e,
            "could not destroy the reset CA's key in the PKCS#11 token");
    }
}

/// pending → refunded, within the refund window of the purchase. A root's pending
/// intermediates are refunded with it.
pub async fn refund(ra: &Authority, tenant_id: &str, id: &str) -> Result<CaRow> {
    let ca = load(ra, tenant_id, id).await?;
    let now = ra.now();
    check_refundable(&ca, now)?;
    let mut tx = ra.store.begin().await?;
    lock_parent_first(&mut tx, &ca).await?;
    if !ca.is_root() {
        store::cas::return_unspent_quota(&mut tx, id).await?;
    }
    if !store::cas::refund(&mut tx, id, now).await? {
        return Err(Error::conflict(format!(
            "CA {id} changed state; fetch it and retry"
        )));
    }
    if ca.is_root() {
        for child in store::cas::children(&mut tx, id).await? {
            if child.status == CaStatus::Pending {
                store::cas::refund(&mut tx, &child.id, now).await?;
            }
        }
    }
    tx.commit().await?;
    load(ra, tenant_id, id).await
}

/// revoked|refunded → removed (hidden from lists, kept for audit). A root takes its
/// remaining intermediates with it.
pub async fn remove(ra: &Authority, tenant_id: &str, id: &str) -> Result<CaRow> {
    let ca = load(ra, tenant_id, id).await?;
    if !matches!(ca.status, CaStatus::Revoked | CaStatus::Refunded) {
        return Err(Error::conflict(format!(
            "CA {id} is {}; only a revoked or refunded CA can be removed",
            ca.status
        )));
    }
    let now = ra.now();
    let mut tx = ra.store.begin().await?;
    if !store::cas::remove(&mut tx, id, now).await? {
        return Err(Error::conflict(format!(
            "CA {id} changed state; fetch it and retry"
        )));
    }
    if ca.is_root() {
        for child in store::cas::children(&mut tx, id).await? {
            if child.status == CaStatus::Pending {
                store::cas::refund(&mut tx, &child.id, now).await?;
            }
            store::cas::remove(&mut tx, &child.id, now).await?;
        }
    }
    tx.commit().await?;
    load(ra, tenant_id, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_calendar_months() {
        let jan31 = time::macros::datetime!(2026-01-31 12:00 UTC).unix_timestamp();
        let feb = add_months(jan31, 1).unwrap();
        assert_eq!(
            OffsetDateTime::from_unix_timestamp(feb).unwrap().date(),
            time::macros::date!(2026 - 02 - 28)
        );
        let next_year = add_months(jan31, 12).unwrap();
        assert_eq!(
            OffsetDateTime::from_unix_timestamp(next_year)
                .unwrap()
                .date(),
            time::macros::date!(2027 - 01 - 31)
        );
    }
}
