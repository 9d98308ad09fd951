-- The certificate inventory (issue 13, part B).

-- CAs carry tags like certificates do (a JSON object of strings).
ALTER TABLE cas ADD COLUMN tags_json TEXT NOT NULL DEFAULT '{}';

-- The service period as bought: `service_months` calendar months counted from
-- `service_started_at` (the purchase, or the renewal that restarted a lapsed service), so
-- service_until = service_started_at + service_months months. An intermediate carries its
-- root's values (it follows its root). Existing rows: months rounded from the length
-- (an average month is 2,629,746 s; a calendar month differs from it by at most 3 days).
ALTER TABLE cas ADD COLUMN service_months BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cas ADD COLUMN service_started_at BIGINT NOT NULL DEFAULT 0;
UPDATE cas SET service_started_at = purchased_at,
    service_months = CAST(ROUND((service_until - purchased_at) / 2629746.0) AS BIGINT)
    WHERE kind = 'root';
UPDATE cas SET
    service_started_at = (SELECT r.service_started_at FROM cas r WHERE r.id = cas.parent_id),
    service_months = (SELECT r.service_months FROM cas r WHERE r.id = cas.parent_id)
    WHERE kind = 'intermediate';

-- The token's name copied next to its id when the event is written (a token may be
-- revoked later; the event keeps the name it acted under).
ALTER TABLE audit_events ADD COLUMN actor_name TEXT;
-- No index on (tenant_id, actor): every issued certificate writes an audit event, and
-- the issuance path is the hot one; `actor=` filters walk the tenant's events newest
-- first through audit_tenant (tenant_id, id) and stop at the page size.
