//! The store failing under a running server: locked by another process, a full async queue,
//! the file deleted. Predictions are refused with 503 rather than served without their rows,
//! and the service recovers by itself. (Faults of space, permissions and connections are in
//! `faults/`.)

use std::time::Duration;

use inferlog::audit::AuditMode;

use crate::helpers::{StoreLock, metric_value, served_request_ids, spawn_app, spawn_app_with};

#[test]
fn locked_store_makes_durable_predict_503_and_it_recovers_by_itself() {
    let app = spawn_app_with(|s| s.audit.busy_timeout = Duration::from_millis(200));
    assert_eq!(
        app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#)
            .status,
        200
    );

    // Another process takes the write lock and keeps it.
    let lock = StoreLock::take(&app.db_path);

    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.error_code(), "audit_unavailable");
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 503);
    let reason = ready.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("locked by another process"), "{reason}");
    assert!(res.text().contains("locked"), "{}", res.text());
    let metrics = app.get("/metrics").text();
    assert!(
        metrics.contains("inferlog_audit_store_failing 1"),
        "{metrics}"
    );
    let errors = crate::helpers::metric_value(&metrics, "inferlog_audit_write_errors_total");
    assert!(errors >= Some(1.0), "failed commits are counted: {metrics}");
    let refused_id = res.header("x-request-id").unwrap().to_string();

    lock.release();

    // Ready again by itself, before any prediction comes (a load balancer sends none to a
    // service that is not ready).
    app.wait_ready(200);
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 200, "recovered: {}", res.text());
    // The refused prediction has no "served" row; the two served ones do.
    assert!(app.rows_of(&refused_id).iter().all(|r| r["status"] != 200));
    let served =
        app.db_json("select json_object('n', count(*)) from prediction where status = 200");
    assert_eq!(served[0]["n"], 2);
}

#[test]
fn full_async_queue_answers_503_and_loses_no_acknowledged_row() {
    let app = spawn_app_with(|s| {
        s.audit.mode = AuditMode::Async;
        s.audit.queue_rows = 2;
        s.http.max_batch = 2;
        // Each refused request waits this long for room: short, so the test is quick.
        s.audit.queue_timeout = Duration::from_millis(25);
        s.audit.busy_timeout = Duration::from_millis(50);
    });
    // Another process holds the write lock: commits fail and answered rows wait in memory.
    let lock = StoreLock::take(&app.db_path);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..60 {
        let res = app.post_predict(&format!(r#"{{"features": [5.{}, 2.7, 5.1, 1.9]}}"#, i % 10));
        match res.status {
            200 => acked.push(res.header("x-request-id").unwrap().to_string()),
            503 => {
                assert_eq!(res.error_code(), "audit_unavailable");
                assert!(res.text().contains("queue"), "{}", res.text());
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", res.text()),
        }
    }
    assert!(refused > 0, "the queue never filled");
    assert!(!acked.is_empty());
    let metrics = app.get("/metrics").text();
    assert!(
        metrics.contains("inferlog_audit_store_failing 1"),
        "{metrics}"
    );

    lock.release();
    // Served again once the writer catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
        if res.status == 200 {
            acked.push(res.header("x-request-id").unwrap().to_string());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not recover");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut app = app;
    app.stop();
    let stored = served_request_ids(&app.db_path);
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} has no row");
    }
    eprintln!(
        "queue full: {} acknowledged, {refused} refused with 503",
        acked.len()
    );
}

#[test]
fn the_async_queue_is_bounded_in_rows_and_reports_its_depth() {
    // 50 rows at most; batches of 20 rows. Bounded in requests, as it was, three batches
    // (60 rows) would have been taken.
    let app = spawn_app_with(|s| {
        s.audit.mode = AuditMode::Async;
        s.audit.queue_rows = 50;
        s.http.max_batch = 20;
        s.audit.queue_timeout = Duration::from_millis(25);
        s.audit.busy_timeout = Duration::from_millis(50);
    });
    let lock = StoreLock::take(&app.db_path);
    let batch = format!(
        r#"{{"features": [{}]}}"#,
        vec!["[5.8, 2.7, 5.1, 1.9]"; 20].join(",")
    );
    let mut acked_rows = 0;
    for _ in 0..6 {
        let res = app.post_predict(&batch);
        match res.status {
            200 => acked_rows += 20,
            503 => assert!(res.text().contains("queue"), "{}", res.text()),
            other => panic!("unexpected {other}: {}", res.text()),
        }
    }
    assert_eq!(
        acked_rows, 40,
        "two batches fit in 50 rows, a third does not"
    );
    let metrics = app.get("/metrics").text();
    assert_eq!(
        metric_value(&metrics, "inferlog_audit_queue_rows"),
        Some(40.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "inferlog_audit_queue_capacity_rows"),
        Some(50.0)
    );
    lock.release();
    app.wait_for_rows(40);
    // The places are given back once the rows are committed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric_value(&app.get("/metrics").text(), "inferlog_audit_queue_rows") != Some(0.0) {
        assert!(std::time::Instant::now() < deadline, "queue never emptied");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(app.post_predict(&batch).status, 200);
}

#[test]
fn deleting_the_database_while_serving_loses_no_acknowledged_row() {
    let app = spawn_app();
    let before = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(before.status, 200);
    // An operator removes the file (and its WAL) under the running service.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", app.db_path.display()));
    }
    // Whatever is answered 200 from now on must be in the file at the path, not in the
    // unlinked one the old connection still had open.
    let mut acked = Vec::new();
    for _ in 0..20 {
        let res = app.post_predict(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
        match res.status {
            200 => acked.push(res.header("x-request-id").unwrap().to_string()),
            503 => assert_eq!(res.error_code(), "audit_unavailable"),
            other => panic!("unexpected {other}: {}", res.text()),
        }
    }
    assert!(
        acked.len() >= 18,
        "service did not recover: {} of 20 served",
        acked.len()
    );
    assert!(
        app.db_path.exists(),
        "a new database was created at the path"
    );
    for id in &acked {
        assert_eq!(
            app.rows_of(id).len(),
            1,
            "acknowledged {id} is not in the database file"
        );
    }
    assert_eq!(app.get("/health/ready").status, 200);
    // The event is logged (log lines reach the file within 50 ms).
    app.wait_for_log_line(&["deleted or replaced"]);
}
