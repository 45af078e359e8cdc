//! Serving on PostgreSQL: predictions, rejections, feedback and reports stored in its own
//! types and read back over HTTP; a server that cannot be reached stops the start, naming it.

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
