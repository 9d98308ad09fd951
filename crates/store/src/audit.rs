//! Audit events: who did what, when, from where, with what result.

use super::{query, Conn};
use vellum_core::error::Result;
use vellum_core::status::AuditOutcome;

/// One audit event.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// Sequence number (assigned by the database).
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The tenant it happened in (the events of a tenant are listed by it).
    pub tenant_id: Option<String>,
    /// Who acted: the API token id (admin API), `acme:{account id}` (ACME issuance), or
    /// the EST requester (`est:basic:{user}`, `est:cert:{serial}`, `est:trusted:{serial}`).
    pub actor: Option<String>,
    /// The token's name when the event was written (copied, not joined: the event keeps
    /// the name the token acted under, and listing needs no join).
    pub actor_name: Option<String>,
    /// e.g. `ca.enable`, `quota.assign`, `token.create`.
    pub action: String,
    /// Id of the object acted upon.
    pub target: Option<String>,
    /// The client's IP address as text, when known.
    pub source_ip: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Failure reason or a short summary.
    pub detail: Option<String>,
}

/// Appends an event (its `id` is ignored: the database assigns one).
pub async fn insert(conn: &mut Conn, e: &AuditEvent) -> Result<()> {
    insert_many(conn, &[e]).await
}

/// Appends events with one multi-row INSERT per 100 events, in order.
pub async fn insert_many(conn: &mut Conn, events: &[&AuditEvent]) -> Result<()> {
    for chunk in events.chunks(100) {
        let sql = format!(
            "INSERT INTO audit_events (at, tenant_id, actor, action, target, source_ip, outcome, detail, \
             actor_name) VALUES {}",
            super::values_placeholders(conn, chunk.len(), 9)
        );
        let mut q = query(&sql);
        for e in chunk {
            q = q
                .bind(e.at)
                .bind(&e.tenant_id)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.source_ip)
                .bind(e.outcome.as_str())
                .bind(&e.detail)
                .bind(&e.actor_name);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Filters for [`list`].
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Only events with exactly this action.
    pub action: Option<String>,
    /// Only events acting on exactly this object id.
    pub target: Option<String>,
    /// Token id or token name of the actor.
    pub actor: Option<String>,
    /// Only events at or after this time, Unix seconds.
    pub since: Option<i64>,
    /// Events at or before this time.
    pub until: Option<i64>,
    /// Return events with a smaller id than this (newest first paging).
    pub before_id: Option<i64>,
    /// Most events returned (clamped to 1–1000).
    pub limit: i64,
}

/// Events of a tenant matching `f`, newest first (by id); at most `f.limit` (1–1000).
pub async fn list(conn: &mut Conn, tenant_id: &str, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
    let mut sql = String::from("SELECT * FROM audit_events WHERE tenant_id = $1");
    let mut n = 1;
    let mut clause = |sql: &mut String, c: &str| {
        n += 1;
        sql.push_str(&format!(" AND {c} ${n}"));
    };
    if f.action.is_some() {
        clause(&mut sql, "action =");
    }
    if f.target.is_some() {
        clause(&mut sql, "target =");
    }
    if f.actor.is_some() {
        let mut actor_clause = String::new();
        // Bound twice (token id or name), each placeholder once.
        clause(&mut actor_clause, "(actor =");
        clause(&mut actor_clause, "actor_name =");
        sql.push_str(&actor_clause.replacen(" AND actor_name", " OR actor_name", 1));
        sql.push(')');
    }
    if f.since.is_some() {
        clause(&mut sql, "at >=");
    }
    if f.until.is_some() {
        clause(&mut sql, "at <=");
    }
    if f.before_id.is_some() {
        clause(&mut sql, "id <");
    }
    sql.push_str(&format!(
        " ORDER BY id DESC LIMIT {}",
        f.limit.clamp(1, 1000)
    ));
    let mut q = query(&sql).bind(tenant_id);
    if let Some(a) = &f.action {
        q = q.bind(a);
    }
    if let Some(t) = &f.target {
        q = q.bind(t);
    }
    if let Some(a) = &f.actor {
        q = q.bind(a).bind(a);
    }
    if let Some(s) = f.since {
        q = q.bind(s);
    }
    if let Some(u) = f.until {
        q = q.bind(u);
    }
    if let Some(b) = f.before_id {
        q = q.bind(b);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEvent {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                tenant_id: r.try_get("tenant_id")?,
                actor: r.try_get("actor")?,
                actor_name: r.try_get("actor_name")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                source_ip: r.try_get("source_ip")?,
                outcome: super::decode_spelled(r, "audit_events", "outcome")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
}
