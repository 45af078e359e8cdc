//! The spill file: where acknowledged audit rows go when the store cannot take them before the
//! process must exit (a shutdown while the disk is full, the database locked, the file gone).
//!
//! One JSON object per line, keyed by the column names of [`columns::written`], appended and
//! fsynced (the file, and its folder when the file is new) before the writer reports the rows
//! safe. The next start replays the file into the store and removes it; `inferlog audit replay
//! FILE` does the same for a file moved to another machine. Rows are written at most once: the
//! store skips a row whose request id and item it already holds, so a replay interrupted
//! half-way (or run twice) adds each row exactly once.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, Value};

use super::columns::{self, Cell};
use super::modes::RowsDone;
use super::record::{AuditRecord, StoredRecord, format_time};
use super::store::Store;

/// Rows written to the store per transaction when a spill file is replayed.
const REPLAY_BATCH: usize = 4096;

/// The spill file of a store on a database server (PostgreSQL): in the working directory.
pub const DEFAULT_FOR_SERVERS: &str = "inferlog-spill.jsonl";

/// The spill file of a database file: beside it, as `inferlog.db-spill.jsonl`.
pub fn beside(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-spill.jsonl");
    PathBuf::from(name)
}

/// Appends `records` (whose latencies are fixed by now) and makes them durable: the file is
/// fsynced, and its folder too when the file was created, so the rows survive a power loss
/// once this returns.
pub fn append(path: &Path, records: &[AuditRecord]) -> std::io::Result<()> {
    // Writers of one store may spill at once: one append at a time keeps their lines whole.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let existed = path.exists();
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut out = BufWriter::new(file);
    let now = Instant::now();
    for r in records {
        serde_json::to_writer(&mut out, &line(r, now))?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    if !existed && let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One row as a JSON object of its written columns.
fn line(r: &AuditRecord, now: Instant) -> Map<String, Value> {
    columns::written()
        .map(|c| {
            let v = match r.cell(c, now) {
                Cell::Null => Value::Null,
                Cell::Int(v) => Value::from(v),
                Cell::Text(s) => Value::from(s),
                // Stored JSON text is valid JSON; kept as text if it ever were not.
                Cell::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::from(s)),
                Cell::Time(t) => Value::from(format_time(t)),
            };
            (c.name().to_string(), v)
        })
        .collect()
}

/// A line read back as a record to write.
fn record(line: &str) -> anyhow::Result<AuditRecord> {
    let r: StoredRecord = serde_json::from_str(line).context("not an audit row")?;
    r.into_record()
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Rows in the file.
    pub rows: u64,
    /// Rows the store did not hold yet.
    pub inserted: u64,
}

/// Writes every row of the spill file at `path` into `store`, in transactions of
/// [`REPLAY_BATCH`] rows, skipping rows it already holds. The file is left as it is: the
/// caller removes it once it is done with it. A line that is not an audit row stops the
/// replay with its line number (nothing is skipped silently); rows before it stay written.
pub async fn replay(store: &Store, path: &Path, done: RowsDone<'_>) -> anyhow::Result<Replayed> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let mut replayed = Replayed::default();
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    let mut number = 0usize;
    loop {
        let next = lines.next();
        if let Some(line) = next.as_ref() {
            number += 1;
            let line = line
                .as_ref()
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            if !line.trim().is_empty() {
                batch.push(
                    record(line).with_context(|| format!("{} line {number}", path.display()))?,
                );
            }
        }
        if batch.len() >= REPLAY_BATCH || (next.is_none() && !batch.is_empty()) {
            let refs: Vec<&AuditRecord> = batch.iter().collect();
            let written = store
                .import_batch(&refs)
                .await
                .map_err(|f| anyhow::anyhow!("writing spilled rows: {}", f.detail()))?;
            replayed.rows += batch.len() as u64;
            replayed.inserted += written.inserted;
            done(replayed.rows);
            batch.clear();
        }
        if next.is_none() {
            return Ok(replayed);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::audit::record::Latency;

    #[test]
    fn a_row_survives_the_round_trip_through_a_line() {
        let r = AuditRecord {
            request_id: "0192f3a4-5b6c-7d8e-9f01-23456789abcd".into(),
            client_request_id: Some("retry-1".into()),
            item: 3,
            received_at: DateTime::parse_from_rfc3339("2026-11-27T10:00:00.123456Z")
                .unwrap()
                .to_utc(),
            model: Some("iris".into()),
            model_version: Some("v1".into()),
            features: Some("[5.8,2.7,5.1,1.9]".into()),
            prediction: Some(2),
            label: Some("virginica".into()),
            status: 200,
            error_code: None,
            latency: Latency::Answered(61),
            client_addr: Some("127.0.0.1".into()),
            raw_body: Some("line\nbreak \"quoted\"".into()),
            outliers: Some(r#"["petal_width"]"#.into()),
            writer: Some("host-a@2026-11-27T09:00:00Z".into()),
        };
        let text = serde_json::to_string(&line(&r, Instant::now())).unwrap();
        assert!(!text.contains('\n'), "one line: {text}");
        assert_eq!(record(&text).unwrap(), r);
    }

    #[test]
    fn the_spill_file_sits_beside_the_database() {
        assert_eq!(
            beside(Path::new("data/inferlog.db")),
            Path::new("data/inferlog.db-spill.jsonl")
        );
    }
}
