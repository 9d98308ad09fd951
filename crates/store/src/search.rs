//! The certificate search index kept behind issuance (SQLite; migration 0018).
//!
//! Indexing a certificate's names in the FTS5 trigram table inside the issuance
//! transaction cost 10-14 % of issuance throughput, so [`catch_up`] indexes new
//! certificates afterwards, in rowid order and in batches, and records the last rowid it
//! indexed (`search_progress`). A search reads the index up to that mark and tests the
//! rows after it directly ([`unindexed_matches`]): what was just issued is found all the
//! same. PostgreSQL's index (GIN, `pg_trgm`) is part of the table: nothing to do there.

use super::sql::{query, Conn};
use super::{Backend, Store};
use vellum_core::error::Result;

/// The progress row of the certificate index.
const CERTIFICATES: &str = "certificates";

/// Indexes up to `batch` certificates past the mark in one transaction and moves the
/// mark; the number indexed (0 on PostgreSQL, or when the index is up to date). Run it
/// again while it returns `batch`.
pub async fn catch_up(store: &Store, batch: i64) -> Result<i64> {
    if store.backend() != Backend::Sqlite {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    let mark = mark(&mut tx).await?;
    // OR REPLACE: after a row was ever deleted (the mark moved back), rows already in the
    // index come again.
    let done = query(
        "INSERT OR REPLACE INTO certificates_search (rowid, text) \
         SELECT rowid, lower(common_name || ' ' || sans_json) FROM certificates \
         WHERE rowid > $1 ORDER BY rowid LIMIT $2",
    )
    .bind(mark)
    .bind(batch)
    .execute(&mut tx)
    .await?
    .rows_affected() as i64;
    if done > 0 {
        query(
            "UPDATE search_progress SET indexed_rowid = \
             (SELECT max(rowid) FROM (SELECT rowid FROM certificates WHERE rowid > $1 \
              ORDER BY rowid LIMIT $2)) WHERE name = $3",
        )
        .bind(mark)
        .bind(batch)
        .bind(CERTIFICATES)
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// The last certificate rowid in the index.
async fn mark(conn: &mut Conn) -> Result<i64> {
    let r = query("SELECT indexed_rowid FROM search_progress WHERE name = $1")
        .bind(CERTIFICATES)
        .fetch_optional(conn)
        .await?;
    Ok(match r {
        Some(r) => r.try_get(0usize)?,
        None => 0,
    })
}

/// The ids of the tenant's certificates past the mark whose names contain `q` (lower
/// case), at most `limit` + 1 (SQLite).
pub(crate) async fn unindexed_matches(
    conn: &mut Conn,
    tenant_id: &str,
    q: &str,
    limit: usize,
) -> Result<Vec<super::sql::Row>> {
    let mark = mark(conn).await?;
    Ok(query(&format!(
        // `+tenant_id`: by rowid from the mark, not by walking the tenant's index.
        "SELECT id FROM certificates WHERE rowid > $1 AND +tenant_id = $2 \
         AND LOWER(common_name || ' ' || sans_json) LIKE $3 ESCAPE '\\' LIMIT {}",
        limit + 1
    ))
    .bind(mark)
    .bind(tenant_id)
    .bind(format!("%{}%", super::like_escape(q)))
    .fetch_all(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::super::sql::query;

    async fn insert(store: &super::Store, id: &str, cn: &str) {
        let mut tx = store.begin().await.unwrap();
        query(
            "INSERT INTO certificates (id, tenant_id, serial, cert_type, common_name, \
             sans_json, not_before, not_after, source, key_algorithm, certificate_der, \
             created_at) VALUES ($1, 't', $1, 'server', $2, '[]', 0, 1, 'admin', 'ec', x'00', 0)",
        )
        .bind(id)
        .bind(cn)
        .execute(&mut tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    async fn in_index(store: &super::Store, q: &str) -> Vec<String> {
        let mut conn = store.reader().acquire().await.unwrap();
        let rows = query(
            "SELECT c.id FROM certificates c WHERE c.rowid IN \
             (SELECT rowid FROM certificates_search WHERE certificates_search MATCH $1) \
             ORDER BY c.id",
        )
        .bind(format!("\"{q}\""))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.iter().map(|r| r.try_get(0usize).unwrap()).collect()
    }

    async fn behind(store: &super::Store, q: &str) -> Vec<String> {
        let mut conn = store.reader().acquire().await.unwrap();
        let rows = super::unindexed_matches(&mut conn, "t", q, 100)
            .await
            .unwrap();
        let mut ids: Vec<String> = rows.iter().map(|r| r.try_get(0usize).unwrap()).collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn new_certificates_are_searchable_before_and_after_the_index_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/v.db", dir.path().display());
        let store = super::Store::connect(&url, 2).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        query("INSERT INTO tenants (id, name, entity, created_at) VALUES ('t', 't', 'e', 0)")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for i in 0..5 {
            insert(
                &store,
                &format!("c{i}"),
                &format!("Host-{i}.Needle.example"),
            )
            .await;
        }
        // Issuance no longer indexes: the rows are past the mark, found directly.
        assert!(in_index(&store, "needle").await.is_empty());
        assert_eq!(
            behind(&store, "needle").await,
            ["c0", "c1", "c2", "c3", "c4"]
        );
        assert_eq!(behind(&store, "host-3").await, ["c3"]);
        // A pass in batches of 2: a full batch says "more".
        assert_eq!(super::catch_up(&store, 2).await.unwrap(), 2);
        assert_eq!(behind(&store, "needle").await, ["c2", "c3", "c4"]);
        assert_eq!(super::catch_up(&store, 2).await.unwrap(), 2);
        assert_eq!(super::catch_up(&store, 2).await.unwrap(), 1);
        assert_eq!(super::catch_up(&store, 2).await.unwrap(), 0);
        assert!(behind(&store, "needle").await.is_empty());
        assert_eq!(
            in_index(&store, "needle").await,
            ["c0", "c1", "c2", "c3", "c4"]
        );
        // Lower-cased, like the page's LIKE.
        assert_eq!(in_index(&store, "host-3").await, ["c3"]);
        // One more: behind again until the next pass; nothing indexed twice.
        insert(&store, "c5", "late.needle.example").await;
        assert_eq!(behind(&store, "needle").await, ["c5"]);
        assert_eq!(super::catch_up(&store, 100).await.unwrap(), 1);
        assert_eq!(in_index(&store, "needle").await.len(), 6);
        assert!(behind(&store, "needle").await.is_empty());
    }
}
