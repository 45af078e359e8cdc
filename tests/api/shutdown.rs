//! The real binary: graceful shutdown on SIGTERM, and start-up failing loudly on a bad model.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::helpers::{db_json, shipped_model, try_send_raw, wait_for_line};

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inferlog"));
    // Keep the developer's or CI's environment (and any .env) out of the child's settings.
    for var in [
        "INFERLOG_BIND",
        "INFERLOG_MODELS",
        "INFERLOG_DEFAULT_MODEL",
        "DATABASE_URL",
        "LOG_FILE",
        "LOG_FORMAT",
        "LOG_LEVEL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn sigterm_lets_in_flight_request_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    let log = dir.path().join("server.log");
    let mut child = binary()
        .current_dir(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--models"])
        .arg(&models)
        .arg("--log-file")
        .arg(&log)
        .args([
            "--database-url",
            "sqlite://audit.db",
            "--log-level",
            "debug",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("binary starts");

    let line = wait_for_line(&log, &["listening", "addr: 127.0.0.1:"]);
    let addr = line
        .split("addr: ")
        .nth(1)
        .unwrap()
        .split([',', ' '])
        .next()
        .unwrap()
        .to_string();

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
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(shipped_model(), models.join("iris.json")).unwrap();
    let log = dir.path().join("server.log");
    let child = binary()
        .current_dir(dir.path())
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
        .args(["--database-url", "sqlite://audit.db"])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("binary starts");
    let line = wait_for_line(&log, &["listening", "addr: 127.0.0.1:"]);
    let addr = line
        .split("addr: ")
        .nth(1)
        .unwrap()
        .split([',', ' '])
        .next()
        .unwrap()
        .to_string();
    Served { child, addr, dir }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
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
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (addr, acked, stop) = (s.addr.clone(), Arc::clone(&acked), Arc::clone(&stop));
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
                    let raw = format!(
                        "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: t{t}-{i}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let Some(res) = try_send_raw(&addr, raw.as_bytes()) else {
                        continue; // refused or reset: the server is going away
                    };
                    if res.status == 200 {
                        acked.lock().unwrap().insert(format!("t{t}-{i}"));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = wait_exit(&mut s.child);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(exit.success(), "{mode}: exit {exit}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "{mode}: only {} requests answered before SIGTERM",
        acked.len()
    );
    let stored: HashSet<String> = db_json(
        &s.dir.path().join("audit.db"),
        "select json_object('r', request_id) from prediction where status = 200",
    )
    .iter()
    .map(|v| v["r"].as_str().unwrap().to_string())
    .collect();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{mode}: {} acknowledged requests without rows: {missing:?}",
        missing.len()
    );
    eprintln!("{mode}: {} requests acknowledged, all audited", acked.len());
}

#[test]
fn sigterm_during_load_loses_nothing_in_durable_mode() {
    sigterm_under_load_loses_nothing("durable");
}

#[test]
fn sigterm_during_load_loses_nothing_in_async_mode() {
    sigterm_under_load_loses_nothing("async");
}
