-- Vellum schema, PostgreSQL flavour. Times are Unix seconds (BIGINT); flags are 0/1 BIGINT so
-- that both backends decode them through sqlx's Any driver the same way.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    entity      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    role        TEXT NOT NULL CHECK (role IN ('super', 'admin', 'operator', 'auditor')),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT,
    revoked_at  BIGINT
);

CREATE TABLE cas (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    kind                  TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
    parent_id             TEXT REFERENCES cas(id),
    status                TEXT NOT NULL CHECK (status IN ('pending', 'enabled', 'revoked', 'refunded', 'removed')),
    common_name           TEXT NOT NULL,
    organization          TEXT,
    organizational_unit   TEXT,
    country               TEXT,
    state                 TEXT,
    locality              TEXT,
    subject               TEXT NOT NULL,
    key_algorithm         TEXT NOT NULL,
    validity_days         BIGINT NOT NULL,
    purchased_at          BIGINT NOT NULL,
    service_until         BIGINT NOT NULL,
    enabled_at            BIGINT,
    key_source            TEXT,
    not_before            BIGINT,
    not_after             BIGINT,
    serial                TEXT,
    certificate_der       BYTEA,
    key_sealed            BYTEA,
    quota_total           BIGINT NOT NULL DEFAULT 0 CHECK (quota_total >= 0),
    quota_available       BIGINT NOT NULL DEFAULT 0 CHECK (quota_available >= 0),
    quota_assigned        BIGINT NOT NULL DEFAULT 0 CHECK (quota_assigned >= 0),
    quota_remaining       BIGINT NOT NULL DEFAULT 0 CHECK (quota_remaining >= 0),
    issued_count          BIGINT NOT NULL DEFAULT 0,
    revoked_at            BIGINT,
    revocation_reason     TEXT,
    refunded_at           BIGINT,
    removed_at            BIGINT,
    crl_enabled           BIGINT NOT NULL DEFAULT 1,
    crl_next_update_hours BIGINT NOT NULL DEFAULT 24,
    crl_number            BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL
);
CREATE INDEX cas_tenant ON cas (tenant_id, created_at);
CREATE INDEX cas_parent ON cas (parent_id);

-- CA certificates that were revoked (or superseded by a reset): entries of the issuer's CRL.
CREATE TABLE ca_cert_revocations (
    issuer_id     TEXT NOT NULL REFERENCES cas(id),
    subject_ca_id TEXT NOT NULL REFERENCES cas(id),
    serial        TEXT NOT NULL,
    revoked_at    BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (issuer_id, serial)
);

-- End-entity certificates issued by intermediates (and, later, uploaded ones).
CREATE TABLE certificates (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    ca_id              TEXT REFERENCES cas(id),
    serial             TEXT NOT NULL,
    cert_type          TEXT NOT NULL,
    common_name        TEXT NOT NULL,
    sans_json          TEXT NOT NULL,
    not_before         BIGINT NOT NULL,
    not_after          BIGINT NOT NULL,
    revoked_at         BIGINT,
    revocation_reason  TEXT,
    source             TEXT NOT NULL,
    name               TEXT,
    tags_json          TEXT NOT NULL DEFAULT '{}',
    spec_json          TEXT NOT NULL DEFAULT '{}',
    key_algorithm      TEXT NOT NULL,
    leakage_risk       BIGINT NOT NULL DEFAULT 0,
    certificate_der    BYTEA NOT NULL,
    key_sealed         BYTEA,
    requester          TEXT,
    deleted_at         BIGINT,
    created_at         BIGINT NOT NULL,
    UNIQUE (ca_id, serial)
);
CREATE INDEX certificates_tenant ON certificates (tenant_id, created_at);
CREATE INDEX certificates_ca ON certificates (ca_id, revoked_at);

CREATE TABLE audit_events (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    tenant_id  TEXT,
    actor      TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    source_ip  TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_tenant ON audit_events (tenant_id, id);

-- Key/value facts about this installation (e.g. which CA is the bootstrap intermediate).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
