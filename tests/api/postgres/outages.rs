//! PostgreSQL going away under a running server, on a server of its own: restarted under
//! load, no acknowledged row is lost; stopped with no traffic, readiness still says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::helpers::{spawn_app_with, wait_until};
use crate::pg::PgServer;

/// PostgreSQL restarted under load (a fast shutdown: every connection cut): durable requests
/// answer 503 while it is gone, readiness says so, the pool reconnects by itself, and every
/// acknowledged request is in the table once.
#[test]
fn a_postgres_restart_under_load_loses_no_acknowledged_row() {
    // Its own server: the restart must not disturb the other tests.
    if crate::pg::shared().is_none() {
        return;
    }
    let server = crate::pg::start_server().expect("PostgreSQL");
    let url = server.fresh_database();
    let db_url = url.clone();
    let app = spawn_app_with(move |s| {
        s.database_url = db_url.parse().unwrap();
        s.audit.pg_acquire_timeout = Duration::from_millis(300);
        s.audit.commit_timeout = Duration::from_secs(2);
        // Two writers: both must come back after the restart.
        s.audit.pg_writers = 2;
    });
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let load = load_until_stopped(app.addr(), Arc::clone(&stop), Arc::clone(&seen));
    // The restart comes under load: once requests are being answered.
    wait_until(
        "answers before the restart",
        Duration::from_secs(20),
        || seen.lock().unwrap().0.len() >= 20,
    );
    let before = seen.lock().unwrap().0.len();
    server.restart(Duration::from_millis(1500));
    // Served again without a restart of inferlog.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = seen.lock().unwrap().0.len();
        if now > before + 50 && app.get("/health/ready").status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (acked, refused, odd) = std::mem::take(&mut *seen.lock().unwrap());
    assert!(odd.is_empty(), "answers other than 200 or 503: {odd:?}");
    assert!(refused > 0, "no 503 while PostgreSQL was down");
    assert_stored_once(server, &url, &acked);
    eprintln!(
        "PostgreSQL restart: {} acknowledged, {refused} refused with 503 while it was down, none lost",
        acked.len()
    );
}

/// What a load saw: the ids answered 200, how many were refused with 503, and any other
/// answer (or none).
type Seen = Arc<Mutex<(Vec<String>, usize, Vec<String>)>>;

/// Sends durable predictions named `restart-{n}` to `addr`, one after another, until `stop`.
fn load_until_stopped(addr: String, stop: Arc<AtomicBool>, seen: Seen) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = format!("restart-{i}");
            i += 1;
            let raw = format!(
                "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let status = crate::helpers::try_send_raw(&addr, raw.as_bytes()).map(|r| r.status);
            let mut s = seen.lock().unwrap();
            match status {
                Some(200) => s.0.push(id),
                Some(503) => s.1 += 1,
                other => s.2.push(format!("{id}: {other:?}")),
            }
        }
    })
}

/// Every acknowledged id is stored once among the served rows of `url`'s database.
fn assert_stored_once(server: &PgServer, url: &str, acked: &[String]) {
    let stored = server.psql(
        crate::pg::database_name(url),
        "select client_request_id from prediction where status = 200",
    );
    let stored: std::collections::HashMap<&str, usize> =
        stored.lines().fold(Default::default(), |mut m, id| {
            *m.entry(id).or_default() += 1;
            m
        });
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(stored.values().all(|n| *n == 1), "a row stored twice");
}

/// With no traffic no commit fails, so readiness must ask the server itself: while
/// PostgreSQL is down it answers 503 naming the store, and 200 again once it is back, with
/// no request in between.
#[test]
fn readiness_follows_a_stopped_postgres_without_traffic() {
    use std::time::{Duration, Instant};

    if crate::pg::shared().is_none() {
        return;
    }
    let server = crate::pg::start_server().expect("PostgreSQL");
    let url = server.fresh_database();
    let db_url = url.clone();
    let app = spawn_app_with(move |s| {
        s.database_url = db_url.parse().unwrap();
        s.audit.pg_acquire_timeout = Duration::from_millis(300);
    });
    assert_eq!(app.get("/health/ready").status, 200);
    // The restart runs on this thread: the server's parent-death signal follows the thread
    // that starts it. The probes run beside it.
    let restarted = std::sync::atomic::AtomicBool::new(false);
    let down = std::thread::scope(|scope| {
        let probes = scope.spawn(|| {
            let mut down = Vec::new();
            let began = Instant::now();
            while !restarted.load(std::sync::atomic::Ordering::Relaxed) {
                let res = app.get("/health/ready");
                if res.status == 503 {
                    down.push((began.elapsed(), res.json()["reason"].to_string()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            down
        });
        server.restart(Duration::from_secs(3));
        restarted.store(true, std::sync::atomic::Ordering::Relaxed);
        probes.join().unwrap()
    });
    assert!(
        !down.is_empty(),
        "readiness never said 503 while PostgreSQL was down"
    );
    assert!(
        down.iter()
            .all(|(_, reason)| reason.contains("audit store")),
        "{down:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.get("/health/ready");
        if res.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again after the restart: {}\n{}",
            res.text(),
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "PostgreSQL down 3 s without traffic: first 503 after {:?}, {} probes said 503",
        down[0].0,
        down.len()
    );
}
