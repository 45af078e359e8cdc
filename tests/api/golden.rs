//! A fixed traffic script against each store, its every observable output (responses, exports,
//! the command line's output, log lines, audit rows, metrics) compared with a capture kept in
//! `tests/golden/`. Request ids, times, latencies and other values that differ from run to run
//! are masked; everything else must match byte for byte, so a change to the store, the writer
//! or the routes that alters what a user sees shows here.
//!
//! `INFERLOG_GOLDEN=write cargo test golden` writes the captures anew (then read the diff).

use std::path::{Path, PathBuf};

use regex_lite::Regex;
use serde_json::json;

use crate::helpers::{Response, TestApp, on_both_stores};

on_both_stores!(fn a_fixed_traffic_script_answers_as_its_capture(app) {
    let store = if app.database_url.starts_with("postgres") { "postgres" } else { "sqlite" };
    let capture = run_script(&app);
    compare(&capture, &golden_file(store));
});

fn golden_file(store: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/traffic-{store}.txt"))
}

/// One request of the script: a label, method, path, headers and body.
type Step = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    String,
);

/// What the script saw, section by section.
struct Capture {
    text: String,
}

impl Capture {
    fn section(&mut self, label: &str, body: &str) {
        self.text
            .push_str(&format!("=== {label}\n{}\n", mask(body.trim_end())));
    }

    fn response(&mut self, label: &str, res: &Response) {
        let mut out = format!("status {}\n", res.status);
        for h in ["content-type", "retry-after", "allow"] {
            if let Some(v) = res.header(h) {
                out.push_str(&format!("{h}: {v}\n"));
            }
        }
        out.push_str(&pretty(&res.text()));
        self.section(label, &out);
    }
}

/// JSON bodies pretty-printed with sorted keys, so the capture reads as a diff; other bodies
/// as they came.
fn pretty(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
        Err(_) => body.to_string(),
    }
}

fn run_script(app: &TestApp) -> Capture {
    let mut c = Capture {
        text: String::new(),
    };
    send_requests(app, &mut c);
    let batch_id = send_feedback(app, &mut c);
    read_back(app, &mut c, &batch_id);
    capture_store_metrics_and_log(app, &mut c);
    c
}

/// Predictions and rejections on every serving route, each waited for until audited.
fn send_requests(app: &TestApp, c: &mut Capture) {
    let json = [("Content-Type", "application/json")];
    let with_id = |id: &'static str| [("Content-Type", "application/json"), ("X-Request-Id", id)];

    let steps: Vec<Step> = vec![
        ("one row", "POST", "/predict", json.to_vec(), json!({"features": [5.1, 3.5, 1.4, 0.2]}).to_string()),
        (
            "a batch with a client id",
            "POST",
            "/predict",
            with_id("golden-batch").to_vec(),
            json!({"features": [[6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5], [5.0, 3.4, 1.5, 0.2]]}).to_string(),
        ),
        ("an outlier", "POST", "/predict", with_id("golden-outlier").to_vec(), json!({"features": [5.8, 2.7, 5.1, 99.0]}).to_string()),
        ("named model", "POST", "/models/iris/predict", json.to_vec(), json!({"features": [[7.7, 2.6, 6.9, 2.3]]}).to_string()),
        ("wrong feature count", "POST", "/predict", with_id("golden-short").to_vec(), json!({"features": [1, 2]}).to_string()),
        ("not JSON", "POST", "/predict", json.to_vec(), "{not json".to_string()),
        ("empty body", "POST", "/predict", json.to_vec(), String::new()),
        ("text body", "POST", "/predict", vec![("Content-Type", "text/plain")], "5.8,2.7".to_string()),
        ("unknown field", "POST", "/predict", json.to_vec(), json!({"features": [1, 2, 3, 4], "extra": 1}).to_string()),
        ("unknown model", "POST", "/models/nope/predict", with_id("to-nope").to_vec(), json!({"features": [1, 2, 3, 4]}).to_string()),
        (
            "OIP infer",
            "POST",
            "/v2/models/iris/infer",
            json.to_vec(),
            json!({"id": "oip-1", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [6.3, 2.9, 5.6, 1.8, 5.1, 3.5, 1.4, 0.2]}]}).to_string(),
        ),
        (
            "OIP wrong shape",
            "POST",
            "/v2/models/iris/infer",
            json.to_vec(),
            json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [6.3, 2.9, 5.6]}]}).to_string(),
        ),
    ];
    // Each request's rows are waited for before the next is sent: rejections are queued
    // without waiting for their commit, and PostgreSQL's writers commit side by side, so
    // without it the rows' order (their ids) would be the scheduler's.
    let mut rows = 0;
    for (label, method, path, headers, body) in &steps {
        let res = app.request(method, path, headers, body.as_bytes());
        c.response(&format!("{method} {path}: {label}"), &res);
        rows += match *label {
            "a batch with a client id" => 3,
            "OIP infer" => 2,
            _ => 1,
        };
        app.wait_for_rows(rows);
    }
}

/// Feedback on the batch's rows (by server id) and the outlier (by client id), and refusals;
/// returns the batch's server id.
fn send_feedback(app: &TestApp, c: &mut Capture) -> String {
    let batch = app.get("/audit?client_request_id=golden-batch").json();
    let batch_id = batch["records"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let feedback = [
        json!({"request_id": batch_id, "item": 0, "label": "versicolor"}),
        json!({"request_id": batch_id, "item": 1, "label": "versicolor"}),
        json!({"request_id": "golden-outlier", "item": 0, "label": "virginica"}),
        json!({"request_id": batch_id, "item": 7, "label": "setosa"}),
        json!({"request_id": batch_id, "item": 0, "label": "nonsense"}),
    ];
    for (i, f) in feedback.iter().enumerate() {
        let res = app.post_json("/feedback", &f.to_string());
        c.response(&format!("POST /feedback {i}"), &res);
    }
    batch_id
}

/// The models, audit and monitor routes, then `inferlog audit` in every format.
fn read_back(app: &TestApp, c: &mut Capture, batch_id: &str) {
    for path in [
        "/models",
        "/models/iris",
        "/models/nope",
        "/v2/models/iris",
        "/v2/models/iris/ready",
        "/audit?order=asc",
        "/audit?order=asc&limit=2",
        "/audit?status=rejected&order=asc",
        "/audit?client_request_id=golden-batch",
        "/audit?model=iris&label=setosa&order=asc",
        "/audit?min_latency_us=x",
        "/audit?since=yesterday",
        "/audit?format=csv&order=asc",
        "/audit?format=jsonl&order=asc",
        "/audit?format=sagemaker",
        "/audit/summary",
        "/monitor/performance",
        "/monitor/drift",
    ] {
        let res = app.get(path);
        c.response(&format!("GET {path}"), &res);
    }
    let by_id = app.get(&format!("/audit/{batch_id}"));
    c.response("GET /audit/{the batch's id}", &by_id);
    let next = app.get("/audit?order=asc&limit=2").json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let page2 = app.get(&format!("/audit?order=asc&limit=2&cursor={next}"));
    c.response("GET /audit?order=asc&limit=2, its second page", &page2);

    for args in [
        vec!["audit", "--order", "asc"],
        vec!["audit", "--order", "asc", "--format", "csv"],
        vec!["audit", "--order", "asc", "--format", "jsonl"],
        vec!["audit", "--format", "sagemaker"],
        vec![
            "audit", "--status", "rejected", "--order", "asc", "--format", "jsonl",
        ],
        vec!["audit", "--summary"],
        vec!["audit", "--summary", "--format", "jsonl"],
    ] {
        let out = cli(app, &args);
        c.section(&format!("inferlog {}", args.join(" ")), &out);
    }
}

/// The stored rows, the metrics and the request log lines.
fn capture_store_metrics_and_log(app: &TestApp, c: &mut Capture) {
    let rows = app.stored_rows("order by id");
    let rows: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&sorted(r)).unwrap())
        .collect();
    c.section("audit rows", &rows.join("\n"));

    let metrics = app.get("/metrics").text();
    c.section("metrics", &metric_lines(&metrics));

    // Log lines go through an async drain: the last request's line shows that all are in.
    app.wait_for_log_line(&["path: \"/metrics\""]);
    let log = app.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("request_id")).collect();
    c.section("request log lines", &lines.join("\n"));
}

/// The metrics a user reads, each family's series in order (the exposition's order is a hash
/// map's), without those that count time (latency histograms), the process's own resources, or
/// how rows happened to be batched.
fn metric_lines(exposition: &str) -> String {
    let kept = exposition.lines().filter(|l| {
        let name = l
            .trim_start_matches("# HELP ")
            .trim_start_matches("# TYPE ");
        !(name.starts_with("process_")
            || name.contains("_seconds")
            || name.contains("latency")
            || name.contains("_bytes")
            || name.contains("uptime")
            || name.contains("start_time")
            || name.starts_with("inferlog_audit_batch_rows"))
    });
    let mut out: Vec<String> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for line in kept {
        if line.starts_with('#') {
            series.sort();
            out.extend(series.drain(..).map(str::to_string));
            out.push(line.to_string());
        } else {
            series.push(line);
        }
    }
    series.sort();
    out.extend(series.into_iter().map(str::to_string));
    out.join("\n")
}

/// A JSON value with its object keys in order (stores give columns in their own order).
fn sorted(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// `inferlog ARGS --database-url URL` on the server's store, with a cleared environment.
fn cli(app: &TestApp, args: &[&str]) -> String {
    let out = crate::shutdown::binary()
        .args(args)
        .args(["--database-url", &app.database_url])
        .output()
        .expect("inferlog runs");
    format!(
        "exit {}\n{}{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Replaces what differs from run to run with a placeholder naming it.
fn mask(text: &str) -> String {
    static RULES: std::sync::OnceLock<Vec<(Regex, &'static str)>> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        MASKS
            .iter()
            .map(|(pattern, with)| (Regex::new(pattern).unwrap(), *with))
            .collect()
    });
    let mut out = text.to_string();
    for (pattern, with) in rules {
        out = pattern.replace_all(&out, *with).into_owned();
    }
    out
}

/// What [`mask`] replaces, in order, and with what.
const MASKS: &[(&str, &str)] = &[
    // Server request ids (UUID v7), also inside cursors and SageMaker event ids.
    (
        r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
        "<ID>",
    ),
    // RFC 3339 times in every precision the outputs use, and the term logger's time.
    (
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?",
        "<TIME>",
    ),
    (r"[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2}\.\d{3}", "<TIME>"),
    // Latencies and durations, as JSON fields, log fields and table cells.
    (
        r#"("?(latency_us|latency_ms|elapsed_ms|took_ms|duration_ms|p50_us|p90_us|p95_us|p99_us|max_us|mean_us|min_us)"?\s*[:=]\s*)[0-9.e+-]+"#,
        "${1}<N>",
    ),
    (
        r#"("?(p50|p90|p95|p99|max|mean|min)_latency_us"?\s*[:=]\s*)[0-9.e+-]+"#,
        "${1}<N>",
    ),
    // The writer's name: host@start time.
    (r"[A-Za-z0-9._-]+@<TIME>", "<WRITER>"),
    // Latency percentiles of summaries.
    (r#"("(p50|p90|p95|p99|max)": )\d+"#, "${1}<N>"),
    // The latency column of CSV exports (every client here is 127.0.0.1, the next column)
    // and of the command line's table (the ninth column).
    (r",\d+,127\.0\.0\.1,", ",<N>,127.0.0.1,"),
    (r"(?m)^(\s*\d+\s+<TIME>\s+(\S+\s+){5}\S+)\s+\d+", "${1} <N>"),
    // Cursors.
    (r#"(cursor"?\s*[:=]\s*"?)[0-9A-Za-z+-]+"#, "${1}<CURSOR>"),
    // Epoch seconds and milliseconds.
    (r"\b1[6-9]\d{8}(\.\d+)?\b", "<EPOCH>"),
    (r"\b1[6-9]\d{11}\b", "<EPOCH>"),
    // The store's file or URL.
    (r"(sqlite|postgres)://[^\s\x22,]+", "<DATABASE>"),
    (r"/tmp/[^\s\x22,]+", "<PATH>"),
    // Trailing whitespace from tables.
    (r"[ \t]+\n", "\n"),
];

fn compare(capture: &Capture, file: &Path) {
    if std::env::var("INFERLOG_GOLDEN").is_ok_and(|v| v == "write") {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, &capture.text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}; INFERLOG_GOLDEN=write makes it", file.display()));
    if want != capture.text {
        let got = file.with_extension("got.txt");
        std::fs::write(&got, &capture.text).unwrap();
        let first = want
            .lines()
            .zip(capture.text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(capture.text.lines().count()));
        panic!(
            "the traffic script's outputs differ from {} at line {}: {:?} against {:?}; all of it in {}",
            file.display(),
            first + 1,
            want.lines().nth(first),
            capture.text.lines().nth(first),
            got.display()
        );
    }
}
