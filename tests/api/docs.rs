//! The API's OpenAPI 3.1 document (`/openapi.json`) and its interactive page (`/docs`), which
//! works with no network.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

/// `{name}`-style placeholders filled with a value the route takes.
fn concrete(pattern: &str, version: &str) -> String {
    pattern
        .replace("{name}", "iris")
        .replace("{version}", version)
        .replace("{request_id}", "no-such-request")
        .replace("{file}", "index.html")
}

fn document(app: &TestApp) -> Value {
    let res = app.get("/openapi.json");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    res.json()
}

/// Descriptions come from doc comments: no rustdoc link syntax is left in them.
#[test]
fn the_document_has_no_rustdoc_link_syntax() {
    let app = spawn_app();
    let text = app.get("/openapi.json").text();
    for leftover in ["[`", "`]", "](crate::", "[crate::"] {
        assert!(!text.contains(leftover), "{leftover:?} in the document");
    }
}

/// Every route the server registers is in the document, and the document names no other:
/// the route list comes from the code (`ROUTES`, which every registration is checked
/// against), and each of its entries is routed to its own resource.
#[test]
fn the_document_is_openapi_3_1_and_covers_every_route() {
    let app = spawn_app();
    let doc = document(&app);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "inferlog");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routes: BTreeSet<String> = inferlog::http::routes::ROUTES
        .iter()
        .filter(|r| **r != "unmatched")
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        documented, routes,
        "documented paths against the routes served"
    );
    // Each route is served by its own resource: the metrics count it under its pattern.
    let version = crate::helpers::shipped_version();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let op = &item[method];
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            assert!(
                op["summary"].is_string() || op["description"].is_string(),
                "{method} {path} has no words"
            );
            let res = app.request(&method.to_uppercase(), &concrete(path, version), &[], b"{}");
            assert_ne!(res.status, 405, "{method} {path}");
        }
    }
    let metrics = app.get("/metrics").text();
    for route in &routes {
        assert!(
            metrics.contains(&format!("route=\"{route}\"")),
            "{route} never counted under its own pattern"
        );
    }
    // Operation ids are unique (clients generated from the document name methods by them).
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
        }
    }
    // The bearer scheme of the audit routes.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/audit"]["get"]["security"].is_array());
    // Every schema a response names is defined.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referenced but not defined"
        );
    }
}

/// The document validates as OpenAPI 3.1 (Python's `openapi-spec-validator`, in the venv
/// `.ci/run` makes).
#[test]
fn the_document_passes_an_openapi_3_1_validator() {
    let Some(python) = crate::clients::python_with("openapi_spec_validator") else {
        return;
    };
    let app = spawn_app();
    let file = app.dir.path().join("openapi.json");
    std::fs::write(&file, app.get("/openapi.json").body).unwrap();
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; \
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator; \
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator); print('valid')",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/docs` is served from the binary: no `http://` or `https://` in the page or its
/// initializer, no absolute asset URL in its scripts and styles, and no public validator.
#[test]
fn the_docs_page_needs_no_network() {
    let app = spawn_app();
    let res = app.get("/docs");
    assert_eq!(res.status, 308);
    assert_eq!(res.header("location"), Some("/docs/index.html"));
    let index = app.get("/docs/index.html");
    assert_eq!(index.status, 200);
    let html = index.text();
    assert!(html.contains("swagger-ui"), "{html}");
    let init = app.get("/docs/swagger-initializer.js").text();
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(
        init.contains("\"validatorUrl\":\"none\"") || init.contains("\"validatorUrl\": \"none\""),
        "{init}"
    );
    for (name, text) in [("index.html", &html), ("swagger-initializer.js", &init)] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{name}: {text}"
        );
    }
    // The files the page loads: every src/href of the page, relative.
    for asset in html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".png"))
    {
        assert!(
            !asset.contains("//") && !asset.starts_with('/'),
            "an asset not served from here: {asset}"
        );
        let res = app.get(&format!("/docs/{}", asset.trim_start_matches("./")));
        assert_eq!(res.status, 200, "{asset}");
        let body = String::from_utf8_lossy(&res.body);
        for attr in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "href='http",
            "url(http",
            "@import \"http",
            "sourceMappingURL=http",
        ] {
            assert!(
                !body.contains(attr),
                "{asset} loads from the network: {attr}"
            );
        }
    }
    assert_eq!(app.get("/docs/nope.js").status, 404);
}

/// Headless Chromium (Debian's `chromium`) renders `/docs` with every other host unreachable,
/// and the page lists the operations. `.ci/run` installs it; without it the test is skipped
/// with one line (`INFERLOG_TEST_TOOLS=require` makes that a failure).
#[test]
fn the_docs_page_renders_in_a_browser_without_network() {
    let Some(browser) = crate::helpers::tool("chromium") else {
        return;
    };
    let app = spawn_app();
    let url = format!("http://{}/docs/index.html", app.addr());
    let dom = crate::dashboard::browse(&browser, &app, &url, &["--dump-dom"]);
    for op in [
        "/predict",
        "/audit/timeseries",
        "/v2/models/{name}/infer",
        "/monitor/drift",
    ] {
        assert!(
            dom.contains(&format!("data-path=\"{op}\"")) || dom.contains(&format!(">{op}<")),
            "the page does not list {op}:\n{}",
            &dom[..dom.len().min(3000)]
        );
    }
    assert!(dom.contains("opblock"), "operations are rendered");
}

/// Schemathesis (in the venv `.ci/run` makes) generates requests for every operation from the
/// document, on a server with a classifier and a regression model: no answer is a server error, and every answer matches its documented status,
/// content type and schema. (Requests the schema allows but the model refuses, such as a row
/// of three features for a four-feature model, are answered 4xx with the error body: the
/// schema cannot know each model's width, so acceptance of such data is not checked.)
#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let Some(python) = crate::clients::python_with("schemathesis") else {
        return;
    };
    // A regression model beside the default classifier.
    let app = crate::helpers::spawn_app_with(crate::helpers::with_regressor);
    let st = python.with_file_name("schemathesis");
    let out = std::process::Command::new(st)
        .current_dir(app.dir.path())
        .args([
            "run",
            &format!("http://{}/openapi.json", app.addr()),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "20261127",
            "--no-color",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A classifier's and a regression model's answers, served side by side, each fit the schema
/// the document gives them: predictions, the Open Inference Protocol, feedback, `/audit`, the
/// time series, drift and both shapes of performance (`tests/python/response_schema_check.py`).
#[test]
fn a_classifiers_and_a_regressors_answers_fit_the_documented_schemas() {
    let Some(python) = crate::clients::python_with("openapi_schema_validator") else {
        return;
    };
    let app = crate::helpers::spawn_app_with(crate::helpers::with_regressor);
    let diabetes_row = serde_json::json!([
        0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018
    ]);
    let iris = app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#);
    let diabetes = app.post_json(
        "/models/diabetes/predict",
        &serde_json::json!({"features": [diabetes_row, diabetes_row]}).to_string(),
    );
    let (iris, diabetes) = (iris.json(), diabetes.json());
    let label = serde_json::json!({"request_id": iris["request_id"], "label": "setosa"});
    let value = serde_json::json!({"request_id": diabetes["request_id"], "value": 151.5});
    let label = app.post_json("/feedback", &label.to_string());
    let value = app.post_json("/feedback", &value.to_string());
    assert_eq!((label.status, value.status), (201, 201));
    let infer = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", "data": diabetes_row}]});
    app.wait_for_rows(4);
    let mut answers = vec![
        ("/predict", "post", "200", iris),
        ("/models/{name}/predict", "post", "200", diabetes),
        ("/feedback", "post", "201", label.json()),
        ("/feedback", "post", "201", value.json()),
        (
            "/v2/models/{name}/infer",
            "post",
            "200",
            app.post_json("/v2/models/diabetes/infer", &infer.to_string())
                .json(),
        ),
    ];
    for model in ["iris", "diabetes"] {
        for path in [
            "/monitor/performance",
            "/monitor/drift",
            "/audit/timeseries",
            "/audit",
            "/models/{name}",
        ] {
            let url = match path {
                "/models/{name}" => format!("/models/{model}"),
                _ => format!("{path}?model={model}"),
            };
            let res = app.get(&url);
            assert_eq!(res.status, 200, "{url}: {}", res.text());
            answers.push((path, "get", "200", res.json()));
        }
    }
    let answers: Vec<serde_json::Value> = answers
        .into_iter()
        .map(|(path, method, status, body)| {
            serde_json::json!({"path": path, "method": method, "status": status, "body": body})
        })
        .collect();
    let (doc, file) = (
        app.dir.path().join("openapi.json"),
        app.dir.path().join("answers.json"),
    );
    std::fs::write(&doc, app.get("/openapi.json").body).unwrap();
    std::fs::write(&file, serde_json::Value::Array(answers).to_string()).unwrap();
    let out = crate::clients::run_script(
        &python,
        "response_schema_check.py",
        &[doc.to_str().unwrap(), file.to_str().unwrap()],
    );
    assert!(out.contains("all answers valid"), "{out}");
}
