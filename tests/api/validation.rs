//! Every bad input gets a 4xx with the JSON error body naming what was wrong — never a 5xx,
//! never a 200.

use crate::helpers::{spawn_app, spawn_app_with};

/// Posts `body` as JSON to `/predict` and checks status, error code and a message fragment.
fn check(body: &[u8], status: u16, code: &str, message_part: &str) {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(
        res.status,
        status,
        "body {:?}: {}",
        String::from_utf8_lossy(body),
        res.text()
    );
    assert_eq!(res.error_code(), code, "{}", res.text());
    let message = res.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(message_part),
        "message {message:?} lacks {message_part:?}"
    );
    // The server is still fine afterwards.
    assert_eq!(app.get("/health/live").status, 200);
}

macro_rules! rejects {
    ($($name:ident: $body:expr => $status:expr, $code:expr, $part:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check($body.as_ref(), $status, $code, $part);
            }
        )*
    };
}

rejects! {
    rejects_too_few_features_with_422: br#"{"features": [5.8, 2.7]}"#
        => 422, "wrong_feature_count",
        "expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 2";
    rejects_too_many_features_with_422: br#"{"features": [5.8, 2.7, 1, 2, 3]}"#
        => 422, "wrong_feature_count", "got 5";
    rejects_empty_feature_list_with_422: br#"{"features": []}"#
        => 422, "empty_features", "expected 4 features";
    rejects_empty_row_in_batch_with_422: br#"{"features": [[]]}"#
        => 422, "empty_features", "features[0]";
    rejects_ragged_batch_with_422: br#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.8, 2.7, 5.1]]}"#
        => 422, "ragged_batch", "features[1] has 3 values";
    rejects_string_feature_with_422: br#"{"features": [5.8, "2.7", 5.1, 1.9]}"#
        => 422, "invalid_feature", "features[1] (sepal_width) must be a number, got a string";
    rejects_boolean_feature_with_422: br#"{"features": [true, 2.7, 5.1, 1.9]}"#
        => 422, "invalid_feature", "got a boolean";
    rejects_null_feature_with_422: br#"{"features": [5.8, 2.7, null, 1.9]}"#
        => 422, "invalid_feature", "got null";
    rejects_nested_object_feature_with_422: br#"{"features": [5.8, 2.7, {"a": 1}, 1.9]}"#
        => 422, "invalid_feature", "got an object";
    rejects_null_features_with_422: br#"{"features": null}"#
        => 422, "invalid_features", "is null";
    rejects_number_as_features_with_422: br#"{"features": 5.8}"#
        => 422, "invalid_features", "is a number";
    rejects_nan_token_with_422: br#"{"features": [5.8, NaN, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "NaN or Infinity";
    rejects_infinity_token_with_422: br#"{"features": [5.8, Infinity, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "NaN or Infinity";
    rejects_negative_infinity_token_with_422: br#"{"features": [-Infinity, 2.7, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "NaN or Infinity";
    rejects_number_overflowing_f64_with_422: br#"{"features": [5.8, 1e400, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "too large";
    rejects_negative_overflow_with_422: br#"{"features": [5.8, -1e309, 5.1, 1.9]}"#
        => 422, "non_finite_feature", "too large";
    rejects_unknown_named_feature_with_422:
        br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9, "colour": 1}}"#
        => 422, "unknown_feature", "unknown feature \"colour\"";
    rejects_missing_named_feature_with_422:
        br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1}}"#
        => 422, "missing_feature", "lacks petal_width";
    rejects_duplicate_named_feature_with_422:
        br#"{"features": {"sepal_length": 5.8, "sepal_length": 2.7, "petal_length": 5.1, "petal_width": 1.9}}"#
        => 422, "duplicate_feature", "sepal_length twice";
    rejects_duplicate_features_field_with_422:
        br#"{"features": [5.8, 2.7, 5.1, 1.9], "features": [1, 2, 3, 4]}"#
        => 422, "invalid_body", "appears twice";
    rejects_unknown_top_level_field_with_422: br#"{"features": [5.8, 2.7, 5.1, 1.9], "feature": 1}"#
        => 422, "invalid_body", "unknown field \"feature\"";
    rejects_missing_features_field_with_422: br#"{}"#
        => 422, "missing_features", "no \"features\" field";
    rejects_array_body_with_422: br#"[5.8, 2.7, 5.1, 1.9]"#
        => 422, "invalid_body", "must be a JSON object";
    rejects_malformed_json_with_400: br#"{"features": [5.8, 2.7,, 5.1]}"#
        => 400, "malformed_json", "not valid JSON";
    rejects_truncated_json_with_400: br#"{"features": [5.8, 2.7, 5.1"#
        => 400, "malformed_json", "not valid JSON";
    rejects_trailing_garbage_with_400: br#"{"features": [5.8, 2.7, 5.1, 1.9]} xyz"#
        => 400, "malformed_json", "not valid JSON";
    rejects_empty_body_with_400: b"" => 400, "malformed_json", "empty";
    rejects_invalid_utf8_with_400: b"{\"features\": [5.8, 2.7, 5.1, 1.9], \"\xff\xfe\": 1}"
        => 400, "malformed_json", "not valid JSON";
    rejects_deep_nesting_with_400: {
        let mut b = b"{\"features\": ".to_vec();
        b.extend(std::iter::repeat_n(b'[', 100_000));
        b.extend(std::iter::repeat_n(b']', 100_000));
        b.push(b'}');
        b
    } => 400, "malformed_json", "recursion limit";
}

#[test]
fn newline_in_unknown_feature_name_is_escaped_in_message_and_log() {
    let app = spawn_app();
    let res = app.post_predict(
        "{\"features\": {\"x\\nINFO forged line\": 1, \"sepal_length\": 5.8, \"sepal_width\": 2.7, \"petal_length\": 5.1, \"petal_width\": 1.9}}",
    );
    assert_eq!(res.status, 422);
    let id = res.header("x-request-id").unwrap().to_string();
    let line = app.wait_for_log_line(&[&id, "unknown_feature"]);
    assert!(line.contains(r"x\nINFO forged line"), "{line}");
    assert!(
        !app.log_text().lines().any(|l| l.starts_with("INFO forged")),
        "a forged line reached the log"
    );
}

#[test]
fn rejects_text_plain_with_415() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "text/plain")],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 415);
    assert_eq!(res.error_code(), "unsupported_media_type");
}

#[test]
fn rejects_form_encoding_with_415() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"features=1",
    );
    assert_eq!(res.status, 415);
    assert!(res.text().contains("application/json"));
}

#[test]
fn rejects_body_over_limit_with_413() {
    let app = spawn_app_with(&["--max-body-bytes", "1024"]);
    let rows: Vec<[f64; 4]> = (0..100).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    let body = serde_json::json!({ "features": rows }).to_string();
    assert!(body.len() > 1024);
    let res = app.post_predict(&body);
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.error_code(), "body_too_large");
    assert!(res.text().contains("1024 bytes"));
}

#[test]
fn rejects_chunked_body_over_limit_with_413() {
    let app = spawn_app_with(&["--max-body-bytes", "1024"]);
    let mut raw = format!(
        "POST /predict HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr()
    )
    .into_bytes();
    for _ in 0..4 {
        raw.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, " ".repeat(600)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let res = app.raw(&raw);
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.error_code(), "body_too_large");
}

#[test]
fn rejects_batch_over_maximum_with_413() {
    let app = spawn_app_with(&["--max-batch", "5"]);
    let ok: Vec<[f64; 4]> = (0..5).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    assert_eq!(
        app.post_predict(&serde_json::json!({ "features": ok }).to_string())
            .status,
        200
    );
    let over: Vec<[f64; 4]> = (0..6).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    let res = app.post_predict(&serde_json::json!({ "features": over }).to_string());
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.error_code(), "batch_too_large");
    assert!(res.text().contains("6 rows"));
}

#[test]
fn wrong_method_is_405_with_json_body() {
    let app = spawn_app();
    let res = app.get("/predict");
    assert_eq!(res.status, 405);
    assert_eq!(res.error_code(), "method_not_allowed");
    assert_eq!(res.header("allow"), Some("POST"));
}

#[test]
fn unknown_route_is_404_with_json_body() {
    let app = spawn_app();
    let res = app.get("/no/such/route");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "not_found");
}

#[test]
fn a_body_trickling_in_gets_408_without_holding_up_others() {
    use std::io::Write;
    let app = spawn_app_with(&["--body-timeout-ms", "3000"]);
    let mut slow = std::net::TcpStream::connect(app.addr()).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        slow,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 35\r\nConnection: close\r\n\r\n{{\"fea"
    )
    .unwrap();
    // Others are served meanwhile, by the same single worker: long before the slow request's
    // deadline, not after it.
    let started = std::time::Instant::now();
    assert_eq!(
        app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#)
            .status,
        200
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let res = crate::helpers::read_response(&mut slow);
    assert_eq!(res.status, 408, "{}", res.text());
    assert_eq!(res.error_code(), "body_timeout");
    app.wait_for_rows(2);
    let row = app.db_json(
        "select json_object('s', status, 'c', error_code) from prediction where status <> 200",
    );
    assert_eq!(row[0]["s"], 408);
    assert_eq!(row[0]["c"], "body_timeout");
}
