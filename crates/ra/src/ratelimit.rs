//! Rate limits of the public doors, counted in this process's memory.
//!
//! Two kinds of counter, both keyed by a string (hashed with a per-process random key to a
//! `u64`, so an entry costs 16 bytes plus the map's overhead whatever the key):
//!
//! - [`Limiter`]: "at most `limit` per `period`" as a GCRA (generic cell rate algorithm,
//!   the token bucket written as one "theoretical arrival time" per key): a burst of
//!   `limit` is allowed, then one more every `period / limit`. A refusal says exactly when
//!   the next request will be allowed.
//! - [`Backoff`]: failed authentications. `free` failures are allowed; each further one
//!   locks the key for `base · 2^k` (k = failures beyond `free`, minus one), at most
//!   `max`. While locked every attempt is refused without being checked (that is the point:
//!   a refused password guess costs no argon2). Failures are forgotten [`FORGET_AFTER`]
//!   after the last one ([`Backoff::succeed`] forgets them at once, for callers that
//!   want a success to count).
//!
//! Both are exact for one process. With several replicas behind a load balancer each
//! counts what it sees, so the effective limit is up to N times the configured one
//! (documented in docs/ARCHITECTURE.md, "Rate limits").
//!
//! Memory is bounded: each map holds at most `max_keys` entries. Expired entries are
//! dropped first; if the map is still full, the eighth of the entries that restrict least
//! (nearest to expiry; for failed logins, unlocked keys with the fewest failures) is evicted, so a flood of new keys cannot push out the
//! keys that are actually being limited, and eviction costs O(1) amortised.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use store::rate_limits::Overrides;
pub use vellum_core::config::BackoffRule;
use vellum_core::config::RateLimits;

/// Failures of a [`Backoff`] key are forgotten this long after the last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// "At most `limit` per `period`"; a `limit` of 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (0: no limit).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `limit` per hour.
    pub fn per_hour(limit: u32) -> Rate {
        Rate {
            limit,
            period: Duration::from_secs(3600),
        }
    }

    fn interval(&self) -> Duration {
        self.period / self.limit.max(1)
    }
}

/// A refusal: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// Time until a retry can succeed.
    pub retry_after: Duration,
}

impl Denied {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn secs(&self) -> u64 {
        let s = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        s.max(1)
    }
}

/// Keys hashed to `u64` under a per-process random key, with a monotonic clock in
/// nanoseconds since the map was made.
struct Table<V> {
    hasher: RandomState,
    epoch: Instant,
    max_keys: usize,
    map: Mutex<HashMap<u64, V>>,
}

impl<V> Table<V> {
    fn new(max_keys: usize) -> Self {
        Table {
            hasher: RandomState::new(),
            epoch: Instant::now(),
            max_keys: max_keys.max(16),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, V>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for one more key: drops entries whose `expiry` has passed, then, when
    /// still full, (at least) the eighth that restricts least by `rank`.
    fn make_room(
        map: &mut HashMap<u64, V>,
        max_keys: usize,
        now: u64,
        expiry: impl Fn(&V) -> u64,
        rank: impl Fn(&V) -> u64,
    ) {
        if map.len() < max_keys {
            return;
        }
        map.retain(|_, v| expiry(v) > now);
        if map.len() < max_keys {
            return;
        }
        let mut ranks: Vec<u64> = map.values().map(&rank).collect();
        let cut = ranks.len() / 8;
        let (_, threshold, _) = ranks.select_nth_unstable(cut);
        let threshold = *threshold;
        map.retain(|_, v| rank(v) > threshold);
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// "At most N per period" counters (GCRA), see the module documentation.
pub struct Limiter {
    /// Theoretical arrival time per key, ns since `epoch`.
    table: Table<u64>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiter({} keys)", self.table.len())
    }
}

impl Limiter {
    /// A limiter holding at most `max_keys` keys.
    pub fn new(max_keys: usize) -> Limiter {
        Limiter {
            table: Table::new(max_keys),
        }
    }

    /// Takes one event of `key` if `rate` allows it now; otherwise says when it will.
    pub fn acquire(&self, key: &str, rate: Rate) -> Result<(), Denied> {
        self.acquire_at(key, rate, Instant::now())
    }

    /// [`Limiter::acquire`] at a given time (tests).
    pub fn acquire_at(&self, key: &str, rate: Rate, at: Instant) -> Result<(), Denied> {
        if rate.limit == 0 {
            return Ok(());
        }
        let (k, now) = (self.table.hash(key), self.table.nanos(at));
        let mut map = self.table.lock();
        let tat = map.get(&k).copied().unwrap_or(now).max(now);
        let next = tat.saturating_add(nanos(rate.interval()));
        let allowed_until = now.saturating_add(nanos(rate.period));
        if next > allowed_until {
            return Err(Denied {
                retry_after: Duration::from_nanos(next - allowed_until),
            });
        }
        if !map.contains_key(&k) {
            Table::make_room(&mut map, self.table.max_keys, now, |t| *t, |t| *t);
        }
        map.insert(k, next);
        Ok(())
    }

    /// Whether one more event of `key` would be allowed now, without taking it.
    pub fn check(&self, key: &str, rate: Rate) -> Result<(), Denied> {
        self.check_at(key, rate, Instant::now())
    }

    /// [`Limiter::check`] at a given time (tests).
    pub fn check_at(&self, key: &str, rate: Rate, at: Instant) -> Result<(), Denied> {
        if rate.limit == 0 {
            return Ok(());
        }
        let (k, now) = (self.table.hash(key), self.table.nanos(at));
        let map = self.table.lock();
        let tat = map.get(&k).copied().unwrap_or(now).max(now);
        let next = tat.saturating_add(nanos(rate.interval()));
        let allowed_until = now.saturating_add(nanos(rate.period));
        if next > allowed_until {
            return Err(Denied {
                retry_after: Duration::from_nanos(next - allowed_until),
            });
        }
        Ok(())
    }

    /// Counts one event of `key` whether or not it is allowed (events that already
    /// happened, such as a failed validation); the count never exceeds one period's worth.
    pub fn record(&self, key: &str, rate: Rate) {
        self.record_at(key, rate, Instant::now())
    }

    /// [`Limiter::record`] at a given time (tests).
    pub fn record_at(&self, key: &str, rate: Rate, at: Instant) {
        if rate.limit == 0 {
            return;
        }
        let (k, now) = (self.table.hash(key), self.table.nanos(at));
        let mut map = self.table.lock();
        let tat = map.get(&k).copied().unwrap_or(now).max(now);
        let next = tat
            .saturating_add(nanos(rate.interval()))
            .min(now.saturating_add(nanos(rate.period)));
        if !map.contains_key(&k) {
            Table::make_room(&mut map, self.table.max_keys, now, |t| *t, |t| *t);
        }
        map.insert(k, next);
    }

    /// Keys held (tests, metrics).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failure count and lock of one [`Backoff`] key (times in ns since the table's epoch).
#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    last: u64,
    locked_until: u64,
}

impl Strikes {
    fn expiry(&self) -> u64 {
        self.last
            .saturating_add(nanos(FORGET_AFTER))
            .max(self.locked_until)
    }

    /// Eviction order: unlocked keys by failure count, then locked keys by lock end.
    fn rank(&self, now: u64) -> u64 {
        if self.locked_until > now {
            u64::from(u32::MAX).saturating_add(self.locked_until)
        } else {
            u64::from(self.failures)
        }
    }
}

/// Failed-authentication counters with exponential back-off, see the module documentation.
pub struct Backoff {
    table: Table<Strikes>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backoff({} keys)", self.table.len())
    }
}

impl Backoff {
    /// A table holding at most `max_keys` keys.
    pub fn new(max_keys: usize) -> Backoff {
        Backoff {
            table: Table::new(max_keys),
        }
    }

    /// Refused while `key` is locked.
    pub fn check(&self, key: &str) -> Result<(), Denied> {
        self.check_at(key, Instant::now())
    }

    /// [`Backoff::check`] at a given time (tests).
    pub fn check_at(&self, key: &str, at: Instant) -> Result<(), Denied> {
        let (k, now) = (self.table.hash(key), self.table.nanos(at));
        match self.table.lock().get(&k) {
            Some(s) if s.locked_until > now => Err(Denied {
                retry_after: Duration::from_nanos(s.locked_until - now),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`; returns the lock it now has, if any.
    pub fn fail(&self, key: &str, rule: BackoffRule) -> Option<Denied> {
        self.fail_at(key, rule, Instant::now())
    }

    /// [`Backoff::fail`] at a given time (tests).
    pub fn fail_at(&self, key: &str, rule: BackoffRule, at: Instant) -> Option<Denied> {
        if rule.free == 0 {
            return None;
        }
        let (k, now) = (self.table.hash(key), self.table.nanos(at));
        let mut map = self.table.lock();
        if !map.contains_key(&k) {
            Table::make_room(&mut map, self.table.max_keys, now, Strikes::expiry, |s| {
                s.rank(now)
            });
        }
        let s = map.entry(k).or_insert(Strikes {
            failures: 0,
            last: now,
            locked_until: 0,
        });
        if now.saturating_sub(s.last) > nanos(FORGET_AFTER) {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.last = now;
        if s.failures <= rule.free {
            return None;
        }
        let doublings = (s.failures - rule.free - 1).min(40);
        let lock = rule
            .base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(rule.max)
            .min(rule.max)
            .max(Duration::from_millis(1));
        s.locked_until = s.locked_until.max(now.saturating_add(nanos(lock)));
        Some(Denied {
            retry_after: Duration::from_nanos(s.locked_until - now),
        })
    }

    /// Forgets the failures of `key` (after a success).
    pub fn succeed(&self, key: &str) {
        let k = self.table.hash(key);
        self.table.lock().remove(&k);
    }

    /// Keys held (tests, metrics).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The counters of one server.
#[derive(Debug)]
pub struct Limits {
    /// ACME: new accounts per (CA, source IP).
    pub acme_new_accounts: Limiter,
    /// ACME: new orders per account.
    pub acme_orders: Limiter,
    /// ACME: failed validations per (account, name).
    pub acme_failed_validations: Limiter,
    /// EST: failed Basic logins per (CA, user name) and per (CA, source IP).
    pub est_logins: Backoff,
    /// Admin API: failed bearer-token authentications per source IP.
    pub admin_logins: Backoff,
}

impl Limits {
    /// Counters holding at most `max_keys` keys each.
    pub fn new(max_keys: usize) -> Limits {
        Limits {
            acme_new_accounts: Limiter::new(max_keys),
            acme_orders: Limiter::new(max_keys),
            acme_failed_validations: Limiter::new(max_keys),
            est_logins: Backoff::new(max_keys),
            admin_logins: Backoff::new(max_keys),
        }
    }
}

/// The limits in force for `ca_id`: the configuration with the CA's overrides (read at
/// most a second ago, `store::cache`).
pub async fn for_ca(ra: &crate::Authority, ca_id: &str) -> vellum_core::error::Result<RateLimits> {
    let overrides = ra
        .store
        .caches()
        .read_through(&ra.store.caches().rate_limits, ca_id, || async {
            let mut conn = ra.store.reader().acquire().await?;
            store::rate_limits::get(&mut conn, ca_id).await.map(Some)
        })
        .await?
        .unwrap_or_default();
    Ok(effective(&ra.config.rate_limits, &overrides))
}

/// `config` with `o` applied.
pub fn effective(config: &RateLimits, o: &Overrides) -> RateLimits {
    let mut r = config.clone();
    let pick = |v: Option<u32>, d: u32| v.unwrap_or(d);
    r.acme_new_accounts_per_ip_per_hour = pick(
        o.acme_new_accounts_per_ip_per_hour,
        r.acme_new_accounts_per_ip_per_hour,
    );
    r.acme_orders_per_account_per_hour = pick(
        o.acme_orders_per_account_per_hour,
        r.acme_orders_per_account_per_hour,
    );
    r.acme_failed_validations_per_name_per_hour = pick(
        o.acme_failed_validations_per_name_per_hour,
        r.acme_failed_validations_per_name_per_hour,
    );
    r.est_failed_logins_per_user = pick(o.est_failed_logins_per_user, r.est_failed_logins_per_user);
    r.est_failed_logins_per_ip = pick(o.est_failed_logins_per_ip, r.est_failed_logins_per_ip);
    r
}

/// Key of a counter: its parts separated by NUL (no part can contain one and be ambiguous
/// in a way that matters: a NUL-bearing user name only ever collides with itself).
pub fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let l = Limiter::new(100);
        let t0 = Instant::now();
        let rate = Rate::per_hour(4);
        for _ in 0..4 {
            l.acquire_at("a", rate, t0).unwrap();
        }
        let d = l.acquire_at("a", rate, t0).unwrap_err();
        assert_eq!(d.retry_after, Duration::from_secs(900), "one every 15 min");
        assert_eq!(d.secs(), 900);
        // Other keys are independent.
        l.acquire_at("b", rate, t0).unwrap();
        // After the interval exactly one more is allowed.
        let t1 = t0 + Duration::from_secs(900);
        l.acquire_at("a", rate, t1).unwrap();
        assert!(l.acquire_at("a", rate, t1).is_err());
        // After a whole idle period the full burst is back.
        let t2 = t1 + H;
        for _ in 0..4 {
            l.acquire_at("a", rate, t2).unwrap();
        }
        assert!(l.acquire_at("a", rate, t2).is_err());
    }

    #[test]
    fn a_zero_limit_is_unlimited() {
        let l = Limiter::new(100);
        for _ in 0..10_000 {
            l.acquire("a", Rate::per_hour(0)).unwrap();
        }
        assert!(l.is_empty(), "nothing is stored for unlimited keys");
    }

    #[test]
    fn check_does_not_take_and_record_always_counts() {
        let l = Limiter::new(100);
        let t0 = Instant::now();
        let rate = Rate::per_hour(2);
        l.check_at("a", rate, t0).unwrap();
        l.check_at("a", rate, t0).unwrap();
        l.record_at("a", rate, t0);
        l.check_at("a", rate, t0).unwrap();
        l.record_at("a", rate, t0);
        let d = l.check_at("a", rate, t0).unwrap_err();
        assert_eq!(d.retry_after, Duration::from_secs(1800));
        // Recording beyond the limit does not push the refusal beyond one interval.
        for _ in 0..100 {
            l.record_at("a", rate, t0);
        }
        assert_eq!(
            l.check_at("a", rate, t0).unwrap_err().retry_after,
            Duration::from_secs(1800)
        );
        l.check_at("a", rate, t0 + Duration::from_secs(1800))
            .unwrap();
    }

    #[test]
    fn memory_is_bounded_and_limited_keys_survive_a_flood() {
        let l = Limiter::new(1000);
        let t0 = Instant::now();
        let tight = Rate::per_hour(1);
        l.acquire_at("victim-of-limit", tight, t0).unwrap();
        for i in 0..100_000 {
            l.acquire_at(&format!("k{i}"), Rate::per_hour(1000), t0)
                .unwrap();
        }
        assert!(l.len() <= 1000, "{}", l.len());
        assert!(
            l.acquire_at("victim-of-limit", tight, t0).is_err(),
            "the most restricted key was not evicted"
        );
    }

    #[test]
    fn backoff_locks_after_the_free_failures_and_doubles() {
        let b = Backoff::new(100);
        let rule = BackoffRule {
            free: 3,
            base: Duration::from_secs(2),
            max: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.fail_at("u", rule, t0), None);
            b.check_at("u", t0).unwrap();
        }
        let d = b.fail_at("u", rule, t0).unwrap();
        assert_eq!(d.retry_after, Duration::from_secs(2));
        assert_eq!(b.check_at("u", t0).unwrap_err().secs(), 2);
        let t1 = t0 + Duration::from_secs(2);
        b.check_at("u", t1).unwrap();
        assert_eq!(b.fail_at("u", rule, t1).unwrap().secs(), 4);
        let t2 = t1 + Duration::from_secs(4);
        assert_eq!(b.fail_at("u", rule, t2).unwrap().secs(), 8);
        let t3 = t2 + Duration::from_secs(8);
        assert_eq!(b.fail_at("u", rule, t3).unwrap().secs(), 10, "capped");
        // A success forgets everything.
        b.succeed("u");
        b.check_at("u", t3).unwrap();
        assert_eq!(b.fail_at("u", rule, t3), None);
        // Failures an hour old are forgotten.
        for _ in 0..3 {
            b.fail_at("v", rule, t0);
        }
        assert_eq!(b.fail_at("v", rule, t0 + H + Duration::from_secs(1)), None);
    }

    #[test]
    fn backoff_with_zero_free_failures_is_off_and_memory_is_bounded() {
        let b = Backoff::new(500);
        let off = BackoffRule {
            free: 0,
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            assert_eq!(b.fail("x", off), None);
        }
        assert!(b.is_empty());
        let rule = BackoffRule {
            free: 1,
            base: Duration::from_secs(60),
            max: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        b.fail_at("locked", rule, t0);
        b.fail_at("locked", rule, t0);
        for i in 0..50_000 {
            b.fail_at(&format!("ip{i}"), rule, t0);
        }
        assert!(b.len() <= 500, "{}", b.len());
        assert!(b.check_at("locked", t0).is_err());
    }
}
