-- check-installation finds a presented certificate among the managed ones by serial
-- (then compares the bytes).
CREATE INDEX managed_tenant_serial ON managed_certificates (tenant_id, serial);
