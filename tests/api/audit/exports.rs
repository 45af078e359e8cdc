//! The rows exported: CSV and JSON lines over HTTP (safe to open in a spreadsheet), a
//! consistent snapshot while the server writes, and the command line's exports and summary.

use serde_json::{Value, json};

use crate::helpers::{on_both_stores, served_request_ids, spawn_app};

on_both_stores!(fn csv_export_of_the_whole_range_parses_with_a_csv_reader(app) {
    let rows_in: Vec<[f64; 4]> = (0..1000)
        .map(|i| [5.0 + (i % 7) as f64 * 0.3, 3.0, 4.0, 1.2])
        .collect();
    for _ in 0..3 {
        let res = app.post_predict(&json!({ "features": rows_in }).to_string());
        assert_eq!(res.status, 200);
    }
    app.post_predict(r#"{"features": [1, "a,b\n\"quoted\""]}"#);
    app.wait_for_rows(3001);
    let res = app.get("/audit?format=csv&order=asc");
    assert_eq!(res.status, 200);
    assert!(res.header("content-type").unwrap().starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(res.body.as_slice());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(headers.get(0), Some("id"));
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 3001, "every row, across export pages");
    let ids: Vec<i64> = records.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
    let features: Vec<f64> = serde_json::from_str(&records[0][6]).unwrap();
    assert_eq!(features, rows_in[0]);
    let last = records.last().unwrap();
    assert_eq!(&last[13], r#"{"features": [1, "a,b\n\"quoted\""]}"#);

    let res = app.get("/audit?format=jsonl&status=rejected");
    let lines: Vec<Value> = res
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["error_code"], "wrong_feature_count");
});

on_both_stores!(fn csv_export_neutralises_cells_a_spreadsheet_would_evaluate(app) {
    // A client plants formulas where it can: its request id, the model name, a rejected body.
    let res = app.request(
        "POST",
        "/predict",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "=2+5"),
        ],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(app.post_json("/models/@SUM(1)/predict", "{}").status, 404);
    assert_eq!(app.post_predict("=HYPERLINK(\"http://x\")").status, 400);
    app.wait_for_rows(3);

    let res = app.get("/audit?format=csv&order=asc");
    assert_eq!(res.status, 200);
    let mut reader = csv::Reader::from_reader(res.body.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 3);
    // Rows of different requests may commit in either order (several writers): find each.
    let find = |column: usize, text: &str| {
        records
            .iter()
            .find(|r| &r[column] == text)
            .unwrap_or_else(|| panic!("no row with {text:?} in column {column}: {records:?}"))
    };
    let served = find(15, "'=2+5");
    find(4, "'@SUM(1)");
    find(13, "'=HYPERLINK(\"http://x\")");
    // Nothing else changes: numbers, JSON arrays and ordinary text stay as they are.
    assert_eq!(&served[4], "iris");
    assert_eq!(&served[6], "[5.8,2.7,5.1,1.9]");
    // The JSON export and the database keep the text as it came.
    let page = app.audit_page("status=ok");
    assert_eq!(page.records[0]["client_request_id"], "=2+5");
});

#[test]
fn audit_snapshot_writes_a_consistent_copy_while_the_server_writes() {
    let app = spawn_app();
    let sent: Vec<String> = (0..20)
        .map(|_| app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#))
        .collect();
    // Writes go on while the copy is taken.
    let writer = {
        let addr = app.addr();
        std::thread::spawn(move || {
            let body = r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#;
            let raw = format!(
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            for _ in 0..50 {
                crate::helpers::send_raw(&addr, raw.as_bytes());
            }
        })
    };
    let copy = app.dir.path().join("copy.db");
    let out = crate::shutdown::binary()
        .args(["audit", "snapshot"])
        .arg(&copy)
        .arg("--database-url")
        .arg(format!("sqlite://{}", app.db_path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.join().unwrap();
    let in_copy = served_request_ids(&copy);
    for id in &sent {
        assert!(
            in_copy.contains(id),
            "{id} answered before the snapshot is not in it"
        );
    }
    let check = crate::helpers::db_json(
        &copy,
        "select json_object('r', integrity_check) from pragma_integrity_check",
    );
    assert_eq!(check[0]["r"], "ok");
    // A second snapshot to the same file is refused rather than mixed into it.
    let again = crate::shutdown::binary()
        .args(["audit", "snapshot"])
        .arg(&copy)
        .arg("--database-url")
        .arg(format!("sqlite://{}", app.db_path.display()))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

on_both_stores!(fn cli_takes_plain_paths_and_database_url_everywhere_and_writes_summary_csv(app) {
    app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    app.predict_ok(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    // SQLite as a plain path, PostgreSQL as its URL.
    let path = if app.database_url.starts_with("postgres") {
        app.database_url.clone()
    } else {
        app.db_path.display().to_string()
    };
    let run = |args: &[&str]| {
        let out = crate::shutdown::binary().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // The summary as CSV: measure, key, value.
    let csv_text = run(&[
        "audit",
        "--database-url",
        &path,
        "--summary",
        "--format",
        "csv",
    ]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["measure", "key", "value"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let value = |measure: &str, key: &str| {
        rows.iter()
            .find(|r| &r[0] == measure && &r[1] == key)
            .map(|r| r[2].to_string())
    };
    assert_eq!(value("rows", "").as_deref(), Some("2"));
    assert_eq!(value("label", "virginica").as_deref(), Some("1"));
    assert!(value("latency_us", "p99").is_some());
    // `inferlog drift` takes --database-url (and a plain path) like the other commands.
    let models = crate::helpers::shipped_model();
    let models = models.parent().unwrap().to_str().unwrap();
    let report = run(&["drift", "--database-url", &path, "--models", models]);
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["rows"], 2);
});
