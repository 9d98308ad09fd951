-- ACME (RFC 8555): per-CA settings, EAB keys, accounts, orders, authorizations,
-- challenges, redeemed nonces.

CREATE TABLE acme_settings (
    ca_id                 TEXT PRIMARY KEY REFERENCES cas(id),
    enabled               BIGINT NOT NULL DEFAULT 1,
    require_eab           BIGINT NOT NULL DEFAULT 0,
    allowed_domains_json  TEXT NOT NULL DEFAULT '[]',
    allow_ip              BIGINT NOT NULL DEFAULT 1,
    challenges_json       TEXT NOT NULL DEFAULT '["http-01","dns-01","tls-alpn-01"]',
    default_validity_days BIGINT NOT NULL DEFAULT 90
);

CREATE TABLE acme_eab_keys (
    kid         TEXT PRIMARY KEY,
    ca_id       TEXT NOT NULL REFERENCES cas(id),
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    key_sealed  BYTEA NOT NULL,
    account_id  TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE acme_accounts (
    id           TEXT PRIMARY KEY,
    ca_id        TEXT NOT NULL REFERENCES cas(id),
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    thumbprint   TEXT NOT NULL UNIQUE,
    jwk_json     TEXT NOT NULL,
    status       TEXT NOT NULL,
    contact_json TEXT NOT NULL DEFAULT '[]',
    tos_agreed   BIGINT NOT NULL DEFAULT 0,
    eab_kid      TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE acme_orders (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES acme_accounts(id),
    ca_id            TEXT NOT NULL REFERENCES cas(id),
    status           TEXT NOT NULL,
    identifiers_json TEXT NOT NULL,
    profile          TEXT NOT NULL,
    not_before       BIGINT,
    not_after        BIGINT,
    expires_at       BIGINT NOT NULL,
    error_json       TEXT,
    certificate_id   TEXT,
    replaces         TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders (account_id, id);

CREATE TABLE acme_authzs (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES acme_accounts(id),
    id_type     TEXT NOT NULL,
    id_value    TEXT NOT NULL,
    wildcard    BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX acme_authzs_reuse ON acme_authzs (account_id, id_type, id_value, status);

CREATE TABLE acme_order_authzs (
    order_id  TEXT NOT NULL REFERENCES acme_orders(id),
    authz_id  TEXT NOT NULL REFERENCES acme_authzs(id),
    position  BIGINT NOT NULL,
    PRIMARY KEY (order_id, authz_id)
);
CREATE INDEX acme_order_authzs_authz ON acme_order_authzs (authz_id);

CREATE TABLE acme_challenges (
    id           TEXT PRIMARY KEY,
    authz_id     TEXT NOT NULL REFERENCES acme_authzs(id),
    type         TEXT NOT NULL,
    token        TEXT NOT NULL,
    status       TEXT NOT NULL,
    validated_at BIGINT,
    error_json   TEXT
);
CREATE INDEX acme_challenges_authz ON acme_challenges (authz_id);

CREATE TABLE acme_used_nonces (
    nonce       TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
