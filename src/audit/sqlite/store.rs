//! The SQLite store's state: its connections (replaced as a whole when the file is replaced
//! under it), the file's identity checks, the size cap and how failures are classified.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::connection::{self, OwnedConn, Pools, connect};
use super::file_identity::{FileId, FileReplaced, sidecar};
use super::insert;
use crate::audit::fault::{FaultKind, StoreFault};
use crate::audit::modes::StoreOptions;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The connections; replaced as a whole when the database file is deleted or replaced
    /// under a running service (see [`SqliteStore::write_batch`]).
    pub(super) pools: Arc<RwLock<Pools>>,
    /// What the connections open, for a reopen.
    pub(super) connect: Arc<SqliteConnectOptions>,
    pub(super) opts: StoreOptions,
    /// The database file (`None` for in-memory databases).
    pub(super) path: Option<PathBuf>,
    /// Held while the file's identity is checked and the database reopened, so that the
    /// writer and a feedback write never reopen it twice.
    pub(super) reopening: Arc<tokio::sync::Mutex<()>>,
    /// The select list of a whole row: the columns a store opened read-only before its last
    /// migrations lacks (an old file being copied) are read as null.
    pub(super) select: Arc<str>,
    /// The select of a feedback row's true value (`null` in a file from before it was kept).
    pub(super) feedback_value: &'static str,
}

/// The write-ahead log passed its share of the configured size cap.
#[derive(Debug, thiserror::Error)]
#[error("the audit write-ahead log holds {wal} bytes, more than a quarter of the {max}-byte limit")]
struct OverCap {
    wal: u64,
    max: u64,
}

/// The class of a failure, from SQLite's result code where there is one.
pub(super) fn fault(e: anyhow::Error) -> StoreFault {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<sqlx::Error>())
        .and_then(insert::primary_code);
    let kind = if let Some(code) = code {
        match code {
            5 => FaultKind::LockedByOther,
            6 => FaultKind::Locked,
            8 => FaultKind::ReadOnly,
            10 => FaultKind::Io,
            13 => FaultKind::Full,
            9 => FaultKind::ReadTooLong,
            14 => FaultKind::CannotOpen,
            _ => FaultKind::Refused,
        }
    } else if e.chain().any(|c| c.is::<OverCap>()) {
        FaultKind::Full
    } else if e.downcast_ref::<FileReplaced>().is_some()
        || e.chain().any(|c| c.is::<FileReplaced>())
    {
        FaultKind::Replaced
    } else {
        FaultKind::Other
    };
    StoreFault::new(kind, &e)
}

impl SqliteStore {
    /// Merges rollup deltas into the rollups (see `migrations/sqlite/0006_rollup.sql`); the
    /// number merged.
    pub async fn merge_rollups(&self) -> Result<usize, StoreFault> {
        let result: anyhow::Result<usize> = async {
            let (conn, _) = self.write()?;
            let Some(deltas) = insert::fold_oldest_deltas(&self.read()).await? else {
                return Ok(0);
            };
            let mut guard = conn.lock().await?;
            let merged = insert::merge_folded(guard.conn(), self.opts.busy_timeout, deltas).await;
            guard.finish(merged).await
        }
        .await;
        result.map_err(fault)
    }

    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub(super) fn read(&self) -> SqlitePool {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .read
            .clone()
    }

    pub(super) fn write(&self) -> anyhow::Result<(Arc<OwnedConn>, Option<FileId>)> {
        let pools = self.pools.read().unwrap_or_else(|p| p.into_inner());
        let write = pools
            .write
            .clone()
            .context("the audit database was opened read-only")?;
        Ok((write, pools.file))
    }

    /// Makes sure the connections write to the file now at the database path. If it was deleted
    /// or replaced, the old connections (which would keep writing into the unlinked file, lost
    /// at exit) are closed and the database is opened afresh, created and migrated as at
    /// start-up.
    pub(super) async fn ensure_current_file(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _reopening = self.reopening.lock().await;
        let (write, checkpoint, read, opened, wal, shm) = {
            let p = self.pools.read().unwrap_or_else(|p| p.into_inner());
            (
                p.write.clone(),
                p.checkpoint.clone(),
                p.read.clone(),
                p.file,
                p.wal,
                p.shm,
            )
        };
        // A file whose identity could not be read at open cannot be tracked.
        let Some(opened) = opened else {
            return Ok(());
        };
        if !FileId::changed(path, opened) {
            return Ok(());
        }
        if let Some(c) = checkpoint {
            c.close().await;
        }
        if let Some(w) = write {
            w.close().await;
        }
        // SQLite leaves the write-ahead log and shared-memory files of a database that was
        // moved or deleted. Opened beside whatever file is now at the path, that log would be
        // replayed into it and corrupt it. Ours are removed; files that came with the new
        // database are kept.
        for (suffix, ours) in [("-wal", wal), ("-shm", shm)] {
            let f = sidecar(path, suffix);
            if ours.is_some() && FileId::of(&f) == ours {
                let _ = std::fs::remove_file(&f);
            }
        }
        let replaced = |when: String| FileReplaced {
            path: path.display().to_string(),
            when,
        };
        // The cause stays in the chain, so a reopen that fails (read-only folder, locked)
        // is reported as that fault, not as the replacement.
        let fresh = connect(&self.connect, &self.opts)
            .await
            .context(replaced("while serving, and reopening it failed".into()))?;
        *self.pools.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        // Queries went on reading the old file until the new one was in place.
        read.close().await;
        Err(replaced(
            "while serving; a new one was created there and the batch will be written to it".into(),
        )
        .into())
    }

    /// Fails if the database file was replaced since `opened` was read: rows just committed
    /// went into a file that is no longer on record.
    pub(super) fn check_unchanged(&self, opened: Option<FileId>) -> anyhow::Result<()> {
        if let (Some(path), Some(opened)) = (&self.path, opened)
            && FileId::changed(path, opened)
        {
            return Err(FileReplaced {
                path: path.display().to_string(),
                when: "during a commit".into(),
            }
            .into());
        }
        Ok(())
    }

    /// With a size cap: fails once the write-ahead log file is larger than its share of the
    /// cap ([`connection::wal_share`]). The database's page limit keeps it within the rest, so
    /// the store's files stay within the cap (give or take one batch). A WAL past its share is
    /// restarted and truncated by the next checkpoint once no reader holds an old snapshot
    /// (see [`SqliteStore::checkpoint`]).
    pub(super) fn check_size(&self) -> anyhow::Result<()> {
        let Some(max) = self.opts.max_bytes else {
            return Ok(());
        };
        let wal = self.wal_file_bytes();
        if wal > connection::wal_share(max) {
            return Err(OverCap { wal, max }.into());
        }
        Ok(())
    }

    /// Size of the write-ahead log file, in bytes (0 when there is none).
    pub(super) fn wal_file_bytes(&self) -> u64 {
        self.path
            .as_ref()
            .and_then(|p| std::fs::metadata(sidecar(p, "-wal")).ok())
            .map_or(0, |m| m.len())
    }
}
