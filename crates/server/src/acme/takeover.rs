//! The background sweep that validates challenges a dead replica left `processing`
//! (`ra::acme::takeover` holds the rules: the lease, which challenges are stale, the
//! claim). Every replica runs it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::App;
use ra::acme::{state, takeover};

/// Runs until `shutdown` turns true: every [`takeover::SWEEP_EVERY`], claims the stale
/// challenges and validates them here.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let lease = takeover::lease(app.validator.config().timeout);
    tracing::info!(
        "ACME takeover: challenges processing for longer than the lease {} s are validated again (sweep every {} s)",
        lease.as_secs(),
        takeover::SWEEP_EVERY.as_secs()
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(takeover::SWEEP_EVERY) => {},
            _ = shutdown.changed() => return,
        }
        if let Err(e) = sweep(&app, lease).await {
            tracing::warn!(error = %e, "ACME takeover sweep failed; retrying at the next");
        }
    }
}

/// One sweep: claims, then starts a validation of each claimed challenge that is not
/// being validated here already. Returns how many it started.
async fn sweep(app: &Arc<App>, lease: Duration) -> vellum_core::error::Result<usize> {
    let now = vellum_core::time::now();
    let claimed = takeover::claim(&app.store, now, lease).await?;
    let mut started = 0;
    for id in claimed {
        // Running here (slower than the lease, or started by this replica's previous
        // sweep): the claim only renewed its lease.
        if app.acme_inflight.runs_challenge(&id) {
            continue;
        }
        // Read from the database: the claim committed, and on SQLite a row changed
        // behind the store (a restore, a test) may not be in the in-memory copy.
        let mut conn = app.store.reader().acquire().await?;
        let Some((ch, a)) = store::acme::challenge_with_authz(&mut conn, &id).await? else {
            continue;
        };
        let account = store::acme::account_by_id(&mut conn, &a.account_id).await?;
        drop(conn);
        if !state::challenge_in_progress(ch.status) {
            continue; // its outcome was recorded between the claim and this read
        }
        let Some(account) = account else { continue };
        tracing::warn!(
            challenge = %ch.id,
            identifier = %a.id_value,
            "ACME challenge processing for longer than {} s (its replica stopped before recording an outcome): validating it here",
            lease.as_secs()
        );
        vellum_core::metrics::acme_takeover(ch.kind.as_str());
        super::authz::spawn_validation(app, &account.ca_id, &ch, &a, &account.thumbprint).await?;
        started += 1;
    }
    Ok(started)
}
