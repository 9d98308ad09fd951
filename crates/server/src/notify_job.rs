//! Notification background work: the reminder scheduler (one replica at a time, under
//! the `notify-schedule` lease) and the delivery worker (every replica; deliveries are
//! claimed under per-row leases, so replicas share the queue without sending twice).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::App;

const LEASE: &str = "notify-schedule";

/// Runs the scheduler until `shutdown` turns true.
pub async fn schedule(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let holder = uuid::Uuid::new_v4().to_string();
    let every = Duration::from_secs(app.config.notifications.scheduler_interval_secs);
    loop {
        match schedule_once(&app, &holder).await {
            Ok(Some(r)) if r.queued > 0 => {
                tracing::info!(
                    looked_at = r.looked_at,
                    queued = r.queued,
                    "reminders queued"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reminder pass failed; retrying next round"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = shutdown.changed() => return,
        }
    }
}

/// One scheduler pass if this replica holds (or takes) the lease.
pub async fn schedule_once(
    app: &App,
    holder: &str,
) -> vellum_core::error::Result<Option<ra::notify::ScheduleReport>> {
    let now = app.now();
    let lease = 2 * app.config.notifications.scheduler_interval_secs as i64 + 60;
    let mut tx = app.store.begin().await?;
    let held = store::crls::take_lease(&mut tx, LEASE, holder, now, now + lease).await?;
    tx.commit().await?;
    if !held {
        return Ok(None);
    }
    ra::notify::schedule(app, now).await.map(Some)
}

/// Runs the delivery worker until `shutdown` turns true.
pub async fn deliver(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let holder = uuid::Uuid::new_v4().to_string();
    let idle = Duration::from_millis(app.config.notifications.delivery_interval_ms);
    loop {
        let pause = match ra::notify::deliver(&app, &holder).await {
            // A full batch: more may be due at once.
            Ok(n) if n > 0 => Duration::ZERO,
            Ok(_) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "delivery round failed; retrying");
                idle * 4
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {},
                _ = shutdown.changed() => return,
            }
        }
    }
}
