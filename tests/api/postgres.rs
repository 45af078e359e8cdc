//! The PostgreSQL backend through the real HTTP interface, on a throwaway server
//! ([`crate::pg`]). Skipped, with one line saying so, where PostgreSQL is not installed.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

/// A server on a fresh PostgreSQL database, or `None` when the PostgreSQL tests are skipped.
fn pg_app() -> Option<(TestApp, String)> {
    let url = crate::pg::database()?;
    let db = url.clone();
    Some((
        spawn_app_with(move |s| s.database_url = db.parse().unwrap()),
        url,
    ))
}

#[test]
fn predictions_are_audited_and_read_back_from_postgres() {
    let Some((app, url)) = pg_app() else { return };
    let id = app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let batch = app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]}"#);
    assert_eq!(batch.status, 200);
    assert_eq!(app.post_predict(r#"{"features": [1, 2]}"#).status, 422);
    // Newest first, rows show as soon as they are committed (the rejection's row is queued
    // without waiting for its commit).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut page = app.audit_page("order=desc");
    while page.records.len() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        page = app.audit_page("order=desc");
    }
    assert_eq!(page.records.len(), 4, "{:?}", page.records);
    page.records.reverse();
    let first = &page.records[0];
    assert_eq!(first["request_id"], id.as_str());
    assert_eq!(first["features"], json!([5.8, 2.7, 5.1, 1.9]));
    assert_eq!(first["label"], "virginica");
    assert!(
        first["received_at"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    assert_eq!(page.records[3]["status"], 422);
    assert_eq!(page.records[3]["error_code"], "wrong_feature_count");
    let one = app.get(&format!("/audit/{id}")).json();
    assert_eq!(one["records"].as_array().unwrap().len(), 1);

    let summary = app.get("/audit/summary").json();
    assert_eq!(summary["rows"], 4);
    assert_eq!(summary["requests"], 3);
    assert!(summary["latency_us"]["p50"].as_i64().unwrap() > 0);

    // Exports read the same as from SQLite: compact JSON arrays.
    let csv = app.get("/audit?format=csv").text();
    assert!(csv.contains("\"[5.8,2.7,5.1,1.9]\""), "{csv}");

    // Feedback and performance.
    let fb = app.post_json(
        "/feedback",
        &json!({"request_id": id, "item": 0, "label": "virginica"}).to_string(),
    );
    assert_eq!(fb.status, 201, "{}", fb.text());
    let perf = app.get("/monitor/performance?model=iris").json();
    assert_eq!(perf["labelled"], 1);
    assert_eq!(perf["accuracy"], 1.0);
    let drift = app.get("/monitor/drift?model=iris").json();
    assert_eq!(drift["rows"], 3, "{drift}");

    // The rows are in PostgreSQL's own types, in the partition of their UTC day (read from
    // the row itself: a run may straddle midnight).
    let server = crate::pg::shared().unwrap();
    let db = crate::pg::database_name(&url);
    let row = server.psql(
        db,
        "select jsonb_typeof(features), pg_typeof(received_at)::text, tableoid::regclass::text, \
         to_char(received_at at time zone 'UTC', 'YYYYMMDD') \
         from prediction where status = 200 order by id limit 1",
    );
    let day = row.trim().rsplit('|').next().unwrap().to_string();
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y%m%d")
        .to_string();
    assert!(day == today || day == yesterday, "{row}");
    assert_eq!(
        row.trim(),
        format!("array|timestamp with time zone|prediction_p{day}|{day}")
    );
}

/// PostgreSQL restarted under load (a fast shutdown: every connection cut): durable requests
/// answer 503 while it is gone, readiness says so, the pool reconnects by itself, and every
/// acknowledged request is in the table once.
#[test]
fn a_postgres_restart_under_load_loses_no_acknowledged_row() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

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
    let seen = Arc::new(Mutex::new((Vec::new(), 0usize, Vec::new())));
    let addr = app.addr();
    let load = {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
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
    };
    std::thread::sleep(Duration::from_millis(400));
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
    let stored = server.psql(
        crate::pg::database_name(&url),
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
    eprintln!(
        "PostgreSQL restart: {} acknowledged, {refused} refused with 503 while it was down, none lost",
        acked.len()
    );
}

#[test]
fn an_unreachable_postgres_stops_start_up_naming_the_server() {
    let started = std::time::Instant::now();
    let out = crate::shutdown::binary()
        .args(["serve", "--bind", "127.0.0.1:0", "--models"])
        .arg(crate::helpers::shipped_model().parent().unwrap())
        .args([
            "--database-url",
            "postgres://inferlog:secret@127.0.0.1:9/audit",
            "--pg-acquire-timeout-ms",
            "500",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connecting to PostgreSQL at 127.0.0.1:9/audit"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Two real server binaries on one PostgreSQL database under concurrent load, and a reader
/// tailing `/audit` (oldest first, following `next_cursor`, from either replica in turn) while
/// they write: every acknowledged request is stored once, both replicas answer for all rows,
/// and the tail sees every row exactly once.
#[test]
fn two_replicas_share_one_store_and_a_tail_sees_every_row_once() {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

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
    let get = |addr: &str, path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        crate::helpers::try_send_raw(addr, raw.as_bytes()).expect("an answer")
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for (r, addr) in addrs.iter().enumerate() {
        for t in 0..2 {
            let (addr, stop, acked) = (addr.clone(), Arc::clone(&stop), Arc::clone(&acked));
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

    // The tail, started during the load.
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
                    crate::pg::database_name(&url),
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
    for h in load {
        h.join().unwrap();
    }

    let db = crate::pg::database_name(&url);
    let server = crate::pg::shared().unwrap();
    // Every acknowledged request, from either replica, is stored once, with all its rows.
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
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} requests acknowledged",
        acked.len()
    );
    for (id, rows) in &acked {
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
    for addr in &addrs {
        let summary = get(addr, "/audit/summary").json();
        assert_eq!(summary["rows"].as_u64().unwrap() as usize, all_ids.len());
    }
    for (child, _) in &mut replicas {
        crate::shutdown::kill(&child.0, "-TERM");
        assert!(crate::shutdown::wait_exit(&mut child.0).success());
    }
    eprintln!(
        "two replicas: {} requests acknowledged, {} rows, all tailed once in {turn} polls",
        acked.len(),
        all_ids.len()
    );
}

/// `inferlog audit copy` moves a 100,000-row SQLite history (and its feedback) into
/// PostgreSQL; counts and sampled rows match, and a second run copies nothing new.
#[test]
fn audit_copy_moves_a_sqlite_history_into_postgres_once() {
    let Some(url) = crate::pg::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    crate::helpers::db_at_migration(&db, 5);
    crate::helpers::db_exec(
        &db,
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 100000)
         insert into prediction (request_id, item, received_at, model, model_version, features,
                                 prediction, label, status, error_code, latency_us, client_addr,
                                 raw_body, outliers, client_request_id)
         select 'req-' || (i / 2), i % 2,
                strftime('%Y-%m-%dT%H:%M:%f000Z', '2026-11-01', '+' || (i / 2) || ' seconds'),
                'iris', 'v1', '[' || (i % 7) || '.5,2.5,1.5,0.5]',
                case when i % 10 = 0 then null else i % 3 end,
                case when i % 10 = 0 then null else 'label' || (i % 3) end,
                case when i % 10 = 0 then 422 else 200 end,
                case when i % 10 = 0 then 'wrong_feature_count' end,
                i, '10.0.0.' || (i % 250), case when i % 10 = 0 then '{\"x\": 1}' end,
                case when i % 97 = 0 then '[\"petal_width\"]' end,
                case when i % 5 = 0 then 'client-' || i end
         from n;
         insert into feedback (request_id, item, label, received_at)
         select request_id, item, 'label1', '2026-11-02T00:00:00.000000Z' from prediction
         where status = 200 and id % 1000 = 1;",
    );
    // The first copy with --progress: lines on stderr (no terminal here), the summary on
    // stdout.
    let out = crate::shutdown::binary()
        .args(["audit", "copy", "--progress", "--from"])
        .arg(&db)
        .args(["--to", &url])
        .output()
        .unwrap();
    let (first, progress) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{progress}");
    assert!(
        first.contains(
            "copied 100000 audit rows (100000 new, 0 already there) and 100 feedback (100 new) in "
        ),
        "{first}"
    );
    // (The source, from before rollups, cannot tell its total: no estimate of time left.)
    assert!(
        progress.contains("rows copied, ") && progress.contains(" rows/s"),
        "{progress}"
    );
    let server = crate::pg::shared().unwrap();
    let name = crate::pg::database_name(&url);
    let errors_before = server
        .log_of(name)
        .iter()
        .filter(|l| l.contains("ERROR"))
        .count();
    // Without --progress and no terminal: no progress lines.
    let out = crate::shutdown::binary()
        .args(["audit", "copy", "--from"])
        .arg(&db)
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let again = String::from_utf8_lossy(&out.stdout);
    assert!(
        again.contains("(0 new, 100000 already there) and 100 feedback (0 new)"),
        "{again}"
    );
    // Rows already there are skipped without a failed statement in the server's log.
    let errors: Vec<String> = server
        .log_of(name)
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), errors_before, "{errors:#?}");
    assert_eq!(errors_before, 0, "{errors:#?}");
    assert_eq!(
        server.psql(name, "select count(*) from prediction").trim(),
        "100000"
    );
    assert_eq!(
        server.psql(name, "select count(*) from feedback").trim(),
        "100"
    );
    // Sampled requests read the same from both stores, but for their ids.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use inferlog::audit::{Store, StoreOptions};
        let old = Store::open(
            &inferlog::audit::url::DatabaseUrl::sqlite_file(&db),
            &StoreOptions::read_only(),
        )
        .await
        .unwrap();
        let new = Store::open(&url.parse().unwrap(), &StoreOptions::read_only())
            .await
            .unwrap();
        for request in ["req-0", "req-5", "req-12345", "req-49999", "req-50000"] {
            let strip = |rows: Vec<inferlog::audit::StoredRecord>| {
                rows.into_iter()
                    .map(|mut r| {
                        r.id = 0;
                        serde_json::to_value(r).unwrap()
                    })
                    .collect::<Vec<_>>()
            };
            let a = strip(old.request(request).await.unwrap());
            let b = strip(new.request(request).await.unwrap());
            assert!(!a.is_empty());
            assert_eq!(a, b, "{request}");
        }
        let perf_old = old.confusion("iris", &Default::default()).await.unwrap();
        let mut perf_new = new.confusion("iris", &Default::default()).await.unwrap();
        let mut perf_old = perf_old;
        perf_old.sort();
        perf_new.sort();
        assert_eq!(perf_old, perf_new, "feedback joins the same rows");
        old.close().await;
        new.close().await;
    });
}

/// Oldest-first reads only hand out rows of transactions older than every one still open, and
/// that horizon is the whole server's: a writing transaction in another database holds it. A
/// read that reaches the end waits for the transactions open when it began
/// (`INFERLOG_PG_CATCH_UP_MS`), so an answered request's row is in the read that follows. A
/// transaction open longer holds the row back from that read only: the cursor it returns
/// picks the row up once the transaction ends, and nothing is skipped.
#[test]
fn oldest_first_reads_wait_for_open_transactions_and_skip_nothing() {
    use std::time::Duration;

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

    // Open while the request is answered; it ends while the read waits.
    let other = server.open_transaction("postgres");
    let first = patient.predict_ok(body);
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
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
