//! A regression model served beside the iris classifier: its numbers through every path a
//! class takes (the answer, the audit row, the `served` view, `/audit`, the exports, the Open
//! Inference Protocol, the metrics and the log line), and its refusals.

use inferlog::model::data::{Dataset, load_dataset};
use inferlog::model::{Answers, Artifact, Matrix, Model};
use serde_json::{Value, json};

use crate::helpers::{metric_value, on_both_stores, regression_model, with_regressor};

/// The first `n` rows of the diabetes data and what the model, loaded here, answers for them.
fn rows_and_answers(n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let data = load_dataset(Dataset::Diabetes);
    let cols = data.feature_names.len();
    let rows: Vec<Vec<f64>> = data.x.chunks(cols).take(n).map(<[f64]>::to_vec).collect();
    let path = regression_model().to_path_buf();
    let model = Model::new(Artifact::load(&path).unwrap(), path);
    let x = Matrix::new(n, cols, rows.concat(), false).unwrap();
    let Answers::Values(values) = model.predict(&x).unwrap() else {
        panic!("a regressor answers numbers")
    };
    (rows, values)
}

on_both_stores!(fn a_regressors_numbers_reach_the_answer_the_audit_row_and_every_export(app)
    with |s| with_regressor(s), {
    let (rows, expected) = rows_and_answers(3);
    let res = app.post_json("/models/diabetes/predict", &json!({"features": rows}).to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["prediction"], json!(expected), "smartcore's own answers, to the bit");
    assert!(body.get("labels").is_none() && body.get("probabilities").is_none(), "{body}");
    let id = body["request_id"].as_str().unwrap().to_string();
    // The classifier beside it answers as before.
    let iris = app.post_predict(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#).json();
    assert_eq!(iris["labels"], json!(["setosa"]));
    app.wait_for_rows(4);

    // The table, as the sqlite3 shell or psql reads it.
    let stored = app.rows_of(&id);
    assert_eq!(stored.len(), 3);
    for (row, v) in stored.iter().zip(&expected) {
        assert_eq!(row["value"], json!(v), "{row}");
        assert_eq!(row["prediction"], Value::Null, "{row}");
        assert_eq!(row["label"], Value::Null, "{row}");
        assert_eq!(row["probabilities"], Value::Null, "{row}");
    }
    let iris_rows = app.rows_of(iris["request_id"].as_str().unwrap());
    assert_eq!(iris_rows[0]["value"], Value::Null, "a classifier's row has no value");
    let served: Vec<Value> = app
        .store_json(
            ["json_object('v', value)", "json_build_object('v', value)"],
            &format!("served where request_id = '{id}' order by item"),
        )
        .into_iter()
        .map(|r| r["v"].clone())
        .collect();
    assert_eq!(json!(served), json!(expected), "the served view has the value");

    // /audit and the exports.
    let page = app.audit_page(&format!("request_id={id}&order=asc"));
    let from_page: Vec<&Value> = page.records.iter().map(|r| &r["value"]).collect();
    assert_eq!(json!(from_page), json!(expected));
    let csv = app.get(&format!("/audit?request_id={id}&order=asc&format=csv")).text();
    for (line, v) in csv.lines().skip(1).zip(&expected) {
        assert!(line.ends_with(&format!(",{v}")), "{line} ends with {v}");
        assert!(line.contains(",,,200,"), "no class, label or error: {line}");
    }
    let jsonl = app.get(&format!("/audit?request_id={id}&order=asc&format=jsonl")).text();
    let from_jsonl: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].clone())
        .collect();
    assert_eq!(json!(from_jsonl), json!(expected));
    let capture = app.get(&format!("/audit?request_id={id}&format=sagemaker")).text();
    let line: Value = serde_json::from_str(capture.lines().next().unwrap()).unwrap();
    let output: Value = serde_json::from_str(
        line["captureData"]["endpointOutput"]["data"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(output["prediction"], json!(expected), "{output}");
    assert!(output.get("labels").is_none(), "{output}");

    // The summary counts the regressor's rows (without labels).
    let summary = app.get("/audit/summary?model=diabetes").json();
    assert_eq!(summary["rows"], json!(3), "{summary}");
    assert_eq!(summary["by_label"], json!([{"key": null, "count": 3}]), "{summary}");
});

#[test]
fn the_models_list_the_inference_protocol_the_metrics_and_the_log_line_know_a_regressor() {
    let app = crate::helpers::spawn_app_with(with_regressor);
    let models = app.get("/models/diabetes").json();
    assert_eq!(models["task"], "regression", "{models}");
    assert_eq!(models["class_names"], json!([]));
    assert!(
        models["training"]["held_out_errors"]["rmse"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(models["training"].get("held_out_accuracy").is_none());
    assert_eq!(app.get("/models/iris").json()["task"], "classification");

    let meta = app.get("/v2/models/diabetes").json();
    assert_eq!(
        meta["outputs"],
        json!([{"name": "prediction", "datatype": "FP64", "shape": [-1]}]),
        "one output, a number per row"
    );
    let (rows, expected) = rows_and_answers(2);
    let infer =
        json!({"inputs": [{"name": "input", "shape": [2, 10], "datatype": "FP64", "data": rows}]});
    let res = app.post_json("/v2/models/diabetes/infer", &infer.to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    let outputs = res.json()["outputs"].clone();
    assert_eq!(
        outputs,
        json!([{"name": "prediction", "datatype": "FP64", "shape": [2], "data": expected}])
    );
    let asked = json!({"inputs": infer["inputs"], "outputs": [{"name": "label"}]});
    let res = app.post_json("/v2/models/diabetes/infer", &asked.to_string());
    assert_eq!(res.status, 422, "{}", res.text());
    assert!(res.text().contains("\\\"prediction\\\""), "{}", res.text());

    let body = app
        .post_json(
            "/models/diabetes/predict",
            &json!({"features": rows[0]}).to_string(),
        )
        .json();
    let line = app.wait_for_log_line(&["prediction served", body["request_id"].as_str().unwrap()]);
    assert!(
        line.contains(&format!("prediction: [{}]", expected[0])),
        "{line}"
    );
    assert!(
        !line.contains("labels:") && !line.contains("confidence:"),
        "{line}"
    );

    let exposition = app.get("/metrics").text();
    let served = metric_value(
        &exposition,
        r#"inferlog_predictions_total{model="diabetes",label=""}"#,
    );
    assert_eq!(served, Some(3.0), "{exposition}");
}

/// Serves a linear regression on the diabetes data as `linear`.
fn with_linear(s: &mut inferlog::config::Settings) {
    use inferlog::model::train::{TrainOptions, train};
    let opts = TrainOptions {
        name: "linear".into(),
        algorithm: inferlog::model::Algorithm::LinearRegression,
        seed: 1,
        test_size: 0.2,
        created_at: "2026-11-27T00:00:00Z".into(),
    };
    let artifact = train(&load_dataset(Dataset::Diabetes), &opts).unwrap();
    artifact.save(&s.models.join("linear.json")).unwrap();
}

on_both_stores!(fn an_answer_that_overflows_is_refused_and_audited_as_refused(app)
    with |s| with_linear(s), {
    let res = app.post_json(
        "/models/linear/predict",
        &json!({"features": [vec![0.01; 10], vec![1e308; 10]]}).to_string(),
    );
    assert_eq!(res.status, 422, "{}", res.text());
    assert_eq!(res.error_code(), "answer_not_finite");
    assert!(res.text().contains("row 1"), "{}", res.text());
    app.wait_for_rows(1);
    let rows = app.stored_rows("where model = 'linear'");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], 422);
    assert_eq!(rows[0]["error_code"], "answer_not_finite");
    assert_eq!(rows[0]["value"], Value::Null);
    // Finite rows still answer.
    let ok = app.post_json("/models/linear/predict", r#"{"features": [0.01,0,0,0,0,0,0,0,0,0]}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.json()["prediction"][0].as_f64().unwrap().is_finite());
});
