//! The per-minute rollups against the rows they summarise: random traffic (over HTTP, and
//! hours of older rows replayed from a spill file) on either store, then every figure of
//! `/audit/summary` and `/audit/timeseries` from the rollups equals the same figure computed
//! naively from the rows in the test (percentiles within the histogram's stated 4%); a rebuild
//! gives the same rollup table, and a replay of rows already stored changes nothing.
//!
//! [`traffic`] makes the rows, [`audit_checks`] and [`monitor_checks`] compute each figure
//! from them and compare, [`figures`] runs the whole comparison, and [`reads`] holds the
//! smaller cases: parameters, an old schema, page order and the drift report's edge bound.

mod audit_checks;
mod figures;
mod monitor_checks;
mod reads;
mod traffic;

use chrono::{DateTime, Utc};

use crate::helpers::TestApp;

/// The minute, counted from the epoch, of an RFC 3339 time.
pub(super) fn minute(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp()
        .div_euclid(60)
}

/// The version of the iris model the server answers with.
pub(super) fn served_version(app: &TestApp) -> String {
    let id = app.predict_ok(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#);
    app.wait_for_rows(1);
    let rows = app.rows_of(&id);
    rows[0]["model_version"].as_str().unwrap().to_string()
}

/// The server's store as the commands take it: a plain path for SQLite, the URL for
/// PostgreSQL.
pub(crate) fn store_arg(app: &TestApp) -> String {
    if app.database_url.starts_with("postgres") {
        app.database_url.clone()
    } else {
        app.db_path.display().to_string()
    }
}

/// Runs the binary with `args`, which must succeed; what it printed.
pub(crate) fn inferlog(args: &[&str]) -> String {
    let out = crate::shutdown::binary().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// RFC 3339 in whole seconds, as the queries here give times.
pub(super) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
