//! Short-lived read caches for the hot paths (every issuance reads its CA, every admin
//! request its token, every EST request its service and account, every ACME request its
//! directory and account).
//!
//! Rules that keep them safe:
//! - an entry lives at most [`TTL`]; a change made by *another* replica (PostgreSQL) is
//!   seen within that time;
//! - a change made by *this* process retires them when its transaction commits: the
//!   store's write functions of cached tables mark the transaction, and its commit calls
//!   [`Caches::invalidate`], which bumps a generation number and so retires every entry;
//! - nothing a cache returns is trusted for a decision the database can make at commit:
//!   the recorder's quota update re-checks that the CA is still enabled, in service and
//!   signing with the same certificate (`store::cas::spend`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::{acme, cas::CaRow, est::Service, tenants::Token};

/// Longest life of a cached entry.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries one map holds before it is emptied (bounds memory under key churn).
const MAX_ENTRIES: usize = 10_000;

/// The caches of one process.
#[derive(Debug, Default)]
pub struct Caches {
    generation: AtomicU64,
    /// CA rows by `tenant_id/ca_id`.
    pub cas: TtlMap<CaRow>,
    /// Live API tokens by hash.
    pub tokens: TtlMap<Token>,
    /// EST services (CA, settings, Basic account) by `label-or-id NUL username`.
    pub est: TtlMap<Service>,
    /// ACME directories (CA and settings) by CA id.
    pub acme: TtlMap<(Arc<CaRow>, Arc<acme::Settings>)>,
    /// ACME accounts by id.
    pub acme_accounts: TtlMap<acme::Account>,
    /// Per-CA rate-limit overrides by CA id.
    pub rate_limits: TtlMap<crate::rate_limits::Overrides>,
}

impl Caches {
    /// Forgets everything (after any change to CAs, their settings or tokens).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current generation, to pass to [`TtlMap::get`] and [`TtlMap::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `map[key]` when fresh; otherwise `load()`s it and keeps what it found (an absent
    /// value is not kept). The generation is read before loading, so a value loaded while
    /// a change lands is never served afterwards.
    pub async fn read_through<V, E, Fut>(
        &self,
        map: &TtlMap<V>,
        key: &str,
        load: impl FnOnce() -> Fut,
    ) -> Result<Option<Arc<V>>, E>
    where
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let generation = self.generation();
        if let Some(v) = map.get(key, generation) {
            return Ok(Some(v));
        }
        let Some(v) = load().await? else {
            return Ok(None);
        };
        let v = Arc::new(v);
        map.put(key.to_string(), generation, v.clone());
        Ok(Some(v))
    }
}

/// A map whose entries expire after [`TTL`] or when the generation moves on.
#[derive(Debug)]
pub struct TtlMap<V> {
    map: RwLock<HashMap<String, Entry<V>>>,
}

#[derive(Debug)]
struct Entry<V> {
    at: Instant,
    generation: u64,
    value: Arc<V>,
}

impl<V> Default for TtlMap<V> {
    fn default() -> Self {
        TtlMap {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<V> TtlMap<V> {
    /// The fresh entry for `key`, if any.
    pub fn get(&self, key: &str, generation: u64) -> Option<Arc<V>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|e| e.generation == generation && e.at.elapsed() < TTL)
            .map(|e| e.value.clone())
    }

    /// Stores `value` read under `generation` (read the generation *before* the database).
    pub fn put(&self, key: String, generation: u64, value: Arc<V>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                at: Instant::now(),
                generation,
                value,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_with_the_generation_and_the_clock() {
        let caches = Caches::default();
        let g = caches.generation();
        caches.cas.put("t/a".into(), g, Arc::new(CaRow::default()));
        assert!(caches.cas.get("t/a", caches.generation()).is_some());
        assert!(caches.cas.get("t/b", caches.generation()).is_none());
        caches.invalidate();
        assert!(
            caches.cas.get("t/a", caches.generation()).is_none(),
            "a local change retires the entry at once"
        );
        let g = caches.generation();
        caches.tokens.put("h".into(), g, Arc::new(Token::default()));
        std::thread::sleep(TTL + Duration::from_millis(50));
        assert!(
            caches.tokens.get("h", g).is_none(),
            "entries live at most TTL"
        );
    }

    #[tokio::test]
    async fn read_through_loads_once_and_keeps_only_what_exists() {
        let caches = Caches::default();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Some(Token::default()))
        };
        assert!(caches
            .read_through(&caches.tokens, "h", load)
            .await
            .unwrap()
            .is_some());
        assert!(caches
            .read_through(&caches.tokens, "h", load)
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the second read is served from the cache"
        );
        let missing = caches
            .read_through(&caches.tokens, "m", || async { Ok::<_, ()>(None) })
            .await
            .unwrap();
        assert!(missing.is_none());
        assert!(
            caches.tokens.get("m", caches.generation()).is_none(),
            "absence is not kept"
        );
    }

    #[test]
    fn a_value_read_before_an_invalidation_is_never_served() {
        let caches = Caches::default();
        let g = caches.generation();
        // A change lands between the read and the put.
        caches.invalidate();
        caches.cas.put("t/a".into(), g, Arc::new(CaRow::default()));
        assert!(caches.cas.get("t/a", caches.generation()).is_none());
    }
}
