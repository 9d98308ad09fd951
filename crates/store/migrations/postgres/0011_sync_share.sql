-- Sync and share (issue 13): a managed certificate copied from a private-CA certificate
-- remembers it. A synced copy lives in the owner's tenant (source 'synced'), a shared one
-- in the recipient's (source 'shared', shared_by_tenant_id = the owner, no key).
ALTER TABLE managed_certificates ADD COLUMN origin_certificate_id TEXT;
ALTER TABLE managed_certificates ADD COLUMN shared_by_tenant_id TEXT;
-- Set when the origin certificate is revoked: the copies show status 'revoked'.
ALTER TABLE managed_certificates ADD COLUMN revoked_at BIGINT;
-- Syncing again is a no-op: one live synced copy per (tenant, origin).
CREATE UNIQUE INDEX managed_synced_origin ON managed_certificates (tenant_id, origin_certificate_id)
    WHERE source = 'synced' AND deleted_at IS NULL;
-- A certificate is shared once: one live shared copy per origin, whatever the recipient
-- (two concurrent shares cannot both win).
CREATE UNIQUE INDEX managed_shared_origin ON managed_certificates (origin_certificate_id)
    WHERE source = 'shared' AND deleted_at IS NULL;
-- Revocation and deletion of the origin reach every copy.
CREATE INDEX managed_origin ON managed_certificates (origin_certificate_id)
    WHERE origin_certificate_id IS NOT NULL;
