//! The ACME state machine (RFC 8555 §7.1.6): every state an account, order,
//! authorization and challenge can be in, and every change between them, named here.
//!
//! ```text
//! order      pending ──every authorization valid──▶ ready ──finalize claims──▶ processing
//!              │  ▲                                   ▲                          │    │
//!              │  └ (new, all reused: ready at once)  └──── quota refused ───────┘    │
//!              │                                                        recorded ────▶ valid
//!              ├─ expires (on read) ───────────────▶ invalid
//!              └─ an authorization fails or is deactivated (pending, ready, processing) ─▶ invalid
//! authz      pending ──a challenge succeeds──▶ valid ──deactivate──▶ deactivated
//!              ├─ its challenge fails ──▶ invalid
//!              ├─ deactivate ──▶ deactivated
//!              └─ expires (on read) ──▶ expired
//! challenge  pending ──start──▶ processing ──▶ valid | invalid (the first outcome recorded)
//!                               └─ stale (its replica died): claimed again, super::takeover
//! account    valid ──deactivate──▶ deactivated
//! ```
//!
//! The functions here decide and never touch the database. The front end (the server's
//! `acme::order`, `acme::authz`, `acme::account`) asks them what a request may do and what
//! a row is at `now`; the writer ([`super::writes`]) and the certificate recorder
//! ([`crate::record`]) hand the transitions named here to the store's conditional,
//! set-oriented statements (`store::acme_sets`, `store::acme`), which change only rows
//! still in the `from` state, so of two racing requests one wins.
//!
//! Expiry is a transition applied where rows are read ([`order_effective`],
//! [`authz_effective`]): nothing writes it, and a pending order or authorization past its
//! `expires` is `invalid` / `expired` to every reader.

use store::acme_sets::{Failure, Validation};
use vellum_core::status::{AccountStatus, AuthzStatus, ChallengeStatus, OrderStatus, Transition};

/// Why the machine refuses a request; the front end words it for its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Finalize needs a ready order; it is in this state.
    OrderNotReady(OrderStatus),
    /// A challenge starts only while its authorization is pending; it is in this state.
    AuthzNotPending(AuthzStatus),
    /// A challenge of an authorization that has expired cannot start.
    AuthzExpired,
    /// Only pending or valid authorizations can be deactivated; it is in this state.
    AuthzNotDeactivatable(AuthzStatus),
}

// ---- Creation -------------------------------------------------------------------------

/// A new account's status.
pub const ACCOUNT_CREATED: AccountStatus = AccountStatus::Valid;
/// A new authorization's status.
pub const AUTHZ_CREATED: AuthzStatus = AuthzStatus::Pending;
/// A new challenge's status.
pub const CHALLENGE_CREATED: ChallengeStatus = ChallengeStatus::Pending;

/// A new order's status: `ready` at once when every authorization it needs was reused
/// (and so is valid), else `pending`.
pub fn order_created(every_authz_reused: bool) -> OrderStatus {
    if every_authz_reused {
        OrderStatus::Ready
    } else {
        OrderStatus::Pending
    }
}

// ---- Expiry, applied on read -----------------------------------------------------------

/// What an order stored as `status`, expiring at `expires_at`, is at `now`: a pending
/// order past its expiry is `invalid` (its authorizations can no longer complete it).
/// Orders in other states keep them: a ready one can still be finalized, a finished one
/// stays finished.
pub fn order_effective(status: OrderStatus, expires_at: i64, now: i64) -> OrderStatus {
    match status {
        OrderStatus::Pending if expires_at <= now => OrderStatus::Invalid,
        s => s,
    }
}

/// What an authorization stored as `status`, expiring at `expires_at`, is at `now`: a
/// pending one past its expiry is `expired`. A valid one past its reuse period is not
/// reused (`store::acme::reusable_authz` asks for an unexpired one) but stays valid for
/// the orders it already completed.
pub fn authz_effective(status: AuthzStatus, expires_at: i64, now: i64) -> AuthzStatus {
    match status {
        AuthzStatus::Pending if expires_at <= now => AuthzStatus::Expired,
        s => s,
    }
}

// ---- Polling ---------------------------------------------------------------------------

/// Whether an order will still change by itself (the client polls again after
/// `Retry-After`): pending (validations) or processing (issuance).
pub fn order_in_progress(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Pending | OrderStatus::Processing)
}

/// Whether an order waits for validations (a poll may wait for those running here).
pub fn order_awaits_validation(status: OrderStatus) -> bool {
    status == OrderStatus::Pending
}

/// Whether an authorization will still change by itself (a validation may complete it).
pub fn authz_in_progress(status: AuthzStatus) -> bool {
    status == AuthzStatus::Pending
}

/// Whether a challenge will still change by itself (its validation is running).
pub fn challenge_in_progress(status: ChallengeStatus) -> bool {
    status == ChallengeStatus::Processing
}

/// Whether an authorization in `authz` shows a challenge in `challenge`: all of them
/// until it is valid, then only the one(s) that validated it.
pub fn challenge_shown(authz: AuthzStatus, challenge: ChallengeStatus) -> bool {
    authz != AuthzStatus::Valid || challenge == ChallengeStatus::Valid
}

// ---- Challenges and validation -----------------------------------------------------

/// A challenge's validation starts: pending → processing.
pub const CHALLENGE_START: Transition<ChallengeStatus> = Transition {
    from: ChallengeStatus::Pending,
    to: ChallengeStatus::Processing,
};

/// What a client's `{}` to a challenge does: `Ok(true)` starts its validation
/// ([`CHALLENGE_START`]); `Ok(false)` changes nothing (it started or finished already:
/// the answer is the challenge as it is); `Err` refuses, naming why. `authz` is the
/// authorization's stored status, which expires at `authz_expires_at`.
pub fn challenge_start(
    challenge: ChallengeStatus,
    authz: AuthzStatus,
    authz_expires_at: i64,
    now: i64,
) -> Result<bool, Refused> {
    if challenge != CHALLENGE_START.from {
        return Ok(false);
    }
    match authz_effective(authz, authz_expires_at, now) {
        AuthzStatus::Pending => Ok(true),
        AuthzStatus::Expired if authz == AuthzStatus::Pending => Err(Refused::AuthzExpired),
        other => Err(Refused::AuthzNotPending(other)),
    }
}

/// Orders that are not finished: an authorization they need failing or being
/// deactivated makes them invalid.
pub const UNFINISHED_ORDERS: &[OrderStatus] = &[
    OrderStatus::Pending,
    OrderStatus::Ready,
    OrderStatus::Processing,
];

/// A successful validation: the challenge, if still processing, becomes valid; then its
/// authorization, if still pending, valid (for the reuse period); each pending order whose
/// authorizations are then all valid, ready. A result for a challenge that is no longer
/// processing (recorded already: a replica that was only slow, after another took its
/// validation over, `super::takeover`) changes nothing.
pub const VALIDATED: Validation = Validation {
    challenge: Transition {
        from: ChallengeStatus::Processing,
        to: ChallengeStatus::Valid,
    },
    authz: Transition {
        from: AuthzStatus::Pending,
        to: AuthzStatus::Valid,
    },
    order: Transition {
        from: OrderStatus::Pending,
        to: OrderStatus::Ready,
    },
};

/// A failed validation: the challenge, if still processing, becomes invalid; then its
/// authorization, if still pending, invalid (one another challenge validated stays valid,
/// RFC 8555 §7.1.6), and every unfinished order that needed it, invalid. Like
/// [`VALIDATED`], a late result changes nothing.
pub const VALIDATION_FAILED: Failure = Failure {
    challenge: Transition {
        from: ChallengeStatus::Processing,
        to: ChallengeStatus::Invalid,
    },
    authz: Transition {
        from: AuthzStatus::Pending,
        to: AuthzStatus::Invalid,
    },
    orders_from: UNFINISHED_ORDERS,
    orders_to: OrderStatus::Invalid,
};

// ---- Deactivation ----------------------------------------------------------------

/// Authorizations that can be deactivated.
pub const DEACTIVATABLE: &[AuthzStatus] = &[AuthzStatus::Pending, AuthzStatus::Valid];
/// A deactivated authorization's status.
pub const AUTHZ_DEACTIVATED: AuthzStatus = AuthzStatus::Deactivated;
/// The status orders that needed a deactivated authorization get (from
/// [`UNFINISHED_ORDERS`]).
pub const ORDER_AUTHZ_LOST: OrderStatus = OrderStatus::Invalid;

/// Whether a client may set an authorization to `requested` (only `deactivated`, RFC
/// 8555 §7.5.2).
pub fn authz_update_allowed(requested: AuthzStatus) -> bool {
    requested == AUTHZ_DEACTIVATED
}

/// Deactivating an authorization stored as `status`: its new status, or why not. The
/// store's conditional update ([`DEACTIVATABLE`] → [`AUTHZ_DEACTIVATED`]) decides races.
pub fn deactivate_authz(status: AuthzStatus) -> Result<AuthzStatus, Refused> {
    if DEACTIVATABLE.contains(&status) {
        Ok(AUTHZ_DEACTIVATED)
    } else {
        Err(Refused::AuthzNotDeactivatable(status))
    }
}

// ---- Finalize --------------------------------------------------------------------

/// Whether an order in `status` (as read now, [`order_effective`]) may be finalized.
pub fn finalize_allowed(status: OrderStatus) -> Result<(), Refused> {
    if status == ORDER_CLAIM.from {
        Ok(())
    } else {
        Err(Refused::OrderNotReady(status))
    }
}

/// Finalize claims the order in the transaction recording its certificate: of two
/// finalizes, one claims it.
pub const ORDER_CLAIM: Transition<OrderStatus> = Transition {
    from: OrderStatus::Ready,
    to: OrderStatus::Processing,
};

/// A claimed order whose certificate the quota refused is ready again (finalize may be
/// retried once quota is assigned).
pub const ORDER_UNCLAIM: Transition<OrderStatus> = Transition {
    from: ORDER_CLAIM.to,
    to: ORDER_CLAIM.from,
};

/// A claimed order whose certificate was recorded is valid.
pub const ORDER_ISSUED: Transition<OrderStatus> = Transition {
    from: ORDER_CLAIM.to,
    to: OrderStatus::Valid,
};

/// What became of an order whose finalize lost its claim, by its status read afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostClaim {
    /// Still ready: the claim lost for another reason (the conflict stands as it is).
    StillReady,
    /// Another request finalized it (or is finalizing it).
    FinalizedElsewhere,
    /// It is in this state, which cannot be finalized.
    NotReady(OrderStatus),
}

/// Explains a lost claim from the order's status now.
pub fn finalize_lost(now: OrderStatus) -> LostClaim {
    match now {
        OrderStatus::Ready => LostClaim::StillReady,
        OrderStatus::Valid | OrderStatus::Processing => LostClaim::FinalizedElsewhere,
        other => LostClaim::NotReady(other),
    }
}

// ---- Accounts --------------------------------------------------------------------

/// Whether an account in `status` may act (every request but its own fetch is refused
/// otherwise).
pub fn account_usable(status: AccountStatus) -> bool {
    status == ACCOUNT_CREATED
}

/// Whether a client may set its account to `requested` (only `deactivated`, RFC 8555
/// §7.3.6).
pub fn account_update_allowed(requested: AccountStatus) -> bool {
    requested == AccountStatus::Deactivated
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthzStatus as A;
    use ChallengeStatus as C;
    use OrderStatus as O;

    const NOW: i64 = 1_000_000;

    #[test]
    fn a_new_order_is_ready_only_when_every_authorization_was_reused() {
        assert_eq!(order_created(true), O::Ready);
        assert_eq!(order_created(false), O::Pending);
        assert_eq!(AUTHZ_CREATED, A::Pending);
        assert_eq!(CHALLENGE_CREATED, C::Pending);
        assert_eq!(ACCOUNT_CREATED, AccountStatus::Valid);
    }

    #[test]
    fn only_a_pending_order_expires() {
        assert_eq!(order_effective(O::Pending, NOW, NOW), O::Invalid);
        assert_eq!(order_effective(O::Pending, NOW - 1, NOW), O::Invalid);
        assert_eq!(order_effective(O::Pending, NOW + 1, NOW), O::Pending);
        for s in [O::Ready, O::Processing, O::Valid, O::Invalid] {
            assert_eq!(order_effective(s, NOW - 1, NOW), s, "{s}");
        }
    }

    #[test]
    fn only_a_pending_authorization_expires() {
        assert_eq!(authz_effective(A::Pending, NOW, NOW), A::Expired);
        assert_eq!(authz_effective(A::Pending, NOW + 1, NOW), A::Pending);
        for s in [A::Valid, A::Invalid, A::Deactivated, A::Expired, A::Revoked] {
            assert_eq!(authz_effective(s, NOW - 1, NOW), s, "{s}");
        }
    }

    #[test]
    fn polls_retry_while_something_runs() {
        let moving: Vec<_> = [O::Pending, O::Ready, O::Processing, O::Valid, O::Invalid]
            .into_iter()
            .filter(|s| order_in_progress(*s))
            .collect();
        assert_eq!(moving, [O::Pending, O::Processing]);
        assert!(order_awaits_validation(O::Pending));
        assert!(!order_awaits_validation(O::Processing));
        assert!(authz_in_progress(A::Pending));
        assert!(!authz_in_progress(A::Expired));
        assert!(!authz_in_progress(A::Valid));
        assert!(challenge_in_progress(C::Processing));
        assert!(!challenge_in_progress(C::Pending));
        assert!(!challenge_in_progress(C::Valid));
    }

    #[test]
    fn a_valid_authorization_shows_only_its_valid_challenges() {
        assert!(challenge_shown(A::Valid, C::Valid));
        assert!(!challenge_shown(A::Valid, C::Pending));
        assert!(!challenge_shown(A::Valid, C::Invalid));
        for a in [A::Pending, A::Invalid, A::Deactivated, A::Expired] {
            for c in [C::Pending, C::Processing, C::Valid, C::Invalid] {
                assert!(challenge_shown(a, c), "{a} {c}");
            }
        }
    }

    #[test]
    fn a_challenge_starts_once_and_only_under_a_live_pending_authorization() {
        assert_eq!(CHALLENGE_START.from, C::Pending);
        assert_eq!(CHALLENGE_START.to, C::Processing);
        assert_eq!(
            challenge_start(C::Pending, A::Pending, NOW + 1, NOW),
            Ok(true)
        );
        // Started or finished: nothing to do, whatever the authorization.
        for c in [C::Processing, C::Valid, C::Invalid] {
            assert_eq!(challenge_start(c, A::Pending, NOW + 1, NOW), Ok(false));
            assert_eq!(challenge_start(c, A::Deactivated, NOW - 1, NOW), Ok(false));
        }
        assert_eq!(
            challenge_start(C::Pending, A::Pending, NOW, NOW),
            Err(Refused::AuthzExpired)
        );
        for a in [A::Valid, A::Invalid, A::Deactivated, A::Revoked] {
            assert_eq!(
                challenge_start(C::Pending, a, NOW + 1, NOW),
                Err(Refused::AuthzNotPending(a))
            );
        }
    }

    #[test]
    fn a_validation_outcome_moves_challenge_authorization_and_orders() {
        // Only a challenge still processing takes an outcome: the first recorded stands.
        assert_eq!(
            (VALIDATED.challenge.from, VALIDATED.challenge.to),
            (CHALLENGE_START.to, C::Valid)
        );
        assert_eq!(
            (VALIDATED.authz.from, VALIDATED.authz.to),
            (A::Pending, A::Valid)
        );
        assert_eq!(
            (VALIDATED.order.from, VALIDATED.order.to),
            (O::Pending, O::Ready)
        );
        assert_eq!(
            (
                VALIDATION_FAILED.challenge.from,
                VALIDATION_FAILED.challenge.to
            ),
            (CHALLENGE_START.to, C::Invalid)
        );
        assert_eq!(
            (VALIDATION_FAILED.authz.from, VALIDATION_FAILED.authz.to),
            (A::Pending, A::Invalid)
        );
        assert_eq!(
            VALIDATION_FAILED.orders_from,
            [O::Pending, O::Ready, O::Processing]
        );
        assert_eq!(VALIDATION_FAILED.orders_to, O::Invalid);
        // Finished orders are never failed afterwards.
        assert!(!UNFINISHED_ORDERS.contains(&O::Valid));
        assert!(!UNFINISHED_ORDERS.contains(&O::Invalid));
    }

    #[test]
    fn only_pending_or_valid_authorizations_deactivate() {
        assert_eq!(deactivate_authz(A::Pending), Ok(A::Deactivated));
        assert_eq!(deactivate_authz(A::Valid), Ok(A::Deactivated));
        for a in [A::Invalid, A::Deactivated, A::Expired, A::Revoked] {
            assert_eq!(deactivate_authz(a), Err(Refused::AuthzNotDeactivatable(a)));
        }
        assert!(authz_update_allowed(A::Deactivated));
        for a in [A::Pending, A::Valid, A::Invalid, A::Expired, A::Revoked] {
            assert!(!authz_update_allowed(a), "{a}");
        }
        assert_eq!(ORDER_AUTHZ_LOST, O::Invalid);
    }

    #[test]
    fn only_a_ready_order_is_finalized_and_a_claim_moves_it_through_processing() {
        assert_eq!(finalize_allowed(O::Ready), Ok(()));
        for s in [O::Pending, O::Processing, O::Valid, O::Invalid] {
            assert_eq!(finalize_allowed(s), Err(Refused::OrderNotReady(s)));
        }
        // An expired pending order is refused as what it is now.
        assert_eq!(
            finalize_allowed(order_effective(O::Pending, NOW, NOW)),
            Err(Refused::OrderNotReady(O::Invalid))
        );
        assert_eq!(
            (ORDER_CLAIM.from, ORDER_CLAIM.to),
            (O::Ready, O::Processing)
        );
        assert_eq!(
            (ORDER_UNCLAIM.from, ORDER_UNCLAIM.to),
            (O::Processing, O::Ready)
        );
        assert_eq!(
            (ORDER_ISSUED.from, ORDER_ISSUED.to),
            (O::Processing, O::Valid)
        );
    }

    #[test]
    fn a_lost_claim_is_explained_by_what_the_order_became() {
        assert_eq!(finalize_lost(O::Ready), LostClaim::StillReady);
        assert_eq!(finalize_lost(O::Valid), LostClaim::FinalizedElsewhere);
        assert_eq!(finalize_lost(O::Processing), LostClaim::FinalizedElsewhere);
        assert_eq!(finalize_lost(O::Invalid), LostClaim::NotReady(O::Invalid));
        assert_eq!(finalize_lost(O::Pending), LostClaim::NotReady(O::Pending));
    }

    #[test]
    fn only_a_valid_account_acts_and_it_may_only_deactivate_itself() {
        assert!(account_usable(AccountStatus::Valid));
        assert!(!account_usable(AccountStatus::Deactivated));
        assert!(!account_usable(AccountStatus::Revoked));
        assert!(account_update_allowed(AccountStatus::Deactivated));
        assert!(!account_update_allowed(AccountStatus::Valid));
        assert!(!account_update_allowed(AccountStatus::Revoked));
    }
}
