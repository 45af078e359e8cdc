//! Request ids: the server's are unique, a client's `X-Request-Id` is kept beside it. Clients
//! reuse theirs (retries do), so feedback and lookups by a client's id must name one request
//! or say which ones it could mean.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::on_both_stores;
use crate::helpers::{TestApp, db_at_migration, db_exec, db_json, spawn_app, spawn_app_with};

const SETOSA: &str = r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#;

fn predict_as(app: &TestApp, client_id: &str) -> crate::helpers::Response {
    let res = app.request(
        "POST",
        "/predict",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", client_id),
        ],
        SETOSA.as_bytes(),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    res
}

fn feedback(app: &TestApp, id: &str, label: &str) -> crate::helpers::Response {
    app.post_json(
        "/feedback",
        &json!({"request_id": id, "item": 0, "label": label}).to_string(),
    )
}

on_both_stores!(fn a_reused_client_id_names_three_requests_and_feedback_on_it_is_409(app) {
    // A client retries with the same id three times.
    let mut server_ids = Vec::new();
    for _ in 0..3 {
        let res = predict_as(&app, "retry-1");
        let id = res.header("x-request-id").unwrap().to_string();
        assert_ne!(id, "retry-1", "the server's id is its own");
        assert_eq!(res.header("x-client-request-id"), Some("retry-1"));
        let body = res.json();
        assert_eq!(body["request_id"], id.as_str());
        assert_eq!(body["client_request_id"], "retry-1");
        server_ids.push(id);
    }
    assert_eq!(server_ids.iter().collect::<HashSet<_>>().len(), 3);

    // Feedback on the client's id cannot tell which prediction it means.
    let r = feedback(&app, "retry-1", "setosa");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_code(), "ambiguous_request_id");
    let candidates: Vec<String> = r.json()["error"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(candidates, server_ids, "oldest first");
    for id in &server_ids {
        assert!(r.text().contains(id.as_str()), "{}", r.text());
    }
    // So does a lookup.
    assert_eq!(app.get("/audit/retry-1").status, 409);

    // Feedback on one server id labels exactly one prediction.
    let r = feedback(&app, &server_ids[1], "setosa");
    assert_eq!(r.status, 201, "{}", r.text());
    let perf = app.get("/monitor/performance?model=iris").json();
    assert_eq!(perf["labelled"], 1);
    assert_eq!(perf["accuracy"], 1.0);

    // Each server id names its own request; the client's id finds all three.
    let one = app.get(&format!("/audit/{}", server_ids[0])).json();
    assert_eq!(one["records"].as_array().unwrap().len(), 1);
    assert_eq!(one["client_request_id"], "retry-1");
    let page = app.audit_page("client_request_id=retry-1&order=asc");
    assert_eq!(page.request_ids(), server_ids);
    for r in &page.records {
        assert_eq!(r["client_request_id"], "retry-1");
    }
    // The log line of each carries both.
    app.wait_for_log_line(&[
        "prediction served",
        &server_ids[2],
        "client_request_id",
        "retry-1",
    ]);
});

#[test]
fn a_client_id_sent_once_names_its_request() {
    let app = spawn_app();
    let res = predict_as(&app, "order-77");
    let server_id = res.header("x-request-id").unwrap().to_string();
    let r = feedback(&app, "order-77", "versicolor");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["request_id"],
        server_id.as_str(),
        "stored under the server's id"
    );
    let rows = app.db_json("select json_object('r', request_id, 'l', label) from feedback");
    assert_eq!(rows, vec![json!({"r": server_id, "l": "versicolor"})]);
    let looked_up = app.get("/audit/order-77").json();
    assert_eq!(looked_up["request_id"], server_id.as_str());
    assert_eq!(looked_up["records"].as_array().unwrap().len(), 1);
    // Without a client id, no such field or header.
    let res = app.post_predict(SETOSA);
    assert_eq!(res.header("x-client-request-id"), None);
    assert_eq!(res.json().get("client_request_id"), None);
}

#[test]
fn the_migration_carries_reused_ids_over_as_distinct_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    db_at_migration(&db, 4);
    // As an older release stored them: "dup" sent by two requests of two rows each (the
    // second arriving later), a server-made UUID v7, a one-off client id; feedback on "dup".
    let server = "0192f3a4-5b6c-7d8e-9f01-23456789abcd";
    db_exec(
        &db,
        &format!(
            "insert into prediction (request_id, item, received_at, model, status, latency_us, label, prediction, features) values
             ('dup', 0, '2026-11-01T10:00:00.000001Z', 'iris', 200, 5, 'setosa', 0, '[1,2,3,4]'),
             ('dup', 1, '2026-11-01T10:00:00.000001Z', 'iris', 200, 5, 'setosa', 0, '[1,2,3,4]'),
             ('{server}', 0, '2026-11-01T10:00:01.000000Z', 'iris', 200, 5, 'setosa', 0, '[1,2,3,4]'),
             ('dup', 0, '2026-11-01T10:00:02.000000Z', 'iris', 200, 5, 'virginica', 2, '[1,2,3,4]'),
             ('dup', 1, '2026-11-01T10:00:02.000000Z', 'iris', 200, 5, 'virginica', 2, '[1,2,3,4]'),
             ('mine', 0, '2026-11-01T10:00:03.000000Z', 'iris', 422, 5, null, null, null);
             insert into feedback (request_id, item, label, received_at) values
             ('dup', 0, 'setosa', '2026-11-01T11:00:00.000000Z');"
        ),
    );
    let app =
        spawn_app_with(|s| s.database_url = inferlog::audit::url::DatabaseUrl::sqlite_file(&db));
    let rows: Vec<Value> = db_json(
        &db,
        "select json_object('id', id, 'r', request_id, 'c', client_request_id, 'i', item) \
         from prediction order by id",
    );
    let pairs: Vec<(String, Value)> = rows
        .iter()
        .map(|r| (r["r"].as_str().unwrap().to_string(), r["c"].clone()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("dup".into(), json!("dup")),
            ("dup".into(), json!("dup")),
            (server.into(), Value::Null),
            ("dup~4".into(), json!("dup")),
            ("dup~4".into(), json!("dup")),
            ("mine".into(), json!("mine")),
        ]
    );
    // The old feedback still labels the first request only (before, it labelled both).
    let perf = app.get("/monitor/performance?model=iris").json();
    assert_eq!(perf["labelled"], 1);
    assert_eq!(perf["accuracy"], 1.0);
    // "dup" names the first request, "dup~4" the second; each is one request now.
    assert_eq!(
        app.get("/audit/dup").json()["records"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = feedback(&app, "dup", "setosa");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["replaced"], "setosa");
    assert_eq!(feedback(&app, "dup~4", "virginica").status, 201);
    let perf = app.get("/monitor/performance?model=iris").json();
    assert_eq!(perf["labelled"], 2);
    // (request_id, item) is unique from now on.
    let dupes = db_json(
        &db,
        "select json_object('n', count(*)) from (select 1 from prediction group by request_id, item having count(*) > 1)",
    );
    assert_eq!(dupes[0]["n"], 0);
    let unique = db_json(
        &db,
        "select json_object('u', \"unique\") from pragma_index_list('prediction') where name = 'prediction_request'",
    );
    assert_eq!(unique[0]["u"], 1);
}

/// The client ids that are routes of their own (`summary`, `timeseries`) reach their rows by
/// `/audit?client_request_id=`, as the README says.
#[test]
fn client_ids_named_like_audit_routes_are_found_by_the_filter() {
    let app = spawn_app();
    for (n, id) in ["summary", "timeseries"].into_iter().enumerate() {
        let res = app.request(
            "POST",
            "/predict",
            &[("Content-Type", "application/json"), ("X-Request-Id", id)],
            br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#,
        );
        assert_eq!(res.status, 200, "{}", res.text());
        let server_id = res.json()["request_id"].as_str().unwrap().to_string();
        app.wait_for_rows(n as i64 + 1);
        let page = app.get(&format!("/audit?client_request_id={id}"));
        assert_eq!(page.status, 200, "{}", page.text());
        let records = page.json()["records"].as_array().unwrap().clone();
        assert_eq!(records.len(), 1, "{}", page.text());
        assert_eq!(records[0]["request_id"], server_id.as_str());
        // The route of that name answers as the route.
        let route = app.get(&format!("/audit/{id}"));
        assert_eq!(route.status, 200, "{}", route.text());
        assert!(route.json().get("records").is_none(), "{}", route.text());
    }
}
