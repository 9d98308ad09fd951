//! Bulk actions' selection rules: a call names at most [`MAX_ITEMS`] certificates, by ids
//! or by a list filter, and the selection is resolved (and refused when too large) before
//! anything is done. Each item then goes through the same function as its single call
//! (`revoke`, `renew`, `inventory::delete_certificate`, `managed::delete`…), so quota,
//! rules and audit are the same; the front end collects the per-item outcomes.

use std::collections::HashSet;

use crate::Authority;
use store::certificates::CertFilter;
use store::managed::ManagedFilter;
use vellum_core::error::{Error, Result};

/// Most certificates one bulk call acts on.
pub const MAX_ITEMS: usize = 1000;

/// The ids a bulk call names, in order, duplicates dropped: 1 to [`MAX_ITEMS`] of them
/// (422 naming `ids` otherwise). Whether each is the tenant's is answered per item.
pub fn check_ids(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Err(Error::invalid("ids", "must name at least one certificate"));
    }
    let mut seen = HashSet::new();
    let unique: Vec<String> = ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect();
    if unique.len() > MAX_ITEMS {
        return Err(Error::invalid(
            "ids",
            format!(
                "names {} certificates; one bulk call acts on at most {MAX_ITEMS}",
                unique.len()
            ),
        ));
    }
    Ok(unique)
}

fn too_many() -> Error {
    Error::invalid(
        "filter",
        format!(
            "matches more than {MAX_ITEMS} certificates, the most one bulk call acts on; \
             narrow the filter (nothing was done)"
        ),
    )
}

/// The ids of the tenant's certificates `f` selects now (at most [`MAX_ITEMS`]; more is a
/// 422 naming `filter`, and nothing is done).
pub async fn certificate_ids(
    ra: &Authority,
    tenant_id: &str,
    f: &CertFilter,
) -> Result<Vec<String>> {
    let mut conn = ra.store.reader().acquire().await?;
    let ids =
        store::certificates::ids(&mut conn, tenant_id, f, ra.now(), MAX_ITEMS as i64 + 1).await?;
    if ids.len() > MAX_ITEMS {
        return Err(too_many());
    }
    Ok(ids)
}

/// The ids of the tenant's managed certificates `f` selects now (same limit).
pub async fn managed_ids(
    ra: &Authority,
    tenant_id: &str,
    f: &ManagedFilter,
) -> Result<Vec<String>> {
    let mut conn = ra.store.reader().acquire().await?;
    let ids = store::managed::ids(&mut conn, tenant_id, f, ra.now(), MAX_ITEMS as i64 + 1).await?;
    if ids.len() > MAX_ITEMS {
        return Err(too_many());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deduplicated_and_bounded() {
        let ids = vec!["a".to_string(), "b".into(), "a".into()];
        assert_eq!(check_ids(&ids).unwrap(), vec!["a", "b"]);
        assert_eq!(check_ids(&[]).unwrap_err().field(), Some("ids"));
        let many: Vec<String> = (0..=MAX_ITEMS).map(|i| i.to_string()).collect();
        let e = check_ids(&many).unwrap_err();
        assert_eq!(e.field(), Some("ids"));
        assert!(e.to_string().contains("at most 1000"), "{e}");
    }
}
