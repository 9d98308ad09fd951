-- Filters that match almost nothing (issue 13): a page walks the (tenant_id, id) index and
-- tests each row, so a rare tag or a rare substring read the whole tenant (0.6-3 s at
-- 1,000,000 certificates). Two indexes let such a filter drive the page instead
-- (store::filter, docs/ARCHITECTURE.md "Inventory filters").
--
-- 1. Tags as rows, kept equal to tags_json by triggers (every write of tags_json, whatever
--    store function made it). A row without tags ('{}') writes nothing here: the trigger's
--    WHEN clause is tested without calling the function. Keyed so that
--    `key = ? AND value = ?` walks certificate ids in order.
CREATE TABLE certificate_tags (
    tenant_id       TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    certificate_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key, value, certificate_id)
);
CREATE TABLE managed_tags (
    tenant_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    managed_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key, value, managed_id)
);

-- The tags of a tags_json text: none unless it is a JSON object (nothing writes anything
-- else; a malformed one yields no rows rather than failing the write).
CREATE FUNCTION vellum_tags(tags TEXT) RETURNS TABLE (key TEXT, value TEXT)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    j JSONB;
BEGIN
    IF tags IS NULL OR tags = '{}' OR tags NOT LIKE '{%' THEN
        RETURN;
    END IF;
    BEGIN
        j := tags::jsonb;
    EXCEPTION WHEN others THEN
        RETURN;
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT e.key, e.value FROM jsonb_each_text(j) e;
END
$$;

INSERT INTO certificate_tags (tenant_id, key, value, certificate_id)
SELECT c.tenant_id, t.key, t.value, c.id FROM certificates c, vellum_tags(c.tags_json) t
WHERE c.tags_json <> '{}' AND t.value IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO managed_tags (tenant_id, key, value, managed_id)
SELECT m.tenant_id, t.key, t.value, m.id FROM managed_certificates m, vellum_tags(m.tags_json) t
WHERE m.tags_json <> '{}' AND t.value IS NOT NULL
ON CONFLICT DO NOTHING;

CREATE FUNCTION certificate_tags_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM certificate_tags c USING vellum_tags(OLD.tags_json) t
        WHERE c.tenant_id = OLD.tenant_id AND c.key = t.key AND c.value = t.value
          AND c.certificate_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO certificate_tags (tenant_id, key, value, certificate_id)
        SELECT NEW.tenant_id, t.key, t.value, NEW.id FROM vellum_tags(NEW.tags_json) t
        WHERE t.value IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION managed_tags_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM managed_tags m USING vellum_tags(OLD.tags_json) t
        WHERE m.tenant_id = OLD.tenant_id AND m.key = t.key AND m.value = t.value
          AND m.managed_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO managed_tags (tenant_id, key, value, managed_id)
        SELECT NEW.tenant_id, t.key, t.value, NEW.id FROM vellum_tags(NEW.tags_json) t
        WHERE t.value IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER certificate_tags_insert AFTER INSERT ON certificates
FOR EACH ROW WHEN (NEW.tags_json <> '{}') EXECUTE FUNCTION certificate_tags_sync();
CREATE TRIGGER certificate_tags_update AFTER UPDATE OF tags_json ON certificates
FOR EACH ROW WHEN (NEW.tags_json IS DISTINCT FROM OLD.tags_json)
EXECUTE FUNCTION certificate_tags_sync();
CREATE TRIGGER certificate_tags_delete AFTER DELETE ON certificates
FOR EACH ROW WHEN (OLD.tags_json <> '{}') EXECUTE FUNCTION certificate_tags_sync();
CREATE TRIGGER managed_tags_insert AFTER INSERT ON managed_certificates
FOR EACH ROW WHEN (NEW.tags_json <> '{}') EXECUTE FUNCTION managed_tags_sync();
CREATE TRIGGER managed_tags_update AFTER UPDATE OF tags_json ON managed_certificates
FOR EACH ROW WHEN (NEW.tags_json IS DISTINCT FROM OLD.tags_json)
EXECUTE FUNCTION managed_tags_sync();
CREATE TRIGGER managed_tags_delete AFTER DELETE ON managed_certificates
FOR EACH ROW WHEN (OLD.tags_json <> '{}') EXECUTE FUNCTION managed_tags_sync();

-- 2. Substring search `q`: a trigram GIN index (pg_trgm, a trusted extension) on the
--    lower-cased CN and SANs. The store's probe names the same expression
--    (`LOWER(common_name || ' ' || sans_json) LIKE …`); it finds a superset of the matches
--    and the page still applies the exact LIKE on each column.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX certificates_search ON certificates
    USING gin (LOWER(common_name || ' ' || sans_json) gin_trgm_ops);
CREATE INDEX managed_search ON managed_certificates
    USING gin (LOWER(common_name || ' ' || sans_json) gin_trgm_ops);
ANALYZE certificate_tags;
ANALYZE managed_tags;
