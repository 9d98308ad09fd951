//! Connection pools and write transactions.
//!
//! PostgreSQL uses sqlx's pool. SQLite connections (see `store::sql`) live in
//! [`LocalPool`]: a list behind a semaphore, handed out and back as they are — a SQLite
//! connection is a file handle in this process, with nothing to test on release.
//!
//! Cancellation is safe: a SQLite statement runs to its end inside one poll, so a task
//! can only be dropped between statements; a [`Tx`] dropped while open rolls back before
//! its connection goes back to the list.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use sqlx::any::AnyTransactionManager;
use sqlx::{AnyPool, TransactionManager};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::recent::{Edit, Recent, Rows};
use super::sql::Conn;
use vellum_core::error::{Error, Result};

/// A set of connections to one database.
#[derive(Clone, Debug)]
pub enum Pool {
    /// sqlx's pool (PostgreSQL).
    Sqlx(AnyPool),
    /// SQLite connections.
    Local(Arc<LocalPool>),
}

/// The SQLite connections of one [`Pool::Local`].
pub struct LocalPool {
    idle: Mutex<Vec<rusqlite::Connection>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for LocalPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPool")
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl LocalPool {
    /// A pool of the given, already configured, connections.
    pub fn new(conns: Vec<rusqlite::Connection>) -> LocalPool {
        LocalPool {
            permits: Arc::new(Semaphore::new(conns.len())),
            idle: Mutex::new(conns),
        }
    }

    fn take(&self) -> Option<rusqlite::Connection> {
        self.idle.lock().ok()?.pop()
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

/// A connection out of a [`Pool`]; goes back when dropped. The permit of a SQLite
/// connection is released after the connection is back.
pub struct PoolConn {
    conn: Option<Conn>,
    home: Option<(Arc<LocalPool>, OwnedSemaphorePermit)>,
}

impl Pool {
    /// Waits for a free connection.
    pub async fn acquire(&self) -> Result<PoolConn> {
        match self {
            Pool::Sqlx(p) => Ok(PoolConn {
                conn: Some(Conn::Pg(p.acquire().await?)),
                home: None,
            }),
            Pool::Local(p) => {
                let permit = p
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::internal("the database is closed"))?;
                let conn = p
                    .take()
                    .ok_or_else(|| Error::internal("database pool: no idle connection"))?;
                Ok(PoolConn {
                    conn: Some(Conn::Lite(conn)),
                    home: Some((p.clone(), permit)),
                })
            }
        }
    }

    /// Starts a transaction on a connection of this pool.
    pub async fn begin(&self) -> Result<Tx> {
        let mut conn = self.acquire().await?;
        match &mut *conn {
            Conn::Pg(c) => AnyTransactionManager::begin(c, None).await?,
            Conn::Lite(c) => c.execute_batch("BEGIN").map_err(super::sql::lite_error)?,
        }
        Ok(Tx {
            conn,
            open: true,
            started: std::time::Instant::now(),
            after_commit: Vec::new(),
            recent: None,
            edits: Vec::new(),
            caches: None,
            retire_caches: false,
        })
    }

    /// Closes every connection (waiting for those in use).
    pub async fn close(&self) {
        match self {
            Pool::Sqlx(p) => p.close().await,
            Pool::Local(p) => {
                p.permits.close();
                if let Ok(mut idle) = p.idle.lock() {
                    idle.clear();
                }
            }
        }
    }
}

impl Deref for PoolConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Only `Drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for PoolConn {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PoolConn {
    fn drop(&mut self) {
        if let (Some(Conn::Lite(conn)), Some((pool, _permit))) = (self.conn.take(), &self.home) {
            pool.give_back(conn);
        }
    }
}

/// A write transaction: rolled back when dropped without [`Tx::commit`].
pub struct Tx {
    conn: PoolConn,
    open: bool,
    /// When BEGIN was sent (the transaction-duration histogram of `vellum_core::metrics`).
    started: std::time::Instant,
    /// Run once the transaction has committed (counters of what it did).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// The in-memory copy of recent rows the commit updates (SQLite), and its edits.
    recent: Option<Arc<Recent>>,
    edits: Vec<Edit>,
    /// The read caches, retired at commit when a statement changed a cached table.
    caches: Option<Arc<crate::cache::Caches>>,
    retire_caches: bool,
}

impl Tx {
    /// Keeps `recent` up to date with this transaction once it commits.
    pub(crate) fn with_recent(mut self, recent: Option<Arc<Recent>>) -> Tx {
        self.recent = recent;
        self
    }

    /// Retires `caches` when this transaction commits.
    pub(crate) fn with_caches(mut self, caches: Arc<crate::cache::Caches>) -> Tx {
        self.caches = Some(caches);
        self
    }

    /// Marks this transaction as changing a table the read caches copy (CAs, their
    /// settings, tokens, EST accounts, ACME accounts): they are retired at commit.
    pub(crate) fn retire_caches(&mut self) {
        self.retire_caches = true;
    }

    /// Records a change of the in-memory copy of recent rows, applied if and when this
    /// transaction commits (at once after the COMMIT, in the same poll: no cancellation
    /// can come between them). Nothing is recorded without a copy (PostgreSQL).
    pub fn on_commit(&mut self, edit: impl FnOnce(&mut Rows) + Send + 'static) {
        if self.recent.is_some() {
            self.edits.push(Box::new(edit));
        }
    }

    /// [`Tx::on_commit`] of `edit` with its own copy of `rows` (made only if recorded).
    pub fn on_commit_copy<T: Clone + Send + 'static>(
        &mut self,
        rows: &[&T],
        edit: fn(&mut Rows, Vec<T>),
    ) {
        if self.keeps_recent() {
            let rows: Vec<T> = rows.iter().map(|r| (*r).clone()).collect();
            self.on_commit(move |r| edit(r, rows));
        }
    }

    /// Whether [`Tx::on_commit`] records anything (callers skip building edits if not).
    pub fn keeps_recent(&self) -> bool {
        self.recent.is_some()
    }

    /// Runs `f` if and when this transaction commits (metrics of what it changed, so a
    /// rolled-back or retried batch is not counted).
    pub(crate) fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<()> {
        self.finish(true).await?;
        for f in std::mem::take(&mut self.after_commit) {
            f();
        }
        if let Some(recent) = &self.recent {
            recent.apply(std::mem::take(&mut self.edits));
        }
        if self.retire_caches {
            if let Some(caches) = &self.caches {
                caches.invalidate();
            }
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        self.finish(false).await
    }

    async fn finish(&mut self, commit: bool) -> Result<()> {
        match (&mut *self.conn, commit) {
            (Conn::Pg(c), true) => AnyTransactionManager::commit(c).await?,
            (Conn::Pg(c), false) => AnyTransactionManager::rollback(c).await?,
            (Conn::Lite(c), _) => c
                .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
                .map_err(super::sql::lite_error)?,
        }
        self.open = false;
        vellum_core::metrics::db_transaction(commit, self.started.elapsed());
        Ok(())
    }
}

impl Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            vellum_core::metrics::db_transaction(false, self.started.elapsed());
            match &mut *self.conn {
                // Queued on the connection ahead of whatever its next user sends.
                Conn::Pg(c) => AnyTransactionManager::start_rollback(c),
                Conn::Lite(c) => {
                    if let Err(e) = c.execute_batch("ROLLBACK") {
                        tracing::warn!(error = %e, "rolling back a dropped transaction");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{settings, Store};

    /// SQLite's single writer: a transaction dropped without commit (a cancelled request)
    /// leaves nothing behind and does not keep the writer; committed ones are seen by the
    /// readers at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_transactions_roll_back_and_free_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/pool.db", dir.path().display());
        let store = Store::connect(&url, 4).await.unwrap();
        {
            let mut tx = store.begin().await.unwrap();
            settings::put(&mut tx, "k", "dropped").await.unwrap();
        }
        let read = |store: Store| async move {
            let mut conn = store.reader().acquire().await.unwrap();
            settings::get(&mut conn, "k").await.unwrap()
        };
        assert_eq!(read(store.clone()).await, None);
        let commit = async {
            let mut tx = store.begin().await.unwrap();
            settings::put(&mut tx, "k", "kept").await.unwrap();
            tx.commit().await.unwrap();
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), commit)
            .await
            .expect("the writer is free again");
        assert_eq!(read(store.clone()).await.as_deref(), Some("kept"));
        // Readers are handed back too: more sequential reads than connections.
        for _ in 0..20 {
            assert_eq!(read(store.clone()).await.as_deref(), Some("kept"));
        }
        let mut tx = store.begin().await.unwrap();
        settings::put(&mut tx, "k", "rolled back").await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(read(store.clone()).await.as_deref(), Some("kept"));
        store.close().await;
    }

    /// Edits of the in-memory copy of recent rows apply when, and only when, their
    /// transaction commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recent_row_edits_apply_at_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/recent.db", dir.path().display());
        let store = Store::connect(&url, 4).await.unwrap();
        let recent = store.recent().expect("SQLite keeps recent rows");
        for (id, how) in [("dropped", 0), ("rolled-back", 1), ("committed", 2)] {
            let mut tx = store.begin().await.unwrap();
            assert!(tx.keeps_recent());
            let o = crate::recent::tests::order(id);
            tx.on_commit(move |r| r.insert_orders(vec![o]));
            match how {
                0 => drop(tx),
                1 => tx.rollback().await.unwrap(),
                _ => tx.commit().await.unwrap(),
            }
        }
        assert!(recent.order("dropped").is_none());
        assert!(recent.order("rolled-back").is_none());
        assert_eq!(
            recent.order("committed").unwrap().status,
            vellum_core::status::OrderStatus::Pending
        );
        store.close().await;
    }

    /// A full disk (SQLite's `max_page_count` stands in for it): the write is refused with
    /// the domain's 503 saying the disk is full, rolled back whole, the writer stays
    /// usable, the file stays sound, and once there is room writing goes on with the same
    /// connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_refuses_writes_until_there_is_room() {
        use vellum_core::error::Error;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/full.db", dir.path().display());
        let store = Store::connect(&url, 4).await.unwrap();
        // The writer's connection keeps the cap: the file may not grow past its size now
        // (a cap below the current size is raised to it).
        let mut tx = store.begin().await.unwrap();
        crate::query("PRAGMA max_page_count = 1")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let big = "x".repeat(64 * 1024);
        let mut written = 0;
        let refusal = loop {
            assert!(written < 200, "the capped file never filled up");
            let mut tx = store.begin().await.unwrap();
            let put = settings::put(&mut tx, &format!("k{written}"), &big).await;
            let done = match put {
                Ok(()) => tx.commit().await,
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
        };
        match &refusal {
            Error::Unavailable {
                detail,
                retry_after,
            } => {
                assert!(detail.contains("disk is full"), "{detail}");
                assert!(*retry_after > 0);
            }
            other => panic!("a full disk became {other:?}"),
        }
        let read = |key: String| {
            let store = store.clone();
            async move {
                let mut conn = store.reader().acquire().await.unwrap();
                settings::get(&mut conn, &key).await.unwrap()
            }
        };
        assert!(
            read(format!("k{written}")).await.is_none(),
            "nothing half-written"
        );
        // Room again: the same writer connection writes.
        let mut tx = store.begin().await.unwrap();
        crate::query("PRAGMA max_page_count = 1073741823")
            .execute(&mut tx)
            .await
            .unwrap();
        settings::put(&mut tx, "after", "room again").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(read("after".into()).await.as_deref(), Some("room again"));
        let mut conn = store.reader().acquire().await.unwrap();
        let check = crate::query("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(check.try_get::<String, _>(0).unwrap(), "ok");
        drop(conn);
        store.close().await;
    }
}
