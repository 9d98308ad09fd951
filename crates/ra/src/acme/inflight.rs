//! Validations running in this process.
//!
//! A client that polls an order or authorization while its validation is still running
//! would be told `pending` and `Retry-After: 1`, and wait a whole second for a validation
//! that usually takes milliseconds. Instead, the poll waits for the running validation
//! (at most [`HOLD`]) and answers with its outcome. This needs no coordination between
//! replicas: a poll that reaches a replica not running the validation answers at once, as
//! before.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Longest a poll waits for a validation running here.
pub const HOLD: Duration = Duration::from_secs(2);

type Registry = Arc<Mutex<HashMap<String, watch::Receiver<()>>>>;

/// Authorizations whose validation runs in this process.
#[derive(Debug, Default)]
pub struct InFlight {
    running: Registry,
    /// The challenges being validated (the takeover leaves them alone).
    challenges: Arc<Mutex<HashSet<String>>>,
    /// Validations finished so far (see [`InFlight::mark`]).
    finished: Arc<AtomicU64>,
}

/// Where [`InFlight`] stood before a read; see [`InFlight::settle`].
#[derive(Debug, Clone, Copy)]
struct Mark(u64);

/// Held by a running validation; dropping it (after its outcome is committed) releases the
/// polls waiting for it.
#[derive(Debug)]
pub struct Running {
    authz_id: String,
    challenge_id: String,
    running: Registry,
    challenges: Arc<Mutex<HashSet<String>>>,
    finished: Arc<AtomicU64>,
    mine: watch::Receiver<()>,
    _done: watch::Sender<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = self.challenges.lock() {
            c.remove(&self.challenge_id);
        }
        if let Ok(mut m) = self.running.lock() {
            // Another challenge of the same authorization may have registered since.
            if m.get(&self.authz_id)
                .is_some_and(|rx| rx.same_channel(&self.mine))
            {
                m.remove(&self.authz_id);
            }
        }
    }
}

impl InFlight {
    /// Registers a validation of challenge `challenge_id` of `authz_id` starting now.
    pub fn start(&self, authz_id: &str, challenge_id: &str) -> Running {
        let (done, rx) = watch::channel(());
        if let Ok(mut c) = self.challenges.lock() {
            c.insert(challenge_id.to_string());
        }
        if let Ok(mut m) = self.running.lock() {
            m.insert(authz_id.to_string(), rx.clone());
        }
        Running {
            authz_id: authz_id.to_string(),
            challenge_id: challenge_id.to_string(),
            running: self.running.clone(),
            challenges: self.challenges.clone(),
            finished: self.finished.clone(),
            mine: rx,
            _done: done,
        }
    }

    /// Whether challenge `id` is being validated in this process (registered by
    /// [`InFlight::start`], its [`Running`] not dropped yet).
    pub fn runs_challenge(&self, id: &str) -> bool {
        self.challenges
            .lock()
            .map(|c| c.contains(id))
            .unwrap_or(false)
    }

    /// Reads with `load`. When `waiting_on` names authorizations the result waits for (a
    /// pending order or authorization, a processing challenge), and a validation of one of
    /// them runs here or finished during the read, waits for it (at most [`HOLD`]) and
    /// reads again.
    pub async fn read<T, E, F, Fut>(
        &self,
        load: F,
        waiting_on: impl Fn(&T) -> Vec<String>,
    ) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mark = self.mark();
        let first = load().await?;
        let ids = waiting_on(&first);
        if ids.is_empty() || !self.settle(&ids, mark, HOLD).await {
            return Ok(first);
        }
        load().await
    }

    /// Taken before reading a pending object, for [`InFlight::settle`].
    fn mark(&self) -> Mark {
        Mark(self.finished.load(Ordering::SeqCst))
    }

    /// After a read (begun after `mark`) found an object pending: waits for validations
    /// of `authz_ids` running here (at most `hold`), and says whether to read again,
    /// which is also the case when some validation finished after `mark` (it may have
    /// committed between the read and this call).
    async fn settle(&self, authz_ids: &[String], mark: Mark, hold: Duration) -> bool {
        let waited = self.wait(authz_ids, hold).await;
        waited || self.finished.load(Ordering::SeqCst) != mark.0
    }

    /// Waits, at most `hold`, until none of `authz_ids` is being validated here. Returns
    /// whether there was anything to wait for (so the caller reads the state again).
    async fn wait(&self, authz_ids: &[String], hold: Duration) -> bool {
        let waits: Vec<watch::Receiver<()>> = match self.running.lock() {
            Ok(m) => authz_ids
                .iter()
                .filter_map(|id| m.get(id).cloned())
                .collect(),
            Err(_) => return false,
        };
        if waits.is_empty() {
            return false;
        }
        let _ = tokio::time::timeout(hold, async {
            for mut rx in waits {
                // Never sent to: returns when the sender is dropped.
                let _ = rx.changed().await;
            }
        })
        .await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_wait_for_a_running_validation_and_no_longer() {
        let f = Arc::new(InFlight::default());
        let ids = ["a1".to_string()];
        assert!(!f.wait(&ids, HOLD).await, "nothing running: no wait");
        let running = f.start("a1", "c1");
        assert!(f.runs_challenge("c1") && !f.runs_challenge("c2"));
        let t = std::time::Instant::now();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(running);
        });
        assert!(f.wait(&ids, HOLD).await);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
        assert!(waited < HOLD, "released by the validation: {waited:?}");
        release.await.unwrap();
        assert!(!f.wait(&ids, HOLD).await, "finished: no wait");
        assert!(!f.runs_challenge("c1"));
        // Two challenges of one authorization: the first to finish leaves the other's
        // registration in place.
        let first = f.start("a3", "c3a");
        let second = f.start("a3", "c3b");
        drop(first);
        let t = std::time::Instant::now();
        assert!(f.wait(&["a3".to_string()], Duration::from_millis(50)).await);
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "still waits for the second"
        );
        drop(second);
        assert!(!f.wait(&["a3".to_string()], HOLD).await);
        // A validation that finished between a read and the check: read again.
        let mark = f.mark();
        drop(f.start("a2", "c2"));
        assert!(f.settle(&["a2".to_string()], mark, HOLD).await);
        assert!(!f.settle(&["a2".to_string()], f.mark(), HOLD).await);
        // A validation that runs longer than the hold.
        let _stuck = f.start("a1", "c1");
        let t = std::time::Instant::now();
        assert!(f.wait(&ids, Duration::from_millis(30)).await);
        assert!(t.elapsed() < Duration::from_millis(500));
    }
}
