//! Master-key rotation (issue 17): every secret sealed under the master key is opened
//! with the old key and sealed under the new one, in one transaction.
//!
//! Run with every server stopped: a running server keeps the old key in memory and
//! could not open what the rotation re-sealed. A live lease (a server's background jobs
//! hold one while it runs) refuses the rotation unless forced.
//!
//! Crash safety: until the transaction commits, the database is sealed under the old key
//! and the old `master.key` still opens it. After the commit the database records the
//! new key's id ([`crate::backup::MASTER_KEY_ID`]); a server started with the old key
//! then refuses to start with a message naming both ids, and running the rotation again
//! with the same new key only installs the key file.

use crate::backup::MASTER_KEY_ID;
use ca::keys::MasterKey;
use store::backup::{live_leases, reseal, sealed_page, SEALED};
use store::Store;
use vellum_core::error::{Error, Result};

/// What a rotation did.
#[derive(Debug, Default)]
pub struct Rotated {
    /// Secrets re-sealed, per `table.column`.
    pub resealed: Vec<(String, u64)>,
    /// The database was already under the new key (an earlier run committed).
    pub already: bool,
}

/// Re-seals every secret of the database from `old` to `new` in one transaction.
pub async fn rotate(
    store: &Store,
    old: &MasterKey,
    new: &MasterKey,
    now: i64,
    force: bool,
) -> Result<Rotated> {
    let mut conn = store.reader().acquire().await?;
    let stored = store::settings::get(&mut conn, MASTER_KEY_ID).await?;
    if stored.as_deref() == Some(new.id().as_str()) {
        return Ok(Rotated {
            already: true,
            ..Default::default()
        });
    }
    if old.id() == new.id() {
        return Err(Error::invalid(
            "new_key_file",
            "holds the master key in use already: generate a new key (e.g. `openssl rand -hex 32`)",
        ));
    }
    if let Some(id) = stored.as_deref().filter(|id| *id != old.id()) {
        return Err(Error::invalid(
            "master_key",
            format!(
                "the database is sealed under master key {id}, not under the current key {} \
                 nor the new one {}",
                old.id(),
                new.id()
            ),
        ));
    }
    let leases = live_leases(&mut conn, now).await?;
    drop(conn);
    if !force {
        if let Some((name, holder, until)) = leases.first() {
            return Err(Error::conflict(format!(
                "a server is using the database (it holds the {name} lease as {holder} until \
                 Unix time {until}): stop every server first. If every one is stopped, wait \
                 {} s for the lease to lapse, or pass --force",
                (until - now).max(0)
            )));
        }
    }
    let mut tx = store.begin().await?;
    let mut out = Rotated::default();
    for col in SEALED {
        let mut after = String::new();
        let mut n = 0u64;
        loop {
            let page = sealed_page(&mut tx, col, &after, 500).await?;
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            for (key, sealed) in &page {
                let ctx = col.context_of(key);
                let plain = old.open(&ctx, sealed).map_err(|_| {
                    Error::invalid(
                        "master_key",
                        format!(
                            "{}.{} of {key} does not open with the current master key {}: \
                             nothing was changed",
                            col.table,
                            col.column,
                            old.id()
                        ),
                    )
                })?;
                reseal(&mut tx, col, key, &new.seal(&ctx, &plain)?).await?;
                n += 1;
            }
            after = last;
        }
        out.resealed
            .push((format!("{}.{}", col.table, col.column), n));
    }
    store::settings::put(&mut tx, MASTER_KEY_ID, &new.id()).await?;
    tx.commit().await?;
    Ok(out)
}
