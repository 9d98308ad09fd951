-- SQLite's certificate search index moves out of the issuance transaction (see the
-- SQLite migration of the same number). PostgreSQL's is a GIN index on the table itself,
-- whose pending list already defers the work (fastupdate): nothing changes here.
SELECT 1;
