//! Unencrypted formats: the PEM bundle and the bare DER certificate.

use pem::{EncodeConfig, LineEnding, Pem};

use super::{export_key_der, ExportInput};

/// One PEM block with LF line endings and 64-column base64 lines.
pub(super) fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &Pem::new(label, der),
        EncodeConfig::new().set_line_ending(LineEnding::LF),
    )
}

/// PEM bundle: the leaf `CERTIFICATE`, then each chain `CERTIFICATE` (issuer first, root
/// last), then, when the server holds it, the private key as an unencrypted PKCS#8
/// `PRIVATE KEY` block. Blocks follow one another directly; every line ends in LF.
///
/// The bundle is what nginx (`ssl_certificate` + `ssl_certificate_key` pointing at the same
/// file), HAProxy (`crt`) and most PEM consumers accept. The key is not encrypted: use
/// [`super::pkcs8_pem`] with a password for an encrypted key.
pub fn pem_bundle(input: &ExportInput) -> String {
    let mut out = pem_block("CERTIFICATE", input.leaf_der);
    for cert in input.chain_der {
        out.push_str(&pem_block("CERTIFICATE", cert));
    }
    if let Some(key) = input.key_pkcs8_der {
        // Normalised like every other export; a key that does not parse as PKCS#8 (which the
        // store never holds) is emitted as is rather than dropped.
        match export_key_der(key) {
            Ok(der) => out.push_str(&pem_block("PRIVATE KEY", &der)),
            Err(_) => out.push_str(&pem_block("PRIVATE KEY", key)),
        }
    }
    out
}

/// The leaf certificate's DER, unchanged (`application/pkix-cert`). The chain and the key are
/// never part of a DER export.
pub fn der(input: &ExportInput) -> Vec<u8> {
    input.leaf_der.to_vec()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run_ok, Fixture, Kind, ALL_KINDS};
    use super::*;

    #[test]
    fn pem_bundle_is_read_by_openssl() {
        for kind in ALL_KINDS {
            let fx = Fixture::new(kind);
            let dir = tempfile::tempdir().expect("tempdir");
            let bundle = pem_bundle(&fx.input());
            assert!(!bundle.contains('\r'), "LF line endings only");
            assert!(bundle.ends_with("-----END PRIVATE KEY-----\n"));
            assert_eq!(
                bundle.matches("-----BEGIN CERTIFICATE-----").count(),
                1 + fx.chain_der.len()
            );
            assert_eq!(bundle.matches("-----BEGIN PRIVATE KEY-----").count(), 1);
            std::fs::write(dir.path().join("b.pem"), &bundle).expect("write");

            // The first certificate is the leaf.
            let subject = run_ok(
                dir.path(),
                "openssl",
                &["x509", "-in", "b.pem", "-noout", "-subject"],
            );
            assert!(subject.contains(&fx.cn), "{kind:?}: {subject}");

            // The key is found and parsed in the same file.
            let key = run_ok(
                dir.path(),
                "openssl",
                &["pkey", "-in", "b.pem", "-noout", "-text"],
            );
            assert!(key.contains("Private"), "{kind:?}: {key}");

            // The key matches the leaf: same public key from both.
            let from_cert = run_ok(
                dir.path(),
                "openssl",
                &["x509", "-in", "b.pem", "-noout", "-pubkey"],
            );
            let from_key = run_ok(dir.path(), "openssl", &["pkey", "-in", "b.pem", "-pubout"]);
            assert_eq!(from_cert, from_key, "{kind:?}");

            // Every certificate block parses, and the chain verifies leaf -> intermediate -> root.
            std::fs::write(
                dir.path().join("root.pem"),
                pem_block("CERTIFICATE", &fx.chain_der[1]),
            )
            .expect("write");
            std::fs::write(
                dir.path().join("int.pem"),
                pem_block("CERTIFICATE", &fx.chain_der[0]),
            )
            .expect("write");
            run_ok(
                dir.path(),
                "openssl",
                &[
                    "verify",
                    "-CAfile",
                    "root.pem",
                    "-untrusted",
                    "int.pem",
                    "b.pem",
                ],
            );
        }
    }

    #[test]
    fn pem_bundle_without_key_or_chain() {
        let fx = Fixture::new(Kind::P256);
        let input = ExportInput {
            leaf_der: &fx.leaf_der,
            chain_der: &[],
            key_pkcs8_der: None,
            alias: "x",
        };
        let bundle = pem_bundle(&input);
        assert_eq!(bundle.matches("-----BEGIN").count(), 1);
        assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(bundle.ends_with("-----END CERTIFICATE-----\n"));
        let parsed = pem::parse(&bundle).expect("parse");
        assert_eq!(parsed.contents(), fx.leaf_der.as_slice());
    }

    #[test]
    fn der_is_the_leaf() {
        let fx = Fixture::new(Kind::P256);
        assert_eq!(der(&fx.input()), fx.leaf_der);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.der"), der(&fx.input())).expect("write");
        let subject = run_ok(
            dir.path(),
            "openssl",
            &[
                "x509", "-inform", "DER", "-in", "c.der", "-noout", "-subject",
            ],
        );
        assert!(subject.contains(&fx.cn));
    }
}
