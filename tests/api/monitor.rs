//! Monitoring: outlier flags in the response, the audit row and the metrics; drift verdicts
//! against the training baseline; the Prometheus exposition.

use inferlog::model::data::Dataset;
use inferlog::model::data::load_dataset;
use serde_json::{Value, json};

use crate::helpers::on_both_stores;
use crate::helpers::{send_raw, spawn_app, spawn_app_with};

/// The 150 iris rows, optionally with one feature shifted by `shift`.
fn iris_rows(shift_feature: Option<usize>, shift: f64) -> Vec<Vec<f64>> {
    let d = load_dataset(Dataset::Iris);
    d.x.chunks(4)
        .map(|r| {
            let mut r = r.to_vec();
            if let Some(j) = shift_feature {
                r[j] += shift;
            }
            r
        })
        .collect()
}

fn feature_status(report: &Value, name: &str) -> String {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == name)
        .unwrap_or_else(|| panic!("no feature {name} in {report}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

on_both_stores!(fn inputs_like_the_training_data_show_no_drift(app) {
    let res = app.post_predict(&json!({ "features": iris_rows(None, 0.0) }).to_string());
    assert_eq!(res.status, 200);
    let report = app.get("/monitor/drift?model=iris");
    assert_eq!(report.status, 200, "{}", report.text());
    let report = report.json();
    assert_eq!(report["rows"], 150);
    for (j, f) in FEATURES.iter().enumerate() {
        assert_eq!(feature_status(&report, f), "ok", "{f}: {report}");
        // The training rows again: no sign of drift in the KS test either.
        let p = report["features"][j]["ks_p_value"].as_f64().unwrap();
        assert!(p > 0.5, "{f}: KS p-value {p} for the training rows: {report}");
    }
    assert_eq!(report["prediction"]["status"], "ok", "{report}");
    assert_eq!(report["status"], "ok");
    assert_eq!(report["psi_warn"], 0.1);
    assert_eq!(report["psi_alert"], 0.25);
});

on_both_stores!(fn a_two_std_shift_of_one_feature_alerts_on_that_feature_only(app) {
    let models = app.get("/models/iris").json();
    assert_eq!(models["feature_names"][2], "petal_length");
    // The training standard deviation of petal_length, from the artifact.
    let artifact: Value =
        serde_json::from_slice(&std::fs::read(crate::helpers::shipped_model()).unwrap()).unwrap();
    let std = artifact["baseline"]["features"][2]["std"].as_f64().unwrap();
    let res = app.post_predict(&json!({ "features": iris_rows(Some(2), 2.0 * std) }).to_string());
    assert_eq!(res.status, 200);
    let report = app.get("/monitor/drift").json();
    assert_eq!(feature_status(&report, "petal_length"), "alert", "{report}");
    for f in ["sepal_length", "sepal_width", "petal_width"] {
        assert_eq!(feature_status(&report, f), "ok", "{f}: {report}");
    }
    let shifted = report["features"][2].clone();
    assert!(shifted["ks_statistic"].as_f64().unwrap() > 0.5, "{shifted}");
    assert!(shifted["ks_p_value"].as_f64().unwrap() < 0.001, "{shifted}");
    assert_eq!(report["status"], "alert");
});

on_both_stores!(fn a_window_below_the_minimum_gives_insufficient_data(app) with |s| s.monitor.drift.min_rows = 200, {
    app.post_predict(&json!({ "features": iris_rows(Some(2), 5.0) }).to_string());
    let report = app.get("/monitor/drift").json();
    assert_eq!(report["rows"], 150);
    for f in FEATURES {
        assert_eq!(feature_status(&report, f), "insufficient_data", "{f}");
    }
    assert_eq!(report["prediction"]["status"], "insufficient_data");
});

on_both_stores!(fn drift_windows_follow_time_filters_and_bad_parameters_are_400(app) {
    app.post_predict(&json!({ "features": iris_rows(None, 0.0) }).to_string());
    let empty = app.get("/monitor/drift?until=2000-01-01T00:00:00Z").json();
    assert_eq!(empty["rows"], 0);
    assert_eq!(empty["status"], "insufficient_data");
    assert_eq!(app.get("/monitor/drift?since=soon").status, 400);
    assert_eq!(app.get("/monitor/drift?colour=red").status, 400);
    assert_eq!(app.get("/monitor/drift?model=nope").status, 404);
    // Repeated parameters are refused as on /audit, on both monitoring routes.
    for route in ["/monitor/drift", "/monitor/performance"] {
        let res = app.get(&format!("{route}?model=iris&model=iris"));
        assert_eq!(res.status, 400, "{route}: {}", res.text());
        assert!(res.text().contains("model"), "{}", res.text());
    }
    // An offset's + sent unencoded arrives as a space: the message says to encode it.
    let res = app.get("/monitor/drift?since=2026-11-27T10:00:00+01:00");
    assert_eq!(res.status, 400);
    assert!(res.text().contains("%2B"), "{}", res.text());
});

on_both_stores!(fn outliers_are_flagged_in_response_audit_row_metrics_and_log(app) {
    let res = app.post_predict(r#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.1, 3.5, 1.4, 9.5]]}"#);
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(
        body["outliers"],
        json!([{"item": 1, "features": ["petal_width"]}])
    );
    assert_eq!(
        body["prediction"].as_array().unwrap().len(),
        2,
        "still predicted"
    );
    let id = body["request_id"].as_str().unwrap();
    let rows = app.rows_of(id);
    assert_eq!(rows[0]["outliers"], Value::Null);
    assert_eq!(rows[1]["outliers"], json!(["petal_width"]));
    let metrics = app.get("/metrics").text();
    assert!(
        metrics
            .contains(r#"inferlog_outlier_features_total{model="iris",feature="petal_width"} 1"#),
        "{metrics}"
    );
    let line = app.wait_for_log_line(&[id, "outlier input"]);
    assert!(
        line.contains("WARN") && line.contains("row 1: petal_width"),
        "{line}"
    );

    let clean = app
        .post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#)
        .json();
    assert_eq!(clean["outliers"], json!([]));
});

#[test]
fn metrics_count_requests_predictions_and_rejections() {
    let app = spawn_app();
    app.post_predict(r#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.1, 3.5, 1.4, 0.2]]}"#);
    app.post_predict(r#"{"features": [5.8]}"#);
    app.get("/health/live");
    app.wait_for_rows(3); // the rejected request's row is queued without waiting
    // The writer gives the rows' places back just after their commit is visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app
        .get("/metrics")
        .text()
        .contains("inferlog_audit_queue_rows 0\n")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit queue never emptied"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let res = app.get("/metrics");
    assert_eq!(res.status, 200);
    assert!(
        res.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = res.text();
    for needle in [
        r#"inferlog_http_requests_total{route="/predict",method="POST",status="200"} 1"#,
        r#"inferlog_http_requests_total{route="/predict",method="POST",status="422"} 1"#,
        r#"inferlog_http_requests_total{route="/health/live",method="GET",status="200"} 1"#,
        r#"inferlog_predictions_total{model="iris",label="virginica"} 1"#,
        r#"inferlog_predictions_total{model="iris",label="setosa"} 1"#,
        r#"inferlog_rejected_requests_total{reason="wrong_feature_count"} 1"#,
        r#"inferlog_model_info{model="iris","#,
        "inferlog_audit_rows_written_total ",
        "inferlog_audit_commit_duration_seconds_bucket",
        "inferlog_audit_batch_rows_bucket",
        "inferlog_http_request_duration_seconds_bucket",
        "inferlog_audit_queue_rows 0",
        "inferlog_audit_queue_capacity_rows 16384",
        "inferlog_audit_spilled_rows_total 0",
        "inferlog_audit_replayed_rows_total 0",
        "inferlog_audit_write_errors_total 0",
        "inferlog_log_records_dropped_total 0",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in:\n{m}");
    }
}

#[test]
fn metrics_pass_promtool_check_when_available() {
    let app = spawn_app_with(|s| s.monitor.drift.min_rows = 10);
    app.post_predict(&json!({ "features": iris_rows(None, 0.0) }).to_string());
    app.post_predict(r#"{"features": [1, 2]}"#);
    let m = app.get("/metrics").text();
    assert!(
        m.contains(r#"inferlog_drift_psi{model="iris",feature="petal_length"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"inferlog_drift_window_rows{model="iris"} 150"#),
        "{m}"
    );
    // Without promtool the exposition is checked by the assertions above only.
    let Some(promtool) = crate::helpers::tool("promtool") else {
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_need_the_token_when_one_is_set() {
    let app = spawn_app_with(|s| s.audit.token = Some("t0ken".into()));
    let res = app.get("/metrics");
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(res.error_code(), "unauthorized");
    let res = app.request("GET", "/metrics", &[("Authorization", "Bearer t0ken")], b"");
    assert_eq!(res.status, 200);
    assert!(res.text().contains("inferlog_http_requests_total"));
    // Without a token the exposition stays open to scrapers (other tests read it so).
    assert_eq!(spawn_app().get("/metrics").status, 200);
}

#[test]
fn an_admin_address_serves_metrics_and_probes_and_the_main_one_no_metrics() {
    let app = spawn_app_with(|s| s.admin_bind = Some("127.0.0.1:0".parse().unwrap()));
    let admin = format!("127.0.0.1:{}", app.admin_port.expect("an admin port"));
    let get = |addr: &str, path: &str| {
        send_raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    assert_eq!(
        app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#)
            .status,
        200
    );
    // The main address: everything but the metrics.
    let res = app.get("/metrics");
    assert_eq!(res.status, 404, "{}", res.text());
    assert_eq!(app.get("/health/ready").status, 200);
    // The admin address: the metrics (counting the main address's traffic) and the probes,
    // nothing else.
    let res = get(&admin, "/metrics");
    assert_eq!(res.status, 200);
    assert!(
        res.text().contains(
            r#"inferlog_http_requests_total{route="/predict",method="POST",status="200"} 1"#
        ),
        "{}",
        res.text()
    );
    assert_eq!(get(&admin, "/health/live").status, 200);
    assert_eq!(get(&admin, "/health/ready").json()["status"], "ready");
    for path in ["/audit", "/models", "/monitor/drift"] {
        assert_eq!(get(&admin, path).status, 404, "{path} on the admin address");
    }
    let res = send_raw(
        &admin,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(res.status, 404);
}

on_both_stores!(fn a_drift_report_reads_at_most_its_bound_of_recent_rows(app) with |s| {
    s.monitor.drift.max_rows = 50;
    s.monitor.drift.sample_rows = 40;
}, {
    let rows: Vec<[f64; 4]> = (0..60).map(|_| [5.8, 2.7, 5.1, 1.9]).collect();
    assert_eq!(
        app.post_predict(&json!({ "features": rows }).to_string())
            .status,
        200
    );
    // Whole minutes (here everything): PSI over every row, from the rollups; KS and the live
    // means over the most recent `sample_rows`.
    let report = app.get("/monitor/drift").json();
    assert_eq!(report["source"], "rollups", "{report}");
    assert_eq!(report["rows"], 60, "{report}");
    assert_eq!(report["sample_rows"], 40, "{report}");
    assert_eq!(report["truncated"], true);
    // A bound inside a minute: the whole minutes after it from the rollups (every row), its
    // partial minute (empty) from the rows.
    let report = app.get("/monitor/drift?since=2000-01-01T00:00:30Z").json();
    assert_eq!(report["source"], "rollups_and_edge_rows", "{report}");
    assert_eq!(report["rows"], 60, "{report}");
    assert_eq!(report["sample_rows"], 40, "{report}");
    assert_eq!(report["max_rows"], 50);
    assert_eq!(report["truncated"], true);
    // A range that holds fewer rows is read whole.
    let report = app.get("/monitor/drift?until=2000-01-01T00:00:00Z").json();
    assert_eq!(report["rows"], 0);
    assert_eq!(report["truncated"], false);
});

on_both_stores!(fn drift_gauges_start_from_the_stored_rows_after_a_restart(app) with |s| {
    s.monitor.drift.min_rows = 10;
    s.monitor.drift_window = 200;
}, {
    let mut app = app;
    // 150 rows with petal_length shifted, then a rejected request (not in the window).
    let rows = iris_rows(Some(2), 1.5);
    for chunk in rows.chunks(50) {
        app.predict_ok(&json!({ "features": chunk }).to_string());
    }
    app.post_predict(r#"{"features": [1, 2]}"#);
    let gauges = |m: &str| -> Vec<f64> {
        ["sepal_length", "sepal_width", "petal_length", "petal_width", "prediction"]
            .iter()
            .map(|f| {
                let name = format!(r#"inferlog_drift_psi{{model="iris",feature="{f}"}}"#);
                crate::helpers::metric_value(m, &name).unwrap_or_else(|| panic!("{name}:\n{m}"))
            })
            .collect()
    };
    let before = app.get("/metrics").text();
    assert!(before.contains(r#"inferlog_drift_window_rows{model="iris"} 150"#), "{before}");
    let psi_before = gauges(&before);
    assert!(psi_before[2] > 0.25, "petal_length drifted: {psi_before:?}");
    app.wait_for_rows(151);
    app.stop();

    // A new server on the same store: the window starts from the stored rows, not empty.
    let url = app.database_url.clone();
    let again = spawn_app_with(move |s| {
        s.monitor.drift.min_rows = 10;
        s.monitor.drift_window = 200;
        s.database_url = url.parse().unwrap();
    });
    let after = again.get("/metrics").text();
    assert!(after.contains(r#"inferlog_drift_window_rows{model="iris"} 150"#), "{after}");
    for (a, b) in gauges(&after).iter().zip(&psi_before) {
        assert!((a - b).abs() < 1e-9, "{:?} after against {psi_before:?}", gauges(&after));
    }
    again.wait_for_log_line(&["drift window started from stored rows", "150"]);
});

/// `model_version=` reports on a version a reload replaced, over its own rows and baseline; a
/// version the server never loaded is a 404 naming the versions it knows.
#[test]
fn drift_of_an_older_version_uses_its_own_rows() {
    use crate::shutdown::{kill, serve_binary_in, wait_exit};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (mut child, addr) = serve_binary_in(dir.path(), "server.log", &[]);
    let get = |path: &str| {
        send_raw(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let post = |rows: &[Vec<f64>]| {
        let body = json!({ "features": rows }).to_string();
        let res = send_raw(
            &addr,
            format!(
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(res.status, 200, "{}", res.text());
    };
    let original = get("/models/iris").json()["version"]
        .as_str()
        .unwrap()
        .to_string();
    post(&iris_rows(None, 0.0));
    // A new version of iris (the same model under another version), loaded by SIGHUP.
    let models = dir.path().join("models");
    let mut artifact: Value =
        serde_json::from_slice(&std::fs::read(models.join("iris.json")).unwrap()).unwrap();
    artifact["version"] = json!("1111111111111111");
    std::fs::write(models.join("iris.json"), artifact.to_string()).unwrap();
    kill(&child, "-HUP");
    crate::helpers::wait_for_line(&log, &["models reloaded", "changed: iris"]);
    post(&iris_rows(None, 0.0)[..40]);

    let now = get("/monitor/drift").json();
    assert_eq!(now["model_version"], "1111111111111111", "{now}");
    assert_eq!(now["rows"], 40, "{now}");
    let older = get(&format!("/monitor/drift?model_version={original}"));
    assert_eq!(older.status, 200, "{}", older.text());
    let older = older.json();
    assert_eq!(older["model_version"], original, "{older}");
    assert_eq!(older["rows"], 150, "{older}");
    assert_eq!(older["status"], "ok", "{older}");
    let same = get("/monitor/drift?model_version=1111111111111111").json();
    assert_eq!(same["rows"], 40, "{same}");
    let unknown = get("/monitor/drift?model_version=feedfacefeedface");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.error_code(), "not_found");
    assert!(unknown.text().contains(&original), "{}", unknown.text());
    // Performance takes no version.
    assert_eq!(
        get(&format!("/monitor/performance?model_version={original}")).status,
        400
    );
    kill(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
}

/// Thresholds that cannot mean what their names say stop the start (and `inferlog drift`)
/// with a message naming the flag.
#[test]
fn drift_thresholds_that_cannot_be_meant_are_refused_at_start() {
    use crate::shutdown::binary;
    let dir = tempfile::tempdir().unwrap();
    let models = crate::helpers::shipped_model()
        .parent()
        .unwrap()
        .to_path_buf();
    let db = dir.path().join("audit.db");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = binary();
        cmd.current_dir(dir.path())
            .args(args)
            .env("INFERLOG_MODELS", &models)
            .env("DATABASE_URL", &db);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let serve = ["serve", "--bind", "127.0.0.1:0"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        serve.iter().copied().chain(extra.iter().copied()).collect()
    };
    let (code, err) = run(
        &with(&["--drift-psi-warn", "0.3", "--drift-psi-alert", "0.2"]),
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--drift-psi-warn") && err.contains("above --drift-psi-alert"),
        "{err}"
    );
    for (flag, arg) in [
        ("--drift-psi-warn", "--drift-psi-warn=NaN"),
        ("--drift-psi-alert", "--drift-psi-alert=-0.5"),
        ("--outlier-std-k", "--outlier-std-k=inf"),
    ] {
        let (code, err) = run(&with(&[arg]), &[]);
        let value = arg;
        assert_eq!(code, Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains("finite number"),
            "{flag} {value}: {err}"
        );
    }
    let (code, err) = run(&serve, &[("INFERLOG_DRIFT_PSI_WARN", "nan")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--drift-psi-warn"), "{err}");
    for value in ["1.5", "-0.1", "NaN", "half"] {
        let (code, err) = run(&serve, &[("INFERLOG_LOW_CONFIDENCE", value)]);
        assert_eq!(code, Some(2), "{value}: {err}");
        assert!(
            err.contains("--low-confidence") && err.contains("from 0 to 1"),
            "{value}: {err}"
        );
    }
    let (code, err) = run(&["drift", "--drift-psi-warn", "0.5"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("above --drift-psi-alert"), "{err}");
    assert!(!db.exists(), "nothing was opened");
}
