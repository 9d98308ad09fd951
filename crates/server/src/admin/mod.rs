//! Admin REST front end (`/admin/v1`): JSON over HTTPS, bearer tokens, problem+json errors.

pub mod acme;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod cas;
pub mod certificates;
pub mod csrs;
pub mod csv;
pub mod est;
pub mod export;
pub mod installation;
pub mod json;
pub mod managed;
pub mod notifications;
pub mod ocsp;
pub mod overview;
pub mod pending;
pub mod rate_limits;
pub mod tenants;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::App;

/// Routes under `/admin/v1`.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/tenants",
            post(tenants::create_tenant).get(tenants::list_tenants),
        )
        .route(
            "/tokens",
            post(tenants::create_token).get(tenants::list_tokens),
        )
        .route("/tokens/{id}", delete(tenants::revoke_token))
        .route("/cas", post(cas::create).get(cas::list))
        .route(
            "/cas/{id}",
            get(cas::show).delete(cas::remove).patch(cas::update),
        )
        .route("/cas/{id}/service/renew", post(cas::renew_service))
        .route("/cas/{id}/enable", post(cas::enable))
        .route("/cas/{id}/quota/purchase", post(cas::purchase_quota))
        .route("/cas/{id}/quota/assign", post(cas::assign_quota))
        .route("/cas/{id}/revoke", post(cas::revoke))
        .route("/cas/{id}/reset", post(cas::reset))
        .route("/cas/{id}/renew", post(cas::renew))
        .route("/cas/{id}/generations", get(cas::generations))
        .route("/cas/{id}/refund", post(cas::refund))
        .route("/cas/{id}/crl", get(cas::crl_info).put(cas::crl_settings))
        .route("/cas/{id}/ocsp", get(ocsp::info).put(ocsp::settings))
        .route(
            "/cas/{id}/acme",
            get(acme::get_settings).put(acme::put_settings),
        )
        .route("/cas/{id}/acme/eab", post(acme::new_eab))
        .route(
            "/cas/{id}/rate-limits",
            get(rate_limits::get_limits).put(rate_limits::put_limits),
        )
        .route(
            "/cas/{id}/est",
            get(est::get_settings).put(est::put_settings),
        )
        .route(
            "/cas/{id}/est/clients",
            post(est::create_client).get(est::list_clients),
        )
        .route(
            "/cas/{id}/est/clients/{username}",
            delete(est::delete_client),
        )
        .route("/cas/{id}/certificates", post(certificates::apply))
        .route("/certificates", get(certificates::list))
        .route("/certificates.csv", get(csv::certificates))
        .route("/certificates/bulk", post(bulk::certificates))
        .route(
            "/certificates/{id}",
            get(certificates::show)
                .delete(certificates::delete)
                .patch(certificates::update),
        )
        .route("/certificates/{id}/export", post(certificates::export))
        .route("/certificates/{id}/revoke", post(certificates::revoke))
        .route("/certificates/{id}/renew", post(certificates::renew))
        .route(
            "/certificates/{id}/share",
            post(certificates::share).delete(certificates::unshare),
        )
        .route("/cas/{id}/certificates/sync", post(certificates::sync))
        .route("/managed/{id}/share", post(managed::share))
        .route("/managed", post(managed::upload).get(managed::list))
        .route("/managed.csv", get(csv::managed))
        .route("/managed/bulk", post(bulk::managed))
        .route(
            "/managed/{id}",
            get(managed::show)
                .patch(managed::patch)
                .delete(managed::delete),
        )
        .route("/managed/{id}/export", post(managed::export))
        .route("/tools/convert", post(managed::convert))
        .route(
            "/notifications/channels",
            post(notifications::create).get(notifications::list),
        )
        .route(
            "/notifications/channels/{id}",
            get(notifications::show)
                .patch(notifications::update)
                .delete(notifications::remove),
        )
        .route(
            "/notifications/channels/{id}/test",
            post(notifications::test),
        )
        .route(
            "/notifications/settings",
            get(notifications::settings).put(notifications::set_settings),
        )
        .route("/notifications/quota", get(notifications::quota))
        .route(
            "/notifications/quota/purchase",
            post(notifications::purchase),
        )
        .route("/notifications/deliveries", get(notifications::deliveries))
        .route(
            "/notifications/deliveries/{id}",
            get(notifications::delivery),
        )
        .route(
            "/notifications/deliveries/{id}/redeliver",
            post(notifications::redeliver),
        )
        .route("/overview", get(overview::show))
        .route("/pending", get(pending::show))
        .route(
            "/pending/snooze",
            post(pending::snooze).delete(pending::unsnooze),
        )
        .route("/audit", get(audit::list_events))
        .route("/audit.csv", get(csv::audit))
        .route("/tools/check-installation", post(installation::check))
        .route("/csrs", post(csrs::create).get(csrs::list_csrs))
        .route("/csrs/{id}", get(csrs::show).delete(csrs::delete))
        .route_layer(axum::middleware::from_fn(audit::audit_refusals))
}
