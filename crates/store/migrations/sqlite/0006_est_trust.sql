-- EST client-certificate authentication (RFC 7030 §3.3.2): which certificates may log in.
--
-- Trust anchors the operator configured for a CA's EST service (e.g. a device maker's CA),
-- as a PEM bundle, and the name patterns enrollments through them are held to.
ALTER TABLE est_settings ADD COLUMN client_cert_trust_pem TEXT;
ALTER TABLE est_settings ADD COLUMN client_cert_name_patterns_json TEXT NOT NULL DEFAULT '[]';

-- The EST account a certificate was enrolled for (its holder logs in with it and inherits
-- the account's name rules); NULL for certificates from other doors.
ALTER TABLE certificates ADD COLUMN est_client TEXT;
