//! The real binary: graceful shutdown on SIGTERM, and start-up failing loudly on a bad model.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::helpers::{
    db_json, served_request_ids, shipped_model, try_send_raw, wait_for_line, wait_until,
};

pub(crate) fn binary() -> Command {
    binary_at(std::path::Path::new(env!("CARGO_BIN_EXE_inferlog")))
}

/// The binary run through another path (a link to it, so the process has another name), with
/// a cleared environment: a developer's or CI's settings (`AUDIT_TOKEN`,
/// `INFERLOG_AUDIT_MODE`, `DATABASE_URL`, …) never reach it; only what finds programs and
/// temporary files is kept. Tests give every setting they mean.
pub(crate) fn binary_at(program: &std::path::Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for var in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

#[test]
fn sigterm_lets_in_flight_request_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_binary_in(dir.path(), "server.log", &["--log-level", "debug"]);
    let log = dir.path().join("server.log");

    // A request whose body is only half sent is in flight when SIGTERM arrives: the server
    // has logged (at debug) that it started before the signal is sent.
    let body = br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: in-flight-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    wait_for_line(&log, &["request started", "in-flight-1"]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_line(&log, &["shutdown signal received", "SIGTERM"]);

    stream.write_all(&body[10..]).unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut raw);
    if raw.is_empty() {
        let exit = wait_exit(&mut child);
        panic!(
            "no answer to the in-flight request (server exit {exit}); server log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let res = crate::helpers::Response::parse(&raw);
    assert_eq!(
        res.status,
        200,
        "in-flight request answered: {}",
        res.text()
    );
    assert_eq!(res.json()["labels"], serde_json::json!(["virginica"]));

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shutdown complete"), "{text}");
    assert!(
        TcpStream::connect(&addr).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn corrupt_artifact_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    std::fs::write(
        models.join("broken.json"),
        b"{\"format_version\": 1, \"name\": ",
    )
    .unwrap();
    let out = binary()
        .current_dir(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--models"])
        .arg(&models)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.json"), "{stderr}");
    assert!(stderr.contains("not a valid model artifact"), "{stderr}");
}

#[test]
fn missing_default_model_stops_start_up_listing_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    let out = binary()
        .current_dir(dir.path())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--default-model",
            "wine",
            "--models",
        ])
        .arg(&models)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"wine\"") && stderr.contains("found: iris"),
        "{stderr}"
    );
}

/// The real binary serving the shipped model from a temporary folder.
struct Served {
    child: std::process::Child,
    addr: String,
    dir: tempfile::TempDir,
}

fn serve_binary(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = serve_binary_in(dir.path(), "server.log", extra);
    Served { child, addr, dir }
}

/// Starts the binary in `dir` (models copied there on first use, database `audit.db`), logging
/// to `log_name`; returns the process and its address.
pub(crate) fn serve_binary_in(
    dir: &std::path::Path,
    log_name: &str,
    extra: &[&str],
) -> (std::process::Child, String) {
    serve_in(binary(), dir, log_name, "sqlite://audit.db", extra)
}

/// Starts `cmd` (the binary, or a wrapper that runs it) as [`serve_binary_in`] does, on the
/// database `db`.
pub(crate) fn serve_in(
    mut cmd: Command,
    dir: &std::path::Path,
    log_name: &str,
    db: &str,
    extra: &[&str],
) -> (std::process::Child, String) {
    let models = dir.join("models");
    if !models.exists() {
        std::fs::create_dir(&models).unwrap();
        std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    }
    let log = dir.join(log_name);
    let child = cmd
        .current_dir(dir)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--models",
        ])
        .arg(&models)
        .arg("--log-file")
        .arg(&log)
        .args(["--database-url", db])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("binary starts");
    // `addr: 127.0.0.1:N` in the term format, `"addr":"127.0.0.1:N"` in JSON lines.
    let line = wait_for_line(&log, &["listening", "127.0.0.1:"]);
    let addr = line
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap();
    (child, format!("127.0.0.1:{addr}"))
}

/// Load from four client threads until `stop` is set (or 20 s pass); request ids are
/// `{prefix}{thread}-{n}`, and those answered 200 are collected.
struct Load {
    acked: Arc<Mutex<HashSet<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str, prefix: &str) -> Load {
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..4)
            .map(|t| {
                let (addr, acked, stop) = (addr.to_string(), Arc::clone(&acked), Arc::clone(&stop));
                let prefix = prefix.to_string();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    for i in 0..5000 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed)
                            || started.elapsed() > Duration::from_secs(20)
                        {
                            break;
                        }
                        let body = if i % 5 == 0 {
                            r#"{"features": [[5.1, 3.5, 1.4, 0.2], [5.8, 2.7, 5.1, 1.9]]}"#
                        } else {
                            r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#
                        };
                        let id = format!("{prefix}{t}-{i}");
                        let raw = format!(
                            "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let Some(res) = try_send_raw(&addr, raw.as_bytes()) else {
                            continue; // refused or reset: the server is going away
                        };
                        if res.status == 200 {
                            acked.lock().unwrap().insert(id);
                        }
                    }
                })
            })
            .collect();
        Load {
            acked,
            stop,
            clients,
        }
    }

    /// Waits until `n` requests have been answered 200 (a loaded machine may take a while).
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.acked.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} requests answered"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> HashSet<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Runs the binary to its end; its standard output, after checking it succeeded.
pub(crate) fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn kill(child: &std::process::Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
}

pub(crate) fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Loads the server from several threads, SIGTERMs it mid-load, and checks that every request
/// answered 200 has its rows after the process exited.
fn sigterm_under_load_loses_nothing(mode: &str) {
    let mut s = serve_binary(&["--audit-mode", mode]);
    let load = Load::start(&s.addr, "t");
    load.wait_for(25);
    // Pacing, not a wait for a state: the signal lands a while into the load, whatever it is
    // doing then (the checks below hold at any point).
    std::thread::sleep(Duration::from_millis(200));
    kill(&s.child, "-TERM");
    let exit = wait_exit(&mut s.child);
    let acked = load.finish();
    assert!(exit.success(), "{mode}: exit {exit}");
    assert!(
        acked.len() > 20,
        "{mode}: only {} requests answered before SIGTERM",
        acked.len()
    );
    let stored = served_request_ids(&s.dir.path().join("audit.db"));
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{mode}: {} acknowledged requests without rows: {missing:?}",
        missing.len()
    );
    eprintln!("{mode}: {} requests acknowledged, all audited", acked.len());
}

/// Durable mode's promise under a crash: the server is SIGKILLed at five points of a load,
/// restarted on the same file each time, and every request it answered 200 has its rows.
#[test]
fn sigkill_at_five_points_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = HashSet::new();
    for (round, after_ms) in [150u64, 600, 300, 900, 450].into_iter().enumerate() {
        let (mut child, addr) = serve_binary_in(
            dir.path(),
            &format!("round{round}.log"),
            &["--audit-mode", "durable"],
        );
        // The restarted server serves at once.
        let first = try_send_raw(
            &addr,
            b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("answers after restart");
        assert_eq!(first.status, 200, "round {round}: {}", first.text());
        let load = Load::start(&addr, &format!("k{round}-"));
        // At least a few answers per round (the total is checked below), then a kill point.
        load.wait_for(12);
        // Time passes on purpose: the kill points are spread over the load's life.
        std::thread::sleep(Duration::from_millis(after_ms));
        kill(&child, "-KILL");
        wait_exit(&mut child);
        let got = load.finish();
        eprintln!(
            "kill point {round} ({after_ms} ms): {} requests acknowledged",
            got.len()
        );
        acked.extend(got);
    }
    let db = dir.path().join("audit.db");
    // Reopening replays the WAL; the file must be consistent and hold every answered request.
    let (mut child, _addr) = serve_binary_in(dir.path(), "final.log", &[]);
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    let check = db_json(
        &db,
        "select json_object('r', integrity_check) from pragma_integrity_check",
    );
    assert_eq!(check[0]["r"], "ok");
    let stored = served_request_ids(&db);
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        acked.len() > 50,
        "only {} requests acknowledged",
        acked.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged requests lost their rows: {missing:?}",
        missing.len(),
        acked.len()
    );
    eprintln!(
        "SIGKILL x5: {} requests acknowledged, {} answered rows stored, none missing",
        acked.len(),
        stored.len()
    );
}

#[test]
fn sigterm_during_load_loses_nothing_in_durable_mode() {
    sigterm_under_load_loses_nothing("durable");
}

#[test]
fn sigterm_during_load_loses_nothing_in_async_mode() {
    sigterm_under_load_loses_nothing("async");
}

/// Reads one HTTP response (head and `Content-Length` body) from a connection that stays open.
fn read_one_response(stream: &mut TcpStream) -> crate::helpers::Response {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return crate::helpers::Response::parse(&buf[..end + 4 + len]);
            }
        }
        let n = stream.read(&mut chunk).expect("a response");
        assert!(n > 0, "connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// After SIGTERM: new connections are refused at once, an idle keep-alive connection is closed
/// at once (while another request is still in flight), the request in flight is answered with
/// `Connection: close`, and the process exits then, long before the keep-alive timeout or the shutdown
/// timeout (before, the listener stayed open, answers kept connections alive, and the drain
/// waited for idle clients up to the shutdown timeout once more).
#[test]
fn sigterm_closes_the_listener_and_keep_alive_connections() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (mut child, addr) = serve_binary_in(
        dir.path(),
        "server.log",
        &[
            "--log-level",
            "debug",
            "--keep-alive-s",
            "60",
            "--shutdown-timeout",
            "20",
        ],
    );
    let body = br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
    let request = |id: &str| {
        format!(
            "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
    };
    // An idle keep-alive client: one request answered, the connection left open.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(request("idle-1").as_bytes()).unwrap();
    idle.write_all(body).unwrap();
    assert_eq!(read_one_response(&mut idle).status, 200);
    // A request in flight: its body half sent.
    let mut busy = TcpStream::connect(&addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    busy.write_all(request("busy-1").as_bytes()).unwrap();
    busy.write_all(&body[..10]).unwrap();
    wait_for_line(&log, &["request started", "busy-1"]);

    let signalled = Instant::now();
    kill(&child, "-TERM");
    wait_for_line(&log, &["shutdown signal received", "SIGTERM"]);
    // New connections are refused while the request is still in flight.
    wait_until(
        "the listener to refuse connections after SIGTERM",
        Duration::from_secs(1),
        || TcpStream::connect(&addr).is_err(),
    );

    // The idle connection is closed at once, while the other request is still in flight: a
    // read sees the end.
    idle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut idle, &mut byte);
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle keep-alive connection stayed open: {read:?}"
    );

    busy.write_all(&body[10..]).unwrap();
    let res = read_one_response(&mut busy);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("connection"),
        Some("close"),
        "the answer asks the client to close"
    );
    assert!(wait_exit(&mut child).success());
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}: it waited for a keep-alive client"
    );
    // Closing the listener on purpose is not an error (actix's accept thread reports it).
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.lines().any(|l| l.contains(" ERRO ")), "{text}");
}

/// A SIGTERM sent the moment the server says it listens drains it (exit 0, "shutdown
/// complete"): the handlers are installed before that line, not when serving begins (a signal
/// in between used to kill the process by its default action; CI caught it under load).
#[test]
fn sigterm_right_after_listening_is_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let log = format!("quick{round}.log");
        let (mut child, _addr) = serve_binary_in(dir.path(), &log, &[]);
        kill(&child, "-TERM");
        let exit = wait_exit(&mut child);
        assert!(exit.success(), "round {round}: {exit:?}");
        wait_for_line(&dir.path().join(&log), &["shutdown complete"]);
    }
}
