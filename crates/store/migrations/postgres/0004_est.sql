-- EST (RFC 7030): per-intermediate settings and HTTP Basic client accounts.

CREATE TABLE est_settings (
    ca_id                 TEXT PRIMARY KEY REFERENCES cas(id),
    enabled               BIGINT NOT NULL DEFAULT 1,
    -- Path segment of /.well-known/est/{label}/...; unique across the installation.
    label                 TEXT UNIQUE,
    auth_json             TEXT NOT NULL DEFAULT '["basic","client_cert"]',
    default_validity_days BIGINT NOT NULL DEFAULT 365,
    certificate_type      TEXT NOT NULL DEFAULT 'client' CHECK (certificate_type IN ('client', 'server'))
);

CREATE TABLE est_clients (
    ca_id              TEXT NOT NULL REFERENCES cas(id),
    username           TEXT NOT NULL,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    -- argon2id PHC string.
    password_hash      TEXT NOT NULL,
    name_patterns_json TEXT NOT NULL DEFAULT '[]',
    created_at         BIGINT NOT NULL,
    created_by         TEXT,
    PRIMARY KEY (ca_id, username)
);

-- Client-certificate authentication looks certificates up by serial.
CREATE INDEX certificates_serial ON certificates (serial);
