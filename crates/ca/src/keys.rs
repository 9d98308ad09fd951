//! Key algorithms Vellum accepts, key generation and the master key that seals private
//! keys at rest (AES-256-GCM).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use rcgen::{KeyPair, RsaKeySize};
use zeroize::Zeroizing;

use vellum_core::error::{Error, Result};

/// A key algorithm a CA or a certificate may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
}

/// The names accepted on the API, in order.
pub const KEY_ALGORITHM_NAMES: &str = "rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ed25519";

impl KeyAlgorithm {
    /// API name (`ec-p256`…).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// True for the RSA variants.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }

    /// Generates a fresh key pair.
    pub fn generate(self) -> Result<KeyPair> {
        let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
        let kp = match self {
            KeyAlgorithm::Rsa2048 => rsa(RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => rsa(RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => rsa(RsaKeySize::_4096),
            KeyAlgorithm::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        };
        Ok(kp?)
    }

    /// Identifies the algorithm of a DER SubjectPublicKeyInfo; the error names what was
    /// found and what is accepted.
    pub fn from_spki(spki_der: &[u8]) -> Result<KeyAlgorithm, String> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        use x509_parser::x509::SubjectPublicKeyInfo;
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| format!("unreadable public key: {e}"))?;
        let oid = spki.algorithm.algorithm.to_id_string();
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => match rsa.key_size() {
                2048 => Ok(KeyAlgorithm::Rsa2048),
                3072 => Ok(KeyAlgorithm::Rsa3072),
                4096 => Ok(KeyAlgorithm::Rsa4096),
                n if n < 2048 => Err(format!("RSA key of {n} bits is too weak (minimum 2048)")),
                n => Err(format!(
                    "RSA key of {n} bits is not supported (use 2048, 3072 or 4096)"
                )),
            },
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    "1.2.840.10045.3.1.7" => Ok(KeyAlgorithm::EcP256),
                    "1.3.132.0.34" => Ok(KeyAlgorithm::EcP384),
                    other => Err(format!(
                        "EC curve {other} is not supported (use P-256 or P-384)"
                    )),
                }
            }
            _ if oid == "1.3.101.112" => Ok(KeyAlgorithm::Ed25519),
            _ => Err(format!(
                "key algorithm {oid} is not supported (accepted: {KEY_ALGORITHM_NAMES})"
            )),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "rsa-2048" => KeyAlgorithm::Rsa2048,
            "rsa-3072" => KeyAlgorithm::Rsa3072,
            "rsa-4096" => KeyAlgorithm::Rsa4096,
            "ec-p256" => KeyAlgorithm::EcP256,
            "ec-p384" => KeyAlgorithm::EcP384,
            "ed25519" => KeyAlgorithm::Ed25519,
            _ => {
                return Err(format!(
                    "unknown key algorithm {s:?}; accepted: {KEY_ALGORITHM_NAMES}"
                ))
            }
        })
    }
}

/// The 256-bit key under which every private key is sealed at rest.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    raw: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

const NONCE_LEN: usize = 12;

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey> {
        if bytes.len() != 32 {
            return Err(Error::config(format!(
                "the master key must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(Error::internal)?;
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(bytes);
        Ok(MasterKey { cipher, raw })
    }

    /// From text: 64 hex characters or base64 of 32 bytes.
    pub fn from_text(text: &str) -> Result<MasterKey> {
        let text = text.trim();
        let bytes = Zeroizing::new(if text.len() == 64 {
            hex::decode(text).map_err(|_| Error::config("master key: invalid hex"))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| Error::config("master key: expected 64 hex characters or base64"))?
        });
        Self::from_bytes(&bytes)
    }

    /// The configured key, else the key in `path`, else a new key written to `path` (0600).
    /// Returns the key and whether it was created.
    pub fn load_or_create(configured: Option<&str>, path: &Path) -> Result<(MasterKey, bool)> {
        if let Some(text) = configured {
            return Ok((Self::from_text(text)?, false));
        }
        if path.exists() {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Error::config(format!("reading master key {}: {e}", path.display()))
            })?);
            return Ok((Self::from_text(&text)?, false));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let text = Zeroizing::new(hex::encode(bytes.as_ref()) + "\n");
        vellum_core::fsutil::write_private(path, text.as_bytes())?;
        Ok((Self::from_bytes(bytes.as_ref())?, true))
    }

    /// The key's public fingerprint (16 hex characters): tells master keys apart in
    /// messages and in the database without revealing anything of the key.
    pub fn id(&self) -> String {
        hex::encode(&self.derive("vellum master key id v1")[..8])
    }

    /// The key as the text of a `master.key` file (64 hex characters).
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.raw.as_ref()))
    }

    /// A 256-bit key for another purpose, derived as HMAC-SHA-256(master, label): the
    /// same on every replica that shares the master key.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.raw.as_ref());
        let tag = aws_lc_rs::hmac::sign(&key, label.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the owning row's id).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("sealing a private key failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(Error::internal("sealed key is truncated"));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::internal("cannot decrypt a stored private key: wrong master key?")
            })?;
        Ok(Zeroizing::new(pt))
    }

    /// Seals a key pair (as PKCS#8 PEM).
    pub fn seal_key(&self, context: &str, key: &KeyPair) -> Result<Vec<u8>> {
        let pem = Zeroizing::new(key.serialize_pem());
        self.seal(context, pem.as_bytes())
    }

    /// Opens a sealed key pair.
    /// Opens a sealed PKCS#8 PEM private key as its DER (for export formats).
    pub fn open_pkcs8(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let pem = self.open(context, sealed)?;
        let text =
            std::str::from_utf8(&pem).map_err(|_| Error::internal("sealed key is not PEM"))?;
        Ok(Zeroizing::new(
            ::pem::parse(text).map_err(Error::internal)?.into_contents(),
        ))
    }

    /// Opens a sealed PKCS#8 PEM private key as a key pair (for signing).
    pub fn open_key(&self, context: &str, sealed: &[u8]) -> Result<KeyPair> {
        let pem = self.open(context, sealed)?;
        let text =
            std::str::from_utf8(&pem).map_err(|_| Error::internal("sealed key is not PEM"))?;
        KeyPair::from_pem(text).map_err(|e| Error::internal(format!("stored key unreadable: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let mk = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = mk.seal("ca-1", b"secret key").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"secret key"));
        assert_eq!(&mk.open("ca-1", &sealed).unwrap()[..], b"secret key");
        assert!(mk.open("ca-2", &sealed).is_err(), "context must be bound");
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("ca-1", &sealed).is_err(), "wrong key must fail");
    }

    #[test]
    fn master_key_text_forms() {
        assert!(MasterKey::from_text(&"ab".repeat(32)).is_ok());
        assert!(
            MasterKey::from_text(&base64::engine::general_purpose::STANDARD.encode([1u8; 32]))
                .is_ok()
        );
        assert!(MasterKey::from_text("short").is_err());
    }

    #[test]
    fn every_algorithm_generates_and_is_recognised() {
        for alg in [
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::Ed25519,
        ] {
            let kp = alg.generate().unwrap();
            assert_eq!(
                KeyAlgorithm::from_spki(&kp.subject_public_key_info()).unwrap(),
                alg
            );
            let mk = MasterKey::from_bytes(&[1u8; 32]).unwrap();
            let back = mk.open_key("x", &mk.seal_key("x", &kp).unwrap()).unwrap();
            assert_eq!(back.public_key_raw(), kp.public_key_raw());
        }
    }

    #[test]
    fn names_parse_and_unknown_names_list_the_accepted_ones() {
        assert_eq!(
            "EC-P384".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcP384
        );
        let e = "dsa-1024".parse::<KeyAlgorithm>().unwrap_err();
        assert!(e.contains("ed25519"), "{e}");
    }
}
