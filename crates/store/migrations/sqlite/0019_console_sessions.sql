-- Web console sessions (issue 15): a browser signs in with an API token and gets a
-- random session id in a cookie; the row keeps only the id's SHA-256 and the token's
-- hash, so the session acts exactly as the token (its role, its tenant) and dies with it
-- (a revoked token's hash no longer finds a live token).
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
