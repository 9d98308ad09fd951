//! What backup, restore and master-key rotation need from the database: a consistent
//! copy of a live database, the columns that hold sealed secrets, and the state a
//! restore must move forward (CRL numbers, pre-signed OCSP responses).
//!
//! SQLite is copied with `VACUUM INTO` (one read transaction: a consistent snapshot
//! while the server writes); PostgreSQL with `pg_dump --format=custom` (one repeatable-
//! read snapshot) and restored with `pg_restore`, the tools of the server's own package.

use std::path::{Path, PathBuf};

use super::{query, Backend, Conn, Store, Tx};
use vellum_core::error::{Error, Result};

/// A column that holds a secret sealed under the master key, and how its sealing
/// context is formed from the row's key column (`{}` stands for the key).
#[derive(Debug, Clone, Copy)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// The column that identifies the row (and names its sealing context).
    pub key: &'static str,
    /// The sealed column.
    pub column: &'static str,
    /// The sealing context, `{}` replaced by the key.
    pub context: &'static str,
}

impl SealedColumn {
    /// The sealing context of the row with key `key`.
    pub fn context_of(&self, key: &str) -> String {
        self.context.replace("{}", key)
    }
}

/// Every sealed column of the schema. A new sealed column must be added here, or a
/// master-key rotation leaves it unreadable (a test checks every `*_sealed` column of the
/// schema is listed).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "cas",
        key: "id",
        column: "key_sealed",
        context: "{}",
    },
    SealedColumn {
        table: "ca_generations",
        key: "id",
        column: "key_sealed",
        context: "ca-generation:{}",
    },
    SealedColumn {
        table: "certificates",
        key: "id",
        column: "key_sealed",
        context: "{}",
    },
    SealedColumn {
        table: "managed_certificates",
        key: "id",
        column: "key_sealed",
        context: "{}",
    },
    SealedColumn {
        table: "acme_eab_keys",
        key: "kid",
        column: "key_sealed",
        context: "{}",
    },
    SealedColumn {
        table: "csrs",
        key: "id",
        column: "key_sealed",
        context: "csr:{}",
    },
    SealedColumn {
        table: "notification_channels",
        key: "id",
        column: "secret_sealed",
        context: "notify:{}",
    },
    SealedColumn {
        table: "ocsp_signers",
        key: "ca_id",
        column: "key_sealed",
        context: "ocsp-signer/{}",
    },
];

/// The rows of `col` holding a sealed value, `(key, sealed)`, after key `after`, first
/// `limit` by key (read in pages: a million server-generated keys do not fit one read).
pub async fn sealed_page(
    conn: &mut Conn,
    col: &SealedColumn,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, Vec<u8>)>> {
    let sql = format!(
        "SELECT {key} AS k, {column} AS v FROM {table} \
         WHERE {column} IS NOT NULL AND {key} > $1 ORDER BY {key} LIMIT {limit}",
        key = col.key,
        column = col.column,
        table = col.table,
    );
    let rows = query(&sql).bind(after).fetch_all(conn).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("k")?, r.try_get("v")?)))
        .collect()
}

/// Replaces the sealed value of one row of `col`.
pub async fn reseal(tx: &mut Tx, col: &SealedColumn, key: &str, sealed: &[u8]) -> Result<()> {
    tx.retire_caches();
    let sql = format!(
        "UPDATE {table} SET {column} = $1 WHERE {key} = $2",
        key = col.key,
        column = col.column,
        table = col.table,
    );
    query(&sql).bind(sealed).bind(key).execute(tx).await?;
    Ok(())
}

/// The `*_sealed` columns of the schema as `table.column` (to check [`SEALED`] is whole).
pub async fn sealed_columns_in_schema(conn: &mut Conn) -> Result<Vec<String>> {
    let sql = match conn.backend_name() {
        "SQLite" => {
            "SELECT m.name || '.' || p.name AS c FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name LIKE '%\\_sealed' ESCAPE '\\' \
             ORDER BY c"
        }
        _ => {
            "SELECT table_name || '.' || column_name AS c FROM information_schema.columns \
             WHERE table_schema = current_schema() AND column_name LIKE '%\\_sealed' ESCAPE '\\' \
             ORDER BY c"
        }
    };
    let rows = query(sql).fetch_all(conn).await?;
    rows.iter().map(|r| Ok(r.try_get("c")?)).collect()
}

/// The largest CRL number any CA of the installation has used.
pub async fn max_crl_number(conn: &mut Conn) -> Result<i64> {
    let row = query("SELECT COALESCE(MAX(crl_number), 0) AS n FROM cas")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get("n")?)
}

/// After a restore: every CA's next CRL number is above `floor` (so no CRL number served
/// between the backup and the restore comes again), every CRL is re-signed on its next
/// request, and no pre-signed OCSP response of the backup is served (they are signed
/// afresh from the restored state). Returns how many CAs were moved forward.
pub async fn move_forward_after_restore(tx: &mut Tx, floor: i64) -> Result<u64> {
    tx.retire_caches();
    let moved = query("UPDATE cas SET crl_number = $1 WHERE crl_number < $1")
        .bind(floor)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    query("UPDATE cas SET revocation_revision = revocation_revision + 1")
        .execute(&mut *tx)
        .await?;
    query("DELETE FROM crls").execute(&mut *tx).await?;
    query("DELETE FROM ocsp_responses")
        .execute(&mut *tx)
        .await?;
    // Leases held by the servers of the backup's time: the restored installation's
    // servers take them at once.
    query("DELETE FROM leases").execute(&mut *tx).await?;
    Ok(moved)
}

/// Live leases (`name`, `holder`, `expires_at`): a server holds one while it runs its
/// background jobs, so any live lease means a server is using the database.
pub async fn live_leases(conn: &mut Conn, now: i64) -> Result<Vec<(String, String, i64)>> {
    let rows = query("SELECT name, holder, expires_at FROM leases WHERE expires_at > $1")
        .bind(now)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("name")?,
                r.try_get("holder")?,
                r.try_get("expires_at")?,
            ))
        })
        .collect()
}

/// The SQLite database file of `url` (`sqlite:///path/db?…`).
pub fn sqlite_file(url: &str) -> Result<PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let file = path.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return Err(Error::config(format!(
            "database_url {url:?} names no database file"
        )));
    }
    Ok(PathBuf::from(file))
}

/// Writes a consistent copy of the live database to `dest` (which must not exist):
/// SQLite's `VACUUM INTO` (a read transaction: writers go on), PostgreSQL's
/// `pg_dump --format=custom` of `url`.
pub async fn snapshot(store: &Store, url: &str, dest: &Path) -> Result<()> {
    match store.backend() {
        Backend::Sqlite => {
            let mut conn = store.reader().acquire().await?;
            let dest = dest
                .to_str()
                .ok_or_else(|| Error::config("the backup's temporary path is not UTF-8"))?;
            query("VACUUM INTO $1")
                .bind(dest)
                .execute(&mut conn)
                .await?;
            Ok(())
        }
        Backend::Postgres => {
            let mut cmd = tokio::process::Command::new("pg_dump");
            cmd.args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                .arg(dest)
                .arg("--dbname")
                .arg(url);
            run_pg_tool("pg_dump", cmd).await
        }
    }
}

/// Loads a `pg_dump --format=custom` file into the empty PostgreSQL database `url`.
pub async fn pg_restore(url: &str, dump: &Path) -> Result<()> {
    let mut cmd = tokio::process::Command::new("pg_restore");
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--dbname",
    ])
    .arg(url)
    .arg(dump);
    run_pg_tool("pg_restore", cmd).await
}

/// Runs one of PostgreSQL's client tools; its refusal becomes an error naming the tool
/// and quoting what it printed.
async fn run_pg_tool(name: &str, mut cmd: tokio::process::Command) -> Result<()> {
    let out = cmd.output().await.map_err(|e| {
        Error::config(format!(
            "running {name} (PostgreSQL's client tools, Debian package postgresql-client): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::config(format!(
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// How many tables the PostgreSQL database `url` holds in its current schema (a restore
/// goes into an empty database only).
pub async fn pg_table_count(url: &str) -> Result<i64> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .map_err(|e| Error::config(format!("connecting to PostgreSQL: {e}")))?;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| Error::config(format!("reading PostgreSQL's catalog: {e}")))?;
    let _ = conn.close().await;
    Ok(n)
}
