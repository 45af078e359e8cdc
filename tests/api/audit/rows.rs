//! What each request leaves in the store: its rows with exactly what was answered (or why it
//! was refused), readable when the answer arrives (durable) or after shutdown (async), in the
//! database file by background checkpoints, each naming the replica that wrote it.

use std::collections::HashSet;

use inferlog::audit::AuditMode;
use serde_json::{Value, json};

use crate::helpers::{on_both_stores, spawn_app};

on_both_stores!(fn single_prediction_row_holds_exactly_what_was_returned(app) {
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 200);
    let body = res.json();
    let rows = app.rows_of(body["request_id"].as_str().unwrap());
    assert_eq!(
        rows.len(),
        1,
        "durable: the row exists when the answer arrives"
    );
    let r = &rows[0];
    assert_eq!(r["item"], 0);
    assert_eq!(r["features"], json!([5.8, 2.7, 5.1, 1.9]));
    assert_eq!(r["prediction"], body["prediction"][0]);
    assert_eq!(r["label"], body["labels"][0]);
    assert_eq!(r["model"], body["model"]);
    assert_eq!(r["model_version"], body["model_version"]);
    assert_eq!(r["status"], 200);
    assert_eq!(r["error_code"], Value::Null);
    assert_eq!(r["client_addr"], "127.0.0.1");
    assert!(r["latency_us"].as_i64().unwrap() > 0);
    let at = r["received_at"].as_str().unwrap();
    assert!(
        at.len() == 27 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
        "RFC 3339 UTC with microseconds: {at}"
    );
});

on_both_stores!(fn batch_rows_share_the_request_id_and_keep_their_order(app) {
    let rows_in: Vec<[f64; 4]> = (0..50)
        .map(|i| {
            [
                4.5 + (i as f64) * 0.07,
                3.0,
                1.0 + (i as f64) * 0.1,
                0.1 + (i as f64) * 0.045,
            ]
        })
        .collect();
    let res = app.post_predict(&json!({ "features": rows_in }).to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    let rows = app.rows_of(body["request_id"].as_str().unwrap());
    assert_eq!(rows.len(), 50);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["item"], i);
        assert_eq!(r["features"], json!(rows_in[i]), "row {i}");
        assert_eq!(r["prediction"], body["prediction"][i], "row {i}");
        assert_eq!(r["label"], body["labels"][i], "row {i}");
    }
});

on_both_stores!(fn rejected_requests_are_audited_with_reason_and_body(app) {
    let res = app.post_predict(r#"{"features": [5.8, "x", 5.1, 1.9]}"#);
    assert_eq!(res.status, 422);
    app.wait_for_rows(1);
    let rows = app.rows_of(res.header("x-request-id").unwrap());
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["status"], 422);
    assert_eq!(r["error_code"], "invalid_feature");
    assert_eq!(r["raw_body"], r#"{"features": [5.8, "x", 5.1, 1.9]}"#);
    assert_eq!(r["features"], Value::Null);
    assert_eq!(r["prediction"], Value::Null);
    assert_eq!(r["client_addr"], "127.0.0.1");

    let res = app.post_json("/models/nope/predict", r#"{"features": [1, 2, 3, 4]}"#);
    assert_eq!(res.status, 404);
    let id = res.header("x-request-id").unwrap().to_string();
    app.wait_for_rows(2);
    let rows = app.rows_of(&id);
    assert_eq!(rows[0]["model"], "nope");
    assert_eq!(rows[0]["error_code"], "unknown_model");
});

on_both_stores!(fn raw_body_of_a_rejected_request_is_cut_to_4_kib(app) {
    let body = format!(r#"{{"features": "{}"}}"#, "y".repeat(10_000));
    let res = app.post_predict(&body);
    assert_eq!(res.status, 422);
    app.wait_for_rows(1);
    let rows = app.rows_of(res.header("x-request-id").unwrap());
    assert_eq!(rows[0]["raw_body"].as_str().unwrap().len(), 4096);
});

on_both_stores!(fn durable_rows_are_readable_the_moment_each_answer_arrives(app) {
    for i in 0..40 {
        let res = app.post_predict(&format!(
            r#"{{"features": [5.{i}, 2.7, 5.1, 1.9]}}"#,
            i = i % 10
        ));
        assert_eq!(res.status, 200);
        let rows = app.rows_of(res.header("x-request-id").unwrap());
        assert_eq!(
            rows.len(),
            1,
            "request {i}: row missing when the answer arrived"
        );
    }
});

on_both_stores!(fn async_mode_has_every_row_after_shutdown(app) with |s| s.audit.mode = AuditMode::Async, {
    let mut app = app;
    let mut ids = HashSet::new();
    for i in 0..200 {
        let res = app.post_predict(&format!(
            r#"{{"features": [[5.{}, 2.7, 5.1, 1.9], [5.0, 3.4, 1.5, 0.2]]}}"#,
            i % 10
        ));
        assert_eq!(res.status, 200);
        ids.insert(res.header("x-request-id").unwrap().to_string());
    }
    app.stop();
    assert_eq!(app.served_request_ids(), ids);
    assert_eq!(app.stored_count(""), 400);
});

#[test]
fn committed_rows_reach_the_database_file_by_background_checkpoints() {
    let app = spawn_app();
    let body = format!(
        r#"{{"features": [{}]}}"#,
        vec!["[5.1, 3.5, 1.4, 0.2]"; 100].join(", ")
    );
    for _ in 0..50 {
        assert_eq!(app.post_predict(&body).status, 200);
    }
    // 5,000 rows are about 1.5 MB. Commits append to the write-ahead log and never copy it
    // into the database file themselves below 64 MiB of WAL; the checkpointing connection
    // does, within a fraction of a second, while the server keeps running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&app.db_path).unwrap().len();
        if size > 1_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "database file still {size} bytes: the WAL is not being checkpointed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

on_both_stores!(fn each_row_names_the_replica_that_wrote_it(app) with |s| s.instance = Some("replica-a".into()), {
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json"), ("X-Request-Id", "w-1")],
        br#"{"features": [[5.8, 2.7, 5.1, 9.9], [5.1, 3.5, 1.4, 0.2]]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(app.post_predict(r#"{"features": [1, 2]}"#).status, 422);
    app.wait_for_rows(3);
    // The rows, /audit, and the exports carry it.
    for r in app.stored_rows("") {
        assert_eq!(r["writer"], "replica-a", "{r}");
    }
    let page = app.audit_page("limit=10");
    assert!(page.records.iter().all(|r| r["writer"] == "replica-a"), "{:?}", page.records);
    let csv = app.get("/audit?format=csv").text();
    assert!(csv.lines().next().unwrap().contains(",client_request_id,writer,"), "{csv}");
    let jsonl = app.get("/audit?format=jsonl").text();
    assert!(jsonl.lines().all(|l| l.contains(r#""writer":"replica-a""#)), "{jsonl}");
    // The views: served with the outliers, the client's id and the writer; rejected with the
    // writer.
    let served = app.store_json(
        [
            "json_object('outliers', json(outliers), 'client_request_id', client_request_id, 'writer', writer)",
            "json_build_object('outliers', outliers, 'client_request_id', client_request_id, 'writer', writer)",
        ],
        "served order by id",
    );
    assert_eq!(served.len(), 2);
    assert_eq!(served[0]["outliers"], json!(["petal_width"]), "{served:?}");
    assert_eq!(served[0]["client_request_id"], "w-1");
    assert_eq!(served[1]["writer"], "replica-a");
    let rejected = app.store_json(
        ["json_object('writer', writer)", "json_build_object('writer', writer)"],
        "rejected",
    );
    assert_eq!(rejected, vec![json!({"writer": "replica-a"})]);
});

#[test]
fn the_default_writer_is_the_host_and_the_start_time() {
    let app = crate::helpers::spawn_app();
    app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    app.wait_for_rows(1);
    let writer = app.stored_rows("")[0]["writer"]
        .as_str()
        .unwrap()
        .to_string();
    let (host, started) = writer.split_once('@').unwrap_or_else(|| panic!("{writer}"));
    assert!(!host.is_empty(), "{writer}");
    chrono::DateTime::parse_from_rfc3339(started).unwrap_or_else(|e| panic!("{writer}: {e}"));
    // The CLI table shows the client's request id and the outliers.
    let out = crate::shutdown::stdout_of(
        crate::shutdown::binary()
            .args(["audit", "--database-url"])
            .arg(&app.db_path),
    );
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("client_request_id") && header.contains("outliers"),
        "{out}"
    );
}
