//! A small tmpfs of its own under the database, filled: readiness follows the commits while
//! the disk is full and the store recovers once space is freed; a size cap that counts the WAL
//! keeps the disk from filling.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::batch;
use crate::helpers::{KillOnDrop, try_send_raw};
use crate::shutdown::{binary, kill, serve_in, wait_exit};

/// A small tmpfs of its own, unmounted when dropped. `None` (with one line saying why) where
/// this process may not mount one; `INFERLOG_TEST_TMPFS=require` (as `.ci/run` sets, running
/// as root) makes that a failure.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        let mounted = out.as_ref().is_ok_and(|o| o.status.success());
        if !mounted {
            let required = std::env::var("INFERLOG_TEST_TMPFS").is_ok_and(|v| v == "require");
            assert!(
                !required,
                "INFERLOG_TEST_TMPFS=require but mount failed: {out:?}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "full-disk test SKIPPED: cannot mount a tmpfs (needs root); .ci/run runs it"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills what is left of the volume at `dir` but `leave` bytes with a ballast file.
fn fill(dir: &Path, leave: u64) -> std::path::PathBuf {
    let ballast = dir.join("ballast");
    let mut f = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    // Written, not only sized: tmpfs counts pages that hold data.
    loop {
        let free = free_bytes(dir);
        if free <= leave + chunk.len() as u64 || f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    ballast
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

fn ready_status(addr: &str) -> u16 {
    try_send_raw(
        addr,
        b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .map_or(0, |r| r.status)
}

/// Sends a batch of 20 rows as `id`; the status, if an answer came.
fn send_batch(addr: &str, id: &str) -> Option<u16> {
    let body = batch(20);
    let raw = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    try_send_raw(addr, raw.as_bytes()).map(|r| r.status)
}

/// The disk under the database fills. Readiness follows the commits: not ready while they
/// fail (never ready while predictions fail), in the running server and after a restart on
/// the full disk; once space is freed the store recovers without a restart. Every
/// acknowledged row is stored once.
#[test]
fn a_full_disk_is_not_ready_and_recovers_when_space_is_freed() {
    let Some(vol) = Tmpfs::mount(24) else {
        return;
    };
    let outer = tempfile::tempdir().unwrap();
    let db = vol.path().join("audit.db");
    let url = format!("sqlite://{}", db.display());
    let serve = |log: &str| serve_in(binary(), outer.path(), log, &url, &[]);
    let (child, addr) = serve("first.log");
    let mut child = KillOnDrop(child);
    let ballast = fill(vol.path(), 2 << 20);
    let mut acked: Vec<String> = Vec::new();
    let refused = send_until_the_full_disk_refuses(&addr, &mut acked);
    // Readiness and predictions agree: not ready, and predictions refused.
    let ready_while_full = ready_answers_while_sending(&addr, &mut acked);
    assert_eq!(ready_while_full, 0, "ready while the disk was full");

    // A restart on the full disk starts, and says it is not ready.
    kill(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());
    let (child, addr) = serve("second.log");
    let mut child = KillOnDrop(child);
    let restarted_ready = ready_answers_of_ten(&addr);

    // Space is freed: the store recovers without a restart.
    std::fs::remove_file(&ballast).unwrap();
    wait_ready_once_space_is_freed(&addr, &outer.path().join("second.log"));
    for i in 0..5 {
        let id = format!("after-{i}");
        assert_eq!(send_batch(&addr, &id), Some(200));
        acked.push(id);
    }
    kill(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());
    assert_eq!(
        restarted_ready, 0,
        "a restart on the full disk said it was ready"
    );

    assert_each_stored_once_in_full(&db, &acked);
    eprintln!(
        "full disk: {} batches acknowledged, {} refused before readiness was checked, 0 lost",
        acked.len(),
        refused
    );
}

/// Sends batches until commits fail for the full disk, and then some: until 20 are refused
/// (which it asserts); how many were refused.
fn send_until_the_full_disk_refuses(addr: &str, acked: &mut Vec<String>) -> usize {
    let mut sent = 0;
    let mut refused = 0;
    while refused < 20 && sent < 20_000 {
        let id = format!("disk-{sent}");
        sent += 1;
        match send_batch(addr, &id) {
            Some(200) => acked.push(id),
            Some(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(refused, 20, "the disk never filled ({sent} batches)");
    refused
}

/// Twenty rounds, 100 ms apart, of a readiness probe and a batch; how many probes said ready.
fn ready_answers_while_sending(addr: &str, acked: &mut Vec<String>) -> usize {
    let mut ready = 0;
    for i in 0..20 {
        if ready_status(addr) == 200 {
            ready += 1;
        }
        let id = format!("full-{i}");
        match send_batch(addr, &id) {
            Some(200) => acked.push(id),
            Some(503) => {}
            other => panic!("unexpected answer {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ready
}

/// Ten readiness probes, 100 ms apart, and no other traffic; how many said ready.
fn ready_answers_of_ten(addr: &str) -> usize {
    let mut ready = 0;
    for _ in 0..10 {
        if ready_status(addr) == 200 {
            ready += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ready
}

/// Waits up to 20 s for readiness after space was freed, showing the server's `log` if it
/// never comes.
fn wait_ready_once_space_is_freed(addr: &str, log: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ready_status(addr) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready 20 s after space was freed: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every acknowledged batch of [`send_batch`] has its 20 rows in the store at `db`, once.
fn assert_each_stored_once_in_full(db: &Path, acked: &[String]) {
    let stored = crate::spill::stored_rows(db);
    for id in acked {
        assert_eq!(
            stored.get(id),
            Some(&20),
            "{id}: acknowledged, stored once in full"
        );
    }
}

/// Bytes the store's files take: the database, its write-ahead log and the WAL index.
fn store_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            std::fs::metadata(p).map_or(0, |m| m.len())
        })
        .sum()
}

/// Sends batches until 20 are refused; the acknowledged ids, and the most the store's files
/// took meanwhile (sampled every tenth batch and at the end).
fn flood_until_refused(addr: &str, db: &Path, tag: &str, acked: &mut Vec<String>) -> u64 {
    let (mut refused, mut sent, mut most) = (0, 0, 0);
    while refused < 20 {
        assert!(sent < 20_000, "{tag}: never refused ({sent} batches)");
        let id = format!("{tag}-{sent}");
        sent += 1;
        match send_batch(addr, &id) {
            Some(200) => acked.push(id),
            Some(503) => refused += 1,
            other => panic!("{tag}: unexpected answer {other:?}"),
        }
        if sent % 10 == 0 {
            most = most.max(store_bytes(db));
        }
    }
    most.max(store_bytes(db))
}

/// `INFERLOG_AUDIT_MAX_MB=8` on a 20 MiB volume, first with a reader that holds an old
/// snapshot (so checkpoints cannot copy the WAL), then until the database itself is full: the
/// database and its WAL stay within the cap together, the disk never fills, predictions are
/// refused with 503 at the cap, writes resume once the reader goes, and every acknowledged row
/// is stored once.
#[test]
fn a_size_cap_counts_the_wal_and_keeps_the_disk_from_filling() {
    let Some(vol) = Tmpfs::mount(20) else {
        return;
    };
    let outer = tempfile::tempdir().unwrap();
    let db = vol.path().join("audit.db");
    let url = format!("sqlite://{}", db.display());
    let cap: u64 = 8 << 20;
    let (child, addr) = serve_in(
        binary(),
        outer.path(),
        "serve.log",
        &url,
        &["--audit-max-mb", "8"],
    );
    let mut child = KillOnDrop(child);
    let mut acked: Vec<String> = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i}");
        assert_eq!(send_batch(&addr, &id), Some(200));
        acked.push(id);
    }
    // A connection in the middle of a read transaction, as a `sqlite3` session left open.
    let reader = crate::helpers::StoreLock::read_snapshot(&db);
    let held = flood_until_refused(&addr, &db, "held", &mut acked);
    let wal_held = std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len());
    // The reader goes: the WAL is copied and started over, and writes resume.
    reader.release();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        let id = format!("resumed-{n}");
        n += 1;
        if send_batch(&addr, &id) == Some(200) {
            acked.push(id);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes never resumed after the reader went"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Now until the database is at its share of the cap.
    let full = flood_until_refused(&addr, &db, "full", &mut acked);
    // (Readiness is not checked here: at the cap, each merge of the rollup deltas frees a few
    // pages, so the store is writable again for a moment and says so. The full-disk test
    // checks readiness against commits.)
    let free = free_bytes(vol.path());
    kill(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());
    let log = std::fs::read_to_string(outer.path().join("serve.log")).unwrap_or_default();
    eprintln!(
        "size cap {cap}: {} batches acknowledged; files at most {held} bytes with a reader \
         (WAL {wal_held}), {full} at the cap; {free} bytes free on the volume",
        acked.len()
    );
    // One batch and the WAL index past the cap, at most.
    let slack = 256 << 10;
    assert!(
        held <= cap + slack,
        "{held} bytes with a reader holding the WAL: {log}"
    );
    assert!(full <= cap + slack, "{full} bytes at the cap: {log}");
    assert!(free > 4 << 20, "the volume filled: {free} bytes free");
    assert!(
        log.contains("limit"),
        "the log names the size cap as the cause"
    );
    assert_each_stored_once_in_full(&db, &acked);
}
