//! `/audit/summary` and the latencies it reports: counts and percentiles (each request counted
//! once), and the latency a row and its log line share, waits for a held lock included.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{StoreLock, metric_value, on_both_stores, spawn_app};

on_both_stores!(fn summary_counts_and_percentiles(app) {
    app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [5.8, 2.7, 5.1, 1.9]]}"#);
    app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    app.post_predict(r#"{"features": []}"#);
    app.wait_for_rows(4);
    let res = app.get("/audit/summary");
    assert_eq!(res.status, 200, "{}", res.text());
    let s = res.json();
    assert_eq!(s["rows"], 4);
    assert_eq!(s["requests"], 3);
    let labels = s["by_label"].as_array().unwrap();
    assert!(labels.contains(&json!({"key": "virginica", "count": 2})));
    assert!(labels.contains(&json!({"key": "setosa", "count": 1})));
    assert!(
        s["by_status"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "422", "count": 1}))
    );
    assert!(s["latency_us"]["p50"].as_i64().unwrap() <= s["latency_us"]["max"].as_i64().unwrap());
});

/// Nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

on_both_stores!(fn latency_percentiles_count_each_request_once(app) {
    // Five single rows and one batch of 200: by rows the batch would be 200 of 205 values.
    for _ in 0..5 {
        app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    }
    let batch = serde_json::to_string(&json!({"features": vec![[6.7, 3.0, 5.2, 2.3]; 200]})).unwrap();
    app.predict_ok(&batch);
    app.wait_for_rows(205);
    let mut per_request: Vec<i64> = app
        .stored_rows("where item = 0")
        .iter()
        .map(|r| r["latency_us"].as_i64().unwrap())
        .collect();
    per_request.sort_unstable();
    assert_eq!(per_request.len(), 6);
    let want: Vec<(&str, i64)> = [("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)]
        .iter()
        .map(|(k, p)| (*k, nearest_rank(&per_request, *p)))
        .collect();
    // From the rows (a latency filter needs them): exact.
    let rows = app.get("/audit/summary?min_latency_us=0").json();
    assert_eq!(rows["source"], "rows", "{rows}");
    for (key, value) in &want {
        assert_eq!(rows["latency_us"][key], *value, "{key} from the rows: {rows}");
    }
    // From the rollups, the summary and the time series alike: within the histogram's 4%.
    let rollups = app.get("/audit/summary").json();
    assert_eq!(rollups["source"], "rollups", "{rollups}");
    let series = app.get("/audit/timeseries?bucket=1d").json();
    let buckets: Vec<&Value> = series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["requests"].as_i64() > Some(0))
        .collect();
    let mut checked = vec![("summary", &rollups["latency_us"])];
    if buckets.len() == 1 {
        // Unless the requests straddle midnight UTC.
        checked.push(("time series", &buckets[0]["latency_us"]));
    }
    for (what, latency) in checked {
        for (key, value) in &want {
            let got = latency[key].as_i64().unwrap_or_else(|| panic!("{what} {key}: {latency}"));
            let tolerance = (*value as f64 * 0.04).ceil() as i64 + 1;
            assert!((got - value).abs() <= tolerance, "{what} {key}: {got} against {value} per request");
        }
    }
});

/// The `latency_us` value of a log line in the term format (`latency_us: 1234`).
fn logged_latency(line: &str) -> i64 {
    let at = line.find("latency_us: ").expect("a latency in the line") + "latency_us: ".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after latency_us in {line}"))
}

#[test]
fn durable_latency_counts_the_wait_for_a_held_store_lock_in_row_and_log_alike() {
    let app = spawn_app();
    // Another process holds the write lock for a while (well under the busy timeout): the
    // durable request waits for it before its row can be written.
    let lock = StoreLock::take(&app.db_path);
    let client = {
        let addr = app.addr();
        std::thread::spawn(move || {
            let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
            let raw = format!(
                "POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            crate::helpers::send_raw(&addr, raw.as_bytes())
        })
    };
    // The clock starts once the request is in the writer's queue (its place is given back
    // only after its commit), so a slow start of the client cannot eat into the 400 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric_value(&app.get("/metrics").text(), "inferlog_audit_queue_rows") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never queued"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let held = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(400));
    lock.release();
    let res = client.join().unwrap();
    let held_us = held.elapsed().as_micros() as i64;
    assert_eq!(res.status, 200, "{}", res.text());
    let id = res.json()["request_id"].as_str().unwrap().to_string();

    let row = &app.rows_of(&id)[0];
    let row_latency = row["latency_us"].as_i64().unwrap();
    let line = app.wait_for_log_line(&[&id, "prediction served"]);
    assert_eq!(
        row_latency,
        logged_latency(&line),
        "the audit row and the log line disagree: {line}"
    );
    // The request waited for the lock: most of the 400 ms the lock was held, not the
    // microseconds the prediction itself took.
    assert!(row_latency >= 300_000, "row latency {row_latency} µs");
    assert!(
        row_latency <= held_us + 1_000_000,
        "row latency {row_latency} µs"
    );
    // The slowest-requests view of /audit/summary sees it.
    let summary = app.get("/audit/summary").json();
    assert_eq!(summary["latency_us"]["max"].as_i64(), Some(row_latency));
}

#[test]
fn rejected_requests_log_the_latency_of_their_audit_row() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.8, 2.7]}"#);
    assert_eq!(res.status, 422);
    let id = res.header("x-request-id").unwrap().to_string();
    app.wait_for_rows(1);
    let row = &app.rows_of(&id)[0];
    let line = app.wait_for_log_line(&[&id, "request rejected"]);
    assert_eq!(
        row["latency_us"].as_i64().unwrap(),
        logged_latency(&line),
        "{line}"
    );
}
