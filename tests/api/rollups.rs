//! The per-minute rollups against the rows they summarise: random traffic (over HTTP, and
//! hours of older rows replayed from a spill file) on either store, then every figure of
//! `/audit/summary` and `/audit/timeseries` from the rollups equals the same figure computed
//! naively from the rows in the test (percentiles within the histogram's stated 4%); a rebuild
//! gives the same rollup table, and a replay of rows already stored changes nothing.

use std::collections::HashMap;
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
fn older_rows(rng: &mut Rng, requests: usize, now: DateTime<Utc>) -> Vec<Value> {
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
        for item in 0..rows {
            let latency = match rng.below(3) {
                0 => rng.below(3) as i64,
                1 => rng.below(5_000) as i64,
                _ => 10i64.pow(3 + rng.below(4) as u32) + rng.below(9_000) as i64,
            };
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
                "model_version": model.map(|_| "v1"),
                "features": if rejected { Value::Null } else { json!([5.1, 3.5, 1.4, 0.2]) },
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

/// Checks `/audit/summary?{query}` against `rows` (the rows the query selects).
fn check_summary(app: &TestApp, query: &str, rows: &[&Value]) {
    let res = app.get(&format!("/audit/summary?{query}"));
    assert_eq!(res.status, 200, "{}", res.text());
    let s = res.json();
    assert_eq!(s["source"], "rollups", "{query}");
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
    let mut latencies: Vec<i64> = rows
        .iter()
        .map(|r| r["latency_us"].as_i64().unwrap())
        .collect();
    latencies.sort_unstable();
    for (p, name) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
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
        let mut latencies: Vec<i64> = rows
            .iter()
            .map(|r| r["latency_us"].as_i64().unwrap())
            .collect();
        latencies.sort_unstable();
        for (p, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
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

/// The rollups, merged and deltas added up as the readers do, in a stable order, read
/// straight from the store.
fn rollup_table(app: &TestApp) -> Vec<Value> {
    let n = "cast(case when kind = 'latency_max' then max(count) else sum(count) end as bigint)";
    let group = "group by minute, model, model_version, kind, key \
                 order by minute, model, model_version, kind, key";
    let merged = "select minute, model, model_version, kind, key, count from rollup";
    if app.database_url.starts_with("postgres") {
        let sql = format!(
            "select json_build_object('m', minute, 'model', model, 'v', model_version, \
             'kind', kind, 'key', key, 'n', {n}) from ({merged} union all \
             select (g->>0)::bigint, g->>1, g->>2, e->>0, e->>1, (e->>2)::bigint \
             from rollup_delta, jsonb_array_elements(counts::jsonb) g, \
             jsonb_array_elements(g->3) e) r {group}"
        );
        crate::pg::shared()
            .unwrap()
            .psql(crate::pg::database_name(&app.database_url), &sql)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        app.db_json(&format!(
            "select json_object('m', minute, 'model', model, 'v', model_version, \
             'kind', kind, 'key', key, 'n', {n}) from ({merged} union all \
             select g.value ->> 0, g.value ->> 1, g.value ->> 2, e.value ->> 0, \
             e.value ->> 1, e.value ->> 2 from rollup_delta, json_each(rollup_delta.counts) g, \
             json_each(g.value, '$[3]') e) r {group}"
        ))
    }
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
    let older = older_rows(&mut rng, 400, now);
    let mut file = std::fs::File::create(&spill).unwrap();
    for line in &older {
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let db = store_arg(&app);
    let spill_arg = spill.to_str().unwrap();
    inferlog(&["audit", "replay", spill_arg, "--database-url", &db]);
    let total = older.len() + live_traffic(&app, &mut rng, 60);
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
    // Inside a minute, rollups cannot answer: the rows do, and say so.
    let res = app.get(&format!("/audit/summary?since={}", iso(from + Span::seconds(30))));
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

    // A rebuild from the rows gives the same table; a replay of rows already stored adds
    // nothing to rows or rollups.
    let live = rollup_table(&app);
    assert!(live.len() > 100, "{} rollup rows", live.len());
    // The deltas are merged within seconds, and the merge changes no figure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while unmerged(&app) > 0 {
        assert!(std::time::Instant::now() < deadline, "rollup deltas never merged");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(rollup_table(&app), live, "merged against unmerged rollups");
    inferlog(&["audit", "rebuild-rollups", "--database-url", &db]);
    assert_eq!(rollup_table(&app), live, "rebuilt against live rollups");
    inferlog(&["audit", "replay", spill_arg, "--database-url", &db]);
    assert_eq!(app.stored_count(""), total as i64);
    assert_eq!(rollup_table(&app), live, "after replaying stored rows again");
});

on_both_stores!(fn timeseries_parameters_are_checked_and_defaults_cover_the_last_hour(app) {
    app.predict_ok(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let t = app.get("/audit/timeseries").json();
    assert_eq!(t["bucket"], "1m");
    let buckets = t["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    assert_eq!(buckets.last().unwrap()["requests"], 1, "the current minute is the last");
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
