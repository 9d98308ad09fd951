//! Connection pools and write transactions.
//!
//! PostgreSQL uses sqlx's pool. SQLite does not: sqlx's pool tests every connection when it
//! is released (a `ping`), and each SQLite connection is a thread of sqlx's, so the ping is
//! a second round trip to that thread for every query (two more context switches, and a
//! spawned task) and, for the one writer connection, a wait before the next transaction
//! may start. A SQLite connection is a file handle in this process: there is nothing to
//! test. [`Pool::Local`] keeps the connections in a list behind a semaphore and hands them
//! back as they are.
//!
//! Cancellation is safe: a query already sent runs to its end on the connection's thread,
//! before any later command, and resets its statement; a [`Tx`] dropped while open queues
//! its ROLLBACK on the connection before the connection goes back to the list.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use sqlx::any::AnyTransactionManager;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, TransactionManager};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// A set of connections to one database.
#[derive(Clone, Debug)]
pub enum Pool {
    /// sqlx's pool (PostgreSQL).
    Sqlx(AnyPool),
    /// Connections handed out without a release test (SQLite).
    Local(Arc<LocalPool>),
}

/// The SQLite connections of one [`Pool::Local`].
#[derive(Debug)]
pub struct LocalPool {
    idle: Mutex<Vec<AnyConnection>>,
    permits: Arc<Semaphore>,
}

impl LocalPool {
    /// A pool of the given, already configured, connections.
    pub fn new(conns: Vec<AnyConnection>) -> LocalPool {
        LocalPool {
            permits: Arc::new(Semaphore::new(conns.len())),
            idle: Mutex::new(conns),
        }
    }

    fn take(&self) -> Option<AnyConnection> {
        self.idle.lock().ok()?.pop()
    }

    fn give_back(&self, conn: AnyConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

/// A connection out of a [`Pool`]; goes back when dropped.
pub enum PoolConn {
    /// From sqlx's pool.
    Sqlx(PoolConnection<Any>),
    /// From a local pool. The permit is released after the connection is back.
    Local(Option<AnyConnection>, Arc<LocalPool>, OwnedSemaphorePermit),
}

impl Pool {
    /// Waits for a free connection.
    pub async fn acquire(&self) -> Result<PoolConn> {
        match self {
            Pool::Sqlx(p) => Ok(PoolConn::Sqlx(p.acquire().await?)),
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
                Ok(PoolConn::Local(Some(conn), p.clone(), permit))
            }
        }
    }

    /// Starts a transaction on a connection of this pool.
    pub async fn begin(&self) -> Result<Tx> {
        let mut conn = self.acquire().await?;
        AnyTransactionManager::begin(&mut conn, None).await?;
        Ok(Tx { conn, open: true })
    }

    /// Closes every connection (waiting for those in use).
    pub async fn close(&self) {
        match self {
            Pool::Sqlx(p) => p.close().await,
            Pool::Local(p) => {
                p.permits.close();
                let conns = p.idle.lock().map(|mut v| std::mem::take(&mut *v));
                for conn in conns.unwrap_or_default() {
                    let _ = sqlx::Connection::close(conn).await;
                }
            }
        }
    }
}

impl Deref for PoolConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            PoolConn::Sqlx(c) => c,
            // Only `Drop` takes the connection out.
            PoolConn::Local(c, _, _) => c.as_ref().unwrap_or_else(|| unreachable!()),
        }
    }
}

impl DerefMut for PoolConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            PoolConn::Sqlx(c) => c,
            PoolConn::Local(c, _, _) => c.as_mut().unwrap_or_else(|| unreachable!()),
        }
    }
}

impl Drop for PoolConn {
    fn drop(&mut self) {
        if let PoolConn::Local(conn, pool, _permit) = self {
            if let Some(conn) = conn.take() {
                pool.give_back(conn);
            }
        }
    }
}

/// A write transaction: rolled back when dropped without [`Tx::commit`].
pub struct Tx {
    conn: PoolConn,
    open: bool,
}

impl Tx {
    /// Commits.
    pub async fn commit(mut self) -> Result<()> {
        AnyTransactionManager::commit(&mut self.conn).await?;
        self.open = false;
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        AnyTransactionManager::rollback(&mut self.conn).await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            // Queued on the connection ahead of whatever its next user sends.
            AnyTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{settings, Store};

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
}
