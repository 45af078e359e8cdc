//! The store's size cap in a running server: a database past it answers 503 until space is
//! freed, and a WAL that checkpoints cannot copy counts against it.

use std::time::Duration;

use super::{ONE_ROW, batch};
use crate::helpers::{db_exec, db_json, metric_value, served_request_ids, spawn_app_with};

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
