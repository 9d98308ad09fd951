-- Pending items (issue 13: `GET /pending`) and their snoozes.

-- The counts and first items of "expiring" and "expired" are range scans of this index
-- (tenant, then not_after), never a walk of the tenant's certificates. Partial: revoked and
-- deleted certificates are never pending. `revoked_at` and `deleted_at` are columns of the
-- index too (always NULL in it): SQLite counts from a covering index only when every
-- column the query names is in it, and reads each table row otherwise (238 ms → 19 ms to
-- count 130,000 rows among a million, benches/inventory_scale.rs). The one
-- index the pending items add to `certificates`, whose every issuance inserts a row: the
-- issuance path pays one more B-tree insert; revocation and deletion take the row out.
CREATE INDEX certificates_pending ON certificates (tenant_id, not_after, revoked_at, deleted_at)
    WHERE revoked_at IS NULL AND deleted_at IS NULL;

-- Managed certificates: the same range without deleted ones, and those whose reminders
-- are off (a small set: a partial index of its own).
CREATE INDEX managed_pending ON managed_certificates (tenant_id, not_after, deleted_at)
    WHERE deleted_at IS NULL;
CREATE INDEX managed_notifications_off ON managed_certificates
    (tenant_id, not_after, notifications, deleted_at) WHERE notifications = 0 AND deleted_at IS NULL;

-- "Do not remind me again for N days", per API token and per tenant it acts in (a
-- super-admin switching tenants snoozes each one separately). One row per kind; snoozing
-- "all" writes every kind. A row whose `until` has passed snoozes nothing.
CREATE TABLE pending_snoozes (
    token_id   TEXT NOT NULL REFERENCES api_tokens(id),
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    kind       TEXT NOT NULL,
    until      BIGINT NOT NULL,
    PRIMARY KEY (token_id, tenant_id, kind)
);
