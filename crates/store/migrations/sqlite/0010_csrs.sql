-- Certificate signing requests made here ("Create CSR"): the key is generated and sealed
-- like CA keys, the PKCS#10 request is taken to another CA, and the certificate that
-- comes back is uploaded with csr_id instead of its private key.
CREATE TABLE csrs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    common_name   TEXT NOT NULL,
    subject       TEXT NOT NULL,
    sans_json     TEXT NOT NULL,
    key_algorithm TEXT NOT NULL,
    csr_der       BLOB NOT NULL,
    key_sealed    BLOB NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT
);
CREATE INDEX csrs_tenant ON csrs (tenant_id, id);
