//! The spill file: where acknowledged audit rows go when the store cannot take them before the
//! process must exit (a shutdown while the disk is full, the database locked, the file gone).
//!
//! One JSON object per line, keyed by the column names of [`columns::written`] and closed by a
//! `"check"` field: the first 16 hex digits of the SHA-256 of the line's object without it.
//! Lines are appended and fsynced (the file, and its folder when the file is new) before the
//! writer reports the rows safe. The next start replays the file into the store and removes
//! it; `inferlog audit replay FILE` does the same for a file moved to another machine. Rows
//! are written at most once: the store skips a row whose request id and item it already
//! holds, so a replay interrupted half-way (or run twice) adds each row exactly once.
//!
//! **Torn lines.** An append cut short (a full disk, a crash before the fsync) leaves a line
//! without its end. An append always starts on a line of its own (a newline is written first
//! when the file does not end with one), and a replay takes every line whose check holds (or,
//! for files written before lines carried one, every line that is a whole audit row), so one
//! torn line costs only itself. A line that does not hold is kept, byte for byte, in a side
//! file beside the spill file ([`torn_beside`]) for a person to look at, and counted in the
//! replay's report. Where an older version appended onto a torn line, the whole row that
//! follows the torn bytes on that line is still found and taken.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::backend::Capabilities;
use super::columns::{self, Cell};
use super::modes::RowsDone;
use super::record::{AuditRecord, StoredRecord, format_time};
use super::store::Store;

/// Rows written to the store per transaction when a spill file is replayed.
const REPLAY_BATCH: usize = 4096;

/// The spill file of a store on a database server (PostgreSQL): in the working directory.
pub const DEFAULT_FOR_SERVERS: &str = "inferlog-spill.jsonl";

/// Where a store's spill file goes unless the operator names one: beside its database file,
/// in the working directory for a database server, none for an in-memory database.
pub fn default_path(store: &Capabilities) -> Option<PathBuf> {
    match &store.file {
        Some(file) => Some(beside(file)),
        None if store.on_server => Some(DEFAULT_FOR_SERVERS.into()),
        None => None,
    }
}

/// The spill file of a database file: beside it, as `inferlog.db-spill.jsonl`.
pub fn beside(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-spill.jsonl");
    PathBuf::from(name)
}

/// Where a replay keeps the lines of the spill file at `spill` that it could not take:
/// `inferlog.db-spill.jsonl.torn` beside it.
pub fn torn_beside(spill: &Path) -> PathBuf {
    let mut name = spill.as_os_str().to_owned();
    name.push(".torn");
    PathBuf::from(name)
}

/// What closes every line: `,"check":"` 16 hex digits `"}`.
const CHECK_OPEN: &[u8] = b",\"check\":\"";
const CHECK_HEX: usize = 16;
const CHECK_LEN: usize = CHECK_OPEN.len() + CHECK_HEX + 2;

/// The check of a line's object: the first [`CHECK_HEX`] hex digits of its SHA-256.
fn check_of(object: &[u8]) -> String {
    let digest = Sha256::digest(object);
    digest[..CHECK_HEX / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `object` (a serialised JSON object) as a spill line with its check, newline included.
fn framed(object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(object.len() + CHECK_LEN + 1);
    out.extend_from_slice(&object[..object.len() - 1]);
    out.extend_from_slice(CHECK_OPEN);
    out.extend_from_slice(check_of(object).as_bytes());
    out.extend_from_slice(b"\"}\n");
    out
}

/// Whether the file ends in the middle of a line (an append that was cut short).
fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Appends `records` (whose latencies are fixed by now) and makes them durable: the file is
/// fsynced, and its folder too when the file was created, so the rows survive a power loss
/// once this returns.
pub fn append(path: &Path, records: &[AuditRecord]) -> std::io::Result<()> {
    // Writers of one store may spill at once: one append at a time keeps their lines whole.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    // A torn line at the end stays a line of its own: these rows start on the next.
    let torn_tail = ends_mid_line(&mut file)?;
    let mut out = BufWriter::new(file);
    if torn_tail {
        out.write_all(b"\n")?;
    }
    let now = Instant::now();
    for r in records {
        out.write_all(&framed(&serde_json::to_vec(&line(r, now))?))?;
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
                Cell::Float(v) => Value::from(v),
                Cell::Text(s) => Value::from(s),
                // Stored JSON text is valid JSON; kept as text if it ever were not.
                Cell::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::from(s)),
                Cell::Numbers(v) => Value::from(v),
                Cell::Time(t) => Value::from(format_time(t)),
            };
            (c.name().to_string(), v)
        })
        .collect()
}

/// A whole row in `line` (without its newline): a line whose check holds, or a line without
/// a check that is an audit row all the same (files from before lines carried one).
fn row_of(line: &[u8]) -> Option<AuditRecord> {
    let object = match checked_object(line) {
        Some(Ok(object)) => object,
        // A check that does not hold: the line is not what was written.
        Some(Err(())) => return None,
        None => line.to_vec(),
    };
    let r: StoredRecord = serde_json::from_slice(&object).ok()?;
    r.into_record().ok()
}

/// The object a line with a check holds, once the check is verified; `None` for a line
/// without one.
fn checked_object(line: &[u8]) -> Option<Result<Vec<u8>, ()>> {
    let at = line.len().checked_sub(CHECK_LEN)?;
    let (object, tail) = line.split_at(at);
    let hex = tail.strip_prefix(CHECK_OPEN)?.strip_suffix(b"\"}")?;
    if hex.len() != CHECK_HEX || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut object = object.to_vec();
    object.push(b'}');
    Some(if check_of(&object).as_bytes() == hex {
        Ok(object)
    } else {
        Err(())
    })
}

/// What one line of a spill file holds: its row, or the bytes that are not one and, where
/// an append went on after them on the same line, the row that follows them.
fn split_line(line: &[u8]) -> (Option<&[u8]>, Option<AuditRecord>) {
    if let Some(r) = row_of(line) {
        return (None, Some(r));
    }
    // Outside strings `{"` only opens a row (its values hold no objects, and a quote inside a
    // string is escaped), so a row written onto torn bytes starts at one of these.
    let starts = line
        .windows(2)
        .enumerate()
        .skip(1)
        .filter(|(_, w)| w == b"{\"")
        .map(|(at, _)| at);
    for at in starts {
        if let Some(r) = row_of(&line[at..]) {
            return (Some(&line[..at]), Some(r));
        }
    }
    (Some(line), None)
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Rows in the file.
    pub rows: u64,
    /// Rows the store did not hold yet.
    pub inserted: u64,
    /// Pieces of lines that were not whole rows (torn appends, damaged lines), and their bytes.
    pub torn_pieces: u64,
    pub torn_bytes: u64,
    /// Where those pieces were kept, when there were any.
    pub torn_file: Option<PathBuf>,
}

/// Where the torn pieces of a replay go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornFile {
    /// Added to what the side file holds: the spill file is removed after the replay, and
    /// pieces of earlier replays stay.
    Append,
    /// The side file is written anew: the spill file stays, and replaying it again gives the
    /// same side file.
    Replace,
}

/// The side file, opened when the first torn piece comes.
struct TornOut {
    path: PathBuf,
    how: TornFile,
    file: Option<BufWriter<File>>,
}

impl TornOut {
    fn keep(&mut self, piece: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let mut open = OpenOptions::new();
            match self.how {
                TornFile::Append => open.append(true),
                TornFile::Replace => open.write(true).truncate(true),
            };
            self.file = Some(BufWriter::new(open.create(true).open(&self.path)?));
        }
        let out = self.file.as_mut().expect("opened above");
        out.write_all(piece)?;
        out.write_all(b"\n")
    }

    /// Makes the kept pieces durable before the spill file may be removed.
    fn finish(self) -> std::io::Result<Option<PathBuf>> {
        let Some(out) = self.file else {
            return Ok(None);
        };
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(Some(self.path))
    }
}

/// Writes every row of the spill file at `path` into `store`, in transactions of
/// [`REPLAY_BATCH`] rows, skipping rows it already holds. Lines that are not whole rows are
/// skipped, counted and kept in the side file ([`torn_beside`]), made durable before this
/// returns. The spill file is left as it is: the caller removes it once it is done with it.
pub async fn replay(
    store: &Store,
    path: &Path,
    torn: TornFile,
    done: RowsDone<'_>,
) -> anyhow::Result<Replayed> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut input = BufReader::new(file);
    let mut torn_out = TornOut {
        path: torn_beside(path),
        how: torn,
        file: None,
    };
    let mut replayed = Replayed::default();
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        let ended = read == 0;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            let (piece, row) = split_line(&line);
            if let Some(piece) = piece {
                replayed.torn_pieces += 1;
                replayed.torn_bytes += piece.len() as u64;
                torn_out.keep(piece).with_context(|| {
                    format!("keeping torn bytes in {}", torn_out.path.display())
                })?;
            }
            batch.extend(row);
        }
        if batch.len() >= REPLAY_BATCH || (ended && !batch.is_empty()) {
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
        if ended {
            let kept = torn_out.path.clone();
            replayed.torn_file = torn_out
                .finish()
                .with_context(|| format!("keeping torn bytes in {}", kept.display()))?;
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
            probabilities: Some("[0.0,0.25,0.75]".into()),
            value: None,
        };
        let object = serde_json::to_vec(&line(&r, Instant::now())).unwrap();
        let framed = framed(&object);
        let (text, end) = framed.split_at(framed.len() - 1);
        assert_eq!(end, b"\n");
        assert!(!text.contains(&b'\n'), "one line");
        assert_eq!(split_line(text), (None, Some(r.clone())));
        // Files from before lines carried a check: the bare object is taken too.
        assert_eq!(split_line(&object), (None, Some(r.clone())));
        // A changed byte, or a cut anywhere, and the line is not taken.
        let changed = String::from_utf8(text.to_vec())
            .unwrap()
            .replace("virginica", "virginicb");
        assert_eq!(row_of(changed.as_bytes()), None);
        for cut in 1..text.len() {
            assert_eq!(row_of(&text[..cut]), None, "cut at {cut}");
        }
        // A row appended onto torn bytes is found behind them.
        let mut glued = text[..40].to_vec();
        glued.extend_from_slice(text);
        assert_eq!(split_line(&glued), (Some(&text[..40]), Some(r)));
    }

    #[test]
    fn the_spill_file_sits_beside_the_database() {
        assert_eq!(
            beside(Path::new("data/inferlog.db")),
            Path::new("data/inferlog.db-spill.jsonl")
        );
    }
}
