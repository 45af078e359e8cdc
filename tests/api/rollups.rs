//! The per-minute rollups against the rows they summarise: random traffic (over HTTP, and
//! hours of older rows replayed from a spill file) on either store, then every figure of
//! `/audit/summary` and `/audit/timeseries` from the rollups equals the same figure computed
//! naively from the rows in the test (percentiles within the histogram's stated 4%); a rebuild
//! gives the same rollup table, and a replay of rows already stored changes nothing.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, on_both_stores};

/// xorshift64*: a fixed seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, list: &'a [T]) -> &'a T {
        &list[self.below(list.len() as u64) as usize]
    }
}

const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// Spill-file lines for `requests` requests spread over the three hours before `now` less
/// five minutes: models (one not served, some none), batches, rejections of several codes,
/// latencies from 0 µs to seconds, outliers.
fn older_rows(rng: &mut Rng, requests: usize, now: DateTime<Utc>, iris: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    for n in 0..requests {
        let at = now - Span::seconds(300 + rng.below(3 * 3600) as i64);
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let model = *rng.pick(&[Some("iris"), Some("iris"), Some("o'th\\er"), None]);
        let rejected = rng.below(4) == 0 || model.is_none();
        let rows = if rejected {
            1
        } else {
            1 + rng.below(4) as usize
        };
        // A request's rows share its latency, as the service writes them.
        let latency = match rng.below(3) {
            0 => rng.below(3) as i64,
            1 => rng.below(5_000) as i64,
            _ => 10i64.pow(3 + rng.below(4) as u32) + rng.below(9_000) as i64,
        };
        for item in 0..rows {
            let (status, code) = if rejected {
                *rng.pick(&[
                    (422, "invalid_feature"),
                    (400, "malformed_json"),
                    (404, "unknown_model"),
                    (422, "wrong_feature_count"),
                ])
            } else {
                (200, "")
            };
            let outliers = match rng.below(6) {
                0 if !rejected => json!(["petal_width"]),
                1 if !rejected => json!(["sepal_length", "petal_width"]),
                _ => Value::Null,
            };
            let class = rng.below(3) as usize;
            lines.push(json!({
                "request_id": format!("older-{n}"),
                "item": item,
                "received_at": at,
                "model": model,
                "model_version": model.map(|m| if m == "iris" { iris } else { "v1" }),
                "features": if rejected {
                    Value::Null
                } else {
                    json!([
                        4.0 + rng.below(40) as f64 / 10.0,
                        2.0 + rng.below(25) as f64 / 10.0,
                        1.0 + rng.below(60) as f64 / 10.0,
                        rng.below(25) as f64 / 10.0
                    ])
                },
                "prediction": if rejected { Value::Null } else { json!(class) },
                "label": if rejected { Value::Null } else { json!(LABELS[class]) },
                "status": status,
                "error_code": if rejected { json!(code) } else { Value::Null },
                "latency_us": latency,
                "client_addr": "10.0.0.1",
                "raw_body": if rejected { json!("{}") } else { Value::Null },
                "outliers": outliers,
                "client_request_id": Value::Null,
            }));
        }
    }
    lines
}

/// Live traffic over HTTP: single rows, batches, outliers and rejections; the rows it leaves.
fn live_traffic(app: &TestApp, rng: &mut Rng, requests: usize) -> usize {
    let mut rows = 0;
    for _ in 0..requests {
        let kind = rng.below(6);
        rows += if kind == 2 { 2 } else { 1 };
        let res = match kind {
            0 => app.post_predict(r#"{"features": [5.8, "x", 5.1, 1.9]}"#),
            1 => app.post_predict(r#"{"features": [1, 2]}"#),
            2 => app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 9.5], [6.3, 3.3, 6.0, 2.5]]}"#),
            3 => app.post_json("/models/nope/predict", r#"{"features": [1, 2, 3, 4]}"#),
            _ => app.post_predict(&format!(
                r#"{{"features": [{}.{}, 3.0, {}.1, 1.3]}}"#,
                4 + rng.below(4),
                rng.below(10),
                1 + rng.below(5)
            )),
        };
        assert!(res.status < 500, "{}", res.text());
    }
    rows
}

fn minute(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp()
        .div_euclid(60)
}

/// One latency per request among `rows` (its rows share it): percentiles count requests.
fn per_request_latencies<'a>(rows: impl Iterator<Item = &'a Value>) -> Vec<i64> {
    let mut seen = HashMap::new();
    for r in rows {
        seen.insert(
            r["request_id"].as_str().unwrap().to_string(),
            r["latency_us"].as_i64().unwrap(),
        );
    }
    seen.into_values().collect()
}

fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// A percentile read from the histogram against the exact one: within 4% (and half a µs of
/// rounding).
fn close(got: &Value, want: Option<i64>, what: &str) {
    match want {
        None => assert_eq!(got, &Value::Null, "{what}"),
        Some(w) => {
            let g = got.as_i64().unwrap_or_else(|| panic!("{what}: {got}"));
            assert!(
                (g - w).abs() as f64 <= w as f64 * 0.04 + 0.5,
                "{what}: {g} against {w} from the rows"
            );
        }
    }
}

/// `[{key, count}]` as a map (`null` keys as "<none>").
fn count_map(list: &Value) -> HashMap<String, i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap_or("<none>").to_string(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn tally<'a>(keys: impl Iterator<Item = Option<&'a str>>) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for k in keys {
        *m.entry(k.unwrap_or("<none>").to_string()).or_insert(0) += 1;
    }
    m
}

/// Checks `/audit/summary?{query}` against `rows` (the rows the query selects), answered
/// from the rollups.
fn check_summary(app: &TestApp, query: &str, rows: &[&Value]) {
    check_summary_from(app, query, rows, "rollups");
}

/// [`check_summary`], answered from `source`.
fn check_summary_from(app: &TestApp, query: &str, rows: &[&Value], source: &str) {
    let res = app.get(&format!("/audit/summary?{query}"));
    assert_eq!(res.status, 200, "{}", res.text());
    let s = res.json();
    assert_eq!(s["source"], source, "{query}");
    assert_eq!(s["rows"], rows.len(), "{query}");
    let requests = rows.iter().filter(|r| r["item"] == 0).count();
    assert_eq!(s["requests"], requests, "{query}");
    let statuses: Vec<String> = rows.iter().map(|r| r["status"].to_string()).collect();
    for (field, column) in [
        ("by_model", "model"),
        ("by_label", "label"),
        ("by_error_code", "error_code"),
    ] {
        assert_eq!(
            count_map(&s[field]),
            tally(rows.iter().map(|r| r[column].as_str())),
            "{query} {field}"
        );
    }
    assert_eq!(
        count_map(&s["by_status"]),
        tally(statuses.iter().map(|s| Some(s.as_str()))),
        "{query}"
    );
    let mut latencies = per_request_latencies(rows.iter().copied());
    latencies.sort_unstable();
    for (p, name) in [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")] {
        close(
            &s["latency_us"][name],
            nearest_rank(&latencies, p),
            &format!("{query} {name}"),
        );
    }
    assert_eq!(
        s["latency_us"]["max"],
        json!(latencies.last()),
        "{query} max"
    );
}

/// Checks every bucket of `/audit/timeseries?{query}` against `rows`.
fn check_timeseries(app: &TestApp, query: &str, bucket_minutes: i64, rows: &[&Value]) {
    let res = app.get(&format!("/audit/timeseries?{query}"));
    assert_eq!(res.status, 200, "{}", res.text());
    let t = res.json();
    assert_eq!(t["source"], "rollups");
    let mut by_bucket: HashMap<i64, Vec<&Value>> = HashMap::new();
    for r in rows {
        let m = minute(r["received_at"].as_str().unwrap());
        by_bucket
            .entry(m.div_euclid(bucket_minutes) * bucket_minutes)
            .or_default()
            .push(r);
    }
    let buckets = t["buckets"].as_array().unwrap();
    let mut seen_rows = 0;
    for b in buckets {
        let start = minute(b["start"].as_str().unwrap());
        let rows = by_bucket.remove(&start).unwrap_or_default();
        let what = format!("{query} bucket {}", b["start"]);
        seen_rows += rows.len();
        assert_eq!(b["rows"], rows.len(), "{what}");
        let requests = rows.iter().filter(|r| r["item"] == 0).count();
        let rejected = rows.iter().filter(|r| r["status"] != 200).count();
        assert_eq!(b["requests"], requests, "{what}");
        assert_eq!(b["rejected"], rejected, "{what}");
        assert_eq!(b["served"], requests - rejected, "{what}");
        assert_eq!(
            count_map(&b["rejects_by_code"]),
            tally(
                rows.iter()
                    .filter(|r| r["status"] != 200)
                    .map(|r| r["error_code"].as_str())
            ),
            "{what}"
        );
        assert_eq!(
            count_map(&b["labels"]),
            tally(
                rows.iter()
                    .filter(|r| r["label"].is_string())
                    .map(|r| r["label"].as_str())
            ),
            "{what}"
        );
        let flagged: Vec<&&Value> = rows.iter().filter(|r| r["outliers"].is_array()).collect();
        assert_eq!(b["outlier_rows"], flagged.len(), "{what}");
        let features = flagged
            .iter()
            .flat_map(|r| r["outliers"].as_array().unwrap().iter())
            .map(|f| f.as_str());
        assert_eq!(
            count_map(&b["outliers_by_feature"]),
            tally(features),
            "{what}"
        );
        let mut latencies = per_request_latencies(rows.iter().copied());
        latencies.sort_unstable();
        for (p, name) in [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")] {
            close(
                &b["latency_us"][name],
                nearest_rank(&latencies, p),
                &format!("{what} {name}"),
            );
        }
        assert_eq!(b["latency_us"]["max"], json!(latencies.last()), "{what}");
    }
    assert!(
        by_bucket.is_empty(),
        "{query}: rows outside every bucket: {:?}",
        by_bucket.keys()
    );
    assert_eq!(seen_rows, rows.len(), "{query}");
}

/// The rollups' counts per minute (or, with `hours`, per hour), model, version, kind and key,
/// in a stable order, read straight from the store: from the rows of `span` (1 or 60) and,
/// for minutes, the deltas not merged yet, added up as the readers do.
fn rollup_table(app: &TestApp, span: i64, hours: bool) -> Vec<Value> {
    let n = "cast(case when kind = 'latency_max' then max(n) else sum(n) end as bigint)";
    let m = if hours { "(m / 60) * 60" } else { "m" };
    let group = format!(
        "group by {m}, model, v, kind, key having {n} <> 0 or kind = 'latency_max' \
         order by {m}, model, v, kind, key"
    );
    let deltas = span == 1;
    if app.database_url.starts_with("postgres") {
        let delta = if deltas {
            "union all select (g->>0)::bigint, g->>1, g->>2, e->>0, e->>1, (e->>2)::bigint \
             from rollup_delta, jsonb_array_elements(counts::jsonb) g, \
             jsonb_array_elements(g->3) e"
        } else {
            ""
        };
        let sql = format!(
            "select json_build_object('m', {m}, 'model', model, 'v', v, \
             'kind', kind, 'key', key, 'n', {n}) from (\
             select r.start as m, r.model, r.model_version as v, e->>0 as kind, \
             e->>1 as key, (e->>2)::bigint as n from rollup r, \
             jsonb_array_elements(r.counts::jsonb) e where r.span = {span} {delta}) x {group}"
        );
        crate::pg::shared()
            .unwrap()
            .psql(crate::pg::database_name(&app.database_url), &sql)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        let delta = if deltas {
            "union all select g.value ->> 0, g.value ->> 1, g.value ->> 2, e.value ->> 0, \
             e.value ->> 1, e.value ->> 2 from rollup_delta, json_each(rollup_delta.counts) g, \
             json_each(g.value, '$[3]') e"
        } else {
            ""
        };
        app.db_json(&format!(
            "select json_object('m', {m}, 'model', model, 'v', v, \
             'kind', kind, 'key', key, 'n', {n}) from (\
             select r.start as m, r.model, r.model_version as v, e.value ->> 0 as kind, \
             e.value ->> 1 as key, e.value ->> 2 as n from rollup r, json_each(r.counts) e \
             where r.span = {span} {delta}) x {group}"
        ))
    }
}

/// The version of the iris model the server answers with.
fn served_version(app: &TestApp) -> String {
    let id = app.predict_ok(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    app.wait_for_rows(1);
    let rows = app.rows_of(&id);
    rows[0]["model_version"].as_str().unwrap().to_string()
}

fn iris_inside<'a>(rows: &[&'a Value]) -> Vec<&'a Value> {
    rows.iter()
        .copied()
        .filter(|r| r["model"] == "iris")
        .collect()
}

/// Sends feedback on about a third of the answered rows among `rows` (a sixth of those
/// twice, the second replacing the first); the latest true label of each.
fn random_feedback(
    app: &TestApp,
    rng: &mut Rng,
    rows: &[&Value],
) -> HashMap<(String, i64), String> {
    let mut truth = HashMap::new();
    for r in rows.iter().filter(|r| r["status"] == 200) {
        if rng.below(3) != 0 {
            continue;
        }
        let key = (
            r["request_id"].as_str().unwrap().to_string(),
            r["item"].as_i64().unwrap(),
        );
        for _ in 0..(1 + usize::from(rng.below(6) == 0)) {
            let label = *rng.pick(&LABELS);
            let res = app.post_json(
                "/feedback",
                &json!({"request_id": key.0, "item": key.1, "label": label}).to_string(),
            );
            assert_eq!(res.status, 201, "{}", res.text());
            truth.insert(key.clone(), label.to_string());
        }
    }
    assert!(truth.len() > 20, "{} rows labelled", truth.len());
    truth
}

/// Checks `/monitor/performance?model=iris&{query}` against `rows` (the iris rows of the
/// range) and their latest true labels; returns the report.
fn check_performance(
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
fn psi(expected: &[f64], counts: &[u64]) -> f64 {
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
fn check_drift(app: &TestApp, query: &str, rows: &[&Value], version: &str) -> Value {
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

/// Rollup deltas not merged yet.
fn unmerged(app: &TestApp) -> i64 {
    app.store_json(
        [
            "json_object('n', count(*))",
            "json_build_object('n', count(*))",
        ],
        "rollup_delta",
    )[0]["n"]
        .as_i64()
        .unwrap()
}

fn store_arg(app: &TestApp) -> String {
    if app.database_url.starts_with("postgres") {
        app.database_url.clone()
    } else {
        app.db_path.display().to_string()
    }
}

fn inferlog(args: &[&str]) -> String {
    let out = crate::shutdown::binary().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

on_both_stores!(fn rollups_give_the_figures_the_rows_give(app) {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let now = Utc::now();
    let spill = app.dir.path().join("older.jsonl");
    let version = served_version(&app);
    let older = older_rows(&mut rng, 400, now, &version);
    let mut file = std::fs::File::create(&spill).unwrap();
    for line in &older {
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let db = store_arg(&app);
    let spill_arg = spill.to_str().unwrap();
    inferlog(&["audit", "replay", spill_arg, "--database-url", &db]);
    // The row of `served_version`'s request, the older ones, the live ones.
    let total = 1 + older.len() + live_traffic(&app, &mut rng, 60);
    // Rejected requests are answered before their rows commit.
    app.wait_for_rows(total as i64);
    let rows = app.stored_rows("order by id");
    assert_eq!(rows.len(), total);
    let all: Vec<&Value> = rows.iter().collect();

    // Summaries: everything, one model, whole-minute ranges.
    check_summary(&app, "", &all);
    let iris: Vec<&Value> = all.iter().copied().filter(|r| r["model"] == "iris").collect();
    check_summary(&app, "model=iris", &iris);
    let from = now - Span::minutes(100);
    let from = from - Span::seconds(from.timestamp().rem_euclid(60));
    let to = from + Span::minutes(45);
    let inside: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|r| {
            let m = minute(r["received_at"].as_str().unwrap());
            m >= from.timestamp() / 60 && m < to.timestamp() / 60
        })
        .collect();
    assert!(!inside.is_empty(), "the range holds rows");
    let range = format!("since={}&until={}", iso(from), iso(to));
    check_summary(&app, &range, &inside);
    // Bounds inside minutes: the whole minutes between them from the rollups, the partial
    // minutes at the edges from their rows; the same figures the rows give, and it says so.
    // Also a range inside one minute, and one with an open end.
    let received = |r: &Value| {
        DateTime::parse_from_rfc3339(r["received_at"].as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    let mut edge_ranges = Vec::new();
    for (a, b) in [
        (from + Span::seconds(30), Some(to + Span::seconds(20))),
        (from + Span::seconds(10), Some(from + Span::seconds(50))),
        (from + Span::seconds(30), None),
    ] {
        // As the query says them: in whole seconds (`now`'s fraction dropped).
        let whole = |t: DateTime<Utc>| DateTime::parse_from_rfc3339(&iso(t)).unwrap().to_utc();
        let (a, b) = (whole(a), b.map(whole));
        let between: Vec<&Value> = all
            .iter()
            .copied()
            .filter(|r| received(r) >= a && b.is_none_or(|b| received(r) < b))
            .collect();
        let query = match b {
            Some(b) => format!("since={}&until={}", iso(a), iso(b)),
            None => format!("since={}", iso(a)),
        };
        edge_ranges.push((query.clone(), between.clone()));
        if between.is_empty() {
            let s = app.get(&format!("/audit/summary?{query}")).json();
            assert_eq!((s["rows"].as_i64(), s["source"].as_str()), (Some(0), Some("rollups_and_edge_rows")));
        } else {
            check_summary_from(&app, &query, &between, "rollups_and_edge_rows");
        }
    }
    // A filter rollups cannot answer at all is answered from the rows, and says so.
    let res = app.get(&format!("/audit/summary?since={}&status=rejected", iso(from)));
    assert_eq!(res.json()["source"], "rows");

    // Time series by minute over the last four hours, and by hour.
    let since = now - Span::hours(4);
    check_timeseries(
        &app,
        &format!("bucket=1m&since={}&until={}", iso(since), iso(now + Span::minutes(1))),
        1,
        &all,
    );
    check_timeseries(
        &app,
        &format!("bucket=1h&since={}&until={}", iso(since), iso(now + Span::hours(1))),
        60,
        &all,
    );
    check_timeseries(
        &app,
        &format!("bucket=5m&model=iris&since={}&until={}", iso(since), iso(now + Span::minutes(5))),
        5,
        &iris,
    );

    // Feedback on a third of the answered iris rows, some of it replaced, then performance
    // and drift from the rollups against the same figures from the rows.
    let truth = random_feedback(&app, &mut rng, &iris);
    let whole = check_performance(&app, "", &iris, &truth);
    assert_eq!(whole["source"], "rollups");
    let whole = check_performance(&app, &range, &iris_inside(&inside), &truth);
    assert_eq!(whole["source"], "rollups");
    // Not whole minutes: the whole minutes from the rollups, the partial ones at the edges
    // joined from their rows; the same figures. The second is pinned to 30: `iso` drops
    // fractions, so an offset from `now` lands on a whole minute once in sixty runs.
    let earlier = now - Span::hours(5);
    let earlier = earlier - Span::seconds(earlier.timestamp().rem_euclid(60)) + Span::seconds(30);
    let earlier = format!("since={}", iso(earlier));
    let edge_perf = check_performance(&app, &earlier, &iris, &truth);
    assert_eq!(edge_perf["source"], "rollups_and_edge_rows");
    let drift = check_drift(&app, "", &all, &version);
    let rows_drift = check_drift(&app, &earlier, &all, &version);
    assert_eq!(rows_drift["source"], "rollups_and_edge_rows");
    for (query, between) in &edge_ranges {
        let p = check_performance(&app, query, &iris_inside(between), &truth);
        assert_eq!(p["source"], "rollups_and_edge_rows", "{query}");
        let d = check_drift(&app, query, between, &version);
        assert_eq!(d["source"], "rollups_and_edge_rows", "{query}");
    }
    for j in 0..4 {
        let (a, b) = (&drift["features"][j], &rows_drift["features"][j]);
        assert_eq!(a["ks_statistic"], b["ks_statistic"], "KS over the same rows");
        let (ma, mb) = (a["live_mean"].as_f64().unwrap(), b["live_mean"].as_f64().unwrap());
        assert!((ma - mb).abs() < 1e-9, "live means {ma} {mb}");
    }
    check_drift(&app, &range, &inside, &version);

    // A rebuild from the rows gives the same table; a replay of rows already stored adds
    // nothing to rows or rollups.
    let live = rollup_table(&app, 1, false);
    assert!(live.len() > 100, "{} rollup rows", live.len());
    // The deltas are merged within seconds, and the merge changes no figure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while unmerged(&app) > 0 {
        assert!(std::time::Instant::now() < deadline, "rollup deltas never merged");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(rollup_table(&app, 1, false), live, "merged against unmerged rollups");
    let hours = rollup_table(&app, 60, true);
    assert_eq!(rollup_table(&app, 1, true), hours, "hour rows against their minutes");
    inferlog(&["audit", "rebuild-rollups", "--database-url", &db]);
    assert_eq!(rollup_table(&app, 1, false), live, "rebuilt against live rollups");
    check_performance(&app, "", &iris, &truth);
    check_drift(&app, "", &all, &version);
    assert_eq!(rollup_table(&app, 60, true), hours, "rebuilt hours against live ones");
    inferlog(&["audit", "replay", spill_arg, "--database-url", &db]);
    assert_eq!(app.stored_count(""), total as i64);
    assert_eq!(rollup_table(&app, 1, false), live, "after replaying stored rows again");
});

on_both_stores!(fn timeseries_parameters_are_checked_and_defaults_cover_the_last_hour(app) {
    let before = Utc::now().timestamp().div_euclid(60);
    let id = app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let t = app.get("/audit/timeseries").json();
    let after = Utc::now().timestamp().div_euclid(60);
    assert_eq!(t["bucket"], "1m");
    let buckets = t["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    // The last bucket is the minute of the request for the series (a minute may have begun
    // since the prediction), and the row is counted in its own minute.
    let start = |b: &Value| minute(b["start"].as_str().unwrap());
    let last = start(buckets.last().unwrap());
    assert!((before..=after).contains(&last), "last bucket {last}, now {before}..={after}");
    let at = minute(app.rows_of(&id)[0]["received_at"].as_str().unwrap());
    let counted: Vec<(i64, &Value)> = buckets
        .iter()
        .filter(|b| b["requests"] != 0)
        .map(|b| (start(b), &b["requests"]))
        .collect();
    assert_eq!(counted, [(at, &json!(1))], "the row's minute holds it");
    for (q, name) in [
        ("bucket=2m", "bucket"),
        ("since=yesterday", "since"),
        ("bucket=1m&since=2020-01-01T00:00:00Z", "since"),
        ("colour=red", "colour"),
    ] {
        let res = app.get(&format!("/audit/timeseries?{q}"));
        assert_eq!(res.status, 400, "{q}: {}", res.text());
        assert!(res.text().contains(name), "{q}: {}", res.text());
    }
});

/// A store from before packed rollups (migration 6: one row per count, and deltas not merged
/// yet) gets its rollups rebuilt from its rows at the next start: the old counts, here made
/// wrong on purpose, are gone.
#[test]
fn a_store_with_the_rollups_of_migration_6_is_rebuilt_from_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    crate::helpers::db_at_migration(&db, 6);
    crate::helpers::db_exec(
        &db,
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 50)
         insert into prediction (request_id, item, received_at, model, model_version, features,
                                 prediction, label, status, error_code, latency_us, client_addr,
                                 raw_body, outliers, client_request_id)
         select 'req-' || i, 0, strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', '-' || i || ' minutes'),
                'iris', 'v1', '[5.1,3.5,1.4,0.2]', i % 3, 'label' || (i % 3),
                200, null, 100 + i, '10.0.0.1', null, null, null
         from n;
         insert into rollup (minute, model, model_version, kind, key, count)
         values (1, 'iris', 'v1', 'rows', '', 999);
         insert into rollup_delta (counts) values ('[[2,\"iris\",\"v1\",[[\"rows\",\"\",5]]]]');",
    );
    let url = format!("sqlite://{}", db.display());
    let app = crate::helpers::spawn_app_with(move |s| s.database_url = url.parse().unwrap());
    let s = app.get("/audit/summary").json();
    assert_eq!(s["source"], "rollups", "{s}");
    assert_eq!(s["rows"], 50, "{s}");
    assert_eq!(s["requests"], 50, "{s}");
    assert_eq!(s["latency_us"]["max"], 150, "{s}");
    let t = app
        .get("/audit/timeseries?bucket=1h&since=2020-01-01T00:00:00Z")
        .status;
    assert_eq!(t, 400, "more than 10,080 buckets");
    let hours = app.get("/audit/timeseries?bucket=1h").json();
    let rows: i64 = hours["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(rows, 50, "{hours}");
}

on_both_stores!(fn newest_first_pages_sort_by_arrival_then_id(app) {
    // Live rows first (lower ids), then a history of the last hours replayed in after them
    // (higher ids, older arrival times).
    let version = served_version(&app);
    for _ in 0..4 {
        app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    }
    app.wait_for_rows(5);
    let mut rng = Rng(0x5EED_0000_0000_0012);
    let older = older_rows(&mut rng, 30, Utc::now(), &version);
    let spill = app.dir.path().join("older.jsonl");
    let mut file = std::fs::File::create(&spill).unwrap();
    for line in &older {
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    inferlog(&["audit", "replay", spill.to_str().unwrap(), "--database-url", &store_arg(&app)]);
    let total = 5 + older.len();
    app.wait_for_rows(total as i64);

    // Walk newest first, 7 rows a page.
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut query = "limit=7".to_string();
    loop {
        let page = app.audit_page(&query);
        seen.extend(page.records.iter().map(|r| {
            (r["received_at"].as_str().unwrap().to_string(), r["id"].as_i64().unwrap())
        }));
        match page.next_cursor {
            Some(c) => query = format!("limit=7&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), total, "every row once: {seen:?}");
    let mut want = seen.clone();
    want.sort_by(|a, b| b.cmp(a));
    want.dedup();
    assert_eq!(seen, want, "by arrival, then id, newest first");
    // The live rows lead, although the replayed history has the higher ids.
    let live_ids: HashSet<i64> = app
        .stored_rows("where client_addr <> '10.0.0.1'")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(live_ids.len(), 5);
    assert!(seen[..5].iter().all(|(_, id)| live_ids.contains(id)), "{seen:?}");
    assert!(seen[5..].iter().all(|(_, id)| !live_ids.contains(id)));
    assert!(live_ids.iter().max() < seen[5..].iter().map(|(_, id)| id).max());
});

on_both_stores!(fn a_drift_report_reads_at_most_max_rows_of_its_edge_minutes(app) with |s| {
    s.monitor.drift.max_rows = 50;
    s.monitor.drift.sample_rows = 40;
}, {
    let version = served_version(&app);
    // 30 answered rows at 00:00:40 and 30 at 00:00:45 of one minute, written by a replay.
    let spill = app.dir.path().join("edge.jsonl");
    let mut file = std::fs::File::create(&spill).unwrap();
    for n in 0..60 {
        let second = if n < 30 { 40 } else { 45 };
        let line = json!({
            "request_id": format!("edge-{n}"),
            "item": 0,
            "received_at": format!("2001-01-01T00:00:{second}.000000Z"),
            "model": "iris",
            "model_version": version,
            "features": [5.8, 2.7, 5.1, 1.9],
            "prediction": 2,
            "label": "virginica",
            "status": 200,
            "error_code": null,
            "latency_us": 100,
            "client_addr": "10.0.0.1",
            "raw_body": null,
            "outliers": null,
            "client_request_id": null,
        });
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let db = store_arg(&app);
    inferlog(&["audit", "replay", spill.to_str().unwrap(), "--database-url", &db]);
    app.wait_for_rows(61);
    let drift = |query: &str| {
        let res = app.get(&format!("/monitor/drift?model=iris&{query}"));
        assert_eq!(res.status, 200, "{}", res.text());
        res.json()
    };
    // The edge holds more than `max_rows`: its newest 50 are counted, and the report says so.
    let d = drift("since=2001-01-01T00:00:30Z&until=2001-01-01T00:00:50Z");
    assert_eq!(d["source"], "rollups_and_edge_rows", "{d}");
    assert_eq!(d["rows"], 50, "{d}");
    assert_eq!(d["sample_rows"], 40, "{d}");
    assert_eq!(d["truncated"], true, "{d}");
    // An edge within the bound is counted whole.
    let d = drift("since=2001-01-01T00:00:30Z&until=2001-01-01T00:00:42Z");
    assert_eq!(d["source"], "rollups_and_edge_rows", "{d}");
    assert_eq!(d["rows"], 30, "{d}");
    assert_eq!(d["sample_rows"], 30, "{d}");
    assert_eq!(d["truncated"], false, "{d}");
    // Across a minute boundary: the whole minute from the rollups (all 60), the next minute's
    // partial start (empty) from the rows; nothing is cut.
    let d = drift("since=2001-01-01T00:00:00Z&until=2001-01-01T00:01:30Z");
    assert_eq!(d["source"], "rollups_and_edge_rows", "{d}");
    assert_eq!(d["rows"], 60, "{d}");
    assert_eq!(d["sample_rows"], 40, "{d}");
});
