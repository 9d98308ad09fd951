//! A challenge left `processing` by a replica that died is validated by another.
//!
//! A challenge's validation runs in the process that accepted its `POST` (or that took it
//! over): nothing else finishes it. When that process dies between the start
//! ([`super::state::CHALLENGE_START`]) and the outcome, the challenge would stay
//! `processing` until its authorization expires. So the start records when
//! (`processing_since`), and every replica sweeps ([`SWEEP_EVERY`]) for challenges
//! processing for longer than the lease ([`lease`]): longer than any live validation can
//! take, so a live one is never validated twice in normal operation. One conditional
//! UPDATE claims them (`store::acme_sets::claim_stale_challenges`: their
//! `processing_since` moves to now, so of two replicas sweeping at once one claims each
//! row, and the claimer holds a new lease), and the claimer validates them again as a
//! `POST` would. The outcome is recorded only while the challenge is still `processing`
//! ([`super::state::VALIDATED`]): a replica that was only slow and records late changes
//! nothing.
//!
//! Which challenges are taken over is [`taken_over`]; the store's statement says the same
//! in SQL, and the integration test `acme_takeover` checks the two agree.

use std::time::Duration;

use store::Store;
use vellum_core::error::Result;

/// Attempts per validation.
pub const ATTEMPTS: u32 = 3;

/// The pause after failed attempt `n` (0-based) before the next: 0.5 s, 1 s, …
pub fn pause_after(n: u32) -> Duration {
    Duration::from_millis(500 * u64::from(n + 1))
}

/// The longest a validation runs when each attempt is bounded by `per_attempt` (the
/// validator's timeout): every attempt timing out, and the pauses between them.
pub fn longest_validation(per_attempt: Duration) -> Duration {
    let pauses: Duration = (0..ATTEMPTS.saturating_sub(1)).map(pause_after).sum();
    per_attempt * ATTEMPTS + pauses
}

/// Added to [`longest_validation`]: recording the outcome (a group commit, a batch
/// retried once), scheduling under load, and the clocks of two replicas disagreeing by a
/// few seconds (each stamps `processing_since` with its own).
pub const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// How long a challenge may be `processing` before another replica takes it over, for a
/// validator whose attempts are bounded by `per_attempt`, in whole seconds (rounded up).
/// With the default 10 s timeout: 3 × 10 s + 0.5 s + 1 s + 15 s → 47 s.
pub fn lease(per_attempt: Duration) -> Duration {
    let d = longest_validation(per_attempt) + LEASE_MARGIN;
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// How often each replica sweeps. A stale challenge is taken over between `lease` and
/// `lease + SWEEP_EVERY` after its validation started.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3);

/// Most challenges one sweep claims (the longest waiting first); more wait for the next.
pub const SWEEP_LIMIT: i64 = 100;

/// The staleness rule: a challenge `processing` since `processing_since` (`None`: never
/// stamped, by a binary older than migration 0026, which may still be validating it) of
/// an authorization that expires at `authz_expires_at` is taken over at `now` when it has
/// been processing for longer than `lease` and its authorization has not expired (one
/// that has reads as expired already, `super::state::authz_effective`: nothing would use
/// the outcome).
pub fn taken_over(
    processing_since: Option<i64>,
    authz_expires_at: i64,
    now: i64,
    lease: Duration,
) -> bool {
    match processing_since {
        Some(since) => since < stale_before(now, lease) && authz_expires_at > now,
        None => false,
    }
}

/// Challenges processing since before this (Unix seconds) are stale at `now`.
pub fn stale_before(now: i64, lease: Duration) -> i64 {
    now - i64::try_from(lease.as_secs()).unwrap_or(i64::MAX / 2)
}

/// Claims, at `now`, up to [`SWEEP_LIMIT`] challenges [`taken_over`] says are stale, in
/// one statement committed before this returns; the caller validates them. Each claimed
/// challenge is the caller's for a new `lease`.
pub async fn claim(store: &Store, now: i64, lease: Duration) -> Result<Vec<String>> {
    let mut tx = store.begin().await?;
    let ids = store::acme_sets::claim_stale_challenges(
        &mut tx,
        now,
        stale_before(now, lease),
        SWEEP_LIMIT,
    )
    .await?;
    tx.commit().await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    #[test]
    fn the_lease_outlasts_the_longest_live_validation() {
        let ten = Duration::from_secs(10);
        assert_eq!(longest_validation(ten), Duration::from_millis(31_500));
        assert_eq!(lease(ten), Duration::from_secs(47));
        assert!(lease(ten) >= longest_validation(ten) + LEASE_MARGIN);
        // Derived from the validator's timeout, not fixed.
        assert_eq!(lease(Duration::from_secs(30)), Duration::from_secs(107));
        assert_eq!(lease(Duration::from_millis(300)), Duration::from_secs(18));
        assert!(SWEEP_EVERY < lease(Duration::ZERO));
    }

    #[test]
    fn only_a_challenge_processing_for_longer_than_the_lease_is_taken_over() {
        let lease = Duration::from_secs(47);
        let live = NOW + 3600;
        // Processing for exactly the lease: not yet; one second more: taken over.
        assert!(!taken_over(Some(NOW - 47), live, NOW, lease));
        assert!(taken_over(Some(NOW - 48), live, NOW, lease));
        assert!(
            !taken_over(Some(NOW - 5), live, NOW, lease),
            "live validation"
        );
        assert!(!taken_over(Some(NOW), live, NOW, lease));
        // Rows processing before migration 0026 got 0: taken over at once.
        assert!(taken_over(Some(0), live, NOW, lease));
        // Never stamped (an older binary is validating it): left alone.
        assert!(!taken_over(None, live, NOW, lease));
        // Its authorization has expired: nothing would use the outcome.
        assert!(!taken_over(Some(0), NOW, NOW, lease));
        assert!(!taken_over(Some(0), NOW - 1, NOW, lease));
        assert!(taken_over(Some(0), NOW + 1, NOW, lease));
        assert_eq!(stale_before(NOW, lease), NOW - 47);
    }

    #[test]
    fn attempts_pause_longer_each_time() {
        assert_eq!(ATTEMPTS, 3);
        assert_eq!(pause_after(0), Duration::from_millis(500));
        assert_eq!(pause_after(1), Duration::from_millis(1000));
    }
}
