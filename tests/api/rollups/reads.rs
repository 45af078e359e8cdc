//! Smaller reads of the rollups: the time series' parameters and defaults, a store whose
//! rollups predate packing, newest-first pages of replayed history, and the drift report's
//! bound on the rows of its edge minutes.

use std::collections::HashSet;
use std::io::Write;

use chrono::Utc;
use serde_json::{Value, json};

use super::traffic::{Rng, older_rows};
use super::{inferlog, minute, served_version, store_arg};
use crate::helpers::on_both_stores;

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
