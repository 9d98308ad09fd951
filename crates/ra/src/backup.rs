//! Backup files (issue 17): a consistent copy of the database, encrypted and checksummed,
//! and the rules of a restore.
//!
//! # The file
//! ```text
//! "VELLUM-BACKUP 1\n"                      magic line (16 bytes)
//! u32 BE n, n bytes of header JSON         plaintext, authenticated by every chunk
//! chunks: u32 BE m, m bytes                AES-256-GCM of ≤ 1 MiB of the payload each
//! 32 bytes                                 SHA-256 of everything before it
//! ```
//! Chunk `i` is sealed with nonce `prefix ‖ i` (a random 4-byte prefix per file, a 64-bit
//! counter) and associated data `SHA-256(header) ‖ last`, where `last` is 1 on the final
//! chunk only: chunks cannot be reordered, dropped, moved between files, or cut off. The
//! trailing checksum tells a damaged file ("checksum mismatch") from a wrong key, which
//! the header's key id names before anything is decrypted.
//!
//! The payload is a list of entries (`u8` name length, name, `u64` BE length, bytes),
//! ended by a zero name length: `database` (the SQLite file of `VACUUM INTO`, or a
//! `pg_dump --format=custom` archive), and `master.key` in passphrase-sealed files.
//!
//! # Keys
//! Sealed with the master key: the file key is HMAC(master, "vellum backup v1"); the
//! private keys inside the database stay sealed under the master key too, so restoring
//! needs that key. Sealed with a passphrase: the file key is Argon2id(passphrase, salt)
//! and the master key travels inside the encrypted payload, so the file and the
//! passphrase alone rebuild a lost server.

use std::io::{Read, Write};
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use ca::keys::MasterKey;
use store::Store;
use vellum_core::error::{Error, Result};

/// An I/O failure on a backup file, as a domain error.
fn io(e: std::io::Error) -> Error {
    Error::config(format!("backup file: {e}"))
}

const MAGIC: &[u8; 16] = b"VELLUM-BACKUP 1\n";
const CHUNK: usize = 1 << 20;
const TAG: usize = 16;
/// Argon2id cost of passphrase-sealed files: 64 MiB, 3 passes (OWASP's minimum is
/// 19 MiB and 2 passes); a restore pays it once.
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;

/// What the file's header says (readable without any key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Format version (1).
    pub format: u32,
    /// The Vellum version that wrote it.
    pub vellum: String,
    /// `sqlite` or `postgres`: what the `database` entry is.
    pub backend: String,
    /// When the snapshot was taken, Unix seconds.
    pub created_at: i64,
    /// `master-key` or `passphrase`.
    pub sealed_with: String,
    /// Which key opens it: the master key's id, or the passphrase-derived key's.
    pub key_id: String,
    /// Argon2id salt (base64) of a passphrase-sealed file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf_salt: Option<String>,
    /// Argon2id memory (KiB) and passes of a passphrase-sealed file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf_cost: Option<(u32, u32)>,
    /// Random nonce prefix of the chunks (base64, 4 bytes).
    pub nonce_prefix: String,
    /// Whether the payload holds the master key.
    pub master_key_included: bool,
    /// The largest CRL number any CA had used when the snapshot was taken.
    pub max_crl_number: i64,
    /// The master key's id that sealed the private keys inside the database.
    pub database_master_key_id: String,
}

/// How a file is sealed (writing) or opened (reading).
#[derive(Debug, Clone, Copy)]
pub enum Sealing<'a> {
    /// Under the master key.
    Master(&'a MasterKey),
    /// Under a passphrase (the master key is put inside when writing).
    Passphrase(&'a str),
}

struct FileKey {
    key: LessSafeKey,
    id: String,
}

fn file_key(raw: &[u8; 32]) -> Result<FileKey> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).map_err(Error::internal)?);
    let id =
        hex::encode(&Sha256::digest([b"vellum backup key id v1".as_slice(), raw].concat())[..8]);
    Ok(FileKey { key, id })
}

fn master_file_key(master: &MasterKey) -> Result<FileKey> {
    file_key(&master.derive("vellum backup v1"))
}

fn passphrase_key(passphrase: &str, salt: &[u8], cost: (u32, u32)) -> Result<FileKey> {
    let params = Params::new(cost.0, cost.1, 1, Some(32))
        .map_err(|e| Error::invalid("kdf_cost", format!("unusable Argon2 cost: {e}")))?;
    let mut raw = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, raw.as_mut())
        .map_err(|e| Error::internal(format!("deriving the backup key: {e}")))?;
    file_key(&raw)
}

/// A passphrase a backup may be sealed with: 12 characters or more.
pub fn check_passphrase(passphrase: &str) -> Result<()> {
    if passphrase.chars().count() < 12 {
        return Err(Error::invalid(
            "passphrase",
            "must be 12 characters or more (a backup holds every CA key)",
        ));
    }
    Ok(())
}

fn nonce(prefix: &[u8; 4], index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(prefix);
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(header_hash: &[u8], last: bool) -> Vec<u8> {
    let mut a = header_hash.to_vec();
    a.push(u8::from(last));
    a
}

/// Writes the file: the payload's entries sealed in chunks, the checksum after them.
struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    key: LessSafeKey,
    prefix: [u8; 4],
    header_hash: Vec<u8>,
    index: u64,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    fn seal_chunk(&mut self, last: bool) -> Result<()> {
        let mut chunk = std::mem::take(&mut self.buf);
        self.key
            .seal_in_place_append_tag(
                nonce(&self.prefix, self.index),
                Aad::from(aad(&self.header_hash, last)),
                &mut chunk,
            )
            .map_err(|_| Error::internal("sealing a backup chunk failed"))?;
        self.index += 1;
        self.raw(&(chunk.len() as u32).to_be_bytes()).map_err(io)?;
        self.raw(&chunk).map_err(io)?;
        self.buf = Vec::with_capacity(CHUNK);
        Ok(())
    }

    fn payload(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let take = (CHUNK - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == CHUNK {
                self.seal_chunk(false)?;
            }
        }
        Ok(())
    }

    fn entry_from(&mut self, name: &str, len: u64, mut src: impl Read) -> Result<()> {
        self.payload(&[name.len() as u8])?;
        self.payload(name.as_bytes())?;
        self.payload(&len.to_be_bytes())?;
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read(&mut buf[..want]).map_err(io)?;
            if n == 0 {
                return Err(Error::internal(format!(
                    "the {name} entry ended {left} bytes early while it was being written"
                )));
            }
            self.payload(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<W> {
        self.payload(&[0])?;
        self.seal_chunk(true)?;
        let sum = self.hash.clone().finalize();
        self.out.write_all(&sum).map_err(io)?;
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }
}

/// What goes into a file besides the database: everything [`write`] needs.
#[derive(Debug)]
pub struct Contents<'a> {
    /// `sqlite` or `postgres`.
    pub backend: &'a str,
    /// When the snapshot was taken.
    pub created_at: i64,
    /// The installation's largest CRL number at the snapshot.
    pub max_crl_number: i64,
    /// The master key (its id goes into the header; put inside passphrase files).
    pub master: &'a MasterKey,
    /// The snapshot file.
    pub database: &'a Path,
}

/// Writes the backup file `out` (created 0600; must not exist) from the snapshot in
/// `contents`, sealed as `sealing` says. Blocking: call from a blocking thread.
pub fn write(out: &Path, contents: &Contents<'_>, sealing: Sealing<'_>) -> Result<()> {
    let mut salt = [0u8; 16];
    let mut prefix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut prefix);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (key, kdf_salt, kdf_cost, include) = match sealing {
        Sealing::Master(m) => (master_file_key(m)?, None, None, false),
        Sealing::Passphrase(p) => {
            check_passphrase(p)?;
            let cost = (KDF_MEMORY_KIB, KDF_PASSES);
            (
                passphrase_key(p, &salt, cost)?,
                Some(b64.encode(salt)),
                Some(cost),
                true,
            )
        }
    };
    let header = Header {
        format: 1,
        vellum: env!("CARGO_PKG_VERSION").to_string(),
        backend: contents.backend.to_string(),
        created_at: contents.created_at,
        sealed_with: match sealing {
            Sealing::Master(_) => "master-key".into(),
            Sealing::Passphrase(_) => "passphrase".into(),
        },
        key_id: key.id.clone(),
        kdf_salt,
        kdf_cost,
        nonce_prefix: b64.encode(prefix),
        master_key_included: include,
        max_crl_number: contents.max_crl_number,
        database_master_key_id: contents.master.id(),
    };
    let header_json = serde_json::to_vec(&header).map_err(Error::internal)?;
    let file = vellum_core::fsutil::create_private_file(out)
        .map_err(|e| Error::config(format!("creating {}: {e}", out.display())))?;
    let mut w = Writer {
        out: std::io::BufWriter::with_capacity(CHUNK, file),
        hash: Sha256::new(),
        key: key.key,
        prefix,
        header_hash: Sha256::digest(&header_json).to_vec(),
        index: 0,
        buf: Vec::with_capacity(CHUNK),
    };
    w.raw(MAGIC).map_err(io)?;
    w.raw(&(header_json.len() as u32).to_be_bytes())
        .map_err(io)?;
    w.raw(&header_json).map_err(io)?;
    if include {
        let text = contents.master.to_text();
        w.entry_from("master.key", text.len() as u64, text.as_bytes())?;
    }
    let db = std::fs::File::open(contents.database).map_err(|e| {
        Error::config(format!(
            "reading the snapshot {}: {e}",
            contents.database.display()
        ))
    })?;
    let len = db.metadata().map_err(io)?.len();
    w.entry_from("database", len, std::io::BufReader::new(db))?;
    let file = w
        .finish()?
        .into_inner()
        .map_err(|e| Error::config(format!("writing {}: {e}", out.display())))?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Checks the file's checksum and reads its header. A damaged or cut file, or one that
/// is not a Vellum backup, is refused with a message saying so.
pub fn read_header(path: &Path) -> Result<Header> {
    let damaged = |why: &str| {
        Error::invalid(
            "file",
            format!("{} is not a usable Vellum backup: {why}", path.display()),
        )
    };
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::invalid("file", format!("cannot open {}: {e}", path.display())))?;
    let len = f.metadata().map_err(io)?.len();
    let mut magic = [0u8; 16];
    if len < 16 + 4 + 32 || f.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(damaged("it does not start like one (wrong file?)"));
    }
    // The checksum over everything but the last 32 bytes.
    let mut hash = Sha256::new();
    hash.update(magic);
    let mut left = len - 16 - 32;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            return Err(damaged("it is shorter than it was"));
        }
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    let mut sum = [0u8; 32];
    f.read_exact(&mut sum).map_err(io)?;
    if hash.finalize().as_slice() != sum {
        return Err(damaged(
            "checksum mismatch (the file was damaged or cut after it was written)",
        ));
    }
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.read_exact(&mut magic).map_err(io)?;
    let mut n = [0u8; 4];
    f.read_exact(&mut n).map_err(io)?;
    let n = u32::from_be_bytes(n) as u64;
    if n > 64 * 1024 || 16 + 4 + n + 32 > len {
        return Err(damaged("its header is malformed"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|_| damaged("its header is malformed"))?;
    if header.format != 1 {
        return Err(damaged(&format!(
            "it is in format {}, which this Vellum ({}) does not read",
            header.format,
            env!("CARGO_PKG_VERSION")
        )));
    }
    Ok(header)
}

/// What [`unpack`] found besides the database.
#[derive(Debug)]
pub struct Unpacked {
    /// The master key a passphrase-sealed file carries (hex text).
    pub master_key: Option<Zeroizing<String>>,
    /// Bytes of the database written.
    pub database_bytes: u64,
}

/// Opens the file sealed as `header` says with `key` and writes its `database` entry to
/// `database_out` (created 0600; must not exist). A wrong key or passphrase is refused
/// by name before anything is written. Blocking: call from a blocking thread.
pub fn unpack(
    path: &Path,
    header: &Header,
    key: Sealing<'_>,
    database_out: &Path,
) -> Result<Unpacked> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let fk = match (key, header.sealed_with.as_str()) {
        (Sealing::Master(m), "master-key") => master_file_key(m)?,
        (Sealing::Passphrase(p), "passphrase") => {
            let salt = header
                .kdf_salt
                .as_deref()
                .and_then(|s| b64.decode(s).ok())
                .ok_or_else(|| Error::invalid("file", "the backup's header has no usable salt"))?;
            passphrase_key(
                p,
                &salt,
                header.kdf_cost.unwrap_or((KDF_MEMORY_KIB, KDF_PASSES)),
            )?
        }
        (Sealing::Master(_), _) => {
            return Err(Error::invalid(
                "passphrase",
                "this backup is sealed with a passphrase: give it (--passphrase-file, or \
                 VELLUM_BACKUP_PASSPHRASE)",
            ))
        }
        (Sealing::Passphrase(_), _) => {
            return Err(Error::invalid(
                "passphrase",
                "this backup is sealed with the master key, not a passphrase: restore it \
                 with the master key it was made under (master.key in the data dir, or \
                 VELLUM_MASTER_KEY)",
            ))
        }
    };
    if fk.id != header.key_id {
        return Err(match key {
            Sealing::Master(m) => Error::invalid(
                "master_key",
                format!(
                    "wrong master key: this backup was sealed under master key {}, the one \
                     given is {} (put the installation's master.key in the data dir, or \
                     set VELLUM_MASTER_KEY)",
                    header.database_master_key_id,
                    m.id()
                ),
            ),
            Sealing::Passphrase(_) => Error::invalid(
                "passphrase",
                "wrong passphrase: it does not open this backup",
            ),
        });
    }
    let prefix: [u8; 4] = b64
        .decode(&header.nonce_prefix)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::invalid("file", "the backup's header is malformed"))?;
    let mut f = std::io::BufReader::with_capacity(CHUNK, std::fs::File::open(path).map_err(io)?);
    let len = f.get_ref().metadata().map_err(io)?.len();
    let mut skip = [0u8; 16];
    f.read_exact(&mut skip).map_err(io)?;
    let mut n = [0u8; 4];
    f.read_exact(&mut n).map_err(io)?;
    let mut raw_header = vec![0u8; u32::from_be_bytes(n) as usize];
    f.read_exact(&mut raw_header).map_err(io)?;
    // The chunks are authenticated against the header as written.
    let header_hash = Sha256::digest(&raw_header).to_vec();
    let pos = 16 + 4 + raw_header.len() as u64;
    let end = len - 32;
    let mut reader = Chunks {
        f,
        key: fk.key,
        prefix,
        header_hash,
        index: 0,
        pos,
        end,
        plain: Vec::new(),
        at: 0,
        done: false,
    };
    let mut out = Unpacked {
        master_key: None,
        database_bytes: 0,
    };
    loop {
        let name_len = reader.take(1)?[0] as usize;
        if name_len == 0 {
            break;
        }
        let name = String::from_utf8(reader.take(name_len)?.to_vec())
            .map_err(|_| Error::invalid("file", "the backup holds a malformed entry"))?;
        let size = u64::from_be_bytes(reader.take(8)?.try_into().unwrap_or([0; 8]));
        match name.as_str() {
            "master.key" => {
                let text = Zeroizing::new(
                    String::from_utf8(reader.take(size as usize)?.to_vec()).map_err(|_| {
                        Error::invalid("file", "the backup's master key is malformed")
                    })?,
                );
                out.master_key = Some(text);
            }
            "database" => {
                let file = vellum_core::fsutil::create_private_file(database_out).map_err(|e| {
                    Error::config(format!("creating {}: {e}", database_out.display()))
                })?;
                let mut w = std::io::BufWriter::with_capacity(CHUNK, file);
                let mut left = size;
                while left > 0 {
                    let part = reader.take_up_to(left.min(CHUNK as u64) as usize)?;
                    w.write_all(part).map_err(io)?;
                    left -= part.len() as u64;
                }
                let file = w.into_inner().map_err(|e| Error::config(e.to_string()))?;
                file.sync_all().map_err(io)?;
                out.database_bytes = size;
            }
            other => {
                return Err(Error::invalid(
                    "file",
                    format!("the backup holds an entry {other:?} this Vellum does not know"),
                ))
            }
        }
    }
    if reader.at != reader.plain.len() || !reader.done || reader.pos != end {
        return Err(Error::invalid(
            "file",
            "the backup's payload does not end where it should",
        ));
    }
    Ok(out)
}

struct Chunks<R: Read> {
    f: R,
    key: LessSafeKey,
    prefix: [u8; 4],
    header_hash: Vec<u8>,
    index: u64,
    pos: u64,
    end: u64,
    plain: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: Read> Chunks<R> {
    /// Opens the next chunk into `plain`.
    fn fill(&mut self) -> Result<()> {
        let cut = || Error::invalid("file", "the backup's payload is cut short or damaged");
        if self.done || self.pos + 4 > self.end {
            return Err(cut());
        }
        let mut n = [0u8; 4];
        self.f.read_exact(&mut n).map_err(io)?;
        let n = u32::from_be_bytes(n) as u64;
        if n < TAG as u64 || n > (CHUNK + TAG) as u64 || self.pos + 4 + n > self.end {
            return Err(cut());
        }
        let mut chunk = vec![0u8; n as usize];
        self.f.read_exact(&mut chunk).map_err(io)?;
        self.pos += 4 + n;
        let last = self.pos == self.end;
        let plain = self
            .key
            .open_in_place(
                nonce(&self.prefix, self.index),
                Aad::from(aad(&self.header_hash, last)),
                &mut chunk,
            )
            .map_err(|_| cut())?;
        self.plain = plain.to_vec();
        self.at = 0;
        self.index += 1;
        self.done = last;
        Ok(())
    }

    /// Up to `n` (≥ 1) next bytes of the payload.
    fn take_up_to(&mut self, n: usize) -> Result<&[u8]> {
        while self.at == self.plain.len() {
            self.fill()?;
        }
        let k = n.min(self.plain.len() - self.at);
        let s = &self.plain[self.at..self.at + k];
        self.at += k;
        Ok(s)
    }

    /// Exactly `n` next bytes (small reads: names, lengths, the master key).
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let need = n - v.len();
            let part = self.take_up_to(need)?.to_vec();
            v.extend_from_slice(&part);
        }
        Ok(v)
    }
}

/// The smallest CRL number a restore lets any CA use next: above every number in the
/// backup, and at least the restore's time in milliseconds since the epoch. The numbers
/// published between the backup and the restore are not in the backup; Vellum signs a
/// CRL per change of a CA's revocations, far below 1,000 a second, so no installation
/// counts from its previous floor (its creation, or its previous restore) past the time
/// in milliseconds. RFC 5280 allows CRL numbers up to 20 octets; this one needs 6.
pub fn crl_number_floor(header: &Header, now_millis: i64) -> i64 {
    now_millis.max(header.max_crl_number.saturating_add(1))
}

/// The setting that holds the id of the master key the database's secrets are sealed
/// under ([`check_master_key`]).
pub const MASTER_KEY_ID: &str = "master_key_id";

/// Refuses to run with a master key other than the one the database's secrets are
/// sealed under (a wrong `master.key`, or a rotation interrupted before the new key file
/// was installed); records the key's id on first use.
pub async fn check_master_key(store: &Store, master: &MasterKey) -> Result<()> {
    let mut conn = store.reader().acquire().await?;
    let stored = store::settings::get(&mut conn, MASTER_KEY_ID).await?;
    drop(conn);
    match stored {
        Some(id) if id == master.id() => Ok(()),
        Some(id) => Err(Error::config(format!(
            "the database's private keys are sealed under master key {id}, but the master key \
             given (the data dir's master.key, or VELLUM_MASTER_KEY) is {}: use the right key. \
             After an interrupted `vellum rotate-master-key`, run it again with the same \
             --new-key-file",
            master.id()
        ))),
        None => {
            let mut tx = store.begin().await?;
            store::settings::put(&mut tx, MASTER_KEY_ID, &master.id()).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}

/// How a backup is sealed.
#[derive(Debug)]
pub enum Seal {
    /// Under the master key.
    MasterKey,
    /// Under a passphrase (the master key goes inside the file).
    Passphrase(Zeroizing<String>),
}

/// A written backup.
#[derive(Debug)]
pub struct Written {
    /// Its header.
    pub header: Header,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Takes a consistent snapshot of the live database and writes it to the new file
/// `out`, sealed as `seal` says. The snapshot goes through a temporary file beside `out`
/// (0600, removed afterwards); `out` appears only once it is complete.
pub async fn backup(
    store: &Store,
    database_url: &str,
    master: &MasterKey,
    out: &Path,
    seal: Seal,
    now: i64,
) -> Result<Written> {
    if let Seal::Passphrase(p) = &seal {
        check_passphrase(p)?;
    }
    if out.exists() {
        return Err(Error::invalid(
            "out",
            format!(
                "{} exists: choose a new file name (a backup never overwrites a file)",
                out.display()
            ),
        ));
    }
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid("out", "must name a file"))?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let snapshot = out.with_file_name(format!(".{name}.{tag}.snapshot"));
    let partial = out.with_file_name(format!(".{name}.{tag}.partial"));
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _cleanup = Cleanup(vec![snapshot.clone(), partial.clone()]);
    store::backup::snapshot(store, database_url, &snapshot).await?;
    let max_crl_number = {
        let mut conn = store.reader().acquire().await?;
        store::backup::max_crl_number(&mut conn).await?
    };
    let backend = match store.backend() {
        store::Backend::Sqlite => "sqlite",
        store::Backend::Postgres => "postgres",
    };
    let master = master.clone();
    let (snap, part) = (snapshot.clone(), partial.clone());
    tokio::task::spawn_blocking(move || {
        let contents = Contents {
            backend,
            created_at: now,
            max_crl_number,
            master: &master,
            database: &snap,
        };
        let sealing = match &seal {
            Seal::MasterKey => Sealing::Master(&master),
            Seal::Passphrase(p) => Sealing::Passphrase(p),
        };
        write(&part, &contents, sealing)
    })
    .await
    .map_err(Error::internal)??;
    let header = read_header(&partial)?;
    std::fs::rename(&partial, out)
        .map_err(|e| Error::config(format!("writing {}: {e}", out.display())))?;
    let bytes = std::fs::metadata(out).map_err(io)?.len();
    Ok(Written { header, bytes })
}

/// What a restore did to the restored database.
#[derive(Debug)]
pub struct Restored {
    /// Every CA's next CRL number is above this.
    pub crl_number_floor: i64,
    /// How many CAs' CRL numbers were moved up to it.
    pub cas_moved: u64,
}

/// The last steps of a restore, on the restored database: the master key must open its
/// CA keys; CRL numbers move past anything published since the backup
/// ([`crl_number_floor`]); CRLs and OCSP responses are signed afresh; the key's id is
/// recorded.
pub async fn finish_restore(
    store: &Store,
    master: &MasterKey,
    header: &Header,
    now_millis: i64,
) -> Result<Restored> {
    let mut conn = store.reader().acquire().await?;
    let cas = &store::backup::SEALED[0];
    if let Some((id, sealed)) = store::backup::sealed_page(&mut conn, cas, "", 1)
        .await?
        .into_iter()
        .next()
    {
        if master.open(&cas.context_of(&id), &sealed).is_err() {
            return Err(Error::invalid(
                "master_key",
                format!(
                    "the master key {} does not open the CA keys of this backup (they are \
                     sealed under {}): restore with that installation's master key",
                    master.id(),
                    header.database_master_key_id
                ),
            ));
        }
    }
    drop(conn);
    let floor = crl_number_floor(header, now_millis);
    let mut tx = store.begin().await?;
    let cas_moved = store::backup::move_forward_after_restore(&mut tx, floor).await?;
    store::settings::put(&mut tx, MASTER_KEY_ID, &master.id()).await?;
    tx.commit().await?;
    Ok(Restored {
        crl_number_floor: floor,
        cas_moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents<'a>(master: &'a MasterKey, db: &'a Path) -> Contents<'a> {
        Contents {
            backend: "sqlite",
            created_at: 1_800_000_000,
            max_crl_number: 7,
            master,
            database: db,
        }
    }

    #[test]
    fn round_trip_refusals_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("snap.db");
        // More than two chunks, not a multiple of the chunk size.
        let data: Vec<u8> = (0..(2 * CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&db, &data).unwrap();
        let master = MasterKey::from_bytes(&[3u8; 32]).unwrap();
        let other = MasterKey::from_bytes(&[4u8; 32]).unwrap();

        // Under the master key.
        let f = dir.path().join("a.vbk");
        write(&f, &contents(&master, &db), Sealing::Master(&master)).unwrap();
        let raw = std::fs::read(&f).unwrap();
        assert!(
            !raw.windows(64).any(|w| w == &data[..64]),
            "the payload is encrypted"
        );
        let h = read_header(&f).unwrap();
        assert_eq!(
            (h.sealed_with.as_str(), h.max_crl_number),
            ("master-key", 7)
        );
        let out = dir.path().join("a.db");
        let u = unpack(&f, &h, Sealing::Master(&master), &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);
        assert!(u.master_key.is_none());
        let err = unpack(&f, &h, Sealing::Master(&other), &dir.path().join("x.db")).unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");
        assert!(
            !dir.path().join("x.db").exists(),
            "nothing written with a wrong key"
        );
        let err = unpack(&f, &h, Sealing::Passphrase("a long passphrase"), &out).unwrap_err();
        assert!(
            err.to_string().contains("sealed with the master key"),
            "{err}"
        );

        // Damage anywhere is a checksum mismatch; a cut file too.
        for at in [20, raw.len() / 2, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[at] ^= 0x40;
            let g = dir.path().join(format!("bad{at}.vbk"));
            std::fs::write(&g, &bad).unwrap();
            let err = read_header(&g).unwrap_err().to_string();
            assert!(err.contains("checksum mismatch"), "{at}: {err}");
        }
        let g = dir.path().join("cut.vbk");
        std::fs::write(&g, &raw[..raw.len() - 5000]).unwrap();
        assert!(read_header(&g).is_err());
        let g = dir.path().join("other.txt");
        std::fs::write(&g, b"hello, this is not a backup at all, not at all").unwrap();
        assert!(read_header(&g)
            .unwrap_err()
            .to_string()
            .contains("does not start like one"));

        // Under a passphrase: the master key travels inside.
        let f = dir.path().join("p.vbk");
        assert!(write(&f, &contents(&master, &db), Sealing::Passphrase("short")).is_err());
        write(
            &f,
            &contents(&master, &db),
            Sealing::Passphrase("correct horse battery"),
        )
        .unwrap();
        let h = read_header(&f).unwrap();
        let err = unpack(&f, &h, Sealing::Passphrase("wrong horse battery"), &out).unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let out2 = dir.path().join("p.db");
        let u = unpack(&f, &h, Sealing::Passphrase("correct horse battery"), &out2).unwrap();
        assert_eq!(std::fs::read(&out2).unwrap(), data);
        let key = MasterKey::from_text(u.master_key.as_deref().unwrap()).unwrap();
        assert_eq!(key.id(), master.id());
        assert_eq!(h.database_master_key_id, master.id());
    }

    #[test]
    fn the_crl_floor_is_above_the_backup_and_the_clock() {
        let master = MasterKey::from_bytes(&[3u8; 32]).unwrap();
        let mut h = Header {
            format: 1,
            vellum: String::new(),
            backend: "sqlite".into(),
            created_at: 0,
            sealed_with: "master-key".into(),
            key_id: String::new(),
            kdf_salt: None,
            kdf_cost: None,
            nonce_prefix: String::new(),
            master_key_included: false,
            max_crl_number: 41,
            database_master_key_id: master.id(),
        };
        assert_eq!(crl_number_floor(&h, 1_800_000_000_000), 1_800_000_000_000);
        h.max_crl_number = 1_900_000_000_000;
        assert_eq!(crl_number_floor(&h, 1_800_000_000_000), 1_900_000_000_001);
    }
}
