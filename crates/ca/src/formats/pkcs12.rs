//! PKCS#12 (`.p12` / `.pfx`) export with `p12-keystore`.

use aws_lc_rs::digest;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};

use super::{check_password, export_key_der, require_key, ExportInput, FormatError};

/// PBKDF2 iterations of the default (PBES2) profile, for the key bag, the certificate safe
/// and the MAC alike: a MAC with fewer iterations would be the cheaper way to test guesses.
const MODERN_ITERATIONS: u32 = 100_000;

/// Iterations of the legacy profile (key/cert encryption and MAC): 2 048, what OpenSSL 1.1
/// and `openssl pkcs12 -export -legacy` write, which every PKCS#12 reader accepts. Guessing
/// costs 50 times less than with the default profile; legacy is for old consumers only.
const LEGACY_ITERATIONS: u32 = 2_048;

/// PKCS#12 holding the private key and the certificate chain (leaf first).
///
/// Layout: one encrypted safe with the certificate bags (the leaf carries `localKeyId`, the
/// chain certificates carry their subject as `friendlyName`), and one shrouded key bag with
/// `friendlyName` = `input.alias` and the same `localKeyId` as the leaf (the SHA-1 of the leaf
/// DER, as OpenSSL computes it). Java's `keytool` therefore lists one `PrivateKeyEntry` named
/// `alias` with the full chain, and OpenSSL pairs key and leaf.
///
/// Profiles:
/// * `legacy = false` (default): PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC for the key
///   bag and the certificate safe, MAC HMAC-SHA-256, 100 000 iterations everywhere (a MAC
///   with fewer iterations would be the cheaper way to test password guesses). These are the
///   algorithms Java 17 and OpenSSL 3 write by default (with more iterations); read by
///   OpenSSL 1.1.1+, Java 8u301+ / 11.0.12+ / 17+ and Windows 10 1709+ / Server 2019+.
///   Older Windows, old Java 8 builds and older macOS Keychain / Android releases do not read
///   PBES2: use legacy for them.
/// * `legacy = true`: `pbeWithSHAAnd3-KeyTripleDES-CBC` for both the key bag and the
///   certificate safe (no RC2-40: OpenSSL 3 reads the file without `-legacy`, since 3DES is
///   in its default provider), MAC HMAC-SHA-1, 2 048 iterations everywhere (what
///   `openssl pkcs12 -export -legacy` and OpenSSL 1.1 write). Password guessing costs about
///   50 times less than with the default profile: offer it for old consumers only.
///
/// Passwords: the PBES2 key derivation takes the password's UTF-8 bytes and the PKCS#12
/// MAC / PBES1 derivation its BMPString (UTF-16BE) form, as OpenSSL and Java do, so any
/// Basic Multilingual Plane text works; characters beyond it (emoji) are refused.
///
/// Errors: [`FormatError::KeyNotHeld`] without a key, [`FormatError::Password`] for a password
/// under [`super::MIN_PASSWORD_LEN`] characters or with characters outside the Basic
/// Multilingual Plane, [`FormatError::Encode`] for malformed DER, an empty alias, or an alias
/// outside the Basic Multilingual Plane (PKCS#12 stores it as a BMPString).
pub fn pkcs12(input: &ExportInput, password: &str, legacy: bool) -> Result<Vec<u8>, FormatError> {
    let key_der = require_key(input)?;
    check_password(password)?;
    if password.chars().any(|c| u32::from(c) > 0xFFFF) {
        return Err(FormatError::Password(
            "a PKCS#12 password cannot contain characters outside the Basic Multilingual \
             Plane (such as emoji)"
                .into(),
        ));
    }
    if input.alias.is_empty() {
        return Err(FormatError::Encode("the PKCS#12 alias is empty".into()));
    }

    let key = PrivateKey::from_der(&export_key_der(key_der)?)
        .map_err(|e| FormatError::Encode(format!("the private key is not PKCS#8 DER: {e}")))?;
    let mut certs = Vec::with_capacity(1 + input.chain_der.len());
    certs.push(
        Certificate::from_der(input.leaf_der)
            .map_err(|e| FormatError::Encode(format!("leaf certificate: {e}")))?,
    );
    for (i, der) in input.chain_der.iter().enumerate() {
        certs.push(
            Certificate::from_der(der)
                .map_err(|e| FormatError::Encode(format!("chain certificate {}: {e}", i + 1)))?,
        );
    }
    let local_key_id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, input.leaf_der)
        .as_ref()
        .to_vec();

    let mut store = KeyStore::new();
    store.add_entry(
        input.alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );

    let writer = store.writer(password);
    let writer = if legacy {
        writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .encryption_iterations(LEGACY_ITERATIONS)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .mac_iterations(LEGACY_ITERATIONS)
    } else {
        writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .encryption_iterations(MODERN_ITERATIONS)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .mac_iterations(MODERN_ITERATIONS)
    };
    writer
        .write()
        .map_err(|e| FormatError::Encode(format!("PKCS#12: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, run_ok, Fixture, Kind, ALL_KINDS};
    use super::*;

    const PW: &str = "s3cret pw";

    /// `openssl pkcs12 -info` on `file`, asserting success; returns the dump.
    fn openssl_info(dir: &std::path::Path, file: &str, pw: &str) -> String {
        let pass = format!("pass:{pw}");
        run_ok(
            dir,
            "openssl",
            &["pkcs12", "-info", "-in", file, "-passin", &pass, "-noenc"],
        )
    }

    fn check_with_openssl_and_keytool(kind: Kind, legacy: bool) {
        let fx = Fixture::new(kind);
        let p12 = pkcs12(&fx.input(), PW, legacy).expect("pkcs12");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f.p12"), &p12).expect("write");
        let ctx = format!("{kind:?} legacy={legacy}");

        let info = openssl_info(dir.path(), "f.p12", PW);
        if legacy {
            assert!(info.contains("MAC: sha1"), "{ctx}: {info}");
            assert!(info.contains("Iteration 2048"), "{ctx}: {info}");
            assert!(
                info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"),
                "{ctx}: {info}"
            );
            assert!(!info.contains("PBES2"), "{ctx}: {info}");
        } else {
            assert!(info.contains("MAC: sha256"), "{ctx}: {info}");
            assert!(info.contains("Iteration 100000"), "{ctx}: {info}");
            assert!(
                info.contains("PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256"),
                "{ctx}: {info}"
            );
        }
        assert!(info.contains(&format!("CN = {}", fx.cn)), "{ctx}: {info}");
        assert!(
            info.contains("-----BEGIN PRIVATE KEY-----"),
            "{ctx}: {info}"
        );
        assert_eq!(
            info.matches("-----BEGIN CERTIFICATE-----").count(),
            3,
            "{ctx}"
        );
        assert!(
            info.contains(&format!("friendlyName: {}", fx.cn)),
            "{ctx}: {info}"
        );
        // Key bag and leaf bag share the localKeyId: extracting "the certificate of the key"
        // gives the leaf, and its public key matches the key.
        let pass = format!("pass:{PW}");
        run_ok(
            dir.path(),
            "openssl",
            &[
                "pkcs12", "-in", "f.p12", "-passin", &pass, "-clcerts", "-nokeys", "-out",
                "leaf.pem",
            ],
        );
        let leaf_subject = run_ok(
            dir.path(),
            "openssl",
            &["x509", "-in", "leaf.pem", "-noout", "-subject"],
        );
        assert!(leaf_subject.contains(&fx.cn), "{ctx}: {leaf_subject}");
        run_ok(
            dir.path(),
            "openssl",
            &[
                "pkcs12", "-in", "f.p12", "-passin", &pass, "-nocerts", "-noenc", "-out", "key.pem",
            ],
        );
        let from_key = run_ok(
            dir.path(),
            "openssl",
            &["pkey", "-in", "key.pem", "-pubout"],
        );
        let from_cert = run_ok(
            dir.path(),
            "openssl",
            &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
        );
        assert_eq!(from_key, from_cert, "{ctx}");

        // Wrong password: refused.
        let out = run(
            dir.path(),
            "openssl",
            &[
                "pkcs12",
                "-info",
                "-in",
                "f.p12",
                "-passin",
                "pass:wrong pw",
                "-noenc",
            ],
        );
        assert!(!out.status.success(), "{ctx}: wrong password accepted");

        // Java: one PrivateKeyEntry under the alias, chain of 3.
        let list = run_ok(
            dir.path(),
            "keytool",
            &[
                "-list",
                "-v",
                "-keystore",
                "f.p12",
                "-storetype",
                "PKCS12",
                "-storepass",
                PW,
            ],
        );
        assert!(
            list.contains("Your keystore contains 1 entry"),
            "{ctx}: {list}"
        );
        assert!(
            list.contains("Entry type: PrivateKeyEntry"),
            "{ctx}: {list}"
        );
        assert!(
            list.contains(&format!("Alias name: {}", fx.cn)),
            "{ctx}: {list}"
        );
        assert!(
            list.contains("Certificate chain length: 3"),
            "{ctx}: {list}"
        );

        // Java really decrypts the key: copy the entry into a fresh PKCS#12.
        let out_pass = "other-pass";
        run_ok(
            dir.path(),
            "keytool",
            &[
                "-importkeystore",
                "-noprompt",
                "-srckeystore",
                "f.p12",
                "-srcstoretype",
                "PKCS12",
                "-srcstorepass",
                PW,
                "-destkeystore",
                "copy.p12",
                "-deststoretype",
                "PKCS12",
                "-deststorepass",
                out_pass,
            ],
        );
        let copy = openssl_info(dir.path(), "copy.p12", out_pass);
        assert!(
            copy.contains("-----BEGIN PRIVATE KEY-----"),
            "{ctx}: {copy}"
        );
    }

    #[test]
    fn default_profile_is_read_by_openssl_and_keytool() {
        for kind in ALL_KINDS {
            check_with_openssl_and_keytool(kind, false);
        }
    }

    #[test]
    fn legacy_profile_is_read_by_openssl_and_keytool() {
        for kind in ALL_KINDS {
            check_with_openssl_and_keytool(kind, true);
        }
    }

    #[test]
    fn round_trips_with_p12_keystore() {
        let fx = Fixture::new(Kind::P384);
        for legacy in [false, true] {
            let p12 = pkcs12(&fx.input(), "pässwörd€", legacy).expect("pkcs12");
            let store =
                KeyStore::from_pkcs12(&p12, "pässwörd€", p12_keystore::Pkcs12ImportPolicy::Strict)
                    .expect("parse");
            let (alias, chain) = store.private_key_chain().expect("key entry");
            assert_eq!(alias, fx.cn);
            // P-384 keys are version 1 PKCS#8 and are carried byte for byte.
            assert_eq!(chain.key().as_der(), fx.key_der.as_slice());
            assert_eq!(chain.certs().len(), 3);
            assert_eq!(chain.certs()[0].as_der(), fx.leaf_der.as_slice());
            assert!(KeyStore::from_pkcs12(
                &p12,
                "passwörd€",
                p12_keystore::Pkcs12ImportPolicy::Strict
            )
            .is_err());
        }
    }

    #[test]
    fn non_ascii_password_is_read_by_openssl() {
        let fx = Fixture::new(Kind::P256);
        let dir = tempfile::tempdir().expect("tempdir");
        for legacy in [false, true] {
            let p12 = pkcs12(&fx.input(), "pässwörd€", legacy).expect("pkcs12");
            std::fs::write(dir.path().join("f.p12"), &p12).expect("write");
            let info = openssl_info(dir.path(), "f.p12", "pässwörd€");
            assert!(info.contains("-----BEGIN PRIVATE KEY-----"), "{info}");
        }
    }

    #[test]
    fn leaf_only_chain() {
        let fx = Fixture::new(Kind::P256);
        let input = ExportInput {
            chain_der: &[],
            ..fx.input()
        };
        let p12 = pkcs12(&input, PW, false).expect("pkcs12");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f.p12"), &p12).expect("write");
        let info = openssl_info(dir.path(), "f.p12", PW);
        assert_eq!(info.matches("-----BEGIN CERTIFICATE-----").count(), 1);
    }

    #[test]
    fn errors() {
        let fx = Fixture::new(Kind::P256);
        let no_key = ExportInput {
            key_pkcs8_der: None,
            ..fx.input()
        };
        assert!(matches!(
            pkcs12(&no_key, PW, false),
            Err(FormatError::KeyNotHeld)
        ));
        // The missing key is reported before the password.
        assert!(matches!(
            pkcs12(&no_key, "", false),
            Err(FormatError::KeyNotHeld)
        ));
        match pkcs12(&fx.input(), "abc", true) {
            Err(FormatError::Password(m)) => {
                assert_eq!(m, "password must be at least 4 characters")
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad_key = ExportInput {
            key_pkcs8_der: Some(b"junk"),
            ..fx.input()
        };
        assert!(matches!(
            pkcs12(&bad_key, PW, false),
            Err(FormatError::Encode(_))
        ));
        let bad_leaf = ExportInput {
            leaf_der: b"junk",
            ..fx.input()
        };
        assert!(matches!(
            pkcs12(&bad_leaf, PW, false),
            Err(FormatError::Encode(_))
        ));
        assert!(matches!(
            pkcs12(&fx.input(), "pw-\u{1F600}-pw", false),
            Err(FormatError::Password(_))
        ));
        let emoji_alias = ExportInput {
            alias: "\u{1F600}",
            ..fx.input()
        };
        assert!(matches!(
            pkcs12(&emoji_alias, PW, false),
            Err(FormatError::Encode(_))
        ));
        let no_alias = ExportInput {
            alias: "",
            ..fx.input()
        };
        assert!(matches!(
            pkcs12(&no_alias, PW, false),
            Err(FormatError::Encode(_))
        ));
    }
}
