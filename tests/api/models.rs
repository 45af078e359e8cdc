//! `GET /models`, `GET /models/{name}` and the health probes.

use crate::helpers::{shipped_version, spawn_app};

#[test]
fn lists_the_served_models() {
    let app = spawn_app();
    let res = app.get("/models");
    assert_eq!(res.status, 200);
    let body = res.json();
    let models = body["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    let iris = &models[0];
    assert_eq!(iris["name"], "iris");
    assert_eq!(iris["version"], shipped_version());
    assert_eq!(iris["algorithm"], "random-forest");
    assert_eq!(iris["default"], true);
    assert_eq!(
        iris["feature_names"],
        serde_json::json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    assert_eq!(
        iris["class_names"],
        serde_json::json!(["setosa", "versicolor", "virginica"])
    );
    assert!(iris["training"]["held_out_accuracy"].as_f64().unwrap() >= 0.9);
}

#[test]
fn shows_one_model_and_404s_unknown_ones() {
    let app = spawn_app();
    let res = app.get("/models/iris");
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["name"], "iris");
    let res = app.get("/models/unknown");
    assert_eq!(res.status, 404);
    assert_eq!(res.error_code(), "unknown_model");
}

#[test]
fn health_probes_answer() {
    let app = spawn_app();
    let live = app.get("/health/live");
    assert_eq!(live.status, 200);
    assert_eq!(live.json()["status"], "ok");
    let ready = app.get("/health/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
}

#[test]
fn health_probes_answer_head_requests() {
    let app = spawn_app();
    for path in ["/health/live", "/health/ready"] {
        let res = app.request("HEAD", path, &[], b"");
        assert_eq!(res.status, 200, "HEAD {path}");
        assert!(res.body.is_empty(), "HEAD {path} has no body");
    }
}
