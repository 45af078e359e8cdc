//! `POST /predict` answers: the tutorial's body, batches, named features, named models.

use crate::helpers::{shipped_version, spawn_app};

#[test]
fn tutorial_body_predicts_virginica() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["prediction"], serde_json::json!([2]));
    assert_eq!(body["labels"], serde_json::json!(["virginica"]));
    assert_eq!(body["model"], "iris");
    assert_eq!(body["model_version"], shipped_version());
    let id = res.header("x-request-id").expect("request id header");
    assert_eq!(body["request_id"], id);
}

#[test]
fn accepts_a_body_without_content_type() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[],
        br#"{"features": [5.1, 3.5, 1.4, 0.2]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["labels"], serde_json::json!(["setosa"]));
}

#[test]
fn accepts_json_content_type_with_charset() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json; charset=utf-8")],
        br#"{"features": [5.1, 3.5, 1.4, 0.2]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
}

#[test]
fn batch_predicts_every_row_in_order() {
    let app = spawn_app();
    let res = app.post_predict(
        r#"{"features": [[5.1, 3.5, 1.4, 0.2], [5.8, 2.7, 5.1, 1.9], [6.0, 2.9, 4.5, 1.5]]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["prediction"], serde_json::json!([0, 2, 1]));
    assert_eq!(
        body["labels"],
        serde_json::json!(["setosa", "virginica", "versicolor"])
    );
}

#[test]
fn batch_answers_match_single_answers() {
    let app = spawn_app();
    let rows = [
        [4.9, 3.0, 1.4, 0.2],
        [6.4, 3.2, 4.5, 1.5],
        [6.3, 3.3, 6.0, 2.5],
        [5.5, 2.4, 3.8, 1.1],
        [7.7, 2.6, 6.9, 2.3],
    ];
    let batch = app.post_predict(&serde_json::json!({ "features": rows }).to_string());
    assert_eq!(batch.status, 200);
    let batch = batch.json()["prediction"].clone();
    for (i, row) in rows.iter().enumerate() {
        let one = app.post_predict(&serde_json::json!({ "features": row }).to_string());
        assert_eq!(one.json()["prediction"][0], batch[i], "row {i}");
    }
}

#[test]
fn named_features_in_any_order_match_positional() {
    let app = spawn_app();
    let named = app.post_predict(
        r#"{"features": {"petal_width": 1.9, "sepal_width": 2.7, "sepal_length": 5.8, "petal_length": 5.1}}"#,
    );
    assert_eq!(named.status, 200, "{}", named.text());
    assert_eq!(named.json()["prediction"], serde_json::json!([2]));
}

#[test]
fn named_batch_is_accepted() {
    let app = spawn_app();
    let res = app.post_predict(
        r#"{"features": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
                          {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9}]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["prediction"], serde_json::json!([0, 2]));
}

#[test]
fn large_batch_up_to_the_limit_is_served() {
    let app = spawn_app();
    let rows: Vec<[f64; 4]> = (0..1000)
        .map(|i| [5.0 + (i % 10) as f64 * 0.2, 3.0, 4.0, 1.3])
        .collect();
    let res = app.post_predict(&serde_json::json!({ "features": rows }).to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["prediction"].as_array().unwrap().len(), 1000);
}

#[test]
fn named_model_route_serves_that_model() {
    let app = spawn_app();
    let res = app.post_json(
        "/models/iris/predict",
        r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["model"], "iris");
}

#[test]
fn unknown_model_is_404() {
    let app = spawn_app();
    let res = app.post_json(
        "/models/nope/predict",
        r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "unknown_model");
    assert!(res.text().contains("nope"));
}

#[test]
fn client_request_id_is_echoed() {
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "client-42.a:b"),
        ],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 200);
    // The server's own id names the request; the client's is echoed beside it.
    let id = res.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(res.header("x-client-request-id"), Some("client-42.a:b"));
    assert_eq!(res.json()["request_id"], id);
    assert_eq!(res.json()["client_request_id"], "client-42.a:b");
}

#[test]
fn unsafe_request_ids_are_replaced_not_echoed() {
    let app = spawn_app();
    for bad in ["has space", "tab\there", "quote\"x", &"a".repeat(200)] {
        let res = app.request(
            "POST",
            "/predict",
            &[("X-Request-Id", bad)],
            br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
        );
        assert_eq!(res.status, 200, "{bad:?}: {}", res.text());
        let id = res.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a generated UUID replaces {bad:?}");
    }
}

#[test]
fn control_characters_in_request_id_never_come_back() {
    let app = spawn_app();
    // Written by hand: an HTTP client refuses to send such a header at all.
    let body = r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#;
    let res = app.raw(
        format!(
            "POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: esc\x1b[31mred\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    // actix's HTTP parser refuses control characters in headers outright; if one ever got
    // through, it must be replaced.
    assert!(res.status == 400 || res.status == 200, "{}", res.status);
    assert!(!res.header("x-request-id").unwrap_or("").contains('\x1b'));
}

#[test]
fn generated_request_ids_are_unique() {
    // 8 clients at once on 2 workers: ids made in the same millisecond on different threads.
    let app = crate::helpers::spawn_app_with(|s| s.http.workers = Some(2));
    let (clients, each) = (8, 50);
    let ids: Vec<String> = std::thread::scope(|scope| {
        let app = &app;
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    (0..each)
                        .map(|_| app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        clients * each,
        "every answer has its own id"
    );
    for id in &ids {
        let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("{id} is a UUID"));
        assert_eq!(uuid.get_version_num(), 7, "{id} is time-ordered (v7)");
    }
    // The audit store keeps each id once, on its own request's row.
    app.wait_for_rows((clients * each) as i64);
    let stored: std::collections::HashSet<String> = app
        .stored_rows("order by id")
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored.len(), clients * each);
    assert!(ids.iter().all(|id| stored.contains(id)));
}

#[test]
fn cors_is_off_by_default_and_answers_configured_origins() {
    let origin = ("Origin", "https://app.example.com");
    let app = spawn_app();
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json"), origin],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), None);

    let app = crate::helpers::spawn_app_with(|s| {
        s.http.cors_origins = vec!["https://app.example.com".into()]
    });
    // The browser's preflight.
    let res = app.request(
        "OPTIONS",
        "/predict",
        &[
            origin,
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // The request itself: answered, with the request id readable by the page.
    let res = app.request(
        "POST",
        "/predict",
        &[("Content-Type", "application/json"), origin],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        res.header("access-control-expose-headers")
            .is_some_and(|h| h.contains("x-request-id"))
    );
    // Another origin gets no CORS headers, so the browser withholds the answer.
    let res = app.request(
        "POST",
        "/predict",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://evil.example"),
        ],
        br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
    );
    assert_eq!(res.header("access-control-allow-origin"), None);
}
