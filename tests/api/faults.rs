//! Storage faults while serving: a full database, a read-only file and folder, connection
//! limits. (A locked store, a full queue and a deleted file are in `audit.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{
    KillOnDrop, db_exec, db_json, metric_value, served_request_ids, spawn_app, spawn_app_with,
    try_send_raw,
};
use crate::shutdown::{binary, kill, serve_in, wait_exit};

const ONE_ROW: &str = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;

fn batch(rows: usize) -> String {
    let row = "[5.1, 3.5, 1.4, 0.2]";
    format!(r#"{{"features": [{}]}}"#, vec![row; rows].join(", "))
}

#[test]
fn full_database_answers_503_until_space_is_freed_and_keeps_every_row() {
    let app = spawn_app_with(|s| s.audit.max_bytes = Some(1 << 20));
    let mut acked = Vec::new();
    for _ in 0..5 {
        let res = app.post_predict(ONE_ROW);
        assert_eq!(res.status, 200, "{}", res.text());
        acked.push(res.header("x-request-id").unwrap().to_string());
    }

    // Something else fills the space the audit store may use (as other files fill a disk):
    // 2 MiB in another table of the same file, past the 1 MiB cap.
    db_exec(
        &app.db_path,
        "create table ballast (b blob); insert into ballast values (zeroblob(2 * 1024 * 1024));",
    );

    // A batch needs new pages: refused, nothing served without its record.
    let res = app.post_predict(&batch(100));
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.error_code(), "audit_unavailable");
    assert!(
        res.text().contains("full"),
        "names the cause: {}",
        res.text()
    );
    let dir = app.dir.path().to_str().unwrap();
    assert!(
        !res.text().contains(dir),
        "no paths to clients: {}",
        res.text()
    );
    let refused = res.header("x-request-id").unwrap().to_string();

    // Not ready, with the reason, and it stays so while the store is full (the writer's probe
    // keeps failing): no traffic needed to tell.
    std::thread::sleep(Duration::from_millis(500));
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503, "{}", ready.text());
    let reason = ready.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("full"), "{reason}");
    let metrics = app.get("/metrics").text();
    assert!(
        metrics.contains("inferlog_audit_store_failing 1"),
        "{metrics}"
    );
    let errors = metric_value(&metrics, "inferlog_audit_write_errors_total");
    assert!(errors >= Some(1.0), "failed commits are counted: {metrics}");

    // The space is freed: the service sees it by itself and serves again.
    db_exec(&app.db_path, "drop table ballast;");
    app.wait_ready(200);
    let res = app.post_predict(&batch(100));
    assert_eq!(res.status, 200, "{}", res.text());
    acked.push(res.header("x-request-id").unwrap().to_string());

    let mut app = app;
    app.stop();
    let stored = served_request_ids(&app.db_path);
    for (i, id) in acked.iter().enumerate() {
        assert!(stored.contains(id), "acknowledged #{i} {id} has no row");
    }
    assert!(
        !stored.contains(&refused),
        "the refused batch was not served"
    );
    let check = db_json(
        &app.db_path,
        "select json_object('ok', integrity_check) from pragma_integrity_check",
    );
    assert_eq!(check[0]["ok"], "ok");
}

/// The binary run through `program args… --` (a wrapper such as `setpriv` or `prlimit`), with
/// the environment [`binary`] gives it.
fn wrapped_binary(program: &str, args: &[&str]) -> Command {
    let plain = binary();
    let mut cmd = Command::new(program);
    cmd.env_clear();
    cmd.args(args).arg("--").arg(plain.get_program());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// The binary, run so that file permissions bind it: as root it would write through them, so
/// it runs without the capabilities that override them (`setpriv`, util-linux).
fn binary_bound_by_permissions() -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return binary();
    }
    wrapped_binary(
        "setpriv",
        &["--bounding-set=-dac_override,-dac_read_search,-fowner"],
    )
}

/// The binary under `prlimit --nofile=SOFT:HARD` (util-linux).
fn binary_with_open_files(soft: u64, hard: u64) -> Command {
    wrapped_binary("prlimit", &[&format!("--nofile={soft}:{hard}")])
}

#[test]
fn the_open_file_limit_is_raised_and_caps_the_connections() {
    // A low soft limit under a higher hard one is raised to the hard limit.
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = serve_in(
        binary_with_open_files(200, 4096),
        dir.path(),
        "raised.log",
        "sqlite://audit.db",
        &[],
    );
    let mut child = KillOnDrop(child);
    crate::helpers::wait_for_line(
        &dir.path().join("raised.log"),
        &["open_files_limit: 4096", "raised_from: 200"],
    );
    kill(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());

    // A hard limit too low for the configured connections lowers the cap, says so, and the
    // server still serves.
    let (child, addr) = serve_in(
        binary_with_open_files(100, 100),
        dir.path(),
        "capped.log",
        "sqlite://audit2.db",
        &[],
    );
    let mut child = KillOnDrop(child);
    let line =
        crate::helpers::wait_for_line(&dir.path().join("capped.log"), &["connection cap lowered"]);
    // (100 files − 64 kept for the store and logs) / (2 descriptors × 2 workers)
    assert!(line.contains("max_connections_per_worker: 9"), "{line}");
    // Three times the 18 connections the cap lets in, held open: the server takes them up to
    // its cap (two descriptors each) and leaves the rest in the backlog, so it never runs out
    // of files (without the cap it would accept until `accept` fails with EMFILE).
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.0.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();
    let held: Vec<TcpStream> = (0..54)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fds() < before + 2 * 18 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server took {} descriptors for 54 connections, expected 36",
            fds().saturating_sub(before)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        fds() <= 100,
        "{} descriptors open under a limit of 100",
        fds()
    );
    let log = std::fs::read_to_string(dir.path().join("capped.log")).unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(held);
    let res = post(&addr, r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#).expect("an answer");
    assert_eq!(res.status, 200);
    kill(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn post(addr: &str, body: &str) -> Option<crate::helpers::Response> {
    let raw = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    try_send_raw(addr, raw.as_bytes())
}

#[test]
fn read_only_database_loses_no_acknowledged_row_and_refuses_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("audit.db");
    let url = "sqlite://data/audit.db";
    let (mut child, addr) = serve_in(binary_bound_by_permissions(), dir.path(), "a.log", url, &[]);

    let mut acked = Vec::new();
    let load = |acked: &mut Vec<String>| {
        for _ in 0..20 {
            let res = post(&addr, ONE_ROW).expect("an answer");
            match res.status {
                200 => acked.push(res.header("x-request-id").unwrap().to_string()),
                503 => assert_eq!(res.error_code(), "audit_unavailable"),
                other => panic!("unexpected {other}: {}", res.text()),
            }
        }
    };
    load(&mut acked);
    assert_eq!(acked.len(), 20);

    // The file and its folder become read-only while serving. SQLite keeps the file open, and
    // permissions are checked when a file is opened, so the open connection goes on writing:
    // what it acknowledges must still be in the file.
    chmod(&db, 0o444);
    chmod(&data, 0o555);
    load(&mut acked);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());

    // A fresh start on the read-only file fails at once, naming it (SQLite would otherwise open
    // it read-only without a word and fail every commit).
    let out = binary_bound_by_permissions()
        .current_dir(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--models", "models"])
        .args(["--database-url", url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a read-only database");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("audit.db") && stderr.contains("not writable"),
        "{stderr}"
    );

    // Writable again: it starts, and every acknowledged row is there.
    chmod(&data, 0o755);
    chmod(&db, 0o644);
    let (mut child, addr) = serve_in(binary_bound_by_permissions(), dir.path(), "b.log", url, &[]);
    assert_eq!(post(&addr, ONE_ROW).unwrap().status, 200);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    let stored = served_request_ids(&db);
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} has no row");
    }
    eprintln!("read-only: {} acknowledged, all stored", acked.len());
}

fn connect_and_ask(addr: &str, keep_alive: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let conn = if keep_alive { "keep-alive" } else { "close" };
    write!(
        s,
        "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads one response head within the stream's timeout, if one comes.
fn answered(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    matches!(s.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
}

#[test]
fn connections_past_the_limit_wait_until_one_closes() {
    let app = spawn_app_with(|s| {
        s.http.max_connections = 2;
        s.http.keep_alive = Duration::from_secs(30);
    });
    let addr = app.addr();
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_and_ask(&addr, true)).collect();
    for s in &mut held {
        assert!(answered(s));
    }
    // A third client: the kernel completes its handshake, but the server does not take it.
    let mut third = connect_and_ask(&addr, false);
    assert!(!answered(&mut third), "served past the connection limit");
    // The held connections close: the waiting client is served. (actix resumes accepting
    // once its count falls back under the limit; the third connection, taken off the backlog
    // when the limit was reached, counts too, so one closed connection is not enough.)
    held.clear();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(answered(&mut third), "not served once a connection closed");
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_timeout() {
    let app = spawn_app_with(|s| s.http.keep_alive = Duration::from_secs(1));
    let mut s = connect_and_ask(&app.addr(), true);
    assert!(answered(&mut s));
    // Idle past the timeout: the server closes the connection (read returns end of stream).
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes: {:?}", &buf[..n]),
        Err(e) => panic!("connection still open after 10 s: {e}"),
    }
}

#[test]
fn a_backup_moved_over_the_live_file_is_served_intact() {
    let app = spawn_app();
    let mut before_backup = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(ONE_ROW);
        assert_eq!(res.status, 200);
        before_backup.push(res.header("x-request-id").unwrap().to_string());
    }
    // A consistent copy, taken while the server runs.
    let backup = app.dir.path().join("backup.db");
    db_exec(&app.db_path, &format!("vacuum into '{}'", backup.display()));
    let mut after_backup = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(&batch(3));
        assert_eq!(res.status, 200);
        after_backup.push(res.header("x-request-id").unwrap().to_string());
    }

    // The operator restores the backup by moving it over the live file. The live file's
    // write-ahead log and shared-memory files stay where they were: replayed into the backup
    // they would mix the two databases' pages.
    std::fs::rename(&backup, &app.db_path).unwrap();
    assert!(db_path_sidecar_exists(&app.db_path, "-wal"));
    let mut after_restore = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(ONE_ROW);
        match res.status {
            200 => after_restore.push(res.header("x-request-id").unwrap().to_string()),
            503 => assert_eq!(res.error_code(), "audit_unavailable"),
            other => panic!("unexpected {other}: {}", res.text()),
        }
    }
    assert!(
        after_restore.len() >= 18,
        "{} of 20 served",
        after_restore.len()
    );

    let mut app = app;
    app.stop();
    let check = db_json(
        &app.db_path,
        "select json_object('ok', integrity_check) from pragma_integrity_check",
    );
    assert_eq!(check[0]["ok"], "ok", "{check:?}");
    let stored = served_request_ids(&app.db_path);
    for id in before_backup.iter().chain(&after_restore) {
        assert!(stored.contains(id), "{id} is not in the restored database");
    }
    for id in &after_backup {
        assert!(
            !stored.contains(id),
            "{id} came from the replaced file's log"
        );
    }
}

fn db_path_sidecar_exists(db: &Path, suffix: &str) -> bool {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    Path::new(&name).exists()
}

#[test]
fn a_starved_wal_is_reported_measured_and_counted_in_the_size_cap() {
    let app = spawn_app_with(|s| s.audit.max_bytes = Some(1 << 20));
    app.post_predict(&batch(10));
    let reader = crate::helpers::StoreLock::read_snapshot(&app.db_path);
    // Writes go on while the reader holds its snapshot: the WAL grows, and with it the store,
    // until the cap (file + WAL) refuses durable batches.
    let mut refused = None;
    for _ in 0..400 {
        let res = app.post_predict(&batch(100));
        if res.status == 503 {
            refused = Some(res);
            break;
        }
        assert_eq!(res.status, 200, "{}", res.text());
        // Paced: writing flat out on a machine loaded by the other tests, the database could
        // pass its own share before the starved checkpoints are logged, and SQLite's page
        // limit, not the WAL's share, would refuse first.
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let refused = refused.expect("the cap was never reached");
    assert_eq!(refused.error_code(), "audit_unavailable");
    assert!(refused.text().contains("full"), "{}", refused.text());
    // It was not SQLite's own page limit: the database's pages are well under the cap; the
    // WAL's frames that could not be checkpointed passed their share (a quarter of it).
    let pages = db_json(
        &app.db_path,
        "select json_object('n', page_count * page_size) from pragma_page_count, pragma_page_size",
    );
    let logical = pages[0]["n"].as_u64().unwrap();
    assert!(logical < 1 << 20, "database of {logical} bytes");
    // The WAL's size is a metric, and the starved checkpoints are named in the log.
    let metrics = app.get("/metrics").text();
    let wal = metric_value(&metrics, "inferlog_audit_wal_bytes").expect("the WAL metric");
    assert!(wal > (1 << 20) as f64 / 4.0, "WAL of {wal} bytes");
    let line = app.wait_for_log_line(&["audit WAL is not being checkpointed"]);
    assert!(line.contains("long read transaction"), "{line}");
    reader.release();
}

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
    let mut sent = 0;
    let mut refused = 0;
    // Until commits fail for the full disk, and then some.
    while refused < 20 && sent < 20_000 {
        let id = format!("disk-{sent}");
        sent += 1;
        match send_batch(&addr, &id) {
            Some(200) => acked.push(id),
            Some(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(refused, 20, "the disk never filled ({sent} batches)");
    // Readiness and predictions agree: not ready, and predictions refused.
    let mut ready_while_full = 0;
    for i in 0..20 {
        if ready_status(&addr) == 200 {
            ready_while_full += 1;
        }
        let id = format!("full-{i}");
        match send_batch(&addr, &id) {
            Some(200) => acked.push(id),
            Some(503) => {}
            other => panic!("unexpected answer {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ready_while_full, 0, "ready while the disk was full");

    // A restart on the full disk starts, and says it is not ready.
    kill(&child.0, "-TERM");
    assert!(wait_exit(&mut child.0).success());
    let (child, addr) = serve("second.log");
    let mut child = KillOnDrop(child);
    let mut restarted_ready = 0;
    for _ in 0..10 {
        if ready_status(&addr) == 200 {
            restarted_ready += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Space is freed: the store recovers without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ready_status(&addr) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready 20 s after space was freed: {}",
            std::fs::read_to_string(outer.path().join("second.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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

    let stored = crate::spill::stored_rows(&db);
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&20),
            "{id}: acknowledged, stored once in full"
        );
    }
    eprintln!(
        "full disk: {} batches acknowledged, {} refused before readiness was checked, 0 lost",
        acked.len(),
        refused
    );
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
    let stored = crate::spill::stored_rows(&db);
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&20),
            "{id}: acknowledged, stored once in full"
        );
    }
}
