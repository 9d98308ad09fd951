//! Certificate export formats for `POST /certificates/{id}/export`.
//!
//! Every format is produced by a well-kept crate rather than a hand-rolled encoder:
//!
//! | format   | function       | crate                                   |
//! |----------|----------------|-----------------------------------------|
//! | `pem`    | [`pem_bundle`] | `pem`                                   |
//! | `der`    | [`der`]        | (the stored DER, unchanged)             |
//! | `pkcs12` | [`pkcs12()`]   | `p12-keystore`                          |
//! | `jks`    | [`jks()`]      | `jks`                                   |
//! | `pkcs8`  | [`pkcs8_pem`]  | `pkcs8` (RustCrypto, PBES2)             |
//!
//! The functions are pure: they take DER in and give bytes out, and never touch the store or
//! the network. Password-protected formats enforce [`MIN_PASSWORD_LEN`].
//!
//! Key types: EC P-256, EC P-384, RSA and Ed25519 keys are exported by every format (the
//! key is carried as the PKCS#8 DER the server holds). The unit tests read every format back
//! with OpenSSL 3 and Java 17 `keytool`; see [`jks()`] and [`pkcs12()`] for the few
//! limitations of older consumers.

mod bundle;
mod jks;
mod pkcs12;
mod pkcs8;

pub use self::bundle::{der, pem_bundle};
pub use self::jks::jks;
pub use self::pkcs12::pkcs12;
pub use self::pkcs8::pkcs8_pem;

use std::fmt;

use ::pkcs8::der::Encode;
use ::pkcs8::PrivateKeyInfo;
use zeroize::Zeroizing;

/// Minimum password length, in characters, for encrypted exports (PKCS#12, JKS and
/// encrypted PKCS#8).
pub const MIN_PASSWORD_LEN: usize = 4;

/// What is exported: a leaf certificate, its chain (issuer first, up to and including the root), and optionally the private key.
#[derive(Clone, Copy)]
pub struct ExportInput<'a> {
    /// DER of the leaf (end-entity) certificate.
    pub leaf_der: &'a [u8],
    /// DER of the chain certificates, issuer first, up to and including the root. Empty when
    /// the caller asked for the leaf alone (`include_chain: false`).
    pub chain_der: &'a [Vec<u8>],
    /// PKCS#8 DER of the private key, when the server holds it.
    pub key_pkcs8_der: Option<&'a [u8]>,
    /// Friendly name / alias inside PKCS#12 and JKS (e.g. the certificate's common name or id).
    pub alias: &'a str,
}

impl fmt::Debug for ExportInput<'_> {
    /// Never prints key material: only sizes and the alias.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportInput")
            .field("leaf_der_len", &self.leaf_der.len())
            .field("chain_len", &self.chain_der.len())
            .field("has_key", &self.key_pkcs8_der.is_some())
            .field("alias", &self.alias)
            .finish()
    }
}

/// Why an export could not be produced.
#[derive(Debug)]
pub enum FormatError {
    /// The format needs the private key, and the server does not hold it (the certificate was
    /// issued from a CSR).
    KeyNotHeld,
    /// The password is missing or breaks a rule; the message names the rule.
    Password(String),
    /// Anything else reported by the encoders (malformed key or certificate DER, an alias the
    /// format cannot carry, ...).
    Encode(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::KeyNotHeld => f.write_str(
                "this format needs the private key, and the server does not hold it \
                 (the certificate was issued from a CSR)",
            ),
            FormatError::Password(rule) => f.write_str(rule),
            FormatError::Encode(msg) => write!(f, "could not encode the export: {msg}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// The private key of `input`, or [`FormatError::KeyNotHeld`].
fn require_key<'a>(input: &ExportInput<'a>) -> Result<&'a [u8], FormatError> {
    input.key_pkcs8_der.ok_or(FormatError::KeyNotHeld)
}

/// The PKCS#8 DER to put in an export.
///
/// A version 2 OneAsymmetricKey (RFC 5958: with the optional public key, which is how
/// aws-lc-rs, and so rcgen, writes Ed25519 keys) becomes a version 1 PrivateKeyInfo with the
/// same algorithm and private key: OpenSSL 3.0 (`openssl pkey`, `openssl pkcs12`) and older
/// Java refuse version 2, and every reader can derive the public key. Version 1 keys (RSA,
/// EC) are passed through byte for byte. Errors when `der` is not PKCS#8.
fn export_key_der(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let info = PrivateKeyInfo::try_from(der)
        .map_err(|e| FormatError::Encode(format!("the private key is not PKCS#8 DER: {e}")))?;
    if info.public_key.is_none() {
        return Ok(Zeroizing::new(der.to_vec()));
    }
    PrivateKeyInfo::new(info.algorithm, info.private_key)
        .to_der()
        .map(Zeroizing::new)
        .map_err(|e| FormatError::Encode(format!("re-encoding the private key: {e}")))
}

/// Enforces [`MIN_PASSWORD_LEN`] (counted in Unicode scalar values, not bytes).
fn check_password(password: &str) -> Result<(), FormatError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(FormatError::Password(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// Test fixtures and helpers shared by the format tests: keys and a small CA chain made with
/// rcgen, and a runner for the external tools (`openssl`, `keytool`).
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;
    use std::process::{Command, Output};

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        SignatureAlgorithm,
    };

    /// Key types every format is tested with.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Kind {
        P256,
        P384,
        Rsa2048,
        Ed25519,
    }

    pub(crate) const ALL_KINDS: [Kind; 4] = [Kind::P256, Kind::P384, Kind::Rsa2048, Kind::Ed25519];

    fn alg(kind: Kind) -> &'static SignatureAlgorithm {
        match kind {
            Kind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Kind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Kind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            Kind::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    pub(crate) fn key(kind: Kind) -> KeyPair {
        match kind {
            Kind::Rsa2048 => {
                KeyPair::generate_rsa_for(alg(kind), rcgen::RsaKeySize::_2048).expect("rsa key")
            }
            _ => KeyPair::generate_for(alg(kind)).expect("key"),
        }
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    }

    /// A leaf of `kind` issued by an intermediate, issued by a root (both P-256).
    pub(crate) struct Fixture {
        pub leaf_der: Vec<u8>,
        /// Intermediate first, then the root.
        pub chain_der: Vec<Vec<u8>>,
        pub key_der: Vec<u8>,
        /// Common name of the leaf.
        pub cn: String,
    }

    impl Fixture {
        pub(crate) fn new(kind: Kind) -> Fixture {
            let root_key = key(Kind::P256);
            let root_params = ca_params("Vellum Test Root");
            let root = root_params.self_signed(&root_key).expect("root");
            let root_issuer = Issuer::new(root_params, root_key);

            let int_key = key(Kind::P256);
            let int_params = ca_params("Vellum Test Intermediate");
            let int = int_params
                .signed_by(&int_key, &root_issuer)
                .expect("intermediate");
            let int_issuer = Issuer::new(int_params, int_key);

            let cn = format!("leaf-{kind:?}.example").to_lowercase();
            let leaf_key = key(kind);
            let mut leaf_params = CertificateParams::new(vec![cn.clone()]).expect("leaf params");
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn.as_str());
            leaf_params.distinguished_name = dn;
            let leaf = leaf_params.signed_by(&leaf_key, &int_issuer).expect("leaf");

            Fixture {
                leaf_der: leaf.der().to_vec(),
                chain_der: vec![int.der().to_vec(), root.der().to_vec()],
                key_der: leaf_key.serialize_der(),
                cn,
            }
        }

        pub(crate) fn input(&self) -> super::ExportInput<'_> {
            super::ExportInput {
                leaf_der: &self.leaf_der,
                chain_der: &self.chain_der,
                key_pkcs8_der: Some(&self.key_der),
                alias: &self.cn,
            }
        }
    }

    /// Runs `program args...` in `dir`, with a UTF-8 C locale so non-ASCII passwords given
    /// on the command line reach the tool intact.
    pub(crate) fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// Like [`run`], and asserts success; returns stdout + stderr as text.
    pub(crate) fn run_ok(dir: &Path, program: &str, args: &[&str]) -> String {
        let out = run(dir, program, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule() {
        assert!(check_password("abcd").is_ok());
        // Four characters, eight bytes: the rule counts characters.
        assert!(check_password("ääää").is_ok());
        match check_password("abc") {
            Err(FormatError::Password(msg)) => {
                assert_eq!(msg, "password must be at least 4 characters")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(check_password(""), Err(FormatError::Password(_))));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            FormatError::KeyNotHeld.to_string(),
            "this format needs the private key, and the server does not hold it \
             (the certificate was issued from a CSR)"
        );
        assert_eq!(
            FormatError::Password("password must be at least 4 characters".into()).to_string(),
            "password must be at least 4 characters"
        );
        assert!(FormatError::Encode("bad DER".into())
            .to_string()
            .contains("bad DER"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = [0x42u8; 8];
        let input = ExportInput {
            leaf_der: &[1, 2, 3],
            chain_der: &[],
            key_pkcs8_der: Some(&key),
            alias: "a",
        };
        let dbg = format!("{input:?}");
        assert!(dbg.contains("has_key: true"));
        assert!(!dbg.contains("66"));
    }
}
