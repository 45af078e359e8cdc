//! The whole comparison: every figure of the summaries, the time series, performance and
//! drift from the rollups against the rows, then a rebuild and a replay that change nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::Value;

use super::audit_checks::{
    check_summary, check_summary_from, check_timeseries, rollup_table, unmerged,
};
use super::monitor_checks::{check_drift, check_performance, iris_inside};
use super::traffic::{Rng, live_traffic, older_rows, random_feedback};
use super::{inferlog, iso, minute, served_version, store_arg};
use crate::helpers::{TestApp, on_both_stores};

on_both_stores!(fn rollups_give_the_figures_the_rows_give(app) {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let now = Utc::now();
    let written = replay_older_rows_and_serve_live_ones(&app, &mut rng, now);
    let all: Vec<&Value> = written.rows.iter().collect();

    // Summaries: everything, one model, whole-minute ranges.
    check_summary(&app, "", &all);
    let iris: Vec<&Value> = all.iter().copied().filter(|r| r["model"] == "iris").collect();
    check_summary(&app, "model=iris", &iris);
    let ranges = check_summaries_of_ranges(&app, &all, now);
    check_timeseries_by_minute_hour_and_model(&app, &all, &iris, now);
    let truth = check_performance_and_drift(&app, &mut rng, &all, &iris, &ranges, now, &written.version);
    check_rebuild_and_replay(&app, &written, &all, &iris, &truth);
});

/// What the replay and the live traffic left in the store, and how to reach it again.
struct Written {
    /// The iris version the server answers with.
    version: String,
    /// The store as the commands take it ([`store_arg`]).
    db: String,
    /// The spill file of older rows, replayed once.
    spill: PathBuf,
    /// Every row, in id order.
    rows: Vec<Value>,
    /// How many rows were written: the one of [`served_version`], the older and the live ones.
    total: usize,
}

/// Replays 400 requests of older rows from a spill file, then sends 60 live ones, and reads
/// back every row they left.
fn replay_older_rows_and_serve_live_ones(
    app: &TestApp,
    rng: &mut Rng,
    now: DateTime<Utc>,
) -> Written {
    let spill = app.dir.path().join("older.jsonl");
    let version = served_version(app);
    let older = older_rows(rng, 400, now, &version);
    let mut file = std::fs::File::create(&spill).unwrap();
    for line in &older {
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let db = store_arg(app);
    let spill_arg = spill.to_str().unwrap();
    inferlog(&["audit", "replay", spill_arg, "--database-url", &db]);
    // The row of `served_version`'s request, the older ones, the live ones.
    let total = 1 + older.len() + live_traffic(app, rng, 60);
    // Rejected requests are answered before their rows commit.
    app.wait_for_rows(total as i64);
    let rows = app.stored_rows("order by id");
    assert_eq!(rows.len(), total);
    Written {
        version,
        db,
        spill,
        rows,
        total,
    }
}

/// The ranges the summaries were checked over, for performance and drift to check again.
struct Ranges<'a> {
    /// 45 whole minutes from 100 minutes ago, as a query.
    range: String,
    /// The rows of `range`.
    inside: Vec<&'a Value>,
    /// Queries with bounds inside minutes, and the rows of each.
    edges: Vec<(String, Vec<&'a Value>)>,
}

/// Summaries over a range of whole minutes, over ranges whose bounds fall inside minutes, and
/// with a filter the rollups cannot answer.
fn check_summaries_of_ranges<'a>(
    app: &TestApp,
    all: &[&'a Value],
    now: DateTime<Utc>,
) -> Ranges<'a> {
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
    check_summary(app, &range, &inside);
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
            assert_eq!(
                (s["rows"].as_i64(), s["source"].as_str()),
                (Some(0), Some("rollups_and_edge_rows"))
            );
        } else {
            check_summary_from(app, &query, &between, "rollups_and_edge_rows");
        }
    }
    // A filter rollups cannot answer at all is answered from the rows, and says so.
    let res = app.get(&format!(
        "/audit/summary?since={}&status=rejected",
        iso(from)
    ));
    assert_eq!(res.json()["source"], "rows");
    Ranges {
        range,
        inside,
        edges: edge_ranges,
    }
}

/// Time series by minute over the last four hours, by hour, and by five minutes for one model.
fn check_timeseries_by_minute_hour_and_model(
    app: &TestApp,
    all: &[&Value],
    iris: &[&Value],
    now: DateTime<Utc>,
) {
    let since = now - Span::hours(4);
    check_timeseries(
        app,
        &format!(
            "bucket=1m&since={}&until={}",
            iso(since),
            iso(now + Span::minutes(1))
        ),
        1,
        all,
    );
    check_timeseries(
        app,
        &format!(
            "bucket=1h&since={}&until={}",
            iso(since),
            iso(now + Span::hours(1))
        ),
        60,
        all,
    );
    check_timeseries(
        app,
        &format!(
            "bucket=5m&model=iris&since={}&until={}",
            iso(since),
            iso(now + Span::minutes(5))
        ),
        5,
        iris,
    );
}

/// Feedback on a third of the answered iris rows, some of it replaced, then performance and
/// drift from the rollups against the same figures from the rows; the latest true labels.
fn check_performance_and_drift(
    app: &TestApp,
    rng: &mut Rng,
    all: &[&Value],
    iris: &[&Value],
    ranges: &Ranges,
    now: DateTime<Utc>,
    version: &str,
) -> HashMap<(String, i64), String> {
    let truth = random_feedback(app, rng, iris);
    let whole = check_performance(app, "", iris, &truth);
    assert_eq!(whole["source"], "rollups");
    let whole = check_performance(app, &ranges.range, &iris_inside(&ranges.inside), &truth);
    assert_eq!(whole["source"], "rollups");
    // Not whole minutes: the whole minutes from the rollups, the partial ones at the edges
    // joined from their rows; the same figures. The second is pinned to 30: `iso` drops
    // fractions, so an offset from `now` lands on a whole minute once in sixty runs.
    let earlier = now - Span::hours(5);
    let earlier = earlier - Span::seconds(earlier.timestamp().rem_euclid(60)) + Span::seconds(30);
    let earlier = format!("since={}", iso(earlier));
    let edge_perf = check_performance(app, &earlier, iris, &truth);
    assert_eq!(edge_perf["source"], "rollups_and_edge_rows");
    let drift = check_drift(app, "", all, version);
    let rows_drift = check_drift(app, &earlier, all, version);
    assert_eq!(rows_drift["source"], "rollups_and_edge_rows");
    for (query, between) in &ranges.edges {
        let p = check_performance(app, query, &iris_inside(between), &truth);
        assert_eq!(p["source"], "rollups_and_edge_rows", "{query}");
        let d = check_drift(app, query, between, version);
        assert_eq!(d["source"], "rollups_and_edge_rows", "{query}");
    }
    for j in 0..4 {
        let (a, b) = (&drift["features"][j], &rows_drift["features"][j]);
        assert_eq!(
            a["ks_statistic"], b["ks_statistic"],
            "KS over the same rows"
        );
        let (ma, mb) = (
            a["live_mean"].as_f64().unwrap(),
            b["live_mean"].as_f64().unwrap(),
        );
        assert!((ma - mb).abs() < 1e-9, "live means {ma} {mb}");
    }
    check_drift(app, &ranges.range, &ranges.inside, version);
    truth
}

/// A rebuild from the rows gives the same table; a replay of rows already stored adds
/// nothing to rows or rollups.
fn check_rebuild_and_replay(
    app: &TestApp,
    written: &Written,
    all: &[&Value],
    iris: &[&Value],
    truth: &HashMap<(String, i64), String>,
) {
    let db = &written.db;
    let live = rollup_table(app, 1, false);
    assert!(live.len() > 100, "{} rollup rows", live.len());
    // The deltas are merged within seconds, and the merge changes no figure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while unmerged(app) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "rollup deltas never merged"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        rollup_table(app, 1, false),
        live,
        "merged against unmerged rollups"
    );
    let hours = rollup_table(app, 60, true);
    assert_eq!(
        rollup_table(app, 1, true),
        hours,
        "hour rows against their minutes"
    );
    inferlog(&["audit", "rebuild-rollups", "--database-url", db]);
    assert_eq!(
        rollup_table(app, 1, false),
        live,
        "rebuilt against live rollups"
    );
    check_performance(app, "", iris, truth);
    check_drift(app, "", all, &written.version);
    assert_eq!(
        rollup_table(app, 60, true),
        hours,
        "rebuilt hours against live ones"
    );
    let spill_arg = written.spill.to_str().unwrap();
    inferlog(&["audit", "replay", spill_arg, "--database-url", db]);
    assert_eq!(app.stored_count(""), written.total as i64);
    assert_eq!(
        rollup_table(app, 1, false),
        live,
        "after replaying stored rows again"
    );
}
