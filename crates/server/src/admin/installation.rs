//! `POST /tools/check-installation`: what a TLS server presents, judged against the
//! tenant's inventory (the rules are `ra::installation`'s).

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use super::audit::record;
use super::auth::{Permission, Principal};
use super::json::Json;
use crate::problem::ApiResult;
use crate::App;
use vellum_core::error::Error;

/// Body of `POST /tools/check-installation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    host: String,
    #[serde(default = "https_port")]
    port: i64,
    server_name: Option<String>,
}

fn https_port() -> i64 {
    443
}

/// `POST /tools/check-installation`.
pub async fn check(
    State(app): State<Arc<App>>,
    who: Principal,
    Json(body): Json<CheckBody>,
) -> ApiResult<axum::Json<Value>> {
    who.require(Permission::Issue)?;
    let target = format!("{}:{}", body.host, body.port);
    let res = async {
        let port = u16::try_from(body.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::invalid("port", "must be between 1 and 65535"))?;
        let t = ra::installation::Target {
            host: body.host.clone(),
            port,
            server_name: body.server_name.clone(),
        };
        ra::installation::check(&app, &who.tenant_id, &t).await
    }
    .await;
    record(&app, &who, "tools.check_installation", Some(&target), &res).await;
    let report = res?;
    Ok(axum::Json(
        serde_json::to_value(report).map_err(Error::internal)?,
    ))
}
