//! CA keys kept in a PKCS#11 token (an HSM, or SoftHSM2 in tests).
//!
//! The key pair is generated inside the token (`CKA_TOKEN`, `CKA_PRIVATE`,
//! `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`) and only ever used through `C_Sign`; the
//! database keeps the object's `CKA_ID` and `CKA_LABEL`, never the PIN or key material.
//!
//! One [`Hsm`] per configured token: the module is loaded and initialised once per process
//! (a second `C_Initialize` of the same library would fail), one session stays open and
//! logged in for the life of the process (PKCS#11 logs a token out when its application's
//! last session closes), and signing borrows a session from a small pool (a PKCS#11
//! session must not be used by two threads at once), waiting when all are in use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand::RngCore;
use rcgen::SignatureAlgorithm;

use crate::keys::KeyAlgorithm;
use vellum_core::config::Pkcs11Config;
use vellum_core::error::{Error, Result};

/// A logged-in PKCS#11 token and its pool of sessions.
pub struct Hsm {
    ctx: Pkcs11,
    slot: Slot,
    /// How the token is named in messages (`token "vellum"` / `slot 3`).
    name: String,
    pin: AuthPin,
    /// Keeps the application logged in while the pool's sessions come and go.
    anchor: Mutex<Option<Session>>,
    pool: Mutex<Pool>,
    freed: Condvar,
    max_sessions: usize,
}

struct Pool {
    idle: Vec<Session>,
    open: usize,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm").field("token", &self.name).finish()
    }
}

/// Loaded modules, by path: loaded and initialised once per process, never unloaded.
fn module(path: &Path) -> Result<Pkcs11> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(path) {
        return Ok(ctx.clone());
    }
    if !path.exists() {
        return Err(Error::config(format!(
            "pkcs11.module {}: no such file (install the HSM vendor's PKCS#11 library, \
             e.g. Debian's softhsm2 for /usr/lib/softhsm/libsofthsm2.so)",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path).map_err(|e| {
        Error::config(format!(
            "pkcs11.module {} cannot be loaded as a PKCS#11 library: {}",
            path.display(),
            describe(&e)
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::config(format!(
                "pkcs11.module {}: C_Initialize failed: {}",
                path.display(),
                describe(&e)
            )))
        }
    }
    map.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A PKCS#11 error in words (the function and the return value's meaning).
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => {
            format!("C_{f:?} returned {rv:?} ({rv})").replace("Function::", "")
        }
        other => other.to_string(),
    }
}

fn internal(what: &str, e: CkError) -> Error {
    Error::internal(format!("PKCS#11 {what}: {}", describe(&e)))
}

/// Whether a failed call leaves the session unusable (it is then closed, not pooled).
fn session_broken(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

impl Hsm {
    /// Loads the module, finds the token and logs in. Every failure is a configuration
    /// error naming what to fix (module, token, PIN).
    pub fn open(config: &Pkcs11Config) -> Result<Arc<Hsm>> {
        let ctx = module(&config.module)?;
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| Error::config(format!("pkcs11: listing slots: {}", describe(&e))))?;
        let (slot, name) = match (&config.token_label, config.slot) {
            (Some(label), _) => {
                let mut found = Vec::new();
                for s in &slots {
                    if let Ok(info) = ctx.get_token_info(*s) {
                        if info.label().trim_end() == label {
                            found.push(*s);
                        }
                    }
                }
                match found.as_slice() {
                    [s] => (*s, format!("token {label:?}")),
                    [] => {
                        return Err(Error::config(format!(
                            "pkcs11.token_label {label:?}: no initialised token with that label \
                             in {} (initialise it first, e.g. softhsm2-util --init-token)",
                            config.module.display()
                        )))
                    }
                    _ => {
                        return Err(Error::config(format!(
                            "pkcs11.token_label {label:?}: several tokens carry that label; \
                             name the token by pkcs11.slot instead"
                        )))
                    }
                }
            }
            (None, Some(id)) => {
                let Some(s) = slots.iter().find(|s| s.id() == id) else {
                    return Err(Error::config(format!(
                        "pkcs11.slot {id}: no initialised token in that slot of {}",
                        config.module.display()
                    )));
                };
                (*s, format!("slot {id}"))
            }
            (None, None) => {
                return Err(Error::config(
                    "pkcs11: set pkcs11.token_label or pkcs11.slot".to_string(),
                ))
            }
        };
        let pin = AuthPin::from(config.read_pin()?);
        let hsm = Hsm {
            ctx,
            slot,
            name,
            pin,
            anchor: Mutex::new(None),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max_sessions: config.sessions.max(1),
        };
        hsm.login().map_err(|e| match e {
            CkError::Pkcs11(RvError::PinIncorrect, _) => Error::config(format!(
                "pkcs11: the PIN is wrong for {} (check pkcs11.pin_file or VELLUM_PKCS11_PIN)",
                hsm.name
            )),
            CkError::Pkcs11(RvError::PinLocked, _) => Error::config(format!(
                "pkcs11: the user PIN of {} is locked; unlock it with the security officer PIN",
                hsm.name
            )),
            e => Error::config(format!(
                "pkcs11: cannot log in to {}: {}",
                hsm.name,
                describe(&e)
            )),
        })?;
        tracing::info!(token = %hsm.name, module = %config.module.display(), "PKCS#11 token ready");
        Ok(Arc::new(hsm))
    }

    /// How the token is named in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the anchor session and logs in (again, after the token logged us out).
    fn login(&self) -> std::result::Result<(), CkError> {
        let mut anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let session = match anchor.take() {
            Some(s) => s,
            None => self.ctx.open_rw_session(self.slot)?,
        };
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                *anchor = Some(session);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `f` on a pooled session; a session broken by the call is closed and the call
    /// tried once more on a fresh one (after logging in again if the token logged out).
    fn with_session<T>(
        &self,
        what: &str,
        f: impl Fn(&Session) -> std::result::Result<T, CkError>,
    ) -> Result<T> {
        let mut last = None;
        for _ in 0..2 {
            let session = self.checkout().map_err(|e| internal(what, e))?;
            match f(&session) {
                Ok(v) => {
                    self.checkin(Some(session));
                    return Ok(v);
                }
                Err(e) if session_broken(&e) => {
                    drop(session);
                    self.checkin(None);
                    if matches!(e, CkError::Pkcs11(RvError::UserNotLoggedIn, _)) {
                        let _ = self.login();
                    }
                    last = Some(e);
                }
                Err(e) => {
                    self.checkin(Some(session));
                    return Err(internal(what, e));
                }
            }
        }
        Err(internal(
            what,
            last.unwrap_or(CkError::Pkcs11(
                RvError::GeneralError,
                cryptoki::context::Function::Sign,
            )),
        ))
    }

    fn checkout(&self) -> std::result::Result<Session, CkError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(s);
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                drop(pool);
                return self.ctx.open_rw_session(self.slot).inspect_err(|_| {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    pool.open -= 1;
                    self.freed.notify_one();
                });
            }
            pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a session to the pool; `None`: it was closed.
    fn checkin(&self, session: Option<Session>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match session {
            Some(s) => pool.idle.push(s),
            None => pool.open -= 1,
        }
        self.freed.notify_one();
    }

    /// Generates a signing key pair for CA `ca_id` inside the token: private half
    /// CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only; both
    /// halves carry a fresh random CKA_ID and the label `vellum-ca-<ca_id>`.
    pub fn generate(self: &Arc<Self>, alg: KeyAlgorithm, ca_id: &str) -> Result<HsmKey> {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let label = format!("vellum-ca-{ca_id}");
        let (mechanism, mut public) = match alg {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let bits: u64 = match alg {
                    KeyAlgorithm::Rsa2048 => 2048,
                    KeyAlgorithm::Rsa3072 => 3072,
                    _ => 4096,
                };
                (
                    Mechanism::RsaPkcsKeyPairGen,
                    vec![
                        Attribute::ModulusBits(bits.into()),
                        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    ],
                )
            }
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(curve_oid_der(alg).to_vec())],
            ),
            KeyAlgorithm::Ed25519 => {
                return Err(Error::invalid(
                    "key_storage",
                    "\"pkcs11\" keeps RSA and EC (P-256, P-384) keys; this CA's key algorithm \
                     is ed25519: purchase the CA with another key algorithm or keep its key in \
                     the database",
                ))
            }
        };
        public.extend([
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]);
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let (pub_handle, priv_handle) = self.with_session("key generation", |s| {
            s.generate_key_pair(&mechanism, &public, &private)
        })?;
        let public_raw = self.with_session("reading the public key", |s| {
            read_public(s, pub_handle, alg)
        })??;
        Ok(HsmKey {
            hsm: self.clone(),
            handle: priv_handle,
            alg,
            public_raw,
            id_hex: hex::encode(id),
            label,
        })
    }

    /// The private key object with CKA_ID `id_hex`, for a CA whose certificate carries
    /// `public_raw` (rcgen's raw public key: PKCS#1 RSAPublicKey or the EC point). Fails
    /// when the token holds no such key, or a different one.
    pub fn key(
        self: &Arc<Self>,
        id_hex: &str,
        label: &str,
        alg: KeyAlgorithm,
        public_raw: Vec<u8>,
    ) -> Result<HsmKey> {
        let id = hex::decode(id_hex)
            .map_err(|_| Error::internal(format!("stored PKCS#11 key id {id_hex} is not hex")))?;
        let (private, public) = self.with_session("finding the key", |s| {
            let find = |class| {
                s.find_objects(&[
                    Attribute::Class(class),
                    Attribute::Token(true),
                    Attribute::Id(id.clone()),
                ])
            };
            Ok((
                find(ObjectClass::PRIVATE_KEY)?,
                find(ObjectClass::PUBLIC_KEY)?,
            ))
        })?;
        let handle = match private.as_slice() {
            [h] => *h,
            [] => {
                return Err(Error::config(format!(
                    "the PKCS#11 {} holds no private key with id {id_hex} (label {label:?}); \
                     is pkcs11 configured with the token this CA was enabled on?",
                    self.name
                )))
            }
            _ => {
                return Err(Error::config(format!(
                    "the PKCS#11 {} holds several private keys with id {id_hex}",
                    self.name
                )))
            }
        };
        if let Some(pub_handle) = public.first().copied() {
            let token_public = self.with_session("reading the public key", |s| {
                read_public(s, pub_handle, alg)
            })??;
            if token_public != public_raw {
                return Err(Error::config(format!(
                    "the key with id {id_hex} in PKCS#11 {} does not match the CA's certificate",
                    self.name
                )));
            }
        }
        Ok(HsmKey {
            hsm: self.clone(),
            handle,
            alg,
            public_raw,
            id_hex: id_hex.to_string(),
            label: label.to_string(),
        })
    }

    /// Destroys both halves of the key pair with CKA_ID `id_hex` (a CA reset).
    pub fn destroy(&self, id_hex: &str) -> Result<usize> {
        let id = hex::decode(id_hex)
            .map_err(|_| Error::internal(format!("stored PKCS#11 key id {id_hex} is not hex")))?;
        self.with_session("destroying a key", |s| {
            let objects = s.find_objects(&[Attribute::Token(true), Attribute::Id(id.clone())])?;
            for o in &objects {
                s.destroy_object(*o)?;
            }
            Ok(objects.len())
        })
    }

    /// How the private key with CKA_ID `id_hex` is protected, as the token reports it.
    pub fn protection(&self, id_hex: &str) -> Result<KeyProtection> {
        let id = hex::decode(id_hex)
            .map_err(|_| Error::internal(format!("stored PKCS#11 key id {id_hex} is not hex")))?;
        self.with_session("reading key attributes", |s| {
            let found = s.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id.clone()),
            ])?;
            let Some(h) = found.first().copied() else {
                return Ok(None);
            };
            let mut p = KeyProtection::default();
            for a in s.get_attributes(
                h,
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Sign,
                    AttributeType::KeyType,
                ],
            )? {
                match a {
                    Attribute::Token(v) => p.token = v,
                    Attribute::Private(v) => p.private = v,
                    Attribute::Sensitive(v) => p.sensitive = v,
                    Attribute::Extractable(v) => p.extractable = v,
                    Attribute::Sign(v) => p.sign = v,
                    Attribute::KeyType(t) => p.rsa = t == KeyType::RSA,
                    _ => {}
                }
            }
            let secret = if p.rsa {
                vec![AttributeType::PrivateExponent, AttributeType::Prime1]
            } else {
                vec![AttributeType::Value]
            };
            p.secret_readable = s
                .get_attribute_info(h, &secret)?
                .iter()
                .any(|i| matches!(i, AttributeInfo::Available(_)));
            p.secret_values_returned = s.get_attributes(h, &secret)?.iter().any(|a| {
                matches!(a, Attribute::PrivateExponent(v) | Attribute::Prime1(v) | Attribute::Value(v) if !v.is_empty())
            });
            Ok(Some(p))
        })?
        .ok_or_else(|| Error::not_found(format!("no private key with id {id_hex} in the token")))
    }
}

/// How a token protects a private key (read back for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyProtection {
    /// CKA_TOKEN: kept on the token (not a session object).
    pub token: bool,
    /// CKA_PRIVATE: usable only after login.
    pub private: bool,
    /// CKA_SENSITIVE: secret attributes are never revealed.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE: could be wrapped out of the token.
    pub extractable: bool,
    /// CKA_SIGN.
    pub sign: bool,
    /// An RSA key (else EC).
    pub rsa: bool,
    /// Whether C_GetAttributeValue offers the secret (CKA_PRIVATE_EXPONENT / CKA_VALUE).
    pub secret_readable: bool,
    /// Whether reading the secret attributes returned any bytes.
    pub secret_values_returned: bool,
}

/// The DER OID of a named curve (CKA_EC_PARAMS).
fn curve_oid_der(alg: KeyAlgorithm) -> &'static [u8] {
    match alg {
        KeyAlgorithm::EcP384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        _ => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    }
}

/// The public key as rcgen's raw bytes: PKCS#1 RSAPublicKey DER, or the uncompressed EC
/// point (CKA_EC_POINT is DER OCTET STRING-wrapped by most tokens, raw by some).
fn read_public(
    s: &Session,
    h: ObjectHandle,
    alg: KeyAlgorithm,
) -> std::result::Result<Result<Vec<u8>>, CkError> {
    if alg.is_rsa() {
        let attrs =
            s.get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
        let (mut n, mut e) = (None, None);
        for a in attrs {
            match a {
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                _ => {}
            }
        }
        let (Some(n), Some(e)) = (n, e) else {
            return Ok(Err(Error::internal(
                "the token did not return the RSA public key",
            )));
        };
        Ok(Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_bigint_bytes(&n, true);
                w.next().write_bigint_bytes(&e, true);
            })
        })))
    } else {
        let point = s
            .get_attributes(h, &[AttributeType::EcPoint])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(v) => Some(v),
                _ => None,
            });
        let Some(point) = point else {
            return Ok(Err(Error::internal(
                "the token did not return the EC point",
            )));
        };
        let raw_len = if alg == KeyAlgorithm::EcP384 { 97 } else { 65 };
        if point.len() == raw_len && point[0] == 0x04 {
            return Ok(Ok(point));
        }
        Ok(yasna::parse_der(&point, |r| r.read_bytes())
            .map_err(|_| Error::internal("the token returned an unreadable EC point")))
    }
}

/// A private key inside the token, with its public half (as rcgen wants it).
pub struct HsmKey {
    hsm: Arc<Hsm>,
    handle: ObjectHandle,
    alg: KeyAlgorithm,
    public_raw: Vec<u8>,
    id_hex: String,
    label: String,
}

impl std::fmt::Debug for HsmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmKey")
            .field("token", &self.hsm.name)
            .field("id", &self.id_hex)
            .field("label", &self.label)
            .finish()
    }
}

impl HsmKey {
    /// CKA_ID, lower-case hex.
    pub fn id_hex(&self) -> &str {
        &self.id_hex
    }

    /// CKA_LABEL.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// rcgen's raw public key bytes.
    pub fn public_raw(&self) -> &[u8] {
        &self.public_raw
    }

    /// The signature algorithm the key makes: RSA PKCS#1 v1.5 with SHA-256, ECDSA with
    /// SHA-256 (P-256) or SHA-384 (P-384), as for database-held keys.
    pub fn signature_algorithm(&self) -> &'static SignatureAlgorithm {
        match self.alg {
            KeyAlgorithm::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Signs `msg` in the token: `CKM_SHA256_RSA_PKCS`, or `CKM_ECDSA` over a digest made
    /// here, its r‖s written as the DER Ecdsa-Sig-Value X.509 wants.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        match self.alg {
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
                let digest_alg = if self.alg == KeyAlgorithm::EcP384 {
                    &aws_lc_rs::digest::SHA384
                } else {
                    &aws_lc_rs::digest::SHA256
                };
                let digest = aws_lc_rs::digest::digest(digest_alg, msg);
                let rs = self.hsm.with_session("signing", |s| {
                    s.sign(&Mechanism::Ecdsa, self.handle, digest.as_ref())
                })?;
                if rs.is_empty() || rs.len() % 2 != 0 {
                    return Err(Error::internal(format!(
                        "the token returned an ECDSA signature of {} bytes",
                        rs.len()
                    )));
                }
                let (r, s) = rs.split_at(rs.len() / 2);
                Ok(yasna::construct_der(|w| {
                    w.write_sequence(|w| {
                        w.next().write_bigint_bytes(r, true);
                        w.next().write_bigint_bytes(s, true);
                    })
                }))
            }
            _ => self.hsm.with_session("signing", |s| {
                s.sign(&Mechanism::Sha256RsaPkcs, self.handle, msg)
            }),
        }
    }
}
