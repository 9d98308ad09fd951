-- The lists page by keyset on the id (UUIDv7: creation order) within a tenant: an index on
-- (tenant_id, id) walks a page in order and stops after it. The (tenant_id, created_at)
-- indexes it replaces made every page sort the tenant's whole inventory (2.3 s for a page
-- of 50 among 1,000,000 certificates on SQLite: benches/inventory_scale.rs). Replaced, not
-- added: issuance writes no more index entries than before.
DROP INDEX certificates_tenant;
CREATE INDEX certificates_tenant_id ON certificates (tenant_id, id);
DROP INDEX managed_tenant_created;
CREATE INDEX managed_tenant_id ON managed_certificates (tenant_id, id);
