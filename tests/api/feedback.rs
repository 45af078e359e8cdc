//! Ground truth: feedback on audited predictions, then accuracy, per-class scores and the
//! confusion matrix computed from the audit store.

use serde_json::{Value, json};

use crate::helpers::on_both_stores;
use crate::helpers::spawn_app;

const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];

fn feedback(
    app: &crate::helpers::TestApp,
    id: &str,
    item: usize,
    label: &str,
) -> crate::helpers::Response {
    app.post_json(
        "/feedback",
        &json!({"request_id": id, "item": item, "label": label}).to_string(),
    )
}

/// Expected matrix[true][predicted], computed here from what the service answered.
fn expected_matrix(predicted: &[usize], truth: &[usize]) -> Vec<Vec<i64>> {
    let mut m = vec![vec![0i64; 3]; 3];
    for (p, t) in predicted.iter().zip(truth) {
        m[*t][*p] += 1;
    }
    m
}

on_both_stores!(fn feedback_then_performance_gives_accuracy_and_confusion_matrix(app) {
    let rows = json!({"features": [
        [5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2],
        [6.4, 3.2, 4.5, 1.5], [5.7, 2.8, 4.1, 1.3],
        [6.3, 3.3, 6.0, 2.5], [7.7, 2.6, 6.9, 2.3],
        [6.0, 2.2, 5.0, 1.5]
    ]});
    let res = app.post_predict(&rows.to_string());
    assert_eq!(res.status, 200);
    let body = res.json();
    let id = body["request_id"].as_str().unwrap().to_string();
    let predicted: Vec<usize> = body["prediction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    // True labels: the first six as their iris species, the last one deliberately disagreeing
    // with whatever was predicted, so the matrix has an off-diagonal entry.
    let mut truth = vec![0, 0, 1, 1, 2, 2];
    truth.push((predicted[6] + 1) % 3);
    for (item, &t) in truth.iter().enumerate() {
        let r = feedback(&app, &id, item, CLASSES[t]);
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["replaced"], Value::Null);
    }

    let perf = app.get("/monitor/performance?model=iris");
    assert_eq!(perf.status, 200, "{}", perf.text());
    let perf = perf.json();
    let matrix = expected_matrix(&predicted, &truth);
    assert_eq!(perf["confusion_matrix"]["counts"], json!(matrix));
    assert_eq!(perf["confusion_matrix"]["labels"], json!(CLASSES));
    assert_eq!(perf["labelled"], 7);
    let correct = (0..3).map(|i| matrix[i][i]).sum::<i64>() as f64;
    assert!((perf["accuracy"].as_f64().unwrap() - correct / 7.0).abs() < 1e-12);
    for (c, score) in perf["per_class"].as_array().unwrap().iter().enumerate() {
        let support: i64 = matrix[c].iter().sum();
        let col: i64 = (0..3).map(|t| matrix[t][c]).sum();
        assert_eq!(score["support"], support);
        if col > 0 {
            let p = matrix[c][c] as f64 / col as f64;
            assert!(
                (score["precision"].as_f64().unwrap() - p).abs() < 1e-12,
                "{score}"
            );
        }
        if support > 0 {
            let r = matrix[c][c] as f64 / support as f64;
            assert!(
                (score["recall"].as_f64().unwrap() - r).abs() < 1e-12,
                "{score}"
            );
        }
    }

    // A second feedback replaces the first; both are kept.
    let new_truth = (truth[0] + 1) % 3;
    let r = feedback(&app, &id, 0, CLASSES[new_truth]);
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["replaced"], CLASSES[truth[0]]);
    let history = app.store_json(
        ["json_object('label', label)", "json_build_object('label', label)"],
        &format!("feedback where request_id = '{id}' and item = 0 order by id"),
    );
    assert_eq!(history.len(), 2);
    truth[0] = new_truth;
    let perf = app.get("/monitor/performance").json();
    assert_eq!(
        perf["confusion_matrix"]["counts"],
        json!(expected_matrix(&predicted, &truth))
    );
    assert_eq!(perf["labelled"], 7);
});

on_both_stores!(fn feedback_errors_are_404_and_422(app) {
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let id = res.header("x-request-id").unwrap().to_string();

    let r = feedback(&app, "no-such-request", 0, "setosa");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    let r = feedback(&app, &id, 1, "setosa");
    assert_eq!(r.status, 404, "item 1 does not exist");
    let r = feedback(&app, &id, 0, "daisy");
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "unknown_label");
    assert!(r.text().contains("setosa, versicolor, virginica"));
    let r = app.post_json(
        "/feedback",
        r#"{"request_id": "x", "label": "setosa", "extra": 1}"#,
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "invalid_body");
    let r = app.post_json("/feedback", r#"{"request_id": "#);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "malformed_json");

    // A rejected request has no prediction to label.
    let bad = app.post_predict(r#"{"features": [1]}"#);
    app.wait_for_rows(2);
    let r = feedback(&app, bad.header("x-request-id").unwrap(), 0, "setosa");
    assert_eq!(r.status, 404);

    let perf = app.get("/monitor/performance").json();
    assert_eq!(perf["labelled"], 0);
    assert_eq!(perf["accuracy"], Value::Null);
    assert_eq!(app.get("/monitor/performance?model=nope").status, 404);
});

on_both_stores!(fn feedback_and_performance_need_the_audit_token(app) with |s| s.audit.token = Some("t0ken".into()), {
    let res = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let id = res.header("x-request-id").unwrap().to_string();
    let body = json!({"request_id": id, "label": "virginica"}).to_string();
    assert_eq!(app.post_json("/feedback", &body).status, 401);
    assert_eq!(app.get("/monitor/performance").status, 401);
    assert_eq!(app.get("/monitor/drift").status, 401);
    let ok = app.request(
        "POST",
        "/feedback",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer t0ken"),
        ],
        body.as_bytes(),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
});

#[test]
fn feedback_is_never_acknowledged_into_a_deleted_database() {
    let app = spawn_app();
    let res = app.post_predict(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    let id = res.header("x-request-id").unwrap().to_string();
    // The file (and its log) is deleted while the service is idle; the query connections
    // still see the old file, so the prediction is found.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", app.db_path.display()));
    }
    let res = feedback(&app, &id, 0, "setosa");
    // Stored in the file at the path, or refused; never 201 into the unlinked file.
    match res.status {
        201 => {
            let stored = app.db_json(&format!(
                "select json_object('n', count(*)) from feedback where request_id = '{id}'"
            ));
            assert_eq!(
                stored[0]["n"], 1,
                "acknowledged feedback is not in the file"
            );
        }
        503 => {
            assert_eq!(res.error_code(), "audit_unavailable");
            let dir = app.dir.path().to_str().unwrap();
            assert!(
                !res.text().contains(dir),
                "no paths to clients: {}",
                res.text()
            );
        }
        other => panic!("unexpected {other}: {}", res.text()),
    }
}
