//! The inventory's editable and derived facts: tags of certificates and CAs (replaced
//! after the fact under the same rules as at issuance, [`crate::spec::check_tags`]) and
//! the leakage-risk advice.

use std::collections::BTreeMap;

use crate::spec::{check_tags, CertSpec};
use crate::Authority;
use store::{self, cas::CaRow, certificates::CertRow};
use vellum_core::error::{Error, Result};

/// What a certificate flagged with leakage risk (valid for more than a year,
/// [`crate::issue::LEAKAGE_RISK_DAYS`]) carries as advice.
pub const LEAKAGE_ADVICE: &str =
    "validity over one year raises the cost of a key compromise; prefer ≤ 1 year";

/// The advice for a certificate with or without the leakage-risk flag.
pub fn leakage_advice(at_risk: bool) -> Option<&'static str> {
    at_risk.then_some(LEAKAGE_ADVICE)
}

fn tags_json(tags: &BTreeMap<String, String>) -> Result<String> {
    check_tags(tags)?;
    serde_json::to_string(tags).map_err(Error::internal)
}

/// Replaces the tags of a certificate of the tenant (404 when it has none by that id).
/// A stored admin specification gets the same tags, so a renewal carries them.
pub async fn set_certificate_tags(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<CertRow> {
    let json = tags_json(tags)?;
    let not_found = || Error::not_found(format!("no certificate with id {id} in this tenant"));
    let old = {
        let mut conn = ra.store.reader().acquire().await?;
        store::certificates::get(&mut conn, tenant_id, id)
            .await?
            .ok_or_else(not_found)?
    };
    let spec_json = match serde_json::from_str::<CertSpec>(&old.spec_json) {
        Ok(mut spec) => {
            spec.tags = tags.clone();
            serde_json::to_string(&spec).map_err(Error::internal)?
        }
        // ACME and other doors store other shapes: kept as they are.
        Err(_) => old.spec_json.clone(),
    };
    let mut tx = ra.store.begin().await?;
    if !store::certificates::set_tags(&mut tx, tenant_id, id, &json, &spec_json).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    let mut conn = ra.store.reader().acquire().await?;
    store::certificates::get(&mut conn, tenant_id, id)
        .await?
        .ok_or_else(not_found)
}

/// Replaces the tags of a CA of the tenant (404 when it has none by that id; removed CAs
/// keep theirs).
pub async fn set_ca_tags(
    ra: &Authority,
    tenant_id: &str,
    id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<CaRow> {
    let json = tags_json(tags)?;
    let mut tx = ra.store.begin().await?;
    if !store::cas::set_tags(&mut tx, tenant_id, id, &json).await? {
        return Err(Error::not_found(format!(
            "no CA with id {id} in this tenant (removed CAs keep their tags)"
        )));
    }
    tx.commit().await?;
    crate::hierarchy::load(ra, tenant_id, id).await
}

/// How many certificates one search-index pass indexes in a transaction (a few
/// milliseconds of the writer's time, so issuance waits little behind it).
pub const SEARCH_BATCH: i64 = 2_000;

/// Brings the certificate search index up to date behind issuance (`store::search`):
/// batches until a short one; the number indexed.
pub async fn catch_up_search(ra: &Authority) -> Result<i64> {
    let mut total = 0;
    loop {
        let n = store::search::catch_up(&ra.store, SEARCH_BATCH).await?;
        total += n;
        if n < SEARCH_BATCH {
            return Ok(total);
        }
        // Let queued writers (issuance's group commit) in between batches.
        tokio::task::yield_now().await;
    }
}
