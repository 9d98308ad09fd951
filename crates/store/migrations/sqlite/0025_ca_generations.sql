-- CA certificate renewal and rollover (issue 17). Every certificate a CA has held is a
-- generation: 1 is the one it was enabled with, each renewal adds the next. The cas row
-- stays the CA's identity and holds the *current* generation's certificate and key (what
-- issuance, CRLs and OCSP sign with); a renewal whose switch-over lies in the future waits
-- here, and cas.rollover_at says when it takes over.
--
-- key_generation: the generation that introduced the key (a same-key renewal keeps its
-- predecessor's). The key's public URLs are named after it: 1 -> /crl/{id}.crl,
-- /ca/{id}.crt; n > 1 -> /crl/{id}-g{n}.crl, /ca/{id}-g{n}.crt.
-- key_sealed: the key sealed under the master key with context 'ca-generation:{id}'
-- (NULL for a key kept in the PKCS#11 token, named by pkcs11_key_id/label instead).
-- cross_signed_der: a root renewed with a new key: the new key certified by the old one.
CREATE TABLE ca_generations (
    id               TEXT PRIMARY KEY,
    ca_id            TEXT NOT NULL REFERENCES cas(id),
    generation       BIGINT NOT NULL,
    key_generation   BIGINT NOT NULL,
    serial           TEXT NOT NULL,
    certificate_der  BLOB NOT NULL,
    key_sealed       BLOB,
    key_storage      TEXT NOT NULL DEFAULT 'database'
        CHECK (key_storage IN ('database', 'pkcs11')),
    pkcs11_key_id    TEXT,
    pkcs11_key_label TEXT,
    not_before       BIGINT NOT NULL,
    not_after        BIGINT NOT NULL,
    cross_signed_der BLOB,
    switch_over_at   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (ca_id, generation)
);

-- When a renewed certificate (the newest ca_generations row) becomes the current one;
-- NULL when none waits.
ALTER TABLE cas ADD COLUMN rollover_at BIGINT;
-- The generation that introduced the current key (names the CDP/AIA URLs of new leaves).
ALTER TABLE cas ADD COLUMN key_generation BIGINT NOT NULL DEFAULT 1;
-- The current certificate's generation.
ALTER TABLE cas ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
