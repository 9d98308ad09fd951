//! Time as the rules see it: Unix seconds, RFC 3339 rendering, and [`Clock`], which
//! tests replace to move time (expiry, refund window, service period, renewal windows).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Current wall-clock time as Unix seconds.
pub fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 UTC rendering of Unix seconds (the number itself when out of range).
pub fn rfc3339(unix: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The clock the registration authority reads: the system's, or a test's that only moves
/// when told to. Cloning shares the same time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    /// A clock standing at `unix` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn fixed(unix: i64) -> Clock {
        Clock {
            fixed: Some(Arc::new(AtomicI64::new(unix))),
        }
    }

    /// Current time as Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(t) => t.load(Ordering::Relaxed),
            None => now(),
        }
    }

    /// Moves a fixed clock to `unix` (no effect on the system clock).
    pub fn set(&self, unix: i64) {
        if let Some(t) = &self.fixed {
            t.store(unix, Ordering::Relaxed);
        }
    }

    /// Moves a fixed clock forward by `secs` (no effect on the system clock).
    pub fn advance(&self, secs: i64) {
        if let Some(t) = &self.fixed {
            t.fetch_add(secs, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::fixed(1_000);
        let shared = c.clone();
        assert_eq!(c.now(), 1_000);
        c.advance(86_400);
        assert_eq!(shared.now(), 87_400);
        shared.set(5);
        assert_eq!(c.now(), 5);
        let sys = Clock::system();
        sys.advance(1_000_000);
        assert!((sys.now() - now()).abs() <= 1);
    }

    #[test]
    fn rfc3339_renders_utc_and_falls_back_to_the_number() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
