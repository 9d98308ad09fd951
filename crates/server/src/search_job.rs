//! Keeps the certificate search index up to date behind issuance (SQLite only: see
//! `store::search`). Every replica may run it; on PostgreSQL it is not started.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::App;

/// How often the index catches up. A search also tests the rows past the index's mark
/// directly, so this bounds only how many rows that is (about a second of issuance).
const EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    if app.store.backend() != store::Backend::Sqlite {
        return;
    }
    loop {
        if let Err(e) = ra::inventory::catch_up_search(&app).await {
            tracing::warn!(error = %e, "search index pass failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {},
            _ = shutdown.changed() => return,
        }
    }
}
