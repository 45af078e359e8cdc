//! The SageMaker Data Capture export (`GET /audit?format=sagemaker`, `inferlog audit --format
//! sagemaker`): one JSON line per request, its inputs and outputs equal to `/audit`'s rows.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{TestApp, on_both_stores};

on_both_stores!(fn a_sagemaker_export_has_one_record_per_request_equal_to_the_rows(app) {
    let requests = send_every_kind_of_request(&app);
    let res = app.get("/audit?format=sagemaker");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/x-ndjson"));
    let text = res.text();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), requests, "one record per request");

    let mut rows_by_request: HashMap<String, Vec<Value>> = HashMap::new();
    for r in app.stored_rows("order by id") {
        rows_by_request.entry(r["request_id"].as_str().unwrap().to_string()).or_default().push(r);
    }
    let mut seen = Vec::new();
    for line in &lines {
        assert_eq!(line["eventVersion"], "0");
        let meta = &line["eventMetadata"];
        let id = meta["eventId"].as_str().unwrap();
        seen.push(id.to_string());
        let mut rows = rows_by_request.remove(id).unwrap_or_else(|| panic!("{id} has rows"));
        rows.sort_by_key(|r| r["item"].as_i64());
        assert_record_holds_the_rows(line, id, &rows);
    }
    assert!(rows_by_request.is_empty(), "requests without a record: {:?}", rows_by_request.keys());
    let encodings: Vec<&str> = lines
        .iter()
        .map(|l| l["captureData"]["endpointInput"]["encoding"].as_str().unwrap())
        .collect();
    assert!(encodings.contains(&"BASE64"), "the body that is not JSON is kept as base64");

    // The command line writes the same lines.
    let db = if app.database_url.starts_with("postgres") {
        app.database_url.clone()
    } else {
        app.db_path.display().to_string()
    };
    let cli = crate::shutdown::stdout_of(
        crate::shutdown::binary().args(["audit", "--format", "sagemaker", "--database-url", &db]),
    );
    assert_eq!(cli, text);
    // Newest first cannot gather a request's rows: refused with a reason.
    let res = app.get("/audit?format=sagemaker&order=desc");
    assert_eq!(res.status, 400);
    assert!(res.text().contains("order"), "{}", res.text());
});

/// Served batches, single rows, an OIP inference and rejections of every kind, all stored;
/// how many requests.
fn send_every_kind_of_request(app: &TestApp) -> usize {
    // 340 batches of 3 rows: the export's 1,000-row pages split a request.
    for i in 0..340 {
        let rows = json!([
            [5.1, 3.5, 1.4, 0.2],
            [6.7, 3.0, 5.2, 2.3],
            [4.0 + (i % 30) as f64 / 10.0, 3.0, 4.2, 1.5]
        ]);
        assert_eq!(
            app.post_predict(&json!({"features": rows}).to_string())
                .status,
            200
        );
    }
    let single = app.request(
        "POST",
        "/predict",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "order-9"),
        ],
        br#"{"features": [5.8, 2.7, 5.1, 9.9]}"#,
    );
    assert_eq!(single.status, 200);
    assert_eq!(app.post_predict(r#"{"features": [1, 2]}"#).status, 422);
    assert_eq!(app.post_predict("{not json").status, 400);
    let oip = json!({"id": "oip-7", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.3, 2.9, 5.6, 1.8]}]});
    assert_eq!(
        app.request(
            "POST",
            "/v2/models/iris/infer",
            &[],
            oip.to_string().as_bytes()
        )
        .status,
        200
    );
    // Rejections whose body is empty, or never read (a type refused before reading), and a
    // model that does not exist, whose body is kept as any other rejection's.
    assert_eq!(
        app.request(
            "POST",
            "/predict",
            &[("Content-Type", "application/json")],
            b""
        )
        .status,
        400
    );
    assert_eq!(
        app.request(
            "POST",
            "/predict",
            &[("Content-Type", "text/plain")],
            b"5.8,2.7"
        )
        .status,
        415
    );
    let unknown = app.request(
        "POST",
        "/models/nope/predict",
        &[("X-Request-Id", "to-nope")],
        br#"{"features": [1, 2, 3, 4]}"#,
    );
    assert_eq!(unknown.status, 404);
    let requests = 340 + 7;
    app.wait_for_rows(340 * 3 + 7);
    let nope = app.stored_rows("where client_request_id = 'to-nope'");
    assert_eq!(
        nope[0]["raw_body"], r#"{"features": [1, 2, 3, 4]}"#,
        "{nope:?}"
    );
    requests
}

/// One record of the export against the rows of its request `id`, in item order: the time,
/// the client's id, the writer, and the input and output as the request and its answer had
/// them (a rejected body as it came, in base64 where it is not text).
fn assert_record_holds_the_rows(line: &Value, id: &str, rows: &[Value]) {
    let meta = &line["eventMetadata"];
    let first = &rows[0];
    let time = meta["inferenceTime"].as_str().unwrap();
    assert_eq!(time.len(), 20, "{time}");
    assert_eq!(&time[..19], &first["received_at"].as_str().unwrap()[..19]);
    assert_eq!(
        meta.get("inferenceId"),
        first.get("client_request_id").filter(|c| !c.is_null()),
        "{line}"
    );
    let input = &line["captureData"]["endpointInput"];
    let output = &line["captureData"]["endpointOutput"];
    assert_eq!(input["mode"], "INPUT");
    assert_eq!(output["mode"], "OUTPUT");
    assert_eq!(output["encoding"], "JSON");
    let answer: Value = serde_json::from_str(output["data"].as_str().unwrap()).unwrap();
    assert_eq!(answer["writer"], first["writer"], "{line}");
    assert!(answer["writer"].is_string(), "{line}");
    if first["status"] == 200 {
        assert_eq!(input["encoding"], "JSON");
        let body: Value = serde_json::from_str(input["data"].as_str().unwrap()).unwrap();
        let features: Vec<&Value> = rows.iter().map(|r| &r["features"]).collect();
        assert_eq!(body, json!({ "features": features }), "{id}");
        let labels: Vec<&Value> = rows.iter().map(|r| &r["label"]).collect();
        let predictions: Vec<&Value> = rows.iter().map(|r| &r["prediction"]).collect();
        assert_eq!(answer["labels"], json!(labels), "{id}");
        assert_eq!(answer["prediction"], json!(predictions), "{id}");
        assert_eq!(answer["model"], first["model"]);
    } else {
        assert_eq!(answer["error"]["code"], first["error_code"], "{id}");
        let raw = first["raw_body"].as_str().unwrap_or("");
        let data = input["data"].as_str().unwrap();
        if data.is_empty() {
            assert_eq!(input["encoding"], "JSON", "no body is not BASE64: {line}");
        }
        match input["encoding"].as_str().unwrap() {
            "JSON" => assert_eq!(data, raw),
            "BASE64" => assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap(),
                raw.as_bytes()
            ),
            other => panic!("encoding {other}"),
        }
    }
}
