//! The operator's commands that run beside (or instead of) the server: `vellum backup`,
//! `vellum restore`, `vellum rotate-master-key`. Each reads the same configuration as
//! `vellum serve` and answers with a report for the terminal; the rules are in
//! `ra::backup` and `ra::rotate`.

use std::fmt::Write as _;
use std::path::Path;

use zeroize::Zeroizing;

use ca::keys::MasterKey;
use ra::backup::{Header, Seal, Sealing};
use store::Store;
use vellum_core::config::Config;
use vellum_core::error::{Error, Result};

/// The master key of `config` if there is one (`VELLUM_MASTER_KEY`, else the data dir's
/// `master.key`); never creates one.
fn existing_master(config: &Config) -> Result<Option<MasterKey>> {
    if let Some(text) = config.master_key.as_deref() {
        return Ok(Some(MasterKey::from_text(text)?));
    }
    let path = config.data_dir.join("master.key");
    if !path.exists() {
        return Ok(None);
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .map_err(|e| Error::config(format!("reading {}: {e}", path.display())))?,
    );
    Ok(Some(MasterKey::from_text(&text)?))
}

/// A passphrase from a file (its first line) or given directly.
pub fn passphrase(file: Option<&Path>, given: Option<String>) -> Result<Option<Zeroizing<String>>> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .map_err(|e| Error::config(format!("reading {}: {e}", f.display())))?,
        );
        let line = text.lines().next().unwrap_or_default().to_string();
        return Ok(Some(Zeroizing::new(line)));
    }
    Ok(given.map(Zeroizing::new))
}

fn backend_name(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// `vellum backup --out FILE`: a consistent copy of the live database, encrypted under
/// the master key (or `passphrase`) and checksummed.
pub async fn backup(
    config: &Config,
    out: &Path,
    passphrase: Option<Zeroizing<String>>,
) -> Result<String> {
    let master = existing_master(config)?.ok_or_else(|| {
        Error::config(format!(
            "no master key: {} has no master.key and VELLUM_MASTER_KEY is not set (is this \
             the server's data dir?)",
            config.data_dir.display()
        ))
    })?;
    let url = config.database_url();
    let store = Store::connect(&url, 2).await?;
    ra::backup::check_master_key(&store, &master).await?;
    let seal = match passphrase {
        Some(p) => Seal::Passphrase(p),
        None => Seal::MasterKey,
    };
    let w = ra::backup::backup(&store, &url, &master, out, seal, vellum_core::time::now()).await?;
    let mut r = String::new();
    let _ = writeln!(r, "backup written: {} ({} bytes)", out.display(), w.bytes);
    let _ = writeln!(r, "  database:    {} snapshot", w.header.backend);
    match w.header.sealed_with.as_str() {
        "passphrase" => {
            let _ = writeln!(
                r,
                "  sealed with: the passphrase (the master key {} is inside: the file and the \
                 passphrase alone restore the installation)",
                master.id()
            );
        }
        _ => {
            let _ = writeln!(
                r,
                "  sealed with: master key {} (keep a copy of that key apart from the backup: \
                 restoring needs it)",
                master.id()
            );
        }
    }
    let _ = writeln!(r, "  CRL numbers: up to {}", w.header.max_crl_number);
    Ok(r)
}

/// `vellum restore FILE`: the backup's database into `config`'s empty data dir and
/// database, moved forward so that no CRL number comes again.
pub async fn restore(
    config: &Config,
    file: &Path,
    passphrase: Option<Zeroizing<String>>,
) -> Result<String> {
    let path = file.to_path_buf();
    let header: Header = tokio::task::spawn_blocking(move || ra::backup::read_header(&path))
        .await
        .map_err(Error::internal)??;
    let url = config.database_url();
    if backend_name(&url) != header.backend {
        return Err(Error::invalid(
            "database_url",
            format!(
                "this backup holds a {} database; {url} is {}: restore it into the same kind",
                header.backend,
                backend_name(&url)
            ),
        ));
    }
    vellum_core::fsutil::create_private_dir(&config.data_dir)
        .map_err(|e| Error::config(format!("creating {}: {e}", config.data_dir.display())))?;
    let existing = existing_master(config)?;
    let key = match header.sealed_with.as_str() {
        "passphrase" => {
            let p = passphrase.ok_or_else(|| {
                Error::invalid(
                    "passphrase",
                    "this backup is sealed with a passphrase: give it (--passphrase-file, or \
                     VELLUM_BACKUP_PASSPHRASE)",
                )
            })?;
            if let Some(m) = &existing {
                if m.id() != header.database_master_key_id {
                    return Err(Error::invalid(
                        "master_key",
                        format!(
                            "{} holds master key {}, but this backup's keys are sealed under {}: \
                             restore into a data dir without master.key (the backup brings its \
                             own) or with that key",
                            config.data_dir.display(),
                            m.id(),
                            header.database_master_key_id
                        ),
                    ));
                }
            }
            Unseal::Passphrase(p)
        }
        _ => Unseal::Master(Box::new(existing.clone().ok_or_else(|| {
            Error::invalid(
                "master_key",
                format!(
                    "this backup is sealed under master key {}: put that installation's \
                     master.key in {} or set VELLUM_MASTER_KEY",
                    header.database_master_key_id,
                    config.data_dir.display()
                ),
            )
        })?)),
    };
    // Where the database goes: a new SQLite file, or an empty PostgreSQL database.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (target, sqlite_file) = match header.backend.as_str() {
        "sqlite" => {
            let db = store::backup::sqlite_file(&url)?;
            for p in [db.clone(), db.with_extension("db-wal")] {
                if p.exists() {
                    return Err(Error::invalid(
                        "data_dir",
                        format!(
                            "{} exists: restore into a new data dir (or move the old database \
                             away first)",
                            p.display()
                        ),
                    ));
                }
            }
            (db.with_file_name(format!(".restore-{tag}.db")), Some(db))
        }
        _ => {
            let n = store::backup::pg_table_count(&url).await?;
            if n > 0 {
                return Err(Error::invalid(
                    "database_url",
                    format!(
                        "the PostgreSQL database holds {n} tables: restore into an empty \
                         database (createdb a new one)"
                    ),
                ));
            }
            (config.data_dir.join(format!(".restore-{tag}.pgdump")), None)
        }
    };
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Cleanup(target.clone());
    let (file2, header2, target2) = (file.to_path_buf(), header.clone(), target.clone());
    let unpacked = tokio::task::spawn_blocking(move || {
        let sealing = match &key {
            Unseal::Master(m) => Sealing::Master(m),
            Unseal::Passphrase(p) => Sealing::Passphrase(p),
        };
        ra::backup::unpack(&file2, &header2, sealing, &target2)
    })
    .await
    .map_err(Error::internal)??;
    let master = match (existing, unpacked.master_key) {
        (Some(m), _) => m,
        (None, Some(text)) => {
            let m = MasterKey::from_text(&text)?;
            vellum_core::fsutil::write_private(
                &config.data_dir.join("master.key"),
                format!("{}\n", text.as_str()).as_bytes(),
            )?;
            m
        }
        (None, None) => {
            return Err(Error::invalid(
                "master_key",
                "the backup carries no master key and none was given",
            ))
        }
    };
    match &sqlite_file {
        Some(db) => std::fs::rename(&target, db)
            .map_err(|e| Error::config(format!("writing {}: {e}", db.display())))?,
        None => store::backup::pg_restore(&url, &target).await?,
    }
    let store = Store::connect(&url, 2).await?;
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let done = ra::backup::finish_restore(&store, &master, &header, now_ms).await?;
    let mut r = String::new();
    let _ = writeln!(
        r,
        "restored {} ({} database, {} bytes, taken at Unix time {}) into {}",
        file.display(),
        header.backend,
        unpacked.database_bytes,
        header.created_at,
        match &sqlite_file {
            Some(db) => db.display().to_string(),
            None => "the PostgreSQL database".into(),
        }
    );
    let _ = writeln!(
        r,
        "  CRL numbers: every CA's next CRL is numbered above {} ({} moved up)",
        done.crl_number_floor, done.cas_moved
    );
    let _ = writeln!(r, "  master key:  {}", master.id());
    let _ = writeln!(
        r,
        "  note: what happened after the backup was taken (certificates issued, revocations) \
         is not in it; revoke again what was revoked since"
    );
    Ok(r)
}

enum Unseal {
    Master(Box<MasterKey>),
    Passphrase(Zeroizing<String>),
}

/// `vellum rotate-master-key --new-key-file F`: every stored secret re-sealed under the
/// key in `F` in one transaction, then `F`'s key installed as the data dir's `master.key`.
/// Every server must be stopped.
pub async fn rotate_master_key(
    config: &Config,
    new_key_file: &Path,
    force: bool,
) -> Result<String> {
    let old = existing_master(config)?.ok_or_else(|| {
        Error::config(format!(
            "no master key: {} has no master.key and VELLUM_MASTER_KEY is not set",
            config.data_dir.display()
        ))
    })?;
    let text = Zeroizing::new(
        std::fs::read_to_string(new_key_file)
            .map_err(|e| Error::config(format!("reading {}: {e}", new_key_file.display())))?,
    );
    let new = MasterKey::from_text(&text).map_err(|e| {
        Error::invalid(
            "new_key_file",
            format!(
                "{}: {e} (make one with `openssl rand -hex 32`)",
                new_key_file.display()
            ),
        )
    })?;
    let store = Store::connect(&config.database_url(), 2).await?;
    let done = ra::rotate::rotate(&store, &old, &new, vellum_core::time::now(), force).await?;
    let mut r = String::new();
    if done.already {
        let _ = writeln!(
            r,
            "the database was already sealed under {} (an earlier run committed)",
            new.id()
        );
    } else {
        let _ = writeln!(
            r,
            "re-sealed under master key {} (was {}):",
            new.id(),
            old.id()
        );
        for (col, n) in &done.resealed {
            let _ = writeln!(r, "  {col}: {n}");
        }
    }
    if config.master_key.is_some() {
        let _ = writeln!(
            r,
            "VELLUM_MASTER_KEY (or master_key in the config) gives the key: set it to the \
             contents of {} before starting any server",
            new_key_file.display()
        );
    } else {
        let path = config.data_dir.join("master.key");
        vellum_core::fsutil::write_private(
            &path,
            format!("{}\n", new.to_text().as_str()).as_bytes(),
        )?;
        let _ = writeln!(r, "installed the new key as {}", path.display());
    }
    let _ = writeln!(
        r,
        "backups sealed with the old master key need the old key ({}) to be restored: keep \
         it with them, or make a new backup now",
        old.id()
    );
    Ok(r)
}
