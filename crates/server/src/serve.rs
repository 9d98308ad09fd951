//! Starting the server: listeners, routing, the background jobs, HTTPS (admin API, ACME, EST) and plain HTTP
//! (CRL and CA certificate distribution), graceful shutdown.

use crate::problem::{ApiResult, Problem};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bootstrap::{self, Paths};
use crate::{layers, listener, tls, App};
use vellum_core::config::Config;
use vellum_core::error::{Error, Result};

/// A started server.
pub struct Running {
    /// Shared state (tests use it to reach the database directly).
    pub app: Arc<App>,
    /// Bound HTTPS address.
    pub https_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound address of the metrics listener (`metrics.listen`), when it has its own.
    pub metrics_addr: Option<SocketAddr>,
    /// Files written by the bootstrap.
    pub paths: Paths,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to 30 s), closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.app.store.close().await;
    }
}

/// Binds both listeners, bootstraps, and starts serving. Ports 0 pick free ports; the
/// public URLs then follow the bound addresses.
pub async fn start(config: Config) -> Result<Running> {
    start_with_clock(config, vellum_core::time::Clock::system()).await
}

/// [`start`] with the clock the rules read: tests pass a fixed clock they move (expiry
/// reminders, refund windows) while the server runs.
pub async fn start_with_clock(
    mut config: Config,
    clock: vellum_core::time::Clock,
) -> Result<Running> {
    crate::install_crypto_provider();
    let https = TcpListener::bind(config.listen_https).await.map_err(|e| {
        Error::config(format!(
            "binding HTTPS listener {}: {e}",
            config.listen_https
        ))
    })?;
    let http = TcpListener::bind(config.listen_http)
        .await
        .map_err(|e| Error::config(format!("binding HTTP listener {}: {e}", config.listen_http)))?;
    let metrics_listener = match (config.metrics.enabled, config.metrics.listen) {
        (true, Some(addr)) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::config(format!("binding metrics listener {addr}: {e}")))?,
        ),
        _ => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(Error::internal)?),
        None => None,
    };
    let https_addr = https.local_addr().map_err(Error::internal)?;
    let http_addr = http.local_addr().map_err(Error::internal)?;
    config.listen_https = https_addr;
    config.listen_http = http_addr;

    let (app, paths) = bootstrap::prepare(config, clock).await?;
    let (chain, key) = bootstrap::server_tls_material(&app, &paths).await?;
    let tls = tls::server_config(&chain, &key)?;
    let app = Arc::new(app);

    let limits = app.config.limits.clone();
    let https_router = layers::edge(https_routes(app.clone()), &limits);
    let mut http_routes = http_routes(app.clone());
    let metrics_routes = if app.config.metrics.enabled {
        Some(crate::metrics::router(app.clone())?)
    } else {
        None
    };
    let mut metrics_router = None;
    match (metrics_routes, metrics_listener) {
        (Some(r), Some(l)) => metrics_router = Some((layers::edge(r, &limits), l)),
        (Some(r), None) => http_routes = http_routes.merge(r),
        (None, _) => {}
    }
    let http_router = layers::edge(http_routes, &limits);

    let header_case = Arc::new(listener::canonical_header_case().await);
    let (tx, rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(listener::serve(
            https,
            Some(tls),
            https_router,
            limits.clone(),
            header_case.clone(),
            rx.clone(),
        )),
        tokio::spawn(listener::serve(
            http,
            None,
            http_router,
            limits,
            header_case.clone(),
            rx.clone(),
        )),
        tokio::spawn(crate::crl::job::run(app.clone(), rx.clone())),
        tokio::spawn(crate::crl::ocsp::poll(app.clone(), rx.clone())),
        tokio::spawn(crate::notify_job::schedule(app.clone(), rx.clone())),
        tokio::spawn(crate::notify_job::deliver(app.clone(), rx.clone())),
        tokio::spawn(crate::search_job::run(app.clone(), rx.clone())),
        tokio::spawn(crate::acme::takeover::run(app.clone(), rx.clone())),
    ];
    if let Some((router, listener)) = metrics_router {
        tasks.push(tokio::spawn(listener::serve(
            listener,
            None,
            router,
            app.config.limits.clone(),
            header_case.clone(),
            rx,
        )));
    }
    Ok(Running {
        app,
        https_addr,
        http_addr,
        metrics_addr,
        paths,
        shutdown: tx,
        tasks,
    })
}

fn https_routes(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/admin/v1", crate::admin::router())
        .merge(crate::console::router())
        .merge(crate::acme::router(app.clone()))
        .merge(crate::est::router(&app.config))
        .fallback(not_found)
        .with_state(app)
}

fn http_routes(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(crate::crl::router())
        .fallback(not_found)
        .with_state(app)
}

async fn healthz(State(app): State<Arc<App>>) -> ApiResult<(StatusCode, &'static str)> {
    tokio::time::timeout(Duration::from_secs(5), app.store.ping())
        .await
        .map_err(|_| {
            Error::unavailable(
                "database did not answer within 5 s",
                vellum_core::error::DATABASE_RETRY_AFTER_SECS,
            )
        })??;
    Ok((StatusCode::OK, "ok\n"))
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem(Error::not_found(format!(
        "no such endpoint: {}",
        uri.path()
    )))
}

/// `vellum serve`: start, print where everything is, run until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    let running = start(config).await?;
    let app = &running.app;
    println!("Vellum is running.");
    println!(
        "  Web console:            {}/  (sign in with the admin token below)",
        app.config.public_url()
    );
    println!("  HTTPS (admin API):      {}", app.config.public_url());
    println!("  HTTP (CRLs, CA certs):  {}", app.config.public_http_url());
    match (app.config.metrics.enabled, running.metrics_addr) {
        (false, _) => {}
        (true, Some(addr)) => println!("  Metrics (Prometheus):   http://{addr}/metrics"),
        (true, None) => println!(
            "  Metrics (Prometheus):   {}/metrics",
            app.config.public_http_url()
        ),
    }
    println!(
        "  Admin API:              {}/admin/v1",
        app.config.public_url()
    );
    println!(
        "  ACME directory:         {}/acme/directory",
        app.config.public_url()
    );
    println!(
        "  EST (RFC 7030):         {}/.well-known/est/cacerts",
        app.config.public_url()
    );
    println!(
        "  Admin token:            {}",
        running.paths.admin_token.display()
    );
    println!(
        "  Root certificate:       {}",
        running.paths.root_pem.display()
    );
    println!(
        "  Default issuing CA:     {} (CRL {}/crl/{}.crl)",
        app.defaults.intermediate_id,
        app.config.public_http_url(),
        app.defaults.intermediate_id
    );
    println!(
        "  Try: curl --cacert {} -H \"Authorization: Bearer $(cat {})\" {}/admin/v1/cas",
        running.paths.root_pem.display(),
        running.paths.admin_token.display(),
        app.config.public_url()
    );
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
