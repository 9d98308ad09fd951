-- CA keys in an HSM (issue 17): where an enabled CA's private key is kept. 'database':
-- sealed under the master key in cas.key_sealed (as before); 'pkcs11': generated inside
-- the configured PKCS#11 token and never leaving it; the row then names the token object
-- (CKA_ID, hex, and CKA_LABEL) and key_sealed stays NULL. The PIN is never stored.
ALTER TABLE cas ADD COLUMN key_storage TEXT NOT NULL DEFAULT 'database'
    CHECK (key_storage IN ('database', 'pkcs11'));
ALTER TABLE cas ADD COLUMN pkcs11_key_id TEXT;
ALTER TABLE cas ADD COLUMN pkcs11_key_label TEXT;
