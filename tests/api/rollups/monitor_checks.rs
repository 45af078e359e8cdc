//! `/monitor/performance` and `/monitor/drift` checked against the confusion matrix and the
//! PSI computed here from the rows and the true labels sent.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::traffic::LABELS;
use crate::helpers::TestApp;

pub(super) fn iris_inside<'a>(rows: &[&'a Value]) -> Vec<&'a Value> {
    rows.iter()
        .copied()
        .filter(|r| r["model"] == "iris")
        .collect()
}

/// Checks `/monitor/performance?model=iris&{query}` against `rows` (the iris rows of the
/// range) and their latest true labels; returns the report.
pub(super) fn check_performance(
    app: &TestApp,
    query: &str,
    rows: &[&Value],
    truth: &HashMap<(String, i64), String>,
) -> Value {
    let res = app.get(&format!("/monitor/performance?model=iris&{query}"));
    assert_eq!(res.status, 200, "{}", res.text());
    let p = res.json();
    let mut matrix = vec![vec![0i64; 3]; 3];
    for r in rows.iter().filter(|r| r["status"] == 200) {
        let key = (
            r["request_id"].as_str().unwrap().to_string(),
            r["item"].as_i64().unwrap(),
        );
        if let Some(t) = truth.get(&key) {
            let t = LABELS.iter().position(|l| l == t).unwrap();
            let pred = LABELS.iter().position(|l| r["label"] == *l).unwrap();
            matrix[t][pred] += 1;
        }
    }
    assert_eq!(p["confusion_matrix"]["counts"], json!(matrix), "{query}");
    let labelled: i64 = matrix.iter().flatten().sum();
    assert_eq!(p["labelled"], labelled, "{query}");
    p
}

/// PSI as the service defines it (proportions floored at 1e-4), written again here.
pub(super) fn psi(expected: &[f64], counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(counts)
        .map(|(e, c)| {
            let a = (*c as f64 / n as f64).max(1e-4);
            let e = e.max(1e-4);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Checks `/monitor/drift?model=iris&{query}` against the answered rows of the served iris
/// version among `rows`: row count, each feature's PSI over the artifact's bins and the
/// predictions' PSI, computed here; returns the report.
pub(super) fn check_drift(app: &TestApp, query: &str, rows: &[&Value], version: &str) -> Value {
    let artifact: Value =
        serde_json::from_str(&std::fs::read_to_string("models/iris.json").unwrap()).unwrap();
    let served: Vec<&&Value> = rows
        .iter()
        .filter(|r| r["status"] == 200 && r["model"] == "iris" && r["model_version"] == version)
        .collect();
    let res = app.get(&format!("/monitor/drift?model=iris&{query}"));
    assert_eq!(res.status, 200, "{}", res.text());
    let d = res.json();
    assert_eq!(d["rows"], served.len(), "{query}");
    assert_eq!(d["sample_rows"], served.len().min(10_000), "{query}");
    for (j, f) in artifact["baseline"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let edges: Vec<f64> = serde_json::from_value(f["bin_edges"].clone()).unwrap();
        let expected: Vec<f64> = serde_json::from_value(f["bin_proportions"].clone()).unwrap();
        let mut counts = vec![0u64; edges.len() + 1];
        for r in &served {
            let v = r["features"][j].as_f64().unwrap();
            counts[edges.iter().filter(|e| **e <= v).count()] += 1;
        }
        let want = psi(&expected, &counts);
        let got = d["features"][j]["psi"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{query} feature {j}: PSI {got} against {want}"
        );
    }
    let mut classes = vec![0u64; 3];
    for r in &served {
        classes[LABELS.iter().position(|l| r["label"] == *l).unwrap()] += 1;
    }
    let expected: Vec<f64> =
        serde_json::from_value(artifact["baseline"]["class_proportions"].clone()).unwrap();
    let want = psi(&expected, &classes);
    let got = d["prediction"]["psi"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-9,
        "{query} predictions: PSI {got} against {want}"
    );
    d
}
