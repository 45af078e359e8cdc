//! Checkpoints of the WAL at a steady pace, off the writer's path, and the rollup merges
//! beside them.

use std::time::Duration;

use anyhow::Context;
use slog::{Logger, warn};

use super::connection;
use super::store::SqliteStore;
use crate::throttle::Throttle;

/// How often committed writes are checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages) after which a checkpoint also makes the WAL start over (48 MiB at 4 KiB
/// pages; see [`SqliteStore::copy_rest_for_restart`]): each start over holds commits back for
/// a few milliseconds, so it is rare, and well below the writer's own fallback (see
/// `WRITER_AUTOCHECKPOINT_PAGES` in [`connection`]).
const RESTART_AFTER_FRAMES: i64 = 12_288;

/// How often rollup deltas are merged (see `migrations/sqlite/0006_rollup.sql`).
const MERGE_EVERY: Duration = Duration::from_secs(1);

/// Aborts a task when dropped: the merge loop stops with the checkpoint task that owns it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checkpoints in a row that copied nothing while frames waited (2 s) before the WAL is
/// reported as starved.
const STARVED_ROUNDS: u32 = 20;

impl SqliteStore {
    /// Checkpoints at a steady pace so that commits never have to (see
    /// `WRITER_AUTOCHECKPOINT_PAGES` in [`connection`]), until the task is aborted. `None`
    /// for a read-only store.
    pub fn spawn_checkpoints(&self, log: Logger) -> Option<tokio::task::JoinHandle<()>> {
        self.write().ok()?;
        let store = self.clone();
        Some(tokio::spawn(async move {
            let mut failing = false;
            // Checkpoints in a row that could not copy anything while frames were waiting.
            let mut stuck_rounds = 0u32;
            let mut last_copied = -1i64;
            let starved_log = Throttle::new(Duration::from_secs(60));
            // Rollup deltas are merged beside the checkpoints, never delaying them.
            let merges = {
                let (store, log) = (store.clone(), log.clone());
                async move {
                    let mut failing = false;
                    loop {
                        tokio::time::sleep(MERGE_EVERY).await;
                        match store.merge_rollups().await {
                            Ok(_) => failing = false,
                            Err(e) if !failing => {
                                failing = true;
                                warn!(log, "merging audit rollups failed; will retry"; "error" => e.detail());
                            }
                            Err(_) => {}
                        }
                    }
                }
            };
            let merges = tokio::spawn(merges);
            let _stop_merges_with_this_task = AbortOnDrop(merges);
            loop {
                tokio::time::sleep(CHECKPOINT_EVERY).await;
                match store.checkpoint().await {
                    Ok((waiting, copied)) => {
                        failing = false;
                        // A reader that holds an old snapshot (a long `sqlite3` session) stops
                        // checkpoints at its mark, and the WAL grows without bound: say so.
                        if copied < waiting && copied == last_copied {
                            stuck_rounds += 1;
                        } else {
                            stuck_rounds = 0;
                        }
                        last_copied = copied;
                        if stuck_rounds >= STARVED_ROUNDS
                            && let Some(held_back) = starved_log.admit()
                        {
                            warn!(log, "audit WAL is not being checkpointed: a long read transaction on the database (for example an open sqlite3 session) holds an old snapshot; use inferlog audit snapshot for long analyses";
                                "wal_bytes" => store.wal_file_bytes(),
                                "frames_waiting" => waiting - copied.max(0),
                                "warnings_not_logged" => held_back);
                        }
                    }
                    // Once per failure streak: the writer reports the store's state itself.
                    Err(e) if !failing => {
                        failing = true;
                        warn!(log, "audit checkpoint failed; will retry"; "error" => format!("{e:#}"));
                    }
                    Err(_) => {}
                }
            }
        }))
    }

    /// Copies committed WAL frames into the database file without waiting for the writer or
    /// readers (a passive checkpoint); returns the frames in the WAL and those copied. With a
    /// size cap and a WAL file past its share (writes are refused meanwhile) whose frames are
    /// all copied, it then starts the WAL over and truncates it, waiting for the connection's
    /// busy timeout at most: a passive checkpoint never shrinks the file, and refused writes
    /// would never start it over.
    async fn checkpoint(&self) -> anyhow::Result<(i64, i64)> {
        let conn = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            .clone();
        let Some(conn) = conn else {
            return Ok((0, 0));
        };
        let mut guard = conn.lock().await?;
        let result: anyhow::Result<(i64, i64)> = async {
            let (_busy, waiting, copied) =
                sqlx::query_as::<_, (i64, i64, i64)>("pragma wal_checkpoint(passive)")
                    .fetch_one(guard.conn())
                    .await
                    .context("checkpointing the audit WAL")?;
            let over = self
                .opts
                .max_bytes
                .is_some_and(|max| self.wal_file_bytes() > connection::wal_share(max));
            if over && copied == waiting {
                sqlx::query("pragma wal_checkpoint(truncate)")
                    .execute(guard.conn())
                    .await
                    .context("truncating the audit WAL")?;
            } else if waiting > RESTART_AFTER_FRAMES && copied == waiting {
                self.copy_rest_for_restart(guard.conn()).await?;
            }
            Ok((waiting, copied))
        }
        .await;
        guard.finish(result).await
    }

    /// Lets the WAL start over at the writer's next commit, instead of growing until that
    /// commit must checkpoint it itself (`wal_autocheckpoint`: SQLite copies every frame not
    /// yet copied and syncs both files inside that commit: 10-20 ms, each time the WAL reaches
    /// its size).
    /// A commit starts the WAL over only if every frame was copied when it began, which a
    /// checkpoint running beside commits never achieves: it copies what was there when it
    /// started while commits add more. So, right after a passive checkpoint, the writer's
    /// connection is held for a second one that copies only the frames committed meanwhile
    /// (milliseconds' worth), and the next commit finds the WAL fully copied.
    async fn copy_rest_for_restart(&self, conn: &mut sqlx::SqliteConnection) -> anyhow::Result<()> {
        // Once more without the lock, so that the one with it has only a few frames to copy.
        sqlx::query("pragma wal_checkpoint(passive)")
            .execute(&mut *conn)
            .await
            .context("checkpointing the audit WAL")?;
        let (writer, _) = self.write()?;
        let no_commit_meanwhile = writer.lock().await?;
        let copied = sqlx::query("pragma wal_checkpoint(passive)")
            .execute(conn)
            .await
            .map(|_| ())
            .context("checkpointing the audit WAL");
        // The writer's connection was not used: it is kept as it was.
        no_commit_meanwhile.finish(Ok(())).await?;
        copied
    }
}
