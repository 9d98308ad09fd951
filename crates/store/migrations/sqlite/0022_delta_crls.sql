-- Delta CRLs (RFC 5280 §5.2.4, issue 16): per-CA switch and period, whether the stored
-- base CRL names the delta (freshestCRL), and the latest delta CRL of each CA. Base and
-- delta numbers both come from cas.crl_number (one sequence).
ALTER TABLE cas ADD COLUMN crl_delta_enabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cas ADD COLUMN crl_delta_minutes BIGINT NOT NULL DEFAULT 60;
ALTER TABLE crls ADD COLUMN freshest BIGINT NOT NULL DEFAULT 0;

CREATE TABLE delta_crls (
    ca_id        TEXT PRIMARY KEY REFERENCES cas(id),
    crl_number   BIGINT NOT NULL,
    base_number  BIGINT NOT NULL,
    revision     BIGINT NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    entries      BIGINT NOT NULL,
    der          BLOB NOT NULL
);
