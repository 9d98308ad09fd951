-- CRLs: the latest signed CRL of each CA, and what it reflects.
ALTER TABLE cas ADD COLUMN revocation_revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN renewed_from TEXT;
ALTER TABLE certificates ADD COLUMN subject_json TEXT NOT NULL DEFAULT '{}';

CREATE TABLE crls (
    ca_id        TEXT PRIMARY KEY REFERENCES cas(id),
    crl_number   BIGINT NOT NULL,
    revision     BIGINT NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    entries      BIGINT NOT NULL,
    der          BLOB NOT NULL
);

-- Short leases so that one replica at a time runs a background job.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

