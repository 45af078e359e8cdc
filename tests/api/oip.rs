//! The Open Inference Protocol v2 (REST) routes: metadata, health, and inference served and
//! audited like `/predict`, with the protocol's error body.

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, metric_value, on_both_stores, shipped_version, spawn_app, spawn_app_with,
};

/// `POST` with no `Content-Type`, as tritonclient sends it.
fn infer(app: &TestApp, path: &str, body: &Value) -> crate::helpers::Response {
    app.request("POST", path, &[], body.to_string().as_bytes())
}

/// An OIP error: a string `error` naming the problem, inferlog's `code` and request id.
fn assert_oip_error(res: &crate::helpers::Response, status: u16, code: &str, needle: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    let body = res.json();
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is a string: {body}"));
    assert!(message.contains(needle), "{needle:?} in {message:?}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(
        body["request_id"].as_str(),
        res.header("x-request-id"),
        "{body}"
    );
}

#[test]
fn metadata_and_health_follow_the_protocol() {
    let app = spawn_app();
    let v = shipped_version();
    let server = app.get("/v2").json();
    assert_eq!(server["name"], "inferlog");
    assert_eq!(server["extensions"], json!([]));
    assert_eq!(app.get("/v2/health/live").json(), json!({"live": true}));
    assert_eq!(app.get("/v2/health/ready").json(), json!({"ready": true}));
    for path in [
        "/v2/models/iris".to_string(),
        format!("/v2/models/iris/versions/{v}"),
    ] {
        let m = app.get(&path).json();
        assert_eq!(m["name"], "iris", "{path}");
        assert_eq!(m["versions"], json!([v]));
        assert_eq!(m["inputs"][0]["shape"], json!([-1, 4]));
        assert_eq!(
            m["outputs"][0],
            json!({"name": "prediction", "datatype": "INT64", "shape": [-1]})
        );
        assert_eq!(
            m["outputs"][1],
            json!({"name": "label", "datatype": "BYTES", "shape": [-1]})
        );
        let ready = app.get(&format!("{path}/ready"));
        assert_eq!(ready.status, 200);
        assert_eq!(ready.json(), json!({"name": "iris", "ready": true}));
    }
    let res = app.get("/v2/models/iris/versions/0000/ready");
    assert_oip_error(&res, 404, "not_found", "no version \"0000\"");
    assert_oip_error(&app.get("/v2/models/nope"), 404, "unknown_model", "nope");
    assert_oip_error(
        &app.get("/v2/models/nope/ready"),
        404,
        "unknown_model",
        "nope",
    );
}

on_both_stores!(fn inference_is_answered_and_audited_like_predict(app) {
    let rows = json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]);
    let want = app.post_predict(&json!({"features": rows}).to_string()).json();
    let matrix = json!({"id": "oip-1", "inputs": [
        {"name": "input", "shape": [3, 4], "datatype": "FP32", "data": rows}]});
    let res = infer(&app, "/v2/models/iris/infer", &matrix);
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(r["id"], "oip-1");
    assert_eq!(r["model_name"], "iris");
    assert_eq!(r["model_version"], shipped_version());
    assert_eq!(r["outputs"][0], json!({"name": "prediction", "datatype": "INT64", "shape": [3], "data": want["prediction"]}));
    assert_eq!(r["outputs"][1], json!({"name": "label", "datatype": "BYTES", "shape": [3], "data": want["labels"]}));
    assert_eq!(r["parameters"]["request_id"].as_str(), res.header("x-request-id"));
    assert_eq!(res.header("x-client-request-id"), Some("oip-1"));

    // One [N] tensor per feature, flat data, one output asked for, at the served version.
    let per_feature = json!({"id": "oip-2", "inputs": [
        {"name": "petal_width", "shape": [3], "datatype": "FP64", "data": [0.2, 2.3, 1.5]},
        {"name": "sepal_length", "shape": [3], "datatype": "FP64", "data": [5.1, 6.7, 5.9]},
        {"name": "petal_length", "shape": [3], "datatype": "FP64", "data": [1.4, 5.2, 4.2]},
        {"name": "sepal_width", "shape": [3], "datatype": "FP64", "data": [3.5, 3.0, 3.0]}],
        "outputs": [{"name": "label", "parameters": {"binary_data": false}}],
        "parameters": {"binary_data_output": false, "priority": 1}});
    let path = format!("/v2/models/iris/versions/{}/infer", shipped_version());
    let res = infer(&app, &path, &per_feature);
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["data"], want["labels"]);

    refusals_have_the_protocols_body(&app, &matrix);
    assert_audited_and_metered_like_predict(&app, &rows, &want);
});

/// Tensors of the wrong shape or type, binary data, unknown models and versions, bad JSON and
/// other content types: each refused with the protocol's error body.
fn refusals_have_the_protocols_body(app: &TestApp, matrix: &Value) {
    // Refusals: the protocol's error body, and a rejected row on record.
    let bad_shape =
        json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]});
    assert_oip_error(
        &infer(app, "/v2/models/iris/infer", &bad_shape),
        422,
        "invalid_tensor",
        "[N, 4]",
    );
    let bools = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BOOL", "data": [true, false, true, true]}]});
    assert_oip_error(
        &infer(app, "/v2/models/iris/infer", &bools),
        422,
        "unsupported_datatype",
        "BOOL",
    );
    // Integer tensors hold numbers too, as integers do in /predict.
    let ints = json!({"id": "oip-ints", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [6, 3, 5, 2]}]});
    let res = infer(app, "/v2/models/iris/infer", &ints);
    assert_eq!(res.status, 200, "{}", res.text());
    let as_floats = app
        .post_predict(r#"{"features": [6.0, 3.0, 5.0, 2.0]}"#)
        .json();
    assert_eq!(res.json()["outputs"][0]["data"], as_floats["prediction"]);
    let res = app.request(
        "POST",
        "/v2/models/iris/infer",
        &[("Inference-Header-Content-Length", "60")],
        b"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":16}}]}\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x00\x00\x80@",
    );
    assert_oip_error(&res, 422, "binary_data_unsupported", "binary");
    assert_oip_error(
        &infer(app, "/v2/models/nope/infer", matrix),
        404,
        "unknown_model",
        "nope",
    );
    assert_oip_error(
        &infer(app, "/v2/models/iris/versions/0000/infer", matrix),
        404,
        "not_found",
        "0000",
    );
    let res = app.request("POST", "/v2/models/iris/infer", &[], b"{\"inputs\": [");
    assert_oip_error(&res, 400, "malformed_json", "JSON");
    // Content-Type as /predict takes it: none or JSON is read, a declared other type is a 415
    // with the same code.
    let mut typed = matrix.clone();
    typed["id"] = json!("oip-3");
    let res = app.request(
        "POST",
        "/v2/models/iris/infer",
        &[("Content-Type", "application/json; charset=utf-8")],
        typed.to_string().as_bytes(),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let res = app.request(
        "POST",
        "/v2/models/iris/infer",
        &form,
        matrix.to_string().as_bytes(),
    );
    assert_oip_error(&res, 415, "unsupported_media_type", "application/json");
    let predict = app.request(
        "POST",
        "/predict",
        &form,
        br#"{"features": [5.1, 3.5, 1.4, 0.2]}"#,
    );
    assert_eq!(predict.status, 415, "{}", predict.text());
    assert_eq!(predict.error_code(), "unsupported_media_type");
}

/// The rows of the inferences and refusals above, and the metrics of the route.
fn assert_audited_and_metered_like_predict(app: &TestApp, rows: &Value, want: &Value) {
    // Served: 3 + 3 + 3 + 3 rows, 1 + 1 integer rows; refused: 7 requests (one row each, the
    // /predict one among them).
    app.wait_for_rows(21);
    let by_id =
        |id: &str| app.stored_rows(&format!("where client_request_id = '{id}' order by item"));
    let oip1 = by_id("oip-1");
    assert_eq!(oip1.len(), 3);
    for (i, r) in oip1.iter().enumerate() {
        assert_eq!(r["status"], 200);
        assert_eq!(r["label"], want["labels"][i]);
        assert_eq!(r["features"], rows[i]);
    }
    assert_eq!(by_id("oip-2").len(), 3);
    // Rejections are not waited for, and two writers may commit them in either order.
    let mut codes: Vec<String> = app
        .stored_rows("where status <> 200")
        .iter()
        .map(|r| r["error_code"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    let mut want = [
        "invalid_tensor",
        "unsupported_datatype",
        "binary_data_unsupported",
        "unknown_model",
        "not_found",
        "malformed_json",
        "unsupported_media_type",
        "unsupported_media_type",
    ];
    want.sort();
    assert_eq!(codes, want);
    // Metered like /predict: per route, with rejections by reason.
    let m = app.get("/metrics").text();
    let served = r#"inferlog_http_requests_total{route="/v2/models/{name}/infer",method="POST",status="200"}"#;
    assert_eq!(metric_value(&m, served), Some(3.0), "{m}");
    assert!(m.contains(r#"reason="invalid_tensor""#), "{m}");
}

/// Every error under `/v2`, on a route the server has or not, whatever the status, is the
/// protocol's `{"error": "<string>"}`: the body tritonclient and the kserve client parse.
#[test]
fn every_error_under_v2_has_the_protocols_body() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 4096);
    for path in [
        "/v2/models/iris/config",
        "/v2/models/iris/stats",
        "/v2/models/iris/versions/x/config",
        "/v2/nothing",
    ] {
        assert_oip_error(&app.get(path), 404, "not_found", "no route for GET");
    }
    let res = app.request("POST", "/v2/repository/index", &[], b"{}");
    assert_oip_error(&res, 404, "not_found", "no route for POST");
    let res = app.get("/v2/models/iris/infer");
    assert_oip_error(&res, 405, "method_not_allowed", "");
    let res = app.request("DELETE", "/v2/models/iris", &[], b"");
    assert_oip_error(&res, 405, "method_not_allowed", "");
    let big = vec![b' '; 8192];
    let res = app.request("POST", "/v2/models/iris/infer", &[], &big);
    assert_oip_error(&res, 413, "body_too_large", "4096");
    let res = app.request(
        "POST",
        "/v2/models/iris/infer",
        &[("Content-Type", "text/plain")],
        b"{}",
    );
    assert_oip_error(&res, 415, "unsupported_media_type", "text/plain");
    // Outside /v2 the errors keep inferlog's own shape.
    let res = app.get("/v2x/models");
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["error"]["code"], "not_found", "{}", res.text());
}

/// Tensors a client could not have meant are refused as `/predict` refuses them, and nothing
/// is served or audited as served: values outside the datatype's range, and nested rows that
/// do not nest as the shape says (which would otherwise be re-read as rows never sent).
#[test]
fn malformed_tensors_are_refused_not_reinterpreted() {
    let app = spawn_app();
    let path = "/v2/models/iris/infer";
    let tensor = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]});
    let cases = [
        (
            tensor(json!([1, 4]), "FP32", json!([5.1, 3.5, 1.4, 1e39])),
            "outside FP32's range",
        ),
        (
            tensor(json!([1, 4]), "FP16", json!([5.1, 3.5, 1.4, 70000])),
            "outside FP16's range",
        ),
        (
            tensor(json!([1, 4]), "UINT8", json!([5, 3, 1, -1])),
            "outside UINT8's range",
        ),
        (
            tensor(json!([1, 4]), "INT8", json!([5, 3, 1, 300])),
            "outside INT8's range",
        ),
        // Ragged rows: 3 + 5 numbers, 8 in all, as [2, 4] asks.
        (
            tensor(
                json!([2, 4]),
                "FP64",
                json!([[5.1, 3.5, 1.4], [0.2, 6.7, 3.0, 5.2, 2.3]]),
            ),
            "3 elements where the shape says 4 at [0]",
        ),
        // Four rows of two for a shape of two rows of four.
        (
            tensor(
                json!([2, 4]),
                "FP64",
                json!([[5.1, 3.5], [1.4, 0.2], [6.7, 3.0], [5.2, 2.3]]),
            ),
            "4 elements where the shape says 2 at its top level",
        ),
        (
            tensor(json!([1, 4]), "FP64", json!([[5.1, 3.5, [1.4], 0.2]])),
            "an array deeper than the shape at [0][2]",
        ),
    ];
    for (body, needle) in &cases {
        let code = if needle.contains("range") {
            "invalid_feature"
        } else {
            "invalid_tensor"
        };
        assert_oip_error(&infer(&app, path, body), 422, code, needle);
    }
    // In range and nested as shaped: served.
    let ok = infer(
        &app,
        path,
        &tensor(
            json!([2, 4]),
            "FP32",
            json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]),
        ),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    app.wait_for_rows(cases.len() as i64 + 2);
    let served = crate::helpers::db_json(
        &app.db_path,
        "select json_object('n', count(*)) from prediction where status = 200",
    );
    assert_eq!(served[0]["n"], 2, "only the well-formed rows are served");
}
