-- The certificate search index (0017) leaves the issuance transaction (issue 13): its
-- insert trigger cost issuance 10-14 % of its throughput (benches/issue_ab.sh, interleaved;
-- docs/PERFORMANCE.md "Tenth session"). A background pass (store::search::catch_up)
-- indexes new certificates in rowid order, in batches, and records how far it got; a `q`
-- search asks the index for rows up to that mark and tests the few rows after it directly,
-- so nothing issued is ever missing from a search. Managed certificates (rarely written)
-- keep their triggers.
--
-- Rowids of `certificates` grow with every commit (one writer; rows are never deleted, and
-- the delete trigger below moves the mark back if one ever is, so a reused rowid is
-- indexed again).
DROP TRIGGER certificates_search_insert;
CREATE TABLE search_progress (
    name            TEXT PRIMARY KEY,
    indexed_rowid   INTEGER NOT NULL
);
INSERT INTO search_progress (name, indexed_rowid)
SELECT 'certificates', coalesce(max(rowid), 0) FROM certificates;

-- Names never change on certificates; if they did, a row past the mark is indexed by the
-- pass (with its new names), one before it here.
DROP TRIGGER certificates_search_update;
CREATE TRIGGER certificates_search_update AFTER UPDATE OF common_name, sans_json ON certificates
WHEN OLD.rowid <= (SELECT indexed_rowid FROM search_progress WHERE name = 'certificates')
BEGIN
    DELETE FROM certificates_search WHERE rowid = OLD.rowid;
    INSERT INTO certificates_search (rowid, text)
    VALUES (NEW.rowid, lower(NEW.common_name || ' ' || NEW.sans_json));
END;
CREATE TRIGGER certificates_search_mark AFTER DELETE ON certificates
BEGIN
    UPDATE search_progress SET indexed_rowid = OLD.rowid - 1
    WHERE name = 'certificates' AND indexed_rowid >= OLD.rowid;
END;
