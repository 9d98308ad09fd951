-- OCSP responder (issue 16): per-CA settings, signed responses held ready, the delegated
-- signing certificates, and the change feed every replica polls to drop what it cached.
ALTER TABLE cas ADD COLUMN ocsp_enabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cas ADD COLUMN ocsp_delegated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cas ADD COLUMN ocsp_validity_hours BIGINT NOT NULL DEFAULT 24;

-- One signed response per (CA, serial, CertID hash); "responder" names the key and
-- settings that signed it, "status" what it says (re-checked against the certificate on
-- every load, so a response signed while a revocation committed is never served).
CREATE TABLE ocsp_responses (
    ca_id        TEXT NOT NULL,
    serial       TEXT NOT NULL,
    hash_alg     TEXT NOT NULL,
    status       TEXT NOT NULL,
    responder    TEXT NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    der          BYTEA NOT NULL,
    PRIMARY KEY (ca_id, serial, hash_alg)
);

-- The current delegated OCSP signing certificate of a CA (key sealed like CA keys).
CREATE TABLE ocsp_signers (
    ca_id            TEXT PRIMARY KEY,
    serial           TEXT NOT NULL,
    ca_serial        TEXT NOT NULL,
    certificate_der  BYTEA NOT NULL,
    key_sealed       BYTEA NOT NULL,
    not_before       BIGINT NOT NULL,
    not_after        BIGINT NOT NULL
);

-- What changed (a revocation: serial set; a CA's settings or key: serial NULL). Replicas
-- poll "seq > last seen" and drop the matching cached responses.
CREATE TABLE ocsp_events (
    seq     BIGSERIAL PRIMARY KEY,
    ca_id   TEXT NOT NULL,
    serial  TEXT,
    at      BIGINT NOT NULL
);
CREATE INDEX ocsp_events_at ON ocsp_events (at);
