//! Class probabilities through every path a class takes: the `/predict` answer, the audit row
//! (the table, the `served` view, `/audit`, the CSV, JSON-lines and SageMaker exports), the
//! Open Inference Protocol answer and metadata, the metrics and the log line.

use serde_json::{Value, json};

use crate::helpers::{metric_value, on_both_stores};

const ROWS: &str =
    r#"{"features": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.3, 2.8, 5.1, 1.5]]}"#;

/// Probabilities of three classes per row, summing to 1, their largest the class answered
/// (the first of equals).
fn assert_coherent(probabilities: &Value, prediction: &Value) -> Vec<Vec<f64>> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(probabilities.clone()).unwrap();
    let classes: Vec<usize> = serde_json::from_value(prediction.clone()).unwrap();
    assert_eq!(rows.len(), classes.len(), "{probabilities}");
    for (p, &class) in rows.iter().zip(&classes) {
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() <= 1e-9, "{p:?}");
        let first_max = (0..p.len()).fold(0, |best, k| if p[k] > p[best] { k } else { best });
        assert_eq!(first_max, class, "{p:?}");
    }
    rows
}

on_both_stores!(fn class_probabilities_reach_the_answer_the_audit_row_and_every_export(app) {
    let res = app.post_predict(ROWS);
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    let probabilities = assert_coherent(&body["probabilities"], &body["prediction"]);
    // The shipped forest is not sure of every row: one row has a runner-up.
    assert!(
        probabilities.iter().any(|p| p.iter().filter(|&&v| v > 0.0).count() > 1),
        "{probabilities:?}"
    );
    let id = body["request_id"].as_str().unwrap().to_string();
    assert_eq!(app.post_predict(r#"{"features": [1, 2]}"#).status, 422);
    app.wait_for_rows(4);

    // The table, as the sqlite3 shell or psql reads it: the answer's numbers exactly.
    let rows = app.rows_of(&id);
    for (row, p) in rows.iter().zip(&probabilities) {
        assert_eq!(row["probabilities"], json!(p), "{row}");
    }
    let rejected = app.stored_rows("where status <> 200");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["probabilities"], Value::Null, "a refused request has none");
    // The served view.
    let served = app.store_json(
        ["json_object('p', json(probabilities))", "json_build_object('p', probabilities)"],
        &format!("served where request_id = '{id}' order by item"),
    );
    let from_view: Vec<&Value> = served.iter().map(|r| &r["p"]).collect();
    assert_eq!(json!(from_view), json!(probabilities));

    // /audit and the exports.
    let page = app.audit_page(&format!("request_id={id}&order=asc"));
    let from_page: Vec<&Value> = page.records.iter().map(|r| &r["probabilities"]).collect();
    assert_eq!(json!(from_page), json!(probabilities));
    let csv = app.get(&format!("/audit?request_id={id}&order=asc&format=csv")).text();
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",writer,probabilities,value"), "{header}");
    for (line, p) in csv.lines().skip(1).zip(&probabilities) {
        // A classifier's rows have no value: the last field is empty.
        let quoted = format!("\"{}\",", serde_json::to_string(p).unwrap());
        assert!(line.ends_with(&quoted), "{line} ends with {quoted}");
    }
    let jsonl = app.get(&format!("/audit?request_id={id}&order=asc&format=jsonl")).text();
    let from_jsonl: Vec<Value> =
        jsonl.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["probabilities"].clone()).collect();
    assert_eq!(json!(from_jsonl), json!(probabilities));
    let capture = app.get(&format!("/audit?request_id={id}&format=sagemaker")).text();
    let line: Value = serde_json::from_str(capture.lines().next().unwrap()).unwrap();
    let output: Value = serde_json::from_str(
        line["captureData"]["endpointOutput"]["data"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(output["probabilities"], json!(probabilities), "{output}");
    assert_eq!(output["prediction"], body["prediction"]);
});

#[test]
fn the_inference_protocol_answers_probabilities_as_an_n_by_c_tensor() {
    let app = crate::helpers::spawn_app();
    let meta = app.get("/v2/models/iris").json();
    let outputs = meta["outputs"].as_array().unwrap();
    let listed = outputs
        .iter()
        .find(|o| o["name"] == "probabilities")
        .expect("listed");
    assert_eq!(listed["datatype"], "FP64");
    assert_eq!(listed["shape"], json!([-1, 3]));

    let rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 2.8, 5.1, 1.5]];
    let infer =
        json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64", "data": rows}]});
    let res = app.post_json("/v2/models/iris/infer", &infer.to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    let answer = res.json();
    let tensor = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .expect("answered by default with the others")
        .clone();
    assert_eq!(tensor["shape"], json!([2, 3]));
    assert_eq!(tensor["datatype"], "FP64");
    let predicted = app
        .post_predict(&json!({"features": rows}).to_string())
        .json();
    let flat: Vec<f64> =
        serde_json::from_value::<Vec<Vec<f64>>>(predicted["probabilities"].clone())
            .unwrap()
            .concat();
    assert_eq!(
        tensor["data"],
        json!(flat),
        "row-major, as /predict answers them"
    );

    // Asked for alone, it comes alone.
    let only = json!({"inputs": infer["inputs"], "outputs": [{"name": "probabilities"}]});
    let res = app.post_json("/v2/models/iris/infer", &only.to_string());
    assert_eq!(res.status, 200, "{}", res.text());
    let names: Vec<Value> = res.json()["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("probabilities")]);
}

#[test]
fn the_confidence_is_in_the_metrics_and_the_log_line() {
    let app = crate::helpers::spawn_app();
    let body = app.post_predict(ROWS).json();
    let probabilities = assert_coherent(&body["probabilities"], &body["prediction"]);
    let confidence: Vec<f64> = probabilities
        .iter()
        .map(|p| p.iter().copied().fold(0.0, f64::max))
        .collect();

    let metrics = app.get("/metrics").text();
    let count = metric_value(
        &metrics,
        "inferlog_prediction_confidence_count{model=\"iris\"}",
    );
    assert_eq!(count, Some(3.0), "{metrics}");
    let sum = metric_value(
        &metrics,
        "inferlog_prediction_confidence_sum{model=\"iris\"}",
    )
    .unwrap();
    assert!(
        (sum - confidence.iter().sum::<f64>()).abs() < 1e-9,
        "{sum} vs {confidence:?}"
    );
    let bucket = |le: &str| {
        metric_value(
            &metrics,
            &format!("inferlog_prediction_confidence_bucket{{model=\"iris\",le=\"{le}\"}}"),
        )
    };
    for le in [0.5, 0.8, 1.0] {
        let expected = confidence.iter().filter(|&&c| c <= le).count() as f64;
        assert_eq!(
            bucket(&le.to_string()),
            Some(expected),
            "le {le}: {metrics}"
        );
    }

    // The log line: the served class's probability per row, not the whole vector.
    let shown: Vec<String> = confidence.iter().map(|c| c.to_string()).collect();
    let line = app.wait_for_log_line(&[
        "prediction served",
        &format!("confidence: [{}]", shown.join(",")),
    ]);
    assert!(!line.contains("probabilities"), "{line}");
}

on_both_stores!(fn the_time_series_counts_low_confidence_answers_below_the_threshold(app) with |s| s.monitor.low_confidence = 0.96, {
    let body = app.post_predict(ROWS).json();
    let probabilities = assert_coherent(&body["probabilities"], &body["prediction"]);
    let mut hundredths: Vec<i64> = probabilities
        .iter()
        .map(|p| (p.iter().copied().fold(0.0, f64::max) * 100.0).floor() as i64)
        .collect();
    hundredths.sort_unstable();
    app.wait_for_rows(3);
    let t = app.get("/audit/timeseries?bucket=1h").json();
    let buckets = t["buckets"].as_array().unwrap();
    let c = &buckets.last().unwrap()["confidence"];
    assert_eq!(c["rows"], 3, "{t}");
    let low = hundredths.iter().filter(|&&k| (k + 1) as f64 / 100.0 <= 0.96).count();
    assert!(low > 0 && low < 3, "the rows straddle the threshold: {hundredths:?}");
    assert_eq!(c["low"], low, "{c}");
    assert_eq!(c["low_rate"], json!(low as f64 / 3.0));
    assert_eq!(c["p50"], json!(hundredths[1] as f64 / 100.0), "{c}");
    assert_eq!(c["p10"], json!(hundredths[0] as f64 / 100.0), "{c}");
});

/// The tenth of a probability's hundredth, as the service bins confidence for drift.
fn tenth(p: f64) -> usize {
    (((p * 100.0).floor() as i64).clamp(0, 100) / 10).min(9) as usize
}

// Confidence drift: the answered rows' confidence by tenth, from the rollups and from edge
// rows, against the held-out rows' of the shipped model; an artifact without that baseline
// says so instead of a figure.
on_both_stores!(fn confidence_drifts_against_the_held_out_rows_and_an_older_artifact_says_it_has_no_baseline(app)
    with |s| {
        // The shipped model without its confidence baseline, as artifacts trained before it.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
        let mut old: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        old["name"] = json!("iris_old");
        old["baseline"].as_object_mut().unwrap().remove("confidence");
        std::fs::write(s.models.join("iris_old.json"), old.to_string()).unwrap();
    }, {
    let rows = json!({"features": [
        [5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.0, 2.2, 5.0, 1.5],
        [6.3, 2.8, 5.1, 1.5], [4.9, 2.5, 4.5, 1.7], [5.7, 2.8, 4.1, 1.3], [7.7, 2.6, 6.9, 2.3]
    ]});
    let body = app.post_predict(&rows.to_string()).json();
    assert!(app.post_json("/models/iris_old/predict", &rows.to_string()).status == 200);
    app.wait_for_rows(16);
    let mut counts = [0usize; 10];
    for (p, class) in body["probabilities"].as_array().unwrap().iter().zip(body["prediction"].as_array().unwrap()) {
        counts[tenth(p[class.as_u64().unwrap() as usize].as_f64().unwrap())] += 1;
    }
    let shares: Vec<f64> = counts.iter().map(|c| *c as f64 / 8.0).collect();
    let since = app.rows_of(body["request_id"].as_str().unwrap())[0]["received_at"].clone();
    for query in [String::new(), format!("&since={}", since.as_str().unwrap())] {
        let d = app.get(&format!("/monitor/drift?model=iris{query}")).json();
        let c = &d["confidence"];
        assert_eq!(c["rows"], 8, "{d}");
        assert_eq!(c["live_proportions"], json!(shares), "{d}");
        let baseline: Vec<f64> = serde_json::from_value(c["baseline_proportions"].clone()).unwrap();
        assert_eq!(baseline.len(), 10);
        assert!((baseline.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{c}");
        assert!(c["psi"].as_f64().unwrap() >= 0.0 && c["baseline_missing"] == false, "{c}");
        assert_eq!(c["status"], "insufficient_data", "8 rows are no verdict: {c}");
    }
    let old = app.get("/monitor/drift?model=iris_old").json();
    let c = &old["confidence"];
    assert_eq!((c["rows"].clone(), c["baseline_missing"].clone()), (json!(8), json!(true)), "{old}");
    assert_eq!((c["psi"].clone(), c["status"].clone()), (Value::Null, Value::Null), "{old}");
});
