//! Recent ACME orders, authorizations and challenges, in memory (SQLite only).
//!
//! With SQLite one process owns the database, so it sees every write. The ACME flow reads
//! the rows it just wrote several times (an order is read by its polls, by finalize and
//! after it; an authorization by its fetch and its challenge's); this copy answers those
//! reads without a database read, the most frequent statements of an ACME order.
//!
//! It is write-through only: rows enter when the transaction that inserts them commits,
//! and every statement that changes them records the same change for the commit
//! ([`super::Tx::on_commit`]), using the ids the statement itself reported changed, so the
//! copy never decides anything the database did not. A read that misses goes to the
//! database and does not fill the copy (a fill could race a commit and bring back an old
//! row). The copy is bounded: two generations of `GENERATION` rows each; the older is
//! dropped when the newer fills up, long after an order's flow has ended. PostgreSQL
//! replicas share the database with other processes and use none of this.

use std::collections::HashMap;
use std::sync::Mutex;

use super::acme::{Authz, Challenge, Order};

/// Rows per generation, per kind.
const GENERATION: usize = 16_384;

/// A map of two generations: lookups see both, inserts go to the newer.
struct Generations<V> {
    new: HashMap<String, V>,
    old: HashMap<String, V>,
}

impl<V> Default for Generations<V> {
    fn default() -> Self {
        Generations {
            new: HashMap::new(),
            old: HashMap::new(),
        }
    }
}

impl<V> Generations<V> {
    fn get(&self, k: &str) -> Option<&V> {
        self.new.get(k).or_else(|| self.old.get(k))
    }

    fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        match self.new.get_mut(k) {
            Some(v) => Some(v),
            None => self.old.get_mut(k),
        }
    }

    /// Applies `f` to the rows with these ids that are here.
    fn update<'a>(&mut self, ids: impl IntoIterator<Item = &'a String>, mut f: impl FnMut(&mut V)) {
        for id in ids {
            if let Some(v) = self.get_mut(id) {
                f(v);
            }
        }
    }

    fn insert(&mut self, k: String, v: V) {
        if self.new.len() >= GENERATION {
            self.old = std::mem::take(&mut self.new);
        }
        self.old.remove(&k);
        self.new.insert(k, v);
    }

    fn clear(&mut self) {
        self.new.clear();
        self.old.clear();
    }
}

/// The rows; changed only through [`Recent::apply`] at commit.
#[derive(Default)]
pub struct Rows {
    orders: Generations<Order>,
    /// An authorization and its challenges, by type (as the database query sorts them).
    authzs: Generations<(Authz, Vec<Challenge>)>,
    /// Challenge id → its authorization's id.
    challenge_authz: Generations<String>,
}

/// One committed change (see the module documentation).
pub type Edit = Box<dyn FnOnce(&mut Rows) + Send>;

/// The in-memory copy.
#[derive(Default)]
pub struct Recent {
    rows: Mutex<Rows>,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recent")
    }
}

impl Recent {
    /// An order, if this process wrote it recently.
    pub fn order(&self, id: &str) -> Option<Order> {
        self.rows.lock().ok()?.orders.get(id).cloned()
    }

    /// An authorization with its challenges, if this process wrote it recently.
    pub fn authz(&self, id: &str) -> Option<(Authz, Vec<Challenge>)> {
        self.rows.lock().ok()?.authzs.get(id).cloned()
    }

    /// A challenge with its authorization, if this process wrote it recently.
    pub fn challenge(&self, id: &str) -> Option<(Challenge, Authz)> {
        let rows = self.rows.lock().ok()?;
        let authz_id = rows.challenge_authz.get(id)?;
        let (a, challenges) = rows.authzs.get(authz_id)?;
        let c = challenges.iter().find(|c| c.id == id)?;
        Some((c.clone(), a.clone()))
    }

    /// Applies the edits of a committed transaction.
    pub fn apply(&self, edits: Vec<Edit>) {
        match self.rows.lock() {
            Ok(mut rows) => {
                for e in edits {
                    e(&mut rows);
                }
            }
            Err(_) => tracing::error!("the recent ACME rows' lock is poisoned"),
        }
    }

    /// Forgets everything (after writes that bypass the store's functions, in tests).
    pub fn clear(&self) {
        if let Ok(mut rows) = self.rows.lock() {
            rows.orders.clear();
            rows.authzs.clear();
            rows.challenge_authz.clear();
        }
    }
}

impl Rows {
    /// New orders.
    pub fn insert_orders(&mut self, orders: Vec<Order>) {
        for o in orders {
            self.orders.insert(o.id.clone(), o);
        }
    }

    /// New authorizations (their challenges come with [`Rows::insert_challenges`]).
    pub fn insert_authzs(&mut self, authzs: Vec<Authz>) {
        for a in authzs {
            self.authzs.insert(a.id.clone(), (a, Vec::new()));
        }
    }

    /// New challenges of authorizations inserted before them.
    pub fn insert_challenges(&mut self, challenges: Vec<Challenge>) {
        for c in challenges {
            let Some((_, list)) = self.authzs.get_mut(&c.authz_id) else {
                continue;
            };
            self.challenge_authz
                .insert(c.id.clone(), c.authz_id.clone());
            list.push(c);
            // As the database sorts them (`ORDER BY c.type`).
            list.sort_by(|a, b| a.kind.as_str().cmp(b.kind.as_str()));
        }
    }

    /// Changes the orders with these ids.
    pub fn update_orders<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a String>,
        f: impl Fn(&mut Order),
    ) {
        self.orders.update(ids, f);
    }

    /// Changes the authorizations with these ids.
    pub fn update_authzs<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a String>,
        f: impl Fn(&mut Authz),
    ) {
        self.authzs.update(ids, |(a, _)| f(a));
    }

    /// Changes the challenges with these ids.
    pub fn update_challenges<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a String>,
        f: impl Fn(&mut Challenge),
    ) {
        for id in ids {
            let Some(authz_id) = self.challenge_authz.get(id).cloned() else {
                continue;
            };
            if let Some((_, list)) = self.authzs.get_mut(&authz_id) {
                list.iter_mut().filter(|c| &c.id == id).for_each(&f);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vellum_core::status::{
        AuthzStatus, ChallengeStatus, ChallengeType, IdentifierType, OrderStatus,
    };

    /// A pending order with placeholder fields (also the pool's tests' fixture).
    pub(crate) fn order(id: &str) -> Order {
        Order {
            id: id.into(),
            account_id: "acc".into(),
            ca_id: "ca".into(),
            status: OrderStatus::Pending,
            identifiers_json: "[]".into(),
            profile: vellum_core::status::AcmeProfile::TlsServer,
            not_before: None,
            not_after: None,
            expires_at: 0,
            error_json: None,
            certificate_id: None,
            replaces: None,
            created_at: 0,
            authz_ids_json: "[]".into(),
        }
    }

    #[test]
    fn the_older_generation_is_dropped_when_the_newer_fills_up() {
        let mut g = Generations::default();
        for i in 0..GENERATION {
            g.insert(format!("k{i}"), i);
        }
        assert_eq!(g.get("k0"), Some(&0));
        g.insert("next".into(), 0);
        assert_eq!(g.get("k0"), Some(&0), "still in the older generation");
        for i in 0..GENERATION {
            g.insert(format!("m{i}"), i);
        }
        assert_eq!(g.get("k0"), None, "two generations later it is gone");
        assert_eq!(g.get("next"), Some(&0));
        // A row updated in the older generation is updated, not duplicated.
        *g.get_mut("next").unwrap() = 7;
        assert_eq!(g.get("next"), Some(&7));
    }

    #[test]
    fn edits_apply_only_to_the_rows_they_name() {
        let recent = Recent::default();
        let authz = Authz {
            id: "az".into(),
            account_id: "acc".into(),
            id_type: IdentifierType::Dns,
            id_value: "a.example".into(),
            wildcard: false,
            status: AuthzStatus::Pending,
            expires_at: 0,
            created_at: 0,
        };
        let ch = |kind: ChallengeType| Challenge {
            id: format!("ch-{kind}"),
            authz_id: "az".into(),
            kind,
            token: "t".into(),
            status: ChallengeStatus::Pending,
            validated_at: None,
            error_json: None,
        };
        recent.apply(vec![Box::new(move |r: &mut Rows| {
            r.insert_orders(vec![order("o1"), order("o2")]);
            r.insert_authzs(vec![authz]);
            r.insert_challenges(vec![
                ch(ChallengeType::TlsAlpn01),
                ch(ChallengeType::Http01),
            ]);
        })]);
        recent.apply(vec![Box::new(|r: &mut Rows| {
            r.update_orders(&["o2".to_string()], |o| o.status = OrderStatus::Ready);
            r.update_challenges(&["ch-http-01".to_string()], |c| {
                c.status = ChallengeStatus::Valid
            });
        })]);
        assert_eq!(recent.order("o1").unwrap().status, OrderStatus::Pending);
        assert_eq!(recent.order("o2").unwrap().status, OrderStatus::Ready);
        let (a, chs) = recent.authz("az").unwrap();
        assert_eq!(a.status, AuthzStatus::Pending);
        let kinds: Vec<_> = chs.iter().map(|c| (c.kind, c.status)).collect();
        assert_eq!(
            kinds,
            [
                (ChallengeType::Http01, ChallengeStatus::Valid),
                (ChallengeType::TlsAlpn01, ChallengeStatus::Pending)
            ]
        );
        let (c, a) = recent.challenge("ch-tls-alpn-01").unwrap();
        assert_eq!((c.status, a.id.as_str()), (ChallengeStatus::Pending, "az"));
        assert!(recent.order("unknown").is_none());
        recent.clear();
        assert!(recent.order("o1").is_none());
    }
}
