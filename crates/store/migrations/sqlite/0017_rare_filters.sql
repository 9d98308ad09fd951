-- Filters that match almost nothing (issue 13): a page walks the (tenant_id, id) index and
-- tests each row, so a rare tag or a rare substring read the whole tenant (0.5-1.5 s at
-- 1,000,000 certificates). Two indexes let such a filter drive the page instead
-- (store::filter, docs/ARCHITECTURE.md "Inventory filters").
--
-- 1. Tags as rows, kept equal to tags_json by triggers (every write of tags_json, whatever
--    store function made it). A row without tags ('{}') writes nothing here: the WHEN
--    clause is the only cost untagged issuance pays. Keyed so that `key = ? AND value = ?`
--    walks certificate ids in order.
CREATE TABLE certificate_tags (
    tenant_id       TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    certificate_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key, value, certificate_id)
) WITHOUT ROWID;
CREATE TABLE managed_tags (
    tenant_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    managed_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key, value, managed_id)
) WITHOUT ROWID;

-- A malformed or non-object tags_json (nothing writes one) yields no rows rather than an
-- error: json_each(NULL) is empty.
INSERT OR IGNORE INTO certificate_tags (tenant_id, key, value, certificate_id)
SELECT c.tenant_id, j.key, j.value, c.id FROM certificates c,
    json_each(CASE WHEN json_valid(c.tags_json) THEN
              CASE WHEN json_type(c.tags_json) = 'object' THEN c.tags_json END END) j
WHERE c.tags_json <> '{}';
INSERT OR IGNORE INTO managed_tags (tenant_id, key, value, managed_id)
SELECT m.tenant_id, j.key, j.value, m.id FROM managed_certificates m,
    json_each(CASE WHEN json_valid(m.tags_json) THEN
              CASE WHEN json_type(m.tags_json) = 'object' THEN m.tags_json END END) j
WHERE m.tags_json <> '{}';

CREATE TRIGGER certificate_tags_insert AFTER INSERT ON certificates
WHEN NEW.tags_json <> '{}'
BEGIN
    INSERT OR IGNORE INTO certificate_tags (tenant_id, key, value, certificate_id)
    SELECT NEW.tenant_id, key, value, NEW.id FROM json_each(
        CASE WHEN json_valid(NEW.tags_json) THEN
        CASE WHEN json_type(NEW.tags_json) = 'object' THEN NEW.tags_json END END);
END;
CREATE TRIGGER certificate_tags_update AFTER UPDATE OF tags_json ON certificates
WHEN NEW.tags_json IS NOT OLD.tags_json
BEGIN
    DELETE FROM certificate_tags WHERE tenant_id = OLD.tenant_id AND certificate_id = OLD.id
        AND (key, value) IN (SELECT key, value FROM json_each(
            CASE WHEN json_valid(OLD.tags_json) THEN
            CASE WHEN json_type(OLD.tags_json) = 'object' THEN OLD.tags_json END END));
    INSERT OR IGNORE INTO certificate_tags (tenant_id, key, value, certificate_id)
    SELECT NEW.tenant_id, key, value, NEW.id FROM json_each(
        CASE WHEN json_valid(NEW.tags_json) THEN
        CASE WHEN json_type(NEW.tags_json) = 'object' THEN NEW.tags_json END END);
END;
CREATE TRIGGER managed_tags_insert AFTER INSERT ON managed_certificates
WHEN NEW.tags_json <> '{}'
BEGIN
    INSERT OR IGNORE INTO managed_tags (tenant_id, key, value, managed_id)
    SELECT NEW.tenant_id, key, value, NEW.id FROM json_each(
        CASE WHEN json_valid(NEW.tags_json) THEN
        CASE WHEN json_type(NEW.tags_json) = 'object' THEN NEW.tags_json END END);
END;
CREATE TRIGGER managed_tags_update AFTER UPDATE OF tags_json ON managed_certificates
WHEN NEW.tags_json IS NOT OLD.tags_json
BEGIN
    DELETE FROM managed_tags WHERE tenant_id = OLD.tenant_id AND managed_id = OLD.id
        AND (key, value) IN (SELECT key, value FROM json_each(
            CASE WHEN json_valid(OLD.tags_json) THEN
            CASE WHEN json_type(OLD.tags_json) = 'object' THEN OLD.tags_json END END));
    INSERT OR IGNORE INTO managed_tags (tenant_id, key, value, managed_id)
    SELECT NEW.tenant_id, key, value, NEW.id FROM json_each(
        CASE WHEN json_valid(NEW.tags_json) THEN
        CASE WHEN json_type(NEW.tags_json) = 'object' THEN NEW.tags_json END END);
END;

-- 2. Substring search `q`: a trigram full-text index of the lower-cased CN and SANs,
--    contentless (no second copy of the names), keyed by the row's rowid. It answers
--    "which rows may contain this substring" (a superset: the page still applies the
--    exact LIKE); soft deletes stay in it (the page's `deleted_at IS NULL` hides them).
--    Only managed rows change their names (a synced copy's renewal): the update trigger
--    replaces the entry. Vellum never runs VACUUM (which may renumber the rowids of a
--    table without an INTEGER PRIMARY KEY); after a manual one, recreate these tables.
CREATE VIRTUAL TABLE certificates_search USING fts5(
    text, content = '', contentless_delete = 1, tokenize = 'trigram');
CREATE VIRTUAL TABLE managed_search USING fts5(
    text, content = '', contentless_delete = 1, tokenize = 'trigram');
INSERT INTO certificates_search (rowid, text)
SELECT rowid, lower(common_name || ' ' || sans_json) FROM certificates;
INSERT INTO managed_search (rowid, text)
SELECT rowid, lower(common_name || ' ' || sans_json) FROM managed_certificates;

CREATE TRIGGER certificates_search_insert AFTER INSERT ON certificates
BEGIN
    INSERT INTO certificates_search (rowid, text)
    VALUES (NEW.rowid, lower(NEW.common_name || ' ' || NEW.sans_json));
END;
CREATE TRIGGER certificates_search_update AFTER UPDATE OF common_name, sans_json ON certificates
BEGIN
    DELETE FROM certificates_search WHERE rowid = OLD.rowid;
    INSERT INTO certificates_search (rowid, text)
    VALUES (NEW.rowid, lower(NEW.common_name || ' ' || NEW.sans_json));
END;
CREATE TRIGGER certificates_search_delete AFTER DELETE ON certificates
BEGIN
    DELETE FROM certificates_search WHERE rowid = OLD.rowid;
    DELETE FROM certificate_tags WHERE tenant_id = OLD.tenant_id AND certificate_id = OLD.id
        AND (key, value) IN (SELECT key, value FROM json_each(
            CASE WHEN json_valid(OLD.tags_json) THEN
            CASE WHEN json_type(OLD.tags_json) = 'object' THEN OLD.tags_json END END));
END;
CREATE TRIGGER managed_search_insert AFTER INSERT ON managed_certificates
BEGIN
    INSERT INTO managed_search (rowid, text)
    VALUES (NEW.rowid, lower(NEW.common_name || ' ' || NEW.sans_json));
END;
CREATE TRIGGER managed_search_update AFTER UPDATE OF common_name, sans_json ON managed_certificates
BEGIN
    DELETE FROM managed_search WHERE rowid = OLD.rowid;
    INSERT INTO managed_search (rowid, text)
    VALUES (NEW.rowid, lower(NEW.common_name || ' ' || NEW.sans_json));
END;
CREATE TRIGGER managed_search_delete AFTER DELETE ON managed_certificates
BEGIN
    DELETE FROM managed_search WHERE rowid = OLD.rowid;
    DELETE FROM managed_tags WHERE tenant_id = OLD.tenant_id AND managed_id = OLD.id
        AND (key, value) IN (SELECT key, value FROM json_each(
            CASE WHEN json_valid(OLD.tags_json) THEN
            CASE WHEN json_type(OLD.tags_json) = 'object' THEN OLD.tags_json END END));
END;
