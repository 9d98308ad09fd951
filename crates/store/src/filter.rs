//! The one WHERE-clause builder of the inventory lists: the certificate list, the managed
//! list, their CSV streams and the bulk actions' selection all filter through [`Where`],
//! so a filter means the same rows wherever it is used.
//!
//! Every value is bound, never spliced: a clause is written with `{}` where its value
//! goes, and [`Where::push`] numbers it `$n` (both backends read `$n`). Paging is by
//! keyset (`id > after`, `ORDER BY id`), which stays as fast on the millionth row as on
//! the first.

use super::sql::{query, Arg, Query};
use vellum_core::status::{CertificateStatus, EXPIRING_DAYS};

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
}
