//! Oldest-first reads on PostgreSQL, where a row appears once every older transaction has
//! ended: reads wait for open transactions and skip nothing, and a tail over two replicas
//! writing to one store sees every row once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, wait_until};

/// Oldest-first reads only hand out rows of transactions older than every one still open, and
/// that horizon is the whole server's: a writing transaction in another database holds it. A
/// read that reaches the end waits for the transactions open when it began
/// (`INFERLOG_PG_CATCH_UP_MS`), so an answered request's row is in the read that follows. A
/// transaction open longer holds the row back from that read only: the cursor it returns
/// picks the row up once the transaction ends, and nothing is skipped.
#[test]
fn oldest_first_reads_wait_for_open_transactions_and_skip_nothing() {
    // Its own server: the transactions held open here would hold back every other test's reads.
    if crate::pg::shared().is_none() {
        return;
    }
    let server = crate::pg::start_server().expect("PostgreSQL");
    let url = server.fresh_database();
    let (a, b) = (url.clone(), url.clone());
    let patient = spawn_app_with(move |s| {
        s.database_url = a.parse().unwrap();
        s.audit.pg_catch_up = Duration::from_secs(20);
    });
    let hasty = spawn_app_with(move |s| {
        s.database_url = b.parse().unwrap();
        s.audit.pg_catch_up = Duration::from_millis(50);
    });
    let ids = |page: &crate::helpers::AuditPage| -> Vec<String> {
        page.records
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect()
    };
    let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;

    // Open while the request is answered; it ends while the read waits: once the read has
    // looked at the horizon (a connection of the app's database is idle after reading the
    // current snapshot), not before.
    let other = server.open_transaction("postgres");
    let first = patient.predict_ok(body);
    let looked = format!(
        "select count(*) from pg_stat_activity where datname = '{}' and state = 'idle' \
         and query like '%pg_current_snapshot%' and query_start > '{}'",
        crate::pg::database_name(&url),
        server.psql("postgres", "select clock_timestamp()").trim()
    );
    let ender = std::thread::spawn(move || {
        wait_until(
            "the read to look at the horizon",
            Duration::from_secs(10),
            || server.psql("postgres", &looked).trim() != "0",
        );
        other.commit();
    });
    let page = patient.audit_page("order=asc");
    ender.join().unwrap();
    assert_eq!(ids(&page), [first.as_str()]);

    // Open longer than the read waits: the row is stored (newest first shows it), held back
    // from the oldest-first read, and the cursor of that read picks it up once it ends.
    let other = server.open_transaction("postgres");
    let second = hasty.predict_ok(body);
    assert_eq!(
        ids(&hasty.audit_page("order=desc")),
        [second.clone(), first.clone()]
    );
    let held = hasty.audit_page("order=asc");
    assert_eq!(ids(&held), [first.as_str()]);
    let cursor = held
        .next_cursor
        .expect("the last page says where to resume");
    other.commit();
    let rest = hasty.audit_page(&format!("order=asc&cursor={cursor}"));
    assert_eq!(ids(&rest), [second]);
    // Everything, exported oldest first.
    let export = patient.get("/audit?format=jsonl&order=asc").text();
    assert_eq!(export.lines().count(), 2, "{export}");
}

/// Two real server binaries on one PostgreSQL database under concurrent load, and a reader
/// tailing `/audit` (oldest first, following `next_cursor`, from either replica in turn) while
/// they write: every acknowledged request is stored once, both replicas answer for all rows,
/// and the tail sees every row exactly once.
#[test]
fn two_replicas_share_one_store_and_a_tail_sees_every_row_once() {
    let Some(url) = crate::pg::database() else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut replicas = Vec::new();
    // The second replica commits with two writers side by side: rows of one replica commit
    // out of id order too.
    for (dir, writers) in dirs.iter().zip(["1", "2"]) {
        let (child, addr) = crate::shutdown::serve_in(
            crate::shutdown::binary(),
            dir.path(),
            "server.log",
            &url,
            &["--pg-writers", writers],
        );
        replicas.push((crate::helpers::KillOnDrop(child), addr));
    }
    let addrs: Vec<String> = replicas.iter().map(|(_, a)| a.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load = load_both_replicas(&addrs, &stop, &acked);
    // The tail, started during the load.
    let (seen, turn) = tail_until_caught_up(&addrs, &url, &stop, &load);
    for h in load {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let rows = assert_every_row_stored_and_tailed_once(&url, &addrs, &acked, &seen);
    for (child, _) in &mut replicas {
        crate::shutdown::kill(&child.0, "-TERM");
        assert!(crate::shutdown::wait_exit(&mut child.0).success());
    }
    eprintln!(
        "two replicas: {} requests acknowledged, {rows} rows, all tailed once in {turn} polls",
        acked.len()
    );
}

/// Requests acknowledged by a replica: the client's id, and how many rows it was answered.
type Acked = Arc<Mutex<Vec<(String, usize)>>>;

/// `GET path` of a replica, which must answer.
fn get(addr: &str, path: &str) -> crate::helpers::Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    crate::helpers::try_send_raw(addr, raw.as_bytes()).expect("an answer")
}

/// Two clients on each replica sending predictions (every fourth a batch of two rows) named
/// `r{replica}-{client}-{n}`, until `stop`.
fn load_both_replicas(
    addrs: &[String],
    stop: &Arc<AtomicBool>,
    acked: &Acked,
) -> Vec<JoinHandle<()>> {
    let mut load = Vec::new();
    for (r, addr) in addrs.iter().enumerate() {
        for t in 0..2 {
            let (addr, stop, acked) = (addr.clone(), Arc::clone(stop), Arc::clone(acked));
            load.push(std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("r{r}-{t}-{i}");
                    i += 1;
                    let body = if i % 4 == 0 {
                        r#"{"features": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]}"#
                    } else {
                        r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#
                    };
                    let raw = format!(
                        "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let res = crate::helpers::try_send_raw(&addr, raw.as_bytes());
                    if res.is_some_and(|r| r.status == 200) {
                        acked.lock().unwrap().push((id, if i % 4 == 0 { 2 } else { 1 }));
                    }
                }
            }));
        }
    }
    load
}

/// Tails `/audit` oldest first, from either replica in turn, while the load runs (stopped
/// after 2.5 s) and until it has every row the table holds; the ids it saw, in order, and how
/// many pages it read.
fn tail_until_caught_up(
    addrs: &[String],
    url: &str,
    stop: &AtomicBool,
    load: &[JoinHandle<()>],
) -> (Vec<i64>, usize) {
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut turn = 0;
    let started = Instant::now();
    loop {
        let loading = started.elapsed() < Duration::from_millis(2500);
        if !loading {
            stop.store(true, Ordering::Relaxed);
        }
        let mut path = "/audit?order=asc&limit=40".to_string();
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let page = get(&addrs[turn % 2], &path).json();
        turn += 1;
        let records = page["records"].as_array().unwrap();
        seen.extend(records.iter().map(|r| r["id"].as_i64().unwrap()));
        cursor = page["next_cursor"].as_str().map(str::to_string);
        assert!(cursor.is_some(), "oldest first, every page has a cursor");
        // Caught up: the load is over and the tail has every row the table holds. (Rows
        // appear to the tail once every older transaction on the server has ended, and other
        // tests share this server.)
        if records.is_empty() && !loading && load.iter().all(|h| h.is_finished()) {
            let total: usize = crate::pg::shared()
                .unwrap()
                .psql(
                    crate::pg::database_name(url),
                    "select count(*) from prediction",
                )
                .trim()
                .parse()
                .unwrap();
            if seen.len() >= total {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the tail never caught up"
        );
    }
    (seen, turn)
}

/// Every acknowledged request, from either replica, is stored once with all its rows; the
/// tail saw every row exactly once; either replica answers for all rows. How many rows.
fn assert_every_row_stored_and_tailed_once(
    url: &str,
    addrs: &[String],
    acked: &[(String, usize)],
    seen: &[i64],
) -> usize {
    let db = crate::pg::database_name(url);
    let server = crate::pg::shared().unwrap();
    let stored: HashMap<String, usize> = server
        .psql(
            db,
            "select client_request_id, count(*) from prediction group by 1",
        )
        .lines()
        .map(|l| {
            let (id, n) = l.split_once('|').unwrap();
            (id.to_string(), n.parse().unwrap())
        })
        .collect();
    assert!(
        acked.len() > 100,
        "only {} requests acknowledged",
        acked.len()
    );
    for (id, rows) in acked {
        assert_eq!(stored.get(id), Some(rows), "{id}");
    }
    // The tail saw every row exactly once.
    let all_ids: HashSet<i64> = server
        .psql(db, "select id from prediction")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let tailed: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(tailed.len(), seen.len(), "the tail saw a row twice");
    assert_eq!(tailed, all_ids, "the tail missed rows");
    // Either replica answers for all rows.
    for addr in addrs {
        let summary = get(addr, "/audit/summary").json();
        assert_eq!(summary["rows"].as_u64().unwrap() as usize, all_ids.len());
    }
    all_ids.len()
}
