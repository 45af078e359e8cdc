//! Limits on connections: the open-file limit raised or capping them, connections past the
//! limit left waiting, idle keep-alive connections closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::{post, wrapped_binary};
use crate::helpers::{KillOnDrop, spawn_app_with};
use crate::shutdown::{kill, serve_in, wait_exit};

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
