//! Java KeyStore (JKS) export with the `jks` crate.

use std::time::SystemTime;

use ::jks::common::{MAGIC, VERSION_02, WHITENER_MESSAGE};
use ::jks::encoder::Encoder;
use ::jks::{Certificate, KeyStore, KeyStoreOptions, PrivateKeyEntry};

use super::{check_password, export_key_der, require_key, ExportInput, FormatError};

/// Java turns a `char[]` password into bytes as UTF-16BE code units, both for the key
/// protector and for the keystore integrity hash. The `jks` crate's default spreads the UTF-8
/// bytes instead, which agrees only for ASCII; this gives every password Java's bytes.
fn java_password_bytes(utf8: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(utf8)
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect()
}

/// Maps a `jks` crate error.
fn encode_err(e: ::jks::KeyStoreError) -> FormatError {
    FormatError::Encode(format!("JKS: {e}"))
}

/// Java KeyStore (`JKS`, magic `0xFEEDFEED`, version 2) with one `PrivateKeyEntry`: the key,
/// protected with `password` (Sun's JKS key protector, the only scheme JKS knows), and the
/// chain leaf first, then `input.chain_der`. The store's integrity hash uses the same password,
/// so `-storepass` and `-keypass` are both `password`.
///
/// The alias is stored lower-cased, as Java's JKS does (Java looks entries up by the
/// lower-cased alias, so a mixed-case alias would be listed but not found).
///
/// Readable by `keytool -list -v -keystore f.jks -storetype JKS -storepass PW`. Key types:
/// P-256, P-384, RSA and Ed25519 are tested with Java 17, which lists the entry and decrypts
/// the key of each (`keytool -importkeystore`). Java knows Ed25519 keys only from Java 15
/// (JEP 339): an older Java can list such a store (listing never decrypts the key) but
/// cannot use the key. The key is stored as a version 1 PKCS#8 PrivateKeyInfo (see
/// [`super::pkcs8_pem`]). JKS is a legacy format whose key protection is a SHA-1 based XOR
/// stream: prefer PKCS#12, which Java reads natively and uses by default since Java 9.
///
/// Errors: [`FormatError::KeyNotHeld`] without a key, [`FormatError::Password`] for a password
/// under [`super::MIN_PASSWORD_LEN`] characters, [`FormatError::Encode`] for an empty alias or
/// one Java cannot store (NUL or characters outside the Basic Multilingual Plane, which
/// Java's modified UTF-8 encodes differently), or for malformed input.
pub fn jks(input: &ExportInput, password: &str) -> Result<Vec<u8>, FormatError> {
    let key_der = require_key(input)?;
    check_password(password)?;
    let alias = input.alias.to_lowercase();
    if alias.is_empty() {
        return Err(FormatError::Encode("the JKS alias is empty".into()));
    }
    if alias.chars().any(|c| c == '\0' || u32::from(c) > 0xFFFF) {
        return Err(FormatError::Encode(
            "the JKS alias has a NUL or a character outside the Basic Multilingual Plane".into(),
        ));
    }
    // Fails on a corrupt key here rather than in Java.
    let key = export_key_der(key_der)?;

    let certificate_chain = std::iter::once(input.leaf_der)
        .chain(input.chain_der.iter().map(Vec::as_slice))
        .map(|der| Certificate {
            cert_type: "X.509".to_string(),
            content: der.to_vec(),
        })
        .collect();
    let entry = PrivateKeyEntry {
        creation_time: SystemTime::now(),
        private_key: key.to_vec(),
        certificate_chain,
    };

    // Let the crate protect the key (with Java's password bytes) ...
    let mut store = KeyStore::with_options(KeyStoreOptions {
        min_password_len: 0,
        password_bytes: java_password_bytes,
        ..KeyStoreOptions::default()
    });
    store
        .set_private_key_entry(&alias, entry, password.as_bytes())
        .map_err(encode_err)?;
    let protected = store
        .get_raw_private_key_entry(&alias)
        .map_err(encode_err)?;

    // ... and write the store with the crate's encoder. `KeyStore::store` would hash the
    // password with the crate's ASCII-only conversion, so it is done here as Java's
    // `JavaKeyStore.engineStore` does: SHA-1 over password bytes, "Mighty Aphrodite", and the
    // whole file.
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out);
    enc.update_digest(&java_password_bytes(password.as_bytes()));
    enc.update_digest(WHITENER_MESSAGE);
    enc.write_u32(MAGIC).map_err(encode_err)?;
    enc.write_u32(VERSION_02).map_err(encode_err)?;
    enc.write_u32(1).map_err(encode_err)?;
    enc.write_private_key_entry(&alias, &protected)
        .map_err(encode_err)?;
    enc.write_digest().map_err(encode_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, run_ok, Fixture, Kind, ALL_KINDS};
    use super::*;

    const PW: &str = "storepass";

    fn keytool_list(dir: &std::path::Path, pw: &str) -> String {
        run_ok(
            dir,
            "keytool",
            &[
                "-list",
                "-v",
                "-keystore",
                "f.jks",
                "-storetype",
                "JKS",
                "-storepass",
                pw,
            ],
        )
    }

    /// `keytool -importkeystore` decrypts the key with the key password (Java's key
    /// protector) and re-stores it as PKCS#12; OpenSSL then checks it is our key.
    fn java_decrypts_key(dir: &std::path::Path, pw: &str, fx: &Fixture, ctx: &str) {
        run_ok(
            dir,
            "keytool",
            &[
                "-importkeystore",
                "-noprompt",
                "-srckeystore",
                "f.jks",
                "-srcstoretype",
                "JKS",
                "-srcstorepass",
                pw,
                "-srckeypass",
                pw,
                "-srcalias",
                &fx.cn,
                "-destkeystore",
                "copy.p12",
                "-deststoretype",
                "PKCS12",
                "-deststorepass",
                "copy-pass",
            ],
        );
        run_ok(
            dir,
            "openssl",
            &[
                "pkcs12",
                "-in",
                "copy.p12",
                "-passin",
                "pass:copy-pass",
                "-nocerts",
                "-noenc",
                "-out",
                "key.pem",
            ],
        );
        let from_java = run_ok(dir, "openssl", &["pkey", "-in", "key.pem", "-pubout"]);
        std::fs::write(
            dir.join("leaf.pem"),
            super::super::bundle::pem_block("CERTIFICATE", &fx.leaf_der),
        )
        .expect("write");
        let from_cert = run_ok(
            dir,
            "openssl",
            &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
        );
        assert_eq!(from_java, from_cert, "{ctx}");
    }

    #[test]
    fn keytool_lists_and_decrypts_every_key_type() {
        for kind in ALL_KINDS {
            let fx = Fixture::new(kind);
            let ctx = format!("{kind:?}");
            let bytes = jks(&fx.input(), PW).expect("jks");
            assert_eq!(&bytes[..4], &[0xFE, 0xED, 0xFE, 0xED]);
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("f.jks"), &bytes).expect("write");

            let list = keytool_list(dir.path(), PW);
            assert!(
                list.contains("Keystore type: JKS") || list.contains("Keystore type: jks"),
                "{ctx}: {list}"
            );
            assert!(
                list.contains("Your keystore contains 1 entry"),
                "{ctx}: {list}"
            );
            assert!(
                list.contains(&format!("Alias name: {}", fx.cn)),
                "{ctx}: {list}"
            );
            assert!(
                list.contains("Entry type: PrivateKeyEntry"),
                "{ctx}: {list}"
            );
            assert!(
                list.contains("Certificate chain length: 3"),
                "{ctx}: {list}"
            );
            assert!(list.contains("Owner: CN=Vellum Test Root"), "{ctx}: {list}");

            java_decrypts_key(dir.path(), PW, &fx, &ctx);

            // Wrong store password: integrity check fails.
            let out = run(
                dir.path(),
                "keytool",
                &[
                    "-list",
                    "-keystore",
                    "f.jks",
                    "-storetype",
                    "JKS",
                    "-storepass",
                    "wrongpass",
                ],
            );
            assert!(!out.status.success(), "{ctx}: wrong password accepted");
        }
    }

    #[test]
    fn non_ascii_password_and_mixed_case_alias() {
        let fx = Fixture::new(Kind::P256);
        let pw = "pässwörd€";
        let upper = fx.cn.to_uppercase();
        let input = ExportInput {
            alias: &upper,
            ..fx.input()
        };
        let bytes = jks(&input, pw).expect("jks");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f.jks"), &bytes).expect("write");
        let list = keytool_list(dir.path(), pw);
        assert!(
            list.contains(&format!("Alias name: {}", fx.cn)),
            "alias is lower-cased: {list}"
        );
        java_decrypts_key(dir.path(), pw, &fx, "non-ascii");
    }

    #[test]
    fn four_character_password_is_accepted_by_keytool() {
        let fx = Fixture::new(Kind::P256);
        let bytes = jks(&fx.input(), "abcd").expect("jks");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f.jks"), &bytes).expect("write");
        let list = keytool_list(dir.path(), "abcd");
        assert!(list.contains("Entry type: PrivateKeyEntry"), "{list}");
    }

    #[test]
    fn round_trips_with_the_jks_crate() {
        let fx = Fixture::new(Kind::Rsa2048);
        let bytes = jks(&fx.input(), PW).expect("jks");
        let mut ks = KeyStore::new();
        ks.load(bytes.as_slice(), PW.as_bytes()).expect("load");
        let entry = ks
            .get_private_key_entry(&fx.cn, PW.as_bytes())
            .expect("entry");
        // RSA keys are version 1 PKCS#8 and are carried byte for byte.
        assert_eq!(entry.private_key, fx.key_der);
        assert_eq!(entry.certificate_chain.len(), 3);
        assert_eq!(entry.certificate_chain[0].content, fx.leaf_der);
        assert_eq!(entry.certificate_chain[2].content, fx.chain_der[1]);
    }

    #[test]
    fn errors() {
        let fx = Fixture::new(Kind::P256);
        let no_key = ExportInput {
            key_pkcs8_der: None,
            ..fx.input()
        };
        assert!(matches!(jks(&no_key, PW), Err(FormatError::KeyNotHeld)));
        match jks(&fx.input(), "abc") {
            Err(FormatError::Password(m)) => {
                assert_eq!(m, "password must be at least 4 characters")
            }
            other => panic!("unexpected {other:?}"),
        }
        for alias in ["", "nul\0", "emoji-\u{1F600}"] {
            let input = ExportInput {
                alias,
                ..fx.input()
            };
            assert!(
                matches!(jks(&input, PW), Err(FormatError::Encode(_))),
                "{alias:?}"
            );
        }
        let bad_key = ExportInput {
            key_pkcs8_der: Some(b"junk"),
            ..fx.input()
        };
        assert!(matches!(jks(&bad_key, PW), Err(FormatError::Encode(_))));
    }
}
