-- Managed certificates: the second inventory beside the private CAs' certificates.
-- Certificates uploaded from any CA (source 'uploaded'), and later ones synced from a
-- private CA ('synced') or shared by a tenant of the same entity ('shared'). Never on a
-- CRL, never counted against quota. The key is sealed under the master key (context: id).
CREATE TABLE managed_certificates (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    name             TEXT NOT NULL,
    source           TEXT NOT NULL,
    tags_json        TEXT NOT NULL DEFAULT '{}',
    notifications    BIGINT NOT NULL DEFAULT 1,
    subject          TEXT NOT NULL,
    common_name      TEXT NOT NULL,
    sans_json        TEXT NOT NULL DEFAULT '[]',
    issuer           TEXT NOT NULL,
    serial           TEXT NOT NULL,
    key_algorithm    TEXT NOT NULL,
    not_before       BIGINT NOT NULL,
    not_after        BIGINT NOT NULL,
    leakage_risk     BIGINT NOT NULL DEFAULT 0,
    certificate_der  BLOB NOT NULL,
    -- The chain after the leaf, issuer first: concatenated DER certificates.
    chain_der        BLOB NOT NULL,
    key_sealed       BLOB,
    created_at       BIGINT NOT NULL,
    deleted_at       BIGINT
);
CREATE INDEX managed_tenant_not_after ON managed_certificates (tenant_id, not_after);
CREATE INDEX managed_tenant_created ON managed_certificates (tenant_id, created_at);
