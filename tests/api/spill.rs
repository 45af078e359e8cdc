//! The real binary stopping while its audit store fails: shutdown ends within its timeout
//! whatever the store does, acknowledged rows the store cannot take go to the spill file, and
//! the next start (or `inferlog audit replay`) writes them exactly once. And the most an
//! abrupt kill can lose in async mode: the queue's bound in rows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferlog::audit::spill;

use crate::helpers::{StoreLock, db_json, metric_value, try_send_raw, wait_for_line, wait_until};
use crate::shutdown::{binary, kill, serve_binary_in, stdout_of, wait_exit};

/// Sends `body` as request `id`; `Some(status)` if an answer came.
fn send(addr: &str, id: &str, body: &str) -> Option<u16> {
    let raw = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    try_send_raw(addr, raw.as_bytes()).map(|r| r.status)
}

fn batch(rows: usize) -> String {
    format!(
        r#"{{"features": [{}]}}"#,
        vec!["[5.8, 2.7, 5.1, 1.9]"; rows].join(",")
    )
}

/// Rows stored per client request id.
pub(crate) fn stored_rows(db: &Path) -> HashMap<String, i64> {
    db_json(
        db,
        "select json_object('c', client_request_id, 'n', count(*)) from prediction \
         where client_request_id is not null group by client_request_id",
    )
    .iter()
    .map(|v| {
        (
            v["c"].as_str().unwrap().to_string(),
            v["n"].as_i64().unwrap(),
        )
    })
    .collect()
}

fn spilled_rows(file: &Path) -> HashMap<String, i64> {
    let mut rows = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        *rows
            .entry(v["client_request_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    rows
}

const TIMEOUT_S: u64 = 3;

fn args(mode: &'static str) -> Vec<&'static str> {
    args_waiting(mode, "50")
}

/// [`args`] with commits that wait up to `busy_ms` for a lock.
fn args_waiting(mode: &'static str, busy_ms: &'static str) -> Vec<&'static str> {
    vec![
        "--audit-mode",
        mode,
        "--audit-queue-rows",
        "300",
        "--max-batch",
        "10",
        "--shutdown-timeout",
        "3",
        "--audit-busy-timeout-ms",
        busy_ms,
        "--audit-queue-timeout-ms",
        "20",
        "--audit-commit-timeout-ms",
        "500",
    ]
}

/// The store is locked by another process with more than the queue's worth of rows sent;
/// SIGTERM must end the process within its timeout with every acknowledged row in the store
/// or the spill file, and a restart on the recovered store replays the file: every
/// acknowledged row stored exactly once.
fn failing_store_at_shutdown(mode: &'static str, busy_ms: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let spill = dir.path().join("audit.db-spill.jsonl");
    let (mut child, addr) = serve_binary_in(dir.path(), "first.log", &args_waiting(mode, busy_ms));
    // Client id → rows its answer acknowledged (a served batch: 10; a rejection: 1).
    let mut acked: HashMap<String, i64> = HashMap::new();
    for i in 0..5 {
        let id = format!("{mode}-before-{i}");
        assert_eq!(send(&addr, &id, &batch(10)), Some(200));
        acked.insert(id, 10);
    }
    let lock = StoreLock::take(&db);
    send_past_the_queue_while_locked(&addr, mode, &mut acked);

    let took = stop_within_the_timeout(&mut child, mode);
    wait_for_line(
        &dir.path().join("first.log"),
        &["rows written to the spill file", "rows: "],
    );
    lock.release();

    // Every acknowledged row is in the store or in the spill file, not in both.
    let stored = stored_rows(&db);
    let spilled = spilled_rows(&spill);
    assert!(!spilled.is_empty(), "{mode}: nothing spilled");
    for (id, rows) in &acked {
        let (s, p) = (
            stored.get(id).copied().unwrap_or(0),
            spilled.get(id).copied().unwrap_or(0),
        );
        assert_eq!(s + p, *rows, "{mode}: {id}: {s} stored + {p} spilled");
    }

    restart_and_replay_the_spill_file(dir.path(), mode, spilled.values().sum::<i64>());
    let stored = stored_rows(&db);
    for (id, rows) in &acked {
        assert_eq!(
            stored.get(id),
            Some(rows),
            "{mode}: {id} stored once, in full"
        );
    }
    eprintln!(
        "{mode}: {} requests acknowledged ({} rows), {} spilled rows replayed, shutdown in {took:?}",
        acked.len(),
        acked.values().sum::<i64>(),
        spilled.values().sum::<i64>()
    );
}

/// 60 requests, 420 rows, while the store is locked: more than the queue's 300. Rejections
/// first, while the queue has room for their rows (a rejection is answered even when its row
/// finds no room). Some must be refused, and some acknowledged.
fn send_past_the_queue_while_locked(addr: &str, mode: &str, acked: &mut HashMap<String, i64>) {
    let mut refused = 0;
    for i in 0..60 {
        let id = format!("{mode}-locked-{i}");
        let (body, rows) = if i < 20 {
            (r#"{"features": [1, 2]}"#.to_string(), 1)
        } else {
            (batch(10), 10)
        };
        match send(addr, &id, &body) {
            Some(200 | 422) => {
                acked.insert(id, rows);
            }
            Some(503) => refused += 1,
            other => panic!("{mode}: unexpected answer {other:?}"),
        }
    }
    assert!(
        refused > 0,
        "{mode}: the queue never filled or the store never failed"
    );
    let queued: i64 = acked.values().sum::<i64>() - 50;
    assert!(
        queued > 0,
        "{mode}: nothing acknowledged while the store failed"
    );
}

/// SIGTERM, and the process must exit cleanly within its timeout; how long it took.
fn stop_within_the_timeout(child: &mut std::process::Child, mode: &str) -> Duration {
    let signalled = Instant::now();
    kill(child, "-TERM");
    let exit = wait_exit(child);
    let took = signalled.elapsed();
    assert!(exit.success(), "{mode}: exit {exit}");
    assert!(
        took < Duration::from_secs(TIMEOUT_S) + Duration::from_millis(700),
        "{mode}: shutdown took {took:?} with a {TIMEOUT_S} s timeout"
    );
    took
}

/// The store works again: the next start in `dir` replays the spill file's `spilled` rows,
/// removes the file, and stops cleanly.
fn restart_and_replay_the_spill_file(dir: &Path, mode: &'static str, spilled: i64) {
    let (mut child, _addr) = serve_binary_in(dir, "second.log", &args(mode));
    let line = wait_for_line(
        &dir.join("second.log"),
        &["spill file replayed into the audit store"],
    );
    assert!(line.contains(&format!("written: {spilled}")), "{line}");
    assert!(
        !dir.join("audit.db-spill.jsonl").exists(),
        "{mode}: the replayed file is removed"
    );
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
}

#[test]
fn durable_shutdown_with_a_failing_store_spills_and_the_restart_replays() {
    failing_store_at_shutdown("durable", "50");
}

#[test]
fn async_shutdown_with_a_failing_store_spills_and_the_restart_replays() {
    failing_store_at_shutdown("async", "50");
}

/// Commits wait up to 20 s for the lock, far past the 3 s shutdown timeout: the commit in
/// flight when the deadline nears is abandoned in time and its rows spilled.
#[test]
fn async_shutdown_cuts_off_a_commit_waiting_for_a_lock() {
    failing_store_at_shutdown("async", "20000");
}

#[test]
fn durable_shutdown_cuts_off_a_commit_waiting_for_a_lock() {
    failing_store_at_shutdown("durable", "20000");
}

#[test]
fn audit_replay_writes_a_moved_spill_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (mut child, addr) = serve_binary_in(dir.path(), "server.log", &args("async"));
    let lock = StoreLock::take(&db);
    for i in 0..3 {
        assert_eq!(send(&addr, &format!("moved-{i}"), &batch(4)), Some(200));
    }
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    lock.release();
    // The file goes to another machine's store.
    let moved = dir.path().join("moved.jsonl");
    std::fs::rename(dir.path().join("audit.db-spill.jsonl"), &moved).unwrap();
    let other = dir.path().join("other.db");
    let replay = || {
        stdout_of(
            binary()
                .args(["audit", "replay"])
                .arg(&moved)
                .arg("--database-url")
                .arg(&other),
        )
    };
    let first = replay();
    assert!(
        first.contains("replayed 12 rows") && first.contains("12 written"),
        "{first}"
    );
    let again = replay();
    assert!(
        again.contains("0 written, 12 already in the store"),
        "{again}"
    );
    // With --progress, also when stderr is not a terminal: rows done of the file's, the rate.
    let out = binary()
        .args(["audit", "replay", "--progress"])
        .arg(&moved)
        .arg("--database-url")
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("12 of 12 rows replayed, "), "{progress}");
    // And the rebuild of the rollups, counting the rows.
    let out = binary()
        .args(["audit", "rebuild-rollups", "--progress", "--database-url"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 of 12 rows counted, "));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rebuilt the audit rollups from 12 rows in ")
    );
    let stored = stored_rows(&other);
    assert_eq!(stored.len(), 3);
    assert!(stored.values().all(|n| *n == 4), "{stored:?}");
    assert!(moved.exists(), "the CLI leaves the file in place");
    // Without a store named, the replay refuses rather than fill a new ./inferlog.db.
    let out = binary()
        .current_dir(dir.path())
        .args(["audit", "replay"])
        .arg(&moved)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!dir.path().join("inferlog.db").exists());
}

/// Serves in async mode on the store in `dir`, spilling to `spill` (a name in `dir`), while
/// another connection holds the store's write lock; sends `batches` batches of 4 rows as
/// `{prefix}-{i}`, runs `before_stop`, and stops: the rows go to the spill file.
fn spill_batches(
    dir: &Path,
    log: &str,
    spill: &str,
    prefix: &str,
    batches: usize,
    before_stop: impl FnOnce(),
) {
    let mut extra = args("async");
    extra.extend(["--audit-spill-file", spill]);
    let (mut child, addr) = serve_binary_in(dir, log, &extra);
    let lock = StoreLock::take(&dir.join("audit.db"));
    for i in 0..batches {
        assert_eq!(send(&addr, &format!("{prefix}-{i}"), &batch(4)), Some(200));
    }
    before_stop();
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    wait_for_line(&dir.join(log), &["rows written to the spill file"]);
    lock.release();
}

/// An append cut short leaves a torn last line. The next spill starts on a line of its own,
/// and the start after that replays every whole row, keeping the torn bytes in a side file:
/// the torn line costs only its own row.
#[test]
fn a_torn_spill_line_costs_only_its_own_row() {
    let dir = tempfile::tempdir().unwrap();
    spill_batches(dir.path(), "first.log", "first.jsonl", "torn-a", 3, || {});
    // The last line loses its second half and its newline, as a full disk would leave it.
    let text = std::fs::read(dir.path().join("first.jsonl")).unwrap();
    let last_start = text[..text.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let torn_len = (text.len() - last_start) / 2;
    let torn = text[last_start..last_start + torn_len].to_vec();
    assert!(
        String::from_utf8_lossy(&torn).contains("torn-a-2"),
        "the last line is torn-a-2's last row"
    );
    // The torn file is where the next server spills (put there once it has started, so that
    // its start does not replay it first).
    let spill = dir.path().join("audit.db-spill.jsonl");
    spill_batches(
        dir.path(),
        "second.log",
        "audit.db-spill.jsonl",
        "torn-b",
        2,
        || std::fs::write(&spill, &text[..last_start + torn_len]).unwrap(),
    );
    let appended = std::fs::read(&spill).unwrap();
    assert!(
        appended
            .split(|b| *b == b'\n')
            .any(|line| line == torn.as_slice()),
        "the torn bytes stay a line of their own"
    );

    let (mut child, _addr) = serve_binary_in(dir.path(), "third.log", &args("async"));
    let line = wait_for_line(
        &dir.path().join("third.log"),
        &["spill file replayed into the audit store"],
    );
    assert!(line.contains("written: 19"), "{line}");
    let warned = wait_for_line(&dir.path().join("third.log"), &["torn lines"]);
    assert!(
        warned.contains(&format!("torn_bytes: {torn_len}")) && warned.contains("torn_pieces: 1"),
        "{warned}"
    );
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    assert!(!spill.exists());
    let kept = std::fs::read(spill::torn_beside(&spill)).unwrap();
    assert_eq!(kept, [torn.as_slice(), b"\n"].concat());
    // Every row but the torn one, each once.
    let expected: HashMap<String, i64> = [
        ("torn-a-0", 4),
        ("torn-a-1", 4),
        ("torn-a-2", 3),
        ("torn-b-0", 4),
        ("torn-b-1", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(stored_rows(&dir.path().join("audit.db")), expected);
}

/// `inferlog audit replay` on a damaged file: whole rows before and after a torn line, a row
/// an older version appended onto torn bytes, a line of zeros, a line whose bytes changed.
/// Every whole row is written once, the rest is counted and kept in the side file.
#[test]
fn audit_replay_takes_every_whole_row_around_damaged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    spill_batches(dir.path(), "server.log", "spill.jsonl", "damaged", 4, || {});
    let text = std::fs::read_to_string(&spill).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16);
    // 10 whole rows; the 11th torn and the 12th glued onto it; zeros; the 13th changed;
    // then the last three whole, the very last without its newline.
    let torn = &lines[10][..lines[10].len() / 3];
    let changed = lines[12].replacen("damaged-3", "damaged-9", 1);
    let zeros = "\0".repeat(64);
    let damaged = format!(
        "{}\n{torn}{}\n{zeros}\n{changed}\n{}\n{}\n{}",
        lines[..10].join("\n"),
        lines[11],
        lines[13],
        lines[14],
        lines[15]
    );
    let moved = dir.path().join("damaged.jsonl");
    std::fs::write(&moved, &damaged).unwrap();
    let other = dir.path().join("other.db");
    let replay = || {
        stdout_of(
            binary()
                .args(["audit", "replay"])
                .arg(&moved)
                .arg("--database-url")
                .arg(&other),
        )
    };
    let first = replay();
    let torn_bytes = torn.len() + zeros.len() + changed.len();
    assert!(
        first.contains("replayed 14 rows") && first.contains("14 written"),
        "{first}"
    );
    assert!(
        first.contains(&format!("3 torn pieces ({torn_bytes} bytes)")),
        "{first}"
    );
    let side = spill::torn_beside(&moved);
    let kept = format!("{torn}\n{zeros}\n{changed}\n");
    assert_eq!(std::fs::read_to_string(&side).unwrap(), kept);
    let again = replay();
    assert!(again.contains("0 written, 14 already"), "{again}");
    assert_eq!(
        std::fs::read_to_string(&side).unwrap(),
        kept,
        "a second replay writes the same side file"
    );
    assert_eq!(stored_rows(&other).values().sum::<i64>(), 14);
    assert_eq!(
        db_json(
            &other,
            "select json_object('n', count(*)) from prediction where client_request_id = 'damaged-9'"
        )[0]["n"],
        0
    );
}

/// Async mode's bound: a SIGKILL loses at most `INFERLOG_AUDIT_QUEUE_ROWS` acknowledged rows,
/// here under a load of batches with the store stalled so that the queue is full when the
/// kill comes.
#[test]
fn async_sigkill_under_batch_load_loses_at_most_the_queue_bound() {
    const BOUND: i64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (mut child, addr) = serve_binary_in(
        dir.path(),
        "server.log",
        &[
            "--audit-mode",
            "async",
            "--audit-queue-rows",
            "2000",
            "--max-batch",
            "100",
            "--audit-busy-timeout-ms",
            "50",
            "--audit-queue-timeout-ms",
            "20",
        ],
    );
    let acked = Arc::new(Mutex::new(0i64));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (addr, acked, stop) = (addr.clone(), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let body = batch(100);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if send(&addr, &format!("kill-{t}-{i}"), &body) == Some(200) {
                        *acked.lock().unwrap() += 100;
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // The store takes rows before it stalls, so that more than the queue's worth are
    // acknowledged in all.
    let scrape = |name: &str| {
        let raw = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        try_send_raw(&addr, raw)
            .and_then(|res| metric_value(&res.text(), name))
            .unwrap_or(0.0) as i64
    };
    wait_until(
        "rows committed under the load",
        Duration::from_secs(20),
        || scrape("inferlog_audit_rows_written_total") >= 1000,
    );
    // The store stalls: acknowledged rows pile up in the queue until it has no room for
    // another batch, and the clients have had their answers.
    let lock = StoreLock::take(&db);
    wait_until("a full queue", Duration::from_secs(20), || {
        scrape("inferlog_audit_queue_rows") > BOUND - 100 && *acked.lock().unwrap() > BOUND
    });
    kill(&child, "-KILL");
    wait_exit(&mut child);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    lock.release();
    let acked = *acked.lock().unwrap();
    let stored: i64 = stored_rows(&db).values().sum();
    let lost = acked - stored;
    assert!(acked > BOUND, "only {acked} rows acknowledged");
    assert!(
        (0..=BOUND).contains(&lost),
        "{lost} acknowledged rows lost (acknowledged {acked}, stored {stored}); the bound is {BOUND}"
    );
    eprintln!(
        "async SIGKILL under batch load: {acked} rows acknowledged, {lost} lost, bound {BOUND}"
    );
}

/// When the spill file cannot be written either, the rows are not silently gone: a CRIT line
/// gives the count, and each row is in the log in full.
#[test]
fn rows_neither_the_store_nor_the_spill_file_takes_are_logged_loudly() {
    let mut app = crate::helpers::spawn_app_with(|s| {
        s.audit.mode = inferlog::audit::AuditMode::Async;
        s.audit.busy_timeout = Duration::from_millis(50);
        s.http.shutdown_timeout = Duration::from_secs(1);
        s.audit.spill_file = Some("/nonexistent-folder/spill.jsonl".into());
    });
    let lock = StoreLock::take(&app.db_path);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
        assert_eq!(res.status, 200);
        ids.push(res.header("x-request-id").unwrap().to_string());
    }
    app.stop();
    lock.release();
    let log = app.log_text();
    let crit = log
        .lines()
        .find(|l| l.contains("ACKNOWLEDGED AUDIT ROWS NOT SAVED"))
        .unwrap_or_else(|| panic!("no CRIT line in:\n{log}"));
    assert!(crit.contains("CRIT") && crit.contains("rows: 3"), "{crit}");
    for id in &ids {
        assert!(
            log.lines()
                .any(|l| l.contains("unsaved audit row") && l.contains(id.as_str())),
            "{id} is not in the log"
        );
    }
}
