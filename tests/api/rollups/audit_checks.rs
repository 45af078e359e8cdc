//! `/audit/summary` and `/audit/timeseries` checked against the same figures computed here
//! from the rows, and the rollup table itself read straight from the store.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::minute;
use crate::helpers::TestApp;

/// One latency per request among `rows` (its rows share it): percentiles count requests.
pub(super) fn per_request_latencies<'a>(rows: impl Iterator<Item = &'a Value>) -> Vec<i64> {
    let mut seen = HashMap::new();
    for r in rows {
        seen.insert(
            r["request_id"].as_str().unwrap().to_string(),
            r["latency_us"].as_i64().unwrap(),
        );
    }
    seen.into_values().collect()
}

pub(super) fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// A percentile read from the histogram against the exact one: within 4% (and half a µs of
/// rounding).
pub(super) fn close(got: &Value, want: Option<i64>, what: &str) {
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
pub(super) fn count_map(list: &Value) -> HashMap<String, i64> {
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

pub(super) fn tally<'a>(keys: impl Iterator<Item = Option<&'a str>>) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for k in keys {
        *m.entry(k.unwrap_or("<none>").to_string()).or_insert(0) += 1;
    }
    m
}

/// Checks `/audit/summary?{query}` against `rows` (the rows the query selects), answered
/// from the rollups.
pub(super) fn check_summary(app: &TestApp, query: &str, rows: &[&Value]) {
    check_summary_from(app, query, rows, "rollups");
}

/// [`check_summary`], answered from `source`.
pub(super) fn check_summary_from(app: &TestApp, query: &str, rows: &[&Value], source: &str) {
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
pub(super) fn check_timeseries(app: &TestApp, query: &str, bucket_minutes: i64, rows: &[&Value]) {
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
        check_confidence(&b["confidence"], &rows, &what);
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
pub(super) fn rollup_table(app: &TestApp, span: i64, hours: bool) -> Vec<Value> {
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

/// Rollup deltas not merged yet.
pub(super) fn unmerged(app: &TestApp) -> i64 {
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

/// A bucket's `confidence` against its rows: the served class's probability of each answered
/// row with probabilities, counted by hundredth, low below the default threshold.
fn check_confidence(c: &Value, rows: &[&Value], what: &str) {
    let mut hundredths: Vec<i64> = rows
        .iter()
        .filter(|r| r["status"] == 200 && r["probabilities"].is_array())
        .map(|r| {
            let p = r["probabilities"][r["prediction"].as_u64().unwrap() as usize]
                .as_f64()
                .unwrap();
            ((p * 100.0).floor() as i64).clamp(0, 100)
        })
        .collect();
    hundredths.sort_unstable();
    let threshold = inferlog::cli::defaults::LOW_CONFIDENCE;
    let low = hundredths
        .iter()
        .filter(|&&k| (k + 1) as f64 / 100.0 <= threshold)
        .count();
    assert_eq!(c["rows"], hundredths.len(), "{what} confidence rows");
    assert_eq!(c["low"], low, "{what} low confidence");
    for (p, name) in [(0.1, "p10"), (0.5, "p50")] {
        let want = nearest_rank(&hundredths, p).map(|k| k as f64 / 100.0);
        assert_eq!(c[name], json!(want), "{what} confidence {name}");
    }
}
