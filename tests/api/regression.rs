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

on_both_stores!(fn feedback_by_value_is_stored_and_a_truth_of_the_wrong_kind_refused(app)
    with |s| with_regressor(s), {
    let (rows, _) = rows_and_answers(2);
    let res = app.post_json("/models/diabetes/predict", &json!({"features": rows}).to_string());
    let id = res.json()["request_id"].as_str().unwrap().to_string();
    let iris = app.post_predict(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    let iris_id = iris.json()["request_id"].as_str().unwrap().to_string();
    app.wait_for_rows(3);
    let send = |body: String| app.post_json("/feedback", &body);

    let r = send(json!({"request_id": id, "item": 1, "value": 230.5}).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let stored = r.json();
    assert_eq!(stored["value"], json!(230.5), "{stored}");
    assert_eq!(stored["replaced"], Value::Null, "{stored}");
    assert!(stored.get("label").is_none(), "{stored}");
    let r = send(json!({"request_id": id, "item": 1, "value": -12.25}).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["replaced"], json!(230.5), "{}", r.text());

    // Each refusal names what was wrong, and stores nothing.
    let refused = [
        (json!({"request_id": id, "label": "setosa"}).to_string(), 422, "wrong_truth_kind", "value"),
        (json!({"request_id": iris_id, "value": 1.0}).to_string(), 422, "wrong_truth_kind", "label"),
        (format!(r#"{{"request_id": "{id}", "value": NaN}}"#), 422, "non_finite_value", "finite"),
        (format!(r#"{{"request_id": "{id}", "value": Infinity}}"#), 422, "non_finite_value", "finite"),
        (format!(r#"{{"request_id": "{id}", "value": -1e400}}"#), 422, "non_finite_value", "finite"),
        (json!({"request_id": id, "value": 1.0, "label": "x"}).to_string(), 422, "invalid_body", "exactly one"),
        (json!({"request_id": id}).to_string(), 422, "invalid_body", "exactly one"),
        (json!({"request_id": id, "value": "230"}).to_string(), 422, "invalid_body", "value"),
        (json!({"request_id": "no-such-request", "value": 1.0}).to_string(), 404, "not_found", "no-such-request"),
    ];
    for (body, status, code, names) in refused {
        let r = send(body.clone());
        assert_eq!((r.status, r.error_code().as_str()), (status, code), "{body}: {}", r.text());
        assert!(r.text().contains(names), "{body}: {}", r.text());
    }
    let kept = app.store_json(
        [
            "json_object('request_id', request_id, 'item', item, 'label', label, 'value', value)",
            "json_build_object('request_id', request_id, 'item', item, 'label', label, 'value', value)",
        ],
        "feedback order by id",
    );
    assert_eq!(
        json!(kept),
        json!([
            {"request_id": id, "item": 1, "label": null, "value": 230.5},
            {"request_id": id, "item": 1, "label": null, "value": -12.25},
        ]),
        "both values, and nothing of the refused bodies"
    );
});

// Answers, true values sent as feedback (a tenth first sent wrong, one by 1e9, then
// replaced) and the regression report from rows (a range inside the traffic's minutes), from
// rollups (no range) and from rollups with edge rows (a range that starts inside a minute),
// and from the rollups again once rebuilt from the rows: each equals
// scikit-learn's metrics on the pairs (`tests/python/regression_metrics_check.py`).
on_both_stores!(fn regression_performance_equals_scikit_learn_from_rows_and_rollups(app)
    with |s| with_regressor(s), {
    let Some(python) = crate::clients::python_with("sklearn") else {
        return;
    };
    let data = load_dataset(Dataset::Diabetes);
    let cols = data.feature_names.len();
    let inferlog::model::data::Target::Values(truths) = &data.target else {
        panic!("diabetes has numbers")
    };
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut ids = Vec::new();
    for request in 0..3 {
        let rows: Vec<&[f64]> = data.x.chunks(cols).skip(300 + request * 40).take(40).collect();
        let res = app.post_json("/models/diabetes/predict", &json!({"features": rows}).to_string());
        assert_eq!(res.status, 200, "{}", res.text());
        let body = res.json();
        let id = body["request_id"].as_str().unwrap().to_string();
        for (item, answer) in body["prediction"].as_array().unwrap().iter().enumerate() {
            let truth = truths[300 + request * 40 + item];
            if item % 10 == 3 {
                // One mistake far larger than every other truth: once replaced, the rollups'
                // sums must hold the others' figures as they were.
                let typo = if request == 0 && item == 3 { 1e9 } else { 50.5 };
                let wrong = json!({"request_id": id, "item": item, "value": truth + typo});
                assert_eq!(app.post_json("/feedback", &wrong.to_string()).status, 201);
            }
            let right = json!({"request_id": id, "item": item, "value": truth});
            let r = app.post_json("/feedback", &right.to_string());
            assert_eq!(r.status, 201, "{}", r.text());
            pairs.push((answer.as_f64().unwrap(), truth));
        }
        ids.push(id);
    }
    // A classifier's answer with a label beside them changes nothing of the regressor's.
    let iris = app.post_predict(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#).json();
    let fb = json!({"request_id": iris["request_id"], "label": "setosa"});
    assert_eq!(app.post_json("/feedback", &fb.to_string()).status, 201);

    let time = |id: &str, last: bool| {
        let rows = app.rows_of(id);
        let row = if last { rows.last() } else { rows.first() };
        chrono::DateTime::parse_from_rfc3339(row.unwrap()["received_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let stamp = |t: chrono::DateTime<chrono::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let (first, last) = (time(&ids[0], false), time(&ids[2], true) + chrono::Duration::microseconds(1));
    let report = |query: &str, source: &str| {
        let res = app.get(&format!("/monitor/performance?model=diabetes{query}"));
        assert_eq!(res.status, 200, "{}", res.text());
        let body = res.json();
        assert_eq!(body["source"], source, "{body}");
        assert!(body.get("accuracy").is_none(), "{body}");
        body
    };
    let live = report("", "rollups");
    // The rollups rebuilt from the rows and feedback give the same figures.
    let db = crate::rollups::store_arg(&app);
    crate::rollups::inferlog(&["audit", "rebuild-rollups", "--database-url", &db]);
    let reports = json!({
        "rollups": live,
        "rebuilt": report("", "rollups"),
        "rows": report(&format!("&since={}&until={}", stamp(first), stamp(last)), "rows"),
        "edges": report(&format!("&since={}", stamp(first)), "rollups_and_edge_rows"),
    });
    let file = app.dir.path().join("regression-reports.json");
    std::fs::write(&file, json!({"pairs": pairs, "reports": reports}).to_string()).unwrap();
    let out = crate::clients::run_script(
        &python,
        "regression_metrics_check.py",
        &[file.to_str().unwrap()],
    );
    assert!(out.contains("all checks passed"), "{out}");
    for checked in ["rollups (rollups)", "rebuilt (rollups)", "rows (rows)", "edges (rollups_and_edge_rows)"] {
        assert!(out.contains(checked), "{checked}: {out}");
    }
    // The classifier's report is the classifier's.
    let iris = app.get("/monitor/performance?model=iris").json();
    assert_eq!((iris["labelled"].clone(), iris["accuracy"].clone()), (json!(1), json!(1.0)), "{iris}");
});

// The drift of a regressor's answers against its training output: the share of answers in
// each output bin (counted here from the answers and the reported edges), their mean and a KS
// test, the same from the rollups (no range) and from the rows (a range inside the traffic's
// minutes).
on_both_stores!(fn a_regressors_output_drift_counts_its_answers_from_rows_and_rollups(app)
    with |s| with_regressor(s), {
    let (rows, answers) = rows_and_answers(150);
    let res = app.post_json("/models/diabetes/predict", &json!({"features": rows}).to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    let id = res.json()["request_id"].as_str().unwrap().to_string();
    let stored = app.rows_of(&id);
    let (first, last) = (&stored[0]["received_at"], &stored[149]["received_at"]);
    let last = chrono::DateTime::parse_from_rfc3339(last.as_str().unwrap()).unwrap()
        + chrono::Duration::microseconds(1);
    let last = last.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    let rollups = app.get("/monitor/drift?model=diabetes").json();
    let from_rows = app
        .get(&format!("/monitor/drift?model=diabetes&since={}&until={last}", first.as_str().unwrap()))
        .json();
    assert_eq!(rollups["source"], "rollups", "{rollups}");
    // No whole minute: everything counted from the rows.
    assert_eq!(from_rows["source"], "rollups_and_edge_rows", "{from_rows}");
    for report in [&rollups, &from_rows] {
        assert_eq!(report["rows"], 150, "{report}");
        let p = &report["prediction"];
        let edges: Vec<f64> = serde_json::from_value(p["bin_edges"].clone()).unwrap();
        let mut counts = vec![0usize; edges.len() + 1];
        for a in &answers {
            counts[edges.iter().take_while(|e| *e <= a).count()] += 1;
        }
        let shares: Vec<f64> = counts.iter().map(|c| *c as f64 / 150.0).collect();
        assert_eq!(p["live_proportions"], json!(shares), "{report}");
        assert_eq!(p["baseline_proportions"].as_array().unwrap().len(), edges.len() + 1);
        let mean = answers.iter().sum::<f64>() / 150.0;
        assert!((p["live_mean"].as_f64().unwrap() - mean).abs() < 1e-9 * mean.abs(), "{p}");
        let d = p["ks_statistic"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d) && p["ks_p_value"].is_number(), "{p}");
        assert!(p["psi"].as_f64().unwrap() >= 0.0, "{p}");
    }
    assert_eq!(rollups["prediction"]["psi"], from_rows["prediction"]["psi"]);
    assert_eq!(rollups["prediction"]["ks_statistic"], from_rows["prediction"]["ks_statistic"]);
    // A classifier's prediction drift has none of these.
    let iris = app.get("/monitor/drift?model=iris").json();
    assert!(iris["prediction"].get("bin_edges").is_none() && iris["prediction"].get("ks_statistic").is_none(), "{iris}");
});
