//! Storage: the only crate that speaks SQL, and the owner of the read caches and the
//! in-memory copy of recent ACME rows.
//!
//! Statements are written once with `$n` placeholders, which SQLite and PostgreSQL both
//! understand, and run through [`sql::query`]: sqlx for PostgreSQL, `rusqlite` called in
//! the caller's thread for SQLite (why: `store::sql`). Each backend has its own migration
//! set, applied by sqlx. Times are Unix
//! seconds, flags 0/1 integers, so that rows decode the same way from either.
//!
//! SQLite runs in WAL mode with one *writer* connection and a pool of readers: writers
//! queue in the pool instead of failing with `SQLITE_BUSY`, readers never wait for
//! writers. PostgreSQL uses one pool for both.

#![warn(missing_docs)]

pub mod acme;
pub mod acme_sets;
pub mod audit;
pub mod backup;
pub mod batch;
pub mod cache;
pub mod cas;
pub mod certificates;
pub mod console;
pub mod crls;
pub mod csrs;
pub mod est;
pub mod filter;
pub mod generations;
pub mod managed;
pub mod notify;
pub mod ocsp;
pub mod pending;
pub mod pool;
pub mod rate_limits;
pub mod recent;
pub mod search;
pub mod settings;
pub mod sql;
pub mod stats;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{ConnectOptions, Executor};

pub use pool::{Pool, PoolConn, Tx};
pub use sql::{query, Conn, Row};
use vellum_core::error::{Error, Result};

/// Which database engine is underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (the default).
    Sqlite,
    /// PostgreSQL server (several replicas may share it).
    Postgres,
}

/// How long the store waits on PostgreSQL (see [`Store::connect_with`]).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest wait for a pooled connection (connecting included).
    pub acquire: Duration,
    /// Each connection's `statement_timeout`; `None`: no limit.
    pub statement: Option<Duration>,
}

/// The database handle shared by every request.
#[derive(Clone, Debug)]
pub struct Store {
    read: Pool,
    write: Pool,
    backend: Backend,
    /// Recent ACME rows in memory (SQLite only: `store::recent`).
    recent: Option<std::sync::Arc<recent::Recent>>,
    /// The read caches of the hot paths; every write function of a cached table retires
    /// them when its transaction commits.
    caches: std::sync::Arc<cache::Caches>,
}

/// How long [`Store::connect`] waits at most for a PostgreSQL connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connects, applies the migrations of the backend, and returns the handle (PostgreSQL
    /// connections are waited for at most [`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let timeouts = Timeouts {
            acquire: DEFAULT_ACQUIRE_TIMEOUT,
            statement: None,
        };
        Store::connect_with(url, max_connections, timeouts).await
    }

    /// [`Store::connect`] with the longest wait for a PostgreSQL connection: past it (the
    /// server is down, restarting or unreachable; sqlx retries refused connections until
    /// then), a request gets `Error::Unavailable` (503 with `Retry-After`). The pool
    /// reconnects by itself once the server is back: every idle connection is tested
    /// before it is handed out, and broken ones are replaced.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        timeouts: Timeouts,
    ) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::config(format!(
                "database_url must start with sqlite:// or postgres://, got {url:?}"
            )));
        };
        let store = match backend {
            Backend::Sqlite => {
                let (url, path) = sqlite_url(url)?;
                migrate_sqlite(&url).await?;
                let write = Pool::Local(std::sync::Arc::new(pool::LocalPool::new(vec![
                    sqlite_connection(&path)?,
                ])));
                // Readers run statements in the caller's thread: one per core is enough to
                // keep every core busy; a few more cover requests waiting on the network
                // while they hold one.
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
                let readers = max_connections.clamp(1, (2 * cores).max(4));
                let mut conns = Vec::new();
                for _ in 0..readers {
                    conns.push(sqlite_connection(&path)?);
                }
                let read = Pool::Local(std::sync::Arc::new(pool::LocalPool::new(conns)));
                Store {
                    read,
                    write,
                    backend,
                    recent: Some(Default::default()),
                    caches: Default::default(),
                }
            }
            Backend::Postgres => {
                let statement_ms = timeouts.statement.map_or(0, |t| t.as_millis().max(1));
                let opts = AnyConnectOptions::from_str(url)
                    .map_err(|e| Error::config(format!("database_url: {e}")))?
                    .log_statements(tracing::log::LevelFilter::Trace);
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(timeouts.acquire)
                    .test_before_acquire(true)
                    // No parallel workers: Vellum's statements are short and many run at
                    // once; a Gather Merge under a page's LIMIT tripled a tag page at a
                    // million rows (10 → 31 ms, docs/PERFORMANCE.md), and the workers take
                    // cores the requests need.
                    // The statement timeout (whole milliseconds, 0: none) ends statements
                    // stuck on a lock or an overloaded server (a 503, see Error::from).
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(
                                &mut *conn,
                                "SET max_parallel_workers_per_gather = 0",
                            )
                            .await?;
                            sqlx::Executor::execute(
                                &mut *conn,
                                format!("SET statement_timeout = {statement_ms}").as_str(),
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(|e| Error::config(format!("connecting to PostgreSQL: {e}")))?;
                // Migrations may rewrite large tables: no statement timeout for them.
                let migrate = async {
                    let mut conn = pool.acquire().await?;
                    sqlx::Executor::execute(&mut *conn, "SET statement_timeout = 0").await?;
                    let run = POSTGRES_MIGRATIONS.run(&mut *conn).await;
                    let reset = format!("SET statement_timeout = {statement_ms}");
                    sqlx::Executor::execute(&mut *conn, reset.as_str()).await?;
                    run.map_err(sqlx::Error::from)
                };
                migrate.await.map_err(|e: sqlx::Error| {
                    Error::config(format!("migrating the PostgreSQL database: {e}"))
                })?;
                Store {
                    read: Pool::Sqlx(pool.clone()),
                    write: Pool::Sqlx(pool),
                    backend,
                    recent: None,
                    caches: Default::default(),
                }
            }
        };
        Ok(store)
    }

    /// The engine underneath.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Pool for reads that need no transaction.
    pub fn reader(&self) -> &Pool {
        &self.read
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self
            .write
            .begin()
            .await?
            .with_recent(self.recent.clone())
            .with_caches(self.caches.clone()))
    }

    /// The read caches (`store::cache`): read through them; the store's write functions
    /// retire them at commit, so callers never invalidate by hand.
    pub fn caches(&self) -> &cache::Caches {
        &self.caches
    }

    /// The in-memory copy of recent ACME rows (SQLite only; see `store::recent`).
    pub fn recent(&self) -> Option<&recent::Recent> {
        self.recent.as_deref()
    }

    /// One round trip to the database (health checks).
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.read.acquire().await?;
        query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }

    /// Serialises bootstraps of several replicas sharing one PostgreSQL database (a
    /// session advisory lock, released when the returned guard is dropped: its connection
    /// is detached from the pool and closes). A no-op for SQLite, which has one process.
    pub async fn bootstrap_lock(&self) -> Result<BootstrapLock> {
        match self.backend {
            Backend::Sqlite => Ok(BootstrapLock(None)),
            Backend::Postgres => {
                let Pool::Sqlx(write) = &self.write else {
                    return Ok(BootstrapLock(None));
                };
                let mut conn = write.acquire().await?.detach();
                sqlx::query("SELECT pg_advisory_lock(7361626001)")
                    .execute(&mut conn)
                    .await?;
                Ok(BootstrapLock(Some(conn)))
            }
        }
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Held while bootstrapping; see [`Store::bootstrap_lock`].
pub struct BootstrapLock(#[allow(dead_code)] Option<sqlx::AnyConnection>);

/// The URL sqlx migrates through, creating the file if missing (`mode=rwc`), and the
/// file's path.
fn sqlite_url(url: &str) -> Result<(String, String)> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let file = path.split('?').next().unwrap_or_default();
    if let Some(parent) = std::path::Path::new(file).parent() {
        if !parent.as_os_str().is_empty() {
            vellum_core::fsutil::create_private_dir(parent).map_err(|e| {
                Error::config(format!(
                    "creating database directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
    }
    if file != ":memory:" && !file.is_empty() {
        vellum_core::fsutil::private_database_files(std::path::Path::new(file))?;
    }
    let migrate = if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok((migrate, file.to_string()))
}

/// Creates the file if needed, switches it to WAL (a property of the file) and applies
/// the migrations, on a connection of sqlx's that is closed afterwards.
async fn migrate_sqlite(url: &str) -> Result<()> {
    let mut conn = AnyConnectOptions::from_str(url)
        .map_err(|e| Error::config(format!("database_url: {e}")))?
        .log_statements(tracing::log::LevelFilter::Trace)
        .connect()
        .await
        .map_err(|e| Error::config(format!("opening the SQLite database: {e}")))?;
    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;")
        .await?;
    SQLITE_MIGRATIONS
        .run(&mut conn)
        .await
        .map_err(|e| Error::config(format!("migrating the SQLite database: {e}")))?;
    sqlx::Connection::close(conn).await?;
    Ok(())
}

/// One SQLite connection, configured.
fn sqlite_connection(path: &str) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| Error::config(format!("opening the SQLite database {path}: {e}")))?;
    // No mmap: the file grows with every insert, each connection then remaps it, and the
    // remaps' TLB shootdowns cost more than the reads they save (measured: −8 % CPU per
    // ACME order without mmap, docs/PERFORMANCE.md).
    // LIKE is case-sensitive, as on PostgreSQL (tag filters match exactly on both; the
    // certificate search lower-cases both sides itself).
    conn.execute_batch(
        "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
         PRAGMA temp_store = MEMORY; PRAGMA case_sensitive_like = ON;",
    )
    .map_err(|e| Error::config(format!("configuring the SQLite database {path}: {e}")))?;
    // Statements are cached by their text; the set-oriented ones vary with their lists.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// `s` with LIKE's wildcards and the escape character escaped (for `ESCAPE '\'`).
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The LIKE pattern (`ESCAPE '\'`) a `tags_json` column matches when its object holds the
/// tag `key` (`key`) or the tag `key` with value `value` (`key=value`): the key's JSON
/// string followed by `:` (and the value's JSON string). Tags are
/// written by `serde_json` from a map of strings, so the spelling is canonical.
pub(crate) fn tag_like_pattern(tag: &str) -> String {
    match tag.split_once('=') {
        // The value's closing quote is part of the pattern: "env=prod" does not match
        // "production".
        Some((k, v)) => format!(
            "%{}%",
            like_escape(&format!(
                "{}:{}",
                serde_json::json!(k),
                serde_json::json!(v)
            ))
        ),
        None => format!("%{}:%", like_escape(&serde_json::json!(tag).to_string())),
    }
}

/// `($1, $2, …), ($n+1, …)…` for a multi-row INSERT of `rows` rows of `columns` values;
/// `(?, ?, …)…` on SQLite, which looks each named parameter up by a linear scan (binding
/// a statement with n `$k` parameters costs n²).
pub(crate) fn values_placeholders(conn: &Conn, rows: usize, columns: usize) -> String {
    if conn.backend_name() == "SQLite" {
        let row = format!("({})", vec!["?"; columns].join(", "));
        return vec![row; rows].join(", ");
    }
    numbered_placeholders(rows, columns)
}

/// `n` placeholders for the `first`-th value on, comma-separated: `$first, …`, or `?, …`
/// on SQLite (whose statements then bind every value in order).
pub(crate) fn placeholder_list(conn: &Conn, first: usize, n: usize) -> String {
    let sqlite = conn.backend_name() == "SQLite";
    (first..first + n)
        .map(|i| {
            if sqlite {
                "?".to_string()
            } else {
                format!("${i}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn numbered_placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(r * columns + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Decodes a JSON column that holds a policy (allowed names, name patterns, accepted
/// methods…). A value that does not decode is an error, never "no restriction": policy
/// fails closed. The error is internal (logged, the request refused with a 500) because
/// only a damaged or hand-edited database can hold one.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    table: &str,
    column: &str,
    key: &str,
    text: &str,
) -> vellum_core::error::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        vellum_core::error::Error::internal(format!(
            "{table}.{column} of {key} does not decode ({e}); refusing the request rather than \
             treating the policy as absent"
        ))
    })
}

/// Decodes a text column holding one of `T`'s spellings (a status, a kind). Any other
/// value is an internal error, never a default: like policy, state fails closed, and only
/// a damaged or hand-edited database can hold one.
pub(crate) fn decode_spelled<T: vellum_core::status::Spelled>(
    r: &Row,
    table: &str,
    column: &str,
) -> Result<T> {
    r.with_str(column, |s| s.parse::<T>())?.map_err(|e| {
        Error::internal(format!(
            "{table}.{column} holds {e}; refusing the request rather than guessing the state"
        ))
    })
}

/// [`decode_spelled`] of a nullable column.
pub(crate) fn decode_spelled_opt<T: vellum_core::status::Spelled>(
    r: &Row,
    table: &str,
    column: &str,
) -> Result<Option<T>> {
    let Some(text) = r.try_get::<Option<String>, _>(column)? else {
        return Ok(None);
    };
    text.parse::<T>().map(Some).map_err(|e| {
        Error::internal(format!(
            "{table}.{column} holds {e}; refusing the request rather than guessing"
        ))
    })
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn writes_of_cached_tables_retire_the_caches_at_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = super::Store::connect(&url, 2).await.unwrap();
        let g0 = store.caches().generation();
        // A cached table changed, then rolled back: the caches stay.
        let mut tx = store.begin().await.unwrap();
        super::cas::refund(&mut tx, "no-such-ca", 1).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(store.caches().generation(), g0);
        // Another table changed and committed: the caches stay.
        let mut tx = store.begin().await.unwrap();
        super::settings::put(&mut tx, "k", "v").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.caches().generation(), g0);
        // A cached table changed and committed: retired, without the caller asking.
        let mut tx = store.begin().await.unwrap();
        super::cas::refund(&mut tx, "no-such-ca", 1).await.unwrap();
        assert_eq!(store.caches().generation(), g0, "not before the commit");
        tx.commit().await.unwrap();
        assert_eq!(store.caches().generation(), g0 + 1);
    }

    #[test]
    fn unreadable_policy_is_an_error_not_an_empty_list() {
        let e = super::decode_json::<Vec<String>>("t", "c", "k", "not json").unwrap_err();
        assert!(matches!(e, vellum_core::error::Error::Internal(_)), "{e}");
        let ok: Vec<String> = super::decode_json("t", "c", "k", r#"["a"]"#).unwrap();
        assert_eq!(ok, vec!["a".to_string()]);
    }

    #[test]
    fn placeholders_number_every_value_in_row_order() {
        assert_eq!(super::numbered_placeholders(1, 2), "($1, $2)");
        assert_eq!(
            super::numbered_placeholders(2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
    }
}
