//! EST (RFC 7030) rules below the front end: the operations a path may name, what an EST
//! label may be, and how account passwords are hashed.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::Argon2;
use rand::RngCore;
use vellum_core::error::{Error, Result};

/// The EST operations (RFC 7030 §3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET cacerts`.
    CaCerts,
    /// `POST simpleenroll`.
    SimpleEnroll,
    /// `POST simplereenroll`.
    SimpleReenroll,
    /// `GET csrattrs`.
    CsrAttrs,
    /// `POST serverkeygen`.
    ServerKeygen,
    /// `POST fullcmc` (not supported: 501).
    FullCmc,
}

/// Every operation, in RFC order.
pub const OPERATIONS: &[Operation] = &[
    Operation::CaCerts,
    Operation::SimpleEnroll,
    Operation::SimpleReenroll,
    Operation::FullCmc,
    Operation::ServerKeygen,
    Operation::CsrAttrs,
];

impl Operation {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Operation::CaCerts => "cacerts",
            Operation::SimpleEnroll => "simpleenroll",
            Operation::SimpleReenroll => "simplereenroll",
            Operation::CsrAttrs => "csrattrs",
            Operation::ServerKeygen => "serverkeygen",
            Operation::FullCmc => "fullcmc",
        }
    }

    /// The operation named by a path segment.
    pub fn parse(s: &str) -> Option<Operation> {
        OPERATIONS.iter().copied().find(|o| o.name() == s)
    }
}

/// Checks an EST label: a path segment of 1–64 characters `a-z 0-9 - _ .`, not an
/// operation name.
pub fn check_label(label: &str) -> Result<()> {
    if label.is_empty()
        || label.len() > 64
        || !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        || label.starts_with('.')
    {
        return Err(Error::invalid(
            "label",
            "must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.', not starting with '.'",
        ));
    }
    if uuid::Uuid::parse_str(label).is_ok() {
        return Err(Error::invalid(
            "label",
            "must not look like a CA id (the id addresses a CA already)",
        ));
    }
    if Operation::parse(label).is_some() {
        return Err(Error::invalid(
            "label",
            format!("{label:?} is an EST operation name and cannot be a label"),
        ));
    }
    Ok(())
}

/// Hashes a new password (argon2id, default parameters, random salt) as a PHC string.
///
/// The argon2 memory is allocated as for the verification workers ([`argon2_memory`]),
/// so that freeing it gives it back to the system.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt_b64 = SaltString::encode_b64(&salt).map_err(Error::internal)?;
    let argon = Argon2::default();
    let params = argon.params().clone();
    let mut memory = argon2_memory(params.block_count());
    let output = argon2::password_hash::Output::init_with(
        params
            .output_len()
            .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN),
        |out| {
            argon
                .hash_password_into_with_memory(password.as_bytes(), &salt, out, &mut memory[..])
                .map_err(|_| argon2::password_hash::Error::Crypto)
        },
    )
    .map_err(Error::internal)?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::default().ident(),
        version: Some(argon2::Version::default().into()),
        params: argon2::password_hash::ParamsString::try_from(&params).map_err(Error::internal)?,
        salt: Some(salt_b64.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Memory for `blocks` argon2 blocks. The allocation asks for more than 32 MiB (only
/// `blocks` are touched, so only those become resident): glibc serves requests above its
/// largest dynamic mmap threshold with mmap and returns them with munmap, so freeing it
/// really gives the memory back.
pub fn argon2_memory(blocks: usize) -> Vec<argon2::Block> {
    let mut v = Vec::with_capacity(blocks.max(33 * 1024));
    v.resize(blocks, argon2::Block::default());
    v
}
