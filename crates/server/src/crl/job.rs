//! Background CRL refresh: every minute, the replica holding the `crl-refresh` lease
//! re-signs each CRL (and delta CRL) that is stale or close to its nextUpdate.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::App;

/// How often the job looks.
pub const INTERVAL: Duration = Duration::from_secs(60);
const LEASE: &str = "crl-refresh";

/// Runs until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let holder = uuid::Uuid::new_v4().to_string();
    loop {
        if let Err(e) = tick(&app, &holder).await {
            tracing::warn!(error = %e, "CRL refresh failed; retrying next round");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {},
            _ = shutdown.changed() => return,
        }
    }
}

/// One round: take the lease, refresh what needs it. Returns how many CAs were checked.
pub async fn tick(app: &App, holder: &str) -> vellum_core::error::Result<usize> {
    let now = vellum_core::time::now();
    let mut tx = app.store.begin().await?;
    let held = store::crls::take_lease(
        &mut tx,
        LEASE,
        holder,
        now,
        now + 2 * INTERVAL.as_secs() as i64,
    )
    .await?;
    tx.commit().await?;
    if !held {
        return Ok(0);
    }
    let mut tx = app.store.begin().await?;
    store::acme::purge_nonces(&mut tx, now).await?;
    tx.commit().await?;
    ra::ocsp::purge_events(app).await?;
    if let Err(e) = ra::rollover::switch_all_due(app).await {
        tracing::warn!(error = %e, "could not switch over renewed CAs");
    }
    let ids = {
        let mut conn = app.store.reader().acquire().await?;
        store::crls::ca_ids_with_crl(&mut conn).await?
    };
    for id in &ids {
        if let Err(e) = ra::crl::refresh(app, id).await {
            tracing::warn!(ca = %id, error = %e, "could not refresh CRL");
        }
    }
    Ok(ids.len())
}
