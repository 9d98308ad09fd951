//! Reading certificate material made elsewhere: what kind of file a text or byte string is,
//! the facts of a certificate, private keys in every PEM form OpenSSL writes (encrypted
//! ones included), whether a key belongs to a certificate, how a chain links, and reading
//! PEM, DER, PKCS#12, JKS and PKCS#8 files for conversion.
//!
//! Pure functions over bytes: nothing here touches the store. Errors are typed
//! ([`KeyError`], [`ChainError`], [`ReadError`]); `ra::managed` turns them into the
//! messages a person reads.

use ::pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
use ::pkcs8::der::{Decode, Encode};
use ::pkcs8::{AlgorithmIdentifierRef, EncryptedPrivateKeyInfo, PrivateKeyInfo};
use base64::Engine;
use rcgen::{KeyPair, PublicKeyData};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::keys::KeyAlgorithm;

/// The DER of the SM2 curve's OID (1.2.156.10197.1.301), as found in an SPKI or a key.
const SM2_OID_DER: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];

/// What a piece of input looks like, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// PEM text (`-----BEGIN …`).
    Pem,
    /// A DER X.509 certificate (raw, or base64 of it).
    Der,
    /// A PKCS#12 / PFX file (raw, or base64 of it).
    Pkcs12,
    /// A Java KeyStore (magic `FEEDFEED`; raw, or base64 of it).
    Jks,
    /// None of these.
    Unknown,
}

impl Sniffed {
    /// How a sentence names it.
    pub fn describe(self) -> &'static str {
        match self {
            Sniffed::Pem => "PEM",
            Sniffed::Der => "a DER certificate",
            Sniffed::Pkcs12 => "a PKCS#12 (PFX) file",
            Sniffed::Jks => "a Java KeyStore (JKS)",
            Sniffed::Unknown => "not a certificate file Vellum recognises",
        }
    }
}

/// Recognises PEM, DER certificates, PKCS#12 and JKS, raw or base64-encoded.
pub fn sniff(input: &[u8]) -> Sniffed {
    let trimmed = input.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN") {
        return Sniffed::Pem;
    }
    match sniff_binary(trimmed) {
        Sniffed::Unknown => {}
        found => return found,
    }
    let compact: Vec<u8> = trimmed
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(bytes) => sniff_binary(&bytes),
        Err(_) => Sniffed::Unknown,
    }
}

fn sniff_binary(b: &[u8]) -> Sniffed {
    if b.starts_with(&[0xfe, 0xed, 0xfe, 0xed]) {
        return Sniffed::Jks;
    }
    if b.first() != Some(&0x30) {
        return Sniffed::Unknown;
    }
    if x509_parser::parse_x509_certificate(b).is_ok() {
        return Sniffed::Der;
    }
    // PFX ::= SEQUENCE { version INTEGER (v3), … }: after the outer header, 02 01 03.
    let header = match b.get(1) {
        Some(l) if *l < 0x80 => 2,
        Some(l) => 2 + (*l & 0x7f) as usize,
        None => return Sniffed::Unknown,
    };
    if b.get(header..header + 3) == Some(&[0x02, 0x01, 0x03]) {
        return Sniffed::Pkcs12;
    }
    Sniffed::Unknown
}

/// True when DER (an SPKI, a certificate, a key) names the SM2 curve.
pub fn names_sm2(der: &[u8]) -> bool {
    der.windows(SM2_OID_DER.len()).any(|w| w == SM2_OID_DER)
}

/// The facts of a certificate the inventory shows and filters on.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// RFC 4514-style subject.
    pub subject: String,
    /// The subject's first common name (empty when it has none).
    pub common_name: String,
    /// Subject alternative names as `(type, value)`: `dns`, `ip`, `email`, `uri`.
    pub sans: Vec<(String, String)>,
    /// RFC 4514-style issuer.
    pub issuer: String,
    /// Lower-case hex serial.
    pub serial: String,
    /// `ec-p256`, `rsa-2048`…, or a description of another algorithm (`rsa-1024`, an OID).
    pub key_algorithm: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// Reads the facts of a DER certificate; the error says what could not be read.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            let entry = match name {
                GeneralName::DNSName(d) => ("dns", d.to_string()),
                GeneralName::RFC822Name(e) => ("email", e.to_string()),
                GeneralName::URI(u) => ("uri", u.to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => (
                        "ip",
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => (
                        "ip",
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => continue,
                },
                _ => continue,
            };
            sans.push((entry.0.to_string(), entry.1));
        }
    }
    let spki_der = cert.public_key().raw.to_vec();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        common_name,
        sans,
        issuer: cert.issuer().to_string(),
        serial: crate::serial_hex(cert.raw_serial()),
        key_algorithm: describe_key(&spki_der),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        spki_der,
    })
}

/// The API name of the key algorithm of an SPKI, or a description of one Vellum does not
/// issue with.
fn describe_key(spki_der: &[u8]) -> String {
    if let Ok(a) = KeyAlgorithm::from_spki(spki_der) {
        return a.as_str().to_string();
    }
    use x509_parser::public_key::PublicKey;
    use x509_parser::x509::SubjectPublicKeyInfo;
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(spki_der) else {
        return "unknown".into();
    };
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.3.132.0.35" => "ec-p521".into(),
                other => format!("ec-{other}"),
            }
        }
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

/// The certificates (DER) of every `CERTIFICATE` block of a PEM text, in order. Errors
/// when a block is not a certificate.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = ::pem::parse_many(text).map_err(|e| format!("is not valid PEM ({e})"))?;
    let mut out = Vec::new();
    for (i, b) in blocks.into_iter().enumerate() {
        if b.tag() != "CERTIFICATE" {
            continue;
        }
        let der = b.into_contents();
        if let Err(e) = x509_parser::parse_x509_certificate(&der) {
            return Err(format!(
                "block {} is not a valid X.509 certificate ({e})",
                i + 1
            ));
        }
        out.push(der);
    }
    Ok(out)
}

/// Splits concatenated DER certificates (how the inventory stores a chain).
pub fn split_der_certificates(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok((rest, _)) = x509_parser::parse_x509_certificate(bytes) else {
            break;
        };
        out.push(bytes[..bytes.len() - rest.len()].to_vec());
        bytes = rest;
    }
    out
}

/// Why a private key could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// No PEM private key block.
    NotPem,
    /// Protected by a passphrase and none was given. `legacy`: OpenSSL's traditional
    /// `Proc-Type: 4,ENCRYPTED` form (else PKCS#8 `ENCRYPTED PRIVATE KEY`); `rsa`: an RSA
    /// key (as far as the form tells).
    Encrypted {
        /// Traditional OpenSSL encryption (`DEK-Info`).
        legacy: bool,
        /// The block says `RSA PRIVATE KEY`.
        rsa: bool,
    },
    /// The passphrase does not decrypt the key.
    WrongPassphrase,
    /// An SM2 key.
    Sm2,
    /// Anything else; the text says what.
    Unreadable(String),
}

/// The private key of a PEM text as PKCS#8 DER, whatever form OpenSSL wrote it in:
/// `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY` (PKCS#8 PBES2, with `passphrase`),
/// `RSA PRIVATE KEY` (PKCS#1) and `EC PRIVATE KEY` (SEC 1, P-256 or P-384), the last two
/// optionally encrypted the traditional way (`DEK-Info`: AES-128/192/256-CBC or
/// DES-EDE3-CBC, key from EVP_BytesToKey with MD5).
pub fn private_key_pkcs8(
    text: &str,
    passphrase: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let blocks = ::pem::parse_many(text).map_err(|_| KeyError::NotPem)?;
    let block = blocks
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or(KeyError::NotPem)?;
    let tag = block.tag().to_string();
    let encrypted_legacy = block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"));
    let dek_info = block.headers().get("DEK-Info").map(str::to_string);
    let der = Zeroizing::new(block.into_contents());
    let key = match tag.as_str() {
        "ENCRYPTED PRIVATE KEY" => {
            let Some(pw) = passphrase else {
                return Err(KeyError::Encrypted {
                    legacy: false,
                    rsa: false,
                });
            };
            let info = EncryptedPrivateKeyInfo::from_der(&der).map_err(|e| {
                KeyError::Unreadable(format!("the encrypted PKCS#8 key is malformed ({e})"))
            })?;
            let doc = info
                .decrypt(pw.as_bytes())
                .map_err(|_| KeyError::WrongPassphrase)?;
            let plain = Zeroizing::new(doc.as_bytes().to_vec());
            if PrivateKeyInfo::from_der(&plain).is_err() {
                return Err(KeyError::WrongPassphrase);
            }
            plain
        }
        "PRIVATE KEY" => der,
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
            let inner = if encrypted_legacy {
                let Some(pw) = passphrase else {
                    return Err(KeyError::Encrypted {
                        legacy: true,
                        rsa: tag == "RSA PRIVATE KEY",
                    });
                };
                let info = dek_info.ok_or_else(|| {
                    KeyError::Unreadable("the key is marked ENCRYPTED but has no DEK-Info".into())
                })?;
                legacy_decrypt(&info, pw, &der)?
            } else {
                der
            };
            if tag == "RSA PRIVATE KEY" {
                rsa_pkcs1_to_pkcs8(&inner).map_err(|e| {
                    if encrypted_legacy {
                        KeyError::WrongPassphrase
                    } else {
                        KeyError::Unreadable(e)
                    }
                })?
            } else {
                if names_sm2(&inner) {
                    return Err(KeyError::Sm2);
                }
                sec1_to_pkcs8(&inner).map_err(|e| {
                    if encrypted_legacy {
                        KeyError::WrongPassphrase
                    } else {
                        KeyError::Unreadable(e)
                    }
                })?
            }
        }
        other => {
            return Err(KeyError::Unreadable(format!(
                "a {other} block is not a private key form Vellum reads (PRIVATE KEY, \
                 ENCRYPTED PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
            )))
        }
    };
    if names_sm2(&key) {
        return Err(KeyError::Sm2);
    }
    Ok(key)
}

/// A PKCS#1 RSAPrivateKey wrapped as PKCS#8 (rsaEncryption, NULL parameters).
fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    aws_lc_rs::rsa::KeyPair::from_der(pkcs1)
        .map_err(|e| format!("the RSA key is unreadable or too weak ({e})"))?;
    let oid = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let info = PrivateKeyInfo::new(
        AlgorithmIdentifierRef {
            oid,
            parameters: Some(AnyRef::NULL),
        },
        pkcs1,
    );
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|e| format!("re-encoding the RSA key: {e}"))
}

/// A SEC 1 ECPrivateKey (P-256 or P-384) as PKCS#8.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    let kp = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, sec1)
        .or_else(|_| EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_ASN1_SIGNING, sec1))
        .map_err(|_| "the EC key is unreadable or not on P-256 / P-384".to_string())?;
    let doc = kp
        .to_pkcs8v1()
        .map_err(|_| "re-encoding the EC key failed".to_string())?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// OpenSSL's EVP_BytesToKey with MD5 and one iteration: the key of a traditional
/// encrypted PEM key, salted with the first 8 bytes of the IV.
fn evp_bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    use md5::{Digest, Md5};
    let mut out = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < len {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(password);
        h.update(salt);
        prev = h.finalize().to_vec();
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}

/// Decrypts a traditional encrypted PEM key body (`DEK-Info: ALGORITHM,HEXIV`).
fn legacy_decrypt(
    dek_info: &str,
    password: &str,
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use cbc::cipher::block_padding::Pkcs7;
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
    let (alg, iv_hex) = dek_info
        .split_once(',')
        .ok_or_else(|| KeyError::Unreadable(format!("DEK-Info {dek_info:?} is malformed")))?;
    let iv = hex::decode(iv_hex.trim())
        .map_err(|_| KeyError::Unreadable(format!("DEK-Info {dek_info:?} has a malformed IV")))?;
    if iv.len() < 8 {
        return Err(KeyError::Unreadable("DEK-Info IV is too short".into()));
    }
    let key_len = match alg.trim() {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        "DES-EDE3-CBC" => 24,
        other => {
            return Err(KeyError::Unreadable(format!(
                "the key is encrypted with {other}, which Vellum does not read \
                 (AES-128/192/256-CBC and DES-EDE3-CBC are read); convert it with \
                 openssl pkcs8 -topk8 -in encrypted.key -out key.pem"
            )))
        }
    };
    let key = evp_bytes_to_key(password.as_bytes(), &iv[..8], key_len);
    let mut buf = Zeroizing::new(ct.to_vec());
    let bad = |_| KeyError::WrongPassphrase;
    let len = match alg.trim() {
        "AES-128-CBC" => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .map_err(|_| KeyError::Unreadable("bad IV length".into()))?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map_err(bad)?
            .len(),
        "AES-192-CBC" => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .map_err(|_| KeyError::Unreadable("bad IV length".into()))?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map_err(bad)?
            .len(),
        "AES-256-CBC" => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(|_| KeyError::Unreadable("bad IV length".into()))?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map_err(bad)?
            .len(),
        _ => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .map_err(|_| KeyError::Unreadable("bad IV length".into()))?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map_err(bad)?
            .len(),
    };
    buf.truncate(len);
    Ok(buf)
}

/// Whether the PKCS#8 key is the private half of the SPKI's public key (RSA modulus and
/// exponent, EC point, Ed25519 key). The error says why the key is unusable.
pub fn key_matches(spki_der: &[u8], key_pkcs8: &[u8]) -> Result<bool, String> {
    let kp = KeyPair::try_from(key_pkcs8).map_err(|_| {
        "is not a usable private key; accepted: RSA 2048-8192, EC P-256/P-384/P-521, Ed25519"
            .to_string()
    })?;
    use x509_parser::x509::SubjectPublicKeyInfo;
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| format!("the certificate's public key is unreadable ({e})"))?;
    Ok(kp.der_bytes() == spki.subject_public_key.data.as_ref())
}

/// SHA-256 of a DER SubjectPublicKeyInfo, lower-case hex: what
/// `openssl pkey -pubin -outform DER | openssl sha256` prints for the same key.
pub fn spki_sha256(spki_der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(spki_der))
}

/// The SubjectPublicKeyInfo (DER) of a PKCS#8 private key's public half, or why the key
/// is unusable.
pub fn key_spki(key_pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    KeyPair::try_from(key_pkcs8)
        .map(|kp| kp.subject_public_key_info())
        .map_err(|_| "is not a usable private key".to_string())
}

/// Why a chain does not link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// No certificate given signed `subject` (whose issuer is `issuer`).
    IssuerMissing {
        /// Subject of the certificate whose issuer is missing.
        subject: String,
        /// The issuer it names.
        issuer: String,
    },
    /// A certificate given is not part of the leaf's chain.
    Unrelated {
        /// Its subject.
        subject: String,
    },
}

/// The certificate, or `None` when the DER does not parse.
pub(crate) fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c)
}

/// True when the certificate names itself as issuer and its own key verifies it.
pub fn is_self_signed(der: &[u8]) -> bool {
    parse(der).is_some_and(|c| {
        c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok()
    })
}

/// Puts `others` in chain order after `leaf`: each certificate followed by the one whose
/// key verifies its signature. The chain ends at a self-signed root, or at the last
/// certificate given when that one is a CA whose root is left out (trust stores hold
/// roots). Errors name the first certificate whose issuer is missing, or a certificate
/// given that is not in the chain. A leaf without any chain must be self-signed.
pub fn order_chain(leaf: &[u8], others: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut remaining = others;
    let mut ordered: Vec<Vec<u8>> = Vec::new();
    let mut current = leaf.to_vec();
    loop {
        if is_self_signed(&current) {
            break;
        }
        let Some(cur) = parse(&current) else {
            break;
        };
        let found = remaining.iter().position(|cand| {
            parse(cand).is_some_and(|c| cur.verify_signature(Some(c.public_key())).is_ok())
        });
        match found {
            Some(i) => {
                let next = remaining.remove(i);
                ordered.push(next.clone());
                current = next;
            }
            None if remaining.is_empty() && !ordered.is_empty() => break,
            None => {
                return Err(ChainError::IssuerMissing {
                    subject: cur.subject().to_string(),
                    issuer: cur.issuer().to_string(),
                })
            }
        }
    }
    if let Some(extra) = remaining.first() {
        return Err(ChainError::Unrelated {
            subject: parse(extra)
                .map(|c| c.subject().to_string())
                .unwrap_or_default(),
        });
    }
    Ok(ordered)
}

/// What a file held, ready to be written in another format.
pub struct Material {
    /// The end-entity certificate (the one matching the key, else the first).
    pub leaf: Option<Vec<u8>>,
    /// The other certificates, in the file's order.
    pub chain: Vec<Vec<u8>>,
    /// The private key, PKCS#8 DER.
    pub key: Option<Zeroizing<Vec<u8>>>,
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The password is missing or wrong.
    Password(String),
    /// The content is not what `from` says, or is damaged; the text says what.
    Input(String),
}

/// Java's password bytes (UTF-16BE), for JKS integrity and key protection.
fn java_password_bytes(utf8: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(utf8)
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect()
}

/// Reads PEM text: every certificate, and the private key if there is one (decrypted with
/// `password` when it is encrypted).
pub fn read_pem(bytes: &[u8], password: Option<&str>) -> Result<Material, ReadError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| ReadError::Input("PEM input is not text".into()))?;
    let certs = pem_certificates(text).map_err(ReadError::Input)?;
    let key = if text.contains("PRIVATE KEY-----") {
        Some(private_key_pkcs8(text, password).map_err(key_read_error)?)
    } else {
        None
    };
    if certs.is_empty() && key.is_none() {
        return Err(ReadError::Input(
            "the PEM input holds neither a CERTIFICATE nor a private key block".into(),
        ));
    }
    Ok(assemble(certs, key))
}

fn key_read_error(e: KeyError) -> ReadError {
    match e {
        KeyError::Encrypted { .. } => {
            ReadError::Password("is required: the private key is encrypted".into())
        }
        KeyError::WrongPassphrase => ReadError::Password("does not decrypt the private key".into()),
        KeyError::Sm2 => ReadError::Input("SM2 keys are not supported".into()),
        KeyError::NotPem => ReadError::Input("no private key found".into()),
        KeyError::Unreadable(m) => ReadError::Input(m),
    }
}

/// Picks the leaf (the certificate of the key, else the first) and keeps the others.
fn assemble(mut certs: Vec<Vec<u8>>, key: Option<Zeroizing<Vec<u8>>>) -> Material {
    let leaf_index = key
        .as_ref()
        .and_then(|k| {
            certs.iter().position(|c| {
                cert_info(c)
                    .ok()
                    .is_some_and(|i| key_matches(&i.spki_der, k).unwrap_or(false))
            })
        })
        .unwrap_or(0);
    let leaf = (!certs.is_empty()).then(|| certs.remove(leaf_index));
    Material {
        leaf,
        chain: certs,
        key,
    }
}

/// Reads one DER certificate.
pub fn read_der(bytes: &[u8]) -> Result<Material, ReadError> {
    x509_parser::parse_x509_certificate(bytes)
        .map_err(|e| ReadError::Input(format!("is not a DER certificate ({e})")))?;
    Ok(Material {
        leaf: Some(bytes.to_vec()),
        chain: Vec::new(),
        key: None,
    })
}

/// Reads a PKCS#8 private key: PEM (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, or the
/// traditional RSA / EC forms) or DER (plain or encrypted).
pub fn read_pkcs8(bytes: &[u8], password: Option<&str>) -> Result<Material, ReadError> {
    if bytes.trim_ascii().starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ReadError::Input("PEM input is not text".into()))?;
        let key = private_key_pkcs8(text, password).map_err(key_read_error)?;
        return Ok(Material {
            leaf: None,
            chain: Vec::new(),
            key: Some(key),
        });
    }
    let key = if PrivateKeyInfo::from_der(bytes).is_ok() {
        Zeroizing::new(bytes.to_vec())
    } else {
        let info = EncryptedPrivateKeyInfo::from_der(bytes).map_err(|_| {
            ReadError::Input("is neither a PKCS#8 key nor an encrypted PKCS#8 key".into())
        })?;
        let pw = password
            .ok_or_else(|| ReadError::Password("is required: the key is encrypted".into()))?;
        let doc = info
            .decrypt(pw.as_bytes())
            .map_err(|_| ReadError::Password("does not decrypt the private key".into()))?;
        Zeroizing::new(doc.as_bytes().to_vec())
    };
    if names_sm2(&key) {
        return Err(ReadError::Input("SM2 keys are not supported".into()));
    }
    Ok(Material {
        leaf: None,
        chain: Vec::new(),
        key: Some(key),
    })
}

/// Reads a PKCS#12 file: its key with its certificate chain, or its certificates.
pub fn read_pkcs12(bytes: &[u8], password: Option<&str>) -> Result<Material, ReadError> {
    use p12_keystore::{error::Error as P12Error, KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(bytes, password.unwrap_or(""), Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| match e {
        P12Error::MacError(_) | P12Error::UnpadError => ReadError::Password(
            if password.is_some() {
                "does not open the PKCS#12 file"
            } else {
                "is required to open the PKCS#12 file"
            }
            .into(),
        ),
        other => ReadError::Input(format!("is not a readable PKCS#12 file ({other})")),
    })?;
    if let Some((_, chain)) = store.private_key_chain() {
        let certs: Vec<Vec<u8>> = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
        let key = Zeroizing::new(chain.key().as_der().to_vec());
        return Ok(assemble(certs, Some(key)));
    }
    let certs: Vec<Vec<u8>> = store
        .entries()
        .filter_map(|(_, e)| match e {
            KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ReadError::Input(
            "the PKCS#12 file holds neither a key nor a certificate".into(),
        ));
    }
    Ok(assemble(certs, None))
}

/// Reads a JKS keystore (magic `FEEDFEED`): its first private key entry (with its chain),
/// else its trusted certificates. The integrity hash and the key use `password` as Java
/// does (UTF-16BE).
pub fn read_jks(bytes: &[u8], password: Option<&str>) -> Result<Material, ReadError> {
    use ::jks::common::{MAGIC, WHITENER_MESSAGE};
    use ::jks::decoder::Decoder;
    use ::jks::{Entry, KeyStoreError};
    let pw = password
        .ok_or_else(|| ReadError::Password("is required to open the JKS keystore".into()))?;
    let input =
        |e: KeyStoreError| ReadError::Input(format!("is not a readable JKS keystore ({e})"));
    let mut reader = bytes;
    let mut dec = Decoder::new(&mut reader);
    dec.update_digest(&java_password_bytes(pw.as_bytes()));
    dec.update_digest(WHITENER_MESSAGE);
    if dec.read_u32().map_err(input)? != MAGIC {
        return Err(ReadError::Input(
            "is not a JKS keystore (no FEEDFEED magic)".into(),
        ));
    }
    let version = dec.read_u32().map_err(input)?;
    let count = dec.read_u32().map_err(input)?;
    if count > 10_000 {
        return Err(ReadError::Input("the JKS keystore is damaged".into()));
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(dec.read_entry(version).map_err(input)?);
    }
    dec.verify_digest().map_err(|e| match e {
        KeyStoreError::InvalidDigest => {
            ReadError::Password("does not open the JKS keystore".into())
        }
        other => input(other),
    })?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pke) = entries.iter().find_map(|(_, e)| match e {
        Entry::PrivateKey(p) => Some(p),
        _ => None,
    }) {
        let key =
            ::jks::keyprotector::decrypt(&pke.private_key, pw.as_bytes(), java_password_bytes)
                .map_err(|_| ReadError::Password("does not decrypt the JKS key entry".into()))?;
        let certs = pke
            .certificate_chain
            .iter()
            .map(|c| c.content.clone())
            .collect();
        return Ok(assemble(certs, Some(Zeroizing::new(key))));
    }
    let certs: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::TrustedCertificate(t) => Some(t.certificate.content.clone()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ReadError::Input("the JKS keystore is empty".into()));
    }
    Ok(assemble(certs, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testutil::{run_ok, Fixture, Kind};

    #[test]
    fn sniffs_each_form_raw_and_base64() {
        let fx = Fixture::new(Kind::P256);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert_eq!(
            sniff(crate::cert_pem(&fx.leaf_der).as_bytes()),
            Sniffed::Pem
        );
        assert_eq!(sniff(&fx.leaf_der), Sniffed::Der);
        assert_eq!(sniff(b64(&fx.leaf_der).as_bytes()), Sniffed::Der);
        let p12 = crate::formats::pkcs12(&fx.input(), "pass1234", false).unwrap();
        assert_eq!(sniff(&p12), Sniffed::Pkcs12);
        assert_eq!(sniff(b64(&p12).as_bytes()), Sniffed::Pkcs12);
        let jks = crate::formats::jks(&fx.input(), "pass1234").unwrap();
        assert_eq!(sniff(&jks), Sniffed::Jks);
        assert_eq!(sniff(b64(&jks).as_bytes()), Sniffed::Jks);
        assert_eq!(sniff(b"hello"), Sniffed::Unknown);
    }

    #[test]
    fn legacy_encrypted_keys_from_openssl_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            dir.path(),
            "openssl",
            &["genrsa", "-traditional", "-out", "plain.key", "2048"],
        );
        for cipher in ["-aes128", "-aes256", "-des3"] {
            run_ok(
                dir.path(),
                "openssl",
                &[
                    "rsa",
                    "-traditional",
                    "-in",
                    "plain.key",
                    cipher,
                    "-passout",
                    "pass:secret1",
                    "-out",
                    "enc.key",
                ],
            );
            let text = std::fs::read_to_string(dir.path().join("enc.key")).unwrap();
            assert!(text.contains("DEK-Info"), "{text}");
            assert_eq!(
                private_key_pkcs8(&text, None).unwrap_err(),
                KeyError::Encrypted {
                    legacy: true,
                    rsa: true
                }
            );
            assert_eq!(
                private_key_pkcs8(&text, Some("wrong")).unwrap_err(),
                KeyError::WrongPassphrase
            );
            let key = private_key_pkcs8(&text, Some("secret1")).unwrap();
            let plain = std::fs::read_to_string(dir.path().join("plain.key")).unwrap();
            assert_eq!(*key, *private_key_pkcs8(&plain, None).unwrap(), "{cipher}");
        }
    }

    #[test]
    fn chain_orders_and_names_the_missing_issuer() {
        let fx = Fixture::new(Kind::P256);
        let reversed = vec![fx.chain_der[1].clone(), fx.chain_der[0].clone()];
        assert_eq!(order_chain(&fx.leaf_der, reversed).unwrap(), fx.chain_der);
        // Root left out: fine.
        assert_eq!(
            order_chain(&fx.leaf_der, vec![fx.chain_der[0].clone()]).unwrap(),
            vec![fx.chain_der[0].clone()]
        );
        // Intermediate left out: the leaf's issuer is missing.
        match order_chain(&fx.leaf_der, vec![fx.chain_der[1].clone()]) {
            Err(ChainError::IssuerMissing { subject, issuer }) => {
                assert!(subject.contains(&fx.cn), "{subject}");
                assert!(issuer.contains("Intermediate"), "{issuer}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            order_chain(&fx.leaf_der, vec![]),
            Err(ChainError::IssuerMissing { .. })
        ));
    }
}
