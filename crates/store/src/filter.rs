//! The one WHERE-clause builder of the inventory lists: the certificate list, the managed
//! list, their CSV streams and the bulk actions' selection all filter through [`Where`],
//! so a filter means the same rows wherever it is used.
//!
//! Every value is bound, never spliced: a clause is written with `{}` where its value
//! goes, and [`Where::push`] numbers it `$n` (both backends read `$n`). Paging is by
//! keyset (`id > after`, `ORDER BY id`), which stays as fast on the millionth row as on
//! the first.
//!
//! **Who drives the page** ([`page`]). By default a page walks the `(tenant_id, id)` index
//! in order and tests each row, stopping after `limit` matches: fast when matches are
//! common, a read of the whole tenant when they are rare. With a tag or a `q` of 3
//! characters or more, the walk goes [`WINDOW`] ids at most (none with a `key=value` tag,
//! whose index visits only tagged rows in id order anyway); a page not full by then is
//! finished by one of two indexes of migration 0017:
//! - a tag `key=value` walks the tag table's `(tenant_id, key, value, id)` key in id order
//!   in one statement, each tagged row probed by id with every filter applied: never more
//!   rows visited than the walk, and only the tagged ones;
//! - `q` (3 characters or more) and a tag `key` ask their index for at most [`CAP`] + 1
//!   matching ids (SQLite: FTS5 trigram table; PostgreSQL: `pg_trgm` GIN index; the tag
//!   table): fewer than that, and the page is those ids, fetched by id with every filter
//!   applied; more, and matches are common enough for the walk.
//!
//! Whatever drives, the WHERE clause is the same complete filter (the index only picks
//! which rows are tested), so a page means the same rows either way.

use super::sql::{query, Arg, Conn, Query, Row};
use vellum_core::error::Result;
use vellum_core::status::{CertificateStatus, EXPIRING_DAYS};

/// The tables of one inventory: its rows, its tag table and its search index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inventory {
    /// The rows (`certificates`, `managed_certificates`).
    pub(crate) table: &'static str,
    /// The tag table (`certificate_tags`, `managed_tags`).
    tags: &'static str,
    /// The tag table's column of the row id.
    tag_id: &'static str,
    /// The search index: the FTS5 table on SQLite (the GIN index on PostgreSQL is on the
    /// table itself).
    search: &'static str,
    /// The search index runs behind the table (SQLite's certificates: `store::search`):
    /// rows past its mark are tested directly.
    behind: bool,
}

/// The certificate list's tables.
pub(crate) const CERTIFICATES: Inventory = Inventory {
    table: "certificates",
    tags: "certificate_tags",
    tag_id: "certificate_id",
    search: "certificates_search",
    behind: true,
};

/// The managed list's tables.
pub(crate) const MANAGED: Inventory = Inventory {
    table: "managed_certificates",
    tags: "managed_tags",
    tag_id: "managed_id",
    search: "managed_search",
    behind: false,
};

/// The most ids a filter's index is asked for before the filter counts as common (and
/// the page walks the list instead).
pub const CAP: usize = 2_000;
/// Ids per page query when an index drives the page.
pub const CHUNK: usize = 250;
/// Ids a page walks before it asks an index (a filter matching 1 % of the rows or more
/// fills a page of 50 there).
pub const WINDOW: i64 = 5_000;
/// The shortest `q` a trigram index answers; shorter ones are tested row by row.
pub const MIN_INDEXED_Q: usize = 3;

/// A WHERE clause under construction, with its bound values in `$n` order.
#[derive(Debug, Clone)]
pub struct Where {
    sql: String,
    args: Vec<Arg<'static>>,
}

/// The filters both inventories share (the certificate list adds its own: CA and type).
#[derive(Debug, Clone, Copy, Default)]
pub struct Common<'a> {
    /// Substring of the CN or of a SAN, case-insensitive.
    pub q: Option<&'a str>,
    /// `key` (the tag is set) or `key=value` (set to that value).
    pub tag: Option<&'a str>,
    /// The row's `source` column equals this spelling.
    pub source: Option<&'a str>,
    /// Only rows carrying the leakage-risk flag.
    pub leakage_risk: bool,
    /// Status at `now`, read from `not_after` (and `revoked_at` when `revocable`).
    pub status: Option<CertificateStatus>,
    /// Ids strictly greater than this (UUIDv7: creation order).
    pub after: Option<&'a str>,
}

impl Where {
    /// The tenant's rows that are not deleted: `tenant_id = $1 AND deleted_at IS NULL`.
    pub fn tenant(tenant_id: &str) -> Where {
        Where {
            sql: String::from("tenant_id = $1 AND deleted_at IS NULL"),
            args: vec![Arg::from(tenant_id.to_string())],
        }
    }

    /// The tenant's rows, in a table without `deleted_at`: `tenant_id = $1`.
    pub fn tenant_only(tenant_id: &str) -> Where {
        Where {
            sql: String::from("tenant_id = $1"),
            args: vec![Arg::from(tenant_id.to_string())],
        }
    }

    /// Adds ` AND ` + `clause`, each `{}` of which stands for `v` (bound once, numbered).
    pub fn push(&mut self, clause: &str, v: impl Into<Arg<'static>>) -> &mut Self {
        self.args.push(v.into());
        let n = format!("${}", self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&clause.replace("{}", &n));
        self
    }

    /// Adds ` AND {column} IN (…)` binding each of `values` (not empty).
    fn push_in(&mut self, column: &str, values: &[String]) -> &mut Self {
        self.sql.push_str(" AND ");
        self.sql.push_str(column);
        self.sql.push_str(" IN (");
        for (i, v) in values.iter().enumerate() {
            self.args.push(Arg::from(v.clone()));
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push_str(&format!("${}", self.args.len()));
        }
        self.sql.push(')');
        self
    }

    /// Adds ` AND ` + `clause`, which binds nothing.
    pub fn raw(&mut self, clause: &str) -> &mut Self {
        self.sql.push_str(" AND ");
        self.sql.push_str(clause);
        self
    }

    /// Adds the shared filters `c` at `now`. `revocable`: the table has `revoked_at`
    /// (certificates, and managed certificates for their synced and shared copies);
    /// without it `revoked` matches nothing.
    pub fn common(&mut self, c: &Common<'_>, now: i64, revocable: bool) -> &mut Self {
        if let Some(s) = c.source {
            self.push("source = {}", s.to_string());
        }
        if let Some(q) = c.q {
            let pattern = format!("%{}%", super::like_escape(&q.to_ascii_lowercase()));
            self.push(
                "(LOWER(common_name) LIKE {} ESCAPE '\\' OR LOWER(sans_json) LIKE {} ESCAPE '\\')",
                pattern,
            );
        }
        if let Some(tag) = c.tag {
            self.push(
                "tags_json LIKE {} ESCAPE '\\'",
                super::tag_like_pattern(tag),
            );
        }
        if c.leakage_risk {
            self.raw("leakage_risk = 1");
        }
        if let Some(a) = c.after {
            self.push("id > {}", a.to_string());
        }
        let live = if revocable {
            "revoked_at IS NULL AND "
        } else {
            ""
        };
        let soon = now + EXPIRING_DAYS * 86_400;
        // `+not_after`: a page walks the (tenant_id, id) index in order and stops after
        // `limit` matches. Without the `+`, SQLite (and PostgreSQL) may take the
        // `(tenant_id, not_after)` indexes of `/pending` instead and sort the whole range
        // by id: 3.6 s for a page of `status=issued` among 1,000,000 certificates
        // (benches/inventory_scale.rs). A unary plus makes the term an expression no index
        // answers, on both backends.
        match c.status {
            Some(CertificateStatus::Revoked) if revocable => self.raw("revoked_at IS NOT NULL"),
            Some(CertificateStatus::Revoked) => self.raw("1 = 0"),
            Some(CertificateStatus::Expired) => {
                self.push(&format!("{live}+not_after <= {{}}"), now)
            }
            Some(CertificateStatus::Expiring) => self
                .push(&format!("{live}+not_after > {{}}"), now)
                .push("+not_after <= {}", soon),
            Some(CertificateStatus::Issued) => self.push(&format!("{live}+not_after > {{}}"), soon),
            None => self,
        }
    }

    /// `SELECT {columns} FROM {table} WHERE … ORDER BY id LIMIT {limit}`, bound.
    pub fn select(&self, columns: &str, table: &str, limit: i64) -> (String, Vec<Arg<'static>>) {
        (
            format!(
                "SELECT {columns} FROM {table} WHERE {} ORDER BY id LIMIT {}",
                self.sql,
                limit.max(1)
            ),
            self.args.clone(),
        )
    }
}

impl Where {
    /// `SELECT {columns} FROM {table} WHERE … ORDER BY id DESC LIMIT {limit}` (newest
    /// first), bound.
    pub fn select_desc(
        &self,
        columns: &str,
        table: &str,
        limit: i64,
    ) -> (String, Vec<Arg<'static>>) {
        (
            format!(
                "SELECT {columns} FROM {table} WHERE {} ORDER BY id DESC LIMIT {}",
                self.sql,
                limit.max(1)
            ),
            self.args.clone(),
        )
    }
}

/// What drives a page (module documentation).
#[derive(Debug)]
enum Driver {
    /// The `(tenant_id, id)` walk.
    Walk,
    /// Every candidate id, sorted (all of them: fewer than [`CAP`]).
    Ids(Vec<String>),
    /// The tag table's `(key, value)` range, in id order.
    Tag { key: String, value: String },
}

/// The tenant's rows of `inv` matching `w` (built by [`Where::common`] from `c`, plus any
/// clause of the list's own), first `limit` by id, with `columns`.
pub(crate) async fn page(
    conn: &mut Conn,
    inv: &Inventory,
    tenant_id: &str,
    w: &Where,
    c: &Common<'_>,
    columns: &str,
    limit: i64,
) -> Result<Vec<Row>> {
    let limit = limit.max(1);
    let indexed_q = c.q.is_some_and(|q| q.chars().count() >= MIN_INDEXED_Q);
    if c.tag.is_none() && !indexed_q {
        let (sql, args) = w.select(columns, inv.table, limit);
        return Ok(bound(&sql, &args).fetch_all(conn).await?);
    }
    // First the next WINDOW ids by the walk: a common filter fills its page there, and
    // asks no index. The window's last id bounds it.
    let boundary = {
        let sql = format!(
            "SELECT id FROM {} WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT 1 OFFSET {}",
            inv.table,
            WINDOW - 1
        );
        query(&sql)
            .bind(tenant_id)
            .bind(c.after.unwrap_or_default())
            .fetch_optional(conn)
            .await?
            .map(|r| r.try_get::<String, _>(0usize))
            .transpose()?
    };
    let Some(boundary) = boundary else {
        // Fewer rows than the window: the walk is the whole answer.
        let (sql, args) = w.select(columns, inv.table, limit);
        return Ok(bound(&sql, &args).fetch_all(conn).await?);
    };
    // A tag `key=value` drives through its own index in id order and never visits more
    // rows than the walk would, so it needs no window first (for a rare combination the
    // window read 5,000 rows to find two or three).
    let tag_drives = c.tag.is_some_and(|t| t.contains('='));
    let mut rows = Vec::new();
    let mut within = None;
    if !tag_drives {
        let mut w_in = w.clone();
        w_in.push("id <= {}", boundary.clone());
        let (sql, args) = w_in.select(columns, inv.table, limit);
        rows = bound(&sql, &args).fetch_all(&mut *conn).await?;
        if rows.len() as i64 >= limit {
            return Ok(rows);
        }
        within = Some(w_in);
    }
    // How common is `q` alone in the window? Common (≥ 0.5 %), its index would return
    // thousands of ids, and PostgreSQL's GIN index builds the whole bitmap first (170 ms
    // for 30 % of a million): the other filters then narrow the page, not `q`.
    let mut q_common = false;
    if indexed_q {
        let mut only_q = Where::tenant(tenant_id);
        only_q.common(
            &Common {
                q: c.q,
                after: c.after,
                ..Common::default()
            },
            0,
            false,
        );
        only_q.push("id <= {}", boundary.clone());
        let n = if within.as_ref().is_some_and(|w_in| w_in.sql == only_q.sql) {
            // `q` is the page's only filter: the window's matches were just read (fewer
            // than a page), no need to count them again.
            rows.len() as i64
        } else {
            // Counted up to the threshold only: a common `q` stops after a few rows.
            let sql = format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT {}) AS hits",
                inv.table,
                only_q.sql,
                WINDOW / 200
            );
            bound(&sql, &only_q.args)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0usize)?
        };
        q_common = n >= WINDOW / 200;
    }
    // The rest of the page, driven by an index when one helps: after the window, or from
    // the cursor when no window was walked.
    let (beyond, from) = if within.is_some() {
        let mut beyond = w.clone();
        beyond.push("id > {}", boundary.clone());
        (beyond, boundary.clone())
    } else {
        (w.clone(), c.after.unwrap_or_default().to_string())
    };
    let need = limit - rows.len() as i64;
    rows.extend(
        driven(
            conn, inv, tenant_id, &beyond, c, &from, q_common, columns, need,
        )
        .await?,
    );
    Ok(rows)
}

/// The first `limit` rows matching `w` with ids after `after`, driven as [`driver`]
/// decides (`skip_q`: `q` is common in the window, so its index is not asked).
#[allow(clippy::too_many_arguments)]
async fn driven(
    conn: &mut Conn,
    inv: &Inventory,
    tenant_id: &str,
    w: &Where,
    c: &Common<'_>,
    after: &str,
    skip_q: bool,
    columns: &str,
    limit: i64,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    match driver(conn, inv, tenant_id, c, after, skip_q).await? {
        Driver::Walk => {
            let (sql, args) = w.select(columns, inv.table, limit);
            rows = bound(&sql, &args).fetch_all(conn).await?;
        }
        Driver::Ids(ids) => {
            for chunk in ids.chunks(CHUNK) {
                let need = limit - rows.len() as i64;
                rows.extend(by_ids(conn, inv, w, columns, chunk, need).await?);
                if rows.len() as i64 >= limit {
                    break;
                }
            }
        }
        Driver::Tag { key, value } => {
            // One statement: the tag index, in id order, drives a probe of each tagged
            // row by primary key with every filter applied, stopping after `limit`
            // matches. The tag rows come through a subquery whose only column is
            // `tag_hit`, so `w`'s unqualified columns keep naming the inventory's.
            let mut w = w.clone();
            let first = w.args.len() + 1;
            for v in [tenant_id, key.as_str(), value.as_str(), after] {
                w.args.push(Arg::from(v.to_string()));
            }
            let columns = if columns == "*" {
                format!("{}.*", inv.table)
            } else {
                columns.to_string()
            };
            let sql = format!(
                "SELECT {columns} FROM (SELECT {id} AS tag_hit FROM {tags} \
                 WHERE tenant_id = ${a} AND key = ${b} AND value = ${c} AND {id} > ${d}) t \
                 JOIN {table} ON {table}.id = t.tag_hit WHERE {wsql} \
                 ORDER BY t.tag_hit LIMIT {limit}",
                id = inv.tag_id,
                tags = inv.tags,
                table = inv.table,
                wsql = w.sql,
                a = first,
                b = first + 1,
                c = first + 2,
                d = first + 3,
                limit = limit.max(1),
            );
            rows = bound(&sql, &w.args).fetch_all(conn).await?;
        }
    }
    Ok(rows)
}

/// The rows among `ids` matching `w`, first `limit` by id.
async fn by_ids(
    conn: &mut Conn,
    inv: &Inventory,
    w: &Where,
    columns: &str,
    ids: &[String],
    limit: i64,
) -> Result<Vec<Row>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut w = w.clone();
    w.push_in("id", ids);
    let (sql, args) = w.select(columns, inv.table, limit);
    Ok(bound(&sql, &args).fetch_all(conn).await?)
}

/// Which index, if any, drives the page of `c` (module documentation).
async fn driver(
    conn: &mut Conn,
    inv: &Inventory,
    tenant_id: &str,
    c: &Common<'_>,
    after: &str,
    skip_q: bool,
) -> Result<Driver> {
    if let Some(q) = c.q.map(str::to_ascii_lowercase).filter(|_| !skip_q) {
        if q.chars().count() >= MIN_INDEXED_Q {
            let found = if conn.backend_name() == "SQLite" {
                // Two steps: joined in one statement, SQLite walks the tenant's rows and
                // asks the FTS table about each (seconds at a million).
                let rowids = fts_rowids(conn, inv.search, &q).await?;
                let mut tail = if inv.behind && rowids.len() <= CAP {
                    super::search::unindexed_matches(conn, tenant_id, &q, CAP).await?
                } else {
                    Vec::new()
                };
                if rowids.len() + tail.len() > CAP {
                    None
                } else if rowids.is_empty() {
                    Some(tail)
                } else {
                    let sql = format!(
                        // `+tenant_id`: by rowid, not by walking the tenant's index.
                        "SELECT id FROM {} WHERE +tenant_id = ? AND rowid IN ({})",
                        inv.table,
                        super::placeholder_list(conn, 2, rowids.len())
                    );
                    let mut st = query(&sql).bind(tenant_id);
                    for r in rowids {
                        st = st.bind(r);
                    }
                    let mut found = st.fetch_all(conn).await?;
                    found.append(&mut tail);
                    Some(found)
                }
            } else {
                let sql = format!(
                    "SELECT id FROM {} WHERE tenant_id = $1 \
                     AND LOWER(common_name || ' ' || sans_json) LIKE $2 ESCAPE '\\' LIMIT {}",
                    inv.table,
                    CAP + 1
                );
                let rows = query(&sql)
                    .bind(tenant_id)
                    .bind(format!("%{}%", super::like_escape(&q)))
                    .fetch_all(&mut *conn)
                    .await?;
                (rows.len() <= CAP).then_some(rows)
            };
            if let Some(found) = found {
                return candidates(&found, after);
            }
        }
    }
    let Some(tag) = c.tag else {
        return Ok(Driver::Walk);
    };
    if let Some((key, value)) = tag.split_once('=') {
        return Ok(Driver::Tag {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE tenant_id = $1 AND key = $2 LIMIT {}",
        inv.tag_id,
        inv.tags,
        CAP + 1
    );
    let found = query(&sql)
        .bind(tenant_id)
        .bind(tag)
        .fetch_all(conn)
        .await?;
    if found.len() <= CAP {
        return candidates(&found, after);
    }
    Ok(Driver::Walk)
}

/// A trigram in fewer rows than this is rare: the FTS5 probe ANDs only the rare ones.
pub const RARE_TRIGRAM: usize = 5_000;

/// At most `CAP + 1` rowids of the FTS5 table `search` whose text may contain `q` (a
/// superset: the page applies the exact LIKE).
///
/// The AND of every 3-character window of `q` is correct but slow when some windows are
/// in most rows: FTS5 advances every window's iterator in step, so `host-123456` among a
/// million `host-K…` names took 155 ms, of which the AND of its four digit windows alone
/// takes 0.5 ms (docs/PERFORMANCE.md). So one statement first counts each window's rows,
/// up to [`RARE_TRIGRAM`], and only the rare windows are ANDed; with none rare, or if
/// the rare ones alone match too many rows, every window is.
async fn fts_rowids(conn: &mut Conn, search: &str, q: &str) -> Result<Vec<i64>> {
    let windows = trigram_windows(q);
    if windows.len() > 3 {
        let values = (0..windows.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH w (i, term) AS (VALUES {values}) SELECT i, (SELECT COUNT(*) FROM \
             (SELECT 1 FROM {search} WHERE {search} MATCH w.term LIMIT {RARE_TRIGRAM})) FROM w"
        );
        let mut st = query(&sql);
        for (i, w) in windows.iter().enumerate() {
            st = st
                .bind(i as i64)
                .bind(trigram_query(std::slice::from_ref(w)));
        }
        let mut rare = Vec::new();
        for row in st.fetch_all(&mut *conn).await? {
            let i: i64 = row.try_get(0usize)?;
            let n: i64 = row.try_get(1usize)?;
            if (n as usize) < RARE_TRIGRAM {
                if let Some(w) = windows.get(i as usize) {
                    rare.push(w.clone());
                }
            }
        }
        if !rare.is_empty() && rare.len() < windows.len() {
            let found = fts_probe(conn, search, &rare).await?;
            if found.len() <= CAP {
                return Ok(found);
            }
        }
    }
    fts_probe(conn, search, &windows).await
}

/// At most `CAP + 1` rowids of `search` holding every one of `windows`.
async fn fts_probe(conn: &mut Conn, search: &str, windows: &[String]) -> Result<Vec<i64>> {
    let sql = format!(
        "SELECT rowid FROM {search} WHERE {search} MATCH $1 LIMIT {}",
        CAP + 1
    );
    let rows = query(&sql)
        .bind(trigram_query(windows))
        .fetch_all(conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<i64, _>(0usize))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// The distinct 3-character windows of `q`, sorted.
fn trigram_windows(q: &str) -> Vec<String> {
    let chars: Vec<char> = q.chars().collect();
    let mut windows: Vec<String> = chars
        .windows(MIN_INDEXED_Q)
        .map(|w| w.iter().collect::<String>())
        .collect();
    windows.sort_unstable();
    windows.dedup();
    windows
}

/// The FTS5 query of the rows whose (trigram-tokenized) text holds every one of
/// `windows`: each a quoted string, ANDed. Measured faster than the phrase `"q"` at a
/// million rows (the windows' iterators skip, the phrase checks positions).
fn trigram_query(windows: &[String]) -> String {
    windows
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The ids of `rows` (first column) after `after`, sorted, once each.
fn candidates(rows: &[Row], after: &str) -> Result<Driver> {
    let mut ids = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0usize))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    ids.retain(|id| id.as_str() > after);
    ids.sort_unstable();
    ids.dedup();
    Ok(Driver::Ids(ids))
}

/// A statement with its values bound in order.
pub(crate) fn bound<'q>(sql: &'q str, args: &[Arg<'static>]) -> Query<'q> {
    let mut q = query(sql);
    for a in args {
        q = q.bind(a.clone());
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_numbered_in_the_order_they_are_pushed() {
        let mut w = Where::tenant("t");
        w.push("ca_id = {}", "ca".to_string());
        w.common(
            &Common {
                q: Some("Web"),
                status: Some(CertificateStatus::Expiring),
                ..Common::default()
            },
            100,
            true,
        );
        let (sql, args) = w.select("id", "certificates", 10);
        assert!(sql.contains("ca_id = $2"), "{sql}");
        assert!(
            sql.contains("LIKE $3 ESCAPE '\\' OR LOWER(sans_json) LIKE $3"),
            "{sql}"
        );
        assert!(
            sql.contains("revoked_at IS NULL AND +not_after > $4 AND +not_after <= $5"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY id LIMIT 10"), "{sql}");
        assert_eq!(args.len(), 5);
    }

    #[test]
    fn a_trigram_query_ands_each_window_once_quoted() {
        let q = |s: &str| trigram_query(&trigram_windows(s));
        assert_eq!(q("abcab"), r#""abc" AND "bca" AND "cab""#);
        assert_eq!(q("a\"bc"), r#""""bc" AND "a""b""#);
        assert_eq!(q("été"), r#""été""#);
    }
}
