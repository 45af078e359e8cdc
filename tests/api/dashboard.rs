//! `/dashboard` in a real browser (Debian's `chromium`, headless): the numbers it shows come
//! from the same store as `/audit/summary` and `/monitor/performance`, read from the rendered
//! page; screenshots at desktop and phone sizes; with a token set, a prompt, not broken charts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// Runs headless Chromium on `url` with every other host unreachable; `extra` chooses what
/// it does (`--dump-dom`, `--screenshot=…`). Its stdout.
pub(crate) fn browse(browser: &Path, app: &TestApp, url: &str, extra: &[&str]) -> String {
    let profile = app
        .dir
        .path()
        .join(format!("chromium-{}", extra.join("").len()));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `attr` on the element whose opening tag contains `marker`.
fn attr_after<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let tag_end = dom[at..].find('>')? + at;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_end];
    let v = tag.split(&format!("{attr}=\"")).nth(1)?;
    v.split('"').next()
}

/// The count in the row `<tr data-code="{code}">…<td class="num">N</td>`.
fn reject_count(dom: &str, code: &str) -> Option<i64> {
    let row = dom.split(&format!("data-code=\"{code}\"")).nth(1)?;
    let row = row.split("</tr>").next()?;
    let cell = row.split("<td class=\"num\">").nth(1)?;
    cell.split('<').next()?.replace(',', "").parse().ok()
}

#[test]
fn the_dashboard_shows_the_stores_numbers_and_fits_two_screens() {
    let Some(browser) = crate::helpers::tool("chromium") else {
        return;
    };
    // A threshold some of the answers fall under.
    let app = spawn_app_with(|s| s.monitor.low_confidence = 0.96);
    // Served rows (one of them an outlier), a batch, rejections of two kinds, feedback.
    let mut ids = Vec::new();
    for row in [
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
        [5.9, 3.0, 4.2, 1.5],
        [5.8, 2.7, 5.1, 9.9],
    ] {
        ids.push(app.predict_ok(&json!({ "features": row }).to_string()));
    }
    app.predict_ok(
        r#"{"features": [[5.0, 3.4, 1.5, 0.2], [6.4, 3.2, 4.5, 1.5], [7.7, 2.6, 6.9, 2.3]]}"#,
    );
    assert_eq!(app.post_predict(r#"{"features": [1, 2]}"#).status, 422);
    assert_eq!(app.post_predict(r#"{"features": [1, 2, 3]}"#).status, 422);
    assert_eq!(app.post_predict("{nope").status, 400);
    for (id, label) in ids.iter().zip(["setosa", "virginica", "setosa"]) {
        let body = json!({"request_id": id, "item": 0, "label": label}).to_string();
        assert_eq!(app.post_json("/feedback", &body).status, 201);
    }
    app.wait_for_rows(10);

    let summary = app.get("/audit/summary?model=iris").json();
    let performance = app.get("/monitor/performance?model=iris").json();
    let url = format!("http://{}/dashboard", app.addr());
    let dom = browse(&browser, &app, &url, &["--dump-dom"]);
    let shown =
        |id: &str| attr_after(&dom, &format!("id=\"{id}\""), "data-value").map(str::to_string);
    assert_eq!(
        shown("total-requests"),
        Some(summary["requests"].to_string()),
        "{dom}"
    );
    assert_eq!(shown("total-rows"), Some(summary["rows"].to_string()));
    for c in summary["by_error_code"].as_array().unwrap() {
        let Some(code) = c["key"].as_str() else {
            continue;
        };
        assert_eq!(
            reject_count(&dom, code),
            c["count"].as_i64(),
            "{code} in {dom}"
        );
    }
    assert_eq!(reject_count(&dom, "wrong_feature_count"), Some(2));
    // The low-confidence share: the time series' low rows over its answered rows.
    let series = app.get("/audit/timeseries?bucket=1h&model=iris").json();
    let (low, answered) = series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(l, a), b| {
            (
                l + b["confidence"]["low"].as_i64().unwrap(),
                a + b["confidence"]["rows"].as_i64().unwrap(),
            )
        });
    assert_eq!(answered, 7, "{series}");
    assert!(low > 0, "{series}");
    let share: f64 = shown("low-confidence").unwrap().parse().unwrap();
    assert!(
        (share - low as f64 / answered as f64).abs() < 1e-12,
        "{share} vs {low}/{answered}"
    );
    let accuracy: f64 = shown("accuracy").unwrap().parse().unwrap();
    assert!((accuracy - performance["accuracy"].as_f64().unwrap()).abs() < 1e-12);
    assert!(dom.contains("data-feature=\"petal_length\""), "drift table");
    assert!(
        dom.contains("data-feature=\"confidence\""),
        "confidence drift in the table"
    );
    assert!(dom.contains("data-request=\""), "audit records listed");

    screenshots(&browser, &app, &url);
}

/// Screenshots at a desktop and a phone size, left in target/dashboard-screenshots.
fn screenshots(browser: &Path, app: &TestApp, url: &str) {
    let sizes = [("1280x800", "1280,800"), ("390x844", "390,844")];
    screenshots_named(browser, app, url, "dashboard", &sizes);
}

/// Screenshots `{prefix}-{name}.png` at each size.
fn screenshots_named(
    browser: &Path,
    app: &TestApp,
    url: &str,
    prefix: &str,
    sizes: &[(&str, &str)],
) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, size) in sizes {
        let file = dir.join(format!("{prefix}-{name}.png"));
        let _ = std::fs::remove_file(&file);
        browse(
            browser,
            app,
            url,
            &[
                &format!("--screenshot={}", file.display()),
                &format!("--window-size={size}"),
            ],
        );
        assert_png(&file);
    }
}

fn assert_png(file: &Path) {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        file.display()
    );
    assert!(
        bytes.len() > 10_000,
        "{} is too small to show the page",
        file.display()
    );
}

#[test]
fn with_a_token_the_dashboard_asks_for_it_instead_of_drawing_errors() {
    let Some(browser) = crate::helpers::tool("chromium") else {
        return;
    };
    let app = spawn_app_with(|s| s.audit.token = Some("s3cret".into()));
    app.predict_ok(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    for path in [
        "/audit/timeseries",
        "/audit/summary",
        "/monitor/drift",
        "/monitor/performance",
        "/audit",
    ] {
        assert_eq!(app.get(path).status, 401, "{path} without the token");
    }
    let page = app.get("/dashboard");
    assert_eq!(page.status, 200, "the page itself holds no data");
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'"))
    );
    let dom = browse(
        &browser,
        &app,
        &format!("http://{}/dashboard", app.addr()),
        &["--dump-dom"],
    );
    assert!(
        dom.contains(
            "id=\"token-prompt\" role=\"dialog\" aria-labelledby=\"token-title\" class=\"shown\""
        ),
        "{dom}"
    );
    assert!(dom.contains("id=\"panels\" hidden"), "{dom}");
    let error = dom
        .split("id=\"error\" role=\"alert\">")
        .nth(1)
        .unwrap_or("");
    assert!(error.starts_with("</div>"), "no error shown: {error}");
    let root = app.get("/");
    assert_eq!(root.status, 308);
    assert_eq!(root.header("location"), Some("/dashboard"));
    let _: Value = app.get("/openapi.json").json();
}

#[test]
fn for_a_regression_model_the_dashboard_shows_answers_by_range_and_errors() {
    let Some(browser) = crate::helpers::tool("chromium") else {
        return;
    };
    use inferlog::model::data::{Dataset, Target, load_dataset};
    let app = spawn_app_with(crate::helpers::with_regressor);
    let data = load_dataset(Dataset::Diabetes);
    let Target::Values(truths) = &data.target else {
        panic!("diabetes has numbers")
    };
    let rows: Vec<&[f64]> = data.x.chunks(data.feature_names.len()).take(12).collect();
    let res = app.post_json(
        "/models/diabetes/predict",
        &json!({"features": rows}).to_string(),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let id = res.json()["request_id"].as_str().unwrap().to_string();
    for (item, truth) in truths.iter().take(6).enumerate() {
        let body = json!({"request_id": id, "item": item, "value": truth}).to_string();
        assert_eq!(app.post_json("/feedback", &body).status, 201);
    }
    app.predict_ok(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    app.wait_for_rows(13);

    let performance = app.get("/monitor/performance?model=diabetes").json();
    let series = app.get("/audit/timeseries?bucket=1h&model=diabetes").json();
    let mut keys: Vec<String> = series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["outputs"].as_array().cloned().unwrap_or_default())
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort_by_key(|k| k.parse::<u32>().unwrap());
    keys.dedup();
    assert!(
        keys.len() > 1,
        "answers fall in several output bins: {series}"
    );

    let url = format!("http://{}/dashboard?model=diabetes", app.addr());
    let dom = browse(&browser, &app, &url, &["--dump-dom"]);
    let mae: f64 = attr_after(&dom, "id=\"mae\"", "data-value")
        .unwrap_or_else(|| panic!("no MAE shown: {dom}"))
        .parse()
        .unwrap();
    assert!(
        (mae - performance["mae"].as_f64().unwrap()).abs() < 1e-12,
        "{mae} vs {performance}"
    );
    assert!(
        dom.contains("Answers by output range") && dom.contains("Errors from feedback"),
        "{dom}"
    );
    // One legend entry per output bin the answers fell in, in bin order.
    let legend: Vec<&str> = dom
        .split("data-key=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(legend, keys, "{dom}");
    assert_eq!(
        attr_after(&dom, "id=\"confidence-section\"", "hidden"),
        Some(""),
        "a regressor has no confidence panel"
    );
    assert!(
        dom.contains("<td>answer</td>"),
        "the drift table's output row"
    );
    assert!(
        !dom.contains("id=\"accuracy\""),
        "no accuracy for a regressor"
    );
    let sizes = [("1280x800", "1280,800")];
    screenshots_named(&browser, &app, &url, "dashboard-regression", &sizes);
}
