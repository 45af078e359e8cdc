//! The log: one readable line per request carrying its id, inputs and answer; nothing a client
//! sends can forge a line.

use inferlog::cli::LogFormat;

use crate::helpers::{spawn_app, spawn_app_with};

#[test]
fn served_request_leaves_one_line_with_id_features_and_prediction() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 200);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id]);
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("prediction served"), "{line}");
    assert!(line.contains("features: [5.8,2.7,5.1,1.9]"), "{line}");
    assert!(line.contains("prediction: [2]"), "{line}");
    assert!(line.contains(r#"labels: ["virginica"]"#), "{line}");
    assert!(line.contains("model: iris"), "{line}");
    assert!(line.contains("latency_us: "), "{line}");
    let lines_with_id = app.log_text().lines().filter(|l| l.contains(&id)).count();
    assert_eq!(lines_with_id, 1, "one line per request");
}

#[test]
fn rejected_request_is_logged_at_warn_with_reason() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.8, 2.7]}"#);
    assert_eq!(res.status, 422);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id]);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("request rejected"), "{line}");
    assert!(line.contains("code: wrong_feature_count"), "{line}");
    assert!(line.contains("got 2"), "{line}");
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let app = spawn_app_with(|s| s.log.format = LogFormat::Json);
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id]);
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["msg"], "prediction served");
    assert_eq!(v["request_id"], id);
    assert_eq!(v["features"], "[5.8,2.7,5.1,1.9]");
    assert_eq!(v["level"], "INFO");
}

#[test]
fn header_with_newline_cannot_forge_a_log_line() {
    let app = spawn_app();
    for sep in ["\n", "\r", "\r\n "] {
        let raw = format!(
            "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc{sep}INFO forged line, request_id: evil\r\nContent-Type: application/json\r\nContent-Length: 35\r\nConnection: close\r\n\r\n{{\"features\": [5.8, 2.7, 5.1, 1.9]}}"
        );
        let res = app.raw(raw.as_bytes());
        assert!(
            res.status == 200 || res.status == 400,
            "{sep:?}: {}",
            res.status
        );
        if let Some(id) = res.header("x-request-id") {
            assert!(!id.contains("forged"), "{sep:?}: id {id:?} echoed");
        }
    }
    // Make sure everything so far is flushed before reading the log.
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    app.wait_for_log_line(&[res.header("x-request-id").unwrap()]);
    for line in app.log_text().lines() {
        assert!(
            !line.starts_with("INFO forged") && !line.contains("request_id: evil"),
            "forged log line: {line}"
        );
    }
}
